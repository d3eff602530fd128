"""Support access: operator staff read a tenant's data only while the tenant allows it.

A tenant's admin grants access for a period (`POST /v1/support-grants`) and may revoke it
(`DELETE /v1/support-grants/{id}`). A support key (operator-issued, `wave-edge support
key-create`) names the tenant it wants with `X-Wave-Tenant`; without a live grant the
answer is 403, and support keys may only read (GET). Every support request is in the
tenant's audit log under the support key's id, so the tenant sees what was read.
"""

from __future__ import annotations

import secrets
import time

from core.store import Store

MAX_GRANT_S = 30 * 86400


def grant(store: Store, tenant_id: str, granted_by: str, duration_s: int) -> dict:
    grant_id = "sg_" + secrets.token_hex(8)
    now = time.time()
    store.command(
        "INSERT INTO support_grants (grant_id, tenant_id, granted_by, created_at, expires_at, updated_at)"
        " VALUES ({g:String}, {t:String}, {by:String}, {now:DateTime64(3)}, {exp:DateTime64(3)}, {now:DateTime64(3)})",
        parameters={"g": grant_id, "t": tenant_id, "by": granted_by, "now": now, "exp": now + duration_s},
    )
    return {"grant_id": grant_id, "expires_at": now + duration_s, "revoked": False}


def revoke(store: Store, tenant_id: str, grant_id: str) -> bool:
    rows = store.rows("SELECT granted_by, toUnixTimestamp64Milli(created_at) / 1000,"
                      " toUnixTimestamp64Milli(expires_at) / 1000 FROM support_grants FINAL"
                      " WHERE tenant_id = {t:String} AND grant_id = {g:String} AND NOT revoked",
                      {"t": tenant_id, "g": grant_id})
    if not rows:
        return False
    by, created, expires = rows[0]
    store.command(
        "INSERT INTO support_grants (grant_id, tenant_id, granted_by, created_at, expires_at, revoked, updated_at)"
        " VALUES ({g:String}, {t:String}, {by:String}, {c:DateTime64(3)}, {e:DateTime64(3)}, true, now64(3))",
        parameters={"g": grant_id, "t": tenant_id, "by": by, "c": float(created), "e": float(expires)},
    )
    return True


def grants(store: Store, tenant_id: str) -> list[dict]:
    rows = store.rows("SELECT grant_id, granted_by, toUnixTimestamp64Milli(created_at) / 1000,"
                      " toUnixTimestamp64Milli(expires_at) / 1000, revoked FROM support_grants FINAL"
                      " WHERE tenant_id = {t:String} ORDER BY created_at", {"t": tenant_id})
    now = time.time()
    return [{"grant_id": g, "granted_by": by, "created_at": c, "expires_at": e, "revoked": bool(r),
             "active": not r and e > now} for g, by, c, e, r in rows]

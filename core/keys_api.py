"""A tenant's admin keys: list, create, revoke. Rotation is create-then-revoke, so a
client never holds a moment without a working key.

Revocation takes effect at once on this edge (its key cache forgets the key) and within
the cache's couple of seconds on other edges. The last live key cannot be revoked: a
tenant that locks itself out needs the operator (`wave-edge tenant key-create`).
"""

from __future__ import annotations

import asyncio
import time

from litestar import Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from core import tenants
from core.auth import AdminAuth
from core.openapi import ADMIN, errors
from core.store import Store
from core.tenants import Tenant
from core.timefmt import iso_utc
from core.validation import BadInput
from core.wire import AdminKey, AdminKeyCreated, AdminKeyList


def _current(request: Request) -> str:
    """The key id this request was made with (the auth check notes it for the audit log)."""
    _, actor, _ = request.scope.get("state", {}).get("wave_actor", ("", "", ""))
    return actor.removeprefix("key:")


def _key(key_hash: str, created: float, revoked: bool, current: str) -> AdminKey:
    key_id = key_hash[: tenants.KEY_ID_CHARS]
    return AdminKey(key_id=key_id, created_at=iso_utc(created), revoked=revoked, current=key_id == current)


@get("/v1/keys", responses=errors(*ADMIN))
async def list_keys(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> AdminKeyList:
    """The tenant's admin keys, by id (never the keys themselves)."""
    rows = await asyncio.to_thread(tenants.admin_keys, store, tenant.tenant_id)
    current = _current(request)
    return AdminKeyList(keys=[_key(h, c, r, current) for h, c, r in rows])


@post("/v1/keys", status_code=201, request_max_body_size=1024, responses=errors(*ADMIN))
async def create_key(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> AdminKeyCreated:
    """A new admin key for the tenant (shown once); revoke the old one after switching."""
    key = await asyncio.to_thread(tenants.create_admin_key, store, tenant.tenant_id)
    key_id = tenants.hash_key(key)[: tenants.KEY_ID_CHARS]
    request.scope.setdefault("state", {})["wave_audit"] = {"after": {"key_id": key_id}}
    return AdminKeyCreated(key_id=key_id, admin_key=key, created_at=iso_utc(time.time()))


@delete("/v1/keys/{key_id:str}", status_code=200, responses=errors(*ADMIN, 409))
async def revoke_key(request: Request, key_id: FromPath[str], tenant: NamedDependency[Tenant], store: NamedDependency[Store],
                     auth: NamedDependency[AdminAuth]) -> AdminKey:
    """Revoke one of the tenant's keys, with immediate effect (the current key too)."""
    rows = await asyncio.to_thread(tenants.admin_keys, store, tenant.tenant_id)
    named = tenants.named_key(rows, key_id)
    if named is None or named[2]:
        raise BadInput("not_found", f"no live key {key_id!r} for this tenant", "$.path.key_id", status=404)
    key_hash, created, _ = named
    if not any(not revoked and h != key_hash for h, _, revoked in rows):
        raise BadInput("conflict", "this is the tenant's last live key: create another first", "$.path.key_id",
                       status=409)
    await asyncio.to_thread(tenants.revoke_admin_key, store, tenant.tenant_id, key_hash)
    auth.forget(key_hash)
    request.scope.setdefault("state", {})["wave_audit"] = {"before": {"revoked": False}, "after": {"revoked": True}}
    return _key(key_hash, created, True, _current(request))


ROUTES = [list_keys, create_key, revoke_key]

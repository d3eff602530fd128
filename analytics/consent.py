"""The consent ledger: who agreed to what, when, under which policy, and who withdrew.

Rows are only ever appended (grant or withdrawal); a viewer's newest row decides. Answers
are cached per process for `cache_s` seconds to keep the collector off the database, and
this process's own grants and withdrawals update the cache at once, so a withdrawal takes
effect on the very next beacon. Another edge's withdrawal is seen within `cache_s`.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from analytics.store import Store

ANALYTICS = "analytics"


class ConsentLedger:
    def __init__(self, store: Store, cache_s: float = 5.0) -> None:
        self._store = store
        self._cache_s = cache_s
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}

    async def record(
        self,
        *,
        tenant_id: str,
        viewer_id: str,
        action: str,
        purposes: list[str],
        policy_version: str,
        email: str,
        ip: str,
        browser: str,
    ) -> str:
        consent_id = str(uuid.uuid4())
        await asyncio.to_thread(
            self._store.command,
            "INSERT INTO consents (consent_id, tenant_id, viewer_id, email, action, purposes,"
            " policy_version, ts, ip, browser) VALUES ({cid:UUID}, {t:String}, {v:String},"
            " {e:String}, {a:String}, {p:Array(String)}, {pv:String}, now64(6), {ip:IPv6}, {b:String})",
            {
                "cid": consent_id,
                "t": tenant_id,
                "v": viewer_id,
                "e": email,
                "a": action,
                "p": purposes,
                "pv": policy_version,
                "ip": ip,
                "b": browser,
            },
        )
        granted = action == "grant" and ANALYTICS in purposes
        self._remember((tenant_id, viewer_id), granted)
        return consent_id

    async def allows_analytics(self, tenant_id: str, viewer_id: str) -> bool:
        key = (tenant_id, viewer_id)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        rows = await asyncio.to_thread(
            self._store.rows,
            "SELECT toString(action), purposes FROM consents"
            " WHERE tenant_id = {t:String} AND viewer_id = {v:String} ORDER BY ts DESC LIMIT 1",
            {"t": tenant_id, "v": viewer_id},
        )
        granted = bool(rows) and rows[0][0] == "grant" and ANALYTICS in rows[0][1]
        self._remember(key, granted)
        return granted

    def _remember(self, key: tuple[str, str], granted: bool) -> None:
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self._cache_s, granted)

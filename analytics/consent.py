"""The consent ledger: who agreed to what, when, under which policy, and who withdrew.

Rows are only ever appended (grant or withdrawal); a viewer's newest row decides.

The collector asks "may I store this viewer's beacons?" for every batch, so answers are
cached in the process. A cache is only safe if it hears about changes made elsewhere
(another edge, an erasure), so instead of expiring entries on a timer, which would
re-query every active viewer every few seconds, the ledger *follows* the table: every
`poll_s` it reads the rows written since its last look (one partition-pruned query for all
viewers) and updates the entries it holds. This process's own grants and withdrawals
update the cache at once, so a withdrawal takes effect on the very next beacon; another
edge's within `poll_s`. Each entry remembers the time of the row it came from, and only
a newer row replaces it, so a slow lookup can never overwrite a fresher withdrawal.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from core.cache import drop_oldest_tenth
from core.store import Store, StoreUnavailable
from core.tasks import stop_task

log = logging.getLogger(__name__)

ANALYTICS = "analytics"
_OVERLAP_US = 5_000_000  # re-read this much of the past: rows commit after they are stamped


class _Entry:
    __slots__ = ("row_us", "granted", "cached_at")

    def __init__(self, row_us: int, granted: bool, cached_at: float) -> None:
        self.row_us, self.granted, self.cached_at = row_us, granted, cached_at


def _grants_analytics(action: str, purposes: list[str]) -> bool:
    return action == "grant" and ANALYTICS in purposes


class ConsentLedger:
    def __init__(self, store: Store, poll_s: float = 1.0, max_age_s: float = 600.0) -> None:
        self._store = store
        self.poll_s = poll_s
        self._max_age_s = max_age_s
        self._cache: dict[tuple[str, str], _Entry] = {}
        self.max_cached = 500_000  # about 200 MB
        self._lookups: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self._since_us = int(time.time() * 1e6)
        self._task: asyncio.Task | None = None

    # -- writes -----------------------------------------------------------------------
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
        email_proof: str = "",
    ) -> str:
        """Append one row. `email` only ever comes proven (`email_proof` says how): the
        collector refuses an e-mail it cannot verify, and exports and purges by e-mail
        follow only proven rows."""
        consent_id = str(uuid.uuid4())
        row_us = int(time.time() * 1e6)
        await asyncio.to_thread(
            self._store.command,
            "INSERT INTO consents (consent_id, tenant_id, viewer_id, email, action, purposes,"
            " policy_version, ts, ip, browser, email_proof) VALUES ({cid:UUID}, {t:String}, {v:String},"
            " {e:String}, {a:String}, {p:Array(String)}, {pv:String},"
            " fromUnixTimestamp64Micro({us:Int64}), {ip:IPv6}, {b:String}, {proof:String})",
            {
                "cid": consent_id,
                "t": tenant_id,
                "v": viewer_id,
                "e": email,
                "a": action,
                "p": purposes,
                "pv": policy_version,
                "us": row_us,
                "ip": ip,
                "b": browser,
                "proof": email_proof,
            },
        )
        self._offer((tenant_id, viewer_id), row_us, _grants_analytics(action, purposes))
        return consent_id

    # -- the hot path -----------------------------------------------------------------
    async def allows_analytics(self, tenant_id: str, viewer_id: str, valid_from_ms: int = 0) -> bool:
        """Does the viewer's newest ledger row grant analytics? Only a grant recorded at or
        after `valid_from_ms` counts (a tenant back in opt-in mode asks everyone again)."""
        granted, row_us = await self._newest(tenant_id, viewer_id)
        return granted and row_us >= valid_from_ms * 1000

    async def _newest(self, tenant_id: str, viewer_id: str) -> tuple[bool, int]:
        key = (tenant_id, viewer_id)
        entry = self._cache.get(key)
        if entry is not None and time.monotonic() - entry.cached_at < self._max_age_s:
            return entry.granted, entry.row_us
        pending = self._lookups.get(key)
        if pending is not None:  # one query per viewer, however many beacons wait on it
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[bool, int]] = asyncio.get_running_loop().create_future()
        self._lookups[key] = future
        try:
            rows = await asyncio.to_thread(
                self._store.rows,
                "SELECT toString(action), purposes, toUnixTimestamp64Micro(ts) FROM consents"
                " WHERE tenant_id = {t:String} AND viewer_id = {v:String} ORDER BY ts DESC LIMIT 1",
                {"t": tenant_id, "v": viewer_id},
            )
            if rows:
                action, purposes, row_us = rows[0]
                self._offer(key, int(row_us), _grants_analytics(action, purposes))
            else:
                self._offer(key, 0, False)
            winner = self._cache[key]
            answer = (winner.granted, winner.row_us)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it as lost
            raise
        finally:
            del self._lookups[key]

    def forget(self, tenant_id: str, viewer_id: str) -> None:
        """The viewer's consent rows were erased: no grant stands (a later one will)."""
        self._cache[(tenant_id, viewer_id)] = _Entry(int(time.time() * 1e6), False, time.monotonic())

    # -- following the table -----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="consent-follow")

    async def stop(self) -> None:
        await stop_task(self._task)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await asyncio.to_thread(self.catch_up)
            except StoreUnavailable as exc:
                log.warning("consent changes not read this round: %s", exc)

    def catch_up(self) -> None:
        """Apply every ledger row written since the last look, by any edge."""
        rows = self._store.rows(
            "SELECT tenant_id, viewer_id, toString(argMax(action, ts)), argMax(purposes, ts),"
            " toUnixTimestamp64Micro(max(ts)) FROM consents"
            " WHERE ts > fromUnixTimestamp64Micro({since:Int64}) GROUP BY tenant_id, viewer_id",
            {"since": self._since_us - _OVERLAP_US},
        )
        newest = self._since_us
        for tenant_id, viewer_id, action, purposes, row_us in rows:
            key = (tenant_id, viewer_id)
            if key in self._cache:
                self._offer(key, int(row_us), _grants_analytics(action, purposes))
            newest = max(newest, int(row_us))
        self._since_us = newest

    def _offer(self, key: tuple[str, str], row_us: int, granted: bool) -> bool:
        """Cache an answer unless a newer row's answer is already cached; return the winner."""
        entry = self._cache.get(key)
        now = time.monotonic()
        if entry is not None and entry.row_us > row_us:
            entry.cached_at = now
            return entry.granted
        if len(self._cache) >= self.max_cached:
            # Made-up viewer ids filling the cache must not send every real viewer's next
            # batch back to the database at once.
            drop_oldest_tenth(self._cache, self.max_cached)
        self._cache[key] = _Entry(row_us, granted, now)
        return granted

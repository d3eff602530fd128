"""The audit log: every admin call and CLI action, append-only, with its own retention.

A record says who (a key id: the first 12 hex digits of the key's SHA-256, never the key;
`cli` or `operator` for commands), what (the route and its parameters; for changes, the
state before and after), when, from which address, and the outcome (HTTP status).
Privacy requests name their subject only by salted hash, here as in the purge ledger, so
the log that proves an erasure does not undo it.

Records without a tenant (operator calls, refused anonymous calls) belong to nobody who
could set their retention: they keep `ORPHAN_RETENTION_DAYS` and a truncated address.
Calls refused before anyone was identified (no key, an unknown key, a dead session) are
not written one by one: an attacker controls how many there are. `AuditWriter` counts them
per route and status and writes one summary row a minute, so a flood of refusals costs a
dictionary update each, never a database write each (SECURITY.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from core.client_address import parse_ip, stored_ip
from core.metrics import Registry
from core.store import Store, StoreUnavailable
from core.tasks import stop_task

log = logging.getLogger(__name__)
DEFAULT_RETENTION_DAYS = 400
# Rows no tenant owns: kept a month (enough to investigate an incident), address /24 or /48.
ORPHAN_RETENTION_DAYS = 30
REFUSED_KIND = "refused"


def key_id(key_hash: str) -> str:
    return "key:" + key_hash[:12]


def row(tenant_id: str, actor: str, actor_kind: str, action: str, *, params: dict | None = None,
        before: object = None, after: object = None, ip: str | None = None, status: int = 200,
        retention_days: int = DEFAULT_RETENTION_DAYS, ts: float | None = None) -> bytes:
    if not tenant_id:  # nobody's row: short retention, no full address
        retention_days = min(retention_days, ORPHAN_RETENTION_DAYS)
        ip = stored_ip(parse_ip(ip), "truncated") if ip else None
    return json.dumps({
        "ts": time.time() if ts is None else ts, "tenant_id": tenant_id, "actor": actor,
        "actor_kind": actor_kind, "action": action, "params": json.dumps(params or {}, sort_keys=True),
        "before": "" if before is None else json.dumps(before, sort_keys=True, default=str),
        "after": "" if after is None else json.dumps(after, sort_keys=True, default=str),
        "ip": ip or "::", "status": status, "retention_days": retention_days,
    }).encode() + b"\n"


def write(store: Store, data: bytes) -> None:
    store.insert_json_lines("audit_log", data)


class AuditWriter:
    """The server's audit records, off the request path's thread pool.

    Records are inserted by a thread of their own, so the database work of beacons,
    consents and key lookups never queues behind audit inserts. Records that arrive while
    an insert runs join the next one (group commit: one insert per batch, however many
    requests wait), and `write` returns once its record is stored, as before: a client's
    next call on the same connection sees it. The queue is bounded (`max_pending`): past
    it records are dropped, counted (`wave_audit_dropped_total`) and logged, never
    growing memory. Refusals of unidentified callers are only counted (`refused`), and
    summed up in one row per route, status and minute.
    """

    def __init__(self, store: Store, metrics: Registry, max_pending: int = 50_000, summary_s: float = 60.0) -> None:
        self._store = store
        self._summary_s = summary_s
        self._max_pending = max_pending
        self._pending: list[bytes] = []
        self._batch_done: asyncio.Future | None = None  # resolved when the pending records are written
        self._writing: asyncio.Task | None = None
        self._refused: dict[tuple[str, int], list] = {}  # (action, status) -> [count, addresses]
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="audit")
        self._task: asyncio.Task | None = None
        self._dropped = metrics.counter("wave_audit_dropped_total", "Audit records not written (queue full, store down)")
        self._refusals = metrics.counter("wave_auth_refused_total", "Admin calls refused before any caller was known")
        metrics.gauge("wave_audit_pending", "Audit records waiting to be written", lambda: len(self._pending))

    async def write(self, record: bytes) -> None:
        """Store one record (with whatever else is waiting); returns when it is written."""
        if len(self._pending) >= self._max_pending:
            self._dropped.inc(reason="queue_full")
            log.error("audit queue full: a record was dropped")
            return
        self._pending.append(record)
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        done = self._batch_done
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write_all())
        await asyncio.shield(done)

    def refused(self, action: str, status: int, ip: str | None) -> None:
        """An unidentified caller was refused: counted, never written one by one."""
        self._refusals.inc(status=str(status))
        entry = self._refused.get((action, status))
        if entry is None:
            if len(self._refused) >= 1000:  # actions are route templates: this never fills
                return
            entry = self._refused[(action, status)] = [0, set()]
        entry[0] += 1
        if ip and len(entry[1]) < 10_000:
            entry[1].add(ip)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._summaries())

    async def stop(self) -> None:
        await stop_task(self._task)
        await self._summarize()
        if self._writing is not None:
            await self._writing
        self._executor.shutdown(wait=True)

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(self._summary_s)
            await self._summarize()

    async def _summarize(self) -> None:
        refused, self._refused = self._refused, {}
        for (action, status), (count, addresses) in refused.items():
            await self.write(row("", "anonymous", REFUSED_KIND, action,
                                 params={"count": count, "addresses": len(addresses)}, status=status))

    async def _write_all(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                done, self._batch_done = self._batch_done, None
                try:
                    await loop.run_in_executor(self._executor, write, self._store, b"".join(batch))
                except StoreUnavailable as exc:  # the calls already happened; say they were not logged
                    self._dropped.inc(len(batch), reason="store_unavailable")
                    log.error("%d audit records not written: %s", len(batch), exc)
                except Exception:
                    self._dropped.inc(len(batch), reason="error")
                    log.exception("%d audit records not written", len(batch))
                finally:
                    if done is not None and not done.done():
                        done.set_result(None)
        finally:
            self._writing = None


def query(store: Store, tenant_id: str, start: float, end: float, limit: int = 10_000,
          actor: str | None = None, action: str | None = None, actor_kind: str | None = None) -> list[dict]:
    """Records in [start, end); `actor`/`actor_kind` exact, `action` a substring."""
    where = "tenant_id = {t:String} AND ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}"
    if actor:
        where += " AND actor = {actor:String}"
    if actor_kind:
        where += " AND actor_kind = {kind:String}"
    if action:
        where += " AND position(action, {action:String}) > 0"
    rows = store.rows(
        "SELECT toUnixTimestamp64Milli(ts) / 1000, actor, actor_kind, action, params, before, after,"
        f" toString(ip), status FROM audit_log WHERE {where} ORDER BY ts LIMIT {{limit:UInt32}}",
        {"t": tenant_id, "start": start, "end": end, "limit": limit, "actor": actor or "", "kind": actor_kind or "",
         "action": action or ""},
    )
    keys = ("ts", "actor", "actor_kind", "action", "params", "before", "after", "ip", "status")
    return [dict(zip(keys, r)) for r in rows]

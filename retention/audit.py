"""The audit log: every admin call and CLI action, append-only, with its own retention.

A record says who (a key id: the first 12 hex digits of the key's SHA-256, never the key;
`cli` or `operator` for commands), what (the route and its parameters; for changes, the
state before and after), when, from which address, and the outcome (HTTP status).
Privacy requests name their subject only by salted hash, here as in the purge ledger, so
the log that proves an erasure does not undo it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from analytics.store import Store, StoreUnavailable

log = logging.getLogger(__name__)
DEFAULT_RETENTION_DAYS = 400


def key_id(key_hash: str) -> str:
    return "key:" + key_hash[:12]


def row(tenant_id: str, actor: str, actor_kind: str, action: str, *, params: dict | None = None,
        before: object = None, after: object = None, ip: str | None = None, status: int = 200,
        retention_days: int = DEFAULT_RETENTION_DAYS, ts: float | None = None) -> bytes:
    return json.dumps({
        "ts": time.time() if ts is None else ts, "tenant_id": tenant_id, "actor": actor,
        "actor_kind": actor_kind, "action": action, "params": json.dumps(params or {}, sort_keys=True),
        "before": "" if before is None else json.dumps(before, sort_keys=True, default=str),
        "after": "" if after is None else json.dumps(after, sort_keys=True, default=str),
        "ip": ip or "::", "status": status, "retention_days": retention_days,
    }).encode() + b"\n"


def write(store: Store, data: bytes) -> None:
    store.insert_json_lines("audit_log", data)


async def write_async(store: Store, data: bytes) -> None:
    try:
        await asyncio.to_thread(write, store, data)
    except StoreUnavailable as exc:  # the call itself already happened; say it was not logged
        log.error("audit record not written: %s", exc)


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

"""WebRTC viewer QoE: the table `webrtc_samples` (migration 17), its writer and its queries.

The edge samples each WHEP viewer session's RTP senders (edge/streaming/webrtc_stats.py):
what it sent, and what the viewer's RTCP receiver reports say arrived (cumulative loss,
interarrival jitter, round-trip time). No client-side analytics sees this, and it needs
no one's consent: a row carries a random session id and no personal key. Only when the
player presented a viewer id with a recorded, unwithdrawn analytics consent for the
tenant is that id stored with the rows (then they are personal data, registered in
retention/registry.py: purged, exported and expired with the viewer's other data).

Rows are buffered and inserted in one batch per `flush_s` for every session of the edge
(one chDB part per flush, not one per viewer per sample), on a worker thread so the event
loop never waits on the store. The consent behind a viewer id is asked again at every
flush, so a withdrawal or a purge unlinks the rows written after it; `forget_viewer`
(a purge) also unlinks what is buffered and waits for a flush under way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import msgspec

from core.store import Store, StoreUnavailable
from core.tasks import stop_task
from core.timefmt import iso_utc

log = logging.getLogger(__name__)
TABLE = "webrtc_samples"
MAX_BUFFERED = 100_000  # rows held while the store is away; past it the oldest go (counted)


class Sample(msgspec.Struct):
    """One row: one sender (video or audio) of one viewer session at one instant.
    Counters are cumulative since the session began; the RTCP fields are None until the
    viewer's first receiver report for that sender arrived."""

    tenant_id: str
    stream_id: str
    session_id: str
    kind: str
    ts: float  # epoch seconds
    started_at: float
    packets_sent: int
    bytes_sent: int
    packets_lost: int | None
    fraction_lost: float | None  # 0..1, of the interval before the report
    jitter_ms: float | None
    rtt_ms: float | None
    viewer_id: str
    retention_days: int


class ConsentCheck(Protocol):
    async def allows_analytics(self, tenant_id: str, viewer_id: str) -> bool: ...


class QoeLog:
    """The batching writer every viewer session's sampler hands its rows to."""

    def __init__(self, store: Store, consents: ConsentCheck | None, flush_s: float = 2.0) -> None:
        self._store = store
        self._consents = consents
        self.flush_s = flush_s
        self._rows: list[Sample] = []
        self._lock = asyncio.Lock()  # one flush at a time; `forget_viewer` waits for it
        self._task: asyncio.Task | None = None
        self._gone_tenants: set[str] = set()  # offboarded: their sessions' last rows are dropped
        self.dropped = 0

    def add(self, rows: list[Sample]) -> None:
        if self._gone_tenants:
            rows = [r for r in rows if r.tenant_id not in self._gone_tenants]
        self._rows.extend(rows)
        if len(self._rows) > MAX_BUFFERED:
            over = len(self._rows) - MAX_BUFFERED
            del self._rows[:over]
            self.dropped += over
            log.warning("webrtc QoE rows dropped: %d (the store is not taking them)", over)

    async def flush(self) -> int:
        async with self._lock:
            rows, self._rows = self._rows, []
            if not rows:
                return 0
            await self._unlink_unconsented(rows)
            data = msgspec.json.Encoder().encode_lines(rows)
            try:
                await asyncio.to_thread(self._store.insert_json_lines, TABLE, data)
            except StoreUnavailable as exc:
                self._rows[:0] = rows  # kept for the next round, in order
                log.warning("webrtc QoE rows not written this round: %s", exc)
                return 0
            return len(rows)

    async def _unlink_unconsented(self, rows: list[Sample]) -> None:
        """A viewer id stays on a row only while its analytics consent stands."""
        keys = {(r.tenant_id, r.viewer_id) for r in rows if r.viewer_id}
        allowed = set()
        for key in keys:
            try:
                if self._consents is not None and await self._consents.allows_analytics(*key):
                    allowed.add(key)
            except StoreUnavailable:
                pass  # unknown: stored without the id, which is always allowed
        for row in rows:
            if row.viewer_id and (row.tenant_id, row.viewer_id) not in allowed:
                row.viewer_id = ""

    async def forget_viewer(self, tenant_id: str, viewer_id: str) -> None:
        """A purge: buffered rows lose the viewer id, and a flush under way has finished
        (so its rows are in the table for the purge to find). Later rows are unlinked by
        the consent check (the purge's first step forgets the viewer's consent)."""
        async with self._lock:
            for row in self._rows:
                if row.tenant_id == tenant_id and row.viewer_id == viewer_id:
                    row.viewer_id = ""

    async def forget_tenant(self, tenant_id: str) -> None:
        """Offboarding: the tenant's buffered rows go, rows its closing sessions still hand
        in are dropped, and a flush under way has finished (before the tenant's rows are
        erased, so none is written back after)."""
        async with self._lock:
            self._gone_tenants.add(tenant_id)
            self._rows = [r for r in self._rows if r.tenant_id != tenant_id]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever(), name="webrtc-qoe-flush")

    async def stop(self) -> None:
        await stop_task(self._task)
        await self.flush()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("webrtc QoE flush failed")


# ---- reading ---------------------------------------------------------------------------

SESSION_FIELDS = ("session_id", "stream_id", "kind", "started_at", "ended_at", "samples", "packets_sent",
                  "bytes_sent", "packets_lost", "loss_pct", "jitter_ms", "jitter_ms_max", "rtt_ms", "rtt_ms_max",
                  "viewer_linked")
STREAM_FIELDS = ("stream_id", "sessions", "packets_sent", "packets_lost", "loss_pct", "jitter_ms", "rtt_ms")

_WHERE = ("tenant_id = {tenant:String} AND ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}"
          " AND ({stream:String} = '' OR stream_id = {stream:String})")
# One row per session and kind: counters are cumulative, so the newest sample's (max)
# values are the session's; loss is the newest receiver report's cumulative count.
_PER_SESSION = f"""
    SELECT session_id, stream_id, kind, min(started_at) AS started, max(ts) AS ended, count() AS samples,
           max(packets_sent) AS sent, max(bytes_sent) AS bytes,
           argMaxIf(packets_lost, ts, packets_lost IS NOT NULL) AS lost,
           avg(jitter_ms) AS jitter, max(jitter_ms) AS jitter_max, avg(rtt_ms) AS rtt, max(rtt_ms) AS rtt_max,
           max(viewer_id != '') AS linked, countIf(packets_lost IS NOT NULL) AS reports,
           sum(jitter_ms) AS jitter_sum, count(jitter_ms) AS jitter_n, sum(rtt_ms) AS rtt_sum, count(rtt_ms) AS rtt_n
    FROM {TABLE} WHERE {_WHERE}
    GROUP BY session_id, stream_id, kind
"""


def _params(tenant_id: str, start: float, end: float, stream_id: str | None) -> dict:
    return {"tenant": tenant_id, "start": float(start), "end": float(end), "stream": stream_id or ""}


def _ms(value) -> float | None:
    return None if value is None or value != value else round(float(value), 3)  # NaN: no values


def _loss_pct(lost, sent) -> float | None:
    if lost is None or not sent:
        return None
    return round(100.0 * max(0, int(lost)) / int(sent), 3)


def sessions(store: Store, tenant_id: str, start: float, end: float, stream_id: str | None = None,
             limit: int = 500) -> list[dict]:
    """Viewer sessions with samples in [start, end), newest first, one row per media kind."""
    rows = store.rows(
        f"SELECT * FROM ({_PER_SESSION}) ORDER BY started DESC, session_id, kind LIMIT {{limit:UInt32}}",
        {**_params(tenant_id, start, end, stream_id), "limit": limit},
    )
    out = []
    for (session_id, stream, kind, started, ended, samples, sent, sent_bytes, lost, jitter, jitter_max, rtt,
         rtt_max, linked, reports, *_) in rows:
        lost = int(lost) if reports else None
        out.append({
            "session_id": session_id, "stream_id": stream, "kind": kind,
            "started_at": iso_utc(started.timestamp()), "ended_at": iso_utc(ended.timestamp()),
            "samples": int(samples), "packets_sent": int(sent), "bytes_sent": int(sent_bytes),
            "packets_lost": lost, "loss_pct": _loss_pct(lost, sent),
            "jitter_ms": _ms(jitter), "jitter_ms_max": _ms(jitter_max),
            "rtt_ms": _ms(rtt), "rtt_ms_max": _ms(rtt_max), "viewer_linked": bool(linked),
        })
    return out


def streams(store: Store, tenant_id: str, start: float, end: float, stream_id: str | None = None) -> list[dict]:
    """Per stream: viewer sessions, packets sent and lost (the sessions' newest reports),
    loss % (of the packets sent in sessions that had a report), and the mean jitter and
    round trip over every sample that had one."""
    rows = store.rows(
        f"""
        SELECT stream_id, uniqExact(session_id), sum(sent), sumIf(greatest(lost, 0), reports > 0),
               sumIf(sent, reports > 0), if(sum(jitter_n) > 0, sum(jitter_sum) / sum(jitter_n), NULL),
               if(sum(rtt_n) > 0, sum(rtt_sum) / sum(rtt_n), NULL)
        FROM ({_PER_SESSION})
        GROUP BY stream_id ORDER BY stream_id
        """,
        _params(tenant_id, start, end, stream_id),
    )
    return [{
        "stream_id": stream, "sessions": int(n), "packets_sent": int(sent), "packets_lost": int(lost),
        "loss_pct": _loss_pct(lost, reported_sent), "jitter_ms": _ms(jitter), "rtt_ms": _ms(rtt),
    } for stream, n, sent, lost, reported_sent, jitter, rtt in rows]

"""The `viewer_events` table: one row per enriched beacon event.

Rows travel as JSON arrays, one per line (ClickHouse's JSONCompactEachRow) in the
fixed column order `COLUMNS`: msgspec writes a batch in microseconds, the same bytes go
to the spool and to ClickHouse, and ClickHouse parses them in C++ without the GIL.
A row is the request's shared part (who, where, on what) followed by the event's own
fields, so the shared part is built once per batch, not once per event.
Times are epoch seconds with millisecond decimals, which DateTime64(3) parses exactly.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Iterable, Sequence

import msgspec

from analytics.wire import Event
from core.store import Store

TABLE = "viewer_events"
FORMAT = "JSONCompactEachRow"

# Set once per request.
CONTEXT_COLUMNS = (
    "tenant_id", "viewer_id", "email", "ip", "country", "region", "region_code", "city",
    "os", "os_version", "browser", "browser_version", "device", "is_bot", "retention_days",
    "received_at",
)
# Set per event.
EVENT_COLUMNS = (
    "event_id", "ts", "type", "view_id", "video_id", "position_ms", "screen_w", "screen_h",
    "player_w", "player_h", "rendition_w", "rendition_h", "bitrate_kbps", "error_code",
    "error_message", "fatal",
)
COLUMNS = CONTEXT_COLUMNS + EVENT_COLUMNS
_EVENT_ID = COLUMNS.index("event_id")
_TS = COLUMNS.index("ts")

_encoder = msgspec.json.Encoder()
_HEX4 = [f"{i:04x}" for i in range(1 << 16)]


class EventIds:
    """Globally unique event ids, cheap enough for 100k/s: a random 64-bit process prefix,
    a batch counter and the event's index in its batch, laid out as a UUID. They let a
    crash replay skip rows already stored."""

    def __init__(self) -> None:
        h = uuid.uuid4().hex
        self._prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-"
        self._batches = itertools.count(1)

    def batch_prefix(self) -> str:
        """Prefix for one batch; append `_HEX4[index]` (index < 65536) for each event."""
        b = next(self._batches)
        return f"{self._prefix}{(b >> 32) & 0xFFFF:04x}-{b & 0xFFFFFFFF:08x}"


def encode_batch(context: tuple, events: Sequence[Event], ids: EventIds) -> bytes:
    """JSON lines for one request: `context` in CONTEXT_COLUMNS order, then each event.

    A list, not a generator: msgspec 0.22's `encode_lines` keeps a reference to any other
    iterable it is given, so a generator here leaked one object per request (found by the
    soak; tests/analytics/test_write_path.py guards it)."""
    prefix = ids.batch_prefix()
    hex4 = _HEX4
    return _encoder.encode_lines([
        context
        + (
            prefix + hex4[i],
            e.ts / 1000,
            e.type,
            e.view_id,
            e.video_id,
            e.position_ms,
            e.screen_w,
            e.screen_h,
            e.player_w,
            e.player_h,
            e.rendition_w,
            e.rendition_h,
            e.bitrate_kbps,
            e.error_code,
            e.error_message,
            e.fatal,
        )
        for i, e in enumerate(events)
    ])


def encode_rows(rows: Iterable[Sequence]) -> bytes:
    """JSON lines from whole rows already in COLUMNS order."""
    return _encoder.encode_lines(rows if isinstance(rows, (list, tuple)) else list(rows))


def insert(store: Store, data: bytes, dedup_token: str | None = None) -> None:
    store.insert_json_lines(TABLE, data, dedup_token, columns=COLUMNS, fmt=FORMAT)


def missing_lines(store: Store, data: bytes) -> bytes:
    """Of these JSON lines, the ones whose event_id is not in the table yet."""
    lines = [line for line in data.split(b"\n") if line]
    if not lines:
        return b""
    rows = [msgspec.json.decode(line) for line in lines]
    ids = [row[_EVENT_ID] for row in rows]
    times = [row[_TS] for row in rows]
    found = {
        row[0]
        for row in store.rows(
            f"SELECT toString(event_id) FROM {TABLE}"
            " WHERE ts BETWEEN fromUnixTimestamp64Milli({lo:Int64}) AND fromUnixTimestamp64Milli({hi:Int64})"
            " AND event_id IN {ids:Array(UUID)}",
            parameters={"lo": int(min(times) * 1000) - 1, "hi": int(max(times) * 1000) + 1, "ids": ids},
        )
    }
    return b"".join(line + b"\n" for line, event_id in zip(lines, ids) if event_id not in found)

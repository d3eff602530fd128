"""The `viewer_events` table: one row per enriched beacon event.

Rows travel as JSON lines (JSONEachRow): msgspec writes them in microseconds, the same
bytes go to the spool and to ClickHouse, and ClickHouse parses them in C++.
Times are epoch seconds with millisecond decimals, which DateTime64(3) parses exactly.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Iterable

import msgspec

from analytics.store import Store

TABLE = "viewer_events"


class EventRow(msgspec.Struct, omit_defaults=True):
    tenant_id: str
    event_id: str
    received_at: float
    ts: float
    type: str
    viewer_id: str
    view_id: str
    video_id: str
    ip: str
    country: str
    region: str
    region_code: str
    city: str
    os: str
    os_version: str
    browser: str
    browser_version: str
    device: str
    is_bot: bool
    retention_days: int
    email: str = ""
    position_ms: int | None = None
    screen_w: int | None = None
    screen_h: int | None = None
    player_w: int | None = None
    player_h: int | None = None
    rendition_w: int | None = None
    rendition_h: int | None = None
    bitrate_kbps: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    fatal: bool | None = None


class _RowKey(msgspec.Struct):
    """What replay needs of a spooled row: its id and time (for partition pruning)."""

    event_id: str
    ts: float


_encoder = msgspec.json.Encoder()
_key_decoder = msgspec.json.Decoder(_RowKey)


def encode_lines(rows: Iterable[EventRow]) -> bytes:
    buf = bytearray()
    for row in rows:
        _encoder.encode_into(row, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


class EventIds:
    """Globally unique event ids, cheap enough for 100k/s: a random 64-bit process prefix
    and a counter, formatted as a UUID. They let a crash replay skip rows already stored."""

    def __init__(self) -> None:
        h = uuid.uuid4().hex
        self._prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        c = next(self._counter)
        return f"{self._prefix}{(c >> 48) & 0xFFFF:04x}-{c & 0xFFFFFFFFFFFF:012x}"


def missing_lines(store: Store, data: bytes) -> bytes:
    """Of these JSON lines, the ones whose event_id is not in the table yet."""
    lines = [line for line in data.split(b"\n") if line]
    if not lines:
        return b""
    keys = [_key_decoder.decode(line) for line in lines]
    found = {
        row[0]
        for row in store.rows(
            f"SELECT toString(event_id) FROM {TABLE}"
            " WHERE ts BETWEEN fromUnixTimestamp64Milli({lo:Int64}) AND fromUnixTimestamp64Milli({hi:Int64})"
            " AND event_id IN {ids:Array(UUID)}",
            parameters={
                "lo": int(min(k.ts for k in keys) * 1000) - 1,
                "hi": int(max(k.ts for k in keys) * 1000) + 1,
                "ids": [k.event_id for k in keys],
            },
        )
    }
    return b"".join(line + b"\n" for line, key in zip(lines, keys) if key.event_id not in found)

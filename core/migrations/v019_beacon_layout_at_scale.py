"""Migration 19: the beacons' and the rollup's layout at 100 M rows (issue #20, point 4).

Measured with `bench/scale.py` (bench/RESULTS.md, "Privacy requests" and "Dashboard
queries"): on the old layout a beacon took about 30 bytes on disk, over half of it the
event id and the two times, compressed with LZ4 as if they were random; and a purge's cost
is rewriting every part that holds a subject's rows, so it grows with the size of those
parts, not with the table.

- Codecs: times are near-sorted within a view (Delta, then ZSTD), event ids share their
  process prefix (ZSTD finds it), strings repeat within a view and a viewer (ZSTD). Only
  the codec changes, so ClickHouse applies it to new parts and merges; no rewrite now.
- Parts capped by size for both tables a purge rewrites, so that one subject's purge
  rewrites a bounded amount whatever the table's size: beacons at 4 MiB (with the codecs,
  about 5.5 bytes a beacon: some 760k beacons a part, fewer than the old 32 MiB cap held at
  29 bytes; left at 32 MiB, the codecs would have made parts of 6 M beacons), the `views`
  rollup at 8 MiB (a month of views was one ever-growing part, rewritten whole by every
  purge). Smaller caps cost more: a mutation also spends a step on every other part of
  the table (bench/RESULTS.md, "Privacy requests"), so the parts' number must stay low.

Idempotent: MODIFY COLUMN and MODIFY SETTING state the result, not a change.
"""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 19
NAME = "beacon and rollup layout at scale: codecs, bounded parts"

_TIME = "CODEC(Delta, ZSTD(1))"
_ZSTD = "CODEC(ZSTD(1))"

# (column, type exactly as the table has it, codec)
_BEACON_CODECS = (
    ("event_id", "UUID", _ZSTD),
    ("received_at", "DateTime64(3, 'UTC')", _TIME),
    ("ts", "DateTime64(3, 'UTC')", _TIME),
    ("inserted_at", "DateTime64(3, 'UTC') DEFAULT now64(3)", _TIME),
    ("viewer_id", "String", _ZSTD),
    ("view_id", "String", _ZSTD),
    ("video_id", "String", _ZSTD),
    ("position_ms", "Nullable(UInt64)", _ZSTD),
    ("ip", "IPv6", _ZSTD),
    ("city", "String", _ZSTD),
    ("os_version", "String", _ZSTD),
    ("browser_version", "String", _ZSTD),
)

BEACON_PART_BYTES = 4 * 1024 * 1024
VIEWS_PART_BYTES = 8 * 1024 * 1024


def statements() -> tuple[str, ...]:
    modify = ", ".join(f"MODIFY COLUMN {name} {kind} {codec}" for name, kind, codec in _BEACON_CODECS)
    return (
        alter_table("viewer_events", modify),
        alter_table("viewer_events", f"MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = {BEACON_PART_BYTES}"),
        alter_table("views", f"MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = {VIEWS_PART_BYTES}"),
    )

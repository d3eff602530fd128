"""Migration 21: dense viewer ordinals and the per-day dashboard cube (issue #20, point 4).

Read from the `views` rollup, every 30-day figure visits each (value, viewer) pair of the
range, so its cost follows the views: 2.0-3.0x at ten times the data (bench/RESULTS.md,
"Dashboard queries"). `dashboard_cube` holds, per tenant, day, dimension and value, the
additive sums and two exact states, merged instead of the views: a Roaring bitmap of the
viewers and the startup times. Bitmaps are fast only over dense integers (random 32-bit
hashes made the same answers 5x slower), hence `viewer_ordinals`, one dense number per
viewer and tenant (analytics/ordinals.py), and the ordinal on each `views` row.

- `viewer_ordinals` maps a viewer id to a number, so it is personal data (registered for
  export, erasure and retention): a row lives a day past its viewer's retention from
  the last time the viewer was seen. Small granules: passes look viewers up by key.
- `views.viewer_ord`: 0 until a pass numbers the viewer (rows from before this migration
  are numbered by the first pass after it: analytics/ordinals.py `repair`); `folded_at`
  gets a minmax index so that a pass finds the rows it folded cheaply.
- `dashboard_cube` (analytics/cube.py) holds no viewer id, only the ordinals inside its
  bitmaps: rows expire with the shortest retention of the views they sum, and a day is
  rebuilt without a subject's views when they are erased. ZSTD: most of a row is small
  sums and bitmaps of a few numbers, which LZ4 hardly shrinks.

Idempotent: every statement is IF NOT EXISTS.
"""

from __future__ import annotations

from core.cluster import alter_table, create_table, engine

VERSION = 21
NAME = "viewer ordinals and the dashboard cube"


def statements() -> tuple[str, ...]:
    ordinals = create_table(
        "viewer_ordinals",
        """
        tenant_id LowCardinality(String),
        viewer_id String,
        ordinal UInt64,
        claimed_at DateTime64(3, 'UTC') DEFAULT now64(3),
        last_seen DateTime64(3, 'UTC'),
        retention_days UInt16,
        INDEX idx_claimed claimed_at TYPE minmax GRANULARITY 1
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'last_seen')} ORDER BY (tenant_id, viewer_id, ordinal)"
        " TTL toDateTime(last_seen) + toIntervalDay(retention_days + 1)"
        " SETTINGS index_granularity = 256",
    )
    cube = create_table(
        "dashboard_cube",
        """
        tenant_id LowCardinality(String),
        day Date,
        dim LowCardinality(String),
        value String,
        n_views UInt64 CODEC(ZSTD(1)),
        s_playing UInt64 CODEC(ZSTD(1)),
        s_watch UInt64 CODEC(ZSTD(1)),
        s_rebuffer UInt64 CODEC(ZSTD(1)),
        n_rebuffers UInt64 CODEC(ZSTD(1)),
        n_failed UInt64 CODEC(ZSTD(1)),
        n_exits UInt64 CODEC(ZSTD(1)),
        n_startups UInt64 CODEC(ZSTD(1)),
        n_anonymous UInt64 CODEC(ZSTD(1)),
        viewers AggregateFunction(groupBitmap, UInt64) CODEC(ZSTD(1)),
        startups AggregateFunction(quantilesExact(0.5, 0.95), Nullable(UInt32)) CODEC(ZSTD(1)),
        retention_days UInt16,
        built_at DateTime64(3, 'UTC') CODEC(ZSTD(1))
        """,
        f"ENGINE = {engine('MergeTree')} PARTITION BY toYYYYMM(day) ORDER BY (tenant_id, dim, day, value)"
        " TTL day + toIntervalDay(retention_days)",
    )
    return (
        ordinals,
        cube,
        alter_table("views", "ADD COLUMN IF NOT EXISTS viewer_ord UInt64 DEFAULT 0"),
        alter_table("views", "ADD INDEX IF NOT EXISTS idx_folded folded_at TYPE minmax GRANULARITY 1"),
        # Parts capped at 2 MiB are seldom merged again: index the ones there are.
        alter_table("views", "MATERIALIZE INDEX idx_folded SETTINGS mutations_sync = 2"),
    )

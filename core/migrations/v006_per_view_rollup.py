"""Migration 6: per-view rollup."""

from __future__ import annotations

from core.cluster import alter_table, create_table, engine

VERSION = 6
NAME = "per-view rollup"


def statements() -> tuple[str, ...]:
    # Per-view rollup for the dashboards (analytics/rollup.py folds beacons into it), and
    # the beacons' insert time, set by ClickHouse, so a fold pass finds what arrived since
    # the last one however late it was spooled (received_at is the edge's clock at receipt).
    views = create_table(
        "views",
        """
        tenant_id LowCardinality(String),
        day Date,
        video_id String,
        view_id String,
        viewer_id String,
        started_at DateTime64(3, 'UTC'),
        last_event_at DateTime64(3, 'UTC'),
        startup_ms Nullable(UInt32),
        playing_ms UInt64,
        rebuffer_ms UInt64,
        seeking_ms UInt64,
        rebuffers UInt32,
        played Bool,
        failed Bool,
        country LowCardinality(String),
        region LowCardinality(String),
        city String,
        os LowCardinality(String),
        browser LowCardinality(String),
        device LowCardinality(String),
        screen_w UInt16,
        screen_h UInt16,
        active_minutes Array(DateTime('UTC')),
        retention_days UInt16,
        folded_at DateTime64(3, 'UTC'),
        INDEX idx_viewer viewer_id TYPE bloom_filter GRANULARITY 4
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'folded_at')} PARTITION BY toYYYYMM(day)"
        " ORDER BY (tenant_id, day, video_id, view_id)"
        " TTL toDateTime(started_at) + toIntervalDay(retention_days)",
    )
    return (
        views,
        alter_table("viewer_events", "ADD COLUMN IF NOT EXISTS inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)"),
        alter_table("viewer_events", "ADD INDEX IF NOT EXISTS idx_inserted inserted_at TYPE minmax GRANULARITY 1"),
        # Rows from before this column get one fixed time (now), so they are folded once.
        alter_table("viewer_events", "MATERIALIZE COLUMN inserted_at SETTINGS mutations_sync = 2"),
        alter_table("viewer_events", "MATERIALIZE INDEX idx_inserted SETTINGS mutations_sync = 2"),
    )


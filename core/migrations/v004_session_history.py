"""Migration 4: session history."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 4
NAME = "session history"


def statements() -> tuple[str, ...]:
    # History of successful sessions (publishers and viewers): personal data, so it has a
    # retention TTL like viewer_events and is in the personal-data registry.
    sessions = create_table(
        "sessions",
        """
        session_id String,
        tenant_id LowCardinality(String),
        kind Enum8('publish' = 1, 'whep' = 2, 'hls' = 3),
        media_id String,
        endpoint String,
        ip IPv6,
        browser LowCardinality(String),
        os LowCardinality(String),
        started_at DateTime64(3, 'UTC'),
        ended_at DateTime64(3, 'UTC'),
        bytes_sent UInt64,
        retention_days UInt16,
        INDEX idx_ip ip TYPE bloom_filter GRANULARITY 4
        """,
        f"ENGINE = {engine('MergeTree')} PARTITION BY toYYYYMM(started_at)"
        " ORDER BY (tenant_id, started_at, media_id)"
        " TTL toDateTime(started_at) + toIntervalDay(retention_days)",
    )
    return (sessions,)


"""Migration 17: WebRTC viewer QoE measured by the edge (analytics/webrtc_qoe.py)."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 17
NAME = "webrtc viewer qoe samples"


def statements() -> tuple[str, ...]:
    # One row per WHEP viewer session, media kind and sampling instant: what the edge sent
    # and what the viewer's RTCP receiver reports said about it (loss, jitter, round trip).
    # `session_id` is random per session and appears nowhere else (not the WHEP Location,
    # not the session history), so a row names no one; `viewer_id` is filled only for a
    # viewer whose player presented a consented viewer id, which makes that row personal
    # data: the table is in the personal-data registry, with the tenant's events retention.
    return (create_table(
        "webrtc_samples",
        """
        tenant_id LowCardinality(String),
        stream_id String,
        session_id String,
        kind LowCardinality(String),
        ts DateTime64(3, 'UTC'),
        started_at DateTime64(3, 'UTC'),
        packets_sent UInt64,
        bytes_sent UInt64,
        packets_lost Nullable(Int64),
        fraction_lost Nullable(Float32),
        jitter_ms Nullable(Float32),
        rtt_ms Nullable(Float32),
        viewer_id String,
        retention_days UInt16,
        INDEX idx_viewer viewer_id TYPE bloom_filter GRANULARITY 4
        """,
        f"ENGINE = {engine('MergeTree')} PARTITION BY toYYYYMM(ts)"
        " ORDER BY (tenant_id, stream_id, ts, session_id)"
        " TTL toDateTime(ts) + toIntervalDay(retention_days)",
    ),)

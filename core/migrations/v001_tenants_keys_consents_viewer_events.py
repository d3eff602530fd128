"""Migration 1: tenants, keys, consents, viewer events."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 1
NAME = "tenants, keys, consents, viewer events"


def statements() -> tuple[str, ...]:
    tenants = create_table(
        "tenants",
        """
        tenant_id String,
        name String,
        region LowCardinality(String),
        retention_days UInt16,
        ip_mode Enum8('full' = 1, 'truncated' = 2, 'none' = 3),
        allowed_origins Array(String),
        drop_bots Bool DEFAULT true,
        created_at DateTime64(6, 'UTC'),
        updated_at DateTime64(6, 'UTC'),
        deleted Bool DEFAULT false
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'updated_at')} ORDER BY tenant_id",
    )
    api_keys = create_table(
        "api_keys",
        """
        key_hash String,
        tenant_id String,
        role LowCardinality(String),
        created_at DateTime64(6, 'UTC'),
        revoked Bool DEFAULT false,
        updated_at DateTime64(6, 'UTC')
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'updated_at')} ORDER BY key_hash",
    )
    # Append-only ledger: one row per grant and per withdrawal; the newest row decides.
    consents = create_table(
        "consents",
        """
        consent_id UUID,
        tenant_id LowCardinality(String),
        viewer_id String,
        email String DEFAULT '',
        action Enum8('grant' = 1, 'withdraw' = 2),
        purposes Array(LowCardinality(String)),
        policy_version String,
        ts DateTime64(6, 'UTC'),
        ip IPv6,
        browser LowCardinality(String),
        INDEX idx_email email TYPE bloom_filter GRANULARITY 4,
        INDEX idx_ip ip TYPE bloom_filter GRANULARITY 4
        """,
        # Monthly partitions let the consent cache's change feed ("rows since t") skip
        # everything but the newest partition.
        f"ENGINE = {engine('MergeTree')} PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, viewer_id, ts)",
    )
    viewer_events = create_table(
        "viewer_events",
        """
        tenant_id LowCardinality(String),
        event_id UUID,
        received_at DateTime64(3, 'UTC'),
        ts DateTime64(3, 'UTC'),
        type LowCardinality(String),
        viewer_id String,
        email String DEFAULT '',
        view_id String,
        video_id String,
        position_ms Nullable(UInt64),
        screen_w Nullable(UInt16),
        screen_h Nullable(UInt16),
        player_w Nullable(UInt16),
        player_h Nullable(UInt16),
        rendition_w Nullable(UInt16),
        rendition_h Nullable(UInt16),
        bitrate_kbps Nullable(UInt32),
        error_code String DEFAULT '',
        error_message String DEFAULT '',
        fatal Bool DEFAULT false,
        ip IPv6,
        country LowCardinality(String),
        region LowCardinality(String),
        region_code LowCardinality(String),
        city String,
        os LowCardinality(String),
        os_version String,
        browser LowCardinality(String),
        browser_version String,
        device LowCardinality(String),
        is_bot Bool,
        retention_days UInt16,
        INDEX idx_viewer viewer_id TYPE bloom_filter GRANULARITY 4,
        INDEX idx_email email TYPE bloom_filter GRANULARITY 4,
        INDEX idx_ip ip TYPE bloom_filter GRANULARITY 4
        """,
        f"ENGINE = {engine('MergeTree')} PARTITION BY toYYYYMM(ts)"
        " ORDER BY (tenant_id, toDate(ts), video_id, view_id, ts)"
        " TTL toDateTime(ts) + toIntervalDay(retention_days)"
        # Keeps the hashes of recent blocks so a retried insert (same token) is a no-op.
        " SETTINGS non_replicated_deduplication_window = 10000",
    )
    return (tenants, api_keys, consents, viewer_events)


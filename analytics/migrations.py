"""Every CREATE TABLE of the platform, as versioned, idempotent migrations.

All DDL lives here (DML stays with the module that owns the table) so that the engine and
cluster clause are decided in one place: embedded chDB and a single server get plain
MergeTree engines; with `WAVE_CLICKHOUSE_CLUSTER` set, the same migrations emit
`ON CLUSTER` and Replicated engines. Applied versions are recorded in
`schema_migrations`; every statement is `IF NOT EXISTS`, so two edges starting at once
converge instead of failing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from analytics.store import Store


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def _cluster() -> str:
    return os.environ.get("WAVE_CLICKHOUSE_CLUSTER", "")


def engine(kind: str, *args: str) -> str:
    """`MergeTree`-family engine; replicated when running on a cluster."""
    if _cluster():
        zk = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
        return f"Replicated{kind}({', '.join((zk, *args))})"
    return f"{kind}({', '.join(args)})"


def _on_cluster() -> str:
    return f" ON CLUSTER {_cluster()}" if _cluster() else ""


def create_table(name: str, body: str, tail: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {name}{_on_cluster()} (\n{body}\n) {tail}"


def alter_table(name: str, clauses: str) -> str:
    return f"ALTER TABLE {name}{_on_cluster()} {clauses}"


def _v1() -> tuple[str, ...]:
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


def _v2() -> tuple[str, ...]:
    # Live streams a tenant publishes; the publish token is a random secret kept as a hash.
    streams = create_table(
        "streams",
        """
        stream_id String,
        tenant_id String,
        name String,
        publish_token_hash String,
        playback Enum8('public' = 1, 'private' = 2),
        created_at DateTime64(6, 'UTC'),
        updated_at DateTime64(6, 'UTC'),
        deleted Bool DEFAULT false
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'updated_at')} ORDER BY (tenant_id, stream_id)",
    )
    return (streams,)


def _v3() -> tuple[str, ...]:
    # Recordings and uploads. Every change appends a row with a newer `updated_at`.
    videos = create_table(
        "videos",
        """
        video_id String,
        tenant_id String,
        title String,
        tags Array(String),
        metadata Map(String, String),
        source Enum8('recording' = 1, 'upload' = 2),
        stream_id String DEFAULT '',
        playback Enum8('public' = 1, 'private' = 2) DEFAULT 'public',
        status Enum8('recording' = 1, 'processing' = 2, 'ready' = 3, 'failed' = 4),
        progress Float32 DEFAULT 0,
        reason String DEFAULT '',
        duration_s Float64 DEFAULT 0,
        width UInt16 DEFAULT 0,
        height UInt16 DEFAULT 0,
        video_codec String DEFAULT '',
        audio_codec String DEFAULT '',
        size_bytes UInt64 DEFAULT 0,
        created_at DateTime64(6, 'UTC'),
        updated_at DateTime64(6, 'UTC'),
        deleted Bool DEFAULT false
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'updated_at')} ORDER BY (tenant_id, video_id)",
    )
    return (videos,)


def _v4() -> tuple[str, ...]:
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


def _v5() -> tuple[str, ...]:
    # What the player's consent prompt shows: the tenant's own words and policy version
    # (a new version asks every viewer again), and whether viewers are identified by email.
    return (
        alter_table(
            "tenants",
            "ADD COLUMN IF NOT EXISTS consent_text String DEFAULT '',"
            " ADD COLUMN IF NOT EXISTS policy_version String DEFAULT '1',"
            " ADD COLUMN IF NOT EXISTS identified_viewers Bool DEFAULT false",
        ),
    )


def _v6() -> tuple[str, ...]:
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


def _v7() -> tuple[str, ...]:
    # The purge ledger: what was erased, for whom, when and how much, naming the subject
    # only by salted hashes (so a restore can erase it again without knowing who it was).
    purges = create_table(
        "purges",
        """
        purge_id String,
        tenant_id String,
        kind LowCardinality(String),
        subject_hashes Array(String),
        requested_by String,
        requested_at DateTime64(3, 'UTC'),
        rows_deleted String,
        status LowCardinality(String)
        """,
        f"ENGINE = {engine('MergeTree')} ORDER BY (requested_at, tenant_id)",
    )
    # The audit log: append-only; who (a key id, never the key), what, when, from where,
    # outcome. Admins' addresses are personal data: it is in the registry with its own TTL.
    audit_log = create_table(
        "audit_log",
        """
        ts DateTime64(3, 'UTC'),
        tenant_id LowCardinality(String),
        actor String,
        actor_kind LowCardinality(String),
        action String,
        params String,
        before String,
        after String,
        ip IPv6,
        status UInt16,
        retention_days UInt16,
        INDEX idx_ip ip TYPE bloom_filter GRANULARITY 4
        """,
        f"ENGINE = {engine('MergeTree')} PARTITION BY toYYYYMM(ts) ORDER BY (tenant_id, ts)"
        " TTL toDateTime(ts) + toIntervalDay(retention_days)",
    )
    return (purges, audit_log)


def _v8() -> tuple[str, ...]:
    # Retention per kind of data (retention/policy.py); `retention_days` stays the viewer
    # events' (and the per-view rollup's).
    return (
        alter_table(
            "tenants",
            "ADD COLUMN IF NOT EXISTS sessions_days UInt16 DEFAULT 395,"
            " ADD COLUMN IF NOT EXISTS consents_days UInt16 DEFAULT 425,"
            " ADD COLUMN IF NOT EXISTS audit_days UInt16 DEFAULT 400,"
            " ADD COLUMN IF NOT EXISTS server_logs_days UInt16 DEFAULT 30",
        ),
    )


def _v9() -> tuple[str, ...]:
    # A tenant's grants of read access to the operator's support staff (retention/support.py).
    grants = create_table(
        "support_grants",
        """
        grant_id String,
        tenant_id String,
        granted_by String,
        created_at DateTime64(3, 'UTC'),
        expires_at DateTime64(3, 'UTC'),
        revoked Bool DEFAULT false,
        updated_at DateTime64(3, 'UTC')
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'updated_at')} ORDER BY (tenant_id, grant_id)",
    )
    return (grants,)


def _v10() -> tuple[str, ...]:
    # Erasure rewrites every part that holds a subject's rows (retention/deletion.py), so
    # the size of those parts is a purge's cost: uncapped, a month merged into one part of
    # millions of beacons and a purge took 3-4 s at 10 M. Capped at 32 MiB (about 1 M
    # beacons), a purge rewrites at most a few such parts (0.5-1 s; bench/RESULTS.md). The
    # price is more parts per month: about volume / 32 MiB, far below the 1,000 at which
    # ClickHouse delays inserts until a month holds some 30 GB of compressed beacons.
    return (
        alter_table("viewer_events", f"MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = {32 * 1024 * 1024}"),
    )


def _v11() -> tuple[str, ...]:
    # Issue #14: a link between a viewer id and an e-mail must be provable. `email_proof`
    # says how a consent row's e-mail was proven ('token': an identity token the tenant's
    # server signed); rows written before it have '' and are not followed by exports and
    # purges by e-mail. `identity_version` is bumped to rotate a tenant's identity secret.
    return (
        alter_table("consents", "ADD COLUMN IF NOT EXISTS email_proof LowCardinality(String) DEFAULT ''"),
        alter_table("tenants", "ADD COLUMN IF NOT EXISTS identity_version UInt32 DEFAULT 1"),
    )


def _v12() -> tuple[str, ...]:
    # Dashboard sessions ended by signing out (analytics/admin_sessions.py); a row lives as
    # long as the cookie it cancels.
    ended = create_table(
        "admin_sessions_ended",
        """
        session_id String,
        ended_at DateTime64(3, 'UTC'),
        expires_at DateTime('UTC')
        """,
        f"ENGINE = {engine('MergeTree')} ORDER BY session_id TTL expires_at",
    )
    return (ended,)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tenants, keys, consents, viewer events", _v1()),
    Migration(2, "streams", _v2()),
    Migration(3, "videos", _v3()),
    Migration(4, "session history", _v4()),
    Migration(5, "tenants' consent prompt", _v5()),
    Migration(6, "per-view rollup", _v6()),
    Migration(7, "purge ledger and audit log", _v7()),
    Migration(8, "retention per kind of data", _v8()),
    Migration(9, "support grants", _v9()),
    Migration(10, "beacon parts small enough to purge quickly", _v10()),
    Migration(11, "provable e-mail links, identity secret rotation", _v11()),
    Migration(12, "dashboard sign-outs", _v12()),
)


def apply(store: Store) -> list[int]:
    """Apply what is missing, in order; returns the versions applied now."""
    store.command(
        create_table(
            "schema_migrations",
            "version UInt32, name String, applied_at DateTime64(6, 'UTC')",
            f"ENGINE = {engine('ReplacingMergeTree', 'applied_at')} ORDER BY version",
        )
    )
    done = {row[0] for row in store.rows("SELECT version FROM schema_migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            store.command(statement)
        store.command(
            "INSERT INTO schema_migrations (version, name, applied_at)"
            " VALUES ({v:UInt32}, {n:String}, now64(6))",
            parameters={"v": migration.version, "n": migration.name},
        )
        applied.append(migration.version)
    return applied

"""Migration 7: purge ledger and audit log."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 7
NAME = "purge ledger and audit log"


def statements() -> tuple[str, ...]:
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


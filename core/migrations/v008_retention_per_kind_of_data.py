"""Migration 8: retention per kind of data."""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 8
NAME = "retention per kind of data"


def statements() -> tuple[str, ...]:
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


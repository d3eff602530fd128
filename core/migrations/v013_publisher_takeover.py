"""Migration 13: a tenant's choice of publisher takeover."""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 13
NAME = "publisher takeover per tenant"


def statements() -> tuple[str, ...]:
    # 'idle': a new publish replaces one that has sent no media for WAVE_PUBLISH_TAKEOVER_S;
    # 'newest': any new authenticated publish replaces the current one (MediaMTX's default).
    return (alter_table("tenants", "ADD COLUMN IF NOT EXISTS publisher_takeover LowCardinality(String) DEFAULT 'idle'"),)

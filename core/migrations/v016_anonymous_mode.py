"""Migration 16: the consent-free anonymous mode (analytics/anonymous.py)."""

from __future__ import annotations

from core.cluster import alter_table, create_table, engine

VERSION = 16
NAME = "anonymous mode"


def statements() -> tuple[str, ...]:
    return (
        # `consent_mode`: 'opt-in' (a recorded consent before any beacon) or 'anonymous' (no
        # consent asked; a daily-rotating hash is the only viewer key, no IP, coarse data).
        # `grants_valid_from_ms`: consents given before this instant do not count (set when a
        # tenant switches back to opt-in, so every viewer is asked again).
        alter_table(
            "tenants",
            "ADD COLUMN IF NOT EXISTS consent_mode LowCardinality(String) DEFAULT 'opt-in',"
            " ADD COLUMN IF NOT EXISTS grants_valid_from_ms Int64 DEFAULT 0",
        ),
        # The salt of each day (UTC) that anonymous viewer keys are hashed with, shared by
        # every edge of the region so they count the same viewer once. One partition per
        # day, dropped as soon as the day is over (analytics/anonymous.py); with
        # old_parts_lifetime = 0 the dropped part's files go at once, so the salt is gone
        # from disk, not only from queries. The TTL is only a backstop for a store no edge
        # opened since (an edge drops past days at start-up too).
        create_table(
            "anonymous_salts",
            """
            day Date,
            salt String,
            created_at DateTime64(3, 'UTC')
            """,
            f"ENGINE = {engine('MergeTree')} PARTITION BY day ORDER BY (day, salt)"
            " TTL day + INTERVAL 2 DAY SETTINGS old_parts_lifetime = 0",
        ),
    )

"""Migration 5: tenants' consent prompt."""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 5
NAME = "tenants' consent prompt"


def statements() -> tuple[str, ...]:
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


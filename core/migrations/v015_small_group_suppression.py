"""Migration 15: a tenant's small-group threshold (analytics/suppression.py)."""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 15
NAME = "k-anonymity per tenant"


def statements() -> tuple[str, ...]:
    # Breakdown rows and filtered figures under this many unique viewers are never shown
    # on their own (folded into "other" or refused); 5 unless the tenant chose otherwise.
    return (alter_table("tenants", "ADD COLUMN IF NOT EXISTS k_anonymity UInt16 DEFAULT 5"),)

"""Migration 18: a tenant's live rendition ladder (edge/streaming/renditions.py)."""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 18
NAME = "live rendition ladder per tenant"


def statements() -> tuple[str, ...]:
    # Heights of the lower live renditions encoded beside the source (each only when the
    # source is taller); empty = the source alone. 360p unless the tenant chose otherwise.
    return (alter_table("tenants", "ADD COLUMN IF NOT EXISTS live_ladder Array(UInt16) DEFAULT [360]"),)

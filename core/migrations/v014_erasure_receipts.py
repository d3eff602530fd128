"""Migration 14: signed erasure receipts (retention/receipts.py)."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 14
NAME = "erasure receipts"


def statements() -> tuple[str, ...]:
    # One signed receipt per purge or offboarding, as issued (canonical JSON). The subject
    # is in it only as a hash salted per tenant, so the table has no subject column and is
    # not in the personal-data registry: it is proof, kept like the purge ledger.
    return (create_table(
        "receipts",
        """
        purge_id String,
        tenant_id String,
        issued_at DateTime64(3, 'UTC'),
        receipt String
        """,
        f"ENGINE = {engine('MergeTree')} ORDER BY (tenant_id, purge_id)",
    ),)

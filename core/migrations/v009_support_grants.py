"""Migration 9: support grants."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 9
NAME = "support grants"


def statements() -> tuple[str, ...]:
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


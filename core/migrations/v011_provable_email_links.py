"""Migration 11: provable e-mail links, identity secret rotation."""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 11
NAME = "provable e-mail links, identity secret rotation"


def statements() -> tuple[str, ...]:
    # Issue #14: a link between a viewer id and an e-mail must be provable. `email_proof`
    # says how a consent row's e-mail was proven ('token': an identity token the tenant's
    # server signed); rows written before it have '' and are not followed by exports and
    # purges by e-mail. `identity_version` is bumped to rotate a tenant's identity secret.
    return (
        alter_table("consents", "ADD COLUMN IF NOT EXISTS email_proof LowCardinality(String) DEFAULT ''"),
        alter_table("tenants", "ADD COLUMN IF NOT EXISTS identity_version UInt32 DEFAULT 1"),
    )


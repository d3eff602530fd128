"""Deleting rows for good: the one way purges, replays and offboarding remove data.

A synchronous mutation (`ALTER TABLE ... DELETE ... mutations_sync = 2`) rewrites the parts
that held the rows without them, so they are physically gone when it returns, not merely
hidden (a lightweight DELETE then `APPLY DELETED MASK` did the same with two rewrites).
Its cost is rewriting those parts (beacon parts are capped at 32 MiB for this, migration
10) plus a hard-link clone of every other part of the table (README, "Erasure").
The retention enforcer batches differently on purpose: one lightweight DELETE per tenant
and one rewrite per table for all of them.
"""

from __future__ import annotations

from core import cluster
from core.store import Store


def delete_where(store: Store, table: str, where: str, parameters: dict) -> int:
    """Count the rows `where` selects and, if any, delete them physically; returns the count."""
    found = int(store.command(f"SELECT count() FROM {table} WHERE {where}", parameters=parameters))
    if found:
        store.command(cluster.alter_table(table, f"DELETE WHERE {where} SETTINGS mutations_sync = 2"),
                      parameters=parameters)
    return found

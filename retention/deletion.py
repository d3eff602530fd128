"""Deleting rows for good: the one way purges, replays and offboarding remove data.

On the embedded store the parts that hold the rows of a table of many parts are rewritten
without them and swapped in (retention/part_rewrite.py): the cost is those parts alone,
whatever the size of the table. Elsewhere (a server or a cluster: shared by several
edges, parts replicated), and for a table of few parts, a synchronous mutation (`ALTER
TABLE ... DELETE ... mutations_sync = 2`) rewrites the parts that held the rows without
them, so they are physically gone when it returns, not merely hidden (a lightweight
DELETE then `APPLY DELETED MASK` did the same with two rewrites). Its cost is rewriting
those parts plus a hard-link clone of every other part of the table, `IN PARTITION` or
not (bench/RESULTS.md, "Privacy requests").
The retention enforcer batches differently on purpose: one lightweight DELETE per tenant
and one rewrite per table for all of them.

The statements come from `core.cluster` (on a cluster: the local tables, `ON CLUSTER`).
"""

from __future__ import annotations

from core import cluster
from core.store import Store
from retention import part_rewrite

# Up to this many active parts, a table's rows go by mutation even on the embedded store:
# its step over each part (5 ms a part at 11 parts) costs less than the rewrite's own dozen
# statements (about 50 ms), as for consents and sessions; past it, the rewrite of only
# the parts holding the rows wins (bench/RESULTS.md, "Privacy requests").
MUTATION_MAX_PARTS = 8

# Up to this many partitions, a mutation per partition (each prunes the others); past it,
# one mutation for the table (fewer round trips through the cluster's DDL queue).
MAX_PRUNED_PARTITIONS = 4


def matching_partitions(store: Store, table: str, where: str, parameters: dict) -> tuple[int, list[str | None]]:
    """How many rows `where` selects, and the partitions a mutation should name to reach
    them: their ids when they are few and the table is partitioned, else `[None]` (the
    whole table), and `[]` when there is nothing to do."""
    rows = store.rows(f"SELECT _partition_id, count() FROM {table} WHERE {where} GROUP BY _partition_id"
                      " ORDER BY _partition_id", parameters)
    found = sum(int(n) for _, n in rows)
    if not found:
        return 0, []
    partitions = [str(p) for p, _ in rows]
    if len(partitions) > MAX_PRUNED_PARTITIONS or partitions == ["all"]:  # "all": not partitioned
        return found, [None]
    return found, partitions


def _parts(store: Store, table: str) -> int:
    return int(store.command("SELECT count() FROM system.parts WHERE database = currentDatabase()"
                             " AND table = {t:String} AND active", {"t": table}))


def delete_where(store: Store, table: str, where: str, parameters: dict) -> int:
    """Count the rows `where` selects and, if any, delete them physically; returns the count."""
    if store.embedded and not cluster.cluster() and _parts(store, table) > MUTATION_MAX_PARTS:
        return part_rewrite.delete_rows(store, table, where, parameters)
    with part_rewrite.no_rewrite_running():  # a mutation made mid-rewrite would miss its new parts
        found, partitions = matching_partitions(store, table, where, parameters)
        for partition in partitions:
            store.command(cluster.delete_rows(table, where, partition) + " SETTINGS mutations_sync = 2",
                          parameters=parameters)
    return found

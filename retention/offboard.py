"""Tenant offboarding: when a contract ends, every row and every media file of the tenant go.

Every table with a `tenant_id` column is found in ClickHouse's own catalogue (not a list
kept by hand, so a new table cannot be forgotten), with every table of the personal-data
registry (by its own tenant column), and cleared of the tenant, physically, after its
media files were deleted (by the edge: `RetentionHooks.delete_tenant_media`, first, since
the rows are what lists the files). Two records stay, by design: one
audit record saying the tenant existed and was deleted (its earlier audit rows go), and a
purge-ledger row of kind `tenant`, so restoring an older backup deletes the tenant again.
"""

from __future__ import annotations

import json
import time

from core import cluster
from core.store import Store
from retention import audit, part_rewrite, registry
from retention.deletion import delete_where
from retention.hooks import MediaDeleted

KEEP = ("audit_log", "purges", "receipts")  # the records that prove what was deleted


def tenant_tables(store: Store) -> list[str]:
    catalogue = {r[0] for r in store.rows(
        "SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'tenant_id'"
        " AND table NOT LIKE '.inner%'") if not cluster.is_local(r[0])  # a cluster's tables by the names queried
        and not r[0].endswith(part_rewrite.SCRATCH_SUFFIX)}  # an erasure's copy, while one runs
    return sorted(catalogue | {entry.table for entry in registry.REGISTRY})


def _tenant_column(table: str) -> str:
    entry = registry.by_table().get(table)
    return entry.tenant_column if entry is not None else "tenant_id"


def _rows(store: Store, table: str, tenant_id: str) -> int:
    return int(store.command(f"SELECT count() FROM {table} WHERE {_tenant_column(table)} = {{t:String}}"
                             " SETTINGS apply_deleted_mask = 0", parameters={"t": tenant_id}))


def erase_rows(store: Store, tenant_id: str, tables: list[str]) -> dict[str, int]:
    return {table: delete_where(store, table, f"{_tenant_column(table)} = {{t:String}}", {"t": tenant_id})
            for table in tables}


def delete_tenant(store: Store, tenant_id: str, media: MediaDeleted, actor: str) -> dict:
    """Erase the tenant everywhere, verify (its media already deleted, by the runner's
    hooks), and leave the two records that must stay."""
    return delete_tenant_counted(store, tenant_id, media, actor)[0]


def delete_tenant_counted(store: Store, tenant_id: str, media: MediaDeleted, actor: str) -> tuple[dict, dict, float]:
    """`delete_tenant`, also returning each table's physical count after (deleted-rows
    mask off) and when it was done, for the receipt."""
    tables = tenant_tables(store)
    deleted = erase_rows(store, tenant_id, tables)
    after = {t: _rows(store, t, tenant_id) for t in tables}
    left = {t: n for t, n in after.items() if n}
    if left or media.left:
        raise RuntimeError(f"tenant data still present: rows {left}, media {media.left}")
    now = time.time()
    store.insert_json_lines("purges", json.dumps({
        "purge_id": f"tenant-{tenant_id}", "tenant_id": tenant_id, "kind": "tenant", "subject_hashes": [],
        "requested_by": actor, "requested_at": now, "rows_deleted": json.dumps(deleted), "status": "completed",
    }).encode() + b"\n")
    summary = {"tenant_id": tenant_id, "rows_deleted": deleted, "videos_deleted": media.videos}
    audit.write(store, audit.row(tenant_id, actor, "operator", "tenant deleted", after={"deleted": True}, ts=now))
    return summary, after, now

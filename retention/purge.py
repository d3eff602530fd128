"""Erasure: every row about a subject, in every registered table of a tenant, gone for good.

For each table of the registry: count the subject's rows, then delete them with a
synchronous mutation (`ALTER TABLE ... DELETE ... mutations_sync = 2`), which rewrites the
parts that held them, so the rows are physically gone, not merely hidden; then count
again with the deleted-rows mask off (`apply_deleted_mask = 0`): a purge that finds
anything left fails loudly instead of reporting success. Other rows are never touched:
the same parts are rewritten without the subject's rows.

The purge ledger keeps the outcome with the subject as salted hashes only; `replay`
erases again, from a restored backup, every subject purged after that backup was taken.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field

from analytics import cube
from core.store import Store
from retention import registry, subjects
from retention.deletion import delete_where
from retention.registry import PersonalTable
from retention.subjects import Subject


class PurgeIncomplete(RuntimeError):
    """Rows of the subject were still found after deleting them."""


@dataclass
class PurgeResult:
    purge_id: str
    status: str
    rows_deleted: dict[str, int]  # the rows found, and deleted, per registered table
    requested_at: float
    # What the receipt states (retention/receipts.py): the physical count per table after
    # the delete, the deleted-rows mask off (zero, or the purge would have failed), the
    # subject with its links resolved, and when the work was done.
    rows_after: dict[str, int] = field(default_factory=dict)
    completed_at: float = 0.0
    subject: Subject | None = None
    receipt: dict | None = None


def _count(store: Store, table: PersonalTable, tenant_id: str, subject: Subject, physical: bool = False) -> int:
    cond = subject.condition(table)
    if cond is None:
        return 0
    sql, params = cond
    settings = " SETTINGS apply_deleted_mask = 0" if physical else ""
    return int(store.command(
        f"SELECT count() FROM {table.table} WHERE {table.tenant_column} = {{tenant:String}} AND {sql}{settings}",
        parameters={"tenant": tenant_id, **params},
    ))


def erase(store: Store, tenant_id: str, subject: Subject) -> dict[str, int]:
    """Delete the subject's rows from every registered table; verify none is left."""
    return erase_counted(store, tenant_id, subject)[0]


def erase_counted(store: Store, tenant_id: str, subject: Subject) -> tuple[dict[str, int], dict[str, int]]:
    """`erase`, also returning each table's physical count after (deleted-rows mask off)."""
    deleted: dict[str, int] = {}
    views_cond = subject.condition(registry.by_table()["views"])
    cube_days = cube.subject_days(store, tenant_id, *views_cond) if views_cond else []
    for table in registry.REGISTRY:
        cond = subject.condition(table)
        if cond is None:
            deleted[table.table] = 0
            continue
        sql, params = cond
        deleted[table.table] = delete_where(store, table.table, f"{table.tenant_column} = {{tenant:String}} AND {sql}",
                                            {"tenant": tenant_id, **params})
    cube.forget(store, tenant_id, cube_days)  # after the views: no build can take them in again
    after = {t.table: _count(store, t, tenant_id, subject, physical=True) for t in registry.REGISTRY}
    left = {table: n for table, n in after.items() if n}
    if left:
        raise PurgeIncomplete(f"rows still present after the purge: {left}")
    return deleted, after


def record(store: Store, tenant_id: str, subject: Subject, secret: bytes, requested_by: str,
           deleted: dict[str, int], requested_at: float) -> str:
    purge_id = "pg_" + secrets.token_hex(8)
    store.insert_json_lines("purges", json.dumps({
        "purge_id": purge_id, "tenant_id": tenant_id, "kind": subject.kind,
        "subject_hashes": subjects.hashes(subject, secret), "requested_by": requested_by,
        "requested_at": requested_at, "rows_deleted": json.dumps(deleted), "status": "completed",
    }).encode() + b"\n")
    return purge_id


def purge(store: Store, tenant_id: str, subject: Subject, secret: bytes, requested_by: str,
          requested_at: float | None = None) -> PurgeResult:
    """Erase, verify, and write the ledger (in that order: the ledger states a fact)."""
    requested_at = time.time() if requested_at is None else requested_at
    subject = subjects.with_links(store, tenant_id, subject)
    deleted, after = erase_counted(store, tenant_id, subject)
    purge_id = record(store, tenant_id, subject, secret, requested_by, deleted, requested_at)
    return PurgeResult(purge_id, "completed", deleted, requested_at, after, time.time(), subject)


def replay(store: Store, secret: bytes, since: float) -> dict[str, int]:
    """After a restore: erase again every subject purged at or after `since` (the backup's
    time), matching the ledger's salted hashes against each subject column."""
    from retention import offboard

    rows = store.rows(
        "SELECT tenant_id, kind, subject_hashes FROM purges WHERE requested_at >= {since:DateTime64(3)}",
        {"since": float(since)},  # an int would be bound as "0", which DateTime64 refuses
    )
    by_tenant: dict[str, set[str]] = {}
    erased: dict[str, int] = {}
    gone_tenants = {tenant_id for tenant_id, kind, _ in rows if kind == "tenant"}
    tables = [t for t in offboard.tenant_tables(store) if t not in offboard.KEEP]
    for tenant_id in gone_tenants:  # offboarded since the backup: all of it, again
        for table, n in offboard.erase_rows(store, tenant_id, tables).items():
            erased[table] = erased.get(table, 0) + n
    for tenant_id, kind, hashes in rows:
        if tenant_id not in gone_tenants:
            by_tenant.setdefault(tenant_id, set()).update(hashes)
    salt = subjects.salt(secret)
    for tenant_id, hashes in by_tenant.items():
        params = {"tenant": tenant_id, "hashes": sorted(hashes), "salt": salt}

        def matches(table: PersonalTable) -> str:
            return " OR ".join(f"{subjects.hash_sql(c)} IN {{hashes:Array(String)}}" for c in table.subject_columns)

        cube_days = cube.subject_days(store, tenant_id, matches(registry.by_table()["views"]), params)
        for table in registry.REGISTRY:
            where = f"{table.tenant_column} = {{tenant:String}} AND ({matches(table)})"
            erased[table.table] = erased.get(table.table, 0) + delete_where(store, table.table, where, params)
        cube.forget(store, tenant_id, cube_days)
    return erased

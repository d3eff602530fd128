"""Retention per tenant and kind of data, applied to rows already stored, and enforced.

Each table with personal data carries a per-row `retention_days` and a ClickHouse TTL on
it (`ts + retention_days`), so expiry needs no job to run. Changing a tenant's setting
rewrites that column for its stored rows (`ALTER TABLE ... UPDATE`, a mutation), so the
new period applies to old rows too, longer or shorter; a TTL only drops rows at a merge,
so the enforcer (`wave-edge retention enforce`, and hourly in the server) deletes what is
past its period explicitly and applies the deleted-rows mask: expired means gone, not
"gone at some merge".

Consents are kept as long as they prove the consent behind stored data, and no longer: a
consent record older than `consents_days` is deleted unless it is the viewer's latest and
the viewer still has beacons within that period (then it is the proof still in use).
Audit records follow `audit_days`. `server_logs_days` is stored for the operator's log
shipping: the edge itself writes no log lines holding personal data (no access log; the
front's hand-off files are consumed and deleted within seconds), so it has none to expire.
"""

from __future__ import annotations

import datetime as dt
import time

import msgspec

from analytics import cube
from core import cluster
from core.store import Store
from core.tenants import Tenant, all_tenant_ids, load_tenant, save_tenant
from retention import audit, deletion, part_rewrite, registry

# Setting name (the API's and the CLI's) -> the tenant field holding its days. Which tables
# each one governs is said once, by the registry's `retention_kind`; `server_logs_days`
# governs none here (it is for the operator's log shipping).
KINDS = {
    "viewer_events_days": "retention_days",
    "sessions_days": "sessions_days",
    "consents_days": "consents_days",
    "audit_days": "audit_days",
    "server_logs_days": "server_logs_days",
}


def _field_of(retention_kind: str) -> str:
    """The tenant field of a registry entry's kind; a kind that is no setting is a bug in
    the registry, said plainly (tests/test_schema.py checks every entry)."""
    try:
        return KINDS[retention_kind]
    except KeyError:
        raise ValueError(f"retention kind {retention_kind!r} is not one of {sorted(KINDS)}") from None


def settings_of(tenant: Tenant) -> dict:
    return {name: getattr(tenant, field) for name, field in KINDS.items()} | {"ip_mode": tenant.ip_mode}


def apply(store: Store, tenant: Tenant, changes: dict) -> tuple[dict, dict]:
    """Store new settings and rewrite stored rows' retention; returns (before, after)."""
    before = settings_of(tenant)
    fields = {KINDS[name]: value for name, value in changes.items() if name in KINDS}
    if "ip_mode" in changes:
        fields["ip_mode"] = changes["ip_mode"]
    updated = msgspec.structs.replace(tenant, **fields)
    save_tenant(store, updated)
    with part_rewrite.no_rewrite_running():  # its UPDATEs must reach the parts an erasure moves in
        _rewrite_retention(store, tenant, updated)
    return before, settings_of(updated)


def _rewrite_retention(store: Store, tenant: Tenant, updated: Tenant) -> None:
    for entry in registry.REGISTRY:
        field = _field_of(entry.retention_kind)
        if entry.row_ttl and getattr(updated, field) != getattr(tenant, field):
            store.command(
                cluster.update_rows(entry.table, "retention_days = {days:UInt16}",
                                    f"{entry.tenant_column} = {{t:String}} AND retention_days != {{days:UInt16}}"),
                parameters={"days": getattr(updated, field), "t": tenant.tenant_id},
            )


def enforce(store: Store, now: float | None = None) -> dict[str, int]:
    """Delete every row past its tenant's period, physically; returns rows deleted per table."""
    with part_rewrite.no_rewrite_running():  # its mutations must reach the parts an erasure moves in
        return _enforce(store, time.time() if now is None else now)


def _enforce(store: Store, now: float) -> dict[str, int]:
    deleted: dict[str, int] = {}
    touched: dict[str, set[str | None]] = {}  # table -> partitions whose mask to apply
    for tenant_id in all_tenant_ids(store):
        tenant = load_tenant(store, tenant_id)
        if tenant is None:
            continue
        for entry in registry.REGISTRY:
            cutoff = now - getattr(tenant, _field_of(entry.retention_kind)) * 86400
            where = f"{entry.tenant_column} = {{t:String}} AND {entry.time_column} < {{cutoff:DateTime64(3)}}"
            if entry.kept_past_period:
                where += f" AND NOT ({entry.kept_past_period})"
            params = {"t": tenant_id, "cutoff": float(cutoff)}
            n = _delete_expired(store, entry.table, where, params, touched)
            deleted[entry.table] = deleted.get(entry.table, 0) + n
            if entry.table == "views" and n:  # the cube's days that summed them go too
                cube.forget_through(store, tenant_id, dt.datetime.fromtimestamp(cutoff, dt.timezone.utc).date())
    # Audit rows no tenant owns (operator calls, refused anonymous calls) have their own period.
    where = "tenant_id = '' AND ts < {cutoff:DateTime64(3)}"
    params = {"cutoff": float(now - audit.ORPHAN_RETENTION_DAYS * 86400)}
    n = _delete_expired(store, "audit_log", where, params, touched)
    deleted["audit_log"] = deleted.get("audit_log", 0) + n
    for table, partitions in touched.items():
        # One rewrite per partition touched; of the whole table if a DELETE named none or
        # the tenants' expired rows sat in many partitions.
        whole = None in partitions or len(partitions) > deletion.MAX_PRUNED_PARTITIONS
        for partition in [None] if whole else sorted(partitions):
            store.command(cluster.apply_deleted_mask(table, partition) + " SETTINGS mutations_sync = 2")
    return deleted


def _delete_expired(store: Store, table: str, where: str, params: dict, touched: dict[str, set[str | None]]) -> int:
    """Mask the expired rows (a lightweight DELETE per partition they sit in, months mostly)
    and note the partitions whose deleted-rows mask `enforce` then applies."""
    n, partitions = deletion.matching_partitions(store, table, where, params)
    for partition in partitions:
        store.command(cluster.delete_from(table, where, partition) + " SETTINGS lightweight_deletes_sync = 2",
                      parameters=params)
        touched.setdefault(table, set()).add(partition)
    return n

"""A new personal-data table is one registry entry plus its migration: purge, export,
retention (settings, enforcer), e-mail links and offboarding reach it with no other change.

The test plays that change: a throwaway table created in the store (the "migration") and
one `PersonalTable` appended to the registry, nothing else, then runs the retention
service and the policy over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from retention import policy, registry
from retention.hooks import MediaDeleted
from retention.registry import PersonalTable
from retention.service import RetentionService
from retention.subjects import Subject, parse
from tests.conftest import wait_for

DAY = 86400


class NoHooks:
    """Nothing held outside the tables (the smallest `RetentionHooks`)."""

    async def forget_subject(self, tenant_id, subject):
        pass

    async def drain_buffers(self):
        return True

    def spooled(self, needles):
        return False

    def hold_rollup(self):
        return contextlib.nullcontext()

    async def end_tenant_sessions(self, tenant_id):
        pass

    def delete_tenant_media(self, tenant_id):
        return MediaDeleted(0)

    def forget_tenant(self, tenant_id):
        pass


@pytest.fixture
def new_table(store, monkeypatch):
    """The two steps of adding a personal-data table: its CREATE TABLE and its entry."""
    name = "wishlist_" + uuid.uuid4().hex[:8]
    store.command(
        f"CREATE TABLE {name} (tenant_id String, viewer_id String, email String, proof String, ip IPv6,"
        " ts DateTime64(3, 'UTC'), item String, retention_days UInt16)"
        " ENGINE = MergeTree ORDER BY (tenant_id, ts) TTL toDateTime(ts) + toIntervalDay(retention_days)")
    entry = PersonalTable(name, ("viewer_id", "email", "ip"), "sessions_days",
                          links_email_to_viewer="proof = 'signed'")
    monkeypatch.setattr(registry, "REGISTRY", (*registry.REGISTRY, entry))
    try:
        yield name
    finally:  # the schema test must not find an unregistered table after this one
        store.command(f"DROP TABLE IF EXISTS {name} SYNC")


def _insert(store, table, tenant_id, viewer_id, *, email="", proof="", ip="::", age_days=0.0, item="x"):
    store.command(
        f"INSERT INTO {table} VALUES ({{t:String}}, {{v:String}}, {{e:String}}, {{p:String}}, toIPv6({{ip:String}}),"
        " fromUnixTimestamp64Milli(toInt64({ms:Int64})), {i:String}, 395)",
        parameters={"t": tenant_id, "v": viewer_id, "e": email, "p": proof, "ip": ip, "i": item,
                    "ms": int((time.time() - age_days * DAY) * 1000)})


def _rows(store, table, tenant_id, where="1"):
    return int(store.command(f"SELECT count() FROM {table} WHERE tenant_id = {{t:String}} AND {where}"
                             " SETTINGS apply_deleted_mask = 0", parameters={"t": tenant_id}))


def test_a_registered_table_is_reached_by_export_purge_retention_links_and_offboarding(store, tenant_factory,
                                                                                          new_table):
    tenant, _ = tenant_factory()
    tid = tenant.tenant_id
    service = RetentionService(store, b"test-secret", NoHooks())
    # ann's viewer id "ann-v" is proven hers by the new table itself; an unproven row
    # naming her e-mail on "eve-v" links nothing.
    _insert(store, new_table, tid, "ann-v", email="ann@example.org", proof="signed", item="book")
    _insert(store, new_table, tid, "ann-v", ip="::ffff:203.0.113.7", item="lamp")
    _insert(store, new_table, tid, "ann-v", age_days=100, item="old")
    _insert(store, new_table, tid, "eve-v", email="ann@example.org", item="forged")
    _insert(store, new_table, tid, "bob-v", item="kept")

    # Access: the table is in the export, with the proven link followed and no further.
    linked, data = asyncio.run(service.export(tid, parse("email", "ann@example.org")))
    assert linked.linked_viewer_ids == ("ann-v",)
    items = {row[data[new_table]["columns"].index("item")] for row in data[new_table]["rows"]}
    assert items == {"book", "lamp", "old", "forged"}  # ann's rows, and the row naming her e-mail
    # Retention: its kind's setting rewrites its rows' period, and the enforcer deletes
    # what is past it, physically.
    before, after = policy.apply(store, tenant, {"sessions_days": 30})
    assert after["sessions_days"] == 30
    wait_for(lambda: _rows(store, new_table, tid, "retention_days != 30") == 0, what="retention rewritten")
    _insert(store, new_table, tid, "ann-v", age_days=100, item="late")  # written with 395 days, past 30
    assert policy.enforce(store)[new_table] >= 1
    assert _rows(store, new_table, tid, "item IN ('old', 'late')") == 0
    # Erasure: by viewer id, counted in the result, verified gone.
    result = asyncio.run(service.purge(tid, Subject("viewer_id", "ann-v"), "test"))
    assert result.rows_deleted[new_table] == 2
    assert _rows(store, new_table, tid, "viewer_id = 'ann-v'") == 0
    assert _rows(store, new_table, tid) == 2  # eve's and bob's rows stay
    # Offboarding: the tenant's rows go too.
    summary = asyncio.run(service.offboard(tid, "test"))
    assert summary["rows_deleted"][new_table] == 2
    assert _rows(store, new_table, tid) == 0

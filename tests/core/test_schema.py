"""Migrations, TTL retention and the personal-data registry, on the real engine."""

import time

from analytics import events
from core import migrations
from retention.registry import REGISTRY, SUBJECT_COLUMNS
from tests.conftest import stored_row


def test_migrations_are_recorded_and_idempotent(store):
    assert migrations.apply(store) == []  # the session fixture applied them already
    versions = [row[0] for row in store.rows("SELECT version FROM schema_migrations FINAL ORDER BY version")]
    assert versions == [m.version for m in migrations.MIGRATIONS]
    tables = {row[0] for row in store.rows("SHOW TABLES")}
    assert {"tenants", "api_keys", "consents", "viewer_events", "schema_migrations"} <= tables


def test_viewer_events_has_the_contract_columns(store):
    columns = {row[0] for row in store.rows("DESCRIBE TABLE viewer_events")}
    required = {
        "tenant_id", "viewer_id", "view_id", "video_id", "type", "ts", "ip", "country", "region", "city",
        "os", "os_version", "browser", "browser_version", "device", "screen_w", "screen_h", "player_w",
        "player_h", "position_ms", "bitrate_kbps", "error_code", "error_message", "fatal", "retention_days",
    }
    assert required <= columns


def test_rows_older_than_their_retention_are_gone_after_optimize(store, tenant):
    now = time.time()

    def row(age_days, retention_days, marker):
        return stored_row(tenant.tenant_id, ts=now - age_days * 86400, retention_days=retention_days, view_id=marker)

    events.insert(store, events.encode_rows([row(40, 30, "expired"), row(10, 30, "kept"), row(40, 60, "long-retention")]))
    store.command("OPTIMIZE TABLE viewer_events FINAL")
    left = store.rows(
        "SELECT view_id FROM viewer_events WHERE tenant_id = {t:String} ORDER BY view_id SETTINGS apply_deleted_mask = 0",
        {"t": tenant.tenant_id},
    )
    assert left == [("kept",), ("long-retention",)]


def test_every_table_with_personal_data_is_registered(store):
    database = store.command("SELECT currentDatabase()")
    rows = store.rows(
        "SELECT table, groupArray(name) FROM system.columns WHERE database = {db:String}"
        " AND name IN {cols:Array(String)} GROUP BY table",
        {"db": database, "cols": list(SUBJECT_COLUMNS)},
    )
    holding = {table: set(cols) for table, cols in rows}
    registered = {entry.table: set(entry.subject_columns) for entry in REGISTRY}
    assert holding, "the schema has no personal data at all? the query is wrong"
    for table, cols in holding.items():
        assert table in registered, f"{table} holds {sorted(cols)} but is not in the registry"
        assert cols <= registered[table], f"{table}: {sorted(cols - registered[table])} not registered"


def test_what_a_purge_costs_is_bounded_by_configuration(store):
    """A purge is a mutation rewriting the parts that hold the subject (retention/deletion.py):
    these two settings took it from 3-4 s to under 1 s at 10 M beacons (bench/privacy.py)."""
    # Merged parts of the beacons and of the rollup stay small enough to rewrite quickly
    # (migration 10, then 19 for the compressed layout and the rollup).
    from core.migrations import v019_beacon_layout_at_scale as v019

    assert f"max_bytes_to_merge_at_max_space_in_pool = {v019.BEACON_PART_BYTES}" in store.command(
        "SHOW CREATE TABLE viewer_events")
    assert f"max_bytes_to_merge_at_max_space_in_pool = {v019.VIEWS_PART_BYTES}" in store.command(
        "SHOW CREATE TABLE views")
    # The embedded engine schedules mutations with a server's pool, not chDB's 2 threads.
    pool = store.command("SELECT value FROM system.server_settings WHERE name = 'background_pool_size'")
    assert int(pool) >= 16



def test_the_beacon_layout_migration_can_run_again_and_keeps_every_row(store):
    """Migration 19 changes codecs and settings only: run again on a table with rows, it
    leaves them all readable and the codecs in place (two edges may both apply it)."""
    from core.migrations import v019_beacon_layout_at_scale as v019

    store.command("INSERT INTO viewer_events (tenant_id, event_id, received_at, ts, type, viewer_id, view_id,"
                  " video_id, ip, country, region, region_code, city, os, browser, device, is_bot, retention_days)"
                  " SELECT 'tn_layout', generateUUIDv4(), now64(3), now64(3) - number, 'heartbeat',"
                  " concat('v', toString(number % 7)), 'view', 'video', toIPv6('::1'), 'DE', '', '', 'Berlin',"
                  " 'Linux', 'Firefox', 'desktop', false, 30 FROM numbers(1000)")
    for statement in v019.statements():
        store.command(statement)
    assert store.command("SELECT count() FROM viewer_events WHERE tenant_id = 'tn_layout'") == 1000
    codecs = dict(store.rows("SELECT name, compression_codec FROM system.columns"
                             " WHERE database = currentDatabase() AND table = 'viewer_events'"))
    assert codecs["ts"] == "CODEC(Delta(8), ZSTD(1))" and codecs["event_id"] == "CODEC(ZSTD(1))"
    assert "DEFAULT now64(3)" in store.command("SHOW CREATE TABLE viewer_events")  # inserted_at kept its default


def test_every_registered_table_names_a_retention_setting_and_its_ttl_column(store):
    """The registry is the one place saying which setting governs a table and whether its
    rows carry `retention_days`: a kind that is no setting fails here, not mid-enforce,
    and `row_ttl` matches the live schema."""
    from retention import policy

    assert {entry.retention_kind for entry in REGISTRY} <= set(policy.KINDS)
    with_column = {row[0] for row in store.rows(
        "SELECT table FROM system.columns WHERE database = currentDatabase() AND name = 'retention_days'")}
    assert {e.table for e in REGISTRY if e.row_ttl} == {e.table for e in REGISTRY} & with_column


def test_a_cluster_setting_reaches_every_ddl_statement_and_mutation(monkeypatch):
    """`WAVE_CLICKHOUSE_CLUSTER` is read in core/cluster.py alone, and every statement that
    changes tables or rows takes its clause from there (issue #16): with it set, every
    migration is ON CLUSTER with Replicated engines, and so are the mutations."""
    from core import cluster, migrations

    monkeypatch.setenv("WAVE_CLICKHOUSE_CLUSTER", "wave")
    statements = [s for v in migrations._VERSIONS for s in v.statements()]
    assert statements and all(" ON CLUSTER wave " in s for s in statements), \
        [s[:80] for s in statements if " ON CLUSTER wave " not in s]
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    assert all("ENGINE = Replicated" in s for s in creates)
    assert cluster.alter_table("t", "DELETE WHERE 1").startswith("ALTER TABLE t ON CLUSTER wave ")
    assert cluster.delete_from("t", "x = 1") == "DELETE FROM t ON CLUSTER wave WHERE x = 1"
    assert " ON CLUSTER wave " in cluster.backup_database("db", "File('x')")
    monkeypatch.delenv("WAVE_CLICKHOUSE_CLUSTER")
    assert " ON CLUSTER" not in cluster.alter_table("t", "DELETE WHERE 1")
    # the environment is read in one module: nothing else names the variable
    root = __import__("pathlib").Path(cluster.__file__).resolve().parents[1]
    readers = [str(p.relative_to(root)) for pkg in ("core", "analytics", "retention", "edge")
               for p in (root / pkg).rglob("*.py") if "WAVE_CLICKHOUSE_CLUSTER" in p.read_text()]
    assert readers == ["core/cluster.py"], readers

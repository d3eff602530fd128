"""Migrations, TTL retention and the personal-data registry, on the real engine."""

import pathlib
import re
import time

import pytest

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
    """A purge rewrites the parts that hold the subject (retention/deletion.py): their size
    is its cost (bench/privacy.py)."""
    # Merged parts of the beacons and of the rollup stay small enough to rewrite quickly
    # (migrations 10 and 19, then 20 once the rewrite no longer stepped over every part).
    from core.migrations import v020_small_parts_for_targeted_erasure as v020

    beacons = store.command("SHOW CREATE TABLE viewer_events")
    assert f"max_bytes_to_merge_at_max_space_in_pool = {v020.BEACON_PART_BYTES}" in beacons
    assert "parts_to_delay_insert = 3000" in beacons  # a month of capped parts is no merge backlog
    assert f"max_bytes_to_merge_at_max_space_in_pool = {v020.VIEWS_PART_BYTES}" in store.command(
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


def _schema_statements() -> list[str]:
    """Every DDL statement of the schema for the layout in force, as `migrations.apply` runs them."""
    from core import cluster, migrations

    return list(cluster.expand([migrations.schema_migrations()])) + [s for m in migrations.MIGRATIONS for s in m.statements]


def _created(statements: list[str]) -> list[str]:
    return [re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s).group(1) for s in statements if s.startswith("CREATE TABLE")]


def test_a_cluster_setting_reaches_every_ddl_statement_and_mutation(monkeypatch):
    """`WAVE_CLICKHOUSE_CLUSTER` is read in core/cluster.py alone, and every statement that
    changes tables or rows takes its table and clause from there (issues #16, #17): with it
    set, every table is a Replicated `<name>_local` plus a Distributed `<name>` sharded by
    tenant (and viewer), every DDL statement is ON CLUSTER, and every mutation runs ON
    CLUSTER against the local table, IN PARTITION when given one."""
    from core import cluster

    one_node = _schema_statements()
    monkeypatch.setenv("WAVE_CLICKHOUSE_CLUSTER", "wave")
    statements = _schema_statements()
    assert statements and all(" ON CLUSTER wave " in s for s in statements), \
        [s[:80] for s in statements if " ON CLUSTER wave " not in s]

    # Every table of the one-node schema is, on the cluster, a replicated local table
    # immediately followed by the Distributed table of the same name over it.
    tables = _created(one_node)
    assert len(tables) >= 12 and not any(t.endswith("_local") for t in tables)
    creates = [s for s in statements if s.startswith("CREATE TABLE")]
    assert len(creates) == 2 * len(tables)
    for table in tables:
        local = next(i for i, s in enumerate(statements) if s.startswith(f"CREATE TABLE IF NOT EXISTS {table}_local "))
        assert "ENGINE = Replicated" in statements[local] and "MergeTree('/clickhouse/tables/{shard}/{database}/{table}'," \
            " '{replica}'" in statements[local], statements[local][:200]
        distributed = statements[local + 1]
        assert distributed.startswith(f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER wave AS {table}_local"
                                      f" ENGINE = Distributed(wave, currentDatabase(), {table}_local, "), distributed
    # A subject's rows sit on one shard: hashed by tenant and viewer where there is a viewer.
    def key(table):
        return next(s for s in creates if s.startswith(f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER wave AS "))
    for table in ("viewer_events", "consents", "views"):
        assert key(table).endswith("cityHash64(tenant_id, viewer_id))")
    for table in ("tenants", "api_keys", "sessions", "audit_log", "videos", "purges"):
        assert key(table).endswith("cityHash64(tenant_id))")
    assert key("schema_migrations").endswith("cityHash64(version))")
    # Storage (TTL, ORDER BY, indexes) lives on the local table only.
    assert "TTL toDateTime(ts)" in next(s for s in creates if s.startswith("CREATE TABLE IF NOT EXISTS viewer_events_local"))

    # Every ALTER works on the local table; column changes also reach the Distributed one.
    alters = [s for s in statements if s.startswith("ALTER TABLE")]
    for i, s in enumerate(statements):
        if s.startswith("ALTER TABLE") and "ADD COLUMN" in s and "_local " in s.split(" ADD ")[0]:
            table = re.match(r"ALTER TABLE (\w+)_local ", s).group(1)
            assert statements[i + 1].startswith(f"ALTER TABLE {table} ON CLUSTER wave ADD COLUMN IF NOT EXISTS"), s
    column_changes = re.compile(r"(ADD|MODIFY) COLUMN ")
    assert {re.match(r"ALTER TABLE (\w+) ", s).group(1) for s in alters if not column_changes.search(s)} <= \
        {f"{t}_local" for t in tables}
    # v019's codecs: the local table's parts only; the Distributed table keeps the column's type.
    on_distributed = [s for s in alters if not re.match(r"ALTER TABLE \w+_local ", s)]
    assert any("MODIFY COLUMN event_id UUID" in s for s in on_distributed)
    assert not any("CODEC" in s for s in on_distributed)
    assert not any("MATERIALIZE" in s or "SETTING" in s for s in alters if not re.match(r"ALTER TABLE \w+_local ", s))

    # Mutations: the local table, ON CLUSTER, IN PARTITION when given.
    assert cluster.delete_rows("t", "x = 1", "202612") == \
        "ALTER TABLE t_local ON CLUSTER wave DELETE IN PARTITION ID '202612' WHERE x = 1"
    assert cluster.update_rows("t", "d = 1", "x = 1") == "ALTER TABLE t_local ON CLUSTER wave UPDATE d = 1 WHERE x = 1"
    assert cluster.delete_from("t", "x = 1") == "DELETE FROM t_local ON CLUSTER wave WHERE x = 1"
    assert cluster.delete_from("t", "x = 1", "202611") == \
        "DELETE FROM t_local ON CLUSTER wave IN PARTITION ID '202611' WHERE x = 1"
    assert cluster.apply_deleted_mask("t", "202611") == \
        "ALTER TABLE t_local ON CLUSTER wave APPLY DELETED MASK IN PARTITION ID '202611'"
    assert cluster.modify_ttl("t", "ts + INTERVAL 1 DAY") == "ALTER TABLE t_local ON CLUSTER wave MODIFY TTL ts + INTERVAL 1 DAY"
    assert cluster.alter_table("t", "DELETE WHERE 1").startswith("ALTER TABLE t_local ON CLUSTER wave ")
    assert " ON CLUSTER wave " in cluster.backup_database("db", "File('x')")
    assert cluster.backup_database("db", "File('x')", ("s",)) == \
        "BACKUP DATABASE db EXCEPT TABLES db.s_local, db.s ON CLUSTER wave TO File('x')"
    assert cluster.drop_partition("s", "20261201") == "ALTER TABLE s_local ON CLUSTER wave DROP PARTITION ID '20261201'"
    assert cluster.truncate_table("db", "t_local") == "TRUNCATE TABLE IF EXISTS db.t_local ON CLUSTER wave"
    assert cluster.restore_table("db", "t_local", "File('x')") == "RESTORE TABLE db.t_local ON CLUSTER wave FROM File('x')"
    assert cluster.restorable("t_local") and not cluster.restorable("t")
    with pytest.raises(ValueError):
        cluster.delete_rows("t", "1", "2026' OR '1")  # a partition id is never SQL
    # a migration may append settings to a statement without losing its follow-ups
    assert cluster.expand([cluster.alter_table("t", "ADD COLUMN IF NOT EXISTS c UInt8") + " SETTINGS alter_sync = 2"]) \
        == ("ALTER TABLE t_local ON CLUSTER wave ADD COLUMN IF NOT EXISTS c UInt8 SETTINGS alter_sync = 2",
            "ALTER TABLE t ON CLUSTER wave ADD COLUMN IF NOT EXISTS c UInt8")

    monkeypatch.delenv("WAVE_CLICKHOUSE_CLUSTER")
    assert _schema_statements() == one_node
    assert not any(" ON CLUSTER" in s or "Replicated" in s or "Distributed" in s or "_local" in s for s in one_node)
    assert cluster.delete_rows("t", "x = 1") == "ALTER TABLE t DELETE WHERE x = 1"
    assert cluster.delete_from("t", "x = 1") == "DELETE FROM t WHERE x = 1"
    # the environment is read in one module: nothing else names the variable
    root = pathlib.Path(cluster.__file__).resolve().parents[1]
    sources = [p for pkg in ("core", "analytics", "retention", "edge") for p in (root / pkg).rglob("*.py")]
    readers = [str(p.relative_to(root)) for p in sources if "WAVE_CLICKHOUSE_CLUSTER" in p.read_text()]
    assert readers == ["core/cluster.py"], readers
    # and no other module writes a DDL statement or a mutation itself: they all ask cluster.py
    literal = re.compile(r"""[fr]?["'](ALTER TABLE|DELETE FROM|CREATE TABLE|CREATE MATERIALIZED VIEW|BACKUP|RESTORE"""
                         r"""|TRUNCATE|OPTIMIZE|DROP TABLE|RENAME TABLE|EXCHANGE)\b""")
    builders = [f"{p.relative_to(root)}: {m.group(0)}" for p in sources if p.name != "cluster.py"
                for m in literal.finditer(p.read_text())]
    assert builders == [], builders


def test_a_table_replaced_by_key_without_a_tenant_must_name_its_shard_key():
    """Every version of a ReplacingMergeTree row must meet on one shard; without tenant_id
    the table says how (checked in every mode, so it fails here, not on a cluster)."""
    from core import cluster

    with pytest.raises(ValueError, match="shard_by"):
        cluster.create_table("x", "k String, v UInt8", "ENGINE = ReplacingMergeTree(v) ORDER BY k")
    assert "Distributed" not in cluster.create_table("x", "k String", "ENGINE = MergeTree ORDER BY k")

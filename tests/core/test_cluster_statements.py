"""The cluster layout's statements are ClickHouse: with `WAVE_CLICKHOUSE_CLUSTER` set, every
DDL statement of the schema and every mutation the code builds parses in the real engine.

Parsing is what one chDB can prove of `ON CLUSTER` and Replicated tables (it runs neither:
README, "Scaling out"); tests/core/test_cluster_node.py runs the same layout minus those
two clauses on a one-shard cluster of the local node. The parser is the engine's own
(`formatQuery`), and its canonical text must keep the clause and the local table.
"""

from __future__ import annotations

import pytest

from core import cluster, migrations
from retention import audit, registry
from retention.subjects import Subject


def _parsed(store, statement: str) -> str:
    return str(store.command("SELECT formatQuery({q:String})", parameters={"q": statement}))


def _mutations() -> list[str]:
    """Every kind of mutation the code issues, with the WHERE clauses it really builds
    (retention/deletion.py, retention/policy.py, edge/vod/videos.py, retention/backups.py)."""
    out = []
    subjects = [Subject("viewer_id", "v1"), Subject("email", "a@b.c", ("v1", "v2")), Subject("ip", "::ffff:1.2.3.4")]
    for entry in registry.REGISTRY:
        for subject in subjects:
            cond = subject.condition(entry)
            if cond is not None:  # a purge (retention/purge.py via deletion.delete_where)
                where = f"{entry.tenant_column} = {{tenant:String}} AND {cond[0]}"
                out.append(cluster.delete_rows(entry.table, where) + " SETTINGS mutations_sync = 2")
                out.append(cluster.delete_rows(entry.table, where, "202612") + " SETTINGS mutations_sync = 2")
        # retention: the enforcer's lightweight DELETE and mask, and a changed setting's UPDATE
        where = f"{entry.tenant_column} = {{t:String}} AND {entry.time_column} < {{cutoff:DateTime64(3)}}"
        if entry.kept_past_period:
            where += f" AND NOT ({entry.kept_past_period})"
        out.append(cluster.delete_from(entry.table, where, "202601") + " SETTINGS lightweight_deletes_sync = 2")
        out.append(cluster.delete_from(entry.table, where) + " SETTINGS lightweight_deletes_sync = 2")
        out.append(cluster.apply_deleted_mask(entry.table, "202601") + " SETTINGS mutations_sync = 2")
        out.append(cluster.apply_deleted_mask(entry.table) + " SETTINGS mutations_sync = 2")
        out.append(cluster.update_rows(entry.table, "retention_days = {days:UInt16}",
                                       f"{entry.tenant_column} = {{t:String}} AND retention_days != {{days:UInt16}}"))
        out.append(cluster.modify_ttl(entry.table, f"toDateTime({entry.time_column}) + toIntervalDay(retention_days)"))
    out.append(cluster.delete_from("audit_log", "tenant_id = '' AND ts < {cutoff:DateTime64(3)}")
               + f" SETTINGS lightweight_deletes_sync = 2 /* {audit.ORPHAN_RETENTION_DAYS} days */")
    out.append(cluster.delete_from("videos", "video_id = {v:String}"))
    out.append(cluster.drop_partition("anonymous_salts", "20261201"))  # analytics/anonymous.py
    # the last four name no `_local` table of their own: a whole database, or a table given as is
    out.append(cluster.backup_database("wave", "File('/backups/x/db')"))
    out.append(cluster.backup_database("wave", "File('/backups/x/db')", registry.NOT_BACKED_UP))
    out.append(cluster.truncate_table("wave", cluster.local("videos")))
    out.append(cluster.restore_table("wave", cluster.local("videos"), "File('/backups/x/db')")
               + " SETTINGS allow_non_empty_tables = true")
    return out


def test_every_ddl_statement_and_mutation_of_the_cluster_layout_parses(store, monkeypatch):
    monkeypatch.setenv("WAVE_CLICKHOUSE_CLUSTER", "wave")
    schema = list(cluster.expand([migrations.schema_migrations()])) + \
        [s for m in migrations.MIGRATIONS for s in m.statements]
    mutations = _mutations()
    assert len(schema) > 30 and len(mutations) > 40
    for statement in schema + mutations:
        canonical = _parsed(store, statement)  # raises (SYNTAX_ERROR) if ClickHouse cannot parse it
        assert "ON CLUSTER wave" in canonical, canonical
    for statement in mutations[:-4]:
        assert "_local ON CLUSTER wave" in _parsed(store, statement)
    # the parser is not lenient: a broken statement of the same kind is refused
    with pytest.raises(Exception, match="SYNTAX_ERROR|Syntax error"):
        _parsed(store, cluster.delete_rows("viewer_events", "tenant_id = {t:String} AND") + " SETTINGS mutations_sync = 2")

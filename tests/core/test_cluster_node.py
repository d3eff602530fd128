"""The cluster layout, run: one embedded ClickHouse configured as a one-shard cluster of
itself (`remote_servers` naming this node, `macros`, Keeper as ClickHouse's in-process
`testkeeper`), driven by the code's own migrations, the real edge (collector and admin
purge over HTTP), the rollup, retention and backups.

Each run is a subprocess (tests/core/cluster_node.py) with a timeout, so a hang fails here.
What chDB can and cannot run of a cluster is README "Scaling out": the Distributed layout
runs whole; Replicated tables are created but never become writable, and ON CLUSTER is
refused. Both facts are asserted, so a chDB that lifts either limit shows up here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TIMEOUT_S = 300


def _run(mode: str, directory) -> dict:
    try:
        done = subprocess.run([sys.executable, "-m", "tests.core.cluster_node", mode, str(directory)], cwd=ROOT,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the one-shard cluster hung for {TIMEOUT_S} s in mode {mode}: {exc.stderr!r}"[-3000:])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_schema_collector_purge_retention_and_restore_on_a_one_shard_cluster(tmp_path):
    out = _run("sharded", tmp_path)
    assert out["clusters"] == [["wave", 1, "localhost", 1]]  # the cluster is this node
    assert out["applied"] == list(range(1, len(out["applied"]) + 1)) and len(out["applied"]) >= 15
    engines = out["engines"]
    logical = sorted(t for t in engines if not t.endswith("_local"))
    assert len(logical) >= 14 and sorted(t[: -len("_local")] for t in engines if t.endswith("_local")) == logical
    for table in logical:  # every table: a Distributed one over its local table, which has the storage
        assert engines[table].startswith(f"Distributed('wave', 'default', '{table}_local', "), engines[table]
        assert "MergeTree" in engines[f"{table}_local"]
    for table in ("viewer_events", "consents", "views"):
        assert engines[table].endswith("cityHash64(tenant_id, viewer_id))")
    assert "TTL toDateTime(ts)" in engines["viewer_events_local"] and "TTL" not in engines["viewer_events"]

    # ingest through the Distributed tables: the edge's collector (consent, enrichment,
    # write buffer), the write buffer's insert, the rollup's INSERT SELECT
    ingested = out["ingested"]
    assert ingested["viewer_events"] == ingested["viewer_events_local"] == 20
    assert ingested["consents"] == 2 and ingested["country"] == [["GB"]]
    assert ingested["views"] == 5 and ingested["shards"] == [[1]]
    assert len(ingested["partitions_v1"]) == 2

    # a purge through the admin API: the subject's rows gone from disk in the local
    # tables, nobody else's
    purge = out["purge"]
    assert purge["response"]["status"] == "completed"
    deleted = purge["response"]["rows_deleted"]
    assert deleted["viewer_events"] == 8 and deleted["views"] == 2 and deleted["consents"] == 1
    assert purge["left_v1_events"] == purge["left_v1_views"] == purge["left_v1_consents"] == 0
    assert purge["kept_v2_events"] == 4 and purge["kept_other_tenant_v1"] == 4 and purge["ledger"] == 1
    # ...by one mutation per partition the subject's rows sat in, of the local table
    deletes = [m for m in out["mutations"] if m.startswith("(DELETE IN PARTITION ID") and "'v1'" in m]
    assert sorted(m.split("'")[1] for m in deletes[:2]) == ingested["partitions_v1"]

    # retention: rows past the tenant's new 30 days gone from disk, the recent ones kept
    enforce = out["enforce"]
    assert enforce["deleted"]["viewer_events"] == 4 and enforce["deleted"]["views"] == 1
    assert enforce["left_v3_events"] == enforce["left_v3_views"] == 0 and enforce["kept_v2_events"] == 4
    assert any(m.startswith("(APPLY DELETED MASK IN PARTITION ID") for m in out["mutations"])
    assert out["update"] == [[200]]  # a changed setting rewrote the stored rows (UPDATE mutation)
    # offboarding walks the tables the code queries, not their local halves
    assert "viewer_events" in out["offboard_tables"] and not any(t.endswith("_local") for t in out["offboard_tables"])

    # a backup and restore of the layout: rows written after the backup are gone again
    restore = out["restore"]
    assert {"viewer_events", "viewer_events_local"} <= set(restore["tables"])
    assert restore["before"] == 8 and restore["after"] == 4 and restore["v9_after"] == 0
    assert restore["engines_after"] == engines


def test_replicated_tables_are_created_but_chdb_cannot_make_them_writable(tmp_path):
    """Why the whole cluster layout cannot run in chDB (README, "Scaling out")."""
    out = _run("replicated", tmp_path)
    created = out["created"]
    assert len(created) >= 28 and all(f"{t}_local" in created for t in created if not t.endswith("_local"))
    engines = out["engines"]
    assert all(engines[t].startswith("Replicated") for t in created if t.endswith("_local"))
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/default/viewer_events_local', '{replica}')" \
        in engines["viewer_events_local"]
    # Every replica stays read-only: activating it needs the interserver address, which
    # only clickhouse-server registers when it opens its interserver HTTP port, although
    # the config file names one.
    assert out["replicas"] and all(readonly == 1 for _, readonly in out["replicas"])
    assert "interserver_http(s)_port' required for replication" in out["activation_error"]
    refused = out["refused"]
    assert "TABLE_IS_READ_ONLY" in refused["insert"] and "TABLE_IS_READ_ONLY" in refused["alter"]
    # and the DDL worker that runs ON CLUSTER is not started by the embedded engine
    assert "Replicated DDL queries are disabled" in refused["on_cluster"]

"""One embedded ClickHouse (chDB) configured as a one-shard cluster of itself, driven by
the code's own schema, store and retention modules; prints one JSON object of what it saw.

Run as a subprocess by tests/core/test_cluster_node.py (chDB holds one path per process,
and a hang must fail that test, not freeze pytest). Usage:
    python -m tests.core.cluster_node (sharded|replicated) DIR

- `sharded`: the cluster layout (`<table>_local` + Distributed `<table>` sharded by tenant
  and viewer, mutations against the local tables, IN PARTITION) without the two things
  chDB cannot run, Replicated engines and ON CLUSTER: schema, the real edge's collector
  and admin purge, the rollup, retention, backup and restore, all for real.
- `replicated`: creates the whole schema with Replicated engines (Keeper: ClickHouse's
  in-process `testkeeper`) and records why no replicated table takes a write here.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import clickhouse_connect

from core import cluster
from core.store import Store, chdb_server_settings

CLUSTER = "wave"
# chDB serves no TCP port: this one only has to match the cluster's replica, which makes
# ClickHouse treat that replica as this process (`is_local`) and query it in-process.
TCP_PORT = 9000
_OPEN: list[Store] = []


def write_config(directory: Path) -> Path:
    path = directory / "cluster.xml"
    path.write_text(f"""<clickhouse>
  <logger><level>information</level><log>{directory / 'clickhouse.log'}</log><console>0</console></logger>
  <tcp_port>{TCP_PORT}</tcp_port>
  <interserver_http_port>9009</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <remote_servers>
    <{CLUSTER}>
      <shard>
        <internal_replication>true</internal_replication>
        <replica><host>localhost</host><port>{TCP_PORT}</port></replica>
      </shard>
    </{CLUSTER}>
  </remote_servers>
  <macros><shard>01</shard><replica>r1</replica><cluster>{CLUSTER}</cluster></macros>
</clickhouse>
""")
    return path


def open_node(directory: Path) -> Store:
    data = directory / "clickhouse"
    data.mkdir(parents=True, exist_ok=True)
    (directory / "backups").mkdir(exist_ok=True)
    options = {**chdb_server_settings(directory / "backups"), "config-file": str(write_config(directory))}
    url = f"chdb://{data}"
    store = Store(clickhouse_connect.get_client(dsn=url, chdb_options=options), url)
    _OPEN.append(store)  # never closed: see main()
    return store


def _engines(store: Store) -> dict[str, str]:
    return {name: engine for name, engine in store.rows(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()")}


def _physical(store: Store, table: str, where: str, params: dict) -> int:
    """Rows on disk in the local table, masked ones included."""
    return int(store.command(f"SELECT count() FROM {cluster.local(table)} WHERE {where}"
                             " SETTINGS apply_deleted_mask = 0", parameters=params))


def _beacon(tenant_id: str, viewer_id: str, view_id: str, ts: float, kind: str, retention_days: int) -> list:
    from analytics import events

    values = {"tenant_id": tenant_id, "viewer_id": viewer_id, "email": "", "ip": "::ffff:81.2.69.142",
              "country": "GB", "region": "", "region_code": "", "city": "", "os": "Linux", "os_version": "",
              "browser": "Chrome", "browser_version": "", "device": "desktop", "is_bot": False,
              "retention_days": retention_days, "received_at": ts, "event_id": str(uuid.uuid4()), "ts": ts,
              "type": kind, "view_id": view_id, "video_id": "vd_1", "fatal": False}
    return [values.get(column) for column in events.COLUMNS]


def _view(tenant_id: str, viewer_id: str, view_id: str, t0: float, retention_days: int = 400) -> list[list]:
    return [_beacon(tenant_id, viewer_id, view_id, t0 + offset, kind, retention_days)
            for offset, kind in ((0, "viewstart"), (1.5, "playing"), (31.5, "heartbeat"), (61.5, "viewend"))]


@contextmanager
def running_edge(store: Store, directory: Path):
    """The edge app on `store`, served on loopback; yields an HTTP client to it."""
    import httpx
    import uvicorn

    from edge import serving
    from edge.app import create_app
    from edge.settings import Settings, parse_networks
    from tests.conftest import free_port

    settings = Settings(data_dir=directory / "edge", clickhouse_url=store.url, flush_ms=50,
                        trusted_proxies=parse_networks("127.0.0.1/32"), ice_hosts=("127.0.0.1",))
    app = create_app(settings, store=store)
    port = free_port()
    server = uvicorn.Server(serving.config(app, settings, "127.0.0.1", port, timeout_graceful_shutdown=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the edge did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def sharded(directory: Path) -> dict:
    import msgspec

    from analytics import events, rollup
    from core import migrations
    from core.tenants import create_tenant, load_tenant, save_tenant
    from retention import backups, offboard, policy
    from tests.conftest import collect, consent, event, wait_for

    cluster.force_layout(cluster.Layout(CLUSTER, replicated=False, ddl_on_cluster=False))
    store = open_node(directory)
    out: dict = {"clusters": store.rows("SELECT cluster, shard_num, host_name, is_local FROM system.clusters"
                                        " WHERE cluster = {c:String}", {"c": CLUSTER})}
    out["applied"] = migrations.apply(store)
    out["engines"] = _engines(store)

    tenant, admin_key = create_tenant(store, "cluster", retention_days=400, ip_mode="full")
    other, _ = create_tenant(store, "other", retention_days=400, ip_mode="full")
    t = tenant.tenant_id
    now = time.time()
    # The real edge on this store: consent and beacons through its HTTP collector, the
    # purge through its admin API.
    with running_edge(store, directory) as http:
        for viewer in ("v1", "v2"):
            assert consent(http, t, viewer).status_code == 201
            views = [event(kind, ts=int((now - 3600 + offset) * 1000), view_id=f"w-{viewer}", video_id="vd_1")
                     for offset, kind in ((0, "viewstart"), (1.5, "playing"), (31.5, "heartbeat"), (61.5, "viewend"))]
            r = collect(http, t, viewer, views)
            assert r.status_code == 202, r.text
        wait_for(lambda: int(store.command("SELECT count() FROM viewer_events WHERE tenant_id = {t:String}",
                                           {"t": t})) == 8, 60, "the collector's rows")
        month_ago = now - 32 * 86400  # another month's partition, inside 400 days
        old = now - 45 * 86400  # past 30 days: the enforcer's, once the tenant chooses 30
        rows = _view(t, "v1", "w2", month_ago) + _view(t, "v3", "w4", old) + _view(other.tenant_id, "v1", "w5", now - 3600)
        events.insert(store, events.encode_rows(rows))  # the write buffer's own insert, as the spool replays it
        rollup.fold_all(store)  # INSERT ... SELECT from Distributed to Distributed
        out["ingested"] = {
            "viewer_events": int(store.command("SELECT count() FROM viewer_events")),
            "viewer_events_local": int(store.command(f"SELECT count() FROM {cluster.local('viewer_events')}")),
            "consents": int(store.command(f"SELECT count() FROM {cluster.local('consents')}")),
            "country": store.rows("SELECT DISTINCT country FROM viewer_events WHERE tenant_id = {t:String}"
                                  " AND viewer_id = 'v2'", {"t": t}),
            "views": int(store.command("SELECT count() FROM views FINAL")),
            "shards": store.rows("SELECT DISTINCT _shard_num FROM viewer_events"),
            "partitions_v1": sorted(r[0] for r in store.rows(
                "SELECT DISTINCT _partition_id FROM viewer_events WHERE viewer_id = 'v1' AND tenant_id = {t:String}",
                {"t": t})),
        }
        r = http.post("/v1/privacy/purge", json={"viewer_id": "v1"}, headers={"authorization": f"Bearer {admin_key}"})
        assert r.status_code == 200, r.text
    sub = "tenant_id = {t:String} AND viewer_id = {v:String}"
    out["purge"] = {
        "response": {k: r.json()[k] for k in ("status", "rows_deleted")},
        "left_v1_events": _physical(store, "viewer_events", sub, {"t": t, "v": "v1"}),
        "left_v1_views": _physical(store, "views", sub, {"t": t, "v": "v1"}),
        "left_v1_consents": _physical(store, "consents", sub, {"t": t, "v": "v1"}),
        "kept_v2_events": _physical(store, "viewer_events", sub, {"t": t, "v": "v2"}),
        "kept_other_tenant_v1": _physical(store, "viewer_events", sub, {"t": other.tenant_id, "v": "v1"}),
        "ledger": int(store.command("SELECT count() FROM purges WHERE purge_id = {p:String}",
                                    {"p": r.json()["purge_id"]})),
    }

    # Retention: the tenant now keeps 30 days; the enforcer deletes what is older, physically.
    save_tenant(store, msgspec.structs.replace(load_tenant(store, t), retention_days=30))
    out["enforce"] = {"deleted": policy.enforce(store),
                      "left_v3_events": _physical(store, "viewer_events", sub, {"t": t, "v": "v3"}),
                      "left_v3_views": _physical(store, "views", sub, {"t": t, "v": "v3"}),
                      "kept_v2_events": _physical(store, "viewer_events", sub, {"t": t, "v": "v2"})}
    # A changed setting rewrites stored rows' retention (an UPDATE mutation, not waited for).
    policy.apply(store, load_tenant(store, other.tenant_id), {"viewer_events_days": 200})
    deadline = time.time() + 120
    while time.time() < deadline and int(store.command(
            f"SELECT count() FROM {cluster.local('viewer_events')} WHERE tenant_id = {{t:String}}"
            " AND retention_days != 200", {"t": other.tenant_id})):
        time.sleep(0.2)
    out["update"] = store.rows(f"SELECT DISTINCT retention_days FROM {cluster.local('viewer_events')}"
                               " WHERE tenant_id = {t:String}", {"t": other.tenant_id})
    out["mutations"] = [r[0] for r in store.rows(
        "SELECT command FROM system.mutations WHERE database = currentDatabase() ORDER BY create_time")]
    out["offboard_tables"] = offboard.tenant_tables(store)

    # A backup of the cluster layout, and a restore that brings the local tables' rows back
    # and erases the purged subject again.
    bdir = directory / "backups"
    manifest = backups.create(store, bdir, [], tier="daily")
    events.insert(store, events.encode_rows(_view(t, "v9", "w9", now - 60)))
    before = int(store.command("SELECT count() FROM viewer_events WHERE tenant_id = {t:String}", {"t": t}))
    restored = backups.restore(store, bdir, manifest.backup_id, b"k" * 32)
    out["restore"] = {"tables": manifest.tables, "before": before, "replayed": restored["replayed_purges"],
                      "after": int(store.command("SELECT count() FROM viewer_events WHERE tenant_id = {t:String}",
                                                 {"t": t})),
                      "v9_after": _physical(store, "viewer_events", sub, {"t": t, "v": "v9"}),
                      "engines_after": _engines(store)}
    return out


def replicated(directory: Path) -> dict:
    from core import migrations

    cluster.force_layout(cluster.Layout(CLUSTER, replicated=True, ddl_on_cluster=False))
    store = open_node(directory)
    out: dict = {"created": [], "refused": {}}
    statements = list(cluster.expand([migrations.schema_migrations()])) + \
        [s for m in migrations.MIGRATIONS for s in m.statements]
    for statement in statements:
        if statement.startswith("CREATE TABLE"):
            store.command(statement)
            out["created"].append(statement.split()[5])
    out["engines"] = _engines(store)
    time.sleep(1)  # the replicas' restarting threads have tried to activate them by now
    out["replicas"] = store.rows("SELECT table, is_readonly FROM system.replicas WHERE database = currentDatabase()")
    attempts = {
        # a write to a replicated table (its replica never became active)
        "insert": "INSERT INTO tenants_local (tenant_id) SETTINGS insert_keeper_max_retries = 0 VALUES ('t')",
        "alter": "ALTER TABLE tenants_local ADD COLUMN IF NOT EXISTS probe UInt8",
        # DDL through the cluster's DDL queue
        "on_cluster": f"CREATE TABLE IF NOT EXISTS probe ON CLUSTER {CLUSTER} (a UInt8) ENGINE = MergeTree ORDER BY a",
    }
    # Why the replicas stay read-only: the restarting thread's error, from the engine's log.
    log = (directory / "clickhouse.log").read_text(errors="replace").splitlines()
    out["activation_error"] = next((line.split("<Error>", 1)[1].split(", Stack trace")[0] for line in log
                                    if "Failed to restart the table" in line), "")
    for name, statement in attempts.items():
        try:
            store.command(statement)
            out["refused"][name] = ""
        except Exception as exc:  # what ClickHouse answers is the finding
            out["refused"][name] = str(exc)[:300]
    return out


def main(mode: str, directory: str) -> None:
    out = {"sharded": sharded, "replicated": replicated}[mode](Path(directory))
    sys.stdout.write(json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    # chDB with replicated tables that never activated hangs or aborts in its own shutdown
    # (closing the connection): the result is out, so leave without it.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

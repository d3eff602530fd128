"""Shared fixtures: one real chDB store per test session, real HTTP servers on loopback.

chDB allows a single on-disk path per process, so the whole pytest process shares one
store (isolated per test by fresh tenants); tests that need their own path run the edge
in a subprocess and read its store from another subprocess.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest
import uvicorn

from core import migrations
from core.store import Store, open_store
from core.tenants import Tenant, create_tenant
from edge import serving
from edge.app import Edge, create_app
from edge.settings import Settings, parse_networks

ROOT = Path(__file__).resolve().parent.parent
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
PUBLIC_IP = "81.2.69.142"  # a public address the bundled database places in London, GB


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("ch") / "clickhouse"
    s = open_store(f"chdb://{path}")
    migrations.apply(s)
    yield s
    s.close()


@pytest.fixture
def tenant_factory(store) -> Callable[..., tuple[Tenant, str]]:
    def make(**kwargs) -> tuple[Tenant, str]:
        kwargs.setdefault("ip_mode", "full")
        return create_tenant(store, kwargs.pop("name", "test"), **kwargs)

    return make


@pytest.fixture
def tenant(tenant_factory) -> Tenant:
    return tenant_factory()[0]


def admin_headers(key: str) -> dict:
    """The header an admin call carries: the tenant's key as a bearer token."""
    return {"authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningServer:
    def __init__(self, base_url: str, edge: Edge, server: uvicorn.Server, thread: threading.Thread, app=None):
        self.base_url = base_url
        self.edge = edge
        self.app = app
        self._server = server
        self._thread = thread
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def stop(self) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=30)


@pytest.fixture
def server_factory(store, tmp_path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(**overrides) -> RunningServer:
        settings = Settings(
            data_dir=tmp_path / f"edge{len(started)}",
            clickhouse_url=store.url,
            trusted_proxies=parse_networks("127.0.0.1/32"),
            flush_ms=50,
            ice_hosts=("127.0.0.1",),  # loopback only, no STUN: nothing leaves the machine
        )
        for key, value in overrides.items():
            setattr(settings, key, value)
        app = create_app(settings, store=store)
        port = free_port()
        server = uvicorn.Server(serving.config(app, settings, "127.0.0.1", port, timeout_graceful_shutdown=None))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        running = RunningServer(f"http://127.0.0.1:{port}", app.state.edge, server, thread, app)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def server(server_factory) -> RunningServer:
    return server_factory()


@pytest.fixture
def live_stream(server, tenant_factory) -> dict:
    """A live stream of a fresh tenant, as `POST /v1/streams` answers it, plus `admin_key`."""
    _, key = tenant_factory()
    created = server.http.post("/v1/streams", json={"name": "live"},
                               headers={"authorization": f"Bearer {key}"}).json()
    created["admin_key"] = key
    return created


def now_ms() -> int:
    return int(time.time() * 1000)


def event(kind: str = "playing", **fields) -> dict:
    base = {"type": kind, "ts": now_ms(), "view_id": "view-1", "video_id": "video-1"}
    base.update(fields)
    return base


def consent(http: httpx.Client, tenant_id: str, viewer_id: str, **extra) -> httpx.Response:
    body = {"tenant_id": tenant_id, "viewer_id": viewer_id, "purposes": ["analytics"], "policy_version": "v1"}
    body.update(extra)
    return http.post("/v1/consent", json=body)


def identity_token(http: httpx.Client, admin_key: str, tenant_id: str, viewer_id: str, email: str,
                   ttl_s: int = 600) -> str:
    """What a tenant's server does: read its identity secret, sign (tenant, viewer, email, exp)."""
    from analytics import identity

    r = http.get("/v1/identity-secret", headers={"authorization": f"Bearer {admin_key}"})
    assert r.status_code == 200, r.text
    return identity.sign(r.json()["identity_secret"], tenant_id, viewer_id, email, int(time.time()) + ttl_s)


def collect(http: httpx.Client, tenant_id: str, viewer_id: str, events: list[dict], **kw) -> httpx.Response:
    headers = {"user-agent": CHROME_WIN, "x-forwarded-for": PUBLIC_IP}
    headers.update(kw.pop("headers", {}))
    body = {"tenant_id": tenant_id, "viewer_id": viewer_id, "events": events, **kw}
    return http.post("/v1/collect", content=json.dumps(body), headers=headers)


def stored_row(tenant_id: str, **fields) -> tuple:
    """A whole viewer_events row in `events.COLUMNS` order, for inserting directly."""
    from analytics import events

    now = time.time()
    values = {
        "tenant_id": tenant_id, "viewer_id": "v", "email": "", "ip": "::", "country": "", "region": "",
        "region_code": "", "city": "", "os": "", "os_version": "", "browser": "", "browser_version": "",
        "device": "desktop", "is_bot": False, "retention_days": 30, "received_at": now,
        "event_id": str(uuid.uuid4()), "ts": now, "type": "playing", "view_id": "w", "video_id": "x",
    }
    values.update(fields)
    return tuple(values.get(column) for column in events.COLUMNS)


def store_view(store: Store, tenant_id: str, view_id: str, timeline, video_id: str = "vd_x",
               t0: float | None = None, **common) -> float:
    """Insert one view's beacons directly. timeline: (seconds after t0, type[, fields])."""
    from analytics import events

    t0 = time.time() - 3600 if t0 is None else t0
    rows = []
    for offset, kind, *extra in timeline:
        fields = {"viewer_id": "viewer-1", **common, **(extra[0] if extra else {})}
        rows.append(stored_row(tenant_id, view_id=view_id, video_id=video_id, type=kind,
                               ts=round(t0 + offset, 3), event_id=str(uuid.uuid4()), **fields))
    events.insert(store, events.encode_rows(rows))
    return t0


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def count_events(store: Store, tenant_id: str) -> int:
    return int(store.command(
        "SELECT count() FROM viewer_events WHERE tenant_id = {t:String}", parameters={"t": tenant_id}
    ))


def insert_beacons_at(chdb_dir: Path, tenant_id: str, viewer_id: str, n: int) -> None:
    """`n` beacons of one viewer, as the collector stores them, into another chDB path."""
    query_path(chdb_dir, "INSERT INTO viewer_events (tenant_id, event_id, received_at, ts, type, viewer_id, view_id,"
                         " video_id, ip, country, region, region_code, city, os, os_version, browser, browser_version,"
                         f" device, is_bot, retention_days) SELECT '{tenant_id}', generateUUIDv4(), now64(3), now64(3),"
                         f" 'heartbeat', '{viewer_id}', 'w', 'x', toIPv6('192.0.2.1'), '', '', '', '', '', '', '', '',"
                         f" 'desktop', false, 30 FROM numbers({n})")


def query_path(chdb_dir: Path, sql: str) -> list:
    """Run a query against another chDB path, from a subprocess (one path per process)."""
    code = (
        "import sys, json, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
        "print(json.dumps(c.query(sys.argv[2]).result_rows, default=str))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(chdb_dir), sql], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])

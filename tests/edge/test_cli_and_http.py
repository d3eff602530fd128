"""The CLI contract and the plumbing every route shares: health, metrics, errors, CORS."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, collect, consent, event, insert_beacons_at, query_path


def _cli(data_dir, *args, **env_vars):
    env = dict(os.environ, WAVE_DATA_DIR=str(data_dir), **env_vars)
    env.pop("WAVE_CLICKHOUSE_URL", None)
    script = Path(sys.executable).parent / "wave-edge"  # the installed console script
    return subprocess.run([str(script), *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_tenant_create_prints_id_and_key_and_stores_only_the_hash(tmp_path):
    out = _cli(tmp_path / "var", "tenant", "create", "demo", "--region", "eu-north", "--retention-days", "30",
               "--ip-mode", "none", WAVE_REGION="eu-north")
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert set(printed) == {"tenant_id", "admin_key"}
    assert printed["tenant_id"].startswith("tn_eu-north_") and printed["admin_key"].startswith("wk_eu-north_")
    chdb_dir = tmp_path / "var" / "clickhouse"
    tenants = query_path(chdb_dir, "SELECT tenant_id, name, region, retention_days, toString(ip_mode) FROM tenants")
    assert tenants == [[printed["tenant_id"], "demo", "eu-north", 30, "none"]]
    keys = query_path(chdb_dir, "SELECT key_hash, tenant_id FROM api_keys")
    assert keys == [[hashlib.sha256(printed["admin_key"].encode()).hexdigest(), printed["tenant_id"]]]
    dump = "".join(p.read_bytes().decode("latin-1") for p in chdb_dir.rglob("*") if p.is_file())
    assert printed["admin_key"] not in dump


def test_tenant_create_rejects_bad_values(tmp_path):
    out = _cli(tmp_path / "var", "tenant", "create", "demo", "--retention-days", "0")
    assert out.returncode == 2
    assert json.loads(out.stderr)["error"] == "invalid_tenant"
    out = _cli(tmp_path / "var", "tenant", "create", "demo", "--ip-mode", "partial")
    assert out.returncode == 2


def test_healthz_and_metrics(server, tenant):
    assert server.http.get("/healthz").json() == {"status": "ok"}
    assert consent(server.http, tenant.tenant_id, "viewer-m").status_code == 201
    assert collect(server.http, tenant.tenant_id, "viewer-m", [event(), event()]).status_code == 202
    assert collect(server.http, tenant.tenant_id, "viewer-m", [event("bad")]).status_code == 400
    text = server.http.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    body = text.text
    assert "wave_events_accepted_total 2" in body
    assert 'wave_events_rejected_total{reason="invalid_field"} 1' in body
    assert 'wave_http_requests_total{method="POST",route="/v1/collect",status="202"} 1' in body
    for name in ("wave_write_buffer_rows", "wave_spool_bytes", "wave_insert_seconds_count"):
        assert name in body


def test_unknown_paths_and_methods_answer_json(server):
    r = server.http.get("/no/such/thing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = server.http.get("/v1/collect")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_router_404_and_405_carry_the_security_headers(server):
    """The router answers these before any middleware runs; they carry the headers anyway."""
    for r in (server.http.get("/no/such/thing"), server.http.get("/v1/collect"), server.http.delete("/healthz"),
              server.http.get("/v1/nothing-here", headers={"authorization": "Bearer wk_x"})):
        assert r.status_code in (404, 405), r.url
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"


def test_metrics_are_for_this_host_an_allowed_network_or_the_token(server_factory):
    import ipaddress

    local = server_factory()  # the test client is 127.0.0.1, which is trusted as a proxy here
    assert local.http.get("/metrics").status_code == 200
    r = local.http.get("/metrics", headers={"x-forwarded-for": "81.2.69.142"})  # a visitor behind the proxy
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert "wave_" not in r.text
    # A front on this host that the edge was not told to trust: every visitor looks local.
    untrusted = server_factory(trusted_proxies=())
    assert untrusted.http.get("/metrics", headers={"x-forwarded-for": "81.2.69.142"}).status_code == 403
    assert untrusted.http.get("/metrics").status_code == 200
    scraper = server_factory(metrics_token="mt_secret", metrics_allow=(ipaddress.ip_network("10.0.0.0/8"),))
    assert scraper.http.get("/metrics").status_code == 403  # loopback no longer listed
    assert scraper.http.get("/metrics", headers={"x-forwarded-for": "10.1.2.3"}).status_code == 200
    assert scraper.http.get("/metrics", headers={"authorization": "Bearer mt_wrong"}).status_code == 403
    assert scraper.http.get("/metrics", headers={"authorization": "Bearer mt_\u00e9".encode()}).status_code == 403
    r = scraper.http.get("/metrics", headers={"authorization": "Bearer mt_secret", "x-forwarded-for": "81.2.69.142"})
    assert r.status_code == 200 and "wave_http_requests_total" in r.text


def test_metrics_settings_come_from_the_environment():
    from edge.settings import from_env

    s = from_env({"WAVE_METRICS_TOKEN": "t", "WAVE_METRICS_ALLOW": "10.0.0.0/8, 192.168.1.7"})
    assert s.metrics_token == "t" and [str(n) for n in s.metrics_allow] == ["10.0.0.0/8", "192.168.1.7/32"]
    assert from_env({"WAVE_METRICS_ALLOW": ""}).metrics_allow == ()
    assert [str(n) for n in from_env({}).metrics_allow] == ["127.0.0.0/8", "::1/128"]


def test_schema_is_the_json_document_with_no_third_party_script(server):
    """Litestar's default /schema page loaded an unpinned script from a CDN on the
    dashboard's origin; the edge now serves the document alone, downloading nothing."""
    for path in ("/schema", "/schema/openapi.json"):
        r = server.http.get(path)
        assert r.status_code == 200 and "json" in r.headers["content-type"], path
        assert r.json()["info"]["title"] == "wave-edge" and "<script" not in r.text
    for path in ("/schema/redoc", "/schema/swagger", "/schema/elements", "/schema/rapidoc", "/schema/scalar"):
        assert server.http.get(path).status_code == 404, path


def test_cors_preflight_and_tenant_allowed_origins(server, tenant_factory):
    r = server.http.options(
        "/v1/collect", headers={"origin": "https://shop.example", "access-control-request-method": "POST"}
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://shop.example"

    tenant, _ = tenant_factory(allowed_origins=("https://shop.example",))
    ok = consent(server.http, tenant.tenant_id, "viewer-x")  # no Origin: not a browser, allowed
    assert ok.status_code == 201
    r = collect(server.http, tenant.tenant_id, "viewer-x", [event()], headers={"origin": "https://shop.example"})
    assert r.status_code == 202
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    r = collect(server.http, tenant.tenant_id, "viewer-x", [event()], headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and r.json()["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers


def test_openapi_schema_lists_the_public_routes(server):
    paths = server.http.get("/schema/openapi.json").json()["paths"]
    assert {"/healthz", "/metrics", "/v1/collect", "/v1/consent", "/v1/consent/withdraw"} <= set(paths)


def test_privacy_cli_exports_and_purges_with_the_server_stopped(tmp_path):
    data = tmp_path / "var"
    tenant = json.loads(_cli(data, "tenant", "create", "t").stdout)["tenant_id"]
    chdb_dir = data / "clickhouse"
    # Beacons as the collector stores them, for two viewers (query_path runs any SQL).
    for viewer, n in (("carol", 3), ("dave", 2)):
        insert_beacons_at(chdb_dir, tenant, viewer, n)
    out = _cli(data, "privacy", "export", "--tenant", tenant, "--viewer-id", "carol", "--zip", str(tmp_path / "c.zip"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"]["viewer_events"] == 3 and (tmp_path / "c.zip").stat().st_size > 0
    out = _cli(data, "privacy", "purge", "--tenant", tenant, "--viewer-id", "carol")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows_deleted"]["viewer_events"] == 3
    left = query_path(chdb_dir, "SELECT viewer_id, count() FROM viewer_events GROUP BY viewer_id"
                                " SETTINGS apply_deleted_mask = 0")
    assert left == [["dave", 2]]
    logged = query_path(chdb_dir, "SELECT actor, action FROM audit_log ORDER BY ts")
    assert logged == [["cli", "tenant create"], ["cli", "privacy export"], ["cli", "privacy purge"]]
    bad = _cli(data, "privacy", "purge", "--tenant", tenant, "--viewer-id", "a", "--ip", "192.0.2.1")
    assert bad.returncode == 2 and "exactly one" in bad.stderr


def test_tenant_delete_cli_offboards_rows_and_media_with_the_server_stopped(tmp_path):
    """The offline side of the retention service: the same offboarding as the API, with
    the stopped edge's media deleted and another tenant untouched."""
    data = tmp_path / "var"
    tenant = json.loads(_cli(data, "tenant", "create", "t").stdout)["tenant_id"]
    other = json.loads(_cli(data, "tenant", "create", "u").stdout)["tenant_id"]
    chdb_dir = data / "clickhouse"
    insert_beacons_at(chdb_dir, tenant, "erin", 2)
    insert_beacons_at(chdb_dir, other, "finn", 1)
    video_id = "vd_00000000000000aa"
    query_path(chdb_dir, "INSERT INTO videos (video_id, tenant_id, source, status, created_at, updated_at)"
                         f" VALUES ('{video_id}', '{tenant}', 'upload', 'ready', now64(6), now64(6))")
    files = data / "media" / "videos" / video_id
    files.mkdir(parents=True)
    (files / "index.m3u8").write_text("#EXTM3U\n")
    link = data / "media" / "public" / "vod" / video_id
    link.parent.mkdir(parents=True)
    link.symlink_to(files)
    out = _cli(data, "tenant", "delete", tenant)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["videos_deleted"] == 1 and summary["rows_deleted"]["viewer_events"] == 2
    assert not files.exists() and not link.is_symlink()
    left = query_path(chdb_dir, "SELECT tenant_id, count() FROM viewer_events GROUP BY tenant_id"
                                " SETTINGS apply_deleted_mask = 0")
    assert left == [[other, 1]]
    assert ["cli", "tenant deleted"] in query_path(chdb_dir, "SELECT actor, action FROM audit_log")
    assert _cli(data, "tenant", "delete", tenant).returncode == 2  # gone


def test_media_cors_follows_the_tenants_allowed_origins(server, tenant_factory):
    _, key = tenant_factory(allowed_origins=("https://shop.example",))
    _, open_key = tenant_factory()
    sid = server.http.post("/v1/streams", json={"name": "s"}, headers={"authorization": f"Bearer {key}"}).json()["stream_id"]
    open_sid = server.http.post("/v1/streams", json={"name": "o"},
                                headers={"authorization": f"Bearer {open_key}"}).json()["stream_id"]
    preflight = {"access-control-request-method": "POST"}
    for path in (f"/v1/playback/{sid}", f"/live/{sid}/index.m3u8"):
        mine = server.http.get(path, headers={"origin": "https://shop.example"})
        assert mine.headers["access-control-allow-origin"] == "https://shop.example", path
        theirs = server.http.get(path, headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in theirs.headers, path
    assert server.http.options(f"/whep/{sid}", headers={"origin": "https://shop.example", **preflight}
                               ).headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in server.http.options(
        f"/whep/{sid}", headers={"origin": "https://evil.example", **preflight}).headers
    anyone = server.http.get(f"/v1/playback/{open_sid}", headers={"origin": "https://evil.example"})
    assert anyone.headers["access-control-allow-origin"] == "https://evil.example"  # no list: every origin



def test_serve_lifts_the_open_files_limit_to_the_hard_one():
    """Two descriptors per WHEP viewer and one per HTTP client: a soft limit of 1,024 (a
    common default) would refuse viewers with EMFILE long before the kernel's hard limit.
    (The embedded chDB lifts it too when it loads; with a ClickHouse server nothing did.)
    Run in a fresh process started with a low soft limit, chDB not loaded."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low, wanted = 256, (4096 if hard == resource.RLIM_INFINITY else min(hard, 4096))
    if wanted <= low:
        import pytest
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to lift")
    code = ("import resource, sys\n"
            "from edge import serving\n"
            "assert 'chdb' not in sys.modules\n"
            "before = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
            "now = serving.raise_open_files_limit()\n"
            "print(before, now, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, wanted)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(low), str(wanted), str(wanted)]

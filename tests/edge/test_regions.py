"""Regions: an edge serves one region; nothing of another region's tenant is stored here.

The proof runs two edges on this machine, `eu` and `us`, each in its own process with
its own embedded store and media (one chDB path per process), and asks every public and
admin path of each region's tenant of the *other* region's edge first: each answers 307
with `Location` on the right edge, and following it works (uploads, WHIP publish, WHEP
and HLS playback, consent, beacons, analytics, privacy, audit, keys, the dashboard's
sign-in in Chromium, and the player in Chromium as an iframe embed opened on the wrong
edge and as a script embed whose script came from it). After both edges stop, every table of each store is
read in full (deleted rows included) and every file under each data directory is read:
none holds an id, name, viewer or key of the other region's tenant.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from core.regions import region_of
from edge import media_layout
from edge.demo import write_demo_video
from edge.regions import region_of_request
from edge.settings import from_env, parse_regions
from edge.streaming import rtc
from tests.browser import chromium, played
from tests.conftest import ROOT, free_port, query_path, wait_for
from tests.edge.test_cli_and_http import _cli
from tests.edge.test_player_browser import _Site
from tests.edge.test_whep import _watch
from tests.media import PatternTrack, ToneTrack


# -- the parts ----------------------------------------------------------------------------
def test_ids_name_their_region_and_old_ids_stay_valid():
    assert region_of("tn_us_0123456789abcdef") == "us"
    assert region_of("st_eu-north_0123456789abcdef") == "eu-north"
    assert region_of("wk_us_" + secrets.token_urlsafe(32)) == "us"
    assert region_of("tn_0123456789abcdef") is None  # made before regions: this edge's own
    assert region_of("tn_US_0123456789abcdef") is None
    for made in (media_layout.new_stream_id("us"), media_layout.new_video_id("us"), "st_0123456789abcdef"):
        assert media_layout.MEDIA_ID.match(made), made
    assert media_layout.new_video_id("us").startswith("vd_us_")
    assert not media_layout.MEDIA_ID.match("vd_us_../0123456789abcdef")


def test_the_region_map_comes_from_the_environment_or_a_file(tmp_path):
    assert parse_regions("eu=http://127.0.0.1:1/, us=https://us.example") == {
        "eu": "http://127.0.0.1:1", "us": "https://us.example"}
    listed = tmp_path / "regions"
    listed.write_text("# where the regions are\neu=https://eu.example\nus=https://us.example  # primary\n")
    settings = from_env({"WAVE_REGION": "us", "WAVE_REGIONS": str(listed)})
    assert settings.region == "us" and settings.regions == {"eu": "https://eu.example", "us": "https://us.example"}
    assert from_env({}).region == "eu"
    for bad in ("eu=", "eu=ftp://x", "EU=http://x", "eu=http://x,us"):
        with pytest.raises(ValueError):
            parse_regions(bad)
    with pytest.raises(ValueError):
        from_env({"WAVE_REGION": "Europe!"})


def test_requests_are_routed_by_path_key_and_support_tenant():
    known = {"eu": "http://eu", "us": "http://us"}

    def scope(path, **headers):
        return {"path": path, "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}

    assert region_of_request(scope("/live/st_us_0123456789abcdef/seg_00001.m4s"), known) == "us"
    assert region_of_request(scope("/v1/tenants/tn_us_0123456789abcdef"), known) == "us"
    assert region_of_request(scope("/v1/streams", authorization="Bearer wk_us_" + "a" * 43), known) == "us"
    assert region_of_request(scope("/v1/audit", x_wave_tenant="tn_us_0123456789abcdef"), known) == "us"
    # A key made before regions whose random part looks like a region it is not: stays here.
    assert region_of_request(scope("/v1/streams", authorization="Bearer wk_ab_" + "a" * 43), known) is None
    assert region_of_request(scope("/v1/streams/st_0123456789abcdef"), known) is None


def test_a_region_this_edge_cannot_locate_is_misdirected_not_served(server, tenant_factory):
    """An id of a region missing from WAVE_REGIONS: 421 in the error shape, nothing done;
    a key that only looks like one stays with this edge (401 when unknown here)."""
    r = server.http.get("/v1/playback/vd_ap_0123456789abcdef")
    assert r.status_code == 421 and r.json()["error"] == "unknown_region"
    assert set(r.json()["detail"]) == {"path", "message"}
    r = server.http.post("/v1/streams", json={"name": "x"}, headers={"authorization": "Bearer wk_ap_" + "a" * 43})
    assert r.status_code == 401
    _, key = tenant_factory()
    assert key.startswith("wk_eu_")
    assert server.http.post("/v1/streams", json={"name": "x"}, headers={"authorization": f"Bearer {key}"}).json()[
        "stream_id"].startswith("st_eu_")


def test_tenant_create_refuses_a_region_this_deployment_does_not_serve(tmp_path):
    out = _cli(tmp_path / "var", "tenant", "create", "acme", "--region", "us", WAVE_REGION="eu")
    assert out.returncode != 0
    assert json.loads(out.stderr)["error"] == "wrong_region"
    assert not (tmp_path / "var" / "clickhouse").exists(), "nothing is created for a refused region"
    made = _cli(tmp_path / "var", "tenant", "create", "acme", WAVE_REGION="us")
    assert made.returncode == 0, made.stderr
    tenant_id = json.loads(made.stdout)["tenant_id"]
    assert tenant_id.startswith("tn_us_")
    # Purge, export, retention and offboarding of a tenant run in its own region only.
    for args in (("privacy", "purge", "--tenant", tenant_id, "--viewer-id", "v"),
                 ("tenant", "delete", tenant_id), ("retention", "show", "--tenant", tenant_id)):
        out = _cli(tmp_path / "var", *args, WAVE_REGION="eu", WAVE_REGIONS="us=https://us.example")
        assert out.returncode != 0, args
        assert "https://us.example" in json.loads(out.stderr)["detail"], out.stderr


# -- two regions on one machine ------------------------------------------------------------
class Region:
    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.data_dir = tmp_path / name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def create_tenant(self) -> dict:
        self.tenant_name = f"acme-{self.name}-{secrets.token_hex(4)}"
        made = _cli(self.data_dir, "tenant", "create", self.tenant_name, "--region", self.name, WAVE_REGION=self.name)
        assert made.returncode == 0, made.stderr
        self.tenant = json.loads(made.stdout)
        return self.tenant

    def start(self, regions: str) -> None:
        env = dict(os.environ, WAVE_DATA_DIR=str(self.data_dir), WAVE_REGION=self.name, WAVE_REGIONS=regions,
                   WAVE_ICE_HOSTS="127.0.0.1", WAVE_FLUSH_MS="100", WAVE_ROLLUP_S="1", WAVE_BACKUP_EVERY_H="0")
        env.pop("WAVE_CLICKHOUSE_URL", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "serve", "--port", str(self.port)],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            assert self.proc.poll() is None, f"the {self.name} edge exited"
            try:
                return httpx.get(self.base + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=90, what=f"the {self.name} edge")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=90)


class Drive:
    """One tenant's calls, each sent first to the other region's edge: it must answer 307
    to the tenant's own edge (and store nothing); the redirect is then followed."""

    def __init__(self, home: Region, away: Region) -> None:
        self.home, self.away = home, away
        self.raw = httpx.Client(base_url=away.base, timeout=60)
        self.follow = httpx.Client(base_url=away.base, timeout=60, follow_redirects=True)
        self.admin = {"authorization": f"Bearer {home.tenant['admin_key']}"}
        self.redirects = 0

    def __call__(self, method: str, path: str, expect: int | None = None, **kw) -> httpx.Response:
        r = self.raw.request(method, path, **kw)
        assert r.status_code == 307, (method, path, r.status_code, r.text)
        assert r.headers["location"] == self.home.base + r.request.url.raw_path.decode(), r.headers["location"]
        assert r.json()["error"] == "other_region"
        self.redirects += 1
        if expect is None:
            return r
        if "authorization" in kw.get("headers", {}):
            # HTTP clients drop `Authorization` on a redirect to another origin (httpx, curl
            # without --location-trusted, fetch): an admin client sends it again itself.
            done = self.raw.request(method, r.headers["location"], **kw)
        else:
            done = self.follow.request(method, path, **kw)
        assert str(done.url).startswith(self.home.base + "/"), done.url
        assert done.status_code == expect, (method, path, done.status_code, done.text)
        return done

    def close(self) -> None:
        self.raw.close()
        self.follow.close()


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def _publish_then_watch(drive: Drive, stream: dict) -> None:
    """A real WHIP publish and WHEP viewer, both sent to the wrong region first."""
    sid = stream["stream_id"]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in (PatternTrack(), ToneTrack()):
        pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"content-type": "application/sdp", "authorization": f"Bearer {stream['publish_token']}"}
    drive("POST", f"/whip/{sid}", content=pc.localDescription.sdp, headers=headers)
    async with httpx.AsyncClient(base_url=drive.away.base, timeout=60, follow_redirects=True) as http:
        # The publish token is an `Authorization` header: the WHIP client re-sends it to
        # the Location itself, as for any cross-origin redirect (RFC 9725 §4.5).
        r = await http.post(f"/whip/{sid}", content=pc.localDescription.sdp, headers=headers, follow_redirects=False)
        r = await http.post(r.headers["location"], content=pc.localDescription.sdp, headers=headers)
        assert r.status_code == 201, r.text
        assert str(r.url).startswith(drive.home.base)
        session = str(r.url.join(r.headers["location"]))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        deadline = time.monotonic() + 30
        while True:
            live = await http.get(f"/live/{sid}/index.m3u8")
            if live.status_code == 200 and live.text.count(".m4s") >= 2:
                break
            assert time.monotonic() < deadline, "no live HLS through the redirect"
            await asyncio.sleep(0.2)
        drive("POST", f"/whep/{sid}", content="v=0", headers={"content-type": "application/sdp"})
        viewer, got, location = await _watch(drive.away.base, sid, frames_wanted=10, follow=True)
        assert location.startswith(drive.home.base)
        assert len(got["video"]) >= 10
        await viewer.close()
        await http.delete(session)
    await pc.close()


def _drive_everything(drive: Drive, clip: bytes, viewer: str) -> dict:
    home = drive.home
    tenant_id = home.tenant["tenant_id"]
    admin = drive.admin
    stream = drive("POST", "/v1/streams", 201, json={"name": "keynote"}, headers=admin).json()
    assert stream["stream_id"].startswith(f"st_{home.name}_")
    drive("GET", "/v1/streams", 200, headers=admin)
    up = drive("POST", "/v1/videos", 202, files={"file": ("clip.mp4", clip)}, data={"title": "talk"}, headers=admin)
    video_id = up.json()["video_id"]
    assert video_id.startswith(f"vd_{home.name}_")
    wait_for(lambda: drive.raw.get(f"{home.base}/v1/videos/{video_id}", headers=admin).json()["status"] == "ready",
             timeout=90, what="the upload, through the redirect, to be packaged")
    drive("GET", f"/v1/videos/{video_id}", 200, headers=admin)
    drive("PATCH", f"/v1/videos/{video_id}", 200, json={"tags": ["regions"]}, headers=admin)
    drive("GET", "/v1/videos", 200, headers=admin)
    config = drive("GET", f"/v1/playback/{video_id}", 200).json()
    assert config["tenant_id"] == tenant_id
    drive("GET", f"/embed/{video_id}", 200)
    playlist = drive("GET", f"/vod/{video_id}/index.m3u8", 200).text
    segment = next(line for line in playlist.splitlines() if line and not line.startswith("#"))
    drive("GET", f"/vod/{video_id}/{segment}", 200)

    asyncio.run(_publish_then_watch(drive, stream))

    now = int(time.time() * 1000)
    body = {"tenant_id": tenant_id, "viewer_id": viewer, "purposes": ["analytics"], "policy_version": "1"}
    drive("POST", "/v1/consent", 201, json=body)
    events = [{"type": "viewstart", "ts": now, "view_id": f"w-{viewer}", "video_id": video_id},
              {"type": "playing", "ts": now + 500, "view_id": f"w-{viewer}", "video_id": video_id}]
    drive("POST", "/v1/collect", 202, content=json.dumps({"tenant_id": tenant_id, "viewer_id": viewer, "events": events}),
          headers={"content-type": "text/plain;charset=UTF-8"})
    gone = f"{viewer}-withdrawn"
    drive("POST", "/v1/consent", 201, json={**body, "viewer_id": gone})
    drive("POST", "/v1/consent/withdraw", 200, json={"tenant_id": tenant_id, "viewer_id": gone})

    span = {"from": _iso(datetime.now(timezone.utc) - timedelta(hours=1)),
            "to": _iso(datetime.now(timezone.utc) + timedelta(hours=1))}
    drive("GET", "/v1/analytics/summary", 200, params=span, headers=admin)
    drive("GET", "/v1/analytics/breakdown", 200, params={**span, "dimension": "country"}, headers=admin)
    drive("GET", "/v1/analytics/timeseries", 200, params={**span, "metric": "views", "interval": "hour"}, headers=admin)
    drive("GET", "/v1/retention", 200, headers=admin)
    wait_for(lambda: drive.raw.get(f"{home.base}/v1/privacy/export", params={"viewer_id": viewer}, headers=admin)
             .json()["tables"].get("viewer_events"), timeout=30, what="the beacons, through the redirect")
    drive("GET", "/v1/privacy/export", 200, params={"viewer_id": viewer}, headers=admin)
    drive("POST", "/v1/privacy/purge", 200, json={"viewer_id": f"{viewer}-nobody"}, headers=admin)
    drive("GET", "/v1/audit", 200, params=span, headers=admin)
    drive("GET", "/v1/keys", 200, headers=admin)
    signed = drive("POST", "/admin/session", 201, json={"admin_key": home.tenant["admin_key"]},
                   headers={"origin": home.base})
    assert signed.json()["tenant_id"] == tenant_id
    # Offboarding runs in the tenant's region: asked elsewhere, it is only redirected.
    drive("DELETE", "/v1/tenant", headers=admin)
    drive("DELETE", f"/v1/tenants/{tenant_id}")
    return {"stream_id": stream["stream_id"], "video_id": video_id}


async def _watch_in_chromium(away: Region, video_id: str) -> str:
    """The iframe embed of a video, opened on the wrong region's edge: the browser follows
    to the right one, the viewer accepts and watches; returns the player's viewer id."""
    async with chromium() as (context, errors):
        page = await context.new_page()
        await page.goto(f"{away.base}/embed/{video_id}")
        await page.locator('[data-consent="accept"]').click()
        await page.click(".wave-play")
        await played(page, 2.0)
        origin = await page.evaluate("location.origin")
        stored = await page.evaluate("JSON.parse(localStorage.getItem(Object.keys(localStorage)[0]))")
        await page.goto("about:blank")  # pagehide: viewend by sendBeacon, to the page's own edge
        await asyncio.sleep(0.5)
        assert not errors, errors
        return origin, stored["viewer_id"]


async def _dashboard_in_chromium(away: Region, home: Region) -> None:
    """Signing in on the wrong region's dashboard lands on the right one, where it works."""
    async with chromium() as (context, errors):
        page = await context.new_page()
        await page.goto(f"{away.base}/admin")
        await page.fill("#key", home.tenant["admin_key"])
        await page.click("#signin button[type=submit]")
        await page.wait_for_url(f"{home.base}/admin", timeout=15_000)
        await page.fill("#key", home.tenant["admin_key"])
        await page.click("#signin button[type=submit]")
        await page.locator('body[data-view="dashboard"]').wait_for(timeout=15_000)
        assert await page.locator("#tenant").inner_text() == home.tenant_name
        # The only console error allowed: the first edge's redirect of the sign-in itself.
        assert not [e for e in errors if "admin/session" not in e], errors


async def _script_embed_in_chromium(away: Region, home: Region, video_id: str, viewer: str, root: Path) -> list[str]:
    """A tenant's own site loads the player script from the wrong region's edge: the config
    request is redirected, and from then on the player talks to the media's region only."""
    site = _Site(root)
    requests: list[str] = []
    try:
        url = site.page("index.html", f"""<!doctype html><html><head><meta charset="utf-8">
<link rel="icon" href="data:,"><script src="{away.base}/player/wave-player.js"></script></head><body>
<wave-player video-id="{video_id}" consent="granted" viewer-id="{viewer}"></wave-player></body></html>""")
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(url)
            await page.click(".wave-play")
            await played(page, 2.0)
            await page.goto("about:blank")
            await asyncio.sleep(0.5)
            assert not errors, errors
    finally:
        site.close()
    return requests


_SCAN = """
import json, sys
import clickhouse_connect
client = clickhouse_connect.get_client(dsn="chdb://" + sys.argv[1])
needles = json.loads(sys.argv[2])
tables = [r[0] for r in client.query(
    "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine NOT LIKE '%View'").result_rows]
out = {}
for table in tables:
    try:  # rows deleted but not yet erased count too (FIELD-NOTES: apply_deleted_mask)
        rows = client.query(f"SELECT * FROM `{table}` SETTINGS apply_deleted_mask = 0").result_rows
    except Exception:
        rows = client.query(f"SELECT * FROM `{table}`").result_rows
    text = repr(rows)
    out[table] = {"rows": len(rows), "hits": [n for n in needles if n in text]}
print(json.dumps(out))
"""


# Tables the drive fills for its tenant at home: each must be scanned, and hold it only there.
_HOLDING = ("tenants", "api_keys", "streams", "videos", "consents", "viewer_events", "sessions", "audit_log")


def _scan_store(region: Region, needles: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCAN, str(region.data_dir / "clickhouse"), json.dumps(needles)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _scan_files(region: Region, needles: list[str]) -> list[str]:
    """Every file outside the database's own parts (media, spool, uploads, run files,
    backups), by name and by content."""
    found = []
    for path in region.data_dir.rglob("*"):
        if path.is_dir() or (region.data_dir / "clickhouse") in path.parents:
            continue
        data = path.read_bytes() if path.stat().st_size < 50_000_000 else b""
        found += [f"{path}: {n}" for n in needles if n in str(path) or n.encode() in data]
    return found


def test_two_regions_keep_their_tenants_data_to_themselves(tmp_path):
    eu, us = Region("eu", tmp_path), Region("us", tmp_path)
    regions = f"eu={eu.base},us={us.base}"
    for region in (eu, us):
        region.create_tenant()
    source = tmp_path / "clip.mp4"
    write_demo_video(source, seconds=4)
    clip = source.read_bytes()
    rtc.restrict_host_candidates(("127.0.0.1",))  # this process's WebRTC peers: loopback only
    made: dict[str, dict] = {}
    viewers: dict[str, list[str]] = {}
    try:
        for region in (eu, us):
            region.start(regions)
        for region in (eu, us):
            region.wait_healthy()
        for home, away in ((eu, us), (us, eu)):
            drive = Drive(home, away)
            try:
                viewer = f"viewer-{home.name}-{secrets.token_hex(4)}"
                made[home.name] = _drive_everything(drive, clip, viewer)
                viewers[home.name] = [viewer]
            finally:
                drive.close()
        # The player: a us video embedded from the eu edge plays, and its beacons land in us.
        assert httpx.get(f"{eu.base}/.well-known/wave-edge/regions").json() == {
            "region": "eu", "regions": {"eu": eu.base, "us": us.base}}
        asyncio.run(_dashboard_in_chromium(us, eu))
        origin, browser_viewer = asyncio.run(_watch_in_chromium(eu, made["us"]["video_id"]))
        assert origin == us.base
        viewers["us"].append(browser_viewer)
        host_viewer = f"host-viewer-{secrets.token_hex(4)}"
        requests = asyncio.run(_script_embed_in_chromium(eu, us, made["us"]["video_id"], host_viewer,
                                                         tmp_path / "site"))
        viewers["us"].append(host_viewer)
        # (its beacons go by sendBeacon at pagehide, which the request log may miss: they
        # are looked for in the us store below)
        assert any(r.startswith(f"{us.base}/v1/consent") for r in requests), requests
        assert not [r for r in requests if r.startswith(eu.base) and "/player/" not in r
                    and "/v1/playback/" not in r], requests
        key = {"authorization": f"Bearer {us.tenant['admin_key']}"}
        for viewer in (browser_viewer, host_viewer):
            wait_for(lambda: any(r["type"] == "viewend" for r in httpx.get(
                f"{us.base}/v1/privacy/export", params={"viewer_id": viewer}, headers=key, timeout=10,
            ).json()["tables"].get("viewer_events", [])), timeout=30, what="the browser's beacons in the us store")
    finally:
        for region in (eu, us):
            region.stop()
    rtc.restrict_host_candidates(())

    for home, away in ((eu, us), (us, eu)):
        tenant = home.tenant
        needles = [tenant["tenant_id"], home.tenant_name, made[home.name]["stream_id"], made[home.name]["video_id"],
                   hashlib.sha256(tenant["admin_key"].encode()).hexdigest(), *viewers[home.name]]
        abroad = _scan_store(away, needles)
        assert set(_HOLDING) <= set(abroad) and sum(t["rows"] for t in abroad.values()) > 0, abroad
        assert {t: s["hits"] for t, s in abroad.items() if s["hits"]} == {}, f"{home.name} data in {away.name}"
        assert _scan_files(away, needles) == [], f"{home.name} files in {away.name}"
        # ...while at home everything arrived.
        own = _scan_store(home, needles)
        for table in _HOLDING:
            assert tenant["tenant_id"] in own[table]["hits"] or made[home.name]["stream_id"] in own[table]["hits"] \
                or made[home.name]["video_id"] in own[table]["hits"], (table, own[table])
        assert _scan_files(home, [made[home.name]["video_id"]]), "the video's media is at home"


def test_a_backup_is_restored_only_in_its_region(tmp_path):
    """A backup of the us store copied to an eu deployment is refused there, and nothing of
    it lands in the eu store; in its own region it restores as before."""
    us_dir, eu_dir = tmp_path / "us", tmp_path / "eu"
    made = _cli(us_dir, "tenant", "create", "acme-us", WAVE_REGION="us")
    assert made.returncode == 0, made.stderr
    tenant_id = json.loads(made.stdout)["tenant_id"]
    backup = _cli(us_dir, "backup", "create", WAVE_REGION="us")
    assert backup.returncode == 0, backup.stderr
    backup_id = json.loads(backup.stdout)["backup_id"]
    assert _cli(eu_dir, "tenant", "create", "acme-eu", WAVE_REGION="eu").returncode == 0
    shutil.copytree(us_dir / "backups" / backup_id, eu_dir / "backups" / backup_id)
    refused = _cli(eu_dir, "backup", "restore", backup_id, WAVE_REGION="eu")
    assert refused.returncode == 2 and json.loads(refused.stderr)["error"] == "wrong_region", refused.stderr
    assert query_path(eu_dir / "clickhouse", f"SELECT count() FROM tenants WHERE tenant_id = '{tenant_id}'") == [[0]]
    restored = _cli(us_dir, "backup", "restore", backup_id, WAVE_REGION="us")
    assert restored.returncode == 0, restored.stderr

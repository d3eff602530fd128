"""The player-facing HTTP surface: playback config, embed page, player files, demo, `/`."""

from __future__ import annotations

import asyncio
import io
import json
import os

import av

from edge import demo
from tests.conftest import admin_headers, wait_for


def test_playback_config_of_a_stream_carries_the_tenants_prompt(server, tenant_factory):
    tenant, key = tenant_factory(consent_text="Count my views?", policy_version="v9", identified_viewers=True)
    sid = server.http.post("/v1/streams", json={"name": "Launch"}, headers=admin_headers(key)).json()["stream_id"]
    r = server.http.get(f"/v1/playback/{sid}", headers={"origin": "https://tenant.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://tenant.example"
    assert r.json() == {
        "media_id": sid, "kind": "stream", "tenant_id": tenant.tenant_id, "title": "Launch", "live": True,
        "hls_url": f"/live/{sid}/index.m3u8", "whep_url": f"/whep/{sid}", "poster_url": None,
        "consent": {"text": "Count my views?", "policy_version": "v9", "identified": True, "host_origins": [],
                    "mode": "opt-in", "valid_from_ms": 0},
    }


def test_private_media_needs_its_token_for_config_and_embed(server, tenant_factory):
    _, key = tenant_factory()
    sid = server.http.post("/v1/streams", json={"name": "p", "playback": "private"}, headers=admin_headers(key)).json()["stream_id"]
    assert server.http.get(f"/v1/playback/{sid}").status_code == 403
    assert server.http.get(f"/embed/{sid}").status_code == 403
    token = server.http.post(f"/v1/streams/{sid}/playback-token", json={}, headers=admin_headers(key)).json()["token"]
    config = server.http.get(f"/v1/playback/{sid}", params={"token": token}).json()
    assert config["hls_url"] == f"/live/{sid}/index.m3u8?token={token}"
    assert config["whep_url"] == f"/whep/{sid}?token={token}"
    page = server.http.get(f"/embed/{sid}", params={"token": token})
    assert page.status_code == 200 and f'token="{token}"' in page.text


def test_unknown_or_malformed_ids_answer_404_in_json(server):
    for path in ("/v1/playback/vd_0000000000000000", "/v1/playback/../../etc", "/embed/st_nope",
                 "/embed/%2e%2e%2fsecret.key", "/player/..%2fsecret.key", "/player/wave-player.css"):
        r = server.http.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"] == "not_found", path


def test_embed_page_escapes_query_values_and_sets_a_strict_csp(server, tenant_factory):
    _, key = tenant_factory()
    sid = server.http.post("/v1/streams", json={"name": "<script>x</script>"}, headers=admin_headers(key)).json()["stream_id"]
    r = server.http.get(f"/embed/{sid}", params={"transport": '"><script>alert(1)</script>', "evil": "x"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)" not in r.text and "<script>x</script>" not in r.text
    assert 'transport="&quot;&gt;&lt;script&gt;' in r.text
    assert "evil" not in r.text, "only the player's own attributes pass through"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors *" in csp
    assert server.http.get("/favicon.ico").status_code == 204


def test_the_embed_url_cannot_answer_for_the_viewer(server, tenant_factory):
    """Any site can frame the embed and write its URL: consent, viewer id, e-mail and
    identity token in the query never reach the player (the host's code passes them)."""
    tenant, key = tenant_factory(identified_viewers=True, allowed_origins=("https://tenant.example",))
    sid = server.http.post("/v1/streams", json={"name": "s"}, headers=admin_headers(key)).json()["stream_id"]
    r = server.http.get(f"/embed/{sid}", params={"consent": "granted", "viewer_id": "victim", "viewer-email": "a@b.c",
                                                 "identity_token": "1.ab", "autoplay": "", "muted": ""})
    assert r.status_code == 200
    assert f'<wave-player video-id="{sid}" autoplay="" muted="" embedded></wave-player>' in r.text
    for needle in ("granted", "victim", "a@b.c", "1.ab", "consent=", "viewer-id", "identity-token"):
        assert needle not in r.text, needle
    config = server.http.get(f"/v1/playback/{sid}").json()
    assert config["consent"]["host_origins"] == ["https://tenant.example"], "who may answer by postMessage"


def test_player_script_is_served(server):
    r = server.http.get("/player/wave-player.js", headers={"origin": "https://tenant.example"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert b"wave-player" in r.content and len(r.content) > 100_000  # hls.js is in the bundle
    assert r.headers["access-control-allow-origin"] == "https://tenant.example"


def test_demo_is_made_once_with_a_poster_and_shown_on_the_home_page(server_factory, tmp_path):
    data_dir = tmp_path / "demo-edge"
    server = server_factory(data_dir=data_dir, demo=True)
    made = demo.load(data_dir)
    assert made is not None and oct(os.stat(data_dir / "demo.json").st_mode & 0o777) == "0o600"
    key = admin_headers(made.admin_key)

    def ready():
        return server.http.get(f"/v1/videos/{made.video_id}", headers=key).json()["status"] == "ready"

    wait_for(ready, timeout=90, what="the demo video")
    info = server.http.get(f"/v1/videos/{made.video_id}", headers=key).json()
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac" and abs(info["duration_s"] - 30) < 1
    home = server.http.get("/")
    assert f'<wave-player video-id="{made.video_id}">' in home.text and 'href="/admin"' in home.text
    assert "DB-IP" in home.text
    config = server.http.get(f"/v1/playback/{made.video_id}").json()
    poster = server.http.get(config["poster_url"])
    assert poster.headers["content-type"] == "image/jpeg"
    with av.open(io.BytesIO(poster.content)) as jpeg:
        frame = next(jpeg.decode(video=0))
        assert (frame.width, frame.height) == (640, 360)
    # A second start finds it: no second tenant, same video.
    again = asyncio.run(demo.ensure(server.edge))
    assert json.loads((data_dir / "demo.json").read_text())["video_id"] == again.video_id == made.video_id


def test_every_surface_carries_its_security_headers(server, tenant_factory):
    """The embed may be framed by any site, the dashboard and home page by none other; no
    response may be MIME-sniffed or leak its URL as a referrer."""
    _, key = tenant_factory()
    sid = server.http.post("/v1/streams", json={"name": "s"}, headers=admin_headers(key)).json()["stream_id"]
    pages = {f"/embed/{sid}": "frame-ancestors *", "/admin": "frame-ancestors 'none'", "/": "frame-ancestors 'self'"}
    for path, ancestors in pages.items():
        r = server.http.get(path)
        assert r.status_code == 200 and ancestors in r.headers["content-security-policy"], path
        assert "default-src 'self'" in r.headers["content-security-policy"]
    assert server.http.get("/admin").headers["x-frame-options"] == "DENY"
    for r in (server.http.get("/player/wave-player.js"), server.http.get("/healthz"), server.http.get("/admin"),
              server.http.get(f"/v1/playback/{sid}"), server.http.get("/v1/streams", headers=admin_headers(key)),
              server.http.post("/v1/collect", content=b"{}"), server.http.get(f"/live/{sid}/index.m3u8")):
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["referrer-policy"] in ("no-referrer", "same-origin"), r.url


def test_a_tenant_that_lists_its_origins_is_framed_by_those_only(server, tenant_factory):
    """Any site may frame the embed of a tenant that lists no origin; one that lists them is
    framed by them alone, so another site cannot frame its player under a button of its own."""
    _, open_key = tenant_factory()
    _, listed_key = tenant_factory(allowed_origins=("https://shop.example", "https://x.example; script-src *"))
    for key, ancestors in ((open_key, "frame-ancestors *;"), (listed_key, "frame-ancestors 'self' https://shop.example;")):
        sid = server.http.post("/v1/streams", json={"name": "s"}, headers=admin_headers(key)).json()["stream_id"]
        csp = server.http.get(f"/embed/{sid}").headers["content-security-policy"]
        assert ancestors in csp and "script-src *" not in csp, csp

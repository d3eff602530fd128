"""Tenant B's admin key, tried on every admin route against tenant A's resources.

The table below must name every admin route of the app (the test fails when a route is
added without a case): each case makes B's call aimed at A and checks that nothing of A
was read or changed. At the end A's key still sees all of A, unchanged.
"""

from __future__ import annotations

import time

import msgspec
import pytest

from analytics.webrtc_qoe import Sample
from core.tenants import KEY_ID_CHARS, hash_key
from edge.vod import videos
from retention import support
from tests.conftest import admin_headers, collect, consent, count_events, event, wait_for

PUBLIC = ("/v1/collect", "/v1/consent", "/v1/playback/")


@pytest.fixture
def victim(server, tenant_factory, store):
    """Tenant A with a stream, a video, beacons and a consent of viewer alice, a support grant."""
    a, key_a = tenant_factory(name="victim")
    stream = server.http.post("/v1/streams", json={"name": "a-live"}, headers=admin_headers(key_a)).json()
    video = videos.Video(video_id=videos.new_video_id(), tenant_id=a.tenant_id, title="a-video", status="ready",
                         created_at=time.time())
    videos.save(store, video)
    assert consent(server.http, a.tenant_id, "alice").status_code == 201
    assert collect(server.http, a.tenant_id, "alice", [event("viewstart", video_id=video.video_id),
                                                       event("playing", video_id=video.video_id)]).status_code == 202
    wait_for(lambda: count_events(store, a.tenant_id) == 2, what="A's beacons")
    grant = support.grant(store, a.tenant_id, "key:test", 3600)
    identity = server.http.get("/v1/identity-secret", headers=admin_headers(key_a)).json()["identity_secret"]
    receipt = server.http.post("/v1/privacy/purge", json={"viewer_id": "nobody"}, headers=admin_headers(key_a)).json()
    store.insert_json_lines("webrtc_samples", msgspec.json.encode(Sample(  # a WHEP viewer's QoE, linked to alice
        tenant_id=a.tenant_id, stream_id=stream["stream_id"], session_id="qoe-a", kind="video", ts=time.time() - 60,
        started_at=time.time() - 70, packets_sent=100, bytes_sent=100_000, packets_lost=1, fraction_lost=0.0,
        jitter_ms=1.0, rtt_ms=2.0, viewer_id="alice", retention_days=30)) + b"\n")
    return {"purge_id": receipt["purge_id"], "tenant": a, "key": key_a, "stream_id": stream["stream_id"], "video_id": video.video_id,
            "grant_id": grant["grant_id"], "key_id": hash_key(key_a)[:KEY_ID_CHARS], "identity_secret": identity}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _cases(a: dict) -> dict:
    """(method, route template) -> (path, request kwargs, check(response))."""
    tid, sid, vid = a["tenant"].tenant_id, a["stream_id"], a["video_id"]

    def status(*codes):
        return lambda r: r.status_code in codes

    def lacks(*needles):
        return lambda r: r.status_code < 300 and not any(n in r.text for n in needles)

    def zero_views(r):
        return r.status_code == 200 and r.json()["views"] == 0

    now = time.time()
    window = {"from": _iso(now - 86400), "to": _iso(now + 3600)}
    return {
        ("GET", "/v1/streams"): ("/v1/streams", {}, lacks(sid)),
        ("POST", "/v1/streams"): ("/v1/streams", {"json": {"name": "b"}}, status(201)),
        ("GET", "/v1/streams/{stream_id}"): (f"/v1/streams/{sid}", {}, status(404)),
        ("POST", "/v1/streams/{stream_id}/playback-token"): (f"/v1/streams/{sid}/playback-token", {}, status(404)),
        ("GET", "/v1/live/settings"): ("/v1/live/settings", {}, lambda r: r.status_code == 200
                                       and r.json() == {"live_ladder": [360]} and tid not in r.text),
        ("PUT", "/v1/live/settings"): ("/v1/live/settings", {"json": {"live_ladder": [240]}},
                                       lambda r: r.status_code == 200 and r.json() == {"live_ladder": [240]}),
        ("GET", "/v1/videos"): ("/v1/videos", {}, lacks(vid)),
        ("POST", "/v1/videos"): ("/v1/videos", {"files": {"file": ("x.mp4", b"not a video")}},
                                 lambda r: r.status_code == 202 and r.json()["video_id"] != vid),
        ("GET", "/v1/videos/{video_id}"): (f"/v1/videos/{vid}", {}, status(404)),
        ("PATCH", "/v1/videos/{video_id}"): (f"/v1/videos/{vid}", {"json": {"title": "pwned"}}, status(404)),
        ("DELETE", "/v1/videos/{video_id}"): (f"/v1/videos/{vid}", {}, status(404)),
        ("POST", "/v1/videos/{video_id}/playback-token"): (f"/v1/videos/{vid}/playback-token", {}, status(404)),
        ("GET", "/v1/analytics/summary"): ("/v1/analytics/summary", {"params": {**window, "video_id": vid}},
                                           zero_views),
        ("GET", "/v1/analytics/quality"): ("/v1/analytics/quality", {"params": {**window, "video_id": vid}},
                                           lambda r: r.status_code == 200
                                           and r.json() == {"average_bitrate_kbps": None, "upscale_pct": None}),
        ("GET", "/v1/analytics/breakdown"): ("/v1/analytics/breakdown",
                                             {"params": {**window, "dimension": "country", "video_id": vid}},
                                             lambda r: r.status_code == 200 and r.json()["rows"] == []),
        ("GET", "/v1/analytics/timeseries"): ("/v1/analytics/timeseries",
                                              {"params": {**window, "metric": "views", "interval": "day",
                                                          "video_id": vid}},
                                              lambda r: r.status_code == 200
                                              and all(not p["value"] for p in r.json()["points"])),
        ("GET", "/v1/analytics/realtime"): ("/v1/analytics/realtime", {}, lacks(vid, "alice")),
        ("GET", "/v1/analytics/webrtc"): ("/v1/analytics/webrtc", {"params": window},
                                          lambda r: r.status_code == 200 and r.json() == {"streams": [], "rows": []}),
        ("POST", "/v1/privacy/purge"): ("/v1/privacy/purge", {"json": {"viewer_id": "alice"}},
                                        lambda r: r.status_code == 200 and not any(r.json()["rows_deleted"].values())),
        ("GET", "/v1/privacy/export"): ("/v1/privacy/export", {"params": {"viewer_id": "alice"}}, lacks(vid, tid)),
        ("GET", "/v1/privacy/receipts/{purge_id}"): (f"/v1/privacy/receipts/{a['purge_id']}", {}, status(404)),
        ("GET", "/v1/privacy/ropa"): ("/v1/privacy/ropa", {}, lacks(tid, "victim")),
        ("GET", "/v1/audit"): ("/v1/audit", {}, lacks(tid, sid, a["key_id"])),
        ("GET", "/v1/retention"): ("/v1/retention", {}, lacks(tid)),
        ("PUT", "/v1/retention"): ("/v1/retention", {"json": {"viewer_events_days": 7}}, lacks(tid)),
        ("GET", "/v1/privacy/settings"): ("/v1/privacy/settings", {}, lambda r: r.status_code == 200
                                          and r.json() == {"k_anonymity": 5, "consent_mode": "opt-in"} and tid not in r.text),
        ("PUT", "/v1/privacy/settings"): ("/v1/privacy/settings", {"json": {"k_anonymity": 1}},
                                          lambda r: r.status_code == 200 and r.json() == {"k_anonymity": 1, "consent_mode": "opt-in"}),
        ("DELETE", "/v1/tenant"): ("/v1/tenant", {"params": {"confirm": tid}}, status(400)),
        ("DELETE", "/v1/tenants/{tenant_id}"): (f"/v1/tenants/{tid}", {}, status(401)),
        ("POST", "/v1/support-grants"): ("/v1/support-grants", {}, lambda r: r.status_code == 201
                                         and r.json()["grant_id"] != a["grant_id"]),
        ("GET", "/v1/support-grants"): ("/v1/support-grants", {}, lacks(a["grant_id"])),
        ("DELETE", "/v1/support-grants/{grant_id}"): (f"/v1/support-grants/{a['grant_id']}", {}, status(404)),
        ("GET", "/v1/keys"): ("/v1/keys", {}, lacks(a["key_id"])),
        ("POST", "/v1/keys"): ("/v1/keys", {}, status(201)),
        ("DELETE", "/v1/keys/{key_id}"): (f"/v1/keys/{a['key_id']}", {}, status(404)),
        ("GET", "/v1/identity-secret"): ("/v1/identity-secret", {}, lacks(a["identity_secret"])),
        ("POST", "/v1/identity-secret"): ("/v1/identity-secret", {}, lacks(a["identity_secret"])),
    }


def _admin_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for route in app.routes:
        if not route.path.startswith("/v1/") or route.path.startswith(PUBLIC):
            continue
        for handler in getattr(route, "route_handlers", ()):
            routes |= {(method, route.path_format) for method in handler.http_methods if method not in ("HEAD", "OPTIONS")}
    return routes


def test_no_admin_route_reaches_another_tenants_data(server, tenant_factory, victim, store):
    cases = _cases(victim)
    app_routes = _admin_routes(server.app)
    assert set(cases) == app_routes, sorted(app_routes ^ set(cases))  # a new route needs its case here
    _, key_b = tenant_factory(name="attacker")
    refused = {}
    for (method, template), (path, kwargs, check) in cases.items():
        r = server.http.request(method, path, headers=admin_headers(key_b), **kwargs)
        if not check(r):
            refused[f"{method} {template}"] = (r.status_code, r.text[:300])
    assert not refused, refused

    # A is whole: its key works, its stream, video, beacons, grant and retention are as they were.
    a = admin_headers(victim["key"])
    assert server.http.get(f"/v1/streams/{victim['stream_id']}", headers=a).status_code == 200
    assert server.http.get(f"/v1/videos/{victim['video_id']}", headers=a).json()["title"] == "a-video"
    assert count_events(store, victim["tenant"].tenant_id) == 2
    qoe = server.http.get("/v1/analytics/webrtc", params={"stream_id": victim["stream_id"]}, headers=a).json()
    assert [row["session_id"] for row in qoe["rows"]] == ["qoe-a"]
    assert victim["grant_id"] in server.http.get("/v1/support-grants", headers=a).text
    assert server.http.get("/v1/retention", headers=a).json()["viewer_events_days"] != 7
    assert server.http.get("/v1/privacy/settings", headers=a).json() == {"k_anonymity": 5, "consent_mode": "opt-in"}
    assert server.http.get("/v1/identity-secret", headers=a).json()["identity_secret"] == victim["identity_secret"]

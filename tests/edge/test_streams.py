"""Streams API: admin auth, tenant isolation, hashed publish tokens, signed playback tokens."""

import hashlib

from edge.streaming.tokens import PlaybackTokens
from tests.conftest import admin_headers


def test_create_list_and_show_a_stream(server, tenant_factory, store):
    tenant, key = tenant_factory()
    r = server.http.post("/v1/streams", json={"name": "keynote"}, headers=admin_headers(key))
    assert r.status_code == 201, r.text
    created = r.json()
    sid = created["stream_id"]
    assert created["whip_url"] == f"{server.base_url}/whip/{sid}"
    assert created["whep_url"] == f"{server.base_url}/whep/{sid}"
    assert created["hls_url"] == f"{server.base_url}/live/{sid}/index.m3u8"
    assert created["embed_url"] == f"{server.base_url}/embed/{sid}"
    assert created["publish_token"].startswith("pt_")
    stored = store.rows("SELECT publish_token_hash, tenant_id FROM streams WHERE stream_id = {s:String}", {"s": sid})
    assert stored == [(hashlib.sha256(created["publish_token"].encode()).hexdigest(), tenant.tenant_id)]

    listed = server.http.get("/v1/streams", headers=admin_headers(key)).json()["streams"]
    assert [s["stream_id"] for s in listed] == [sid]
    shown = server.http.get(f"/v1/streams/{sid}", headers=admin_headers(key)).json()
    assert shown["name"] == "keynote" and shown["publishing"] is False and shown["viewers"] == 0


def test_admin_routes_need_a_valid_key(server):
    assert server.http.post("/v1/streams", json={"name": "x"}).status_code == 401
    r = server.http.get("/v1/streams", headers=admin_headers("wk_not-a-key"))
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = server.http.get("/v1/streams", headers={"authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401


def test_a_tenant_never_sees_another_tenants_streams(server, tenant_factory):
    _, key_a = tenant_factory(name="a")
    _, key_b = tenant_factory(name="b")
    sid = server.http.post("/v1/streams", json={"name": "a-only"}, headers=admin_headers(key_a)).json()["stream_id"]
    assert server.http.get("/v1/streams", headers=admin_headers(key_b)).json()["streams"] == []
    r = server.http.get(f"/v1/streams/{sid}", headers=admin_headers(key_b))
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = server.http.post(f"/v1/streams/{sid}/playback-token", json={}, headers=admin_headers(key_b))
    assert r.status_code == 404


def test_bad_stream_bodies_are_400(server, tenant_factory):
    _, key = tenant_factory()
    r = server.http.post("/v1/streams", json={"name": ""}, headers=admin_headers(key))
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.name"
    r = server.http.post("/v1/streams", json={"name": "x", "playback": "secret"}, headers=admin_headers(key))
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.playback"


def test_playback_tokens_are_signed_and_expire(server, tenant_factory):
    _, key = tenant_factory()
    sid = server.http.post("/v1/streams", json={"name": "p", "playback": "private"},
                           headers=admin_headers(key)).json()["stream_id"]
    r = server.http.post(f"/v1/streams/{sid}/playback-token", json={"ttl_s": 600}, headers=admin_headers(key))
    assert r.status_code == 201
    token = r.json()["token"]
    tokens = server.edge.playback_tokens
    assert tokens.valid(sid, token)
    assert not tokens.valid("st_0000000000000000", token)  # bound to its id
    assert not tokens.valid(sid, token, now=r.json()["expires_at"] + 1)  # expires
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert not tokens.valid(sid, forged)
    assert not PlaybackTokens(b"another secret").valid(sid, token)
    for junk in (None, "", "abc", "99999999999999.00", ".", "1.2.3"):
        assert not tokens.valid(sid, junk)

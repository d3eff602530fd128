"""Tenant offboarding: every row and media file gone, verified, and gone again after a restore."""

from __future__ import annotations

import time
import uuid

from analytics import events
from edge.demo import write_demo_video
from retention import offboard, purge
from tests.conftest import admin_headers, collect, consent, stored_row, wait_for


def test_deleting_a_tenant_leaves_no_row_and_no_media(server, tenant_factory, store, tmp_path):
    a, key_a = tenant_factory()
    b, key_b = tenant_factory()
    http = server.http
    for tenant in (a, b):
        assert consent(http, tenant.tenant_id, "v").status_code == 201
        evs = [{"type": "viewstart", "ts": int(time.time() * 1000), "view_id": "w", "video_id": "x"}]
        assert collect(http, tenant.tenant_id, "v", evs).status_code == 202
    http.post("/v1/streams", json={"name": "s"}, headers=admin_headers(key_a))
    clip = tmp_path / "clip.mp4"
    write_demo_video(clip, seconds=2)
    with open(clip, "rb") as fh:
        video_id = http.post("/v1/videos", headers=admin_headers(key_a), files={"file": ("c.mp4", fh)}).json()["video_id"]
    wait_for(lambda: http.get(f"/v1/videos/{video_id}", headers=admin_headers(key_a)).json()["status"] == "ready")
    media = server.edge.settings.media_dir
    assert (media / "videos" / video_id).is_dir() and (media / "public" / "vod" / video_id).is_symlink()
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    b_rows = {t: offboard._rows(store, t, b.tenant_id) for t in offboard.tenant_tables(store)}

    assert http.delete("/v1/tenant", headers=admin_headers(key_a)).status_code == 400  # no confirmation
    r = http.delete("/v1/tenant", params={"confirm": a.tenant_id}, headers=admin_headers(key_a))
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["videos_deleted"] == 1 and summary["rows_deleted"]["viewer_events"] == 1
    assert summary["rows_deleted"]["tenants"] >= 1 and summary["rows_deleted"]["api_keys"] == 1

    left = {t: offboard._rows(store, t, a.tenant_id) for t in offboard.tenant_tables(store)}
    assert {t: n for t, n in left.items() if n and t not in offboard.KEEP} == {}
    kept = store.rows("SELECT action FROM audit_log WHERE tenant_id = {t:String} ORDER BY ts", {"t": a.tenant_id})
    assert ("tenant deleted",) in kept and all(a_ in {"tenant deleted", "DELETE /v1/tenant"} for a_, in kept)
    assert not (media / "videos" / video_id).exists() and not (media / "public" / "vod" / video_id).is_symlink()
    assert {t: offboard._rows(store, t, b.tenant_id) for t in offboard.tenant_tables(store)} == b_rows
    time.sleep(2.1)  # the key cache's lifetime
    assert http.get("/v1/streams", headers=admin_headers(key_a)).status_code == 401

    # A backup from before the deletion comes back: the replay deletes the tenant again.
    events.insert(store, events.encode_rows([stored_row(a.tenant_id, event_id=str(uuid.uuid4()))]))
    erased = purge.replay(store, server.edge.secret, time.time() - 60)
    assert erased["viewer_events"] == 1
    assert offboard._rows(store, "viewer_events", a.tenant_id) == 0


def test_operator_key_offboards_other_tenants_and_nothing_else(server, tenant_factory, store):
    from core.tenants import create_support_key

    tenant, key = tenant_factory()
    operator = {"authorization": f"Bearer {create_support_key(store, 'ops', role='operator')}"}
    assert server.http.get("/v1/analytics/summary", headers=operator).status_code == 401, "no data access"
    assert server.http.delete(f"/v1/tenants/{tenant.tenant_id}", headers=admin_headers(key)).status_code == 401
    assert server.http.delete("/v1/tenants/tn_0000000000000000", headers=operator).status_code == 404
    r = server.http.delete(f"/v1/tenants/{tenant.tenant_id}", headers=operator)
    assert r.status_code == 200, r.text
    assert offboard._rows(store, "api_keys", tenant.tenant_id) == 0
    actors = store.rows("SELECT actor_kind, action FROM audit_log WHERE tenant_id = {t:String}", {"t": tenant.tenant_id})
    assert ("operator", "tenant deleted") in actors

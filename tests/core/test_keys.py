"""Admin keys: rotation (create, switch, revoke) with immediate effect, and never a key in
the clear anywhere the edge writes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys

from tests.conftest import ROOT, admin_headers, wait_for
from tests.edge.test_whip_hls import _publish


def test_rotate_then_revoke_takes_effect_at_once(server, tenant_factory, store):
    tenant, old = tenant_factory()
    http = server.http
    assert http.get("/v1/streams", headers=admin_headers(old)).status_code == 200  # now cached as valid
    session = http.post("/admin/session", json={"admin_key": old})
    cookie = session.cookies.get("wave_admin")
    created = http.post("/v1/keys", headers=admin_headers(old))
    assert created.status_code == 201
    new, new_id = created.json()["admin_key"], created.json()["key_id"]
    assert http.get("/v1/streams", headers=admin_headers(new)).status_code == 200
    listed = http.get("/v1/keys", headers=admin_headers(new)).json()["keys"]
    old_id = next(k["key_id"] for k in listed if k["key_id"] != new_id)
    assert {k["key_id"]: k["current"] for k in listed} == {old_id: False, new_id: True}
    assert old not in json.dumps(listed) and new not in json.dumps(listed)

    revoked = http.delete(f"/v1/keys/{old_id}", headers=admin_headers(new))
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert http.get("/v1/streams", headers=admin_headers(old)).status_code == 401  # no cache grace on this edge
    http.cookies.clear()
    assert http.get("/v1/streams", cookies={"wave_admin": cookie}).status_code == 401  # its dashboard sessions end
    assert http.get("/v1/streams", headers=admin_headers(new)).status_code == 200

    last = http.delete(f"/v1/keys/{new_id}", headers=admin_headers(new))
    assert last.status_code == 409 and last.json()["error"] == "conflict"
    assert http.delete(f"/v1/keys/{old_id}", headers=admin_headers(new)).status_code == 404  # already revoked
    assert http.delete("/v1/keys/abc", headers=admin_headers(new)).status_code == 404  # too short to name one

    def audit_text() -> str:
        return str(store.rows("SELECT action, params, before, after, actor FROM audit_log WHERE tenant_id = {t:String}",
                              {"t": tenant.tenant_id}))

    wait_for(lambda: "DELETE /v1/keys/{key_id}" in audit_text(), what="the revocation's audit record")
    text = audit_text()
    assert "POST /v1/keys" in text and old_id in text and old not in text and new not in text


def test_operator_cli_issues_and_revokes_keys(tmp_path):
    env = dict(os.environ, WAVE_DATA_DIR=str(tmp_path))

    def cli(*args) -> tuple[int, dict]:
        out = subprocess.run([sys.executable, "-m", "edge.cli", *args], env=env, cwd=ROOT, capture_output=True,
                             text=True)
        return out.returncode, json.loads((out.stdout or out.stderr).strip().splitlines()[-1])

    _, created = cli("tenant", "create", "acme")
    code, extra = cli("tenant", "key-create", created["tenant_id"])
    assert code == 0 and extra["admin_key"].startswith("wk_") and len(extra["key_id"]) == 12
    code, out = cli("tenant", "key-revoke", created["tenant_id"], extra["key_id"])
    assert code == 0 and out["revoked"] is True
    code, out = cli("tenant", "key-revoke", created["tenant_id"], extra["key_id"])
    assert code == 2 and out["error"] == "not_found"
    code, out = cli("tenant", "key-create", "tn_nobody")
    assert code == 2


def test_no_key_or_token_reaches_the_logs(server, tenant_factory, caplog):
    caplog.set_level(logging.DEBUG)
    _, key = tenant_factory()
    http = server.http
    stream = http.post("/v1/streams", json={"name": "s"}, headers=admin_headers(key)).json()
    new = http.post("/v1/keys", headers=admin_headers(key)).json()["admin_key"]
    token = http.post(f"/v1/streams/{stream['stream_id']}/playback-token", headers=admin_headers(new)).json()["token"]
    http.post("/admin/session", json={"admin_key": new})
    http.get("/v1/streams", headers=admin_headers("wk_" + "x" * 43))  # a wrong key: refused, not logged either
    http.post(f"/whip/{stream['stream_id']}", content="v=0", headers={
        "content-type": "application/sdp", "authorization": f"Bearer {stream['publish_token']}"})

    async def publish_and_stop() -> None:  # the edge logs the publish's end
        pc, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        http.delete(r.headers["location"], headers={"authorization": f"Bearer {stream['publish_token']}"})
        await pc.close()

    asyncio.run(publish_and_stop())
    http.get(f"/live/{stream['stream_id']}/index.m3u8", params={"token": token})
    server_side = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records
                             if not r.name.startswith(("httpx", "httpcore")))  # the test's own client logs URLs
    assert "publish of" in server_side, "the server logged nothing: the check would prove nothing"
    for secret in (key, new, token, stream["publish_token"], "x" * 43):
        assert secret not in server_side

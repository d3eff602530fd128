"""Admin keys: rotation (create, switch, revoke) with immediate effect, and never a key in
the clear anywhere the edge writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, wait_for


def _admin(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def test_rotate_then_revoke_takes_effect_at_once(server, tenant_factory, store):
    tenant, old = tenant_factory()
    http = server.http
    assert http.get("/v1/streams", headers=_admin(old)).status_code == 200  # now cached as valid
    session = http.post("/admin/session", json={"admin_key": old})
    cookie = session.cookies.get("wave_admin")
    created = http.post("/v1/keys", headers=_admin(old))
    assert created.status_code == 201
    new, new_id = created.json()["admin_key"], created.json()["key_id"]
    assert http.get("/v1/streams", headers=_admin(new)).status_code == 200
    listed = http.get("/v1/keys", headers=_admin(new)).json()["keys"]
    old_id = next(k["key_id"] for k in listed if k["key_id"] != new_id)
    assert {k["key_id"]: k["current"] for k in listed} == {old_id: False, new_id: True}
    assert old not in json.dumps(listed) and new not in json.dumps(listed)

    revoked = http.delete(f"/v1/keys/{old_id}", headers=_admin(new))
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert http.get("/v1/streams", headers=_admin(old)).status_code == 401  # no cache grace on this edge
    http.cookies.clear()
    assert http.get("/v1/streams", cookies={"wave_admin": cookie}).status_code == 401  # its dashboard sessions end
    assert http.get("/v1/streams", headers=_admin(new)).status_code == 200

    last = http.delete(f"/v1/keys/{new_id}", headers=_admin(new))
    assert last.status_code == 409 and last.json()["error"] == "conflict"
    assert http.delete(f"/v1/keys/{old_id}", headers=_admin(new)).status_code == 404  # already revoked
    assert http.delete("/v1/keys/abc", headers=_admin(new)).status_code == 404  # too short to name one

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

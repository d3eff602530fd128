"""Erasure receipts: signed by the deployment's key, verified by the CLI and the API, and
broken by any change of any byte."""

from __future__ import annotations

import json
import time

from retention import receipts
from tests.conftest import admin_headers, collect, consent, insert_beacons_at, wait_for
from tests.edge.test_cli_and_http import _cli


def _signed(secret=b"s" * 32) -> tuple[receipts.ReceiptSigner, dict]:
    signer = receipts.ReceiptSigner.from_secret(secret)
    receipt = signer.sign(receipts.fields(
        kind="erasure", purge_id="pg_0123456789abcdef", tenant_id="tn_x", region="eu",
        subject={"kind": "email", "hash": receipts.subject_hash(secret, "tn_x", "email", "ann@example.org"),
                 "linked_viewer_id_hashes": []},
        requested_by="key:abc", requested_at=1_800_000_000.0, completed_at=1_800_000_001.5,
        found={"viewer_events": 3}, after={"viewer_events": 0}, spool={"status": "drained"},
        backups=receipts.backups_status([], 1_800_000_001.5)))
    return signer, receipt


def test_a_receipt_verifies_and_any_changed_byte_breaks_it():
    signer, receipt = _signed()
    data = receipts.encode(receipt)
    assert receipts.verify(data, signer.public)["purge_id"] == "pg_0123456789abcdef"
    # The usual layouts of the same receipt verify too (a saved API answer, `jq .`).
    for layout in (json.dumps(receipt), json.dumps(receipt, indent=2) + "\n"):
        receipts.verify(layout.encode(), signer.public)
    for i in range(len(data)):
        for flip in (0x01, 0x20):
            changed = bytearray(data)
            changed[i] ^= flip
            try:
                receipts.verify(bytes(changed), signer.public)
            except receipts.Invalid:
                continue
            raise AssertionError(f"byte {i} changed ({data[i:i + 1]!r} -> {bytes(changed[i:i + 1])!r}) still verifies")
    # Every other value of each signature byte too (base64's last character has unused bits).
    start = data.index(b'"signature":"') + len(b'"signature":"')
    for i in range(start, data.index(b'"', start)):
        for value in range(256):
            if value != data[i]:
                try:
                    receipts.verify(data[:i] + bytes([value]) + data[i + 1:], signer.public)
                except receipts.Invalid:
                    continue
                raise AssertionError(f"signature byte {i} set to {value} still verifies")
    # Whitespace that no writer puts there is a change too; so is another key.
    assert_invalid = [data.replace(b",", b", ", 1), data.replace(b":", b" :", 1), b" " + data]
    for bad in assert_invalid:
        try:
            receipts.verify(bad, signer.public)
            raise AssertionError(bad[:40])
        except receipts.Invalid:
            pass
    other = receipts.ReceiptSigner.from_secret(b"another deployment")
    try:
        receipts.verify(data, other.public)
        raise AssertionError("verified with another key")
    except receipts.Invalid:
        pass


def test_the_signature_covers_every_field_but_itself():
    signer, receipt = _signed()
    assert set(receipt) >= {"purge_id", "subject", "requested_at", "completed_at", "tables", "spool", "backups",
                            "algorithm", "key_id", "signature"}
    resigned = signer.sign({**receipt, "tables": {"viewer_events": {"rows_found": 2, "rows_after_physical": 0}}})
    assert resigned["signature"] != receipt["signature"]
    forged = {**receipt, "tables": resigned["tables"]}
    try:
        receipts.verify(receipts.encode(forged), signer.public)
        raise AssertionError("a changed table count verified")
    except receipts.Invalid:
        pass
    # The subject is a hash salted per tenant: the same person hashes apart in two tenants.
    assert receipts.subject_hash(b"k", "tn_a", "email", "x@y") != receipts.subject_hash(b"k", "tn_b", "email", "x@y")


def test_purge_answers_with_a_receipt_the_api_returns_and_the_published_key_verifies(server, tenant_factory, store):
    tenant, key = tenant_factory()
    http = server.http
    assert consent(http, tenant.tenant_id, "rc-1").status_code == 201
    evs = [{"type": "viewstart", "ts": int(time.time() * 1000), "view_id": "w", "video_id": "vd_1"}]
    assert collect(http, tenant.tenant_id, "rc-1", evs).status_code == 202
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    r = http.post("/v1/privacy/purge", json={"viewer_id": "rc-1"}, headers=admin_headers(key))
    assert r.status_code == 200, r.text
    body = r.json()
    receipt = body["receipt"]
    assert receipt["purge_id"] == body["purge_id"] and receipt["type"] == "erasure"
    assert receipt["tables"]["viewer_events"] == {"rows_found": 1, "rows_after_physical": 0}
    assert receipt["tables"]["consents"]["rows_found"] == 1
    assert "rc-1" not in json.dumps(receipt), "the subject only as a salted hash"
    assert receipt["spool"]["subject_spooled"] is False and receipt["region"] == tenant.region
    published = http.get("/.well-known/wave-edge/receipt-key")
    assert published.status_code == 200 and published.json()["key_id"] == receipt["key_id"]
    public = receipts.public_key_from(published.text)
    receipts.verify(json.dumps(receipt).encode(), public)
    got = http.get(f"/v1/privacy/receipts/{body['purge_id']}", headers=admin_headers(key))
    assert got.status_code == 200 and got.json() == receipt
    receipts.verify(got.content, public)
    # Another tenant's key sees no such receipt; a bad id is a 400; none without a key.
    _, other = tenant_factory()
    missing = http.get(f"/v1/privacy/receipts/{body['purge_id']}", headers=admin_headers(other))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    bad = http.get("/v1/privacy/receipts/..%2Fx", headers=admin_headers(key))
    assert bad.status_code in (400, 404) and "error" in bad.json()
    assert http.get(f"/v1/privacy/receipts/{body['purge_id']}").status_code == 401


def test_cli_purge_prints_a_receipt_that_cli_verify_accepts_and_rejects_once_changed(tmp_path):
    data = tmp_path / "var"
    tenant = json.loads(_cli(data, "tenant", "create", "t").stdout)["tenant_id"]
    insert_beacons_at(data / "clickhouse", tenant, "gail", 3)
    made = _cli(data, "backup", "create")
    assert made.returncode == 0, made.stderr
    out = _cli(data, "privacy", "purge", "--tenant", tenant, "--viewer-id", "gail")
    assert out.returncode == 0, out.stderr
    receipt = json.loads(out.stdout)["receipt"]
    assert receipt["tables"]["viewer_events"] == {"rows_found": 3, "rows_after_physical": 0}
    assert receipt["backups"]["backups_holding_data"] == [json.loads(made.stdout)["backup_id"]]
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt, indent=2))
    ok = _cli(data, "receipt", "verify", str(path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["valid"] is True
    text = path.read_text()
    at = text.index('"rows_found": 3') + len('"rows_found": ')
    path.write_text(text[:at] + "4" + text[at + 1:])
    bad = _cli(data, "receipt", "verify", str(path))
    assert bad.returncode != 0 and json.loads(bad.stdout)["valid"] is False
    # Another deployment's key (a published key file) refuses this deployment's receipt.
    path.write_text(json.dumps(receipt))
    key_file = tmp_path / "other-key.json"
    key_file.write_text(json.dumps(receipts.ReceiptSigner.from_secret(b"elsewhere").published()))
    assert _cli(data, "receipt", "verify", str(path), "--public-key", str(key_file)).returncode == 1
    # Elsewhere (no deployment secret), the published key verifies it; none is made up.
    mine = tmp_path / "key.json"
    mine.write_text(json.dumps(receipts.ReceiptSigner.from_secret((data / "secret.key").read_text().strip().encode())
                               .published()))
    elsewhere = tmp_path / "elsewhere"
    assert _cli(elsewhere, "receipt", "verify", str(path), "--public-key", str(mine)).returncode == 0
    assert _cli(elsewhere, "receipt", "verify", str(path)).returncode == 2 and not elsewhere.exists()
    # The backup lists the receipt a restore must replay; the restore re-applies it, and says so.
    listed = json.loads(_cli(data, "backup", "list").stdout)["backups"]
    assert listed[0]["replays"] == [receipt["purge_id"]]
    restored = _cli(data, "backup", "restore", json.loads(made.stdout)["backup_id"])
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["reapplied_receipts"] == [receipt["purge_id"]]


def test_offboarding_answers_with_a_signed_receipt(server, tenant_factory, store):
    tenant, key = tenant_factory()
    assert consent(server.http, tenant.tenant_id, "ob-1").status_code == 201
    r = server.http.delete("/v1/tenant", params={"confirm": tenant.tenant_id}, headers=admin_headers(key))
    assert r.status_code == 200, r.text
    receipt = r.json()["receipt"]
    assert receipt["type"] == "offboarding" and receipt["purge_id"] == f"tenant-{tenant.tenant_id}"
    assert receipt["tables"]["consents"] == {"rows_found": 1, "rows_after_physical": 0}
    assert receipt["tables"]["tenants"]["rows_after_physical"] == 0
    public = receipts.public_key_from(server.http.get("/.well-known/wave-edge/receipt-key").text)
    receipts.verify(json.dumps(receipt).encode(), public)
    assert receipts.load(store, tenant.tenant_id, receipt["purge_id"]) == receipt

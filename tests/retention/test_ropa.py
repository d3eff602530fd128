"""Records of processing (Art. 30): generated from the registry and the tenant's settings,
so every registered table is in them, as JSON (API and CLI) and as a printable page."""

from __future__ import annotations

import json

from retention import registry, ropa
from retention.registry import PersonalTable
from tests.conftest import admin_headers
from tests.edge.test_cli_and_http import _cli


def test_every_registered_table_is_described_and_listed(store, tenant_factory):
    tenant, _ = tenant_factory(region="eu", ip_mode="truncated")
    record = ropa.build(tenant, backup_every_s=86400, embedded=True)
    assert [e["table"] for e in record["entries"]] == [t.table for t in registry.REGISTRY]
    for entry in registry.REGISTRY:  # the registry says what the record needs of each table
        assert entry.data_subjects and entry.categories and entry.purpose and entry.legal_basis, entry.table
    by_table = {e["table"]: e for e in record["entries"]}
    assert by_table["viewer_events"]["retention"] == {"setting": "viewer_events_days", "days": tenant.retention_days}
    assert by_table["audit_log"]["retention"]["days"] == tenant.audit_days
    assert by_table["viewer_events"]["legal_basis"].startswith("consent")
    assert all(e["recipients"] == [] and e["region"] == "eu" for e in record["entries"])
    assert "truncated" in " ".join(by_table["sessions"]["technical_measures"])
    assert record["backups"]["schedule"] == "every 24 h" and record["technical_measures"]


def test_a_newly_registered_table_appears_without_other_change(store, tenant_factory, monkeypatch):
    tenant, _ = tenant_factory()
    monkeypatch.setattr(registry, "REGISTRY", (*registry.REGISTRY, PersonalTable("wishlist", ("viewer_id",),
                                                                                  "sessions_days")))
    record = ropa.build(tenant, backup_every_s=0, embedded=False)
    assert record["entries"][-1]["table"] == "wishlist"
    assert record["entries"][-1]["retention"]["days"] == tenant.sessions_days


def test_the_api_serves_json_and_an_escaped_printable_page(server, tenant_factory, store):
    tenant, key = tenant_factory(name='<script>alert("x")</script>')
    r = server.http.get("/v1/privacy/ropa", headers=admin_headers(key))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {e["table"] for e in body["entries"]} == {t.table for t in registry.REGISTRY}
    assert body["controller"]["tenant_id"] == tenant.tenant_id
    page = server.http.get("/v1/privacy/ropa", params={"format": "html"}, headers=admin_headers(key))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script" not in csp
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    for t in registry.REGISTRY:
        assert f"<code>{t.table}</code>" in page.text
    bad = server.http.get("/v1/privacy/ropa", params={"format": "pdf"}, headers=admin_headers(key))
    assert bad.status_code == 400 and bad.json()["detail"]["path"] == "$.query.format"
    assert server.http.get("/v1/privacy/ropa").status_code == 401


def test_cli_prints_the_record_as_json(tmp_path):
    data = tmp_path / "var"
    tenant = json.loads(_cli(data, "tenant", "create", "t", "--retention-days", "30").stdout)["tenant_id"]
    out = _cli(data, "ropa", "--tenant", tenant)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert [e["table"] for e in record["entries"]] == [t.table for t in registry.REGISTRY]
    assert {e["table"]: e["retention"]["days"] for e in record["entries"]}["viewer_events"] == 30
    assert _cli(data, "ropa", "--tenant", "tn_nobody").returncode == 2

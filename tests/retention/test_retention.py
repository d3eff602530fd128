"""Retention: settings per kind, applied to stored rows, enforced physically."""

from __future__ import annotations

import time
import uuid

from analytics import events
from retention import policy
from tests.conftest import admin_headers, stored_row, wait_for

DAY = 86400


def _insert_consent(store, tenant_id, viewer_id, age_days):
    store.command(
        "INSERT INTO consents (consent_id, tenant_id, viewer_id, email, action, purposes, policy_version, ts, ip)"
        " VALUES ({c:String}, {t:String}, {v:String}, '', 'grant', ['analytics'], '1',"
        " fromUnixTimestamp64Milli(toInt64({ms:Int64})), toIPv6('::'))",
        parameters={"c": str(uuid.uuid4()), "t": tenant_id, "v": viewer_id, "ms": int((time.time() - age_days * DAY) * 1000)})


def _ages(store, tenant_id):
    now = time.time()
    rows = store.rows("SELECT toUnixTimestamp64Milli(ts) / 1000, retention_days FROM viewer_events"
                      " WHERE tenant_id = {t:String} SETTINGS apply_deleted_mask = 0", {"t": tenant_id})
    return sorted((round((now - ts) / DAY), days) for ts, days in rows)


def test_retention_settings_apply_to_stored_rows_and_are_enforced(server, tenant_factory, store):
    a, key = tenant_factory()
    b, _ = tenant_factory()
    now = time.time()
    rows = [stored_row(t.tenant_id, viewer_id=v, ts=now - age * DAY, retention_days=395, event_id=str(uuid.uuid4()))
            for t in (a, b) for v, age in (("fresh", 10), ("old", 40))]
    events.insert(store, events.encode_rows(rows))
    assert server.http.get("/v1/retention", headers=admin_headers(key)).json()["viewer_events_days"] == 395

    r = server.http.put("/v1/retention", json={"viewer_events_days": 30, "audit_days": 60}, headers=admin_headers(key))
    assert r.status_code == 200, r.text
    assert r.json()["viewer_events_days"] == 30 and r.json()["audit_days"] == 60
    # Stored rows take the new period (a mutation: it lands shortly), and the row already
    # past it goes with the mutation's TTL pass.
    wait_for(lambda: _ages(store, a.tenant_id) == [(10, 30)], what="retention applied to stored rows")
    assert _ages(store, b.tenant_id) == [(10, 395), (40, 395)], "another tenant's rows keep theirs"

    # The enforcer does not wait for TTL merges: rows past the tenant's period are deleted
    # whatever their own column says (here, rows written before the change reached them).
    late = [stored_row(a.tenant_id, viewer_id="late", ts=now - 45 * DAY, retention_days=395,
                       event_id=str(uuid.uuid4()))]
    events.insert(store, events.encode_rows(late))
    assert _ages(store, a.tenant_id) == [(10, 30), (45, 395)]
    deleted = policy.enforce(store)
    assert deleted["viewer_events"] >= 1
    assert _ages(store, a.tenant_id) == [(10, 30)], "physically gone"
    assert _ages(store, b.tenant_id) == [(10, 395), (40, 395)]
    # The change is in the audit log with its before and after.
    def logged():
        return [r for r in server.http.get("/v1/audit", headers=admin_headers(key)).json()["records"]
                if r["action"] == "PUT /v1/retention"]
    wait_for(lambda: logged(), what="audit record")
    assert '"viewer_events_days": 395' in logged()[0]["before"] and '"viewer_events_days": 30' in logged()[0]["after"]


def test_consents_are_kept_while_they_prove_consent_and_no_longer(server, tenant_factory, store):
    tenant, key = tenant_factory()
    server.http.put("/v1/retention", json={"consents_days": 30}, headers=admin_headers(key))
    _insert_consent(store, tenant.tenant_id, "active", 100)   # old grant, viewer still watching: kept
    _insert_consent(store, tenant.tenant_id, "active", 200)   # superseded and old: deleted
    _insert_consent(store, tenant.tenant_id, "gone", 100)     # latest, but no data left to prove: deleted
    _insert_consent(store, tenant.tenant_id, "recent", 5)     # within the period: kept
    events.insert(store, events.encode_rows([stored_row(tenant.tenant_id, viewer_id="active",
                                                        event_id=str(uuid.uuid4()))]))
    policy.enforce(store)
    left = store.rows("SELECT viewer_id, count() FROM consents WHERE tenant_id = {t:String} GROUP BY viewer_id"
                      " ORDER BY viewer_id SETTINGS apply_deleted_mask = 0", {"t": tenant.tenant_id})
    assert left == [("active", 1), ("recent", 1)]


def test_retention_changes_are_validated(server, tenant_factory):
    _, key = tenant_factory()
    for body, path in (({"viewer_events_days": 0}, "$.viewer_events_days"), ({"ip_mode": "half"}, "$.ip_mode"),
                       ({"forever": True}, "$")):
        r = server.http.put("/v1/retention", json=body, headers=admin_headers(key))
        assert r.status_code == 400 and r.json()["detail"]["path"] == path, r.text

"""Consent gates every beacon: none, granted, withdrawn, other purposes, cached."""

from tests.conftest import collect, consent, count_events, event, wait_for


def test_collect_without_consent_is_403_and_stores_nothing(server, store, tenant):
    r = collect(server.http, tenant.tenant_id, "viewer-a", [event("viewstart")])
    assert r.status_code == 403
    assert r.json()["error"] == "consent_required"
    assert r.json()["detail"]["path"] == "$.viewer_id"
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    assert count_events(store, tenant.tenant_id) == 0


def test_consent_then_collect_stores_enriched_row(server, store, tenant):
    r = consent(server.http, tenant.tenant_id, "viewer-b")
    assert r.status_code == 201 and r.json()["consent_id"]
    r = collect(server.http, tenant.tenant_id, "viewer-b", [event("viewstart", screen_w=1920, screen_h=1080)])
    assert r.status_code == 202 and r.json() == {"accepted": 1}
    wait_for(lambda: count_events(store, tenant.tenant_id) == 1, what="the row")
    row = store.rows(
        "SELECT country, region, city, os, browser, device, screen_w, toString(ip) FROM viewer_events"
        " WHERE tenant_id = {t:String}",
        {"t": tenant.tenant_id},
    )[0]
    assert row == ("GB", "England", "London", "Windows", "Chrome", "desktop", 1920, "::ffff:81.2.69.142")
    ledger = store.rows(
        "SELECT toString(action), purposes, policy_version FROM consents WHERE tenant_id = {t:String}",
        {"t": tenant.tenant_id},
    )
    assert ledger == [("grant", ["analytics"], "v1")]


def test_withdrawal_takes_effect_on_next_collect(server, store, tenant):
    assert consent(server.http, tenant.tenant_id, "viewer-c").status_code == 201
    assert collect(server.http, tenant.tenant_id, "viewer-c", [event()]).status_code == 202
    r = server.http.post("/v1/consent/withdraw", json={"tenant_id": tenant.tenant_id, "viewer_id": "viewer-c"})
    assert r.status_code == 200
    assert collect(server.http, tenant.tenant_id, "viewer-c", [event()]).status_code == 403
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    assert count_events(store, tenant.tenant_id) == 1
    actions = store.rows(
        "SELECT toString(action) FROM consents WHERE tenant_id = {t:String} ORDER BY ts",
        {"t": tenant.tenant_id},
    )
    assert actions == [("grant",), ("withdraw",)]  # append-only ledger


def test_consent_for_other_purposes_does_not_allow_analytics(server, tenant):
    r = consent(server.http, tenant.tenant_id, "viewer-d", purposes=["personalisation"])
    assert r.status_code == 201
    assert collect(server.http, tenant.tenant_id, "viewer-d", [event()]).status_code == 403


def test_consent_lookups_are_cached(server, store, tenant):
    assert consent(server.http, tenant.tenant_id, "viewer-e").status_code == 201
    store.faults.queries_fail = True  # the ledger cannot be read: only the cache can answer
    try:
        assert collect(server.http, tenant.tenant_id, "viewer-e", [event()]).status_code == 202
    finally:
        store.faults.queries_fail = False


def test_withdrawal_made_elsewhere_is_seen_within_the_poll(server_factory, tenant):
    """Another edge's withdrawal (a ledger row this process did not write) is honoured."""
    srv = server_factory(consent_poll_s=0.2)
    assert consent(srv.http, tenant.tenant_id, "viewer-f").status_code == 201
    assert collect(srv.http, tenant.tenant_id, "viewer-f", [event()]).status_code == 202
    srv.edge.store.command(
        "INSERT INTO consents (consent_id, tenant_id, viewer_id, action, purposes, policy_version, ts,"
        " ip, browser) VALUES (generateUUIDv4(), {t:String}, 'viewer-f', 'withdraw', [], '', now64(6), '::', '')",
        parameters={"t": tenant.tenant_id},
    )
    wait_for(
        lambda: collect(srv.http, tenant.tenant_id, "viewer-f", [event()]).status_code == 403,
        timeout=5,
        what="the withdrawal to show",
    )


def test_email_is_recorded_for_identified_viewers(server, store, tenant):
    assert consent(server.http, tenant.tenant_id, "viewer-g", viewer_email="ann@example.org").status_code == 201
    r = collect(server.http, tenant.tenant_id, "viewer-g", [event()], viewer_email="ann@example.org")
    assert r.status_code == 202
    wait_for(lambda: count_events(store, tenant.tenant_id) == 1)
    assert store.rows(
        "SELECT email FROM viewer_events WHERE tenant_id = {t:String}", {"t": tenant.tenant_id}
    ) == [("ann@example.org",)]

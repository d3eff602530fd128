"""The dashboard cube (analytics/cube.py) and the viewer ordinals (analytics/ordinals.py).

A range with whole past days is answered from the cube's states for those days and from
the rollup for the rest; every figure must equal the same query over the raw beacons (the
per-view fold of `viewer_events`, read without the cube), after late beacons, after an
erasure, and after two edges numbered the same viewer.
"""

from __future__ import annotations

import time
import uuid

import pytest

from analytics import cube, ordinals, queries, rollup
from analytics.views import fold_sql
from retention import purge
from retention.subjects import Subject
from tests.conftest import store_view

DAY = 86400
COUNTRIES = ("DE", "FR", "US")
OSES = ("Linux", "Windows", "iOS")


def _timeline(i: int) -> list:
    """Views of a few shapes: played with a rebuffer, paused, exit before start, failure."""
    shape = i % 4
    if shape == 0:
        return [(0, "viewstart"), (1 + i % 3, "playing"), (11, "heartbeat"), (15, "rebuffer_start"),
                (17, "rebuffer_end"), (27, "heartbeat"), (30, "ended")]
    if shape == 1:
        return [(0, "viewstart"), (0.5 + i % 2, "playing"), (10, "pause")]
    if shape == 2:
        return [(0, "viewstart"), (3, "viewend")]
    return [(0, "viewstart"), (2, "error", {"fatal": True, "error_code": "hls_fragLoadError"})]


def _fill(store, tenant_id: str, days_back: int = 4, per_day: int = 7) -> float:
    """Views on each of the last `days_back` days and today (those already past), by five
    viewers over three videos, and one view a day playing across midnight."""
    now = time.time()
    today = int(now) // DAY * DAY
    n = 0
    for back in range(days_back, -1, -1):
        base = today - back * DAY
        for i in range(per_day):
            n += 1
            t0 = base + 3 * 3600 * i + 60 * n + 7
            if t0 + 60 > now:
                continue
            store_view(store, tenant_id, f"cv-{n}", _timeline(n), f"vd_c{n % 3}", t0=t0,
                       viewer_id=f"viewer-{(n * 7) % 5}", country=COUNTRIES[n % 3], os=OSES[n % 2],
                       screen_w=1920 if n % 2 else 1280, screen_h=1080 if n % 2 else 720)
        if back:  # a view playing from 23:58 into the next day: concurrent on both
            beats = [(0, "viewstart"), (1, "playing")] + [(1 + 10 * k, "heartbeat") for k in range(1, 24)]
            store_view(store, tenant_id, f"night-{back}", beats, "vd_c0", t0=base + DAY - 120,
                       viewer_id=f"viewer-{back % 5}", country="DE")
    return float(today)


def _raw(tenant_id: str) -> str:
    """The per-view fold of every beacon of the tenant: a source the cube never answers for."""
    return f"({fold_sql(f'tenant_id = {chr(39)}{tenant_id}{chr(39)}')})"


def _answers(store, scope: queries.Scope, source: str) -> dict:
    out = {"summary": queries.summary(store, scope, source),
           "by_mode": queries.views_by_mode(store, scope, source)}
    for dim in queries.DIMENSIONS:
        out[f"breakdown_{dim}"] = queries.breakdown(store, scope, dim, 2, source, k=2)
    for interval in ("hour", "day"):
        for metric in ("views", "unique_viewers", "startup_time_ms_p95", "rebuffer_pct", "concurrent_viewers"):
            out[f"{metric}_{interval}"] = queries.timeseries(store, scope, metric, interval, source)
    return out


def _same_as_raw(store, scope: queries.Scope) -> dict:
    cubed, raw = _answers(store, scope, queries.ROLLUP), _answers(store, scope, _raw(scope.tenant_id))
    for name in raw:
        assert cubed[name] == raw[name], name
    return cubed


@pytest.fixture
def filled(store, tenant_factory):
    tenant, _ = tenant_factory()
    since = time.time() - 1
    today = _fill(store, tenant.tenant_id)
    rollup.fold_touched(store, since)
    assert cube.build_missing(store, 100) == 0  # just folded: not quiet yet, read from the rollup
    cube.build_missing(store, 100, quiet_s=0)  # as a pass does QUIET_S later
    # From the middle of the first day to now: three whole past days between.
    scope = queries.Scope(tenant.tenant_id, today - 4 * DAY + 5 * 3600 + 17, time.time())
    return tenant.tenant_id, today, scope


def _built_days(store, scope) -> list[int]:
    return [cube.day_number(day) for day in cube.built(store, scope.tenant_id, scope.start, scope.end).days]


def test_whole_past_days_come_from_the_cube_and_every_figure_equals_the_raw_beacons(store, filled):
    tenant_id, today, scope = filled
    assert _built_days(store, scope) == [int(today) // DAY - 3, int(today) // DAY - 2, int(today) // DAY - 1]
    answers = _same_as_raw(store, scope)
    assert answers["summary"]["views"] > 20 and answers["summary"]["unique_viewers"] == 5
    assert [row["value"] for row in answers["breakdown_country"]][-1] == "other"
    assert max(p["value"] for p in answers["concurrent_viewers_hour"]) >= 1
    # Without its whole days, a one-day range reads the rollup alone, and agrees too.
    assert _built_days(store, queries.Scope(tenant_id, today - DAY + 60, today + 60)) == []
    _same_as_raw(store, queries.Scope(tenant_id, today - DAY + 60, time.time()))


def test_a_late_beacon_takes_its_day_out_until_it_is_built_again(store, filled):
    tenant_id, today, scope = filled
    views_before = queries.summary(store, scope)["views"]
    day = int(today - 2 * DAY) // DAY
    old = dict(cube.built(store, tenant_id, scope.start, scope.end).builds)
    time.sleep(1.1)  # the fixture's own beacons are not this pass's
    since = time.time() - 0.5
    store_view(store, tenant_id, "late-1", _timeline(0), "vd_late", t0=day * DAY + 4 * 3600, viewer_id="viewer-late",
               country="FR")
    rollup.fold_touched(store, since)
    # Its day, and the next (where its views may count as concurrent), are read from the rollup now.
    assert _built_days(store, scope) == [d for d in (day - 1, day, day + 1) if d not in (day, day + 1)]
    answers = _same_as_raw(store, scope)
    assert answers["summary"]["views"] == views_before + 1 and answers["summary"]["unique_viewers"] == 6
    cube.build_missing(store, 100, quiet_s=0)
    new = dict(cube.built(store, tenant_id, scope.start, scope.end).builds)
    assert {cube.day_number(d) for d in new if new[d] != old[d]} == {day, day + 1}
    assert _same_as_raw(store, scope)["summary"] == answers["summary"]


def test_a_build_that_read_the_views_before_a_forget_is_never_used(store, filled, monkeypatch):
    """Another edge's build can read a day before an erasure or a change and land after
    the forget mark: it is stamped with the time it began reading, so the mark outranks it."""
    tenant_id, today, scope = filled
    day = cube.EPOCH + __import__("datetime").timedelta(days=int(today) // DAY - 1)
    began = cube._now(store) - 1.0  # a build that began reading a second before the mark
    cube.forget(store, tenant_id, [day])
    assert day not in cube.built(store, tenant_id, scope.start, scope.end).days
    monkeypatch.setattr(cube, "_now", lambda _store: began)  # started reading before the mark
    assert cube.build_day(store, tenant_id, day)
    assert day not in cube.built(store, tenant_id, scope.start, scope.end).days
    monkeypatch.undo()
    assert cube.build_day(store, tenant_id, day)
    assert day in cube.built(store, tenant_id, scope.start, scope.end).days
    _same_as_raw(store, scope)


def test_an_erased_viewer_leaves_every_built_day_and_its_number_is_gone(store, filled):
    tenant_id, today, scope = filled
    before = queries.summary(store, scope)
    subject_days = {cube.day_number(d) for (d,) in store.rows(
        "SELECT DISTINCT day FROM views FINAL WHERE tenant_id = {t:String} AND viewer_id = 'viewer-3'", {"t": tenant_id})}
    purge.purge(store, tenant_id, Subject("viewer_id", "viewer-3"), b"k", "test")
    assert not store.rows("SELECT 1 FROM viewer_ordinals WHERE tenant_id = {t:String} AND viewer_id = 'viewer-3'",
                          {"t": tenant_id})
    left = set(_built_days(store, scope))
    assert not left & subject_days  # read from the rollup until built again
    after = _same_as_raw(store, scope)
    assert after["summary"]["unique_viewers"] == before["unique_viewers"] - 1
    cube.build_missing(store, 100, quiet_s=0)  # a pass builds the days again, without the subject
    assert set(_built_days(store, scope)) == left | (subject_days & {int(today) // DAY - k for k in (1, 2, 3)})
    assert _same_as_raw(store, scope)["summary"] == after["summary"]


def test_two_edges_numbering_one_viewer_agree_on_the_smallest_and_mend_the_views(store, filled, monkeypatch):
    tenant_id, today, scope = filled
    edge_a, edge_b = ordinals.Numbering(), ordinals.Numbering()
    since = time.time() - 1
    for k, t0 in enumerate((today - 2 * DAY + 7200, today - DAY + 7200)):
        store_view(store, tenant_id, f"race-{k}", _timeline(1), "vd_c1", t0=t0, viewer_id="viewer-race")
    rollup.fold_touched(store, since, edge_a)
    (first,) = store.rows("SELECT ordinal FROM viewer_ordinals WHERE tenant_id = {t:String} AND viewer_id = 'viewer-race'",
                          {"t": tenant_id})[0]
    # Edge B's claim of the same viewer lands after A folded with its own, and is smaller:
    # it is the viewer's number from now on (block 0 is never drawn, so no one else has it).
    store.command("INSERT INTO viewer_ordinals (tenant_id, viewer_id, ordinal, last_seen, retention_days)"
                  " VALUES ({t:String}, 'viewer-race', 5, now64(3), 30)", {"t": tenant_id})
    mixed = store.rows("SELECT DISTINCT viewer_ord FROM views FINAL WHERE tenant_id = {t:String}"
                       " AND viewer_id = 'viewer-race'", {"t": tenant_id})
    assert mixed == [(first,)]
    rollup.fold_touched(store, time.time(), edge_b)  # no new beacon: the repair alone
    assert store.rows("SELECT DISTINCT viewer_ord FROM views FINAL WHERE tenant_id = {t:String}"
                      " AND viewer_id = 'viewer-race'", {"t": tenant_id}) == [(5,)]
    claims = "SELECT ordinal FROM viewer_ordinals WHERE tenant_id = {t:String} AND viewer_id = 'viewer-race' ORDER BY 1"
    assert store.rows(claims, {"t": tenant_id}) == [(5,), (first,)]  # kept while a slow edge may still write it
    monkeypatch.setattr(ordinals, "RACE_WINDOW_S", 0.0)  # ... then dropped
    rollup.fold_touched(store, time.time(), edge_a)
    assert store.rows(claims, {"t": tenant_id}) == [(5,)]
    cube.build_missing(store, 100, quiet_s=0)
    answers = _same_as_raw(store, scope)
    assert answers["summary"]["unique_viewers"] == 6
    # Every viewer of the tenant has one number, no number two viewers, every view its viewer's.
    assert store.rows("SELECT count(), uniqExact(viewer_id), uniqExact(ordinal) FROM viewer_ordinals FINAL"
                      " WHERE tenant_id = {t:String}", {"t": tenant_id}) == [(6, 6, 6)]
    assert not store.rows(
        "SELECT 1 FROM views AS v FINAL INNER JOIN viewer_ordinals AS o ON v.tenant_id = o.tenant_id"
        " AND v.viewer_id = o.viewer_id WHERE v.tenant_id = {t:String} AND v.viewer_ord != o.ordinal", {"t": tenant_id})


def test_views_folded_before_the_ordinals_existed_are_numbered_at_start(store, filled):
    tenant_id, today, scope = filled
    expected = _answers(store, scope, _raw(tenant_id))
    # As after upgrading: rows without a number, no number, no cube.
    store.command("ALTER TABLE views UPDATE viewer_ord = 0 WHERE tenant_id = {t:String} SETTINGS mutations_sync = 2",
                  {"t": tenant_id})
    store.command("ALTER TABLE viewer_ordinals DELETE WHERE tenant_id = {t:String} SETTINGS mutations_sync = 2",
                  {"t": tenant_id})
    cube.forget(store, tenant_id, [d for d, _ in cube.built(store, tenant_id, scope.start, scope.end).builds])
    assert cube.build_missing(store, 100, quiet_s=0) == 0  # no day is built while its viewers have no number
    assert ordinals.repair(store, ordinals.Numbering(), None)  # what a starting rollup runs once
    assert cube.build_missing(store, 100, quiet_s=0) >= 3
    assert len(_built_days(store, scope)) == 3
    assert _answers(store, scope, queries.ROLLUP) == expected


def test_the_cube_is_a_registered_supporting_table_and_ordinals_are_personal_data(store, tenant_factory):
    from retention import registry

    assert "dashboard_cube" in {t.table for t in registry.SUPPORTING}
    entry = registry.by_table()["viewer_ordinals"]
    assert entry.subject_columns == ("viewer_id",) and entry.row_ttl
    ddl = store.command("SHOW CREATE TABLE dashboard_cube")
    assert "TTL day + toIntervalDay(retention_days)" in ddl
    tenant, _ = tenant_factory()
    store_view(store, tenant.tenant_id, f"x-{uuid.uuid4().hex[:6]}", _timeline(0), viewer_id="exported")
    rollup.fold_touched(store, time.time() - 5)
    assert store.rows("SELECT count() FROM viewer_ordinals WHERE tenant_id = {t:String} AND viewer_id = 'exported'",
                      {"t": tenant.tenant_id}) == [(1,)]

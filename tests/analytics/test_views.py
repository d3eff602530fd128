"""Per-view QoE fold (analytics.views) on hand-built event sequences, answers derived by hand."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from analytics import queries, rollup, views
from tests.conftest import store_view as _store_view


def _views(store, tenant_id):
    return {v.view_id: v for v in views.per_view(store, tenant_id, time.time() - 7200, time.time())}


def test_startup_rebuffer_and_playing_time(store, tenant):
    # 1.2 s startup, 60 s of playing with a 3 s rebuffer in the middle: rebuffer % = 3/63.
    timeline = [(0, "viewstart"), (1.2, "playing")]
    timeline += [(1.2 + 10 * k, "heartbeat") for k in (1, 2, 3)]
    timeline += [(31.2, "rebuffer_start"), (34.2, "rebuffer_end")]
    timeline += [(34.2 + 10 * k, "heartbeat") for k in (1, 2)]
    timeline += [(64.2, "ended")]
    _store_view(store, tenant.tenant_id, "a", timeline)
    v = _views(store, tenant.tenant_id)["a"]
    assert v.startup_ms == 1200
    assert v.playing_ms == 60_000
    assert v.rebuffer_ms == 3_000 and v.rebuffers == 1
    assert v.watch_ms == 63_000
    assert v.started and not v.failed


def test_pause_is_not_watch_time_and_a_paused_seek_is_not_either(store, tenant):
    timeline = [
        (0, "viewstart"), (0.5, "playing"), (10.5, "pause"),      # 10 s playing
        (70.5, "seeking"), (70.7, "seeked"),                       # seek while paused
        (130.5, "playing"), (135.5, "seeking"), (136.0, "seeked"),  # 5 s playing, seek while playing
        (137.5, "playing"), (147.5, "viewend"),                     # 1.5 s seek stall, 10 s playing
    ]
    _store_view(store, tenant.tenant_id, "b", timeline)
    v = _views(store, tenant.tenant_id)["b"]
    assert v.playing_ms == 25_000
    assert v.seeking_ms == 200 + 2_000  # paused seek: only seeking->seeked; playing seek: until playing
    assert v.rebuffer_ms == 0 and v.rebuffers == 0


def test_exit_before_start_failure_and_vanished_viewer(store, tenant):
    _store_view(store, tenant.tenant_id, "exit", [(0, "viewstart"), (4, "viewend")])
    _store_view(store, tenant.tenant_id, "fail", [(0, "viewstart"), (2, "error", {"fatal": True, "error_code": "x"})])
    # A tab killed mid-play: the last heartbeat, then nothing for 10 minutes, then a stray event.
    _store_view(store, tenant.tenant_id, "gone", [(0, "viewstart"), (1, "playing"), (11, "heartbeat"), (611, "heartbeat")])
    got = _views(store, tenant.tenant_id)
    assert not got["exit"].started and got["exit"].startup_ms is None and not got["exit"].failed
    assert got["fail"].failed and not got["fail"].started
    assert got["gone"].playing_ms == 10_000 + views.MAX_PLAYING_GAP_MS


def test_views_of_other_tenants_and_videos_are_apart(store, tenant_factory):
    a, _ = tenant_factory()
    b, _ = tenant_factory()
    _store_view(store, a.tenant_id, "same-view", [(0, "viewstart"), (1, "playing"), (5, "viewend")], "vd_1")
    _store_view(store, b.tenant_id, "same-view", [(0, "viewstart"), (2, "playing"), (3, "viewend")], "vd_1")
    assert _views(store, a.tenant_id)["same-view"].playing_ms == 4_000
    assert _views(store, b.tenant_id)["same-view"].playing_ms == 1_000
    assert views.per_view(store, a.tenant_id, time.time() - 7200, time.time(), video_id="vd_2") == []


@pytest.mark.parametrize("late", ["from the day before", "with another video"])
def test_a_late_earlier_beacon_moves_the_view_without_counting_it_twice(store, tenant, late):
    """The rollup's key is the first beacon's day and video: a beacon earlier than all the
    others, landing after they were folded, moves the view, and its old row must go."""
    t0 = (time.time() // 86400 - 1) * 86400 + 30  # yesterday 00:00:30 UTC
    since = time.time() - 1
    _store_view(store, tenant.tenant_id, "m", [(0, "playing"), (10, "heartbeat"), (20, "viewend")], "vd_b",
                t0=t0, viewer_id="v1")
    rollup.fold_touched(store, since)
    offset, video = (-40, "vd_b") if late == "from the day before" else (-5, "vd_a")
    since = time.time() - 1
    _store_view(store, tenant.tenant_id, "m", [(offset, "viewstart")], video, t0=t0, viewer_id="v1")
    rollup.fold_touched(store, since)

    rows = store.rows("SELECT day, video_id, startup_ms FROM views FINAL WHERE tenant_id = {t:String}",
                      {"t": tenant.tenant_id})
    day = datetime.fromtimestamp(t0 + offset, timezone.utc).date()
    assert rows == [(day, video, -offset * 1000)]
    scope = queries.Scope(tenant.tenant_id, t0 - 2 * 86400, time.time())
    assert queries.summary(store, scope)["views"] == 1


def test_a_view_playing_for_days_is_folded_whole_at_every_pass(store, tenant):
    """A screen left playing is one view for as long as its heartbeats come (§4: only 60
    idle minutes end one), so each pass must re-fold it from its start: folded from a
    fixed window before its newest beacon, it lost its first days and moved."""
    t0 = time.time() - 3 * 86400
    beats = [(1 + 1800 * k, "heartbeat") for k in range(1, 144)]  # every 30 min: each span capped
    since = time.time() - 1
    _store_view(store, tenant.tenant_id, "long", [(0, "viewstart"), (1, "playing"), *beats], t0=t0)
    rollup.fold_touched(store, since)
    time.sleep(1.0)  # the next pass's cursor after the first beacons' insert
    since = time.time() - 0.5
    _store_view(store, tenant.tenant_id, "long", [(3 * 86400 - 30, "heartbeat")], t0=t0)
    rollup.fold_touched(store, since)

    rows = store.rows("SELECT day, started_at, startup_ms, playing_ms FROM views FINAL WHERE tenant_id = {t:String}",
                      {"t": tenant.tenant_id})
    assert len(rows) == 1
    day, started_at, startup_ms, playing_ms = rows[0]
    assert day == datetime.fromtimestamp(t0, timezone.utc).date()
    assert abs(started_at.replace(tzinfo=timezone.utc).timestamp() - t0) < 0.01
    assert startup_ms == 1000
    assert playing_ms == 144 * views.MAX_PLAYING_GAP_MS  # playing -> beat 1, 142 beat gaps, last beat -> new one

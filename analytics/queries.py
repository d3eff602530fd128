"""The dashboard's figures, from the `views` rollup and the cube (DESIGN.md §4 definitions).

Every query is scoped by tenant first (the rollup's ORDER BY starts with it) and by the
views' start time (`day` prunes partitions and granules; a view belongs to the period it
started in, as Mux and Conviva count them). Aggregates are summed in SQL; the ratios are
derived from them in one place, `figures`, so summary, breakdown rows and series points
mean exactly the same thing.

An unfiltered range (every view of the tenant) merges the cube's states for its whole
past days with the same states computed from the rollup for the rest (analytics/cube.py):
the same answers, at a cost that follows the days rather than the views. A range filtered
by media, and the benchmark's raw source, read the rollup (or the source) alone.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

from analytics import cube
from analytics.dimensions import DIMENSIONS
from core.store import Store
from core.timefmt import iso_utc

SUMMARY_FIELDS = (
    "views", "unique_viewers", "playing_time_s", "watch_time_s", "startup_time_ms_p50",
    "startup_time_ms_p95", "rebuffer_pct", "rebuffer_frequency_per_min", "playback_failure_pct",
    "exits_before_start_pct",
)
METRICS = (*SUMMARY_FIELDS, "concurrent_viewers")
INTERVALS = {"minute": 60, "hour": 3600, "day": 86400}
# Most points a series may have: minutes over 2 days, hours over 100 days, days over 400.
MAX_POINTS = 4000

# Unique viewers are counted over a 64-bit hash of the id. `uniqExact` of a String hashes
# it anyway (SipHash128) and keeps 16-byte keys; 8-byte keys of a cheaper hash halve the
# set and the time of every figure with unique viewers (bench/RESULTS.md, "Dashboard
# queries", session 9). The price: two of n viewers share a hash with probability about
# n^2 / 2^65 (3e-6 at ten million viewers), and a shared hash lowers the count by one.
VIEWER_KEY = "cityHash64(viewer_id)"

# The aggregates every figure is derived from, in `figures`' order: (alias, over views,
# kept as a state for later merging, the merge of that state). Summaries and series use
# the plain form; breakdowns keep states per value so the tail merges into "other"
# (unique viewers and quantiles are not additive). Aggregates skip NULL startups.
_SUM = dict(cube.ADDITIVE)
_MEASURES = (
    ("n_views", _SUM["n_views"], _SUM["n_views"], "sum"),
    ("n_viewers", f"uniqExact({VIEWER_KEY})", f"uniqExactState({VIEWER_KEY})", "uniqExactMerge"),
    *((name, _SUM[name], _SUM[name], "sum")
      for name in ("s_playing", "s_watch", "s_rebuffer", "n_rebuffers", "n_failed", "n_exits", "n_startups")),
    # Both levels from one sort of each group's values (two quantileExact sorted twice).
    ("startup_q", "quantilesExact(0.5, 0.95)(startup_ms)", cube.STARTUPS_STATE, "quantilesExactMerge(0.5, 0.95)"),
)
_AGGREGATES = ", ".join(f"{plain} AS {alias}" for alias, plain, _, _ in _MEASURES)
_STATES = ", ".join(f"{state} AS {alias}" for alias, _, state, _ in _MEASURES)
_MERGED = ", ".join(f"{merge}({alias})" for alias, _, _, merge in _MEASURES)
_N_AGGREGATES = len(_MEASURES)


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    start: float  # epoch seconds, inclusive
    end: float  # exclusive
    video_id: str | None = None

    def where(self) -> str:
        clause = (
            "tenant_id = {tenant:String} AND day >= toDate({start:DateTime64(3)}) AND day <= toDate({end:DateTime64(3)})"
            " AND started_at >= {start:DateTime64(3)} AND started_at < {end:DateTime64(3)}"
        )
        if self.video_id:
            clause += " AND video_id = {video:String}"
        return clause

    def parameters(self) -> dict:
        return {"tenant": self.tenant_id, "start": self.start, "end": self.end, "video": self.video_id or ""}


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 3) if whole else None


def figures(row) -> dict:
    """The contract's summary fields from one row of `_AGGREGATES`."""
    views, uniques, playing, watch, rebuffer, rebuffers, failed, exits, startups, quantiles = row
    p50, p95 = quantiles if startups else (0, 0)
    return {
        "views": int(views),
        "unique_viewers": int(uniques),
        "playing_time_s": round(playing / 1000, 3),
        "watch_time_s": round(watch / 1000, 3),
        "startup_time_ms_p50": int(p50) if startups else None,
        "startup_time_ms_p95": int(p95) if startups else None,
        "rebuffer_pct": _pct(rebuffer, watch),
        "rebuffer_frequency_per_min": round(rebuffers / (watch / 60_000), 3) if watch else None,
        "playback_failure_pct": _pct(failed, views),
        "exits_before_start_pct": _pct(exits, views),
    }


ROLLUP = "views FINAL"
# A view's versions share a partition (its day is in the partition and the sort key), so
# FINAL need not merge across partitions, which lets it run partition by partition.
# No JIT: ClickHouse compiles an expression, aggregation or sort with LLVM on its third
# use, synchronously, and that request waits some 50 ms more (the same on 10 M views or
# 100 M); the compiled code won nothing measurable on these queries (p50 within +-10 %,
# either way, at both sizes: bench/RESULTS.md, session 13), so it was a tail for nothing.
SETTINGS = ("SETTINGS do_not_merge_across_partitions_select_final = 1,"
            " compile_expressions = 0, compile_aggregate_expressions = 0, compile_sort_description = 0")


# The cube's merged figures (columns `cube.COLUMNS`), in `figures`' order.
_CUBE_MERGED = ("sum(n_views), groupBitmapMerge(viewers), sum(s_playing), sum(s_watch), sum(s_rebuffer),"
                " sum(n_rebuffers), sum(n_failed), sum(n_exits), sum(n_startups),"
                " quantilesExactMerge(0.5, 0.95)(startups)")


def _cube_days(store: Store, scope: Scope, source: str) -> cube.Built:
    """The scope's whole days the cube answers for; none for a media filter (the cube has
    no rows per media and dimension) or another source than the rollup."""
    if source != ROLLUP or scope.video_id:
        return cube.Built()
    return cube.built(store, scope.tenant_id, scope.start, scope.end)


def _states(scope: Scope, built: cube.Built, dim: str, value: str) -> tuple[str, dict]:
    """Per `value`: the cube's rows of the built days, then the rollup's own states (the
    same columns) of the views that started in the scope on every other day."""
    rest = (f"SELECT {value} AS value, {cube.STATES} FROM {ROLLUP} WHERE {scope.where()}"
            " AND day IN {rest_days:Array(Date)} GROUP BY value")
    return f"{cube.ROWS_SQL} UNION ALL {rest}", {**scope.parameters(), **built.parameters(), "dim": dim,
                                                  "rest_days": built.rest(scope.start, scope.end)}


def summary(store: Store, scope: Scope, source: str = ROLLUP) -> dict:
    """`source` is the rollup; the benchmark passes the raw fold to check both agree."""
    built = _cube_days(store, scope, source)
    if built.builds:
        sql, params = _states(scope, built, "all", "''")
        return figures(store.rows(f"SELECT {_CUBE_MERGED} FROM ({sql}) {SETTINGS}", params)[0])
    rows = store.rows(f"SELECT {_AGGREGATES} FROM {source} WHERE {scope.where()} {SETTINGS}", scope.parameters())
    return figures(rows[0])


def breakdown(store: Store, scope: Scope, dimension: str, limit: int = 20, source: str = ROLLUP,
              k: int = 1) -> list[dict]:
    """Rows by `dimension`, most views first; past `limit`, one "other" row for the rest.

    One pass: each value's aggregates are kept as states (uniqExact and the quantiles are
    not additive), ranked, and the states past the limit merged into "other". A value
    with fewer than `k` unique viewers (analytics/suppression.py) is never a row of its
    own: it ranks after every shown value and merges into "other" too.
    """
    expr = DIMENSIONS[dimension]
    built = _cube_days(store, scope, source)
    if built.builds:
        return _cube_breakdown(store, scope, built, dimension, limit, k)
    grouped = (f"SELECT {expr} AS value, {_STATES}, finalizeAggregation(n_viewers) AS viewers"
               f" FROM {source} WHERE {scope.where()} GROUP BY value")
    sql = _ranked(grouped, _MERGED, "viewers")
    rows = store.rows(sql, {**scope.parameters(), "limit": limit, "k": k})
    return [{"value": str(r[0]), **figures(r[1:1 + _N_AGGREGATES])} for r in rows]


def _ranked(grouped: str, merged: str, viewers: str) -> str:
    """Both breakdowns' ranking: `grouped` (a row of states per value, with `n_views` and
    the value's unique viewers as `viewers`) by views, the tail past `limit` and every value
    under `k` viewers merged into "other" by `merged`."""
    return f"""
        SELECT if(rank <= {{limit:UInt32}} AND {viewers} >= {{k:UInt32}}, value, 'other') AS bucket, {merged},
               min(rank) AS first
        FROM (SELECT *, row_number() OVER (ORDER BY {viewers} < {{k:UInt32}}, n_views DESC, value) AS rank FROM ({grouped}))
        GROUP BY bucket ORDER BY first
        {SETTINGS}
    """


def _cube_breakdown(store: Store, scope: Scope, built: cube.Built, dimension: str, limit: int, k: int) -> list[dict]:
    """`breakdown` over the cube's states and the rollup's (the same ranking and "other")."""
    source, params = _states(scope, built, dimension, DIMENSIONS[dimension])
    sums = ", ".join(f"sum({c}) AS {c}" for c, _ in cube.ADDITIVE)
    grouped = (f"SELECT value, {sums}, groupBitmapMergeState(viewers) AS viewers,"
               " quantilesExactMergeState(0.5, 0.95)(startups) AS startups, finalizeAggregation(viewers) AS n_viewers"
               f" FROM ({source}) GROUP BY value")
    sql = _ranked(grouped, _CUBE_MERGED, "n_viewers")
    rows = store.rows(sql, {**params, "limit": limit, "k": k})
    return [{"value": str(r[0]), **figures(r[1:1 + _N_AGGREGATES])} for r in rows]


def unique_viewers(store: Store, scope: Scope, source: str = ROLLUP) -> int:
    """Distinct viewers of the views that started in the scope."""
    rows = store.rows(f"SELECT uniqExact({VIEWER_KEY}) FROM {source} WHERE {scope.where()} {SETTINGS}",
                      scope.parameters())
    return int(rows[0][0])


def _buckets(scope: Scope, step: int) -> list[int]:
    first = int(scope.start) // step * step
    return list(range(first, int(math.ceil(scope.end)), step))


def points(scope: Scope, interval: str) -> int:
    step = INTERVALS[interval]
    return len(_buckets(scope, step))


def timeseries(store: Store, scope: Scope, metric: str, interval: str, source: str = ROLLUP,
               k: int = 1) -> list[dict]:
    """`metric` per `interval` bucket, every bucket present (None or 0 where no views).

    With `k` > 1 (a media filter, analytics/suppression.py) a bucket whose views came
    from 1..k-1 unique viewers is None (for `concurrent_viewers`: a count of 1..k-1)."""
    step = INTERVALS[interval]
    buckets = _buckets(scope, step)
    built = _cube_days(store, scope, source) if step >= 3600 else cube.Built()  # the cube has hours
    if metric == "concurrent_viewers":
        values = _concurrent(store, scope, step, source, built)
        return [{"t": iso_utc(t), "value": None if 0 < values.get(t, 0) < k else values.get(t, 0)} for t in buckets]
    if built.builds:
        sql, params = _states(scope, built, "hour", cube.HOUR)
        rows = store.rows(f"SELECT intDiv(toUInt32(value), {step}) * {step} AS t, {_CUBE_MERGED} FROM ({sql})"
                          f" GROUP BY t {SETTINGS}", params)
    else:
        rows = store.rows(
            f"SELECT intDiv(toUInt32(toUnixTimestamp(started_at)), {step}) * {step} AS t, {_AGGREGATES}"
            f" FROM {source} WHERE {scope.where()} GROUP BY t {SETTINGS}",
            scope.parameters(),
        )
    # r[2] is the bucket's unique viewers (`_MEASURES`' second).
    by_t = {int(r[0]): None if r[2] < k else figures(r[1:])[metric] for r in rows}
    empty = figures((0,) * _N_AGGREGATES)[metric]
    return [{"t": iso_utc(t), "value": by_t.get(t, empty)} for t in buckets]


def _concurrent(store: Store, scope: Scope, step: int, source: str, built: cube.Built) -> dict[int, int]:
    """Views active (any event) in each minute; per hour or day, the peak minute.

    A view counts in the minutes of the day it started and of the next (a view may last
    days, but reading every earlier day's views for each minute would cost a range as
    much again). Minutes of the cube's built days come from its `minute` rows, built by
    the same rule; the rest from the views that can be active in them."""
    where = (
        "tenant_id = {tenant:String} AND day >= toDate({start:DateTime64(3)}) - 1 AND day <= toDate({end:DateTime64(3)})"
        " AND last_event_at >= {start:DateTime64(3)} AND started_at < {end:DateTime64(3)}"
    )
    if scope.video_id:
        where += " AND video_id = {video:String}"
    if built.builds:  # a view counts only on its day and the next: skip those both built
        where += " AND day IN {near_days:Array(Date)}"
    unbuilt = set(built.rest(scope.start, scope.end))
    near = sorted(d for d in built.rest(scope.start, scope.end, before=1) + built.days
                  if d in unbuilt or d + dt.timedelta(days=1) in unbuilt)
    minutes = ("arrayFilter(x -> x >= {start:DateTime64(3)} AND x < {end:DateTime64(3)} AND toDate(x) <= day + 1"
               " AND NOT has({built_days:Array(Date)}, toDate(x)), active_minutes)")
    rest = f"SELECT toUInt32(arrayJoin({minutes})) AS m, count() AS n FROM {source} WHERE {where} GROUP BY m"
    per_minute = f"{rest} UNION ALL {cube.MINUTES_SQL}" if built.builds else rest
    rows = store.rows(
        "SELECT intDiv(m, {step:UInt32}) * {step:UInt32} AS t, max(n) FROM ("
        f"  SELECT m, sum(n) AS n FROM ({per_minute}) GROUP BY m"
        f") GROUP BY t {SETTINGS}",
        {**scope.parameters(), **built.parameters(), "step": step, "near_days": near},
    )
    return {int(t): int(n) for t, n in rows}


def views_by_mode(store: Store, scope: Scope, source: str = ROLLUP) -> tuple[int, int]:
    """(anonymous views, consented views) that started in the scope (analytics/counting.py)."""
    anonymous = _SUM["n_anonymous"]
    built = _cube_days(store, scope, source)
    if built.builds:
        sql, params = _states(scope, built, "all", "''")
        row = store.rows(f"SELECT sum(n_anonymous), sum(n_views) - sum(n_anonymous) FROM ({sql}) {SETTINGS}", params)[0]
    else:
        row = store.rows(f"SELECT {anonymous}, count() - {anonymous} FROM {source} WHERE {scope.where()} {SETTINGS}",
                         scope.parameters())[0]
    return int(row[0]), int(row[1])


def realtime(store: Store, tenant_id: str, now: float | None = None, k: int = 1) -> dict:
    """The last five minutes from the raw beacons (the rollup lags by a pass): viewers per
    minute, viewers in the current minute, and the videos they watch (only those with at
    least `k` unique viewers: analytics/suppression.py; the totals stay exact)."""
    now = time.time() if now is None else now
    start = (int(now) // 60 - 4) * 60
    params = {"tenant": tenant_id, "start": float(start), "now": now}
    where = ("tenant_id = {tenant:String} AND toDate(ts) >= toDate({start:DateTime64(3)})"
             " AND ts >= {start:DateTime64(3)} AND ts <= {now:DateTime64(3)}")
    per_minute = dict(store.rows(
        f"SELECT toUInt32(toUnixTimestamp(toStartOfMinute(ts))) AS m, uniqExact(view_id) FROM viewer_events"
        f" WHERE {where} GROUP BY m", params))
    current = int(now) // 60 * 60
    top = store.rows(
        f"SELECT video_id, uniqExact(view_id) AS n FROM viewer_events WHERE {where}"
        " AND ts >= {current:DateTime64(3)} GROUP BY video_id HAVING uniqExact(viewer_id) >= {k:UInt32}"
        " ORDER BY n DESC, video_id LIMIT 10",
        {**params, "current": float(current), "k": k})
    return {
        "viewers_now": int(per_minute.get(current, 0)),
        "per_minute": [{"t": iso_utc(m), "viewers": int(per_minute.get(m, 0))} for m in range(start, current + 60, 60)],
        "top_videos": [{"video_id": v, "viewers": int(n)} for v, n in top],
    }



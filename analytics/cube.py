"""The dashboard cube: per tenant, day, dimension and value, what a range's figures merge
instead of reading every view of the range (issue #20, point 4).

Owner of `dashboard_cube` (migration 21). Read from the `views` rollup, a 30-day figure
visits every (value, viewer) pair of the range, so its cost follows the views and took
2.0-3.0x at ten times the data; merging per-day states took 1.5-1.7x for the same, exact,
answers (bench/RESULTS.md, "Dashboard queries"). A row holds its views' additive sums and
two exact states: a Roaring bitmap of the viewers' ordinals (analytics/ordinals.py) and
the startup times' quantiles. Rows of a day:

- `all`: the day's totals (its presence marks the day built: it is written last);
- one per value of each breakdown dimension (analytics/dimensions.py);
- `hour`: per hour the views started in, for the series;
- `minute`: views active in each minute, for concurrent viewers (a view counts in the
  minutes of the day it started and of the next: the rollup's rule too, `queries`).

A range's figures merge the cube rows of its whole built days with the same states
computed from the rollup for the rest (its partial first and last days, today, any day
not built), so they are the rollup's answers: exact, not estimated.

Only past days are built (today changes every pass), and only once quiet: a pass builds
past days with views, no build in use and no view folded for QUIET_S (the day that just
ended, days taken out), so a view playing past midnight keeps its day with the rollup
instead of having it rebuilt every pass. A change takes a day out with a forget mark
(`forget`): a fold pass's for each past day whose views or beacons it touched (late
data), an erasure's for the days that held the subject's views, the repair of a viewer's
number. Readers take each day's newest build whose `all` rows are in, if no mark is
newer; builds are stamped with ClickHouse's clock when they start reading, so a build
that read the views before a change (on another edge, say) never outranks its mark, and
two builds of one day, or one cut short, never count twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

from analytics.anonymous import KEY_PREFIX
from analytics.dimensions import DIMENSIONS
from core import cluster
from core.store import Store

log = logging.getLogger(__name__)

DAYS = 400  # the longest range a dashboard series shows (days over 400: analytics/queries.py)
RECENT_DAYS = 8  # what a pass looks at for days to build (a view lasts up to a week); all DAYS now and then
BUILDS_PER_PASS = 20  # days built by one pass at most (a first start after upgrading builds DAYS days)
QUIET_S = 600.0  # a day is built once none of its views was folded for this long
FORGOTTEN = "forgotten"  # the `dim` of a forget mark
EPOCH = dt.date(1970, 1, 1)

# The additive figures of a group of views, as (column, expression over `views` rows).
ADDITIVE = (
    ("n_views", "count()"),
    ("s_playing", "sum(playing_ms)"),
    ("s_watch", "sum(playing_ms + rebuffer_ms + seeking_ms)"),
    ("s_rebuffer", "sum(rebuffer_ms)"),
    ("n_rebuffers", "sum(rebuffers)"),
    ("n_failed", "countIf(failed)"),
    ("n_exits", "countIf(NOT played AND NOT failed)"),
    ("n_startups", "count(startup_ms)"),
    ("n_anonymous", f"countIf(startsWith(viewer_id, '{KEY_PREFIX}'))"),
)
VIEWERS_STATE = "groupBitmapState(viewer_ord)"
STARTUPS_STATE = "quantilesExactState(0.5, 0.95)(startup_ms)"
# The columns a source of cube rows gives, in order: value, ADDITIVE..., viewers, startups.
COLUMNS = ("value", *(c for c, _ in ADDITIVE), "viewers", "startups")
STATES = ", ".join([*(f"{expr} AS {c}" for c, expr in ADDITIVE), f"{VIEWERS_STATE} AS viewers",
                    f"{STARTUPS_STATE} AS startups"])
HOUR = "toString(intDiv(toUInt32(toUnixTimestamp(started_at)), 3600) * 3600)"
_VALUES = ", ".join(["('all', '')", *(f"('{name}', toString({expr}))" for name, expr in DIMENSIONS.items()),
                     f"('hour', {HOUR})"])
_FINAL = "SETTINGS do_not_merge_across_partitions_select_final = 1"


def day_number(day: dt.date) -> int:
    return (day - EPOCH).days


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def _now(store: Store) -> float:
    """ClickHouse's clock: builds and forget marks of every edge are ordered by one clock."""
    return float(store.command("SELECT toUnixTimestamp64Milli(now64(3)) / 1000"))


def build_day(store: Store, tenant_id: str, day: dt.date) -> bool:
    """Build one past day of a tenant; False if a view of it has no viewer ordinal yet
    (a pass numbers it first: analytics/ordinals.py). The build is stamped with the time
    it started reading, so a `forget` made meanwhile (an erasure, a change) outranks it."""
    params = {"t": tenant_id, "d": day, "built": _now(store)}
    if int(store.command("SELECT countIf(viewer_ord = 0) FROM views FINAL WHERE tenant_id = {t:String} AND day = {d:Date}"
                         f" {_FINAL}", params)):
        return False
    columns = ", ".join(c for c, _ in ADDITIVE)
    # Minutes first, the `all` row last: a reader takes a build only once its `all` row is in.
    store.command(
        "INSERT INTO dashboard_cube (tenant_id, day, dim, value, n_views, retention_days, built_at)"
        " SELECT tenant_id, {d:Date}, 'minute', toString(m), count(), min(retention_days), {built:DateTime64(3)} FROM ("
        "  SELECT tenant_id, retention_days, toUInt32(arrayJoin(active_minutes)) AS m FROM views FINAL"
        "  WHERE tenant_id = {t:String} AND day >= {d:Date} - 1 AND day <= {d:Date}"
        "   AND last_event_at >= toDateTime({d:Date}, 'UTC')"
        f"  {_FINAL})"
        " WHERE toDate(toDateTime(m, 'UTC')) = {d:Date} GROUP BY tenant_id, m", params)
    store.command(
        f"INSERT INTO dashboard_cube (tenant_id, day, dim, value, {columns}, viewers, startups, retention_days, built_at)"
        f" SELECT tenant_id, day, pair.1 AS dim, pair.2 AS value, {STATES}, min(retention_days), {{built:DateTime64(3)}}"
        f" FROM views FINAL ARRAY JOIN [{_VALUES}] AS pair"
        " WHERE tenant_id = {t:String} AND day = {d:Date}"
        f" GROUP BY tenant_id, day, dim, value ORDER BY dim = 'all' {_FINAL}", params)
    # Older builds, and forget marks this build outranks (it began reading after them).
    older = "tenant_id = {t:String} AND day = {d:Date} AND built_at < {built:DateTime64(3)}"
    if int(store.command(f"SELECT count() FROM dashboard_cube WHERE {older}", params)):  # a mutation costs 30 ms
        store.command(cluster.delete_from("dashboard_cube", older), params)
    return True


def subject_days(store: Store, tenant_id: str, where: str, params: dict) -> list[dt.date]:
    """The days whose builds hold the views `where` selects (their start day, and the next
    one, where they count as concurrent): what `forget` must drop once they are erased."""
    return [day for (day,) in store.rows(
        f"SELECT DISTINCT arrayJoin([day, day + 1]) FROM views WHERE tenant_id = {{tenant:String}} AND ({where})",
        {**params, "tenant": tenant_id})]


def forget(store: Store, tenant_id: str, days) -> None:
    """Take `days` of a tenant out of the cube: a mark newer than their builds, so that
    readers use the rollup for them and only a build started after it counts (one that
    read the views before the change and lands after it does not). A pass builds them
    again once their views are quiet (`build_missing`)."""
    days = sorted(set(days))
    if days:
        now = dt.datetime.fromtimestamp(_now(store), dt.timezone.utc)
        store.insert_rows("dashboard_cube", [(tenant_id, day, FORGOTTEN, "", DAYS + 1, now) for day in days],
                          ("tenant_id", "day", "dim", "value", "retention_days", "built_at"))


def forget_changed(store: Store, tenant_days) -> int:
    """`forget` the past days of `tenant_days` (tenant, day) that have a build in use (the
    rest are read from the rollup already); returns how many."""
    today = utc_today()
    by_tenant: dict[str, set] = {}
    for tenant_id, day in tenant_days:
        if day < today:
            by_tenant.setdefault(tenant_id, set()).add(day)
    forgotten = 0
    for tenant_id, days in by_tenant.items():
        live = [day for day, _ in _builds(store, tenant_id, min(days), max(days)) if day in days]
        forget(store, tenant_id, live)
        forgotten += len(live)
    return forgotten


def forget_through(store: Store, tenant_id: str, last: dt.date) -> None:
    """Delete every row of a tenant's days up to `last`: retention deleted their views."""
    store.command(cluster.delete_from("dashboard_cube", "tenant_id = {t:String} AND day <= {d:Date}"),
                  {"t": tenant_id, "d": last})


def build_missing(store: Store, limit: int = BUILDS_PER_PASS, days: int = DAYS, quiet_s: float = QUIET_S) -> int:
    """Build up to `limit` past days (newest first, of the last `days`, within their
    retention) that have views, no build in use, and no view folded in the last `quiet_s`:
    a day that just ended, days a change or an erasure took out, every day after upgrading.
    A day with a view still playing (past midnight, for up to a week) stays with the rollup."""
    today = utc_today()
    params = {"oldest": today - dt.timedelta(days=days), "today": today, "n": 3 * limit,
              "quiet": _now(store) - quiet_s}
    missing = store.rows(
        "SELECT tenant_id, day FROM views WHERE day >= {oldest:Date} AND day < {today:Date} GROUP BY tenant_id, day"
        " HAVING (tenant_id, day) NOT IN (SELECT tenant_id, day FROM dashboard_cube"
        f"  WHERE dim IN ('all', '{FORGOTTEN}') AND day >= {{oldest:Date}} GROUP BY tenant_id, day"
        f"  HAVING argMax(dim, built_at) = 'all')"
        # A build past its TTL would be dropped at the next merge and built again, forever:
        # such a day (its shortest retention over, its views leaving) stays with the rollup.
        "  AND day + min(retention_days) > {today:Date} AND max(folded_at) < {quiet:DateTime64(3)}"
        " ORDER BY day DESC LIMIT {n:UInt32}", params)
    built = 0
    for tenant_id, day in missing:  # a day not numbered yet does not use up the limit
        built += build_day(store, tenant_id, day)
        if built >= limit:
            break
    return built


def _builds(store: Store, tenant_id: str, first: dt.date, last: dt.date) -> list[tuple[dt.date, int]]:
    """Each day's newest build (epoch ms) in [first, last], unless a forget mark is newer."""
    return [(day, int(ms)) for day, ms in store.rows(
        f"SELECT day, toUnixTimestamp64Milli(maxIf(built_at, dim = 'all')) AS b FROM dashboard_cube"
        f" WHERE tenant_id = {{t:String}} AND dim IN ('all', '{FORGOTTEN}') AND day >= {{first:Date}} AND day <= {{last:Date}}"
        " GROUP BY day HAVING argMax(dim, built_at) = 'all' ORDER BY day",
        {"t": tenant_id, "first": first, "last": last})]


@dataclass(frozen=True)
class Built:
    """A range's whole days that have a build, and each one's newest build (epoch ms)."""

    builds: tuple[tuple[dt.date, int], ...] = ()

    @property
    def days(self) -> list[dt.date]:
        return [day for day, _ in self.builds]

    def where(self) -> str:
        """Cube rows of those builds (parameters from `parameters`)."""
        return ("tenant_id = {tenant:String} AND day IN {built_days:Array(Date)}"
                " AND (day, toUnixTimestamp64Milli(built_at)) IN {builds:Array(Tuple(Date, Int64))}")

    def parameters(self) -> dict:
        return {"built_days": self.days, "builds": list(self.builds)}

    def rest(self, start: float, end: float, before: int = 0) -> list[dt.date]:
        """The days of [start, end) (and `before` days more ahead of it) not built: the
        rollup's part of an answer, as a list, which prunes by the key as `NOT IN` cannot."""
        first = EPOCH + dt.timedelta(days=int(start) // 86400 - before)
        count = (EPOCH + dt.timedelta(days=int(end) // 86400) - first).days + 1
        built = set(self.days)
        return [day for day in (first + dt.timedelta(days=k) for k in range(count)) if day not in built]


def built(store: Store, tenant_id: str, start: float, end: float) -> Built:
    """The whole days of [start, end) (epoch seconds) the cube can answer for."""
    first = EPOCH + dt.timedelta(days=math.ceil(start / 86400))
    last = EPOCH + dt.timedelta(days=math.floor(end / 86400) - 1)
    if first > last:
        return Built()
    return Built(tuple(_builds(store, tenant_id, first, last)))


# The cube rows of one dimension (parameter `dim`) of a `Built`, columns `COLUMNS`.
ROWS_SQL = f"SELECT {', '.join(COLUMNS)} FROM dashboard_cube WHERE {Built().where()} AND dim = {{dim:String}}"
MINUTES_SQL = f"SELECT toUInt32(value) AS m, n_views AS n FROM dashboard_cube WHERE {Built().where()} AND dim = 'minute'"

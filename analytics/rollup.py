"""The `views` rollup: one row per view, so dashboards never rescan raw beacons.

Why not a materialized view: a view's playing, rebuffering and seeking time depend on the
order of *all* its events (a span is billed to the state the previous event set), and
those events arrive in many inserts, seconds apart. An insert-time materialized view sees
one block at a time and cannot bill the span between two blocks. So a pass re-folds,
with the query of `analytics.views`, every view that got events since the last pass (all
of its events, not only the new ones) and inserts the results; `views` is a
ReplacingMergeTree on `folded_at`, so the newest fold of a view wins, and read with FINAL.

"Since the last pass" uses `inserted_at`, set by ClickHouse when a row is stored, so
events that waited in the spool through an outage are folded when they finally land. The
cursor is ClickHouse's clock too, kept in memory: at start it resumes from the newest
`folded_at` (with a margin), so a restart costs one slightly larger pass. Several edges
may all run passes: folds are idempotent.

A view's row is keyed by its first beacon's day and video. A beacon that lands late and
is earlier than every beacon folded so far (spooled through an outage on another edge)
can change them: the new fold then has another key, and ReplacingMergeTree would keep
the old row beside it, counting the view twice. So each pass deletes, for the views it
folded, every row whose key is no longer the newest fold's (`_drop_moved`).

`views` holds `viewer_id` (for unique viewers), so it is in the personal-data registry,
has the same per-row retention TTL, and carries no projection, so purges' lightweight
DELETEs work on it.

A pass also keeps what the dashboards read beside the rollup in step with it: it numbers
the new viewers and writes each view with its viewer's ordinal (analytics/ordinals.py),
mends views folded with another edge's losing number, takes out of the cube
(analytics/cube.py) the past days whose views or beacons it touched, and builds the
quiet days not built.
"""

from __future__ import annotations

import asyncio
import logging

from analytics import cube, ordinals
from analytics.views import FOLD_COLUMNS, fold_sql
from core import cluster
from core.store import Store, StoreUnavailable

log = logging.getLogger(__name__)
MARGIN_S = 10.0  # overlap between passes: inserts that committed while the last pass ran
# A pass re-reads each touched view from its start (its row's `started_at`), but never
# from further back than this: a view lasts as long as its heartbeats (a 60-minute idle
# ends it, nothing else: DESIGN.md §4), so a screen left playing for days is one view,
# and a week bounds what one such view costs every pass.
MAX_VIEW_S = 7 * 86400
FULL_SCAN_EVERY = 30  # passes between looks at every day the cube covers (5 min at 10 s)
DELETE_BATCH = 500  # moved views per DELETE: a statement's size stays bounded

_COLUMNS = ", ".join(FOLD_COLUMNS)


_FOLDED = ", ".join(f"f.{c}" for c in FOLD_COLUMNS)


def _insert_sql(where: str, viewers: str) -> str:
    """Fold the views `where` selects, each with its viewer's ordinal (0: not numbered yet),
    looked up among `viewers` (a query of tenant_id, viewer_id)."""
    return (f"INSERT INTO views ({_COLUMNS}, viewer_ord, folded_at) SELECT {_FOLDED}, o.viewer_ord, now64(3)"
            f" FROM ({fold_sql(where)}) AS f"
            f" LEFT JOIN ({ordinals.effective_sql(viewers)}) AS o ON f.tenant_id = o.tenant_id AND f.viewer_id = o.viewer_id")


# The views a pass folds: those with beacons inserted since the cursor; and their viewers
# (of every beacon read: a view's viewer is its first beacon's, which may be older).
_TOUCHED = "SELECT DISTINCT tenant_id, view_id FROM viewer_events WHERE inserted_at >= {since:DateTime64(3)}"
_VIEWERS = (f"SELECT tenant_id, viewer_id, retention_days FROM viewer_events"
            f" WHERE (tenant_id, view_id) IN ({_TOUCHED}) AND ts >= {{from_ts:DateTime64(3)}}")
# The past days a pass changes for the cube: those of the touched views' rows (old keys
# too, so read before `_drop_moved`), the day after each (a view counts as concurrent
# then), and the new beacons' days.
_CHANGED_DAYS = f"""
    SELECT DISTINCT tenant_id, arrayJoin([day, day + 1]) AS d FROM views
    WHERE day >= toDate({{from_ts:DateTime64(3)}}) AND (tenant_id, view_id) IN ({_TOUCHED})
    UNION DISTINCT
    SELECT DISTINCT tenant_id, toDate(ts) AS d FROM viewer_events WHERE inserted_at >= {{since:DateTime64(3)}}
"""
# Where the earliest of those started, as folded so far (within MAX_VIEW_S; 0: none yet).
_STARTED = f"""
    SELECT ifNull(toUnixTimestamp64Milli(minOrNull(started_at)) / 1000, 0)
    FROM views
    WHERE day >= toDate({{cap:DateTime64(3)}}) AND (tenant_id, view_id) IN ({_TOUCHED})
"""
# Of those, the ones with rows under more than one key, and the newest fold's key.
_MOVED = f"""
    SELECT tenant_id, view_id, argMax(tuple(day, video_id), folded_at), max(folded_at)
    FROM views
    WHERE day >= toDate({{from_ts:DateTime64(3)}}) AND (tenant_id, view_id) IN ({_TOUCHED})
    GROUP BY tenant_id, view_id
    HAVING uniqExact(day, video_id) > 1
"""


def fold_touched(store: Store, since: float, numbering: ordinals.Numbering | None = None,
                 cube_days: int = cube.RECENT_DAYS) -> float:
    """Re-fold every view with events inserted at or after `since` (ClickHouse epoch
    seconds), then bring the ordinals and the cube in step (building quiet days among the
    last `cube_days`); returns the ClickHouse time this pass started, the next pass's
    cursor. `numbering`: this edge's (tests pass two to play two edges)."""
    numbering = numbering or ordinals.PROCESS
    started = float(store.command("SELECT toUnixTimestamp64Milli(now64(3)) / 1000"))
    oldest = store.command(
        "SELECT toUnixTimestamp64Milli(min(ts)) / 1000 FROM viewer_events WHERE inserted_at >= {since:DateTime64(3)}",
        parameters={"since": since},
    )
    changed = _fold(store, since, float(oldest), numbering) if oldest else []  # (min over no rows is 0)
    changed += ordinals.repair(store, numbering, since)
    cube.forget_changed(store, changed)
    cube.build_missing(store, days=cube_days)
    return started


def _fold(store: Store, since: float, oldest: float, numbering: ordinals.Numbering) -> list[tuple]:
    """Fold the touched views; returns the (tenant, day) pairs it changed."""
    # Re-read from the earliest start among the touched views (or the oldest new beacon, if
    # earlier: a late one): a pass then reads minutes of beacons, not a fixed two days,
    # and a view is folded whole however long it has lasted, up to MAX_VIEW_S.
    cap = oldest - MAX_VIEW_S
    started_min = float(store.command(_STARTED, parameters={"since": since, "cap": cap}))
    from_ts = max(cap, min(oldest, started_min)) if started_min else oldest
    where = f"(tenant_id, view_id) IN ({_TOUCHED}) AND ts >= {{from_ts:DateTime64(3)}}"
    params = {"since": since, "from_ts": from_ts}
    numbering.claim(store, _VIEWERS, params)
    store.command(_insert_sql(where, _VIEWERS), parameters=params)
    changed = store.rows(_CHANGED_DAYS, params)
    _drop_moved(store, params)
    return changed


def _drop_moved(store: Store, params: dict) -> None:
    """Delete the rows left under a key the newest fold of their view no longer has.

    Rare (a late, earlier beacon with another day or video), so the lookup is one query
    over the folded views' recent days and the delete a lightweight one, of those views
    only: the rows are masked at once and dropped at the next merge. Only rows older than
    the newest fold are deleted, so a newer one another edge writes meanwhile stays."""
    moved = store.rows(_MOVED, params)
    if moved:
        log.info("view rollup: %d views moved to another day or video; their old rows deleted", len(moved))
    for first in range(0, len(moved), DELETE_BATCH):
        batch = moved[first:first + DELETE_BATCH]
        stale = " OR ".join(
            f"(tenant_id = {{t{i}:String}} AND view_id = {{v{i}:String}}"
            f" AND NOT (day = {{d{i}:Date}} AND video_id = {{m{i}:String}}) AND folded_at < {{f{i}:DateTime64(3)}})"
            for i in range(len(batch)))
        keys = {}
        for i, (tenant_id, view_id, (day, video_id), newest) in enumerate(batch):
            keys.update({f"t{i}": tenant_id, f"v{i}": view_id, f"d{i}": day, f"m{i}": video_id, f"f{i}": newest})
        store.command(cluster.delete_from("views", f"day >= toDate({{from_ts:DateTime64(3)}}) AND ({stale})"),
                      parameters={**params, **keys})


def fold_all(store: Store) -> None:
    """Fold every view from scratch (first start after upgrading, or a rebuild)."""
    viewers = "SELECT tenant_id, viewer_id, retention_days FROM viewer_events"
    ordinals.PROCESS.claim(store, viewers, {})
    store.command(_insert_sql("1", viewers))


def resume_cursor(store: Store) -> float:
    newest = store.command("SELECT toUnixTimestamp64Milli(max(folded_at)) / 1000 FROM views")
    return max(0.0, float(newest or 0) - MARGIN_S * 6) if newest else 0.0


class ViewRollup:
    """Runs `fold_touched` every `every_s` seconds in the background."""

    def __init__(self, store: Store, every_s: float = 10.0) -> None:
        self._store = store
        self._every_s = every_s
        self._cursor: float | None = None
        self._passes = 0
        self._task: asyncio.Task | None = None
        self.lock = asyncio.Lock()  # held by a purge: no fold writes a view back meanwhile

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def fold_now(self) -> None:
        """One pass now (the dashboard's "refresh", and tests)."""
        async with self.lock:
            if self._cursor is None:
                # Views folded before viewer ordinals existed (or left unnumbered): once per
                # start, before the cursor is set, so that a failure tries it again.
                await asyncio.to_thread(ordinals.repair, self._store, ordinals.PROCESS, None)
                self._cursor = await asyncio.to_thread(resume_cursor, self._store)
            # Days to build: the last week each pass, every day the cube covers now and then.
            days = cube.DAYS if self._passes % FULL_SCAN_EVERY == 0 else cube.RECENT_DAYS
            started = await asyncio.to_thread(fold_touched, self._store, max(0.0, self._cursor - MARGIN_S), None, days)
            self._cursor = started
            self._passes += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.fold_now()
            except StoreUnavailable as exc:
                log.warning("view rollup pass skipped: %s", exc)
            except Exception:
                log.exception("view rollup pass failed")
            await asyncio.sleep(self._every_s)

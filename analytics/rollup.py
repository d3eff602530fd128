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

`views` holds `viewer_id` (for unique viewers), so it is in the personal-data registry,
has the same per-row retention TTL, and carries no projection, so purges' lightweight
DELETEs work on it.
"""

from __future__ import annotations

import asyncio
import logging

from analytics.views import FOLD_COLUMNS, fold_sql
from core.store import Store, StoreUnavailable

log = logging.getLogger(__name__)
MARGIN_S = 10.0  # overlap between passes: inserts that committed while the last pass ran
MAX_VIEW_S = 2 * 86400  # events of a touched view older than this are not re-read

_COLUMNS = ", ".join(FOLD_COLUMNS)


def _insert_sql(where: str) -> str:
    return f"INSERT INTO views ({_COLUMNS}, folded_at) SELECT {_COLUMNS}, now64(3) FROM ({fold_sql(where)})"


def fold_touched(store: Store, since: float) -> float:
    """Re-fold every view with events inserted at or after `since` (ClickHouse epoch
    seconds); returns the ClickHouse time this pass started, the next pass's cursor."""
    started = float(store.command("SELECT toUnixTimestamp64Milli(now64(3)) / 1000"))
    touched = (
        "SELECT DISTINCT tenant_id, view_id FROM viewer_events WHERE inserted_at >= {since:DateTime64(3)}"
    )
    oldest = store.command(
        "SELECT toUnixTimestamp64Milli(min(ts)) / 1000 FROM viewer_events WHERE inserted_at >= {since:DateTime64(3)}",
        parameters={"since": since},
    )
    if not oldest:  # nothing new (min over no rows is 0)
        return started
    where = f"(tenant_id, view_id) IN ({touched}) AND ts >= {{from_ts:DateTime64(3)}}"
    store.command(_insert_sql(where), parameters={"since": since, "from_ts": float(oldest) - MAX_VIEW_S})
    return started


def fold_all(store: Store) -> None:
    """Fold every view from scratch (first start after upgrading, or a rebuild)."""
    store.command(_insert_sql("1"))


def resume_cursor(store: Store) -> float:
    newest = store.command("SELECT toUnixTimestamp64Milli(max(folded_at)) / 1000 FROM views")
    return max(0.0, float(newest or 0) - MARGIN_S * 6) if newest else 0.0


class ViewRollup:
    """Runs `fold_touched` every `every_s` seconds in the background."""

    def __init__(self, store: Store, every_s: float = 10.0) -> None:
        self._store = store
        self._every_s = every_s
        self._cursor: float | None = None
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
                self._cursor = await asyncio.to_thread(resume_cursor, self._store)
            started = await asyncio.to_thread(fold_touched, self._store, max(0.0, self._cursor - MARGIN_S))
            self._cursor = started

    async def _run(self) -> None:
        while True:
            try:
                await self.fold_now()
            except StoreUnavailable as exc:
                log.warning("view rollup pass skipped: %s", exc)
            except Exception:
                log.exception("view rollup pass failed")
            await asyncio.sleep(self._every_s)

"""Per-view QoE figures from raw beacons, as DESIGN.md §4 defines them.

One query folds each view's events, in time order, into the state the player was in
between one event and the next; each span is then billed to that state:

- `viewstart` starts the clock: the span until the first `playing` is startup time;
- `playing`, `heartbeat` and `rebuffer_end` mean the playhead moves (playing time);
- `rebuffer_start` begins a stall (rebuffering time, one rebuffer each);
- `seeking` begins a seek; after `seeked` the stall still belongs to the seek until the
  playhead moves, unless the viewer had paused (then it is pause, not watch time);
- `pause`, `ended`, `viewend` and a fatal `error` stop the clock.

The player sends a heartbeat every 10 s of playing, so a longer silence while "playing"
means the viewer vanished without a `viewend` (tab killed): such spans count for at most
`MAX_PLAYING_GAP_MS`; no span counts for more than a view's 60-minute idle limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.store import Store

MAX_PLAYING_GAP_MS = 20_000
MAX_SPAN_MS = 60 * 60 * 1000

_STATES = """
    SELECT tenant_id, view_id, viewer_id, video_id, type, fatal, ts,
        country, region, city, os, browser, device, screen_w, screen_h, retention_days,{carry}
        anyLast(multiIf(
            type IN ('playing', 'heartbeat', 'rebuffer_end'), 'playing',
            type = 'rebuffer_start', 'rebuffering',
            type = 'seeking', 'seeking',
            type = 'seeked', 'seek_wait',
            type = 'viewstart', 'starting',
            type IN ('pause', 'ended', 'viewend') OR (type = 'error' AND fatal), 'stopped',
            NULL)) OVER w AS carried,
        anyLast(multiIf(type IN ('playing', 'heartbeat', 'rebuffer_end'), 0, type = 'pause', 1, NULL)) OVER w AS paused,
        dateDiff('millisecond', ts, leadInFrame(ts, 1, ts) OVER (PARTITION BY tenant_id, view_id ORDER BY ts
            ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING)) AS gap
    FROM viewer_events
    WHERE {where}
    WINDOW w AS (PARTITION BY tenant_id, view_id ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""

_SPANS = f"""
    SELECT *,
        multiIf(carried = 'seek_wait', if(paused = 1, 'stopped', 'seeking'), ifNull(carried, 'stopped')) AS state,
        least(gap, if(state = 'playing', {MAX_PLAYING_GAP_MS}, {MAX_SPAN_MS})) AS span
    FROM ({_STATES})
"""

# One row per view, in the column order of the `views` table (but `folded_at`).
FOLD_COLUMNS = (
    "tenant_id", "day", "video_id", "view_id", "viewer_id", "started_at", "last_event_at", "startup_ms",
    "playing_ms", "rebuffer_ms", "seeking_ms", "rebuffers", "played", "failed", "country", "region",
    "city", "os", "browser", "device", "screen_w", "screen_h", "active_minutes", "retention_days",
)
FOLD_SQL = f"""
    SELECT tenant_id,
        toDate(min(ts)) AS day,
        argMin(video_id, ts) AS video_id,
        view_id,
        argMin(viewer_id, ts) AS viewer_id,
        min(ts) AS started_at,
        max(ts) AS last_event_at,
        if(countIf(type = 'viewstart') > 0 AND countIf(type = 'playing') > 0,
           toUInt32(greatest(0, dateDiff('millisecond', minIf(ts, type = 'viewstart'), minIf(ts, type = 'playing')))),
           NULL) AS startup_ms,
        toUInt64(sumIf(span, state = 'playing')) AS playing_ms,
        toUInt64(sumIf(span, state = 'rebuffering')) AS rebuffer_ms,
        toUInt64(sumIf(span, state = 'seeking')) AS seeking_ms,
        toUInt32(countIf(type = 'rebuffer_start')) AS rebuffers,
        countIf(type = 'playing') > 0 AS played,
        max(type = 'error' AND fatal) AS failed,
        argMin(country, ts) AS country,
        argMin(region, ts) AS region,
        argMin(city, ts) AS city,
        argMin(os, ts) AS os,
        argMin(browser, ts) AS browser,
        argMin(device, ts) AS device,
        ifNull(argMinIf(screen_w, ts, screen_w IS NOT NULL), 0) AS screen_w,
        ifNull(argMinIf(screen_h, ts, screen_h IS NOT NULL), 0) AS screen_h,
        arraySort(groupUniqArray(toStartOfMinute(ts))) AS active_minutes,
        max(retention_days) AS retention_days
    FROM ({_SPANS})
    GROUP BY tenant_id, view_id
"""


def fold_sql(where: str) -> str:
    """The per-view fold over the beacons `where` selects (a condition on viewer_events)."""
    return FOLD_SQL.replace("{carry}", "").replace("{where}", where)


def spans_sql(where: str, carry: str = "") -> str:
    """Every beacon `where` selects, with the state its view was in from it to the next
    beacon (`state`) and that span's billable length in ms (`span`), as the fold bills them.
    `carry`: extra columns over the per-view window `w` in time order, each ending with a
    comma (e.g. `anyLast(rendition_w) OVER w AS rendition_now,`), for figures that bill a
    span to something else in effect at the time (analytics/quality.py)."""
    return _SPANS.replace("{carry}", carry).replace("{where}", where)


@dataclass(frozen=True)
class View:
    view_id: str
    viewer_id: str
    video_id: str
    startup_ms: int | None
    playing_ms: int
    rebuffer_ms: int
    seeking_ms: int
    rebuffers: int
    started: bool
    failed: bool

    @property
    def watch_ms(self) -> int:
        """Playing + rebuffering + seeking: pause excluded (§4)."""
        return self.playing_ms + self.rebuffer_ms + self.seeking_ms


def per_view(store: Store, tenant_id: str, start: float, end: float, video_id: str | None = None) -> list[View]:
    """Every view of a tenant with events in [start, end) (epoch seconds), folded from the
    raw beacons at query time (the `views` rollup holds the same rows, precomputed)."""
    where = "tenant_id = {tenant:String} AND ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}"
    if video_id:
        where += " AND video_id = {video:String}"
    rows = store.rows(
        "SELECT view_id, viewer_id, video_id, startup_ms, playing_ms, rebuffer_ms, seeking_ms, rebuffers,"
        f" played, failed FROM ({fold_sql(where)})",
        parameters={"tenant": tenant_id, "start": start, "end": end, "video": video_id or ""},
    )
    return [
        View(r[0], r[1], r[2], None if r[3] is None else int(r[3]), int(r[4]), int(r[5]), int(r[6]),
             int(r[7]), bool(r[8]), bool(r[9]))
        for r in rows
    ]

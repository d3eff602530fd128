"""Dashboard queries at scale: the `views` rollup against plain SQL over the raw beacons.

    .venv/bin/python bench/queries.py [--events 10000000] [--runs 20]

1. A fresh embedded store; the schema's migrations.
2. About `--events` realistic beacons generated inside ClickHouse (INSERT ... SELECT):
   100k viewers, 1k videos, 40 countries with regions and cities, 30 days, a mix of OS,
   browsers, devices and screens; each view a viewstart, a startup of 0.3-3.3 s, 1-80
   heartbeats 10 s apart and an end; 7 % with a rebuffer of 0.5-4.5 s, 3 % exits before
   start, 2 % fatal errors, 10 % seeks, 10 % pauses.
3. The rollup pass folds every view (timed); then background merges are let finish.
4. Every dashboard query (summary, each breakdown, each series) over the last 30 days and
   the last day against the rollup: one cold run (reported as cold_ms), then `--runs`
   timed runs: p50/p95.
5. The same answers from plain SQL over the raw table (the per-view fold at query time,
   `analytics.views.fold_sql`), timed once each, and compared: they must be equal.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics import queries, rollup  # noqa: E402
from analytics.views import fold_sql  # noqa: E402
from bench import limits  # noqa: E402
from core import migrations
from core.store import open_store  # noqa: E402

TENANT = "tn_bench00000000000"
AVG_EVENTS_PER_VIEW = 42.6  # measured on this generator; sizes the number of views

GENERATE = """
INSERT INTO viewer_events (tenant_id, event_id, received_at, ts, type, viewer_id, email, view_id, video_id,
    position_ms, screen_w, screen_h, player_w, player_h, rendition_w, rendition_h, bitrate_kbps,
    error_code, error_message, fatal, ip, country, region, region_code, city, os, os_version, browser,
    browser_version, device, is_bot, retention_days)
SELECT '{tenant}', event_id, ts, ts, type, viewer_id, '', view_id, video_id,
    toUInt64(greatest(0, offset_ms - startup)), screen_w, screen_h, 960, 540, 1280, 720, 2500,
    if(type = 'error', 'hls_fragLoadError', ''), '', type = 'error',
    toIPv6(IPv4NumToString(toUInt32(167772160 + viewer_n))), country, region, '', city,
    os, '', browser, '', device, false, 395
FROM (
    SELECT
        n,
        view_id, viewer_id, viewer_n, video_id, country, region, city, os, browser, device, screen_w, screen_h,
        startup, start_ms,
        tupleElement(e, 1) AS offset_ms,
        tupleElement(e, 2) AS type,
        fromUnixTimestamp64Milli(toInt64(start_ms + tupleElement(e, 1)), 'UTC') AS ts,
        -- As analytics.events.EventIds makes them: a process's random 64-bit prefix (here
        -- one edge process a day), a batch counter (here the view), the index in the batch.
        lower(hex(cityHash64(intDiv(start_ms, 86400000), 99))) AS process,
        leftPad(lower(hex(n)), 12, '0') AS batch,
        toUUID(concat(substring(process, 1, 8), '-', substring(process, 9, 4), '-', substring(process, 13, 4), '-',
                      substring(batch, 1, 4), '-', substring(batch, 5, 8), leftPad(lower(hex(toUInt16(i))), 4, '0'))) AS event_id
    FROM (
        SELECT
            number AS n,
            concat('view-', toString(number)) AS view_id,
            {viewer_base} + cityHash64(number, 1) % {viewers} AS viewer_n,
            concat('viewer-', toString(viewer_n)) AS viewer_id,
            concat('vd_', lower(hex(cityHash64(cityHash64(number, 2) % 1000)))) AS video_id,
            cityHash64(number, 3) % 40 AS c,
            ['US','DE','FR','GB','BR','IN','JP','CA','AU','ES','IT','NL','SE','PL','MX','AR','KR','TR','ZA','NG',
             'EG','ID','PH','VN','TH','MY','SG','NZ','IE','PT','BE','CH','AT','DK','NO','FI','CZ','RO','GR','IL'][c + 1] AS country,
            concat(country, '-R', toString(cityHash64(number, 4) % 8)) AS region,
            concat(country, '-C', toString(cityHash64(number, 5) % 50)) AS city,
            ['Windows','Mac OS X','iOS','Android','Linux','Chrome OS'][1 + cityHash64(number, 6) % 6] AS os,
            ['Chrome','Safari','Firefox','Edge','Samsung Internet','Opera'][1 + cityHash64(number, 7) % 6] AS browser,
            ['desktop','mobile','tablet','tv'][1 + cityHash64(number, 8) % 4] AS device,
            [1920, 1366, 1536, 1440, 2560, 390, 414, 360, 3840, 1280][1 + cityHash64(number, 9) % 10] AS screen_w,
            [1080, 768, 864, 900, 1440, 844, 896, 800, 2160, 720][1 + cityHash64(number, 9) % 10] AS screen_h,
            300 + cityHash64(number, 10) % 3000 AS startup,
            1 + cityHash64(number, 11) % 80 AS beats,
            cityHash64(number, 12) % 100 AS kind,
            toInt64({now_ms}) - {days} * 86400000 + toInt64({start_offset}) AS start_ms,
            multiIf(
                kind < 2, [(0, 'viewstart'), (startup, 'error')],
                kind < 5, [(0, 'viewstart'), (startup, 'viewend')],
                arrayConcat(
                    [(0, 'viewstart'), (startup, 'playing')],
                    if(kind < 12, [(startup + 5000, 'rebuffer_start'), (startup + 5500 + cityHash64(number, 14) % 4000, 'rebuffer_end')], []),
                    if(kind >= 12 AND kind < 22, [(startup + 4000, 'seeking'), (startup + 4300, 'seeked'), (startup + 5200, 'playing')], []),
                    if(kind >= 22 AND kind < 32, [(startup + 7000, 'pause'), (startup + 9000, 'playing')], []),
                    arrayMap(i -> (startup + 10000 * i, 'heartbeat'), range(1, beats + 1)),
                    [(startup + 10000 * beats + 500, 'ended')])) AS events
        FROM numbers({first_view}, {views})
    )
    ARRAY JOIN events AS e, arrayEnumerate(events) AS i
)
"""


# The privacy benches' baseline, a full scan of the beacons for one subject: no skip index,
# and no query condition cache (ClickHouse 25, on by default: a repeated predicate skips the
# granules an earlier run found without a match, so a second "scan" read almost nothing).
FULL_SCAN = "use_skip_indexes = 0, use_query_condition_cache = 0"

# Where a view starts in its window: in the order the views are numbered (so inserted), as a
# live table receives beacons, or at random, so that every insert block spans the whole
# window (the worst case for a purge: every part then holds some of every subject's rows).
START_OFFSET = {
    "arrival": "intDiv((number - {first_view}) * ({days} * 86400000 - 3600000), {views})",
    "shuffled": "cityHash64(number, 13) % ({days} * 86400000 - 3600000)",
}


def generate_sql(views: int, end_ms: int, days: float, first_view: int = 0, viewer_base: int = 0,
                 viewers: int = 100_000, order: str = "shuffled") -> str:
    """Beacons of `views` views (numbered from `first_view`) starting in the `days` before
    `end_ms`, by `viewers` viewers numbered from `viewer_base`: the 10 M default is 100k
    viewers (about 2.35 views each), and larger sets keep that ratio in bench/scale.py.
    `order`: a key of START_OFFSET; each view's viewer is random either way."""
    params = dict(tenant=TENANT, now_ms=end_ms, days=days, views=views, first_view=first_view,
                  viewer_base=viewer_base, viewers=viewers)
    return GENERATE.format(start_offset=START_OFFSET[order].format(**params), **params)


def reload_views_in_blocks(store, rows: int) -> None:
    """Give the rollup the parts a live one has: folded every few seconds, its parts are
    made by merges (capped, migration 20), where one fold of the whole load writes a part
    as big as the month. The same rows, inserted again `rows` views at a time, in the
    order a live rollup writes them: a view's last fold follows its last beacon, so parts
    follow time (copied in whatever order the parts were read, each part spanned days that
    others also held, which a live rollup's parts do not: bench/RESULTS.md, session 13)."""
    store.command("CREATE TABLE views_reload AS views")
    store.command(f"INSERT INTO views_reload SELECT * FROM views ORDER BY last_event_at SETTINGS max_threads = 1,"
                  f" max_block_size = {rows}, max_insert_block_size = {rows}, min_insert_block_size_rows = {rows},"
                  " min_insert_block_size_bytes = 0, optimize_on_insert = 0")
    store.command("EXCHANGE TABLES views AND views_reload")
    store.command("DROP TABLE views_reload SYNC")


def timed(fn, runs: int) -> tuple[list[float], object]:
    out, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        out.append((time.perf_counter() - t) * 1000)
    return out, result


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def measure(store, now_ms: int, days: int, runs: int, compare_raw: bool = True) -> tuple[dict, list[str]]:
    """Every dashboard query over the last `days` and the last day against the rollup (one
    cold run, then `runs` timed: p50/p95) and, with `compare_raw`, once as plain SQL over the
    raw beacons, answers compared; returns per-query figures and the mismatches."""
    end = now_ms / 1000
    ranges = {f"{days}d": queries.Scope(TENANT, end - days * 86400, end),
              "1d": queries.Scope(TENANT, end - 86400, end)}
    results: dict[str, dict] = {}
    mismatches: list[str] = []
    for label, scope in ranges.items():
        raw = f"({fold_sql(raw_where(scope))})"
        plans = {"summary": lambda s, src: queries.summary(store, s, src)}
        for dim in queries.DIMENSIONS:
            plans[f"breakdown_{dim}"] = lambda s, src, d=dim: queries.breakdown(store, s, d, 20, src)
        intervals = ("minute", "hour", "day") if label == "1d" else ("hour", "day")
        for interval in intervals:
            plans[f"timeseries_views_{interval}"] = lambda s, src, i=interval: queries.timeseries(store, s, "views", i, src)
            plans[f"timeseries_rebuffer_pct_{interval}"] = (
                lambda s, src, i=interval: queries.timeseries(store, s, "rebuffer_pct", i, src))
            plans[f"timeseries_concurrent_{interval}"] = (
                lambda s, src, i=interval: queries.timeseries(store, s, "concurrent_viewers", i, src))
        for name, plan in plans.items():
            # The first run reads cold marks and blocks; it is reported apart, not in p95.
            cold, _ = timed(lambda: plan(scope, queries.ROLLUP), 1)
            fast, answer = timed(lambda: plan(scope, queries.ROLLUP), runs)
            row = {"cold_ms": round(cold[0], 1), "p50_ms": p(fast, 0.5), "p95_ms": p(fast, 0.95)}
            if compare_raw:
                slow, expected = timed(lambda: plan(scope, raw), 1)
                if answer != expected:
                    mismatches.append(f"{label}/{name}")
                row.update(raw_ms=round(slow[0], 1), speedup=round(slow[0] / statistics.median(fast), 1))
            results[f"{label}/{name}"] = row
        print(f"{label} done", file=sys.stderr)
    return results, mismatches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-edge-queries-"))
    store = open_store(f"chdb://{work / 'ch'}")
    migrations.apply(store)
    now_ms = int(time.time() * 1000)
    views_n = int(args.events / AVG_EVENTS_PER_VIEW)

    t = time.perf_counter()
    store.command(generate_sql(views_n, now_ms, args.days), parameters=None)
    generate_s = time.perf_counter() - t
    events = int(store.command(f"SELECT count() FROM viewer_events WHERE tenant_id = '{TENANT}'"))
    t = time.perf_counter()
    rollup.fold_touched(store, 0.0)
    fold_s = time.perf_counter() - t
    folded = int(store.command(f"SELECT count() FROM views FINAL WHERE tenant_id = '{TENANT}'"))
    # Time the steady state: a live store is not merging ten million fresh rows.
    settle = time.perf_counter()
    while store.command("SELECT count() FROM system.merges") and time.perf_counter() - settle < 300:
        time.sleep(1)
    settle_s = time.perf_counter() - settle

    results, mismatches = measure(store, now_ms, args.days, args.runs)
    worst = max(results.values(), key=lambda r: r["p95_ms"])
    worst_cold = max(r["cold_ms"] for r in results.values())
    print(json.dumps({
        "events": events, "views": folded, "generate_s": round(generate_s, 1), "fold_all_s": round(fold_s, 1),
        "merges_settled_s": round(settle_s, 1),
        "runs": args.runs, "worst_p95_ms": worst["p95_ms"], "worst_cold_ms": worst_cold,
        "all_under_150ms_p95": all(r["p95_ms"] < 150 for r in results.values()),
        "same_answers_as_raw_sql": not mismatches, "mismatches": mismatches,
        "median_speedup": statistics.median(r["speedup"] for r in results.values()),
        "queries": results,
        "limits": limits.not_on_path("in-process: the queries call the store directly, no HTTP request"),
    }))
    store.close()


def raw_where(scope: queries.Scope) -> str:
    """The raw beacons that can belong to views starting in the scope (views end within a
    day), with literal bounds: the fold's own parameters are the outer query's."""
    return (f"tenant_id = '{scope.tenant_id}' AND ts >= toDateTime64({scope.start - 86400}, 3)"
            f" AND ts < toDateTime64({scope.end + 86400}, 3)")


if __name__ == "__main__":
    main()

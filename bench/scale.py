"""Ten times the data, in one run: dashboards, one subject's purge and storage at N and 10 N beacons.

    .venv/bin/python bench/scale.py [--events 1000000] [--factor 10] [--runs 20] [--more 2]

The issue's figures are `--events 10000000` (10 M, then 100 M); the default is small so
that the bench can be tried in a minute. One embedded store, the schema's migrations:

1. `--events` beacons over the last 30 days, inserted in time order (`--order arrival`, as a
   live table gets them; `shuffled`: every block spans its whole window) (bench/queries.py's generator: 2.35 views per
   viewer, 1k videos, 40 countries, ...), folded into the `views` rollup, every past day
   built into the dashboard cube (timed: `cube_build_s`), merges settled.
2. Measured at N: every dashboard query over 30 days and one day as the API answers it
   (the cube's whole past days, the rollup for the rest: analytics/queries.py) (a
   cold run, then `--runs`: p50/p95; the first stage also checks the answers against plain
   SQL over the raw beacons); a full scan of `viewer_events` for one subject (skip indexes and the query condition cache
   off: the baseline); the verified purge of that subject (a viewer with the median number
   of views, and `--more` further ones: retention/purge.py, every registered table, physical
   count after with the deleted-rows mask off); storage on disk.
3. The store grows to `--factor` x N (4 or more), a quarter of all beacons in the last 30
   days (the current month: the dashboards' 30-day range) and the rest in the 90 days
   before, in 10-day chunks folded as they land (new views, new viewers at the same ratio).
   Every load comes in blocks of `--insert-rows` beacons (500k: parts the merge cap leaves
   alone; 100k: parts made by merges, as live), and the rollup is then written again in
   blocks of as many views' rows, so that its parts are made by merges as a live rollup's
   (folded every few seconds) are, not one part per fold.
4. Measured again at 10 N, the same way (another median subject, from the new viewers).
5. A live fold pass (the cube's upkeep included) at each size: 200 views get a heartbeat, then
   `rollup.fold_touched`; median ms of passes 2-7.
6. Storage bytes per beacon: every table's active parts (the beacons, the rollup, consents,
   the rest), compressed on disk, beside a plain MergeTree (`ORDER BY tuple()`, default
   codec, no index) holding the same beacons, built in this run and dropped (at the first
   size; `--baseline-at-second` also at the second, slow at 100 M).

Prints one JSON object: `dashboard_p95_ratio` (worst p95 at 10 N / worst p95 at N, and per
query; the same of the p50s beside it), `purge_ratio` (10 N / N), `purge_vs_full_scan` (at N), `bytes_per_beacon`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics import cube, rollup  # noqa: E402
from bench import limits  # noqa: E402
from bench.privacy import request_for  # noqa: E402
from bench.queries import (AVG_EVENTS_PER_VIEW, FULL_SCAN, START_OFFSET, TENANT, generate_sql, measure,  # noqa: E402
                           reload_views_in_blocks)
from core import migrations  # noqa: E402
from core.store import open_store  # noqa: E402
from retention import purge, registry  # noqa: E402

VIEWS_PER_VIEWER = 2.35  # bench/queries.py at 10 M: 234,741 views by 100k viewers
DAY_MS = 86_400_000
# Insert blocks: parts of 500k beacons (about 2.7 MB with migration 19's codecs), which
# the merge cap (1 MiB since migration 20) leaves as they are: bigger than a live table's
# merged parts, so a purge copies more than it would live. `--insert-rows 100000` gives
# the live layout through merges, only slower to load.
INSERT_ROWS = 500_000


def settle(store, cap_s: float = 600, quiet_s: int = 5) -> float:
    """Wait for background merges and mutations (a live table is not merging a bulk load):
    until `quiet_s` seconds in a row with none running and the active parts unchanged.
    Merges start a moment after an insert, so "none running now" alone returned at once
    and the timed queries then shared the cores with them (p95 spikes, session 13)."""
    t = time.perf_counter()
    last, quiet = None, 0
    while quiet < quiet_s and time.perf_counter() - t < cap_s:
        parts = store.command("SELECT count() FROM system.parts WHERE active AND database = currentDatabase()")
        busy = (store.command("SELECT count() FROM system.merges")
                or store.command("SELECT count() FROM system.mutations WHERE NOT is_done"))
        quiet = quiet + 1 if not busy and parts == last else 0
        last = parts
        time.sleep(1)
    return round(time.perf_counter() - t, 1)


def grow(store, views: int, end_ms: int, days: int, first_view: int, viewer_base: int, order: str,
         rows: int = INSERT_ROWS) -> None:
    """Insert `views` views' beacons in the `days` before `end_ms`, in blocks of `rows`, then fold them."""
    since = float(store.command("SELECT toUnixTimestamp64Milli(now64(3)) / 1000"))
    store.command(generate_sql(views, end_ms, days, first_view, viewer_base, max(1, int(views / VIEWS_PER_VIEWER)),
                               order)
                  + f" SETTINGS max_insert_block_size = {rows}, min_insert_block_size_rows = {rows},"
                  " min_insert_block_size_bytes = 0", parameters=None)
    rollup.fold_touched(store, since - 1)


def load_first(store, views: int, now_ms: int, order: str, rows: int) -> None:
    """The first size: `views` views' beacons over the last 30 days, folded, the rollup
    reloaded in live order."""
    grow(store, views, now_ms, 30, 0, 0, order, rows)
    reload_views_in_blocks(store, int(rows / AVG_EVENTS_PER_VIEW))


def grow_to(store, views: int, factor: int, now_ms: int, order: str, rows: int) -> None:
    """From `views` views to `factor` times as many: a quarter of all beacons in the last 30
    days, the rest in the 90 days before, in chunks of 10 days folded as they land (new
    views, new viewers at the same ratio); then the rollup reloaded in live order."""
    total = views * factor
    recent_more = max(0, total // 4 - views)  # (a factor under 4: none)
    older = total - views - recent_more
    chunks = [(now_ms - d * DAY_MS, recent_more // 3) for d in (0, 10, 20)]
    chunks += [(now_ms - d * DAY_MS, older // 9) for d in range(30, 120, 10)]
    next_view, next_viewer = views, int(views / VIEWS_PER_VIEWER)
    for end_ms, n in chunks:
        if n <= 0:
            continue
        grow(store, n, end_ms, 10, next_view, next_viewer, order, rows)
        next_view += n
        next_viewer += max(1, int(n / VIEWS_PER_VIEWER))
        print(f"grown to {next_view} views", file=sys.stderr)
    reload_views_in_blocks(store, int(rows / AVG_EVENTS_PER_VIEW))


def build_cube(store) -> float:
    """Build every past day (a live edge builds a day once its views are quiet for ten
    minutes, 20 a pass; the bench's loads are done): seconds taken."""
    t = time.perf_counter()
    while cube.build_missing(store, 1000, quiet_s=0):
        pass
    return round(time.perf_counter() - t, 1)


def live_pass(store, now_ms: int, passes: int = 7) -> float:
    """Median ms of a live fold pass, the cube's upkeep included (passes 2 on): each pass
    appends one heartbeat to each of the 200 views that started last, then folds."""
    times = []
    for _ in range(passes):
        since = float(store.command("SELECT toUnixTimestamp64Milli(now64(3)) / 1000"))
        store.command(
            "INSERT INTO viewer_events SELECT * REPLACE (generateUUIDv4() AS event_id, 'heartbeat' AS type,"
            " now64(3) AS ts, now64(3) AS received_at, now64(3) AS inserted_at) FROM viewer_events"
            " WHERE tenant_id = {t:String} AND ts >= fromUnixTimestamp64Milli({recent:Int64})"
            " AND (tenant_id, view_id) IN (SELECT tenant_id, view_id FROM views FINAL WHERE tenant_id = {t:String}"
            "  AND day >= yesterday() ORDER BY started_at DESC LIMIT 200)"
            " LIMIT 1 BY tenant_id, view_id", {"t": TENANT, "recent": now_ms - 2 * DAY_MS})
        t = time.perf_counter()
        rollup.fold_touched(store, since)
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times[1:]), 1)


def privacy(store, viewer_base: int, more: int) -> dict:
    """Full scan for one subject (the baseline), then its verified purge, then `more`."""
    subjects_ = []
    counts = "SELECT viewer_id, count() AS n FROM views FINAL WHERE toUInt64OrZero(substring(viewer_id, 8)) >= {b:UInt64}" \
             " GROUP BY viewer_id"
    median = store.command(f"SELECT median(n) FROM ({counts})", {"b": viewer_base})
    for (viewer,) in store.rows(f"SELECT viewer_id FROM ({counts}) WHERE n = {{m:UInt64}}"
                                " ORDER BY cityHash64(viewer_id) LIMIT {k:UInt32}",
                                {"b": viewer_base, "m": int(median), "k": 1 + more}):
        subjects_.append(request_for(store, viewer, "viewer_id"))
    where, params = subjects_[0].condition(registry.by_table()["viewer_events"])
    scans = []
    for _ in range(3):  # the baseline's best of three: a scan is short, one stall would flatter the ratio
        t = time.perf_counter()
        found = int(store.command(f"SELECT count() FROM viewer_events WHERE tenant_id = '{TENANT}' AND {where}"
                                  " SETTINGS " + FULL_SCAN, params))
        scans.append(time.perf_counter() - t)
    scan_s = min(scans)
    times, deleted = [], []
    for subject in subjects_:
        t = time.perf_counter()
        result = purge.purge(store, TENANT, subject, b"bench-secret", "bench")
        times.append(time.perf_counter() - t)
        deleted.append(result.rows_deleted)
    return {"subject_beacons": found, "full_scan_s": round(scan_s, 4), "purge_s": [round(x, 3) for x in times],
            "purge_median_s": round(statistics.median(times), 3), "rows_deleted": deleted[0],
            "purge_vs_full_scan": round(statistics.median(times) / scan_s, 2)}


def storage(store, beacons: int, baseline: bool) -> dict:
    """Compressed bytes on disk per beacon: every table, and a plain MergeTree of the beacons."""
    per_table = dict(store.rows(
        "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase()"
        " AND table != 'plain_events' GROUP BY table"))
    out = {"bytes_on_disk": {t: int(b) for t, b in sorted(per_table.items(), key=lambda kv: -kv[1])},
           "bytes_per_beacon_all_tables": round(sum(per_table.values()) / beacons, 2),
           "bytes_per_beacon_viewer_events": round(per_table.get("viewer_events", 0) / beacons, 2),
           "bytes_per_beacon_views": round(per_table.get("views", 0) / beacons, 2)}
    columns = store.rows("SELECT name, sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.columns"
                         " WHERE database = currentDatabase() AND table = 'viewer_events' GROUP BY name"
                         " ORDER BY 2 DESC LIMIT 8")
    out["viewer_events_top_columns"] = {n: {"compressed_per_beacon": round(c / beacons, 2),
                                            "ratio": round(u / c, 1) if c else None} for n, c, u in columns}
    if baseline:
        store.command("DROP TABLE IF EXISTS plain_events")
        store.command("CREATE TABLE plain_events ENGINE = MergeTree ORDER BY tuple()"
                      " AS SELECT * FROM viewer_events SETTINGS apply_deleted_mask = 1")
        settle(store)
        plain = int(store.command("SELECT sum(bytes_on_disk) FROM system.parts WHERE active"
                                  " AND database = currentDatabase() AND table = 'plain_events'"))
        rows = int(store.command("SELECT count() FROM plain_events"))
        store.command("DROP TABLE plain_events SYNC")
        out["plain_mergetree_bytes_per_beacon"] = round(plain / rows, 2)
        out["all_tables_vs_plain"] = round(out["bytes_per_beacon_all_tables"] / out["plain_mergetree_bytes_per_beacon"], 3)
    return out


def stage(store, now_ms: int, runs: int, viewer_base: int, more: int, compare_raw: bool) -> dict:
    beacons = int(store.command(f"SELECT count() FROM viewer_events WHERE tenant_id = '{TENANT}'"))
    results, mismatches = measure(store, now_ms, 30, runs, compare_raw)
    p95s = [r["p95_ms"] for r in results.values()]
    parts = store.rows("SELECT table, count(), uniqExact(partition_id) FROM system.parts WHERE active"
                       " AND database = currentDatabase() AND table IN ('viewer_events', 'views') GROUP BY table")
    out = {"beacons": beacons, "views": int(store.command("SELECT count() FROM views FINAL")),
           "beacons_last_30_days": int(store.command(
               "SELECT count() FROM viewer_events WHERE ts >= fromUnixTimestamp64Milli({t:Int64})",
               {"t": now_ms - 30 * DAY_MS})),
           "parts": {t: {"parts": int(n), "partitions": int(k)} for t, n, k in parts},
           "worst_p95_ms": max(p95s), "median_p95_ms": statistics.median(p95s),
           "same_answers_as_raw_sql": (not mismatches) if compare_raw else None, "mismatches": mismatches,
           "queries": results}
    out["privacy"] = privacy(store, viewer_base, more)
    out["live_pass_ms"] = live_pass(store, now_ms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000, help="beacons at the first size (the issue: 10 M)")
    ap.add_argument("--factor", type=int, default=10, help="the second size is this many times the first")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--order", choices=START_OFFSET, default="arrival",
                    help="views inserted in time order as a live table gets them, or shuffled over each chunk's days")
    ap.add_argument("--more", type=int, default=2, help="further median subjects purged at each size")
    ap.add_argument("--insert-rows", type=int, default=INSERT_ROWS,
                    help="beacons per insert block (100000: parts made by merges, as a live table's)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain MergeTree copy")
    ap.add_argument("--baseline-at-second", action="store_true",
                    help="also copy the second size into a plain MergeTree (slow at 100 M)")
    ap.add_argument("--no-raw", action="store_true", help="skip comparing the first size's answers with raw SQL")
    ap.add_argument("--keep", action="store_true", help="keep the store's directory (printed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-edge-scale-"))
    started = time.perf_counter()
    store = open_store(f"chdb://{work / 'ch'}")
    migrations.apply(store)
    now_ms = int(time.time() * 1000)
    views_n = int(args.events / AVG_EVENTS_PER_VIEW)

    t = time.perf_counter()
    load_first(store, views_n, now_ms, args.order, args.insert_rows)
    first = {"load_s": round(time.perf_counter() - t, 1), "cube_build_s": build_cube(store),
             "merges_settled_s": settle(store)}
    first.update(stage(store, now_ms, args.runs, 0, args.more, compare_raw=not args.no_raw))
    first["storage"] = storage(store, first["beacons"], baseline=not args.no_baseline)
    print(f"stage 1 done: {first['beacons']} beacons", file=sys.stderr)

    t = time.perf_counter()
    grow_to(store, views_n, args.factor, now_ms, args.order, args.insert_rows)
    second = {"load_s": round(time.perf_counter() - t, 1), "cube_build_s": build_cube(store),
              "merges_settled_s": settle(store)}
    second.update(stage(store, now_ms, args.runs, int(views_n / VIEWS_PER_VIEWER), args.more, compare_raw=False))
    second["storage"] = storage(store, second["beacons"], baseline=args.baseline_at_second)
    store.close()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    ratios = {q: round(second["queries"][q]["p95_ms"] / first["queries"][q]["p95_ms"], 2)
              for q in first["queries"] if q in second["queries"]}
    # The p50s too: a p95 of 20 runs is one slow run, and one stall on either side moves it.
    p50_ratios = {q: round(second["queries"][q]["p50_ms"] / first["queries"][q]["p50_ms"], 2)
                  for q in first["queries"] if q in second["queries"]}
    worst_p50 = [max(r["p50_ms"] for r in stage_["queries"].values()) for stage_ in (first, second)]
    print(json.dumps({
        "order": args.order, "insert_rows": args.insert_rows, "events_first": first["beacons"], "events_second": second["beacons"],
        "dashboard_worst_p95_ms": [first["worst_p95_ms"], second["worst_p95_ms"]],
        "dashboard_p95_ratio_worst": round(second["worst_p95_ms"] / first["worst_p95_ms"], 2),
        "dashboard_p95_ratio_median_query": statistics.median(ratios.values()),
        "dashboard_p95_ratio_max_query": max(ratios.values()),
        "dashboard_worst_p50_ms": worst_p50,
        "dashboard_p50_ratio_worst": round(worst_p50[1] / worst_p50[0], 2),
        "dashboard_p50_ratio_median_query": statistics.median(p50_ratios.values()),
        "dashboard_p50_ratio_max_query": max(p50_ratios.values()),
        "purge_median_s": [first["privacy"]["purge_median_s"], second["privacy"]["purge_median_s"]],
        "purge_ratio": round(second["privacy"]["purge_median_s"] / first["privacy"]["purge_median_s"], 2),
        "purge_vs_full_scan_first": first["privacy"]["purge_vs_full_scan"],
        "purge_vs_full_scan_second": second["privacy"]["purge_vs_full_scan"],
        "bytes_per_beacon_all_tables": [first["storage"]["bytes_per_beacon_all_tables"],
                                        second["storage"]["bytes_per_beacon_all_tables"]],
        "plain_mergetree_bytes_per_beacon": [first["storage"].get("plain_mergetree_bytes_per_beacon"),
                                             second["storage"].get("plain_mergetree_bytes_per_beacon")],
        "same_answers_as_raw_sql": first["same_answers_as_raw_sql"],
        "cube_build_s": [first["cube_build_s"], second["cube_build_s"]],
        "live_pass_ms": [first["live_pass_ms"], second["live_pass_ms"]],
        "per_query_p95_ratio": ratios,
        "first": first, "second": second, "wall_s": round(time.perf_counter() - started, 1),
        "limits": limits.not_on_path("in-process: queries and purges call the store directly, no HTTP request"),
    }))


if __name__ == "__main__":
    main()

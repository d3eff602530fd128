"""A design measured, not shipped: exact dashboard figures from a per-day cube of bitmaps.

    .venv/bin/python bench/exact_cube.py [--events 10000000] [--factor 10] [--runs 9]

Issue #20 asks the dashboards at 100 M beacons to take at most 2x their 10 M time, with the
30-day range holding 2.5x the views. Read from the `views` rollup, each breakdown hashes
every (value, viewer) pair of the range (`uniqExact`) and keeps every startup time, so its
cost follows the views (bench/RESULTS.md, sessions 9-13). This bench measures the
alternative, in the same run and on the same stores, against the shipped queries:

- each viewer gets a dense 32-bit ordinal per tenant (here numbered in one pass; live, it
  would be a dictionary table the fold extends);
- a cube per (tenant, dimension, day, value) holds the additive sums and two exact states:
  `groupBitmapState` of the viewers' ordinals (a Roaring bitmap: a union of dense small
  integers costs a few ns an element, where a hash set insert costs tens), and
  `quantilesExactState` of the startup times;
- a range's answer merges the cube rows of its whole days with the same states computed
  from the rollup for its two partial days.

The answers are compared with the shipped queries' (they must be equal: exact, not
estimated). Stores are built as bench/scale.py builds them (`grow`, the rollup reloaded in
live order, merges settled); the cube is built after each size, timed apart. Dimensions
measured: video (the costliest, one row per video a day), city (the most values), and
the summary. Not measured here, and the work a real one needs: the ordinal dictionary
under concurrent edges, keeping the cube in step with each fold pass, and erasure (an
erased viewer's ordinal must leave every bitmap: the days holding it rebuilt).

Prints one JSON object: per query, p50 ms at each size for the shipped query and the cube,
and their 10 N / N ratios.
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

from analytics import queries  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from bench.queries import AVG_EVENTS_PER_VIEW, TENANT  # noqa: E402
from bench.scale import grow_to, load_first, settle  # noqa: E402
from core import migrations  # noqa: E402
from core.store import open_store  # noqa: E402

SUMS = ("count() AS n_views, sum(playing_ms) AS s_playing, sum(playing_ms + rebuffer_ms + seeking_ms) AS s_watch,"
        " sum(rebuffer_ms) AS s_rebuffer, sum(rebuffers) AS n_rebuffers, countIf(failed) AS n_failed,"
        " countIf(NOT played AND NOT failed) AS n_exits, count(startup_ms) AS n_startups")
SUM_COLUMNS = ("n_views", "s_playing", "s_watch", "s_rebuffer", "n_rebuffers", "n_failed", "n_exits", "n_startups")
STATES = "groupBitmapState(viewer_ord) AS v, quantilesExactState(0.5, 0.95)(startup_ms) AS q"
DIMENSIONS = {"video": "video_id", "city": queries.DIMENSIONS["city"], "all": "''"}
# The merged figures in `queries.figures`' order (its second, unique viewers, from the bitmaps).
MERGED = ("sum(n_views), groupBitmapMerge(v), sum(s_playing), sum(s_watch), sum(s_rebuffer), sum(n_rebuffers),"
          " sum(n_failed), sum(n_exits), sum(n_startups), quantilesExactMerge(0.5, 0.95)(q)")


def build(store, rows_per_part: int) -> float:
    """Ordinals, the rollup with them (`views_ord`, reloaded in live order), and the cube."""
    started = time.perf_counter()
    for table in ("ordinals", "views_ord", "cube"):
        store.command(f"DROP TABLE IF EXISTS {table} SYNC")
    store.command(
        "CREATE TABLE ordinals ENGINE = MergeTree ORDER BY (tenant_id, viewer_id) AS"
        " SELECT tenant_id, viewer_id,"
        "  toUInt32(row_number() OVER (PARTITION BY tenant_id ORDER BY first, viewer_id)) AS ordinal"
        " FROM (SELECT tenant_id, viewer_id, min(started_at) AS first FROM views FINAL GROUP BY tenant_id, viewer_id)")
    store.command("CREATE TABLE views_ord AS views")
    store.command("ALTER TABLE views_ord ADD COLUMN viewer_ord UInt32")
    store.command(
        "INSERT INTO views_ord SELECT v.*, o.ordinal FROM views AS v JOIN ordinals AS o USING (tenant_id, viewer_id)"
        f" ORDER BY v.last_event_at SETTINGS max_threads = 1, max_block_size = {rows_per_part},"
        f" max_insert_block_size = {rows_per_part}, min_insert_block_size_rows = {rows_per_part},"
        " min_insert_block_size_bytes = 0, optimize_on_insert = 0")
    union = " UNION ALL ".join(
        f"SELECT tenant_id, '{name}' AS dim, day, {expr} AS value, {SUMS}, {STATES}"
        " FROM views_ord FINAL GROUP BY tenant_id, day, value"
        for name, expr in DIMENSIONS.items())
    store.command(f"CREATE TABLE cube ENGINE = MergeTree ORDER BY (tenant_id, dim, day, value) AS {union}")
    store.command("OPTIMIZE TABLE cube FINAL")
    return round(time.perf_counter() - started, 1)


def _source(dimension: str, scope: queries.Scope) -> tuple[str, dict]:
    """The range's states: the cube's whole days, then its two partial days from the rollup."""
    whole = ("tenant_id = {tenant:String} AND dim = {dim:String} AND day > toDate({start:DateTime64(3)})"
             " AND day < toDate({end:DateTime64(3)})")
    edges = ("tenant_id = {tenant:String} AND ((day = toDate({start:DateTime64(3)}) AND started_at >= {start:DateTime64(3)})"
             " OR (day = toDate({end:DateTime64(3)}) AND started_at < {end:DateTime64(3)}))")
    sql = (f"SELECT value, {', '.join(SUM_COLUMNS)}, v, q FROM cube WHERE {whole} UNION ALL"
           f" SELECT {DIMENSIONS[dimension]} AS value, {SUMS}, {STATES} FROM views_ord FINAL WHERE {edges} GROUP BY value")
    return sql, {"tenant": scope.tenant_id, "start": scope.start, "end": scope.end, "dim": dimension}


def cube_breakdown(store, scope: queries.Scope, dimension: str, limit: int = 20, k: int = 1) -> list[dict]:
    """As `queries.breakdown`: ranked values, the rest (and values under k viewers) in "other"."""
    source, params = _source(dimension, scope)
    sums = ", ".join(f"sum({c}) AS {c}" for c in SUM_COLUMNS)
    sql = f"""
      SELECT if(rank <= {{limit:UInt32}} AND viewers >= {{k:UInt32}}, value, 'other') AS bucket, {MERGED},
             min(rank) AS first
      FROM (SELECT *, row_number() OVER (ORDER BY viewers < {{k:UInt32}}, n_views DESC, value) AS rank FROM (
          SELECT value, {sums}, groupBitmapMergeState(v) AS v, quantilesExactMergeState(0.5, 0.95)(q) AS q,
                 finalizeAggregation(v) AS viewers
          FROM ({source}) GROUP BY value))
      GROUP BY bucket ORDER BY first {queries.SETTINGS}"""
    rows = store.rows(sql, {**params, "limit": limit, "k": k})
    return [{"value": str(r[0]), **queries.figures(r[1:11])} for r in rows]


def cube_summary(store, scope: queries.Scope) -> dict:
    source, params = _source("all", scope)
    return queries.figures(store.rows(f"SELECT {MERGED} FROM ({source}) {queries.SETTINGS}", params)[0])


def p50_ms(fn, runs: int) -> float:
    fn()  # cold: marks and blocks read once
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def measure(store, now_ms: int, runs: int) -> dict:
    end = now_ms / 1000
    out = {}
    for label, days in (("30d", 30), ("1d", 1)):
        scope = queries.Scope(TENANT, end - days * 86400, end)
        plans = {f"{label}/summary": (lambda: queries.summary(store, scope), lambda: cube_summary(store, scope))}
        for dim in ("video", "city"):
            plans[f"{label}/breakdown_{dim}"] = (lambda d=dim: queries.breakdown(store, scope, d, 20),
                                                 lambda d=dim: cube_breakdown(store, scope, d, 20))
        for name, (shipped, cube) in plans.items():
            out[name] = {"shipped_ms": p50_ms(shipped, runs), "cube_ms": p50_ms(cube, runs),
                         "same_answer": shipped() == cube()}
        print(f"{label} done", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000, help="beacons at the first size (the issue: 10 M)")
    ap.add_argument("--factor", type=int, default=10)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--insert-rows", type=int, default=100_000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-edge-cube-"))
    started = time.perf_counter()
    store = open_store(f"chdb://{work / 'ch'}")
    migrations.apply(store)
    now_ms = int(time.time() * 1000)
    views_n = int(args.events / AVG_EVENTS_PER_VIEW)
    rows_per_part = int(args.insert_rows / AVG_EVENTS_PER_VIEW)

    load_first(store, views_n, now_ms, "arrival", args.insert_rows)
    settle(store)
    build_first = build(store, rows_per_part)
    settle(store)
    first = measure(store, now_ms, args.runs)

    grow_to(store, views_n, args.factor, now_ms, "arrival", args.insert_rows)
    settle(store)
    build_second = build(store, rows_per_part)
    settle(store)
    second = measure(store, now_ms, args.runs)
    cube_bytes = int(store.command("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND table = 'cube'"))
    store.close()
    shutil.rmtree(work, ignore_errors=True)

    ratios = {q: {"shipped": round(second[q]["shipped_ms"] / first[q]["shipped_ms"], 2),
                  "cube": round(second[q]["cube_ms"] / first[q]["cube_ms"], 2)} for q in first}
    print(json.dumps({
        "cpu": cpu_model(), "events_first": args.events, "factor": args.factor, "runs": args.runs,
        "ratio_10n_over_n": ratios,
        "worst_ratio": {kind: max(r[kind] for r in ratios.values()) for kind in ("shipped", "cube")},
        "all_answers_equal": all(r["same_answer"] for stage in (first, second) for r in stage.values()),
        "cube_build_s": [build_first, build_second], "cube_bytes_at_second": cube_bytes,
        "first": first, "second": second, "wall_s": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()

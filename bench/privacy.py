"""One data subject's export and purge in 10 M beacons, against a full-table scan.

    .venv/bin/python bench/privacy.py [--events 10000000]

1. A fresh embedded store with the beacons of bench/queries.py (100k viewers, 30 days or `--days`,
   inserted in time order as a live table gets them, or with `--order shuffled` every insert
   block spanning the whole window: the worst case, every part holding every subject),
   folded into the per-view rollup, plus a consent row per viewer of the subject.
2. Export of one viewer (every registered table, as the API does): time, and the rows
   ClickHouse reads for it (`EXPLAIN ESTIMATE` of the beacons query: the bloom-filter
   index on viewer_id skips the granules without the subject).
3. The baseline: the same count over viewer_events with skip indexes and the query
   condition cache off (a full scan: bench/queries.py FULL_SCAN).
   `--by email|ip` names the subjects by email (written on their beacons first) or address.
4. Purge of the same viewer (each table's rows deleted physically, retention/deletion.py:
   the parts holding them rewritten, or a mutation for a table of few parts; verify zero
   with the mask off; ledger): time, and each statement's time (`purge_statements`);
   `--more N` purges N further median viewers; then the rows left for everyone else are
   counted.
Timings start once the bulk load's merges have settled (the steady state of a live table).
The store is opened as the edge opens it and the table is as the migrations leave it
(merged parts capped at 1 MiB, migration 20). By default the beacons load in blocks of
100k rows and the rollup is written again in blocks of as many views' rows, so that both
tables' parts are made by merges under their caps, as a live table's are (`--insert-rows
0`: one bulk insert, whose parts of about 1 M rows no live table has). Experiments on that
layout (bench/RESULTS.md): `--max-part-mib` sets another cap (0 keeps the table's),
`--optimize` merges each partition into one part first (the uncapped worst case),
`--quiet-s` waits longer.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics import rollup  # noqa: E402
from bench import limits  # noqa: E402
from bench.queries import (AVG_EVENTS_PER_VIEW, FULL_SCAN, START_OFFSET, TENANT, generate_sql,  # noqa: E402
                           reload_views_in_blocks)
from core import migrations
from core.store import open_store  # noqa: E402
from retention import export, purge, registry, subjects  # noqa: E402


def request_for(store, viewer: str, by: str) -> subjects.Subject:
    """A request naming this viewer by `by`, and a consent row for it (for `--by email`, a
    proven link, as an identity token makes). Beacons no longer carry an email, but old
    ones may: for `--by email` the viewer's beacons get one first (untimed), the worst case."""
    ip = store.rows("SELECT toString(any(ip)) FROM viewer_events WHERE viewer_id = {v:String}", {"v": viewer})[0][0]
    email = f"{viewer}@example.org" if by == "email" else ""
    if email:
        store.command("ALTER TABLE viewer_events UPDATE email = {e:String} WHERE viewer_id = {v:String}"
                      " SETTINGS mutations_sync = 2", {"e": email, "v": viewer})
    store.command(
        "INSERT INTO consents (consent_id, tenant_id, viewer_id, email, email_proof, action, purposes,"
        " policy_version, ts, ip) SELECT generateUUIDv4(), {t:String}, {v:String}, {e:String}, {proof:String},"
        " 'grant', ['analytics'], '1', now64(6), toIPv6({ip:String})",
        {"t": TENANT, "v": viewer, "e": email, "proof": "token" if email else "", "ip": ip})
    return subjects.parse(by, {"viewer_id": viewer, "email": email, "ip": ip}[by])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=30, help="spread the beacons over this many days")
    ap.add_argument("--order", choices=START_OFFSET, default="arrival",
                    help="views inserted in time order as a live table gets them, or shuffled over the days")
    ap.add_argument("--by", choices=subjects.KINDS, default="viewer_id", help="how the requests name the subject")
    ap.add_argument("--more", type=int, default=0, help="purge this many further median subjects, timed apart")
    ap.add_argument("--quiet-s", type=float, default=0, help="wait this long after merges settle")
    ap.add_argument("--optimize", action="store_true", help="experiment: one part per partition first")
    ap.add_argument("--max-part-mib", type=int, default=0,
                    help="experiment: another cap on merged parts of viewer_events")
    ap.add_argument("--insert-rows", type=int, default=100_000,
                    help="load in blocks of this many rows, so parts are made by merges as a live table's are"
                         " (0: one bulk insert, parts of about 1 M rows that no live table has)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-edge-privacy-"))
    store = open_store(f"chdb://{work / 'ch'}")
    migrations.apply(store)
    if args.max_part_mib:
        store.command("ALTER TABLE viewer_events MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool"
                      f" = {args.max_part_mib * 1024 * 1024}")
    blocks = (f" SETTINGS max_insert_block_size = {args.insert_rows}, min_insert_block_size_rows = {args.insert_rows},"
              " min_insert_block_size_bytes = 0" if args.insert_rows else "")
    store.command(generate_sql(int(args.events / AVG_EVENTS_PER_VIEW), int(time.time() * 1000), args.days,
                               order=args.order) + blocks)
    rollup.fold_touched(store, 0.0)
    if args.insert_rows:
        reload_views_in_blocks(store, max(1, int(args.insert_rows / AVG_EVENTS_PER_VIEW)))
    # Time the steady state, not the minutes after a bulk load: mutations wait for the
    # merges of the parts they touch, and a live table is not merging 10 M fresh rows.
    settle = time.perf_counter()
    while store.command("SELECT count() FROM system.merges") and time.perf_counter() - settle < 300:
        time.sleep(1)
    if args.optimize:
        store.command("OPTIMIZE TABLE viewer_events FINAL")
        while store.command("SELECT count() FROM system.merges"):
            time.sleep(1)
    time.sleep(args.quiet_s)
    settle_s = time.perf_counter() - settle
    views_parts = int(store.command("SELECT count() FROM system.parts WHERE active AND table = 'views'"))
    parts = store.rows("SELECT count(), max(rows), max(bytes_on_disk) FROM system.parts"
                       " WHERE table = 'viewer_events' AND active")[0]
    # A typical subject: a viewer with the median number of views.
    viewer = store.rows("SELECT viewer_id FROM (SELECT viewer_id, count() AS n FROM views GROUP BY viewer_id)"
                        " WHERE n = (SELECT median(n) FROM (SELECT count() AS n FROM views GROUP BY viewer_id))"
                        " ORDER BY viewer_id LIMIT 1")[0][0]
    subject = request_for(store, viewer, args.by)
    total = int(store.command("SELECT count() FROM viewer_events"))

    t = time.perf_counter()
    data = export.collect(store, TENANT, subjects.with_links(store, TENANT, subject))
    export_s = time.perf_counter() - t
    exported = {name: len(table["rows"]) for name, table in data.items()}
    t = time.perf_counter()
    zipped = export.as_zip(data, subject)
    zip_s = time.perf_counter() - t
    where, params = subject.condition(registry.by_table()["viewer_events"])
    estimate = store.rows(f"EXPLAIN ESTIMATE SELECT * FROM viewer_events WHERE tenant_id = '{TENANT}' AND {where}",
                          params)
    read_rows = sum(int(r[3]) for r in estimate)

    t = time.perf_counter()
    scanned = int(store.command(f"SELECT count() FROM viewer_events WHERE {where} SETTINGS " + FULL_SCAN,
                                params))
    scan_s = time.perf_counter() - t

    spent: list[tuple[float, str]] = []
    command, rows = store.command, store.rows

    def timed(call):
        def run(sql, *a, **kw):  # where the purge's time goes, statement by statement
            t0 = time.perf_counter()
            try:
                return call(sql, *a, **kw)
            finally:
                spent.append((round(time.perf_counter() - t0, 3), " ".join(str(sql).split())[:60]))
        return run

    store.command, store.rows = timed(command), timed(rows)
    t = time.perf_counter()
    result = purge.purge(store, TENANT, subject, b"bench-secret", "bench")
    purge_s = time.perf_counter() - t
    store.command, store.rows = command, rows
    more, more_deleted = [], 0
    for other in store.rows("SELECT viewer_id FROM (SELECT viewer_id, count() AS n FROM views GROUP BY viewer_id)"
                            " WHERE n = 2 ORDER BY cityHash64(viewer_id) LIMIT {n:UInt32}", {"n": args.more}):
        other_subject = request_for(store, other[0], args.by)
        t = time.perf_counter()
        done = purge.purge(store, TENANT, other_subject, b"bench-secret", "bench")
        more.append(round(time.perf_counter() - t, 3))
        more_deleted += done.rows_deleted["viewer_events"]
    others_left = int(store.command("SELECT count() FROM viewer_events SETTINGS apply_deleted_mask = 0"))

    print(json.dumps({
        "by": args.by, "order": args.order, "events": total, "merges_settled_s": round(settle_s, 1), "parts": int(parts[0]),
        "largest_part_rows": int(parts[1]), "views_parts": views_parts,
        "largest_part_mib": round(int(parts[2]) / 2**20, 1), "subject_rows": exported,
        "export_s": round(export_s, 3), "zip_s": round(zip_s, 3),
        "zip_bytes": len(zipped), "export_rows_read_estimate": read_rows,
        "full_scan_s": round(scan_s, 3), "full_scan_rows": total, "full_scan_matches": scanned,
        "export_vs_full_scan": round(export_s / scan_s, 2),
        "purge_s": round(purge_s, 3), "purge_rows_deleted": result.rows_deleted,
        "purge_vs_full_scan": round(purge_s / scan_s, 2),
        "others_intact": others_left == total - exported["viewer_events"] - more_deleted,
        "more_purges_s": more,
        "purge_statements": sorted(spent, reverse=True)[:8], "purge_statement_count": len(spent),
        "limits": limits.not_on_path("in-process: export and purge call the store directly, no HTTP request"),
    }))
    store.close()


if __name__ == "__main__":
    main()

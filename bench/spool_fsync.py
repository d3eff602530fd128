"""What one spool commit costs while ClickHouse writes parts on the same disk.

    .venv/bin/python bench/spool_fsync.py [--seconds 30] [--dir ./var]

The collector answers a beacon once the spool's group-commit round made it durable
(analytics/spool.py), so the round's fsync is on every answer's path, and the soak's
collect tail follows the slowest rounds (bench/RESULTS.md, "Soak"). Two ways a
write-ahead log can commit a small record are timed here, in one process, one record
(1,450 bytes, the size of a soak round) every 10 ms:

- `append_fsync`, what the spool does: append to a file that grows, then `fsync`. The size
  changes, so every commit also commits the file system's journal.
- `zeroed_fdatasync`, what databases do to avoid that: overwrite a file whose blocks were
  written with zeros beforehand, then `fdatasync`. The size and the block map stay the
  same, so only the data and the device's cache flush are waited for.

Each is timed on an idle disk (the baseline), and then while a thread inserts beacons
into an embedded store in 100k-row blocks (bench/queries.py's generator), as the edge's
own writes and merges do. The files are written in `--dir` (the spool's file system),
then deleted. Prints one JSON object: p50/p99/max ms per mode and phase, and the loaded
p99 and max of each mode against the idle append's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_model  # noqa: E402
from bench.queries import AVG_EVENTS_PER_VIEW, generate_sql  # noqa: E402
from core import migrations  # noqa: E402
from core.store import open_store  # noqa: E402

RECORD = 1450
EVERY_S = 0.01
FILE_BYTES = 16 * 1024 * 1024


def commits(directory: Path, mode: str, seconds: float) -> list[float]:
    """Milliseconds of each commit of one record, for `seconds`."""
    path = directory / f"spool-fsync-{mode}.dat"
    if mode == "zeroed_fdatasync":
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        zeros = b"\0" * (1 << 20)
        for _ in range(FILE_BYTES >> 20):
            os.write(fd, zeros)
        os.fsync(fd)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    record, offset, out = os.urandom(RECORD), 0, []
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            t = time.perf_counter()
            if mode == "zeroed_fdatasync":
                os.pwrite(fd, record, offset)
                offset = (offset + RECORD) % (FILE_BYTES - RECORD)
                os.fdatasync(fd)
            else:
                os.write(fd, record)
                os.fsync(fd)
            out.append((time.perf_counter() - t) * 1000)
            time.sleep(EVERY_S)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return out


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"n": len(values), "p50_ms": round(values[len(values) // 2], 2),
            "p99_ms": round(values[int(len(values) * 0.99)], 2), "max_ms": round(values[-1], 1)}


def load(store, stop: threading.Event, blocks: list[int]) -> None:
    """Insert beacons in 100k-row blocks until `stop` (about 2,350 views a block)."""
    views = int(100_000 / AVG_EVENTS_PER_VIEW)
    first = 0
    now_ms = int(time.time() * 1000)
    while not stop.is_set():
        store.command(generate_sql(views, now_ms, 30, first, 0, 100_000, "arrival"))
        first += views
        blocks.append(views)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30, help="per mode and phase")
    ap.add_argument("--dir", default=str(ROOT / "var"), help="where the timed files go (the spool's file system)")
    args = ap.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    modes = ("append_fsync", "zeroed_fdatasync")
    idle = {mode: summary(commits(directory, mode, args.seconds)) for mode in modes}

    work = Path(tempfile.mkdtemp(prefix="wave-edge-spool-fsync-", dir=directory))
    store = open_store(f"chdb://{work / 'ch'}")
    migrations.apply(store)
    stop, blocks = threading.Event(), []
    writer = threading.Thread(target=load, args=(store, stop, blocks), daemon=True)
    writer.start()
    try:
        time.sleep(2)  # the first blocks are being written
        loaded = {mode: summary(commits(directory, mode, args.seconds)) for mode in modes}
    finally:
        stop.set()
        writer.join()
        store.close()
        shutil.rmtree(work, ignore_errors=True)

    base = idle["append_fsync"]
    print(json.dumps({
        "idle": idle, "loaded": loaded,
        "loaded_p99_vs_idle_append": {m: round(loaded[m]["p99_ms"] / base["p99_ms"], 2) for m in modes},
        "loaded_max_vs_idle_append": {m: round(loaded[m]["max_ms"] / base["max_ms"], 2) for m in modes},
        "zeroed_vs_append_loaded_p99": round(loaded["zeroed_fdatasync"]["p99_ms"] / loaded["append_fsync"]["p99_ms"], 2),
        "load_views_inserted": sum(blocks), "record_bytes": RECORD, "every_ms": EVERY_S * 1000,
        "seconds": args.seconds, "dir": str(directory), "cpu": {"model": cpu_model(), "cores": os.cpu_count()},
    }))


if __name__ == "__main__":
    main()

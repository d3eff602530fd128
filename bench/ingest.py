"""Ingest benchmark: events/s through the real edge vs a raw ClickHouse insert, same run.

    .venv/bin/python bench/ingest.py [--batches 20000] [--concurrency 32] [--warmup 1000]

1. Starts `wave-edge serve` as its own process (embedded chDB, durable spool on) and
   consents a pool of viewers.
2. From this process, posts batches of 50 events at the given concurrency over keep-alive
   HTTP/1.1 connections: first `--warmup` batches unmeasured, then the measured ones,
   timing each; the clock stops when every accepted event is in ClickHouse (write buffer
   empty), not when the last 202 arrives.
3. Checks the edge's store holds every accepted event exactly once.
4. Inserts the same number of equivalent rows straight through clickhouse-connect
   (`client.insert`, blocks of 20,000 rows) into a separate chDB path: the baseline.
5. Times user-agent parsing (unseen and cached strings) and uncached geo lookups.

Prints one JSON object: events_per_s, raw_events_per_s, ratio, p50_ms, p99_ms and context.
Optional: `--trace FILE` runs the edge under `serve_traced` (event-loop stalls, GC passes,
spool fsyncs: what the cold-start tail is made of); BENCH_PROFILE=file (py-spy on PATH)
profiles the edge for 5 s of the load;
BENCH_LAT=file dumps every batch latency in send order.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import limits  # noqa: E402

UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
]
PREFIXES = ["81.2.69.", "8.8.8.", "1.1.1.", "193.99.144.", "62.4.0."]


def viewer_ip(n: int) -> str:
    """Each viewer its own public address, as the trusted proxy reports it: per-address
    limits see what they would in production, and geolocation has countries to find."""
    return f"{PREFIXES[n % len(PREFIXES)]}{n // len(PREFIXES) % 250 + 1}"


def addresses(viewers: int) -> int:
    """How many distinct addresses `viewers` viewers send from."""
    return min(viewers, len(PREFIXES) * 250)

TYPES = ["heartbeat", "playing", "rebuffer_start", "rebuffer_end", "rendition_change", "pause"]
EVENTS_PER_BATCH = 50


class Conn:
    """A minimal keep-alive HTTP/1.1 client: the load generator must not be the bottleneck."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        """Closes the connection if one was opened: a worker may have had nothing to send
        (`--warmup 0`, fewer viewers than connections)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def post(path: str, body: bytes, ua: str, ip: str, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"User-Agent: {ua}\r\nX-Forwarded-For: {ip}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def cpu_seconds(pid: int) -> float:
    """User+system CPU a process has used so far (Linux /proc), to report cost per event."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_batches(tenant_id: str, viewers: list[str], count: int) -> list[tuple[str, bytes, str, str]]:
    now = int(time.time() * 1000)
    batches = []
    for b in range(count):
        n = b % len(viewers)
        viewer = viewers[n]
        events = [
            {
                "type": TYPES[i % len(TYPES)],
                "ts": now - random.randint(0, 60_000),
                "view_id": f"{viewer}-view",
                "video_id": f"video-{b % 40}",
                "position_ms": i * 1000,
                "screen_w": 1920,
                "screen_h": 1080,
                "player_w": 1280,
                "player_h": 720,
                "bitrate_kbps": 3000,
            }
            for i in range(EVENTS_PER_BATCH)
        ]
        body = json.dumps({"tenant_id": tenant_id, "viewer_id": viewer, "events": events}).encode()
        batches.append((viewer, body, UAS[b % len(UAS)], viewer_ip(n)))
    return batches


async def metric(port: int, name: str) -> float:
    conn = Conn(port)
    status, body = await conn.request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.close()
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def load(port: int, tenant_id: str, batches: int, concurrency: int, viewers: int, warmup: int,
               server_pid: int, profile_at: str | None = None) -> dict:
    viewer_ids = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(viewers)]
    pending = iter(enumerate(viewer_ids))

    async def consent_all() -> None:
        c = Conn(port)
        for n, viewer in pending:
            consent = json.dumps(
                {"tenant_id": tenant_id, "viewer_id": viewer, "purposes": ["analytics"], "policy_version": "b1"}
            ).encode()
            status, body = await c.request(post("/v1/consent", consent, UAS[0], viewer_ip(n)))
            assert status == 201, body
        c.close()

    await asyncio.gather(*(consent_all() for _ in range(concurrency)))

    latencies: list[float] = []
    accepted = 0
    errors: dict[int, int] = {}

    async def send_all(work: list, measure: bool) -> None:
        queue = iter(work)

        async def worker() -> None:
            nonlocal accepted
            c = Conn(port)
            for _, body, ua, ip in queue:
                raw = post("/v1/collect", body, ua, ip, "text/plain")
                t0 = time.perf_counter()
                status, resp = await c.request(raw)
                if not measure:
                    continue
                latencies.append(time.perf_counter() - t0)
                if status == 202:
                    accepted += json.loads(resp)["accepted"]
                else:
                    errors[status] = errors.get(status, 0) + 1
            c.close()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def drained() -> None:
        while await metric(port, "wave_write_buffer_rows") > 0:
            await asyncio.sleep(0.01)

    # Warm-up, not measured: first-seen user agents and addresses, and the merges of the
    # consent phase's many small parts, would otherwise be billed to the first batches.
    # `--warmup 0` measures exactly that cold start.
    if warmup:
        await send_all(make_batches(tenant_id, viewer_ids, warmup), measure=False)
        await drained()
        await asyncio.sleep(1.0)

    work = make_batches(tenant_id, viewer_ids, batches)
    if profile_at:  # optional: py-spy the edge during the load phase only (not a dependency)
        subprocess.Popen(["py-spy", "record", "-d", "5", "-f", "raw", "-o", profile_at,
                          "--pid", str(server_pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu0, self0 = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    await send_all(work, measure=True)
    answered = time.perf_counter() - started
    await drained()
    stored = time.perf_counter() - started
    server_cpu, load_cpu = cpu_seconds(server_pid) - cpu0, time.process_time() - self0
    if os.environ.get("BENCH_LAT"):
        Path(os.environ["BENCH_LAT"]).write_text(json.dumps(latencies))
    latencies.sort()
    return {
        "accepted": accepted,
        "errors": errors,
        "answered_s": answered,
        "stored_s": stored,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "server_cpu_s": server_cpu,
        "loadgen_cpu_s": load_cpu,
    }


def raw_baseline(path: Path, rows: int, block: int) -> float:
    """The same shape of rows, inserted straight through clickhouse-connect into chDB."""
    from core import migrations
    from core.store import open_store

    store = open_store(f"chdb://{path}")
    migrations.apply(store)
    columns = [
        "tenant_id", "event_id", "received_at", "ts", "type", "viewer_id", "view_id", "video_id", "ip",
        "country", "region", "region_code", "city", "os", "os_version", "browser", "browser_version",
        "device", "is_bot", "retention_days", "position_ms", "screen_w", "screen_h", "player_w",
        "player_h", "bitrate_kbps",
    ]
    now = dt.datetime.now(dt.timezone.utc)
    data = [
        (
            "tn_bench", uuid.uuid4(), now, now, TYPES[i % len(TYPES)], f"bench-{i % 1000}",
            f"bench-{i % 1000}-view", f"video-{i % 40}", "::ffff:81.2.69.142", "GB", "England", "", "London",
            "Windows", "10", "Chrome", "131.0.0", "desktop", False, 395, i * 1000, 1920, 1080, 1280, 720, 3000,
        )
        for i in range(rows)
    ]
    started = time.perf_counter()
    for offset in range(0, rows, block):
        store.insert_rows("viewer_events", data[offset:offset + block], columns)
    elapsed = time.perf_counter() - started
    assert int(store.command("SELECT count() FROM viewer_events")) == rows
    store.close()
    return rows / elapsed


def enrichment_costs() -> dict:
    """Per-lookup cost of user-agent parsing (unseen and seen strings) and of geo lookups."""
    from analytics.enrichment.geo import GeoLocator
    from core.client_address import parse_ip
    from analytics.enrichment.useragent import parse_user_agent

    unseen = [UAS[i % len(UAS)].replace("131.0", f"{100 + i // 50}.{i % 50}") for i in range(3000)]
    started = time.perf_counter()
    for ua in unseen:
        parse_user_agent(ua)
    uncached = (time.perf_counter() - started) / len(unseen)
    started = time.perf_counter()
    for _ in range(20):
        for ua in unseen:
            parse_user_agent(ua)
    cached = (time.perf_counter() - started) / (20 * len(unseen))
    geo = GeoLocator(None)
    ips = [parse_ip(f"{a}.{b}.{c}.7") for a in (81, 85, 91, 193) for b in range(1, 60, 3) for c in range(0, 250, 25)]
    started = time.perf_counter()
    for ip in ips:
        geo.lookup(ip)
    geo_uncached = (time.perf_counter() - started) / len(ips)
    return {
        "ua_uncached_us": round(uncached * 1e6, 2),
        "ua_cached_us": round(cached * 1e6, 3),
        "geo_uncached_us": round(geo_uncached * 1e6, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--viewers", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=1000, help="batches sent before measuring")
    ap.add_argument("--tenant-limit", default="off", help="WAVE_LIMIT_TENANT_EVENTS for the run (e.g. 100000/200000)")
    ap.add_argument("--trace", default="", help="run the edge under serve_traced, writing its findings to this file")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-bench-"))
    # One tenant at full speed: its per-tenant event budget (100k/s by default, about what
    # one edge process takes) would be what is measured, so it is off unless asked for; its
    # consent budget is off so that the set-up's burst of consents passes at any --viewers.
    # The per-address limit stays on: the load comes from one address per viewer.
    env = limits.turned_off(dict(os.environ, WAVE_DATA_DIR=str(work / "edge"), WAVE_TRUSTED_PROXIES="127.0.0.1"),
                            "WAVE_LIMIT_TENANT_CONSENTS")
    env["WAVE_LIMIT_TENANT_EVENTS"] = args.tenant_limit
    env.pop("WAVE_CLICKHOUSE_URL", None)
    cli = [sys.executable, "-m", "edge.cli"]
    tenant = json.loads(
        subprocess.run([*cli, "tenant", "create", "bench", "--ip-mode", "full"], cwd=ROOT, env=env,
                       capture_output=True, text=True, check=True).stdout
    )["tenant_id"]
    port = random.randint(20000, 40000)
    serve = [sys.executable, str(Path(__file__).resolve()), "--serve-traced", args.trace] if args.trace else cli
    server = subprocess.Popen([*serve, "serve", "--port", str(port)], cwd=ROOT, env=env)
    profile_at = os.environ.get("BENCH_PROFILE")
    try:
        deadline = time.time() + 60
        while True:
            try:
                asyncio.run(metric(port, "wave_write_buffer_rows"))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        result = asyncio.run(load(port, tenant, args.batches, args.concurrency, args.viewers, args.warmup,
                                  server.pid, profile_at))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    expected = result["accepted"] + args.warmup * EVENTS_PER_BATCH
    check = subprocess.run(
        [sys.executable, "-c",
         "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1]);"
         "print(*c.query('SELECT count(), uniqExact(event_id) FROM viewer_events').result_rows[0])",
         str(work / "edge" / "clickhouse")],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    stored_rows, unique_rows = int(check[0]), int(check[1])
    raw = raw_baseline(work / "raw", result["accepted"], 20_000)
    costs = enrichment_costs()
    shutil.rmtree(work, ignore_errors=True)
    events_per_s = result["accepted"] / result["stored_s"]
    print(json.dumps({
        "events_per_s": round(events_per_s),
        "raw_events_per_s": round(raw),
        "ratio": round(events_per_s / raw, 3),
        "p50_ms": round(result["p50_ms"], 2),
        "p99_ms": round(result["p99_ms"], 2),
        "events": result["accepted"],
        "stored_rows_incl_warmup": stored_rows,
        "all_stored_once": stored_rows == unique_rows == expected,
        "errors": result["errors"],
        "answered_events_per_s": round(result["accepted"] / result["answered_s"]),
        "server_cpu_us_per_event": round(result["server_cpu_s"] / result["accepted"] * 1e6, 2),
        "loadgen_cpu_us_per_event": round(result["loadgen_cpu_s"] / result["accepted"] * 1e6, 2),
        "wall_s": round(result["stored_s"], 2),
        **costs,
        "batch_events": EVENTS_PER_BATCH,
        "concurrency": args.concurrency,
        "warmup_batches": args.warmup,
        "limits": limits.report(env, {"WAVE_LIMIT_IP": f"load spread over {addresses(args.viewers)} addresses"
                                                       " (X-Forwarded-For from the trusted proxy)"}),
    }))


def serve_traced(out: str, argv: list[str]) -> None:
    """Run the edge (`edge.cli` with `argv`) while recording what stalls its event loop:
    a thread samples the main thread's stack every 3 ms (`sys._current_frames()`; py-spy is
    not in the lock) and keeps every stretch over 50 ms spent in one place other than the
    event loop's own wait, every stretch of over 50 ms in which the sampler could not run
    itself, plus every cyclic-GC pass over 2 ms and every spool fsync round.
    Rewritten to `out` (JSON) every second, since the edge is ended by a signal."""
    import collections
    import gc
    import threading
    import traceback

    from analytics import spool

    main_thread = threading.get_ident()
    gc_passes: list = []
    fsyncs: list = []
    stalls: list = []
    busy: collections.Counter = collections.Counter()
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif (ms := (time.perf_counter() - gc_started[0]) * 1000) > 2:
            gc_passes.append((round(time.time(), 3), info["generation"], round(ms, 1)))

    gc.callbacks.append(on_gc)
    def timing(fn, into: list, shape=None):
        """`fn`, its milliseconds appended to `into` (and, with `shape`, `shape(ms, *args)`
        to `shapes`)."""
        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                ms = round((time.perf_counter() - t) * 1000, 1)
                into.append(ms)
                if shape is not None:
                    shapes.append(shape(ms, *a, **kw))
        return timed

    # The fsyncs alone, and a whole round in its thread: the writes (which can wait on
    # writeback) and the fsyncs (the round calls the module's `_fsync_all`, timed too).
    # Each round's shape too: the slowest rounds, and whether they created a segment (a
    # directory fsync), removed drained ones (unlinks) or closed sealed ones.
    rounds: list = []
    shapes: list = []

    def round_shape(ms, writes, fds, closing, directory, unlink=()):
        return (ms, round(time.time(), 3), directory is not None, len(unlink), len(closing),
                sum(w.size for w in writes))

    spool._fsync_all = timing(spool._fsync_all, fsyncs)
    spool._write_and_sync = timing(spool._write_and_sync, rounds, round_shape)

    # How long each `asyncio.to_thread` call waited for a thread of the default executor
    # (a few threads, shared by every store call and the spool's fsync rounds), by function.
    queued: collections.defaultdict = collections.defaultdict(list)
    to_thread = asyncio.to_thread

    async def timed_to_thread(func, /, *args, **kwargs):
        enqueued = time.perf_counter()
        name = getattr(func, "__qualname__", repr(func))

        def run():
            queued[name].append((time.perf_counter() - enqueued) * 1000)
            return func(*args, **kwargs)

        return await to_thread(run)

    asyncio.to_thread = timed_to_thread

    gaps: list = []

    def sample() -> None:
        here, since, last = None, 0.0, time.perf_counter()
        while True:
            time.sleep(0.003)
            woke = time.perf_counter()
            if woke - last > 0.05:  # this thread could not run: the GIL held in C, or no CPU
                gaps.append((round((woke - last) * 1000), here))
            last = woke
            frame = sys._current_frames().get(main_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-8:]
            key = " <- ".join(f"{Path(f.filename).name}:{f.name}:{f.lineno}" for f in reversed(stack))
            waiting = stack[-1].name in ("run", "select", "poll")  # uvloop/selectors: the loop's wait
            if not waiting:
                busy[key.split(" <- ")[0]] += 1
            now = time.perf_counter()
            if key != here:
                if here is not None and not here_waiting and now - since > 0.05:
                    stalls.append((round((now - since) * 1000), here))
                here, since, here_waiting = key, now, waiting

    def dump() -> None:
        while True:
            time.sleep(1)
            write()

    def write() -> None:
        fs = sorted(fsyncs)
        Path(out).write_text(json.dumps({
            "gc_passes_over_2ms": {g: [len([p for p in gc_passes if p[1] == g]),
                                       round(sum(p[2] for p in gc_passes if p[1] == g))] for g in (0, 1, 2)},
            "fsync_rounds": len(fs), "fsync_ms_p50": fs[len(fs) // 2] if fs else None,
            "fsync_ms_p99": fs[int(len(fs) * 0.99)] if fs else None,
            "round_ms_p99_max": [sorted(rounds)[int(len(rounds) * 0.99)], max(rounds)] if rounds else None,
            # (ms, time, new segment's directory fsync, files unlinked, sealed files closed, bytes)
            "slowest_rounds": sorted(shapes, reverse=True)[:12],
            "rounds_with_directory_fsync": sum(1 for r in shapes if r[2]),
            "rounds_with_unlink": sum(1 for r in shapes if r[3]),
            "round_ms_p99_by_kind": {
                kind: (lambda xs: sorted(xs)[int(len(xs) * 0.99)] if xs else None)(
                    [r[0] for r in shapes if bool(r[2] or r[3]) == (kind == "segment_turnover")])
                for kind in ("segment_turnover", "append_only")},
            "stalls_over_50ms": len(stalls), "stall_ms_total": sum(s[0] for s in stalls),
            "stall_ms_by_place": collections.Counter(
                {k: sum(s[0] for s in stalls if s[1].split(" <- ")[0] == k) for k in {s[1].split(" <- ")[0] for s in stalls}}
            ).most_common(10),
            "longest_stalls": sorted(stalls, reverse=True)[:5],
            # Stretches of over 50 ms in which the sampler itself did not run, with where the
            # event loop was when they began: a C call holding the GIL (the loop waits for it
            # too, unseen by the stall count) or the process off the CPU.
            "sampler_gaps_over_50ms": len(gaps), "sampler_gap_ms_total": sum(g[0] for g in gaps),
            "longest_sampler_gaps": sorted(gaps, key=lambda g: g[0], reverse=True)[:5],
            "busy_samples": busy.most_common(10),
            "executor_wait_ms": {name: {"n": len(w), "p50": round(sorted(w)[len(w) // 2], 1),
                                        "p99": round(sorted(w)[int(len(w) * 0.99)], 1), "max": round(max(w), 1)}
                                 for name, w in list(queued.items()) if w},
        }))

    threading.Thread(target=sample, daemon=True).start()
    threading.Thread(target=dump, daemon=True).start()
    from edge.cli import main as edge_main

    # uvicorn re-raises the SIGTERM it caught once it has shut down, so the process would
    # die by the default handler before any `finally`: this one writes the last findings
    # (a short run can end before the first one-second dump) and exits.
    def on_term(signum, frame) -> None:
        write()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    code = edge_main(argv)
    write()
    sys.exit(code)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-traced"]:
        serve_traced(sys.argv[2], sys.argv[3:])
    else:
        main()

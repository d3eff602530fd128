"""Soak test: does the edge stay flat (memory, fds, latency, no errors) under a steady mixed load?

    .venv/bin/python bench/soak.py --minutes 10      (by hand; never part of `make test`)

A leak or a slow drift (RSS, open files, a queue, a cache keyed by viewer) does not show in
seconds-long benchmarks; it shows when the same moderate traffic runs for minutes. So:

1. Starts `wave-edge serve` as its own process on a fresh data dir (embedded chDB), with
   `WAVE_TRUSTED_PROXIES=127.0.0.1/32`, after creating a tenant with the CLI; uploads a
   short H.264/AAC clip (a ready VOD) and creates a live stream.
2. Publishes a test pattern over WHIP (aiortc, as bench/edge.py) and keeps a few WHEP
   viewers connected for the whole run, counting the frames they get (bench/whep_load.py's
   counting decoder).
3. For `--minutes`, mixes: simulated viewers (each consents first, then sends a batch of
   beacons every `--batch-every` s through a view lifecycle, from its own address in
   `X-Forwarded-For`, new viewers replacing those who leave): a few hundred events/s, not a
   throughput test; HLS viewers polling the live playlist and fetching its segments and
   others playing the VOD; dashboard queries (summary, breakdown, timeseries, realtime)
   with the admin key every few seconds; a /metrics scrape every 10 s.
4. Every `--sample-every` s samples the server process: RSS (VmRSS), open fds, threads,
   CPU, and the WHEP viewers' frame counts. Every request's latency and status is kept
   per kind; errors are any 5xx, connection error or timeout, or unexpected 4xx.
5. Stops the load and the server, then opens the server's chDB path from a subprocess and
   checks that every accepted (202) beacon is stored exactly once.

Ratios against the run's own start: `rss_growth_ratio` = mean RSS over the last minute /
RSS after the first minute, and per request kind p50/p99 of the last minute vs the first;
WHEP frames/s per viewer in the first and last minute. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import limits, whep_load  # noqa: E402  (importing it swaps aiortc's decoder for a frame counter)
from bench.ingest import UAS, Conn, cpu_seconds, post  # noqa: E402
from edge.streaming.rtc import restrict_host_candidates  # noqa: E402
from tests.media import PatternTrack, write_file  # noqa: E402

# Statuses each kind of request should answer; anything else is an error.
EXPECTED = {"consent": {201}, "collect": {202}, "metrics": {200}}
PREFIXES = ["81.2", "85.10", "91.198", "193.99", "62.4", "78.46", "151.101", "190.2"]
DIMENSIONS = ["country", "region", "city", "os", "browser", "device", "screen", "video"]
METRICS = ["views", "watch_time_s", "rebuffer_pct", "startup_time_ms_p50", "concurrent_viewers"]
REQUEST_TIMEOUT_S = 30.0
RAMP_S = 30.0  # simulated viewers arrive over this long, not all in the first second


class Recorder:
    """Every request's (time since start, kind, latency, status) and the error tally."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, str, float, int | str]] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.first_errors: list[str] = []
        self.closing = False  # set before the bench closes its own peer connections

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, kind: str, started: float, status: int | str, detail: str = "") -> None:
        self.samples.append((started - self.t0, kind, time.monotonic() - started, status))
        if status not in EXPECTED.get(kind, {200}):
            self.error(kind, status, detail)

    def error(self, kind: str, status: int | str, detail: str = "") -> None:
        self.errors[f"{kind} {status}"] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"t={self.now():.0f}s {kind} {status} {detail[:200]}")


# --- the edge process ------------------------------------------------------------------

def edge_env(work: Path) -> dict:
    """Beacons and HLS come from one address per simulated viewer (behind the trusted
    proxy), so the per-address limits stay at their defaults; the WHEP viewers all come
    from this process's one address, so the WHEP limits are off (see LIMITS_MET)."""
    env = limits.turned_off(dict(os.environ, WAVE_DATA_DIR=str(work / "var"), WAVE_ICE_HOSTS="127.0.0.1",
                                 WAVE_TRUSTED_PROXIES="127.0.0.1/32"), "WAVE_LIMIT_WHEP_IP", "WAVE_LIMIT_WHEP_TENANT")
    env.pop("WAVE_CLICKHOUSE_URL", None)
    return env


LIMITS_MET = {"WAVE_LIMIT_IP": "one address per simulated viewer (X-Forwarded-For from the trusted proxy)",
              "WAVE_LIMIT_ADMIN_IP": "the dashboard's few calls every --dashboard-every s, from one address"}


def create_tenant(env: dict) -> dict:
    out = subprocess.run([sys.executable, "-m", "edge.cli", "tenant", "create", "soak", "--ip-mode", "full"],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def start_edge(env: dict, port: int, log: Path, trace: str = "") -> subprocess.Popen:
    """`trace`: run the edge under bench/ingest.py's `serve_traced` (event-loop stalls, GC
    passes, spool fsync rounds, written to that file) to find where a latency burst comes from."""
    serve = ["serve", "--port", str(port)]
    argv = ([sys.executable, str(ROOT / "bench" / "ingest.py"), "--serve-traced", trace, *serve] if trace
            else [sys.executable, "-m", "edge.cli", *serve])
    with log.open("wb") as out:
        server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"edge did not start; see {log}")


def proc_sample(pid: int) -> dict:
    """RSS (MiB), threads, open fds and CPU seconds of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    return {"rss_mb": rss_kb / 1024, "threads": threads, **fd_kinds(pid), "cpu_s": cpu_seconds(pid)}


def fd_kinds(pid: int) -> dict:
    """Open fds, and how many are sockets, pipes, anon inodes (eventfd, epoll), /proc files and files."""
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":")[0]
        if kind not in ("socket", "pipe", "anon_inode"):
            # chDB keeps /proc/thread-self/{stat,schedstat,io} open per thread that ran a query
            kind = "proc" if target.startswith("/proc/") else "file"
        kinds[kind] += 1
    return {"fds": sum(kinds.values()), "fd_kinds": dict(kinds)}


def server_log_errors(log: Path) -> dict:
    lines = log.read_text(errors="replace").splitlines()
    bad = [line for line in lines if re.search(r"Traceback|ERROR|Exception|CRITICAL", line)]
    return {"count": len(bad), "first": list(dict.fromkeys(bad))[:5]}


def stored_counts(data_dir: Path, tenant_id: str) -> dict:
    """After the server stopped: beacons and consents in its chDB, from another process."""
    script = (
        "import sys, json, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn='chdb://' + sys.argv[1])\n"
        "p = {'t': sys.argv[2]}\n"
        "e = c.query('SELECT count(), uniqExact(event_id) FROM viewer_events WHERE tenant_id = {t:String}',"
        " parameters=p).result_rows[0]\n"
        "k = c.query('SELECT count() FROM consents WHERE tenant_id = {t:String}', parameters=p).result_rows[0]\n"
        "print(json.dumps({'events': e[0], 'unique_events': e[1], 'consents': k[0]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(data_dir / "clickhouse"), tenant_id],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- set-up: a ready VOD, a live stream published over WHIP, WHEP viewers -------------

async def upload_vod(http: httpx.AsyncClient, key: str, work: Path) -> str:
    clip = work / "clip.mp4"
    await asyncio.to_thread(write_file, clip, "mp4", "libx264", "aac", 30.0, (640, 360), 25)
    auth = {"authorization": f"Bearer {key}"}
    with clip.open("rb") as fh:
        r = await http.post("/v1/videos", headers=auth, files={"file": ("clip.mp4", fh)}, data={"title": "soak"})
    r.raise_for_status()
    video_id = r.json()["video_id"]
    for _ in range(300):
        status = (await http.get(f"/v1/videos/{video_id}", headers=auth)).json()["status"]
        if status == "ready":
            return video_id
        if status == "failed":
            break
        await asyncio.sleep(0.2)
    raise RuntimeError(f"upload {video_id} not ready: {status}")


async def publish(http: httpx.AsyncClient, stream: dict, width: int, height: int) -> tuple[RTCPeerConnection, str]:
    """A 30 fps pattern over WHIP (aiortc), as bench/edge.py publishes it."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(PatternTrack(width, height))
    await pc.setLocalDescription(await pc.createOffer())
    r = await http.post(f"/whip/{stream['stream_id']}", content=pc.localDescription.sdp,
                        headers={"content-type": "application/sdp",
                                 "authorization": f"Bearer {stream['publish_token']}"})
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    return pc, r.headers["location"]


async def wait_live(http: httpx.AsyncClient, stream_id: str) -> None:
    """Until the live playlist lists a segment (the encoder runs; WHEP can attach)."""
    for _ in range(300):
        r = await http.get(f"/live/{stream_id}/index.m3u8")
        if r.status_code == 200 and ".m4s" in r.text:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the live stream never listed a segment")


def watch_state(pc: RTCPeerConnection, name: str, rec: Recorder) -> None:
    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState in ("failed", "closed", "disconnected") and not rec.closing:
            rec.error(name, pc.connectionState)


# --- load: beacons ---------------------------------------------------------------------

class Pool:
    """A few keep-alive connections (bench/ingest.py's Conn) shared by the simulated viewers,
    as a CDN or load balancer in front would multiplex them; each viewer's address travels
    in X-Forwarded-For. A connection idle for 4 s is replaced (the server closes at 5 s)."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.free: asyncio.Queue = asyncio.Queue()
        for _ in range(size):
            self.free.put_nowait([Conn(port), 0.0])

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        slot = await self.free.get()
        try:
            if time.monotonic() - slot[1] > 4.0 and slot[0].writer is not None:
                slot[0].writer.close()
                slot[0] = Conn(self.port)
            try:
                return await asyncio.wait_for(slot[0].request(raw), REQUEST_TIMEOUT_S)
            except BaseException:
                if slot[0].writer is not None:
                    slot[0].writer.close()
                slot[0] = Conn(self.port)
                raise
        finally:
            slot[1] = time.monotonic()
            self.free.put_nowait(slot)


def viewer_address(n: int) -> str:
    """A distinct public-looking address per viewer (one in ten IPv6)."""
    if n % 10 == 9:
        return f"2a00:1450:4001:{n // 65536:x}::{n % 65536:x}"
    prefix = PREFIXES[n % len(PREFIXES)]
    m = n // len(PREFIXES)
    return f"{prefix}.{m // 254 % 256}.{m % 254 + 1}"


def view_batch(view_id: str, video_id: str, index: int, last: bool, period_s: float) -> list[dict]:
    """One batch of a view's beacons covering the last `period_s` seconds of playback."""
    now = int(time.time() * 1000)
    kinds = ["heartbeat"] * 4
    if index == 0:
        kinds = ["viewstart", "playing", "rendition_change", "heartbeat", "heartbeat"]
    elif random.random() < 0.15:
        kinds += ["rebuffer_start", "rebuffer_end"]
    elif random.random() < 0.1:
        kinds += ["pause", "playing"]
    if last:
        kinds += ["ended", "viewend"]
    step = int(period_s * 1000 / len(kinds))
    start = now - step * len(kinds)
    return [{"type": kind, "ts": start + i * step, "view_id": view_id, "video_id": video_id,
             "position_ms": int((index * period_s) * 1000) + i * step, "screen_w": 1920, "screen_h": 1080,
             "player_w": 1280, "player_h": 720, "bitrate_kbps": 3000}
            for i, kind in enumerate(kinds)]


class Beacons:
    """Simulated viewers: consent, then one batch per `period_s` through 1-3 views of 4-12
    batches each, then leave; a new viewer (new id, new address) takes the slot, or, with a
    `population`, one of that many people coming back (a leak grows with requests; state kept
    per viewer grows with new viewers, so a fixed population tells the two apart)."""

    def __init__(self, pool: Pool, rec: Recorder, tenant_id: str, media: list[str], period_s: float,
                 stop: asyncio.Event, population: int = 0) -> None:
        self.pool, self.rec, self.tenant_id, self.media, self.period_s = pool, rec, tenant_id, media, period_s
        self.stop = stop
        self.next_viewer = 0
        self.population = population
        self.run = uuid.uuid4().hex[:6]
        self.accepted = 0
        self.unknown = 0  # events whose batch got no answer (timeout, connection error)
        self.consented = 0

    async def send(self, kind: str, path: str, body: dict, ua: str, ip: str) -> tuple[int | str, dict]:
        raw = post(path, json.dumps(body).encode(), ua, ip, "text/plain")
        started = time.monotonic()
        try:
            status, resp = await self.pool.request(raw)
        except asyncio.TimeoutError:
            self.rec.add(kind, started, "timeout")
            return "timeout", {}
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.rec.add(kind, started, "connection_error", repr(exc))
            return "connection_error", {}
        self.rec.add(kind, started, status, resp.decode(errors="replace"))
        return status, (json.loads(resp) if resp.startswith(b"{") else {})

    async def viewer(self) -> None:
        n, self.next_viewer = self.next_viewer, self.next_viewer + 1
        if self.population:  # people come back: ids and addresses from a fixed pool
            n %= self.population
        viewer_id, ip, ua = f"soak-{n:08d}-{self.run}", viewer_address(n), UAS[n % len(UAS)]
        status, _ = await self.send("consent", "/v1/consent", {
            "tenant_id": self.tenant_id, "viewer_id": viewer_id, "purposes": ["analytics"],
            "policy_version": "soak"}, ua, ip)
        if status != 201:
            return
        self.consented += 1
        for _ in range(random.randint(1, 3)):
            view_id, video_id, batches = uuid.uuid4().hex, random.choice(self.media), random.randint(4, 12)
            for index in range(batches):
                await asyncio.sleep(self.period_s * random.uniform(0.8, 1.2))
                if self.stop.is_set():  # the run is over: no new request (none cut off in flight)
                    return
                events = view_batch(view_id, video_id, index, index == batches - 1, self.period_s)
                status, resp = await self.send("collect", "/v1/collect", {
                    "tenant_id": self.tenant_id, "viewer_id": viewer_id, "events": events}, ua, ip)
                if status == 202:
                    self.accepted += resp.get("accepted", 0)
                elif isinstance(status, str):
                    self.unknown += len(events)

    async def slot(self, delay: float) -> None:
        await asyncio.sleep(delay)  # the slots start over RAMP_S
        while not self.stop.is_set():
            await self.viewer()


# --- load: HLS, dashboard, metrics ---------------------------------------------------

async def timed_get(http: httpx.AsyncClient, rec: Recorder, kind: str, url: str, **kw) -> httpx.Response | None:
    started = time.monotonic()
    try:
        r = await http.get(url, timeout=REQUEST_TIMEOUT_S, **kw)
    except httpx.TimeoutException:
        rec.add(kind, started, "timeout")
        return None
    except httpx.HTTPError as exc:
        rec.add(kind, started, "connection_error", repr(exc))
        return None
    rec.add(kind, started, r.status_code, r.text[:200] if r.status_code >= 400 else "")
    return r


def playlist_files(text: str) -> tuple[str | None, list[str]]:
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
    return (init.group(1) if init else None), [line for line in text.splitlines() if line and not line.startswith("#")]


async def live_hls_viewer(http: httpx.AsyncClient, rec: Recorder, stream_id: str, ip: str, stop: asyncio.Event) -> None:
    """Polls the live playlist every second, fetching the init section once and each new segment."""
    headers = {"x-forwarded-for": ip, "user-agent": UAS[hash(ip) % len(UAS)]}
    seen: set[str] = set()
    while not stop.is_set():
        r = await timed_get(http, rec, "hls_live_playlist", f"/live/{stream_id}/index.m3u8", headers=headers)
        if r is not None and r.status_code == 200:
            init, segments = playlist_files(r.text)
            if not seen and init:
                await timed_get(http, rec, "hls_live_init", f"/live/{stream_id}/{init}", headers=headers)
            fresh = [s for s in segments if s not in seen] if seen else segments[-1:]
            seen.update(segments)
            for name in fresh:
                await timed_get(http, rec, "hls_live_segment", f"/live/{stream_id}/{name}", headers=headers)
        await asyncio.sleep(1.0)


async def vod_hls_viewer(http: httpx.AsyncClient, rec: Recorder, video_id: str, ip: str, stop: asyncio.Event) -> None:
    """Plays the VOD from the start, a segment every `pace` s, again and again."""
    headers = {"x-forwarded-for": ip, "user-agent": UAS[hash(ip) % len(UAS)]}
    while not stop.is_set():
        r = await timed_get(http, rec, "hls_vod_playlist", f"/vod/{video_id}/index.m3u8", headers=headers)
        if r is None or r.status_code != 200:
            await asyncio.sleep(1.0)
            continue
        init, segments = playlist_files(r.text)
        if init:
            await timed_get(http, rec, "hls_vod_init", f"/vod/{video_id}/{init}", headers=headers)
        for name in segments:
            if stop.is_set():
                return
            await timed_get(http, rec, "hls_vod_segment", f"/vod/{video_id}/{name}", headers=headers)
            await asyncio.sleep(2.0)


async def dashboard(http: httpx.AsyncClient, rec: Recorder, key: str, every: float, stop: asyncio.Event) -> None:
    """An admin's dashboard refreshing: summary, a breakdown, a series and realtime."""
    headers = {"authorization": f"Bearer {key}"}
    i = 0
    while not stop.is_set():
        hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
        interval = "minute" if i % 2 == 0 else "hour"
        series = {"metric": METRICS[i % len(METRICS)], "interval": interval}
        if interval == "minute":
            series["from"] = hour_ago
        await timed_get(http, rec, "dash_summary", "/v1/analytics/summary", headers=headers)
        await timed_get(http, rec, "dash_breakdown", "/v1/analytics/breakdown", headers=headers,
                        params={"dimension": DIMENSIONS[i % len(DIMENSIONS)]})
        await timed_get(http, rec, "dash_timeseries", "/v1/analytics/timeseries", headers=headers, params=series)
        await timed_get(http, rec, "dash_realtime", "/v1/analytics/realtime", headers=headers)
        i += 1
        await asyncio.sleep(every)


async def scrape_metrics(http: httpx.AsyncClient, rec: Recorder, blocks: list[tuple[float, int]],
                         stop: asyncio.Event) -> None:
    """Also reads the edge's Python heap (allocated blocks): RSS mixes it with chDB's
    native caches, and only a growing Python heap would be the edge holding on to things."""
    while not stop.is_set():
        r = await timed_get(http, rec, "metrics", "/metrics")
        m = re.search(r"^wave_python_allocated_blocks (\d+)", r.text, re.M) if r is not None else None
        if m:
            blocks.append((rec.now(), int(m.group(1))))
        await asyncio.sleep(10.0)


def heap_figures(blocks: list[tuple[float, int]], duration: float) -> dict:
    if not blocks:
        return {}
    first = min(blocks, key=lambda b: abs(b[0] - 60))[1]
    last = [b for t, b in blocks if t >= duration - 60] or [blocks[-1][1]]
    mean_last = sum(last) / len(last)
    return {"python_blocks_after_first_minute": first, "python_blocks_last_minute": round(mean_last),
            "python_blocks_growth_ratio": round(mean_last / first, 3)}


async def loop_lag(rec: Recorder, lags: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """This process's event-loop lag: latencies above it are partly the bench's own."""
    while not stop.is_set():
        started = time.monotonic()
        await asyncio.sleep(0.1)
        lags.append((rec.now(), time.monotonic() - started - 0.1))


async def sampler(pid: int, rec: Recorder, every: float, out: list[dict], stop: asyncio.Event) -> None:
    while True:
        out.append({"t": rec.now(), **proc_sample(pid), "frames": dict(whep_load.counts)})
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except asyncio.TimeoutError:
            pass


# --- figures ---------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def latency_table(rec: Recorder, duration: float) -> dict:
    """Per kind: count, and p50/p99 of the first minute and of the last minute."""
    kinds: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: {"first": [], "last": [], "all": []})
    for t, kind, latency, _ in rec.samples:
        kinds[kind]["all"].append(latency)
        if t < 60:
            kinds[kind]["first"].append(latency)
        if duration - 60 <= t < duration:
            kinds[kind]["last"].append(latency)
    table = {}
    for kind, v in sorted(kinds.items()):
        first50, first99, last50, last99 = (pct(v["first"], 0.5), pct(v["first"], 0.99),
                                            pct(v["last"], 0.5), pct(v["last"], 0.99))
        table[kind] = {"n": len(v["all"]), "first_p50_ms": ms(first50), "first_p99_ms": ms(first99),
                       "last_p50_ms": ms(last50), "last_p99_ms": ms(last99),
                       "p50_ratio": ratio(last50, first50), "p99_ratio": ratio(last99, first99),
                       "all_p99_ms": ms(pct(v["all"], 0.99)), "max_ms": ms(max(v["all"]))}
    return table


def fps_between(a: dict, b: dict, viewers: int) -> list[float]:
    elapsed = b["t"] - a["t"]
    fps = sorted(round((b["frames"].get(k, 0) - a["frames"].get(k, 0)) / elapsed, 1) for k in b["frames"])
    return [0.0] * (viewers - len(fps)) + fps


def memory_figures(samples: list[dict], duration: float) -> dict:
    first = min(samples, key=lambda s: abs(s["t"] - 60))  # after the first minute
    last_minute = [s for s in samples if s["t"] >= duration - 60] or samples[-1:]
    rss_last = sum(s["rss_mb"] for s in last_minute) / len(last_minute)

    def cpu_pct(window: list[dict]) -> float | None:
        if len(window) < 2 or window[-1]["t"] == window[0]["t"]:
            return None
        return round(100 * (window[-1]["cpu_s"] - window[0]["cpu_s"]) / (window[-1]["t"] - window[0]["t"]), 1)

    return {
        "rss_mb_after_first_minute": round(first["rss_mb"], 1),
        "rss_mb_last_minute": round(rss_last, 1),
        "rss_growth_ratio": round(rss_last / first["rss_mb"], 3),
        "rss_mb_max": round(max(s["rss_mb"] for s in samples), 1),
        "fds_after_first_minute": first["fds"], "fds_end": samples[-1]["fds"],
        "fds_max": max(s["fds"] for s in samples),
        "fd_kinds_after_first_minute": first["fd_kinds"], "fd_kinds_end": samples[-1]["fd_kinds"],
        "threads_after_first_minute": first["threads"], "threads_end": samples[-1]["threads"],
        "server_cpu_pct_first_minute": cpu_pct([s for s in samples if s["t"] <= 60]),
        "server_cpu_pct_last_minute": cpu_pct(last_minute),
        "samples_t_rss_fds_threads": [[round(s["t"]), round(s["rss_mb"], 1), s["fds"], s["threads"]] for s in samples],
    }


def whep_figures(samples: list[dict], duration: float, viewers: int) -> dict:
    early = [s for s in samples if s["t"] <= 60]
    late = [s for s in samples if s["t"] >= duration - 60]
    start = fps_between(early[0], early[-1], viewers) if len(early) > 1 else []
    end = fps_between(late[0], late[-1], viewers) if len(late) > 1 else []
    return {"whep_fps_first_minute": start, "whep_fps_last_minute": end,
            "whep_fps_ratio_min": ratio(min(end, default=None), min(start, default=None)),
            "whep_frames_total": sorted(samples[-1]["frames"].values())}


# --- the run ---------------------------------------------------------------------------

async def soak(port: int, server_pid: int, tenant: dict, work: Path, args) -> dict:
    base = f"http://127.0.0.1:{port}"
    key = tenant["admin_key"]
    rec = Recorder()
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        video_id = await upload_vod(http, key, work)
        stream = (await http.post("/v1/streams", json={"name": "soak"},
                                  headers={"authorization": f"Bearer {key}"})).json()
        publisher, whip_location = await publish(http, stream, args.width, args.height)
        watch_state(publisher, "whip_publisher", rec)
        await wait_live(http, stream["stream_id"])
        viewers = [await whep_load.viewer(http, stream["stream_id"]) for _ in range(args.whep_viewers)]
        for pc in viewers:
            watch_state(pc, "whep_viewer", rec)
        await asyncio.sleep(3)  # viewers reach their first keyframe

        stop = asyncio.Event()
        rec.t0 = time.monotonic()
        samples: list[dict] = []
        lags: list[tuple[float, float]] = []
        blocks: list[tuple[float, int]] = []
        beacons = Beacons(Pool(port, args.connections), rec, tenant["tenant_id"],
                          [video_id, stream["stream_id"]], args.batch_every, stop, args.population)
        tasks = [asyncio.ensure_future(c) for c in [
            sampler(server_pid, rec, args.sample_every, samples, stop),
            loop_lag(rec, lags, stop),
            dashboard(http, rec, key, args.dashboard_every, stop),
            scrape_metrics(http, rec, blocks, stop),
            *(beacons.slot(i * RAMP_S / args.viewers) for i in range(args.viewers)),
            *(live_hls_viewer(http, rec, stream["stream_id"], viewer_address(10_000_000 + i), stop)
              for i in range(args.hls_viewers)),
            *(vod_hls_viewer(http, rec, video_id, viewer_address(20_000_000 + i), stop)
              for i in range(args.hls_viewers)),
        ]]
        await asyncio.sleep(args.minutes * 60)
        duration = rec.now()
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 15)  # requests in flight answer
        for task in pending:
            rec.error("bench_task_cut_off", "pending")
            task.cancel()
        publisher_state = publisher.connectionState
        viewer_states = [pc.connectionState for pc in viewers]
        rec.closing = True
        for pc in viewers:
            await pc.close()
        r = await http.delete(whip_location, headers={"authorization": f"Bearer {stream['publish_token']}"})
        await publisher.close()

    by_kind = collections.Counter(kind for _, kind, _, _ in rec.samples)
    return {
        "duration_s": round(duration, 1),
        **memory_figures(samples, duration),
        **heap_figures(blocks, duration),
        **whep_figures(samples, duration, args.whep_viewers),
        "whip_publisher_state_at_end": publisher_state, "whep_viewer_states_at_end": viewer_states,
        "whip_delete_status": r.status_code,
        "latency": latency_table(rec, duration),
        "requests": sum(by_kind.values()),
        "requests_per_s": round(sum(by_kind.values()) / duration, 1),
        "error_count": sum(rec.errors.values()),
        "errors": dict(rec.errors),
        "first_errors": rec.first_errors,
        "bench_loop_lag_ms_p99_first_minute": ms(pct([l for t, l in lags if t < 60], 0.99)),
        "bench_loop_lag_ms_p99_last_minute": ms(pct([l for t, l in lags if t >= duration - 60], 0.99)),
        "viewers_simulated": beacons.next_viewer,
        "consents_accepted": beacons.consented,
        "events_accepted": beacons.accepted,
        "events_unknown_outcome": beacons.unknown,
        "events_per_s": round(beacons.accepted / duration, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--viewers", type=int, default=300, help="concurrent simulated beacon senders")
    ap.add_argument("--population", type=int, default=0,
                    help="viewers come back from a pool of this many ids and addresses (0: always new ones)")
    ap.add_argument("--batch-every", type=float, default=5.0, help="seconds between a viewer's batches")
    ap.add_argument("--connections", type=int, default=8, help="keep-alive connections carrying beacons")
    ap.add_argument("--hls-viewers", type=int, default=8, help="live HLS viewers, and as many VOD viewers")
    ap.add_argument("--whep-viewers", type=int, default=3)
    ap.add_argument("--dashboard-every", type=float, default=5.0)
    ap.add_argument("--sample-every", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (data, server log)")
    ap.add_argument("--trace", default="", help="run the edge under bench/ingest.py's serve_traced, writing"
                                                " its event-loop stall findings to this file")
    args = ap.parse_args()

    restrict_host_candidates(("127.0.0.1",))  # this process's peers too: loopback only
    work = Path(tempfile.mkdtemp(prefix="wave-soak-"))
    env = edge_env(work)
    tenant = create_tenant(env)
    port = random.randint(20000, 40000)
    log = work / "server.log"
    server = start_edge(env, port, log, args.trace)
    result: dict = {}
    try:
        result = asyncio.run(soak(port, server.pid, tenant, work, args))
    finally:
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(timeout=120)
    stored = stored_counts(work / "var", tenant["tenant_id"])
    accepted, unknown = result["events_accepted"], result["events_unknown_outcome"]
    result.update({
        "events_stored": stored["events"],
        "events_stored_unique": stored["unique_events"],
        "all_stored_once": stored["events"] == stored["unique_events"]
        and accepted <= stored["events"] <= accepted + unknown,
        "consents_stored": stored["consents"],
        "server_exit_code": exit_code,  # uvicorn re-raises SIGTERM after a graceful shutdown: -15
        "server_log_errors": server_log_errors(log),
        "limits": limits.report(env, LIMITS_MET),
        "setup": {"minutes": args.minutes, "viewers": args.viewers, "population": args.population,
                  "batch_every_s": args.batch_every,
                  "hls_live_viewers": args.hls_viewers, "hls_vod_viewers": args.hls_viewers,
                  "whep_viewers": args.whep_viewers, "dashboard_every_s": args.dashboard_every,
                  "publish": f"{args.width}x{args.height} 30 fps"},
    })
    if args.keep:
        result["work_dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Streaming benchmark: glass-to-glass latencies on loopback and HLS serving vs nginx.

    .venv/bin/python bench/edge.py [--seconds 20] [--width 1280 --height 720] [--rounds 2]
        [--viewer-steps 10,20,...] [--capacity-width 640 --capacity-height 360]
        [--paths per-viewer,shared] [--only-capacity] [--load-processes 1]

1. Starts `wave-edge serve` (its own process), creates a tenant and a stream.
2. Publishes a 30 fps pattern over WHIP from this process; each frame carries its number
   in the picture (tests/media.py), and its send time is noted.
3. WHIP->WHEP: a WHEP viewer here decodes frames, reads the number, latency = now - sent.
4. WHIP->HLS: polls the live playlist every 50 ms; when a segment appears, decodes its first
   frame's number: latency = now - sent (what a player sees at best, before buffering).
5. WHEP capacity, both fan-out paths in the same run: for each round (`--rounds`), an edge
   with `WAVE_WHEP_FANOUT=per-viewer` (the former path: aiortc packetizes every frame for
   every viewer) and one with the default `shared` (RTP packetized once per stream, per
   viewer only headers + SRTP + a segmented send, in one C call: `whep_fanout_native`
   says whether build/rtp_send.so was there; `--paths` may add `shared-python`, the same
   path written by Python only), each started on the same store in turn, a fresh
   publish each, then steps of N viewers in `--load-processes` other processes
   (bench/whep_load.py: frames counted, not decoded; they start counting together) until
   the slowest drops under 29 fps in two tries of the step. `whep_viewers_at_30fps` is
   the shared path's best round, `whep_viewers_at_30fps_per_viewer_path` the former
   path's, `whep_fanout_ratio` the quotient (goal >= 3). Beside it, what a viewer costs
   the edge: its CPU time (/proc, all threads) during each step's counting window, less
   the same publish with no viewer, per viewer (`whep_edge_cpu_ms_per_viewer[...]`, ms
   of CPU per second of video: the slope through the no-viewer figure and the held steps) and
   the quotient `whep_cpu_per_viewer_ratio`: on a machine shared with other work the
   frame rates move with the neighbours, CPU time per viewer much less. The WHEP abuse limits are off
   (all those viewers share one address and one tenant); a step where any viewer fails to
   connect ends the run with an `"error"` naming the step and the count, and exit status
   1: a refused viewer is not a viewer at 0 fps. An edge that answers 503 `edge_busy`
   (its event loop behind, edge/loop_lag.py) is waited out as its `Retry-After` asks; one
   that still refuses a viewer after 30 s is full at that step: the step is not held
   (`turned_away_busy`), as one under 29 fps is not.
6. HLS serving: after the publish, `wrk` fetches one recorded segment three ways, in
   alternation for three rounds (medians compared): from the edge's Python process directly; through the nginx front as deployed
   (`wave-edge front-config`: public segments by sendfile from the link tree, each request
   reported to the edge over the front-log socket); and from a bare nginx serving the same
   file. The ratio is front / bare nginx; the Python-only ratio is reported beside it.
   Needs `apt-get install nginx-light wrk` (the tests need nginx-light too, not wrk).

Prints one JSON object, with `"limits"`: each abuse limit as the edge ran it, and `"cpu"`:
the machine's CPU model and core count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import limits, machine  # noqa: E402
from edge.streaming import native_rtp  # noqa: E402
from tests.media import PatternTrack, decode_fmp4, read_counter  # noqa: E402


class TimedPattern(PatternTrack):
    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.sent: dict[int, float] = {}

    async def recv(self):
        frame = await super().recv()
        self.sent[(self.count - 1) & 0xFFFF] = time.monotonic()
        return frame


class StepFailed(RuntimeError):
    """A capacity step whose viewers did not all connect: its frame rate would measure the
    refusals (an abuse limit, a crash of the load process), not the edge's delivery."""

    def __init__(self, message: str, step: int, failed: int | None, held: int = 0, steps: dict | None = None) -> None:
        super().__init__(message)
        self.step, self.failed = step, failed
        # What the run measured before it, printed with the error (not as a result): a
        # publish that ended under a connection storm must not take the steps before it.
        self.measured: dict = {"held": held, "steps": steps or {}}


LOAD_STEP_TIMEOUT_S = 600  # connecting, counting and closing one step's viewers


def _load_step(script: Path, base: str, stream_id: str, n: int, seconds: float, edge_pid: int | None,
               processes: int) -> dict:
    """One step of `n` counting viewers, split over `processes` load processes that start
    counting together (a barrier directory), merged into one `whep_load.py` result. One
    process is one core at most: on the shared path it gave out before the edge did
    (bench/RESULTS.md, "Streaming"). `edge_cpu`: the mean of the processes' figures, each
    over its own counting window (the windows start together, at the barrier)."""
    shares = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    shares = [k for k in shares if k]
    with tempfile.TemporaryDirectory(prefix="whep-load-barrier-") as barrier:
        env = dict(os.environ, WHEP_LOAD_BARRIER=barrier, WHEP_LOAD_PARTIES=str(len(shares)))
        procs = [subprocess.Popen([sys.executable, str(script), base, stream_id, str(k), str(seconds),
                                   *([str(edge_pid)] if edge_pid else [])],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for k in shares]
        try:
            outs = [p.communicate(timeout=LOAD_STEP_TIMEOUT_S) for p in procs]
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.communicate()
            raise StepFailed(f"step of {n} WHEP viewers: the load process did not finish within "
                             f"{LOAD_STEP_TIMEOUT_S} s (connecting its viewers); not reported", n, None) from None
    results = []
    for proc, k, (stdout, stderr) in zip(procs, shares, outs):
        try:
            results.append(json.loads(stdout.strip().splitlines()[-1]))
        except (IndexError, ValueError):
            raise StepFailed(f"step of {n} WHEP viewers: a load process ({k} viewers) exited {proc.returncode} "
                             f"without a result: {stderr.strip()[-500:]}", n, None) from None
        results[-1]["returncode"] = proc.returncode
    failures: dict[str, int] = {}
    for r in results:
        for reason, count in r["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    cpus = [r["edge_cpu"] for r in results if r.get("edge_cpu") is not None]
    return {"viewers": n, "failed": sum(r["failed"] for r in results), "failures": failures,
            "dropped": sum(r.get("dropped", 0) for r in results),
            "refused_busy": sum(r.get("refused_busy", 0) for r in results),
            "turned_away_busy": sum(r.get("turned_away_busy", 0) for r in results),
            "fps": sorted(f for r in results for f in r["fps"]),
            "edge_cpu": round(statistics.fmean(cpus), 3) if cpus else None,
            "load_cpu": [r.get("load_cpu") for r in results],
            "load_receive": sorted({r.get("receive") or "?" for r in results}),
            "returncode": max(r["returncode"] for r in results)}


def viewer_capacity(base: str, stream_id: str, steps: list[int], seconds: float, edge_pid: int | None = None,
                    idle_cpu: float | None = None, processes: int = 1) -> dict:
    """Largest step of counting WHEP viewers (`processes` other processes) whose slowest
    viewer holds at least 29 fps. A step where any viewer failed to connect raises
    StepFailed. With the edge's pid: the edge's CPU (cores) during each step, and above
    `idle_cpu` (the publish with no viewer) per viewer, in ms of CPU per second of video."""
    script = Path(__file__).with_name("whep_load.py")
    held, detail = 0, {}
    for n in steps:
        first_try = None
        for attempt in (1, 2):
            try:
                step = _load_step(script, base, stream_id, n, seconds, edge_pid, processes)
            except StepFailed as exc:
                exc.measured = {"held": held, "steps": detail}
                raise
            if step["returncode"] != 0 or step["failed"]:
                raise StepFailed(f"step of {n} WHEP viewers: {step['failed']} of {n} failed to connect "
                                 f"({json.dumps(step['failures'])}); not reported as 0 fps", n, step["failed"],
                                 held, detail)
            # A step below 29 fps is tried once more, on both paths alike, and the second
            # try counts: on 2 shared cores a window where every viewer, the publish's own
            # frames included, fell to 28.5 fps at a third of the edge's capacity was the
            # machine, not the fan-out (bench/RESULTS.md, "Streaming"). Both tries are shown.
            # An edge that turned viewers away (503 edge_busy for longer than whep_load waits,
            # edge/loop_lag.py) said it is full: the step is not held, as under 29 fps.
            fps = step["fps"] or [0.0]
            short = min(fps) < 29 or bool(step.get("turned_away_busy"))
            if attempt == 1 and short:
                first_try = {"min_fps": min(fps), "median_fps": statistics.median(fps),
                             "dropped": step.get("dropped", 0), "turned_away_busy": step.get("turned_away_busy", 0)}
                continue
            break
        detail[n] = {"min_fps": min(fps), "median_fps": statistics.median(fps)}
        if first_try is not None:
            detail[n]["first_try"] = first_try
        if step.get("dropped"):  # connected, then ended by the edge under load: not held
            detail[n]["dropped"] = step["dropped"]
        if step.get("refused_busy"):  # 503 edge_busy answers: waited out, or (turned away) not
            detail[n]["refused_busy"] = step["refused_busy"]
        if step.get("turned_away_busy"):  # viewers the edge would not admit: fps are of the others
            detail[n]["turned_away_busy"] = step["turned_away_busy"]
        detail[n]["load_cpu"] = step["load_cpu"]  # per load process
        detail[n]["load_receive"] = step["load_receive"]
        if step.get("edge_cpu") is not None:
            detail[n]["edge_cpu"] = step["edge_cpu"]
            if idle_cpu is not None:
                detail[n]["cpu_ms_per_viewer"] = round((step["edge_cpu"] - idle_cpu) / n * 1000, 3)
        print(json.dumps({"step": n, **detail[n]}), file=sys.stderr, flush=True)  # progress
        if short:
            break
        held = n
    return {"whep_viewers_at_30fps": held, "whep_viewer_steps": detail}

async def run(base: str, stream: dict, seconds: float, width: int, height: int) -> dict:
    track = TimedPattern(width, height)
    pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pub.addTrack(track)
    await pub.setLocalDescription(await pub.createOffer())
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post(f"/whip/{stream['stream_id']}", content=pub.localDescription.sdp,
                            headers={"content-type": "application/sdp",
                                     "authorization": f"Bearer {stream['publish_token']}"})
        r.raise_for_status()
        await pub.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        whip_location = r.headers["location"]

        viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        viewer.addTransceiver("video", direction="recvonly")
        whep_latencies: list[float] = []

        @viewer.on("track")
        def on_track(t):
            async def read():
                while True:
                    frame = await t.recv()
                    sent = track.sent.get(read_counter(frame))
                    if sent is not None:
                        whep_latencies.append(time.monotonic() - sent)
            asyncio.ensure_future(read())

        await viewer.setLocalDescription(await viewer.createOffer())
        for _ in range(50):  # the publish needs its first frame before WHEP can attach
            r = await http.post(f"/whep/{stream['stream_id']}", content=viewer.localDescription.sdp,
                                headers={"content-type": "application/sdp"})
            if r.status_code == 201:
                break
            await asyncio.sleep(0.1)
        r.raise_for_status()
        await viewer.setRemoteDescription(RTCSessionDescription(r.text, "answer"))

        hls_latencies: list[float] = []
        seen: set[str] = set()
        init = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            p = await http.get(f"/live/{stream['stream_id']}/index.m3u8")
            if p.status_code == 200:
                for name in re.findall(r"^(seg_\d+\.m4s)$", p.text, re.M):
                    if name in seen:
                        continue
                    seen.add(name)
                    arrived = time.monotonic()
                    init = init or (await http.get(f"/live/{stream['stream_id']}/init.mp4")).content
                    frames, _ = decode_fmp4(init, (await http.get(f"/live/{stream['stream_id']}/{name}")).content)
                    sent = track.sent.get(read_counter(frames[0])) if frames else None
                    if sent is not None and len(seen) > 1:  # the first one was listed before we looked
                        hls_latencies.append(arrived - sent)
            await asyncio.sleep(0.05)
        latency_run = list(whep_latencies)  # the latency run ends here
        await http.delete(whip_location, headers={"authorization": f"Bearer {stream['publish_token']}"})
        await viewer.close()
        await pub.close()
    steady = latency_run[len(latency_run) // 5:]  # skip the first second or so
    return {
        "whep_latency_ms_p50": round(statistics.median(steady) * 1000, 1),
        "whep_latency_ms_p95": round(sorted(steady)[int(len(steady) * 0.95)] * 1000, 1),
        "whep_frames": len(latency_run),
        "whep_fps": round(len(latency_run) / seconds, 1),
        "hls_latency_s_p50": round(statistics.median(hls_latencies), 2) if hls_latencies else None,
        "hls_latency_s_max": round(max(hls_latencies), 2) if hls_latencies else None,
        "hls_segments": len(seen),
    }


async def capacity(base: str, stream: dict, width: int, height: int, steps: list[int], seconds: float,
                   edge_pid: int, processes: int = 1) -> dict:
    """A fresh WHIP publish of the 30 fps pattern, the edge's CPU with no viewer, then the
    viewer steps against it."""
    track = TimedPattern(width, height)
    pub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pub.addTrack(track)
    await pub.setLocalDescription(await pub.createOffer())
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        auth = {"authorization": f"Bearer {stream['publish_token']}"}
        r = await http.post(f"/whip/{stream['stream_id']}", content=pub.localDescription.sdp,
                            headers={"content-type": "application/sdp", **auth})
        r.raise_for_status()
        await pub.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        try:
            for _ in range(100):  # live once the edge has the first frame
                if (await http.get(f"/live/{stream['stream_id']}/index.m3u8")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            cpu_before, started = cpu_seconds(edge_pid), time.monotonic()
            await asyncio.sleep(seconds)
            idle = (cpu_seconds(edge_pid) - cpu_before) / (time.monotonic() - started)
            result = await asyncio.to_thread(viewer_capacity, base, stream["stream_id"], steps, seconds, edge_pid, idle,
                                             processes)
            return {**result, "edge_cpu_no_viewer": round(idle, 3)}
        finally:
            await http.delete(r.headers["location"], headers=auth)
            await pub.close()


def wrk_rps(url: str, seconds: int = 8) -> float | None:
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", url], capture_output=True, text=True).stdout
    if "Non-2xx" in out:
        # A server answering 403/404 is fast and wrong: an earlier run of this bench timed a
        # bare nginx whose workers could not read the file. Errors are not throughput.
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def nginx(root: Path, port: int, work: Path) -> subprocess.Popen | None:
    binary = _nginx_binary()
    if not binary:
        return None
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    # As root, workers run as `nobody` unless told otherwise, and the work dir is 0700.
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(work), "-g", "user root;"])
    time.sleep(0.5)
    return proc


def front(env: dict, edge_port: int, port: int) -> subprocess.Popen | None:
    """The nginx front exactly as `wave-edge front-config` writes it (one worker, as bare)."""
    binary = _nginx_binary()
    if not binary:
        return None
    out = subprocess.run([sys.executable, "-m", "edge.cli", "front-config", "--listen", f"127.0.0.1:{port}",
                          "--edge", f"127.0.0.1:{edge_port}", "--workers", "1"],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    conf = json.loads(out)["nginx_conf"]
    proc = subprocess.Popen([binary, "-c", conf, "-p", str(Path(conf).parent), "-g", "daemon off; user root;"])
    time.sleep(0.5)
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu() -> dict:
    return {"model": machine.cpu_model(), "cores": os.cpu_count()}


def start_edge(cli: list[str], env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("the edge did not start")


def stop_edge(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)


# One load process connects hundreds of viewers one after another on a busy machine: the
# half-open-session timeout (10 s) would close the last ones before their ICE and DTLS got
# through, and the step would fail as if the edge had refused them. Raised, and said.
CAPACITY_ENV = {"WAVE_RTC_CONNECT_TIMEOUT_S": "120"}


def _cpu_per_viewer(runs: list[dict]) -> float | None:
    """Edge CPU per viewer, ms per second of video: the slope of a least-squares line
    through (0 viewers, the publish alone) and every step where all viewers held 30 fps,
    over all rounds of a path (a difference from one idle figure, divided by N, would
    amplify that figure's noise at small N)."""
    points = []
    for run in runs:
        points.append((0, run["edge_cpu_no_viewer"]))
        points += [(int(n), step["edge_cpu"]) for n, step in run["whep_viewer_steps"].items()
                   if "edge_cpu" in step and step["min_fps"] >= 29 and not step.get("dropped")
                   and not step.get("turned_away_busy")]
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = statistics.fmean(n for n, _ in points)
    mean_c = statistics.fmean(c for _, c in points)
    slope = (sum((n - mean_n) * (c - mean_c) for n, c in points)
             / sum((n - mean_n) ** 2 for n, _ in points))
    return round(slope * 1000, 3)


def fanout_capacity(cli: list[str], env: dict, key: str, args, steps: list[int]) -> dict:
    """Viewers at 30 fps on each fan-out path, the paths in alternation, `args.rounds`
    rounds, each path on its own edge process (same store, one at a time)."""
    rounds: dict[str, list[dict]] = {path: [] for path in args.paths.split(",")}
    for _ in range(args.rounds):
        for path in args.paths.split(","):
            port = random.randint(20000, 40000)
            server = start_edge(cli, {**env, "WAVE_WHEP_FANOUT": path, **CAPACITY_ENV}, port)
            base = f"http://127.0.0.1:{port}"
            try:
                stream = httpx.post(f"{base}/v1/streams", json={"name": f"bench-{path}"},
                                    headers={"authorization": f"Bearer {key}"}).json()
                rounds[path].append(asyncio.run(capacity(base, stream, args.capacity_width, args.capacity_height, steps,
                                                         args.step_seconds, server.pid, args.load_processes)))
            except StepFailed as exc:
                exc.measured = {"path": path, **exc.measured,
                                "earlier_rounds": {p: [r["whep_viewers_at_30fps"] for r in runs]
                                                   for p, runs in rounds.items() if runs}}
                raise
            finally:
                stop_edge(server)
    best = {path: max(r["whep_viewers_at_30fps"] for r in runs) for path, runs in rounds.items()}
    best.setdefault("shared", 0)
    best.setdefault("per-viewer", 0)
    # The edge's CPU per viewer above the publish alone, over the steps every viewer held
    # 30 fps in: what a viewer costs on each path, whatever else the machine was doing.
    per_viewer_ms = {path: _cpu_per_viewer(rounds.get(path, [])) for path in ("shared", "per-viewer", "shared-python")}
    python_writer = {}
    if "shared-python" in rounds:  # the shared path without the C writer, for what it adds
        python_writer = {"whep_viewers_at_30fps_shared_python": best["shared-python"],
                         "whep_edge_cpu_ms_per_viewer_shared_python": per_viewer_ms["shared-python"]}
    return {
        "whep_viewers_at_30fps": best["shared"],
        "whep_viewers_at_30fps_per_viewer_path": best["per-viewer"],
        "whep_fanout_ratio": round(best["shared"] / best["per-viewer"], 2) if best["per-viewer"] else None,
        "whep_edge_cpu_ms_per_viewer": per_viewer_ms["shared"],
        "whep_edge_cpu_ms_per_viewer_per_viewer_path": per_viewer_ms["per-viewer"],
        "whep_cpu_per_viewer_ratio": (round(per_viewer_ms["per-viewer"] / per_viewer_ms["shared"], 2)
                                      if per_viewer_ms["shared"] and per_viewer_ms["per-viewer"] else None),
        **python_writer,
        "whep_fanout_native": native_rtp.load() is not None,
        "whep_capacity_env": CAPACITY_ENV,
        "whep_capacity_resolution": f"{args.capacity_width}x{args.capacity_height}",
        "whep_load_processes": args.load_processes,
        "whep_rounds": {path: [{"held": r["whep_viewers_at_30fps"], "edge_cpu_no_viewer": r["edge_cpu_no_viewer"],
                                "steps": r["whep_viewer_steps"]} for r in runs]
                        for path, runs in rounds.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--viewer-steps", default="10,20,30,45,60,80,100,125,150,200,250,300,400,500,600,750,900",
                    help="WHEP viewer counts to try, in order, on each fan-out path")
    ap.add_argument("--step-seconds", type=float, default=8.0, help="frames counted this long per step")
    ap.add_argument("--rounds", type=int, default=2, help="capacity rounds, both paths in each")
    # The capacity publish is smaller than the latency run's: this process encodes it (aiortc,
    # libx264) and, on a 2-core machine shared with other work, a 720p publish from here fell
    # to 5-9 fps with no viewer at all, which is then the ceiling of every step.
    ap.add_argument("--capacity-width", type=int, default=640)
    ap.add_argument("--capacity-height", type=int, default=360)
    ap.add_argument("--paths", default="per-viewer,shared", help="fan-out paths to measure, in this order")
    ap.add_argument("--only-capacity", action="store_true", help="skip the latency and HLS figures")
    ap.add_argument("--load-processes", type=int, default=1,
                    help="counting viewers of a step, split over this many processes (each is one core at most;"
                         " 2 did not help on 2 cores: bench/RESULTS.md, \"Streaming\")")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-edge-bench-"))
    # Every WHEP viewer of the capacity steps comes from this machine's one address and one
    # tenant: the per-address and per-tenant WHEP limits (2/s burst 20, 100/s burst 500)
    # would refuse them as an attack and be what is measured. Off, and said in the output.
    env = limits.turned_off(dict(os.environ, WAVE_DATA_DIR=str(work / "var"), WAVE_ICE_HOSTS="127.0.0.1"),
                            "WAVE_LIMIT_WHEP_IP", "WAVE_LIMIT_WHEP_TENANT")
    env.pop("WAVE_CLICKHOUSE_URL", None)
    env.pop("WAVE_WHEP_FANOUT", None)  # the default (shared) for the latency run; both for capacity
    cli = [sys.executable, "-m", "edge.cli"]
    # No live ladder: the figures stay those of one encode per stream, comparable to earlier runs.
    key = json.loads(subprocess.run([*cli, "tenant", "create", "bench", "--live-ladder", "none"], cwd=ROOT, env=env,
                                    check=True, capture_output=True, text=True).stdout)["admin_key"]
    steps = [int(n) for n in args.viewer_steps.split(",") if n.strip()]
    result: dict = {}
    failed = None
    try:
        if not args.only_capacity:
            result.update(latency_and_hls(cli, env, key, args, work))
        try:
            result.update(fanout_capacity(cli, env, key, args, steps))
        except StepFailed as exc:
            failed = {"error": str(exc), "step": exc.step, "viewers_failed": exc.failed,
                      "measured_before_the_error": exc.measured}
            return 1  # after the `finally` below has printed the error
        result.update({"resolution": f"{args.width}x{args.height}", "seconds": args.seconds})
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if failed:  # no figures from a run whose viewers were refused: an error, loudly
            print(json.dumps({**failed, "limits": limits.report(env), "cpu": cpu()}))
    result["limits"] = limits.report(env)
    result["cpu"] = cpu()
    print(json.dumps(result))
    return 0


def latency_and_hls(cli: list[str], env: dict, key: str, args, work: Path) -> dict:
    """WHIP->WHEP and WHIP->HLS latencies, then HLS serving: python vs front vs bare nginx."""
    port = random.randint(20000, 40000)
    server = start_edge(cli, env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        stream = httpx.post(f"{base}/v1/streams", json={"name": "bench"},
                            headers={"authorization": f"Bearer {key}"}).json()
        result = asyncio.run(run(base, stream, args.seconds, args.width, args.height))
        time.sleep(3)  # the recording becomes a video
        videos = httpx.get(f"{base}/v1/videos", headers={"authorization": f"Bearer {key}"}).json()["videos"]
        video_id = videos[0]["video_id"]
        segment = sorted((work / "var" / "media" / "videos" / video_id).glob("seg_*.m4s"))[1].name
        # The machine's speed drifts by 2x between runs of a few seconds: measure the three
        # servers in alternation, three rounds, and compare medians.
        front_proc = front(env, port, port + 2)
        nginx_proc = nginx(work / "var" / "media", port + 1, work)
        urls = {
            "python": f"{base}/vod/{video_id}/{segment}",
            "front": f"http://127.0.0.1:{port + 2}/vod/{video_id}/{segment}" if front_proc else None,
            "nginx": f"http://127.0.0.1:{port + 1}/videos/{video_id}/{segment}" if nginx_proc else None,
        }
        rounds: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(3):
            for name, url in urls.items():
                rps = wrk_rps(url, seconds=5) if url else None
                if rps:
                    rounds[name].append(rps)
        for proc in (front_proc, nginx_proc):
            if proc:
                proc.terminate()
                proc.wait()
        edge_rps, front_rps, nginx_rps = (statistics.median(rounds[n]) if rounds[n] else None
                                          for n in ("python", "front", "nginx"))
        result.update({
            "hls_segment_bytes": (work / "var" / "media" / "videos" / video_id / segment).stat().st_size,
            "hls_front_rps": front_rps, "hls_python_rps": edge_rps, "hls_nginx_rps": nginx_rps,
            "hls_ratio": round(front_rps / nginx_rps, 3) if front_rps and nginx_rps else None,
            "hls_python_ratio": round(edge_rps / nginx_rps, 3) if edge_rps and nginx_rps else None,
            "hls_rounds_rps": {n: [round(x) for x in v] for n, v in rounds.items()},
        })
        return result
    finally:
        stop_edge(server)

if __name__ == "__main__":
    sys.exit(main())

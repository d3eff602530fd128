"""Live latency and encoding cost: LL-HLS vs plain HLS in Chromium, and the ladder's CPU.

    .venv/bin/python bench/latency.py [--seconds 15] [--width 640 --height 360]
                                      [--cpu-seconds 12 --cpu-width 1280 --cpu-height 720]

1. Glass to glass, in one run: starts `wave-edge serve` (its own process; a tenant with no
   lower renditions), publishes a 30 fps pattern over WHIP from this process, each frame
   carrying its number in the picture (tests/media.py: 16 blocks, white = 1) and its
   wall-clock send time noted. Headless Chromium plays the embed page with hls.js in
   low-latency mode (`transport=hls`), then plain HLS (`transport=hls-plain`: whole
   segments, three target durations behind), each warmed up, then sampled every 200 ms:
   the page draws the video's top rows on a canvas and reads the number back; latency =
   the instant of the read minus that frame's send time. Same publish, same browser.
2. CPU per live stream: the encoder pipeline alone in this process (no network, no
   browser), fed a `--cpu-width`x`--cpu-height` picture at 30 fps in real time, source
   only vs source + a 360p rung (the default ladder), alternated over two rounds; CPU =
   this process's user+system seconds per second of stream (the feeding costs the same in
   both; the ratio is the ladder's cost).

Prints one JSON object; the goal (issue #18) is LL-HLS under 2 s and at most half of
plain HLS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from edge import media_layout  # noqa: E402
from edge.streaming.hls_writer import HlsWriter  # noqa: E402
from edge.streaming.pipeline import LivePipeline  # noqa: E402
from edge.streaming.renditions import Rendition, bitrate_for  # noqa: E402
from bench import machine  # noqa: E402
from tests.browser import chromium  # noqa: E402
from tests.media import PatternTrack  # noqa: E402

# Reads the frame number the publisher drew (16 blocks of 16 source pixels, top left).
READ_COUNTER = """(sourceWidth) => {
  const v = document.querySelector('wave-player video');
  if (!v || !v.videoWidth || v.readyState < 2) return -1;
  const c = window.__waveBench || (window.__waveBench = document.createElement('canvas'));
  c.width = 256; c.height = 16;
  const g = c.getContext('2d', { willReadFrequently: true });
  const s = v.videoWidth / sourceWidth;
  g.drawImage(v, 0, 0, 256 * s, 16 * s, 0, 0, 256, 16);
  const px = g.getImageData(0, 0, 256, 16).data;
  let n = 0;
  for (let bit = 0; bit < 16; bit++) {
    let sum = 0;
    for (let y = 4; y < 12; y++) for (let x = bit * 16 + 4; x < bit * 16 + 12; x++) sum += px[(y * 256 + x) * 4];
    if (sum / 64 > 127) n |= 1 << bit;
  }
  return n;
}"""


class TimedPattern(PatternTrack):
    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.sent: dict[int, float] = {}

    async def recv(self):
        frame = await super().recv()
        self.sent[(self.count - 1) & 0xFFFF] = time.time()
        return frame


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p90": None, "samples": 0}
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 3), "p90": round(ordered[int(len(ordered) * 0.9)], 3),
            "samples": len(ordered)}


async def _sample(page, track: TimedPattern, width: int, seconds: float) -> list[float]:
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        before = time.time()
        number = await page.evaluate(READ_COUNTER, width)
        after = time.time()
        sent = track.sent.get(number) if number >= 0 else None
        if sent is not None and after - before < 0.1:  # a slow read would blur the instant
            latencies.append((before + after) / 2 - sent)
        await asyncio.sleep(0.2)
    return latencies


async def glass_to_glass(base: str, stream: dict, seconds: float, warmup: float, width: int, height: int) -> dict:
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
        location = r.headers["location"]
        try:
            for _ in range(100):  # three whole segments before a player joins
                text = (await http.get(f"/live/{stream['stream_id']}/index.m3u8")).text
                if text.count("#EXTINF") >= 3:
                    break
                await asyncio.sleep(0.2)
            results = {}
            async with chromium() as (context, errors):
                for mode, transport in (("ll_hls", "hls"), ("plain_hls", "hls-plain")):
                    page = await context.new_page()
                    await page.goto(f"{base}/embed/{stream['stream_id']}?transport={transport}&muted=1")
                    await page.click('[data-consent="decline"]')
                    await page.click(".wave-play")
                    await asyncio.sleep(warmup)
                    samples = await _sample(page, track, width, seconds)
                    hls_js = await page.evaluate(
                        "(() => { const t = document.querySelector('wave-player .wave-time');"
                        " return [Number(t.dataset.latency), Number(t.dataset.targetLatency)]; })()")
                    results[mode] = {**_quantiles(samples), "hls_js_latency_s": round(hls_js[0], 3),
                                     "hls_js_target_latency_s": round(hls_js[1], 3)}
                    await page.close()
                results["browser_errors"] = errors[:5]
        finally:
            await http.delete(location, headers={"authorization": f"Bearer {stream['publish_token']}"})
            await pub.close()
    return results


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pipeline_cpu(width: int, height: int, seconds: float, ladder: bool) -> tuple[float, int]:
    """CPU seconds per second of a live stream through the encoder and its writers, and
    the frames the encoder dropped (a figure with drops measured an overloaded machine)."""
    pictures = []
    gradient = np.linspace(0, 255, width, dtype=np.uint8)
    base = np.dstack([np.tile(gradient, (height, 1))] * 3)
    for i in range(30):
        img = base.copy()
        img[:, (i * 16) % width:(i * 16) % width + 16] = (255, 0, 0)
        pictures.append(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p"))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        renditions = [Rendition(360, bitrate_for(360), HlsWriter(directory, prefix=media_layout.rendition_prefix(360)))] \
            if ladder else []
        pipeline = LivePipeline("st_0000000000000000", [HlsWriter(directory)], audio=True, renditions=renditions)
        silence = av.AudioFrame(format="s16", layout="stereo", samples=1600)
        silence.sample_rate = 48_000
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        start_cpu, start = _cpu(), time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            pipeline.feed_video(pictures[i % 30])
            pipeline.feed_audio(silence)
            i += 1
            time.sleep(max(0.0, start + i / 30 - time.monotonic()))
        pipeline.close()
        pipeline.join(30)
        used, wall = _cpu() - start_cpu, time.monotonic() - start
        if ladder:
            assert (directory / "r360_init.mp4").exists(), "the rung was not encoded"
        return used / wall, pipeline.frames_dropped





def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15, help="sampling per player mode")
    ap.add_argument("--warmup", type=float, default=8, help="playing before sampling (catch-up settles)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--cpu-seconds", type=float, default=12)
    ap.add_argument("--cpu-width", type=int, default=1280)
    ap.add_argument("--cpu-height", type=int, default=720)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wave-edge-latency-"))
    env = dict(os.environ, WAVE_DATA_DIR=str(work / "var"), WAVE_ICE_HOSTS="127.0.0.1")
    env.pop("WAVE_CLICKHOUSE_URL", None)
    cli = [sys.executable, "-m", "edge.cli"]
    key = json.loads(subprocess.run([*cli, "tenant", "create", "bench", "--live-ladder", "none"], cwd=ROOT, env=env,
                                    check=True, capture_output=True, text=True).stdout)["admin_key"]
    port = random.randint(20000, 40000)
    server = subprocess.Popen([*cli, "serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        stream = httpx.post(f"{base}/v1/streams", json={"name": "latency"},
                            headers={"authorization": f"Bearer {key}"}).json()
        latency = asyncio.run(glass_to_glass(base, stream, args.seconds, args.warmup, args.width, args.height))
    finally:
        server.send_signal(2)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    rounds: dict[str, list[float]] = {"source_only": [], "with_360p_rung": []}
    dropped = {"source_only": 0, "with_360p_rung": 0}
    for _ in range(2):
        for name, ladder in (("source_only", False), ("with_360p_rung", True)):
            cpu, drops = pipeline_cpu(args.cpu_width, args.cpu_height, args.cpu_seconds, ladder=ladder)
            rounds[name].append(cpu)
            dropped[name] += drops
    ll, plain = latency["ll_hls"]["p50"], latency["plain_hls"]["p50"]
    source_cpu, ladder_cpu = statistics.median(rounds["source_only"]), statistics.median(rounds["with_360p_rung"])
    print(json.dumps({
        "ll_hls_latency_s_p50": ll,
        "plain_hls_latency_s_p50": plain,
        "ll_to_plain_ratio": round(ll / plain, 3) if ll and plain else None,
        "ll_under_2s": bool(ll is not None and ll < 2.0),
        "ll_at_most_half_of_plain": bool(ll and plain and ll <= plain / 2),
        "latency": latency,
        "cpu_s_per_stream_s_source_only": round(source_cpu, 3),
        "cpu_s_per_stream_s_with_360p_rung": round(ladder_cpu, 3),
        "ladder_cpu_ratio": round(ladder_cpu / source_cpu, 3) if source_cpu else None,
        "cpu_rounds": {k: [round(v, 3) for v in vs] for k, vs in rounds.items()},
        "cpu_frames_dropped": dropped,
        "cpu_model": machine.cpu_model(),
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg()[0],
        "setup": {"publish": f"{args.width}x{args.height}@30 over WHIP (aiortc, this process)",
                  "cpu_source": f"{args.cpu_width}x{args.cpu_height}@30 + AAC, encoder pipeline only",
                  "seconds": args.seconds, "warmup": args.warmup, "cpu_seconds": args.cpu_seconds},
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())

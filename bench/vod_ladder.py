"""VOD ladder packaging time per minute of 1080p source, as a ratio to real time.

One process, one source, three runs of the real packager (`edge/vod/packager.py`, then
`package.finalize`), each into a fresh directory:

- `baseline`: one 1080p rendition, transcoded (what the packager did before the ladder
  for a non-H.264 upload): the in-run reference;
- `ladder_transcode`: the four rungs 1080/720/480/360, all transcoded (a non-H.264 upload
  and any upload larger than 1080p);
- `ladder_remux_top`: the four rungs with the source's H.264 copied into the top one (an
  H.264/AAC upload that fits 1080p): decode once, encode the three lower rungs.

Each reports wall and CPU seconds (user+system of this process, all threads), the wall
time per minute of source and its ratio to real time (`realtime_x` > 1: slower than real
time), and the ladder's cost as a ratio to the baseline's, measured in the same run. The
source is synthetic: a gradient with moving shapes and fine noise (encoders must spend
bits), H.264 1080p at 25 fps with AAC, written by PyAV. No timing is asserted anywhere:
read the numbers, and compare only within one run (machines of one kind differ).

    .venv/bin/python bench/vod_ladder.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.vod import ladder, package, packager  # noqa: E402
from bench import machine  # noqa: E402
from tests.media import mux_tone  # noqa: E402





def write_source(path: Path, seconds: float, size=(1920, 1080), fps: int = 25) -> None:
    width, height = size
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.dstack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) * 255 // (width + height))]).astype(np.uint8)
    grain = rng.integers(0, 24, (height, width, 1), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "23", "maxrate": "6000k",
                                                                  "bufsize": "12000k"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = fps * 2
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        for i in range(int(seconds * fps)):
            img = base.copy()
            img += np.roll(grain, i * 3, axis=1)
            for k in range(6):  # moving boxes at different speeds
                x = (i * (4 + 3 * k) + k * 300) % (width - 200)
                y = (k * 170 + int(60 * np.sin(i / (10 + k)))) % (height - 120)
                img[y:y + 120, x:x + 200] = (40 * k, 255 - 30 * k, 128)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        mux_tone(out, audio, seconds)


def run(source: Path, work: Path, name: str, **options) -> dict:
    directory = work / name
    shutil.rmtree(directory, ignore_errors=True)
    cpu0, wall0 = sum(os.times()[:2]), time.perf_counter()
    how = packager.package_upload(source, directory, lambda p: None, **options)
    probe = package.finalize(directory)
    wall, cpu = time.perf_counter() - wall0, sum(os.times()[:2]) - cpu0
    variants = (directory / "main.m3u8").read_text().count("#EXT-X-STREAM-INF:")
    return {"how": how, "renditions": variants, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "wall_s_per_source_minute": round(wall * 60 / probe.duration_s, 1),
            "realtime_x": round(wall / probe.duration_s, 3), "cpu_x": round(cpu / probe.duration_s, 3),
            "bytes": probe.size_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the 1080p source")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vod-ladder-") as tmp:
        work = Path(tmp)
        source = work / "source.mp4"
        write_source(source, args.seconds)
        baseline = run(source, work, "baseline", remux=False, rungs=lambda w, h: ladder.plan(w, h)[:1])
        transcode = run(source, work, "ladder_transcode", remux=False)
        remux = run(source, work, "ladder_remux_top")
    print(json.dumps({
        "benchmark": "vod_ladder",
        "cpu_model": machine.cpu_model(),
        "cpu_count": os.cpu_count(),
        "source": f"{args.seconds:g} s, 1920x1080 H.264 25 fps + AAC (synthetic)",
        "baseline": baseline,
        "ladder_transcode": transcode,
        "ladder_remux_top": remux,
        "ladder_transcode_vs_baseline": round(transcode["wall_s"] / baseline["wall_s"], 2),
        "ladder_remux_top_vs_baseline": round(remux["wall_s"] / baseline["wall_s"], 2),
        "ladder_transcode_cpu_vs_baseline": round(transcode["cpu_s"] / baseline["cpu_s"], 2),
    }))


if __name__ == "__main__":
    main()

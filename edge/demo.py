"""The first-run demo: a tenant and a video, so `make run` shows the whole loop at once.

The video is made here with PyAV (no file to download or ship): colour bars with a moving
sweep, a burnt-in clock of the media time, and a 440 Hz tone with a beep each second. It
goes through the normal upload packaging, so what a newcomer watches is what an upload
becomes. Its ids and the demo tenant's admin key are kept in `$WAVE_DATA_DIR/demo.json`
(mode 0600): a local convenience for signing in to the dashboard, never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import av
import numpy as np
import msgspec

from core.tenants import create_tenant
from edge import media_layout
from edge.vod import upload, videos

log = logging.getLogger("edge.demo")

# Seven-segment digits: which of the segments a..g each digit lights.
_SEGMENTS = {
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg",
    "5": "acdfg", "6": "acdefg", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}
_BARS = np.array([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
                  (192, 0, 192), (192, 0, 0), (0, 0, 192)], dtype=np.uint8)


class Demo(msgspec.Struct):
    tenant_id: str
    admin_key: str
    video_id: str


def _digit(img: np.ndarray, ch: str, x: int, y: int, w: int, h: int, t: int) -> None:
    """Draw one seven-segment character (digits, ':' and '.') at (x, y), w x h, stroke t."""
    white = 255
    if ch == ":":
        img[y + h // 3 - t // 2:y + h // 3 + t // 2, x + w // 2 - t // 2:x + w // 2 + t // 2] = white
        img[y + 2 * h // 3 - t // 2:y + 2 * h // 3 + t // 2, x + w // 2 - t // 2:x + w // 2 + t // 2] = white
        return
    if ch == ".":
        img[y + h - t:y + h, x + w // 2 - t // 2:x + w // 2 + t // 2] = white
        return
    half = h // 2
    boxes = {
        "a": (x, y, w, t), "d": (x, y + h - t, w, t), "g": (x, y + half - t // 2, w, t),
        "f": (x, y, t, half), "b": (x + w - t, y, t, half),
        "e": (x, y + half, t, half), "c": (x + w - t, y + half, t, half),
    }
    for seg in _SEGMENTS[ch]:
        bx, by, bw, bh = boxes[seg]
        img[by:by + bh, bx:bx + bw] = white


def _picture(base: np.ndarray, i: int, fps: int) -> np.ndarray:
    img = base.copy()
    height, width, _ = img.shape
    x = (i * 6) % width
    img[:, x:x + 6] = 255
    seconds = i / fps
    text = f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"
    cw, ch, stroke, gap = width // 14, height // 5, max(2, width // 120), width // 60
    total = len(text) * (cw + gap)
    left, top = (width - total) // 2, (height - ch) // 2
    img[top - gap:top + ch + gap, left - gap:left + total + gap] = 0
    for k, c in enumerate(text):
        _digit(img, c, left + k * (cw + gap), top, cw, ch, stroke)
    return img


def write_demo_video(path: Path, seconds: int = 30, size: tuple[int, int] = (640, 360), fps: int = 30) -> None:
    """H.264/AAC MP4 with a keyframe every second (so HLS segments are 1 s)."""
    width, height = size
    base = np.repeat(np.repeat(_BARS[None, :, :], height, axis=0), width // len(_BARS) + 1, axis=1)[:, :width]
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"g": str(fps), "keyint_min": str(fps), "sc_threshold": "0", "preset": "veryfast", "crf": "26"}
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "mono"
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(_picture(base, i, fps), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        per = audio.codec_context.frame_size or 1024
        total = seconds * 48_000
        for start in range(0, total, per):
            t = np.arange(start, start + per) / 48_000
            beep = (t % 1.0) < 0.08
            tone = np.sin(2 * np.pi * np.where(beep, 880, 440) * t) * np.where(beep, 0.3, 0.08)
            frame = av.AudioFrame.from_ndarray(tone.astype(np.float32).reshape(1, -1), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48_000, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)


def load(data_dir: Path) -> Demo | None:
    try:
        return msgspec.json.decode((data_dir / "demo.json").read_bytes(), type=Demo)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


async def ensure(edge) -> Demo:
    """Create the demo tenant and video once; later starts find them in demo.json."""
    data_dir: Path = edge.settings.data_dir
    existing = load(data_dir)
    if existing is not None:
        return existing
    tenant, key = await asyncio.to_thread(
        create_tenant, edge.store, "Demo", region=edge.settings.region, retention_days=30,
        consent_text="This demo measures how the video plays (start-up, stalls, errors) to show "
                     "the analytics dashboard. Nothing leaves this machine.",
    )
    video = videos.Video(video_id=videos.new_video_id(tenant.region), tenant_id=tenant.tenant_id,
                         title="wave-edge demo: test pattern", tags=["demo"])
    await asyncio.to_thread(videos.save, edge.store, video)
    source = media_layout.upload_path(edge.settings.media_dir, video.video_id)
    source.parent.mkdir(parents=True, exist_ok=True)
    staging = source.with_suffix(".mp4")
    await asyncio.to_thread(write_demo_video, staging)
    os.replace(staging, source)
    upload.schedule(edge, video, source)
    demo = Demo(tenant.tenant_id, key, video.video_id)
    path = data_dir / "demo.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(msgspec.to_builtins(demo), indent=1).encode())
    log.info("demo video %s created; the demo tenant's admin key is in %s", video.video_id, path)
    return demo

"""Seek previews: a WebVTT storyboard of thumbnails packed into sprite JPEGs.

The player shows the picture of the cue under the pointer while the viewer hovers or
drags the seek bar (`storyboard.vtt`, cues `sprite-N.jpg#xywh=x,y,w,h`, the form Mux,
JW Player and Video.js thumbnail plugins read). One thumbnail every `interval_for`
seconds (2 s for short videos, longer ones fewer, at most `MAX_THUMBS`), 160 pixels wide,
10x10 to a sprite: a viewer's browser loads one or two images, not hundreds.

The storyboard is fed the frames the packager decodes anyway (no second decode of an
upload); a recording, which is never decoded, is read back from its segments, keyframes
only (its live GOP is a second or two). Thumbnails are encoded with FFmpeg's mjpeg
encoder from PyAV: no image library needed.
"""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edge import media_layout

TILE_W = 160
COLUMNS = ROWS = 10
MAX_THUMBS = 200
INTERVALS = (2, 3, 4, 5, 10, 15, 20, 30, 60, 120, 300, 600)


def interval_for(duration_s: float) -> int:
    """Seconds between thumbnails: the shortest step giving at most `MAX_THUMBS`."""
    for step in INTERVALS:
        if duration_s / step <= MAX_THUMBS:
            return step
    return math.ceil(duration_s / MAX_THUMBS)


def tile_size(width: int, height: int) -> tuple[int, int]:
    """A thumbnail `TILE_W` wide (an upright video: that high), aspect kept, even sides."""
    if width <= 0 or height <= 0:
        return TILE_W, TILE_W * 9 // 16
    if width >= height:
        return TILE_W, max(2, round(TILE_W * height / width / 2) * 2)
    return max(2, round(TILE_W * width / height / 2) * 2), TILE_W


def _timestamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _jpeg(rgb: np.ndarray) -> bytes:
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"q:v": "5"}
    return b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])


class Storyboard:
    """Collects one thumbnail per `interval_s` from frames offered in time order, writes
    each sprite when it is full and the VTT at the end."""

    def __init__(self, directory: Path, width: int, height: int, interval_s: float) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.tile_w, self.tile_h = tile_size(width, height)
        self.thumbs = 0
        self.start: float | None = None
        self.end = 0.0
        self._sheet: np.ndarray | None = None
        self._sprites = 0

    def offer(self, frame: av.VideoFrame, seconds: float, duration: float = 0.0) -> None:
        """A decoded frame at `seconds` (its pts) lasting `duration`; keeps it if a cue starts
        at or before it and has no picture yet (the same frame fills cues a gap skipped)."""
        if self.start is None:
            self.start = seconds
        at = seconds - self.start
        self.end = max(self.end, at + duration)
        if self.thumbs >= MAX_THUMBS or at < self.thumbs * self.interval_s:
            return
        tile = frame.reformat(width=self.tile_w, height=self.tile_h, format="rgb24").to_ndarray()
        while self.thumbs < MAX_THUMBS and at >= self.thumbs * self.interval_s:
            self._place(tile)

    def _place(self, tile: np.ndarray) -> None:
        slot = self.thumbs % (COLUMNS * ROWS)
        if slot == 0:
            self._flush()
            self._sheet = np.zeros((ROWS * self.tile_h, COLUMNS * self.tile_w, 3), np.uint8)
        row, col = divmod(slot, COLUMNS)
        self._sheet[row * self.tile_h:(row + 1) * self.tile_h, col * self.tile_w:(col + 1) * self.tile_w] = tile
        self.thumbs += 1

    def _flush(self) -> None:
        if self._sheet is None:
            return
        used = self.thumbs - self._sprites * COLUMNS * ROWS
        rows = math.ceil(used / COLUMNS)
        sheet = self._sheet[:rows * self.tile_h, :(COLUMNS if rows > 1 else used) * self.tile_w]
        _write(self.directory / media_layout.sprite_name(self._sprites), _jpeg(np.ascontiguousarray(sheet)))
        self._sprites += 1
        self._sheet = None

    def finish(self, duration_s: float | None = None) -> int:
        """Write the last sprite and `storyboard.vtt`; cues tile [0, duration) without gaps
        (the last one ends at the video's end). Returns the number of cues (0: nothing
        written, a video without decodable frames)."""
        self._flush()
        if not self.thumbs:
            return 0
        end = duration_s if duration_s else self.end
        per = COLUMNS * ROWS
        lines = ["WEBVTT", ""]
        for k in range(self.thumbs):
            start = k * self.interval_s
            stop = end if k == self.thumbs - 1 else (k + 1) * self.interval_s
            if stop <= start:  # the video ended within this cue's first instant: drop the tail
                break
            sprite, slot = divmod(k, per)
            row, col = divmod(slot, COLUMNS)
            lines += [f"{_timestamp(start)} --> {_timestamp(stop)}",
                      f"{media_layout.sprite_name(sprite)}#xywh={col * self.tile_w},{row * self.tile_h},"
                      f"{self.tile_w},{self.tile_h}", ""]
        _write(self.directory / media_layout.STORYBOARD, "\n".join(lines).encode())
        return self.thumbs


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def from_segments(directory: Path, init: bytes, segments: list[Path], duration_s: float) -> int:
    """The storyboard of packaged fMP4 segments (a recording), decoding keyframes only;
    best effort: a recording still plays without previews. Returns the cues written."""
    board: Storyboard | None = None
    try:
        for segment in segments:
            with av.open(io.BytesIO(init + segment.read_bytes()), "r") as container:
                if not container.streams.video:
                    return 0
                stream = container.streams.video[0]
                stream.codec_context.skip_frame = "NONKEY"
                if board is None:
                    ctx = stream.codec_context
                    board = Storyboard(directory, ctx.width, ctx.height, interval_for(duration_s))
                for frame in container.decode(stream):
                    if frame.pts is not None and frame.time_base is not None:
                        board.offer(frame, float(frame.pts * frame.time_base))
    except (av.FFmpegError, ValueError, OSError):
        return 0
    return board.finish(duration_s) if board is not None else 0

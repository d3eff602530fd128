"""The ABR ladder of a VOD: which renditions a source gets, and the multivariant playlist.

A fixed ladder (no tenant setting): the standard rungs of Apple's HLS authoring guide by
the picture's short side, 1080/720/480/360, each with a bitrate cap from the guide
(1080p 6000, 720p 3000, 480p 1400 (between its 960x540 2000 and 768x432 730), 360p 730
kbps), never above the source: the top rung is the source's own size (at most 1080p),
and below it every standard rung that is smaller. So a 1080p upload gets four rungs, a
480p one two (480, 360) and a 240p one only its own. A top rung that is not a standard
size (1280x544, 320x240) gets the cap of the next standard rung above it, scaled by its
pixels: an encoder needs bits per pixel, not per rung name.

The multivariant playlist is written from what the packaged files really are: CODECS
from each rendition's own SPS (profile and level as the encoder wrote them), BANDWIDTH
from the peak segment bitrate measured on disk and AVERAGE-BANDWIDTH from the total, so a
player's ABR never trusts a figure the files do not back.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

STANDARD = ((1080, 6000), (720, 3000), (480, 1400), (360, 730))  # short side, max kbps
AUDIO_KBPS = 128  # AAC-LC stereo, one encode muxed into every rendition


@dataclass(frozen=True)
class Rung:
    width: int
    height: int
    max_kbps: int
    top: bool  # the first rung: the source's size (legacy file names, may be a remux)

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def profile(self) -> str:
        """H.264 High from 720p up, Main below (what the guide allows for older devices)."""
        return "high" if self.short_side >= 720 else "main"


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _scaled(width: int, height: int, short: int) -> tuple[int, int]:
    """`width`x`height` scaled so its short side is `short`, aspect kept, even sides."""
    if width >= height:
        return _even(width * short / height), short
    return short, _even(height * short / width)


def _cap(width: int, height: int) -> int:
    short = min(width, height)
    above = [(s, kbps) for s, kbps in STANDARD if s >= short]
    side, kbps = min(above) if above else max(STANDARD)
    if side == short:
        return kbps
    ref_w, ref_h = _scaled(16, 9, side)
    return max(100, round(kbps * width * height / (ref_w * ref_h)))


def plan(top_width: int, top_height: int) -> list[Rung]:
    """The rungs for a picture whose (already capped) output size is `top_width`x`top_height`,
    largest first."""
    rungs = [Rung(top_width, top_height, _cap(top_width, top_height), True)]
    short = min(top_width, top_height)
    for side, kbps in STANDARD:
        if side < short:
            width, height = _scaled(top_width, top_height, side)
            rungs.append(Rung(width, height, kbps, False))
    return rungs


def work_factor(rungs: list[Rung]) -> float:
    """How much more encoding the ladder is than its top rung alone (pixels encoded): the
    processing budget of one upload grows by this much, no more."""
    return sum(r.pixels for r in rungs) / rungs[0].pixels


# -- the multivariant playlist ------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One rendition as packaged: what `#EXT-X-STREAM-INF` says about it."""

    uri: str
    width: int
    height: int
    codecs: str
    frame_rate: float
    peak_bps: int
    average_bps: int


def avc1(extradata: bytes) -> str:
    """The RFC 6381 name of an H.264 stream (`avc1.PPCCLL`) from its avcC record or Annex B
    SPS: profile_idc, constraint flags, level_idc as the encoder wrote them."""
    if extradata[:1] == b"\x01" and len(extradata) >= 4:  # avcC
        profile, flags, level = extradata[1], extradata[2], extradata[3]
        return f"avc1.{profile:02X}{flags:02X}{level:02X}"
    data = extradata
    at = 0
    while True:
        at = data.find(b"\x00\x00\x01", at)
        if at < 0 or at + 6 > len(data):
            raise ValueError("no H.264 SPS in the stream's header")
        if data[at + 3] & 0x1F == 7:
            profile, flags, level = data[at + 4], data[at + 5], data[at + 6]
            return f"avc1.{profile:02X}{flags:02X}{level:02X}"
        at += 3


def mp4a(profile: str | None) -> str:
    """The RFC 6381 name of an AAC stream from the decoder's profile name."""
    return {"HE-AAC": "mp4a.40.5", "HE-AACv2": "mp4a.40.29"}.get(profile or "", "mp4a.40.2")


def bitrates(sizes: list[int], durations: list[float]) -> tuple[int, int]:
    """(peak, average) bits per second of segments of these byte sizes and durations."""
    peak = max((8 * size / d for size, d in zip(sizes, durations) if d > 0), default=0.0)
    total = sum(durations)
    average = 8 * sum(sizes) / total if total > 0 else 0.0
    return math.ceil(peak), math.ceil(average)


def write_multivariant(path: Path, variants: list[Variant]) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={v.peak_bps},AVERAGE-BANDWIDTH={v.average_bps},"
            f'RESOLUTION={v.width}x{v.height},CODECS="{v.codecs}",FRAME-RATE={v.frame_rate:.3f}'
        )
        lines.append(v.uri)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)

"""The live ABR ladder: which lower renditions a live stream gets, and at what bitrate.

The tenant's `live_ladder` lists heights (core/tenants.py, default 360); a stream gets each
rung below its source's height, encoded once per stream by the pipeline (a second x264
fed from the same decoded pictures, scaled, with keyframes on the same instants so players
can switch at any segment), and written by its own LL-HLS writer. Bitrates follow Apple's
HLS authoring guide for 30 fps H.264 (e.g. 360p about 800 kbit/s).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.streaming.outputs import Output

# Height -> video bit/s (Apple's HLS authoring specification, 16:9, 30 fps, rounded).
BITRATES = {144: 160_000, 234: 300_000, 240: 400_000, 270: 500_000, 360: 800_000, 432: 1_100_000,
            480: 1_400_000, 540: 2_000_000, 720: 3_000_000, 1080: 6_000_000}
AUDIO_BPS = 130_000  # the AAC track every rendition carries too


@dataclass(frozen=True)
class Rendition:
    """A lower rung: its picture height, video bitrate, and the output its packets go to."""

    height: int
    bitrate: int
    output: Output


def bitrate_for(height: int) -> int:
    """Video bit/s for a rung: the guide's figure, or scaled by pixels from the nearest."""
    if height in BITRATES:
        return BITRATES[height]
    nearest = min(BITRATES, key=lambda h: abs(h - height))
    return int(BITRATES[nearest] * (height / nearest) ** 2)


def scaled_size(width: int, height: int, rung: int) -> tuple[int, int]:
    """The rung's picture size for a `width`x`height` source, aspect kept, both even."""
    return max(2, round(width * rung / height / 2) * 2), rung


def rungs_below(ladder: tuple[int, ...], source_height: int) -> list[int]:
    """The ladder's heights a source of `source_height` gets (never an upscale)."""
    return sorted((h for h in set(ladder) if h < source_height), reverse=True)

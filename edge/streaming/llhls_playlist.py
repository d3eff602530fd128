"""LL-HLS playlists (RFC 8216bis, Apple's Low-Latency HLS): what a rendition has, as text.

The writer (`hls_writer.py`) records each rendition's state as an immutable `Snapshot`
after every part; the edge renders playlists from the newest one on request (so a
private stream's token goes onto every URI, and a blocking reload answers from memory).
One media playlist lists whole segments (players without LL-HLS use just those) and,
for the newest segments, their parts, the part being written next as a preload hint,
and where the other renditions are (`#EXT-X-RENDITION-REPORT`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edge import media_layout

VERSION = 9
PARTS_KEPT_SEGMENTS = 3  # segments near the live edge whose parts are listed
PLAYLIST_SEGMENTS = 6  # whole segments in the sliding window


@dataclass(frozen=True)
class Part:
    name: str
    duration: float
    independent: bool
    size: int


@dataclass(frozen=True)
class Segment:
    msn: int
    name: str
    duration: float
    date: float  # wall-clock time of its first frame (epoch seconds)
    parts: tuple[Part, ...]
    size: int


@dataclass(frozen=True)
class Snapshot:
    """One rendition's media playlist at one moment."""

    prefix: str  # "" for the source, "r360_" for a lower rendition
    width: int
    height: int
    codecs: str
    nominal_bandwidth: int
    part_target: float
    target_duration: int
    segments: tuple[Segment, ...] = ()  # complete, oldest first (the sliding window)
    pending: tuple[Part, ...] = ()  # parts of segment `next_msn`, being written
    next_msn: int = 0
    ended: bool = False
    peak_bandwidth: int = 0  # bits/s of the largest complete segment so far

    @property
    def playlist_name(self) -> str:
        return media_layout.media_playlist_name(self.prefix)

    @property
    def bandwidth(self) -> int:
        """BANDWIDTH: the peak segment bitrate measured so far, the nominal one before."""
        return self.peak_bandwidth or self.nominal_bandwidth

    def has(self, msn: int, part: int | None) -> bool:
        """Whether the playlist holds segment `msn` (whole), or its part `part`: what a
        blocking reload waits for."""
        if part is None:
            return msn < self.next_msn
        if msn < self.next_msn:
            return True
        return msn == self.next_msn and part < len(self.pending)

    def last(self) -> tuple[int, int] | None:
        """(msn, part index) of the newest part, for rendition reports."""
        if self.pending:
            return self.next_msn, len(self.pending) - 1
        if self.segments:
            seg = self.segments[-1]
            return seg.msn, max(0, len(seg.parts) - 1)
        return None

    def next_part(self) -> tuple[int, int]:
        return self.next_msn, len(self.pending)

    def part_exists(self, msn: int, index: int) -> bool:
        if msn == self.next_msn:
            return index < len(self.pending)
        return any(s.msn == msn and index < len(s.parts) for s in self.segments)


def _uri(name: str, token: str | None) -> str:
    return f"{name}?token={token}" if token else name


def _date(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def _part_line(part: Part, token: str | None) -> str:
    line = f'#EXT-X-PART:DURATION={part.duration:.5f},URI="{_uri(part.name, token)}"'
    return line + (",INDEPENDENT=YES" if part.independent else "")


def media_playlist(snap: Snapshot, others: list[Snapshot] = (), token: str | None = None) -> str:
    """The rendition's media playlist; `others` are the sibling renditions to report."""
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{snap.target_duration}",
        f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * snap.part_target:.3f}",
        f"#EXT-X-PART-INF:PART-TARGET={snap.part_target:.5f}",
        f"#EXT-X-MEDIA-SEQUENCE:{snap.segments[0].msn if snap.segments else snap.next_msn}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{_uri(snap.prefix + media_layout.INIT, token)}"',
    ]
    with_parts = () if snap.ended else {s.msn for s in snap.segments[-PARTS_KEPT_SEGMENTS:]}
    for seg in snap.segments:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(seg.date)}")
        if seg.msn in with_parts:
            lines += [_part_line(part, token) for part in seg.parts]
        lines += [f"#EXTINF:{seg.duration:.5f},", _uri(seg.name, token)]
    if snap.ended:
        lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"
    lines += [_part_line(part, token) for part in snap.pending]
    msn, index = snap.next_part()
    lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{_uri(media_layout.part_name(msn, index, snap.prefix), token)}"')
    for other in others:
        last = other.last()
        if other.prefix != snap.prefix and last is not None and not other.ended:
            lines.append(f'#EXT-X-RENDITION-REPORT:URI="{_uri(other.playlist_name, token)}",'
                         f"LAST-MSN={last[0]},LAST-PART={last[1]}")
    return "\n".join(lines) + "\n"


def multivariant(snaps: list[Snapshot], token: str | None = None) -> str:
    """The live multivariant playlist: every rendition, largest first."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for snap in sorted(snaps, key=lambda s: -s.height):
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={snap.bandwidth},RESOLUTION={snap.width}x{snap.height},'
                     f'CODECS="{snap.codecs}"')
        lines.append(_uri(snap.playlist_name, token))
    return "\n".join(lines) + "\n"

"""Reading just enough of fragmented MP4 to cut it into LL-HLS parts.

The muxer (FFmpeg's `mp4` with fragment flags) decides where its fragments end; the
LL-HLS writer needs, for each moof+mdat it wrote, when its video starts, how long it
lasts and whether it starts on a sync sample (an `INDEPENDENT=YES` part, a possible
segment start). That is in the boxes themselves (ISO/IEC 14496-12: `tkhd`, `mdhd`,
`hdlr`, `trex` in the init section; `tfhd`, `tfdt`, `trun` in each fragment), so the
writer reads it back here instead of guessing from the packets it handed the muxer
(which interleaves and delays them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"mvex", b"moof", b"traf"}
_NON_SYNC = 0x00010000  # sample_is_non_sync_sample in the sample flags


def boxes(data: bytes | bytearray | memoryview, start: int = 0) -> list[tuple[bytes, int, int]]:
    """The complete top-level boxes from `start`: (type, offset, size); a partial box at
    the end is left for later."""
    out = []
    i = start
    view = memoryview(data)
    while i + 8 <= len(view):
        size, kind = struct.unpack_from(">I4s", view, i)
        header = 8
        if size == 1:
            if i + 16 > len(view):
                break
            size = struct.unpack_from(">Q", view, i + 8)[0]
            header = 16
        if size < header or i + size > len(view):
            break
        out.append((bytes(kind), i, size))
        i += size
    return out


def _children(data: memoryview, offset: int, size: int) -> dict[bytes, list[memoryview]]:
    found: dict[bytes, list[memoryview]] = {}
    for kind, at, length in boxes(data[offset + 8:offset + size]):
        found.setdefault(kind, []).append(data[offset + 8 + at:offset + 8 + at + length])
    return found


def _child(box: memoryview, *path: bytes) -> memoryview | None:
    for kind in path:
        found = _children(box, 0, len(box)).get(kind)
        if not found:
            return None
        box = found[0]
    return box


@dataclass(frozen=True)
class Track:
    track_id: int
    kind: str  # "video", "audio" or the handler type
    timescale: int
    default_duration: int = 0
    default_flags: int = 0


def tracks(init: bytes) -> dict[int, Track]:
    """The tracks an init section (ftyp+moov) declares, by track id."""
    view = memoryview(init)
    moov = next((view[at:at + size] for kind, at, size in boxes(view) if kind == b"moov"), None)
    if moov is None:
        raise ValueError("no moov box in the init section")
    defaults: dict[int, tuple[int, int]] = {}
    mvex = _child(moov, b"mvex")
    if mvex is not None:
        for trex in _children(mvex, 0, len(mvex)).get(b"trex", []):
            track_id, _, duration, _, flags = struct.unpack_from(">IIIII", trex, 12)
            defaults[track_id] = (duration, flags)
    found = {}
    for trak in _children(moov, 0, len(moov)).get(b"trak", []):
        tkhd = _child(trak, b"tkhd")
        mdhd = _child(trak, b"mdia", b"mdhd")
        hdlr = _child(trak, b"mdia", b"hdlr")
        if tkhd is None or mdhd is None or hdlr is None:
            continue
        track_id = struct.unpack_from(">I", tkhd, 8 + 4 + (16 if tkhd[8] == 1 else 8))[0]
        timescale = struct.unpack_from(">I", mdhd, 8 + 4 + (16 if mdhd[8] == 1 else 8))[0]
        handler = bytes(hdlr[16:20])
        kind = {b"vide": "video", b"soun": "audio"}.get(handler, handler.decode("latin-1"))
        duration, flags = defaults.get(track_id, (0, 0))
        found[track_id] = Track(track_id, kind, timescale, duration, flags)
    return found


@dataclass(frozen=True)
class Run:
    """One track's samples in one fragment."""

    track_id: int
    start: int  # decode time of the first sample, in the track's timescale
    duration: int  # sum of the sample durations, same unit
    samples: int
    starts_with_sync: bool


def fragment(moof: bytes | memoryview, known: dict[int, Track]) -> list[Run]:
    """What a moof box holds, per track."""
    view = memoryview(moof)
    runs = []
    for traf in _children(view, 0, len(view)).get(b"traf", []):
        tfhd = _child(traf, b"tfhd")
        if tfhd is None:
            continue
        flags = int.from_bytes(tfhd[9:12], "big")
        track_id = struct.unpack_from(">I", tfhd, 12)[0]
        track = known.get(track_id, Track(track_id, "?", 1))
        at = 16
        if flags & 0x01:
            at += 8  # base data offset
        if flags & 0x02:
            at += 4  # sample description index
        default_duration, default_flags = track.default_duration, track.default_flags
        if flags & 0x08:
            default_duration = struct.unpack_from(">I", tfhd, at)[0]
            at += 4
        if flags & 0x10:
            at += 4  # default sample size
        if flags & 0x20:
            default_flags = struct.unpack_from(">I", tfhd, at)[0]
        tfdt = _child(traf, b"tfdt")
        start = 0
        if tfdt is not None:
            start = struct.unpack_from(">Q" if tfdt[8] == 1 else ">I", tfdt, 12)[0]
        total = count = 0
        first_flags = None
        for trun in _children(traf, 0, len(traf)).get(b"trun", []):
            rflags = int.from_bytes(trun[9:12], "big")
            n = struct.unpack_from(">I", trun, 12)[0]
            at = 16
            if rflags & 0x01:
                at += 4  # data offset
            run_first = None
            if rflags & 0x04:
                run_first = struct.unpack_from(">I", trun, at)[0]
                at += 4
            for i in range(n):
                duration, sample_flags = default_duration, default_flags
                if rflags & 0x100:
                    duration = struct.unpack_from(">I", trun, at)[0]
                    at += 4
                if rflags & 0x200:
                    at += 4
                if rflags & 0x400:
                    sample_flags = struct.unpack_from(">I", trun, at)[0]
                    at += 4
                if rflags & 0x800:
                    at += 4
                if i == 0 and run_first is not None:
                    sample_flags = run_first
                if first_flags is None:
                    first_flags = sample_flags
                total += duration
            count += n
        runs.append(Run(track_id, start, total, count, first_flags is not None and not first_flags & _NON_SYNC))
    return runs

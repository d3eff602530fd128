"""Turning a directory of fMP4 segments into a VOD: playlist, duration, size, codecs.

Recordings and uploads share one layout (`edge/media_layout.py`): `init.mp4`,
`seg_NNNNN.m4s` and `vod.m3u8`.
A recording's segments are written atomically (temporary name, then rename) by the live
muxer, so after a crash the directory holds only whole segments and `finalize` can make
a playable video of them.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import av

from edge.media_layout import INIT, POSTER, SEGMENT, VOD_PLAYLIST


@dataclass
class Probe:
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    size_bytes: int = 0
    segments: int = 0


def segments(directory: Path) -> list[Path]:
    found = [p for p in directory.iterdir() if SEGMENT.match(p.name)]
    return sorted(found, key=lambda p: int(SEGMENT.match(p.name).group(1)))


def _segment_duration(init: bytes, segment: Path) -> float:
    """Span of the segment's timestamps plus one frame (its first stream's packets)."""
    with av.open(io.BytesIO(init + segment.read_bytes()), "r") as container:
        stream = container.streams.video[0] if container.streams.video else container.streams[0]
        packets = [p for p in container.demux(stream) if p.pts is not None]
        if not packets:
            return 0.0
        times = [float(p.pts * p.time_base) for p in packets]
        last = float(packets[-1].duration * packets[-1].time_base) if packets[-1].duration else 0.0
        return max(times) - min(times) + last


def finalize(directory: Path) -> Probe:
    """Write `vod.m3u8` listing every whole segment; raise ValueError if there is none."""
    init_path = directory / INIT
    parts = segments(directory) if directory.exists() else []
    if not init_path.exists() or not parts:
        raise ValueError("no complete segment was recorded")
    init = init_path.read_bytes()
    probe = Probe(segments=len(parts))
    with av.open(io.BytesIO(init + parts[0].read_bytes()), "r") as first:
        for stream in first.streams:
            if stream.type == "video" and not probe.video_codec:
                probe.video_codec = stream.codec_context.name
                probe.width, probe.height = stream.codec_context.width, stream.codec_context.height
            elif stream.type == "audio" and not probe.audio_codec:
                probe.audio_codec = stream.codec_context.name
    durations = [_segment_duration(init, part) for part in parts]
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, round(max(durations)))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{INIT}"',
    ]
    for part, duration in zip(parts, durations):
        lines += [f"#EXTINF:{duration:.6f},", part.name]
    lines.append("#EXT-X-ENDLIST")
    tmp = directory / (VOD_PLAYLIST + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, directory / VOD_PLAYLIST)
    write_poster(init + parts[0].read_bytes(), directory / POSTER)
    probe.duration_s = round(sum(durations), 3)
    probe.size_bytes = sum(p.stat().st_size for p in [init_path, *parts])
    return probe


def write_poster(media: bytes, path: Path, width: int = 640) -> bool:
    """The player's poster frame: the first decodable picture as a JPEG at most `width` wide.

    Best effort: a video without a decodable first frame still plays, just without poster.
    """
    try:
        with av.open(io.BytesIO(media), "r") as container:
            if not container.streams.video:
                return False
            frame = next(container.decode(container.streams.video[0]), None)
        if frame is None:
            return False
        w = min(width, frame.width) // 2 * 2
        h = max(2, round(frame.height * w / frame.width) // 2 * 2)
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuvj420p"
        encoder.time_base = frame.time_base or 1
        encoder.options = {"q:v": "4"}
        picture = frame.reformat(width=w, height=h, format="yuvj420p")
        picture.pts = None
        data = b"".join(bytes(p) for p in [*encoder.encode(picture), *encoder.encode(None)])
    except (av.error.FFmpegError, StopIteration, ValueError):
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return bool(data)

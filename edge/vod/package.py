"""Turning a directory of fMP4 segments into a VOD: playlists, duration, size, codecs.

Recordings and uploads share one layout (`edge/media_layout.py`): the top rendition is
`init.mp4`, `seg_NNNNN.m4s` and `r<H>.m3u8` (H its height; `vod.m3u8` before the ladder);
an upload's lower rungs are `r<H>_init.mp4`, `r<H>_NNNNN.m4s` and `r<H>.m3u8`; `main.m3u8` is the multivariant playlist over them all
(what `/vod/{id}/index.m3u8` serves), its figures measured on these files
(`ladder.write_multivariant`). A recording without a storyboard gets one here.
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

from edge import media_layout
from edge.media_layout import INIT, POSTER, SEGMENT
from edge.vod import ladder, storyboard


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
    """Write every rendition's media playlist (`r<H>.m3u8`), the multivariant
    `main.m3u8` and, if missing, the storyboard; raise ValueError if the top rendition has
    no whole segment."""
    init_path = directory / INIT
    parts = segments(directory) if directory.exists() else []
    if not init_path.exists() or not parts:
        raise ValueError("no complete segment was recorded")
    init = init_path.read_bytes()
    probe = Probe(segments=len(parts))
    top = _rendition(directory, init_path, parts, None)
    probe.video_codec, probe.audio_codec = top.video_codec, top.audio_codec
    probe.width, probe.height = top.variant.width, top.variant.height
    variants = [top.variant]
    size = top.size_bytes
    for rung_init in sorted(directory.glob("r*_init.mp4"), key=lambda p: -int(p.name[1:].split("_")[0])):
        height = int(rung_init.name[1:].split("_")[0])
        rung_parts = media_layout.rung_segments(directory, height)
        if rung_parts and height != top.variant.height:
            rendition = _rendition(directory, rung_init, rung_parts, media_layout.rung_playlist(height))
            variants.append(rendition.variant)
            size += rendition.size_bytes
    ladder.write_multivariant(directory / media_layout.MULTIVARIANT, variants)
    write_poster(init + parts[0].read_bytes(), directory / POSTER)
    probe.duration_s = round(top.duration_s, 3)
    probe.size_bytes = size
    if not (directory / media_layout.STORYBOARD).exists():
        storyboard.from_segments(directory, init, parts, top.duration_s)
    return probe


@dataclass
class _Rendition:
    variant: ladder.Variant
    duration_s: float
    size_bytes: int
    video_codec: str
    audio_codec: str


def _rendition(directory: Path, init_path: Path, parts: list[Path], playlist: str | None) -> _Rendition:
    """Write one rendition's media playlist from its segments (`r<H>.m3u8`; None: the top
    one, named by its height once it is known); describe it for the multivariant playlist
    from what the files contain."""
    init = init_path.read_bytes()
    with av.open(io.BytesIO(init + parts[0].read_bytes()), "r") as first:
        height = first.streams.video[0].codec_context.height if first.streams.video else 0
    playlist = playlist or media_layout.rung_playlist(height)
    durations = [_segment_duration(init, part) for part in parts]
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(1, round(max(durations)))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{init_path.name}"',
    ]
    for part, duration in zip(parts, durations):
        lines += [f"#EXTINF:{duration:.6f},", part.name]
    lines.append("#EXT-X-ENDLIST")
    tmp = directory / (playlist + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, directory / playlist)
    sizes = [p.stat().st_size for p in parts]
    peak, average = ladder.bitrates(sizes, durations)
    width = height = 0
    video_codec = audio_codec = ""
    codecs = []
    frame_rate = 0.0
    with av.open(io.BytesIO(init + parts[0].read_bytes()), "r") as first:
        for stream in first.streams:
            ctx = stream.codec_context
            if stream.type == "video" and not video_codec:
                video_codec, width, height = ctx.name, ctx.width, ctx.height
                if ctx.name == "h264" and ctx.extradata:
                    codecs.insert(0, ladder.avc1(bytes(ctx.extradata)))
                rate = stream.average_rate or stream.guessed_rate
                frame_rate = float(rate) if rate else 0.0
            elif stream.type == "audio" and not audio_codec:
                audio_codec = ctx.name
                if ctx.name == "aac":
                    codecs.append(ladder.mp4a(ctx.profile))
    variant = ladder.Variant(playlist, width, height, ",".join(codecs), frame_rate, peak, average)
    return _Rendition(variant, sum(durations), sum(sizes) + init_path.stat().st_size, video_codec, audio_codec)


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

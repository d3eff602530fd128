"""Uploads -> HLS: probe with PyAV (never trust the extension), then remux or transcode.

H.264 video with AAC (or no) audio is remuxed: packets are copied into fMP4 segments
untouched. Anything else PyAV can decode is transcoded to H.264/AAC, at the output's size
(at most 1920x1080, or 1080x1920 upright, aspect kept, never upscaled), not the source's:
encoding costs grow with the picture, and nobody streams more from one upload. A file PyAV
cannot read, one without a video stream, or one over a limit of `limits.MediaLimits`
(checked before decoding) fails with a reason a person can act on.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av

from edge import media_layout
from edge.vod.limits import Deadline, MediaLimits, check_stream

HLS_OPTIONS = {
    "hls_time": "2",
    "hls_list_size": "0",
    "hls_playlist_type": "vod",
    "hls_segment_type": "fmp4",
    "hls_fmp4_init_filename": media_layout.INIT,
    "hls_flags": "independent_segments+temp_file",
}
Progress = Callable[[float], None]
MAX_OUTPUT = (1920, 1080)  # the long side and the short side of a transcoded picture


class Unplayable(ValueError):
    """The upload is not a video this edge can play; the message says why."""


def plan(source: Path, limits: MediaLimits = MediaLimits(), deadline: Deadline | None = None) -> str:
    """'remux' or 'transcode', from what the file really contains; raises `OverLimit`
    (nothing decoded yet) for a file over `limits`."""
    try:
        with av.open(str(source), "r") as container:
            if not container.streams.video:
                raise Unplayable("the file has no video stream")
            video = container.streams.video[0].codec_context.name
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            check_stream(container, limits, deadline or limits.deadline())
    except av.FFmpegError as exc:
        raise Unplayable(f"not a media file that can be read ({exc.strerror or exc})") from None
    return "remux" if video == "h264" and audio in (None, "aac") else "transcode"


def package_upload(source: Path, directory: Path, progress: Progress, limits: MediaLimits = MediaLimits()) -> str:
    """Write HLS for `source` into `directory`; returns how ('remux' or 'transcode')."""
    deadline = limits.deadline()
    how = plan(source, limits, deadline)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        if how == "remux":
            _remux(source, directory, progress, deadline)
        else:
            _transcode(source, directory, progress, limits, deadline)
    except av.ArgumentError:
        # EINVAL while decoding a file that opened fine: the decoder refused a picture over
        # `max_pixels` (a stream that grows mid-way); damaged data gives INVALIDDATA instead.
        raise limits.oversized_frame() from None
    except av.FFmpegError as exc:
        raise Unplayable(f"the file is damaged or cut short ({exc.strerror or exc})") from None
    return how


def output_size(width: int, height: int, box: tuple[int, int] = MAX_OUTPUT) -> tuple[int, int]:
    """The transcoded picture: `width`x`height` scaled down into the box (turned to match an
    upright picture), aspect kept, never up; even sides, as H.264 in 4:2:0 needs."""
    long_side, short_side = box
    bound_w, bound_h = (long_side, short_side) if width >= height else (short_side, long_side)
    scale = min(1.0, bound_w / width, bound_h / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _output(directory: Path) -> av.container.OutputContainer:
    options = dict(HLS_OPTIONS, hls_segment_filename=media_layout.segment_template(directory))
    return av.open(str(directory / media_layout.PACKAGER_PLAYLIST), "w", format="hls", options=options)


def _duration(container: av.container.InputContainer) -> float:
    return float(container.duration / av.time_base) if container.duration else 0.0


def _reporter(progress: Progress, total: float) -> Callable[[float], None]:
    last = [0.0]

    def report(seconds: float) -> None:
        now = time.monotonic()
        if total > 0 and now - last[0] >= 1.0:
            last[0] = now
            progress(min(99.0, 100.0 * seconds / total))

    return report


def _remux(source: Path, directory: Path, progress: Progress, deadline: Deadline) -> None:
    with av.open(str(source), "r") as src, _output(directory) as out:
        streams = [src.streams.video[0]] + ([src.streams.audio[0]] if src.streams.audio else [])
        mapping = {s.index: out.add_stream_from_template(s) for s in streams}
        report = _reporter(progress, _duration(src))
        for packet in src.demux(streams):
            if packet.dts is None:
                continue  # the demuxer's flush packets
            packet.stream = mapping[packet.stream_index]
            out.mux(packet)
            if packet.pts is not None:
                report(float(packet.pts * packet.time_base))
                deadline.check()


def _transcode(source: Path, directory: Path, progress: Progress, limits: MediaLimits, deadline: Deadline) -> None:
    with av.open(str(source), "r") as src, _output(directory) as out:
        vin = src.streams.video[0]
        vin.codec_context.options = limits.decoder_options()
        ain = src.streams.audio[0] if src.streams.audio else None
        rate = vin.average_rate or vin.guessed_rate or Fraction(30)
        vout = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "23",
                                                             "x264-params": "scenecut=0"})
        if vin.codec_context.width <= 0 or vin.codec_context.height <= 0:
            raise Unplayable("the video stream does not say its picture size")
        vout.width, vout.height = output_size(vin.codec_context.width, vin.codec_context.height)
        vout.pix_fmt = "yuv420p"
        vout.codec_context.time_base = vin.time_base  # keep the source's timestamps as they are
        vout.codec_context.gop_size = max(1, int(round(float(rate) * 2)))
        aout = None
        if ain is not None:
            aout = out.add_stream("aac", rate=48_000)
            aout.layout = "stereo"
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48_000)
            fifo = av.AudioFifo()
            samples = 0
        report = _reporter(progress, _duration(src))
        for frame in src.decode(*(s for s in (vin, ain) if s is not None)):
            deadline.check()
            if isinstance(frame, av.VideoFrame):
                if frame.width != vout.width or frame.height != vout.height or frame.format.name != "yuv420p":
                    frame = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                frame.pict_type = av.video.frame.PictureType.NONE
                for packet in vout.encode(frame):
                    out.mux(packet)
                if frame.pts is not None and frame.time_base is not None:
                    report(float(frame.pts * frame.time_base))
            else:
                frame.pts = None
                for resampled in resampler.resample(frame):
                    fifo.write(resampled)
                while fifo.samples >= 1024:
                    chunk = fifo.read(1024)
                    chunk.pts, chunk.time_base = samples, Fraction(1, 48_000)
                    samples += 1024
                    for packet in aout.encode(chunk):
                        out.mux(packet)
        for packet in vout.encode(None):
            out.mux(packet)
        if aout is not None:
            for packet in aout.encode(None):
                out.mux(packet)

"""Uploads -> an HLS ladder: probe with PyAV (never trust the extension), then one pass.

The output's top rung is the source's size, at most 1920x1080 (or 1080x1920 upright,
aspect kept, never upscaled): encoding costs grow with the picture, and nobody streams
more from one upload. Below it the standard rungs of `ladder.plan`. H.264 video with AAC
(or no) audio whose size is already the top rung's, at a bitrate near the rung's cap
(`REMUX_MAX_RATIO`), is remuxed into that rung: packets are copied untouched. Anything
else PyAV can decode is transcoded to H.264/AAC.

One pass over the source: each frame is decoded once, scaled to every lower rung and
encoded by that rung's encoder; the audio is encoded once (or copied) and muxed into every
rendition, and the storyboard takes its thumbnails from the same frames. Keyframes are
aligned across renditions, so their segments cut at the same instants: every 2 s when the
top rung is transcoded (scene cuts off), at the source's own keyframes when it is remuxed.

A file PyAV cannot read, one without a video stream, or one over a limit of
`limits.MediaLimits` (checked before decoding) fails with a reason a person can act on;
the processing budget grows with the ladder's extra pixels (`ladder.work_factor`).
"""

from __future__ import annotations

import io
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av

from edge import media_layout
from edge.vod import ladder, storyboard
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
# A source is copied into the top rung only if its bitrate is at most this times the
# rung's cap: a 30 Mbps phone video as the top of an ABR ladder would stall every viewer
# whose player picks it, so it is encoded like any other.
REMUX_MAX_RATIO = 1.5


class Unplayable(ValueError):
    """The upload is not a video this edge can play; the message says why."""


def plan(source: Path, limits: MediaLimits = MediaLimits(), deadline: Deadline | None = None) -> str:
    """'remux' or 'transcode' (how the top rung is made), from what the file really
    contains; raises `OverLimit` (nothing decoded yet) for a file over `limits`."""
    try:
        with av.open(str(source), "r") as container:
            if not container.streams.video:
                raise Unplayable("the file has no video stream")
            ctx = container.streams.video[0].codec_context
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            bit_rate = container.bit_rate or 0
            check_stream(container, limits, deadline or limits.deadline())
    except av.FFmpegError as exc:
        raise Unplayable(f"not a media file that can be read ({exc.strerror or exc})") from None
    fits = ctx.width > 0 and ctx.height > 0 and output_size(ctx.width, ctx.height) == (ctx.width, ctx.height)
    lean = fits and not (bit_rate and bit_rate > REMUX_MAX_RATIO * 1000 * ladder.plan(ctx.width, ctx.height)[0].max_kbps)
    return "remux" if ctx.name == "h264" and audio in (None, "aac") and lean else "transcode"


def package_upload(source: Path, directory: Path, progress: Progress, limits: MediaLimits = MediaLimits(), *,
                   rungs: Callable[[int, int], list[ladder.Rung]] = ladder.plan, remux: bool = True) -> str:
    """Write the HLS ladder and the storyboard for `source` into `directory`; returns how the
    top rung was made ('remux' or 'transcode'). `package.finalize` then writes the playlists.
    `rungs` and `remux=False` are for bench/vod_ladder.py's in-run baseline (one rendition,
    transcoded)."""
    how = plan(source, limits, limits.deadline())
    if not remux:
        how = "transcode"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _package(source, directory, progress, limits, remux_top=how == "remux", ladder_for=rungs)
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


def _output(directory: Path, rung: ladder.Rung) -> av.container.OutputContainer:
    """One rendition's HLS muxer. The top rung keeps the names every VOD had (`init.mp4`,
    `seg_NNNNN.m4s`); the playlist FFmpeg writes is not served (`package.finalize` writes
    the real ones from the segments on disk)."""
    if rung.top:
        init, template, name = media_layout.INIT, media_layout.segment_template(directory), media_layout.PACKAGER_PLAYLIST
    else:
        init = media_layout.rung_init(rung.height)
        template = media_layout.rung_segment_template(directory, rung.height)
        name = f"{media_layout.rung_name(rung.height)}.{media_layout.PACKAGER_PLAYLIST}"
    options = dict(HLS_OPTIONS, hls_fmp4_init_filename=init, hls_segment_filename=template)
    return av.open(str(directory / name), "w", format="hls", options=options)


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


def _copy(packet: av.Packet, stream) -> av.Packet:
    """A packet for another output: muxing hands a packet's data to FFmpeg (it is blank
    afterwards), so every output but the last gets its own copy."""
    twin = av.Packet(bytes(packet))
    twin.pts, twin.dts, twin.duration, twin.time_base = packet.pts, packet.dts, packet.duration, packet.time_base
    twin.is_keyframe = packet.is_keyframe
    twin.stream = stream
    return twin


def _mux_all(outputs: list, streams: list, packet: av.Packet) -> None:
    for out, stream in list(zip(outputs, streams))[:-1]:
        out.mux(_copy(packet, stream))
    packet.stream = streams[-1]
    outputs[-1].mux(packet)


def _encoder(out, rung: ladder.Rung, rate: Fraction, time_base, gop: int):
    kbps = rung.max_kbps
    stream = out.add_stream("libx264", rate=rate, options={
        "preset": "veryfast", "crf": "23", "profile": rung.profile,
        "maxrate": f"{kbps}k", "bufsize": f"{2 * kbps}k",  # capped CRF: simple pictures cost less
        "x264-params": "scenecut=0:open-gop=0"})
    stream.width, stream.height, stream.pix_fmt = rung.width, rung.height, "yuv420p"
    stream.codec_context.time_base = time_base  # keep the source's timestamps as they are
    stream.codec_context.gop_size = gop
    return stream


def add_renditions(directory: Path, limits: MediaLimits = MediaLimits()) -> int:
    """A recording's lower rungs, made after its publish ended from its own segments (the
    live encoder makes only the source's size): the same one pass, its H.264 kept as the
    top rung untouched, the lower rungs' keyframes where the recording has them. Returns
    how many renditions were added (0: the recording is already the smallest rung).
    The segments are read as one fragmented MP4 (init + segments, concatenated in a
    temporary file beside them, deleted after)."""
    from edge.vod.package import segments

    parts = segments(directory)
    if not parts:
        return 0
    init = (directory / media_layout.INIT).read_bytes()
    with av.open(io.BytesIO(init + parts[0].read_bytes()), "r") as probe:
        if not probe.streams.video:
            return 0
        ctx = probe.streams.video[0].codec_context
        rungs = ladder.plan(ctx.width, ctx.height)
    if len(rungs) == 1:
        return 0
    source = directory / ".recording-source.mp4"  # no served name matches it
    try:
        with source.open("wb") as out:
            for part in [directory / media_layout.INIT, *parts]:
                out.write(part.read_bytes())
        _package(source, directory, lambda percent: None, limits, remux_top=True, ladder_for=lambda w, h: rungs,
                 skip_top=True)
        return len(rungs) - 1
    finally:
        source.unlink(missing_ok=True)


def _package(source: Path, directory: Path, progress: Progress, limits: MediaLimits, remux_top: bool,
             ladder_for: Callable[[int, int], list[ladder.Rung]] = ladder.plan, skip_top: bool = False) -> None:
    """The one pass. `skip_top` (with `remux_top`): the top rung's files exist already (a
    recording's), only the lower rungs and the storyboard are written."""
    with av.open(str(source), "r") as src:
        vin = src.streams.video[0]
        vin.codec_context.options = limits.decoder_options()
        ain = src.streams.audio[0] if src.streams.audio else None
        if vin.codec_context.width <= 0 or vin.codec_context.height <= 0:
            raise Unplayable("the video stream does not say its picture size")
        rungs = ladder_for(*output_size(vin.codec_context.width, vin.codec_context.height))
        deadline = Deadline(limits.budget_s * ladder.work_factor(rungs))
        rate = vin.average_rate or vin.guessed_rate or Fraction(30)
        # Transcoded: a keyframe every 2 s in every rung. Remuxed top: the lower rungs take
        # a keyframe exactly where the source has one, and none elsewhere.
        gop = max(1, int(round(float(rate) * 2))) if not remux_top else 1 << 20
        outputs = [None if skip_top and rung.top else _output(directory, rung) for rung in rungs]
        written = [out for out in outputs if out is not None]
        try:
            encoded = rungs[1:] if remux_top else rungs
            top = [outputs[0].add_stream_from_template(vin) if outputs[0] is not None else None] if remux_top else []
            vouts = top + [
                _encoder(out, rung, rate, vin.time_base, gop)
                for out, rung in zip(outputs[len(rungs) - len(encoded):], encoded)]
            scalers = [av.video.reformatter.VideoReformatter() for _ in encoded]
            aouts, aencoder = [], None
            if ain is not None and remux_top:
                aouts = [out.add_stream_from_template(ain) for out in written]
            elif ain is not None:
                for out in written:  # the same AAC settings everywhere: one encoder feeds them all
                    stream = out.add_stream("aac", rate=48_000)
                    stream.layout, stream.bit_rate = "stereo", ladder.AUDIO_KBPS * 1000
                    aouts.append(stream)
                aencoder = aouts[0]
                resampler = av.AudioResampler(format="fltp", layout="stereo", rate=48_000)
                fifo = av.AudioFifo()
                samples = 0
            total = _duration(src)
            board = storyboard.Storyboard(directory, rungs[0].width, rungs[0].height, storyboard.interval_for(total))
            report = _reporter(progress, total)
            first_encoded = len(vouts) - len(encoded)
            for packet in src.demux(*(s for s in (vin, ain) if s is not None)):
                deadline.check()
                if packet.dts is None and packet.size == 0 and not (packet.stream.type == "video"):
                    continue  # the demuxer's flush packet
                if packet.stream.type == "audio":
                    if packet.size == 0:
                        continue
                    if aencoder is None:
                        _mux_all(written, aouts, packet)
                        continue
                    for frame in ain.decode(packet):
                        limits.check_audio(frame.sample_rate, frame.layout.nb_channels)  # the header may lie
                        frame.pts = None
                        for resampled in resampler.resample(frame):
                            fifo.write(resampled)
                        while fifo.samples >= 1024:
                            chunk = fifo.read(1024)
                            chunk.pts, chunk.time_base = samples, Fraction(1, 48_000)
                            samples += 1024
                            for encoded_packet in aencoder.encode(chunk):
                                _mux_all(written, aouts, encoded_packet)
                    continue
                frames = vin.decode(packet)  # an empty flush packet drains the decoder
                if remux_top and packet.size and outputs[0] is not None:
                    packet.stream = vouts[0]
                    outputs[0].mux(packet)
                for frame in frames:
                    seconds = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                    if seconds is not None:
                        duration = float(frame.duration * frame.time_base) if frame.duration else 1 / float(rate)
                        board.offer(frame, seconds, duration)
                        report(seconds)
                    key = remux_top and frame.key_frame
                    for i, (rung, scaler) in enumerate(zip(encoded, scalers)):
                        picture = scaler.reformat(frame, width=rung.width, height=rung.height, format="yuv420p")
                        picture.pts, picture.time_base = frame.pts, frame.time_base
                        picture.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
                        stream = vouts[first_encoded + i]
                        for out_packet in stream.encode(picture):
                            outputs[rungs.index(rung)].mux(out_packet)
                    deadline.check()
            for i, rung in enumerate(encoded):
                for out_packet in vouts[first_encoded + i].encode(None):
                    outputs[rungs.index(rung)].mux(out_packet)
            if aencoder is not None:
                for encoded_packet in aencoder.encode(None):
                    _mux_all(written, aouts, encoded_packet)
            board.finish()
        finally:
            for out in written:
                out.close()

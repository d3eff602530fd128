"""How much work an upload may make the edge do, checked before any frame is decoded.

A small file can describe an enormous amount of work: 176 KB of 7680x4320 VP8 took an
edge from 0.7 to 3 GB, and 571 KB (one 4K keyframe, then 1,200 tiny repeats) held both
cores for 75 s (issue #14). Size on disk says nothing; what the file *describes* does. So:

- the header's picture size is checked when the file is opened (no decoding);
- one pass over the packets (demuxed, not decoded: cheap) counts the frames and measures
  the duration, which a header can lie about;
- the decoder itself refuses pictures over `max_pixels` (FFmpeg's `max_pixels`), so a
  stream that switches to a huge size mid-way fails at that packet instead of allocating it;
- a wall-clock budget covers the rest (a job that is within every limit and still slow).

Past a limit the upload fails with `OverLimit`, whose message says which limit and how
to raise it; `GET /v1/videos/{id}` shows it as the video's `reason`.
"""

from __future__ import annotations

import time

import msgspec


MIN_AUDIO_RATE = 8_000
MAX_AUDIO_RATE = 192_000
MAX_AUDIO_CHANNELS = 8


class OverLimit(ValueError):
    """The upload asks for more work than this edge allows; the message says which limit."""


class MediaLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Per-upload limits (README "Configuration": `WAVE_UPLOAD_MAX_*`, `WAVE_TRANSCODE_BUDGET_S`)."""

    max_side: int = 4096  # either side, so portrait 2160x3840 passes like landscape
    max_pixels: int = 4096 * 2160  # DCI 4K; 8K (7680x4320, 33 Mpx) is refused
    max_duration_s: float = 4 * 3600.0
    max_frames: int = 4 * 3600 * 60  # four hours at 60 fps
    budget_s: float = 3600.0  # wall-clock seconds for one upload's whole packaging

    def deadline(self) -> "Deadline":
        return Deadline(self.budget_s)

    def check_size(self, width: int, height: int) -> None:
        if width > self.max_side or height > self.max_side:
            raise OverLimit(f"the video is {width}x{height}; uploads may be at most {self.max_side} pixels"
                            " wide or high (WAVE_UPLOAD_MAX_SIDE)")
        if width * height > self.max_pixels:
            raise OverLimit(f"the video is {width}x{height} ({width * height} pixels a frame); uploads may have"
                            f" at most {self.max_pixels} (WAVE_UPLOAD_MAX_PIXELS)")

    def check_duration(self, seconds: float) -> None:
        if seconds > self.max_duration_s:
            raise OverLimit(f"the video lasts {seconds:.0f} s; uploads may last at most {self.max_duration_s:g} s"
                            " (WAVE_UPLOAD_MAX_DURATION_S)")

    def check_frames(self, frames: int) -> None:
        if frames > self.max_frames:
            raise OverLimit(f"the video has more than {self.max_frames} frames, the limit"
                            " (WAVE_UPLOAD_MAX_FRAMES)")

    def check_audio(self, sample_rate: int, channels: int) -> None:
        """Sound is resampled to 48 kHz stereo: a stream that claims 1 Hz (a few KB of
        file, honest about its length) asks for 48,000 output samples per input one, and
        took 5 GB of memory for a 9 KB upload. Real sound is 8-192 kHz, in at most 8
        channels (7.1)."""
        if not MIN_AUDIO_RATE <= sample_rate <= MAX_AUDIO_RATE:
            raise OverLimit(f"the sound is sampled at {sample_rate} Hz; uploads' sound must be"
                            f" {MIN_AUDIO_RATE}-{MAX_AUDIO_RATE} Hz")
        if not 0 < channels <= MAX_AUDIO_CHANNELS:
            raise OverLimit(f"the sound has {channels} channels; uploads' sound may have 1 to {MAX_AUDIO_CHANNELS}")

    def decoder_options(self) -> dict[str, str]:
        """Options for a video decoder: FFmpeg refuses (EINVAL) any picture over the limit."""
        return {"max_pixels": str(self.max_pixels)}

    def oversized_frame(self) -> OverLimit:
        return OverLimit(f"a frame of the video is larger than {self.max_pixels} pixels"
                         " (WAVE_UPLOAD_MAX_PIXELS)")


class Deadline:
    """The processing-time budget of one upload, checked between packets and frames."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._end = time.monotonic() + budget_s

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise OverLimit(f"processing took longer than the budget of {self.budget_s:g} s"
                            " (WAVE_TRANSCODE_BUDGET_S)")


def check_stream(container, limits: MediaLimits, deadline: Deadline) -> None:
    """Check the first video stream of an open PyAV input container against `limits`
    without decoding it: the header's size and duration, then a pass over its packets for
    the real frame count and duration."""
    import av  # here, not at the top: settings import this module, and the CLI needs no PyAV

    stream = container.streams.video[0]
    limits.check_size(stream.codec_context.width, stream.codec_context.height)
    if container.streams.audio:
        sound = container.streams.audio[0].codec_context
        limits.check_audio(sound.sample_rate, sound.channels)
    if container.duration:
        limits.check_duration(container.duration / av.time_base)
    frames = 0
    first = last = None
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's flush packet
        frames += 1
        if frames > limits.max_frames:
            limits.check_frames(frames)
        if frames % 256 == 0:
            deadline.check()
        if packet.pts is not None and packet.time_base is not None:
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            first = start if first is None else min(first, start)
            last = end if last is None else max(last, end)
            if last - first > limits.max_duration_s:
                limits.check_duration(last - first)

"""Synthetic media for streaming tests: a moving pattern with a frame counter, a tone."""

from __future__ import annotations

import asyncio
import io
import time
from fractions import Fraction

import av
import numpy as np
from aiortc import AudioStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError


class PatternTrack(VideoStreamTrack):
    """A bar sweeping across a gradient; the frame number is encoded in the top-left
    16 blocks (white = 1), so a receiver can read which frame it got."""

    def __init__(self, width: int = 640, height: int = 360, fps: float = 30) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.fps = fps
        self.count = 0
        gradient = np.linspace(0, 255, width, dtype=np.uint8)
        self._base = np.dstack([np.tile(gradient, (height, 1))] * 3)

    async def next_timestamp(self) -> tuple[int, Fraction]:
        """aiortc's, at `fps` instead of its fixed 30 (webcams run at 15, 20, 25...)."""
        if self.readyState != "live":
            raise MediaStreamError
        if hasattr(self, "_timestamp"):
            self._timestamp += int(90_000 / self.fps)
            await asyncio.sleep(self._start + self._timestamp / 90_000 - time.time())
        else:
            self._start, self._timestamp = time.time(), 0
        return self._timestamp, Fraction(1, 90_000)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = self._base.copy()
        x = (self.count * 8) % self.width
        img[:, x:x + 8] = (255, 0, 0)
        for bit in range(16):
            if self.count >> bit & 1:
                img[0:16, bit * 16:(bit + 1) * 16] = 255
            else:
                img[0:16, bit * 16:(bit + 1) * 16] = 0
        self.count += 1
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def read_counter(frame: av.VideoFrame) -> int:
    img = frame.to_ndarray(format="rgb24")
    return sum(1 << bit for bit in range(16) if img[4:12, bit * 16 + 4:bit * 16 + 12].mean() > 127)


class ToneTrack(AudioStreamTrack):
    """440 Hz, 48 kHz, 20 ms frames."""

    def __init__(self) -> None:
        super().__init__()
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # paces and stamps a 20 ms frame of silence
        n = frame.samples
        t = (np.arange(self._samples, self._samples + n) / 48_000)
        tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
        self._samples += n
        layout = frame.layout.name
        data = np.repeat(tone, len(frame.layout.channels)).reshape(1, -1)
        out = av.AudioFrame.from_ndarray(data, format="s16", layout=layout)
        out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
        return out


def decode_fmp4(init: bytes, segment: bytes) -> tuple[list[av.VideoFrame], list[str]]:
    """Decode an fMP4 segment with its init section; returns video frames and codec names."""
    with av.open(io.BytesIO(init + segment), "r") as container:
        codecs = [s.codec_context.name for s in container.streams]
        frames = list(container.decode(video=0))
    return frames, codecs


def write_file(path, fmt: str, vcodec: str, acodec: str | None, seconds: float = 3.0,
               size: tuple[int, int] = (320, 240), fps: int = 25) -> None:
    """A test-pattern video (with a tone) written by PyAV, e.g. H.264/AAC MP4 or VP9/Opus WebM."""
    width, height = size
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = None
        if acodec:
            audio = out.add_stream(acodec, rate=48_000)
            audio.layout = "stereo"
        frames = int(seconds * fps)
        gradient = np.linspace(0, 255, width, dtype=np.uint8)
        base = np.dstack([np.tile(gradient, (height, 1))] * 3)
        for i in range(frames):
            img = base.copy()
            img[:, (i * 4) % width:(i * 4) % width + 4] = (0, 255, 0)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if audio is not None:
            fmt_name = audio.codec_context.format.name if audio.codec_context.format else "fltp"
            per = audio.codec_context.frame_size or 960
            total = int(seconds * 48_000)
            for start in range(0, total, per):
                t = np.arange(start, start + per) / 48_000
                tone = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.vstack([tone, tone]), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 48_000, start
                if fmt_name != "fltp":
                    frame = av.AudioResampler(format=fmt_name, layout="stereo", rate=48_000).resample(frame)[0]
                for packet in audio.encode(frame):
                    out.mux(packet)
            for packet in audio.encode(None):
                out.mux(packet)


def video_packet_digests(path_or_bytes) -> list[str]:
    """SHA-1 of every video packet's payload, in order (equal lists: not re-encoded)."""
    import hashlib

    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    with av.open(source, "r") as container:
        return [hashlib.sha1(bytes(p)).hexdigest() for p in container.demux(video=0) if p.size]


def write_still_bomb(path, size: tuple[int, int], repeats: int, fps: int = 25, step: int = 1,
                     header_size: tuple[int, int] | None = None) -> None:
    """A hostile upload as attackers build them: one VP8 keyframe of `size`, then the same
    tiny "nothing changed" frame `repeats` times, `step` ticks of 1/`fps` apart. The file
    stays a few KB whatever `size`, `repeats` or the duration it describes. `header_size`:
    what the WebM header claims instead (the stream then grows at its keyframe)."""
    from fractions import Fraction

    width, height = size
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = Fraction(1, fps)
    encoder.options = {"deadline": "realtime", "cpu-used": "16", "b": "50k", "lag-in-frames": "0"}
    still = av.VideoFrame(width, height, "yuv420p")
    for plane in still.planes:
        plane.update(bytes(plane.buffer_size))
    packets = []
    for pts in range(2):
        still.pts = pts
        packets += encoder.encode(still)
    packets += encoder.encode(None)
    key, repeat = bytes(packets[0]), bytes(packets[1])
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=fps)
        stream.width, stream.height = header_size or size
        for i in range(repeats + 1):
            packet = av.Packet(key if i == 0 else repeat)
            packet.stream, packet.time_base = stream, Fraction(1, fps)
            packet.pts = packet.dts = i * step
            packet.is_keyframe = i == 0
            out.mux(packet)


def mux_tone(out: av.container.OutputContainer, audio: av.stream.Stream, seconds: float) -> None:
    """A 440 Hz stereo tone of `seconds` into `audio` (48 kHz, planar float), flushed."""
    per = audio.codec_context.frame_size or 1024
    for start in range(0, int(seconds * 48_000), per):
        t = np.arange(start, start + per) / 48_000
        tone = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.vstack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, start
        for packet in audio.encode(frame):
            out.mux(packet)
    for packet in audio.encode(None):
        out.mux(packet)


def write_low_rate_sound(path, samples: int, rate: int = 1) -> None:
    """One 64x64 picture and `samples` of silent stereo PCM that says it is sampled at
    `rate` Hz: a few KB, honest about its length, that resampling to 48 kHz multiplies."""
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("mpeg4", rate=1)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("pcm_s16le", rate=rate)
        sound.layout = "stereo"
        picture = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        picture.pts = 0
        for packet in [*video.encode(picture), *video.encode(None)]:
            out.mux(packet)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, samples * 2), np.int16), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*sound.encode(frame), *sound.encode(None)]:
            out.mux(packet)

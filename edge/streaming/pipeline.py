"""One encoder pipeline per live stream: decoded frames in, H.264/AAC live HLS out.

aiortc hands us decoded frames whatever the publisher sent (H.264, VP8, Opus), so each
stream is encoded exactly once here and every output is fed from these packets; nothing
is ever encoded per viewer. Encoding and muxing are blocking and CPU-bound, so they run
on the pipeline's own thread, fed through a bounded queue: a slow encoder drops frames
rather than stall the event loop or grow memory.

Timestamps are the wall-clock times the frames arrived (90 kHz video, 48 kHz audio
sample counts aligned to the same origin), and keyframes are forced on a 1 s grid of that
clock, not every N frames: a 20 fps webcam and a 60 fps game capture both get 1 s
segments (a frame-count GOP gave a 20 fps source 1.5 s ones). The HLS muxer cuts on those
keyframes, and `#EXT-X-PROGRAM-DATE-TIME` is true.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType

from edge.streaming.relay import Relay

log = logging.getLogger(__name__)

FPS = 30  # the encoder's nominal rate; real timestamps decide, whatever the source's rate
GOP_S = 1.0  # keyframe every second of the arrival clock: 1 s segments, quick joins
# x264's own keyframe interval, in frames, is only a backstop for a stalled clock: the
# grid above forces every keyframe (and any forced IDR resets x264's frame count).
X264_KEYINT = FPS * 10
SEGMENT_S = 1
PLAYLIST_SEGMENTS = 6
VIDEO_TB = Fraction(1, 90_000)
AUDIO_RATE = 48_000
AAC_FRAME = 1024
OPUS_FRAME = 960  # 20 ms
KEYFRAME_MIN_INTERVAL_S = 0.5

PLAYLIST = "index.m3u8"
INIT = "init.mp4"


class LivePipeline:
    """Encode a stream once: H.264 + AAC into sliding-window fMP4 HLS in `directory` (whose
    segments, all kept, are also the publish's recording), and
    the same H.264 (Annex B) plus Opus to the WHEP viewers' relay.

    Create it on the event loop: relayed packets are handed back to that loop."""

    running: "set[LivePipeline]" = set()  # every pipeline alive in this process

    def __init__(self, stream_id: str, directory: Path, *, audio: bool, max_queue: int = 120) -> None:
        self.stream_id = stream_id
        self.directory = directory
        self.audio = audio
        self.frames_in = 0
        self.frames_encoded = 0
        self.frames_dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._t0: float | None = None
        self._loop = asyncio.get_running_loop()
        self.relay = Relay()
        self._keyframe_wanted = False
        self._last_forced = 0.0
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{stream_id}", daemon=True)
        directory.mkdir(parents=True, exist_ok=True)
        LivePipeline.running.add(self)
        self._thread.start()

    # -- called on the event loop -------------------------------------------------------
    def feed_video(self, frame: av.VideoFrame) -> None:
        self._put(("video", frame, self._clock()))

    def feed_audio(self, frame: av.AudioFrame) -> None:
        self._put(("audio", frame, self._clock()))

    def request_keyframe(self) -> None:
        """Ask for an IDR on the next frame (a viewer joined or lost packets); rate-limited."""
        now = time.monotonic()
        if now - self._last_forced >= KEYFRAME_MIN_INTERVAL_S:
            self._last_forced = now
            self._keyframe_wanted = True

    def close(self) -> None:
        """Flush the encoder and end the playlist (#EXT-X-ENDLIST); returns at once."""
        self._queue.put(None)
        self.relay.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to finish writing; True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _clock(self) -> float:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def _put(self, item) -> None:
        self.frames_in += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.frames_dropped += 1

    # -- the pipeline thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._encode_loop()
        except Exception:
            log.exception("pipeline of stream %s failed", self.stream_id)
        finally:
            LivePipeline.running.discard(self)

    def _encode_loop(self) -> None:
        container = None
        video = audio = None
        resampler = fifo = None
        opus = opus_resampler = opus_fifo = None
        opus_samples = 0
        last_pts = -1
        next_key_at = 0.0
        audio_samples = None
        while True:
            item = self._queue.get()
            if item is None:
                break
            kind, frame, at = item
            if container is None:
                if kind != "video":
                    continue  # the first picture fixes the size; audio before it is dropped
                container, video, audio = self._open(frame.width, frame.height)
                if audio is not None:
                    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
                    fifo = av.AudioFifo()
                    opus = _opus_encoder()
                    opus_resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
                    opus_fifo = av.AudioFifo()
            if kind == "video":
                pts = int(at * 90_000)
                if pts <= last_pts:
                    pts = last_pts + 1
                last_pts = pts
                if frame.width != video.width or frame.height != video.height or frame.format.name != "yuv420p":
                    frame = frame.reformat(width=video.width, height=video.height, format="yuv420p")
                frame.pts, frame.time_base = pts, VIDEO_TB
                if at >= next_key_at:  # the 1 s grid; joins' extra IDRs do not move it
                    next_key_at = max(next_key_at + GOP_S, at + GOP_S / 2)
                    self._keyframe_wanted = True
                if self._keyframe_wanted:
                    self._keyframe_wanted = False
                    frame.pict_type = PictureType.I  # an IDR, with forced-idr=1
                for packet in video.encode(frame):
                    self._relay_video(packet, video.codec_context.extradata or b"")
                    container.mux(packet)
                self.frames_encoded += 1
            elif audio is not None:
                if audio_samples is None:
                    audio_samples = int(at * AUDIO_RATE)
                frame.pts = None
                for resampled in resampler.resample(frame):
                    fifo.write(resampled)
                for resampled in opus_resampler.resample(frame):
                    opus_fifo.write(resampled)
                while opus_fifo.samples >= OPUS_FRAME:
                    chunk = opus_fifo.read(OPUS_FRAME)
                    chunk.pts, chunk.time_base = opus_samples, Fraction(1, AUDIO_RATE)
                    opus_samples += OPUS_FRAME
                    for packet in opus.encode(chunk):
                        self._loop.call_soon_threadsafe(
                            self.relay.publish, "audio", bytes(packet), packet.pts, packet.time_base, True
                        )
                while fifo.samples >= AAC_FRAME:
                    chunk = fifo.read(AAC_FRAME)
                    chunk.pts, chunk.time_base = audio_samples, Fraction(1, AUDIO_RATE)
                    audio_samples += AAC_FRAME
                    for packet in audio.encode(chunk):
                        container.mux(packet)
        if container is not None:
            for packet in video.encode(None):
                container.mux(packet)
            if audio is not None:
                for packet in audio.encode(None):
                    container.mux(packet)
            container.close()  # writes the last segment and #EXT-X-ENDLIST

    def _relay_video(self, packet: av.Packet, extradata: bytes) -> None:
        # x264 writes Annex B; with a global header (as MP4 wants) SPS/PPS live only in
        # extradata, so put them before each keyframe for WebRTC receivers.
        data = bytes(packet)
        if packet.is_keyframe:
            data = extradata + data
        self._loop.call_soon_threadsafe(
            self.relay.publish, "video", data, packet.pts, VIDEO_TB, packet.is_keyframe
        )

    def _open(self, width: int, height: int):
        width, height = width - width % 2, height - height % 2
        container = av.open(
            str(self.directory / PLAYLIST),
            "w",
            format="hls",
            options={
                "hls_time": str(SEGMENT_S),
                "hls_list_size": str(PLAYLIST_SEGMENTS),
                "hls_segment_type": "fmp4",
                "hls_fmp4_init_filename": INIT,
                "hls_segment_filename": str(self.directory / "seg_%05d.m4s"),
                # temp_file: segments and playlist appear atomically (written, then renamed),
                # so a crash leaves only whole segments. Segments are kept: they are also
                # the recording (edge/vod/package.py lists them all in vod.m3u8).
                "hls_flags": "program_date_time+independent_segments+temp_file",
            },
        )
        video = container.add_stream(
            "libx264",
            rate=FPS,
            options={
                "preset": "ultrafast",
                "tune": "zerolatency",
                "profile": "baseline",
                # no sliced threads: Chrome decodes sliced x264 output badly over WebRTC
                "x264-params": f"keyint={X264_KEYINT}:min-keyint=1:scenecut=0"
                ":sliced-threads=0:forced-idr=1",
            },
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = VIDEO_TB
        audio = None
        if self.audio:
            audio = container.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "stereo"
        return container, video, audio


def _opus_encoder() -> av.CodecContext:
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate = AUDIO_RATE
    opus.layout = "stereo"
    opus.format = "s16"
    opus.bit_rate = 64_000
    opus.time_base = Fraction(1, AUDIO_RATE)
    opus.open()
    return opus

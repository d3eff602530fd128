"""One encoder per live stream: decoded frames in, encoded packets out to its outputs.

aiortc hands us decoded frames whatever the publisher sent (H.264, VP8, Opus), so each
stream is encoded exactly once here (x264, AAC, Opus) and every output is fed from these
packets; nothing is ever encoded per viewer. The encoder knows no container or transport:
the packets go to the `outputs.Output`s it was given (the WHEP relay, the LL-HLS writer).
A tenant's lower live renditions (`renditions.py`) are encoded here too, once per stream,
from the same pictures. Encoding and muxing are blocking and CPU-bound, so they run on
the pipeline's own thread, fed through a bounded queue: a slow encoder drops frames
rather than stall the event loop or grow memory.

Timestamps are the wall-clock times the frames arrived (90 kHz video, 48 kHz audio
sample counts aligned to the same origin), and keyframes are forced on a 1 s grid of that
clock, not every N frames: a 20 fps webcam and a 60 fps game capture both get 1 s
segments (a frame-count GOP gave a 20 fps source 1.5 s ones). The HLS muxer cuts on those
keyframes, and `#EXT-X-PROGRAM-DATE-TIME` is true.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from fractions import Fraction
from typing import Sequence

import av
from av.codec.context import Flags
from av.video.frame import PictureType

from edge.streaming.outputs import Encoded, Output
from edge.streaming.renditions import Rendition, scaled_size

log = logging.getLogger(__name__)

FPS = 30  # the encoder's nominal rate; real timestamps decide, whatever the source's rate
GOP_S = 1.0  # keyframe every second of the arrival clock: 1 s segments, quick joins
# x264's own keyframe interval, in frames, is only a backstop for a stalled clock: the
# grid above forces every keyframe (and any forced IDR resets x264's frame count).
X264_KEYINT = FPS * 10
VIDEO_TB = Fraction(1, 90_000)
AUDIO_RATE = 48_000
AAC_FRAME = 1024
OPUS_FRAME = 960  # 20 ms
KEYFRAME_MIN_INTERVAL_S = 0.5
# Longest a picture lasts: after this without a new one, the last is repeated. A part is
# cut at the first frame past hls_writer.PART_S (0.2 s), so it lasts at most 0.2 s plus
# one frame; with this it stays under PART_TARGET_S (0.3 s) with 50 ms to spare for a
# late wake-up on a busy machine. Sources under 20 fps get a repeat between their own
# pictures, which x264 encodes in a few bytes.
STALL_FILL_S = 0.05
# How far the sound's sample count may drift from the arrival clock before it is put back
# on it (silence added, or a frame dropped): above arrival jitter, below what viewers see.
AUDIO_RESYNC_S = 0.2


class LivePipeline:
    """Encode a stream once and hand every packet to `outputs`, in their order.

    Create it on any thread; `feed_*`, `request_keyframe` and `close` are for the event
    loop, which owns the publish."""

    running: "set[LivePipeline]" = set()  # every pipeline alive in this process

    def __init__(self, stream_id: str, outputs: Sequence[Output], *, audio: bool, max_queue: int = 120,
                 renditions: Sequence[Rendition] = ()) -> None:
        self.stream_id = stream_id
        self.outputs = tuple(outputs)
        # Lower rungs (renditions.py): each encoded here once, from the same pictures, only
        # when the source is taller; a rung that is not gets `close` only.
        self.renditions = tuple(renditions)
        self.audio = audio
        self.frames_in = 0
        self.frames_encoded = 0
        self.frames_dropped = 0
        self.frames_repeated = 0  # pictures encoded again while the source stalled
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._t0: float | None = None
        self._keyframe_wanted = False
        self._last_forced = 0.0
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{stream_id}", daemon=True)
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
        """Flush the encoders and close the outputs (the playlist gets #EXT-X-ENDLIST);
        returns at once."""
        self._queue.put(None)

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
        outputs = self.outputs
        encoders: _Encoders | None = None
        rungs: list[tuple[Rendition, av.VideoCodecContext]] = []
        last_pts = -1
        next_key_at = 0.0
        last_picture: av.VideoFrame | None = None  # the newest, as encoded
        last_at = 0.0
        while True:
            try:
                wait = None if last_picture is None else max(0.0, last_at + STALL_FILL_S - self._clock())
                item = self._queue.get(timeout=wait)
            except queue.Empty:  # the source stalls: its last picture again, now
                self.frames_repeated += 1
                last_picture.pict_type = PictureType.NONE  # a keyframe only if the grid wants one
                item = ("video", last_picture, self._clock())
            if item is None:
                break
            kind, frame, at = item
            if encoders is None:
                if kind != "video":
                    continue  # the first picture fixes the size; audio before it is dropped
                encoders = _Encoders(frame.width, frame.height, self.audio)
                for output in outputs:
                    output.open(encoders.encoded)
                rungs = _rungs(self.renditions, encoders)
            if kind == "video":
                video = encoders.video
                pts = int(at * 90_000)
                if pts <= last_pts:
                    pts = last_pts + 1
                last_pts = pts
                if frame.width != video.width or frame.height != video.height or frame.format.name != "yuv420p":
                    frame = frame.reformat(width=video.width, height=video.height, format="yuv420p")
                frame.pts, frame.time_base = pts, VIDEO_TB
                last_picture, last_at = frame, at
                if at >= next_key_at:  # the 1 s grid; joins' extra IDRs do not move it
                    next_key_at = max(next_key_at + GOP_S, at + GOP_S / 2)
                    self._keyframe_wanted = True
                if self._keyframe_wanted:
                    self._keyframe_wanted = False
                    frame.pict_type = PictureType.I  # an IDR, with forced-idr=1
                for packet in video.encode(frame):
                    for output in outputs:
                        output.video(packet)
                for rendition, encoder in rungs:
                    small = frame.reformat(width=encoder.width, height=encoder.height, format="yuv420p")
                    small.pts, small.time_base, small.pict_type = frame.pts, VIDEO_TB, frame.pict_type
                    for packet in encoder.encode(small):  # keyframes on the source's instants
                        rendition.output.video(packet)
                self.frames_encoded += 1
            elif encoders.aac is not None:
                opus, aac = encoders.encode_audio(frame, at)
                for packet in opus:
                    for output in outputs:
                        output.audio_opus(packet)
                for packet in aac:
                    for output in outputs:
                        output.audio_aac(packet)
                    for rendition, _ in rungs:
                        rendition.output.audio_aac(packet)
        if encoders is not None:
            for packet in encoders.video.encode(None):
                for output in outputs:
                    output.video(packet)
            for rendition, encoder in rungs:
                for packet in encoder.encode(None):
                    rendition.output.video(packet)
            if encoders.aac is not None:
                for packet in encoders.aac.encode(None):
                    for output in outputs:
                        output.audio_aac(packet)
                    for rendition, _ in rungs:
                        rendition.output.audio_aac(packet)
        for output in outputs:
            output.close()
        for rendition in self.renditions:
            rendition.output.close()


class _Encoders:
    """x264, and with audio AAC (for HLS) and Opus (for WebRTC), opened for one picture
    size. SPS/PPS and the AAC configuration stay out of the packets (global headers):
    each output puts them where its format wants them."""

    def __init__(self, width: int, height: int, audio: bool) -> None:
        width, height = width - width % 2, height - height % 2
        self.video = _x264(width, height)
        self.aac = self.opus = None
        if audio:
            self.aac = _aac_encoder()
            self._aac_resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            self._aac_fifo = av.AudioFifo()
            self._aac_samples: int | None = None
            self.opus = _opus_encoder()
            self._opus_resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
            self._opus_fifo = av.AudioFifo()
            self._opus_samples = 0
        self.encoded = Encoded(width=width, height=height, frame_rate=FPS, video_time_base=VIDEO_TB,
                               h264_headers=bytes(self.video.extradata or b""), audio_rate=AUDIO_RATE,
                               aac_config=bytes(self.aac.extradata or b"") if self.aac is not None else None)

    def encode_audio(self, frame: av.AudioFrame, at: float) -> tuple[list[av.Packet], list[av.Packet]]:
        """One decoded audio frame in; the Opus and the AAC packets it completes out. AAC
        timestamps start at the first audio frame's arrival on the shared clock.

        Sound is timed by counting samples, pictures by their arrival: when the sound
        stops (an uplink stall) its count stops too, and the rest of the stream would play
        that long out of sync. So a frame that arrives more than `AUDIO_RESYNC_S` after the
        count's position starts after silence filling the gap, and one that arrives that
        much before it (a burst after the stall) is dropped (FFmpeg's `aresample=async`
        compensates the same way, with its own 0.1 s threshold: arrival times jitter more
        than sender timestamps)."""
        if self._aac_samples is None:
            self._aac_samples = int(at * AUDIO_RATE)
        late = int(at * AUDIO_RATE) - (self._aac_samples + self._aac_fifo.samples)
        if -late > AUDIO_RESYNC_S * AUDIO_RATE:
            return [], []
        opus, aac = [], []
        if late > AUDIO_RESYNC_S * AUDIO_RATE:
            while late > 0:  # a second at a time: memory stays bounded however long the gap
                gap = min(late, AUDIO_RATE)
                self._aac_fifo.write(_silence("fltp", gap))
                self._opus_fifo.write(_silence("s16", gap))
                self._drain(opus, aac)
                late -= gap
        frame.pts = None
        for resampled in self._aac_resampler.resample(frame):
            self._aac_fifo.write(resampled)
        for resampled in self._opus_resampler.resample(frame):
            self._opus_fifo.write(resampled)
        self._drain(opus, aac)
        return opus, aac

    def _drain(self, opus: list[av.Packet], aac: list[av.Packet]) -> None:
        """Encode every whole Opus and AAC frame the FIFOs hold, appending the packets."""
        while self._opus_fifo.samples >= OPUS_FRAME:
            chunk = self._opus_fifo.read(OPUS_FRAME)
            chunk.pts, chunk.time_base = self._opus_samples, Fraction(1, AUDIO_RATE)
            self._opus_samples += OPUS_FRAME
            opus += self.opus.encode(chunk)
        while self._aac_fifo.samples >= AAC_FRAME:
            chunk = self._aac_fifo.read(AAC_FRAME)
            chunk.pts, chunk.time_base = self._aac_samples, Fraction(1, AUDIO_RATE)
            self._aac_samples += AAC_FRAME
            aac += self.aac.encode(chunk)


def _silence(sample_format: str, samples: int) -> av.AudioFrame:
    frame = av.AudioFrame(format=sample_format, layout="stereo", samples=samples)
    frame.sample_rate = AUDIO_RATE
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame


def _rungs(renditions: Sequence[Rendition], encoders: "_Encoders") -> list[tuple[Rendition, av.VideoCodecContext]]:
    """Open an encoder and the output of every rung below the source's height."""
    source = encoders.encoded
    rungs = []
    for rendition in renditions:
        if rendition.height >= source.height:
            continue
        width, height = scaled_size(source.width, source.height, rendition.height)
        encoder = _x264(width, height, rendition.bitrate)
        rendition.output.open(Encoded(width=width, height=height, frame_rate=FPS, video_time_base=VIDEO_TB,
                                      h264_headers=bytes(encoder.extradata or b""), audio_rate=AUDIO_RATE,
                                      aac_config=source.aac_config))
        rungs.append((rendition, encoder))
    return rungs


def _x264(width: int, height: int, bitrate: int | None = None) -> av.VideoCodecContext:
    video = av.CodecContext.create("libx264", "w")
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.framerate = FPS
    video.time_base = VIDEO_TB
    video.flags |= Flags.global_header
    # no sliced threads: Chrome decodes sliced x264 output badly over WebRTC
    params = f"keyint={X264_KEYINT}:min-keyint=1:scenecut=0:sliced-threads=0:forced-idr=1"
    if bitrate is not None:
        # A ladder rung: the source's quality (x264's default CRF), capped at the rung's
        # bitrate (one-second VBV), so it never costs more than the source nor its budget.
        kbps = bitrate // 1000
        params += f":crf=23:vbv-maxrate={kbps}:vbv-bufsize={kbps}"
    video.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "x264-params": params}
    video.open()
    return video


def _aac_encoder() -> av.AudioCodecContext:
    aac = av.CodecContext.create("aac", "w")
    aac.sample_rate = AUDIO_RATE
    aac.layout = "stereo"
    aac.format = "fltp"
    aac.time_base = Fraction(1, AUDIO_RATE)
    aac.flags |= Flags.global_header
    aac.open()
    return aac


def _opus_encoder() -> av.CodecContext:
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate = AUDIO_RATE
    opus.layout = "stereo"
    opus.format = "s16"
    opus.bit_rate = 64_000
    opus.time_base = Fraction(1, AUDIO_RATE)
    opus.open()
    return opus

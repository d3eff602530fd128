"""The encoder's seam: it hands packets to any `Output`, and knows no container format.

An LL-HLS writer or an extra rendition plugs in here, so this checks the contract an
output relies on (edge/streaming/outputs.py) without WebRTC or HLS around it.
"""

from __future__ import annotations

import re
import time

import av
import numpy as np

from edge import media_layout
from edge.streaming.hls_writer import PART_TARGET_S, TARGET_DURATION_S, HlsWriter
from edge.streaming.outputs import Encoded
from edge.streaming.pipeline import LivePipeline


class Collecting:
    """An output that keeps what it was handed, on the encoder's thread."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.encoded: Encoded | None = None
        self.packets: list[tuple[bytes, int, bool]] = []
        self.aac = 0
        self.aac_pts: list[int] = []
        self.opus = 0

    def open(self, encoded: Encoded) -> None:
        self.calls.append("open")
        self.encoded = encoded

    def video(self, packet: av.Packet) -> None:
        self.packets.append((bytes(packet), packet.pts, packet.is_keyframe))

    def audio_aac(self, packet: av.Packet) -> None:
        self.aac += 1
        self.aac_pts.append(packet.pts)

    def audio_opus(self, packet: av.Packet) -> None:
        self.opus += 1

    def close(self) -> None:
        self.calls.append("close")



def _sound() -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo", samples=1600)  # 1/30 s at 48 kHz
    frame.sample_rate = 48_000
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    return frame


def _feed(pipeline: LivePipeline, seconds: float, audio: bool) -> None:
    picture = np.zeros((240, 320, 3), np.uint8)
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        picture[:, :, 0] = i % 255
        pipeline.feed_video(av.VideoFrame.from_ndarray(picture, format="rgb24"))
        if audio:
            pipeline.feed_audio(_sound())
        i += 1
        time.sleep(1 / 30)


def test_every_output_gets_every_packet_of_one_encoding():
    first, second = Collecting(), Collecting()
    pipeline = LivePipeline("st_0123456789abcdef", [first, second], audio=True)
    _feed(pipeline, 2.2, audio=True)
    pipeline.close()
    assert pipeline.join(10)
    for out in (first, second):
        assert out.calls == ["open", "close"]
        assert (out.encoded.width, out.encoded.height) == (320, 240)
        assert out.encoded.h264_headers.startswith(b"\x00\x00\x00\x01")  # Annex B SPS/PPS, kept apart
        assert out.encoded.aac_config
        packets = out.packets
        assert len(packets) >= 50
        assert packets[0][2], "the first packet is a keyframe"
        assert sum(1 for _, _, key in packets if key) >= 2, "a keyframe every second of the clock"
        assert all(not data.startswith(out.encoded.h264_headers) for data, _, _ in packets)
        assert out.aac >= 80 and out.opus >= 90  # ~2 s of 1024- and 960-sample packets
    assert first.packets == second.packets  # encoded once, handed to both


def test_an_output_that_never_got_a_picture_is_still_closed():
    out = Collecting()
    pipeline = LivePipeline("st_0123456789abcdef", [out], audio=False)
    pipeline.close()
    assert pipeline.join(10)
    assert out.calls == ["close"]


def test_the_hls_writer_as_an_output_writes_the_live_layout(tmp_path):
    directory = tmp_path / "vd_0123456789abcdef"
    pipeline = LivePipeline("st_0123456789abcdef", [HlsWriter(directory)], audio=True)
    _feed(pipeline, 2.5, audio=True)
    pipeline.close()
    assert pipeline.join(10)
    names = sorted(p.name for p in directory.iterdir())
    assert media_layout.PLAYLIST in names and media_layout.INIT in names
    segments = [n for n in names if media_layout.SEGMENT.match(n)]
    assert len(segments) >= 2 and all(media_layout.SERVED_FILE.match(n) for n in segments)
    playlist = (directory / media_layout.PLAYLIST).read_text()
    assert "#EXT-X-ENDLIST" in playlist and "#EXT-X-PROGRAM-DATE-TIME" in playlist
    with av.open(str(directory / media_layout.PLAYLIST)) as played:
        kinds = {s.type: s.codec_context.name for s in played.streams}
        assert kinds == {"video": "h264", "audio": "aac"}
        assert played.streams.audio[0].codec_context.sample_rate == 48_000
        assert sum(1 for _ in played.decode(video=0)) >= 50


def test_a_source_that_stalls_keeps_parts_within_the_part_target(tmp_path):
    """A publisher that stops sending pictures for 2 s without leaving: its last picture is
    encoded again meanwhile, so no part outlasts PART-TARGET and no segment TARGETDURATION
    (without it, one part lasted the whole stall), and the stall is still on the timeline."""
    writer = HlsWriter(tmp_path / "vd_0123456789abcdef")
    pipeline = LivePipeline("st_0123456789abcdef", [writer], audio=False)
    _feed(pipeline, 1.5, audio=False)
    time.sleep(2.0)
    _feed(pipeline, 1.0, audio=False)
    pipeline.close()
    assert pipeline.join(10)
    segments = writer.snapshot.segments
    parts = [part for segment in segments for part in segment.parts]
    assert len(segments) >= 4 and max(part.duration for part in parts) <= PART_TARGET_S
    assert max(segment.duration for segment in segments) <= TARGET_DURATION_S
    assert sum(segment.duration for segment in segments) >= 4.0  # 4.5 s fed, the stall included
    assert pipeline.frames_repeated >= 30  # 2 s at 20 a second


def test_sound_and_picture_stay_together_after_both_stall(tmp_path):
    """A publisher whose uplink stalls for 2 s (no picture, no sound) and comes back: the
    sound's timeline is the arrival clock's again (2 s of silence), as the picture's is, so
    the recording does not play the rest of the stream 2 s out of sync."""
    directory = tmp_path / "vd_0123456789abcdef"
    pipeline = LivePipeline("st_0123456789abcdef", [HlsWriter(directory)], audio=True)
    _feed(pipeline, 1.5, audio=True)
    time.sleep(2.0)
    _feed(pipeline, 1.5, audio=True)
    pipeline.close()
    assert pipeline.join(10)
    ends = {}
    with av.open(str(directory / media_layout.PLAYLIST)) as played:
        for packet in played.demux():
            if packet.pts is not None:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                ends[packet.stream.type] = max(ends.get(packet.stream.type, 0.0), end)
    assert ends["video"] >= 4.5 and abs(ends["audio"] - ends["video"]) < 0.3, ends


def test_a_burst_of_sound_ahead_of_the_clock_is_cut_back_to_it():
    """Sound delivered all at once (1.7 s of it in an instant, as a jitter buffer empties
    after a stall) would run the sound's timeline ahead of the pictures: what passes the
    clock by more than AUDIO_RESYNC_S is dropped, so the sound still ends with the picture."""
    out = Collecting()
    pipeline = LivePipeline("st_0123456789abcdef", [out], audio=True)
    _feed(pipeline, 1.0, audio=True)
    for _ in range(50):
        pipeline.feed_audio(_sound())
    _feed(pipeline, 1.0, audio=True)
    pipeline.close()
    assert pipeline.join(10)
    video_end = max(pts for _, pts, _ in out.packets) / 90_000
    audio_end = max(out.aac_pts) / 48_000
    assert abs(audio_end - video_end) < 0.3, (audio_end, video_end)


def test_media_ids_and_file_names_come_from_one_place():
    assert media_layout.STREAM_ID.match(media_layout.new_stream_id())
    assert media_layout.VIDEO_ID.match(media_layout.new_video_id())
    assert re.fullmatch(media_layout.MEDIA_ID_PATTERN, media_layout.new_video_id())
    for bad in ("../etc", "st_0123", "vd_0123456789ABCDEF", "st_0123456789abcdef/x"):
        assert not media_layout.MEDIA_ID.match(bad)
    for name in ("index.m3u8", "init.mp4", "seg_00001.m4s", "poster.jpg"):
        assert media_layout.SERVED_FILE.match(name)
    for name in ("vod.m3u8", "seg_1.m4s", "../index.m3u8", "hls.m3u8", "seg_０００００.m4s"):
        assert not media_layout.SERVED_FILE.match(name)

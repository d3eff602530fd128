"""The live HLS writer: an `Output` muxing the encoder's H.264 and AAC into fMP4 HLS.

FFmpeg's `hls` muxer writes a sliding playlist of 1 s segments (cut on the encoder's
keyframes) with `#EXT-X-PROGRAM-DATE-TIME`, and `#EXT-X-ENDLIST` when closed. Segments
are kept, not deleted as they leave the playlist: they are the publish's recording
(`edge/vod/recordings.py` lists them all in the VOD playlist when the publish ends).
"""

from __future__ import annotations

from pathlib import Path

import av

from edge import media_layout
from edge.streaming.outputs import Encoded

SEGMENT_S = 1
PLAYLIST_SEGMENTS = 6


class HlsWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._container: av.container.OutputContainer | None = None
        self._video = self._audio = None
        self._headers = b""
        directory.mkdir(parents=True, exist_ok=True)

    def open(self, encoded: Encoded) -> None:
        container = av.open(
            str(self.directory / media_layout.PLAYLIST),
            "w",
            format="hls",
            options={
                "hls_time": str(SEGMENT_S),
                "hls_list_size": str(PLAYLIST_SEGMENTS),
                "hls_segment_type": "fmp4",
                "hls_fmp4_init_filename": media_layout.INIT,
                "hls_segment_filename": media_layout.segment_template(self.directory),
                # temp_file: segments and playlist appear atomically (written, then renamed),
                # so a crash leaves only whole segments. Segments are kept: they are also
                # the recording (edge/vod/package.py lists them all in vod.m3u8).
                "hls_flags": "program_date_time+independent_segments+temp_file",
            },
        )
        # Packets already encoded: the video stream only carries them. PyAV reads the
        # codec's configuration (avcC) from the first packet, so that one gets SPS/PPS.
        self._video = container.add_mux_stream("h264", rate=encoded.frame_rate, width=encoded.width,
                                               height=encoded.height, time_base=encoded.video_time_base)
        self._headers = encoded.h264_headers
        if encoded.aac_config is not None:
            # A mux-only stream cannot be given the AAC configuration, so this one has a
            # codec context (opened by the muxer, never fed) holding the encoder's.
            self._audio = container.add_stream("aac", rate=encoded.audio_rate)
            self._audio.layout = "stereo"
            self._audio.codec_context.extradata = encoded.aac_config
        self._container = container

    def video(self, packet: av.Packet) -> None:
        if self._headers:
            packet = _with_prefix(packet, self._headers)
            self._headers = b""
        packet.stream = self._video
        self._container.mux(packet)

    def audio_aac(self, packet: av.Packet) -> None:
        if self._audio is not None:
            packet.stream = self._audio
            self._container.mux(packet)

    def audio_opus(self, packet: av.Packet) -> None:
        pass  # fMP4 HLS carries AAC here

    def close(self) -> None:
        if self._container is not None:
            self._container.close()  # writes the last segment and #EXT-X-ENDLIST
            self._container = None


def _with_prefix(packet: av.Packet, prefix: bytes) -> av.Packet:
    copy = av.Packet(prefix + bytes(packet))
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy

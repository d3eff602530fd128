"""The live HLS writer: an `Output` muxing one rendition's H.264 and AAC into LL-HLS.

FFmpeg's `hls` muxer has no LL-HLS parts, so this muxes fragmented MP4 itself (PyAV's
`mp4` muxer, `frag_keyframe` + `frag_duration`: a moof+mdat fragment at every keyframe
and every `PART_S`) into memory, reads each fragment back (`fmp4.py`) as it is written,
and files it as a part (`part_NNNNN_M.m4s`). A segment begins at a part that starts on a
keyframe once the current one is `SEGMENT_MIN_S` long (the encoder's keyframes are on a
1 s grid), and is written whole, the concatenation of its parts, as `seg_NNNNN.m4s`:
segments are kept (they are the publish's recording, `edge/vod/recordings.py`, and what
players without LL-HLS fetch); parts are deleted once no playlist lists them. The muxer
writes a fragment when the first packet of the next one arrives, so a part exists one
frame after its end; a source that stalls makes a part longer than PART-TARGET (its last
frame lasts until the next one comes).

Every file appears atomically (written under a temporary name, then renamed), so a crash
leaves only whole segments. After every part the writer hands an immutable
`llhls_playlist.Snapshot` to `publish` (on the encoder's thread: the caller hands it to
the event loop, which wakes blocked playlist reloads); the media playlist is also written
to disk at each segment and at the end (with `#EXT-X-ENDLIST`), for tools that read
the directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import av

from edge import media_layout
from edge.streaming import fmp4
from edge.streaming.llhls_playlist import PARTS_KEPT_SEGMENTS, PLAYLIST_SEGMENTS, Part, Segment, Snapshot, media_playlist
from edge.streaming.outputs import Encoded

PART_S = 0.2  # where the muxer cuts a fragment (a part) between keyframes
PART_TARGET_S = 0.3  # the declared upper bound: frame spacing and audio/video offsets add to PART_S
SEGMENT_MIN_S = 0.9  # a keyframe after this long starts a new segment
TARGET_DURATION_S = 2  # segments end on the 1 s keyframe grid; an extra IDR can stretch one to < 2 s
NOMINAL_SOURCE_BPS = 2_500_000  # BANDWIDTH before a segment was measured


class _Sink:
    """A write-only file for the muxer: bytes accumulate until the writer takes them."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk) -> int:
        self.data += chunk
        return len(chunk)


class HlsWriter:
    """One rendition's LL-HLS in `directory`: `prefix` "" for the source, `r360_` for a
    lower rung; `publish` receives each new playlist state (on the encoder's thread)."""

    def __init__(self, directory: Path, *, prefix: str = "", publish: Callable[[Snapshot], None] | None = None,
                 nominal_bps: int = NOMINAL_SOURCE_BPS) -> None:
        self.directory = directory
        self.prefix = prefix
        self._publish = publish or (lambda snap: None)
        self._nominal_bps = nominal_bps
        self._container: av.container.OutputContainer | None = None
        self._sink = _Sink()
        self._video = self._audio = None
        self._headers = b""
        self._tracks: dict[int, fmp4.Track] = {}
        self._video_track: int | None = None
        self._pending_moof: bytes | None = None
        self._parts: list[tuple[Part, bytes, float]] = []  # the open segment's parts, bytes, start
        self._segments: list[Segment] = []
        self._msn = 0
        self._wall0: float | None = None
        self._t0: float | None = None
        self._peak_bps = 0
        self.snapshot: Snapshot | None = None
        directory.mkdir(parents=True, exist_ok=True)

    # -- Output ----------------------------------------------------------------------
    def open(self, encoded: Encoded) -> None:
        container = av.open(self._sink, "w", format="mp4", options={
            # empty_moov: the init section first, alone; default_base_moof: fragments that
            # stand alone (CMAF); skip_trailer: no mfra index at the end of a live stream.
            "movflags": "frag_keyframe+empty_moov+default_base_moof+skip_trailer",
            "frag_duration": str(int(PART_S * 1_000_000)),
            "flush_packets": "1",
        })
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
        codecs = codecs_of(encoded)
        self.snapshot = Snapshot(prefix=self.prefix, width=encoded.width, height=encoded.height, codecs=codecs,
                                 nominal_bandwidth=self._nominal_bps, part_target=PART_TARGET_S,
                                 target_duration=TARGET_DURATION_S)
        self._publish(self.snapshot)

    def video(self, packet: av.Packet) -> None:
        if self._wall0 is None:
            self._wall0 = time.time()
        if self._headers:
            packet = _with_prefix(packet, self._headers)
            self._headers = b""
        packet.stream = self._video
        self._container.mux(packet)
        self._take()

    def audio_aac(self, packet: av.Packet) -> None:
        if self._audio is not None and self._wall0 is not None:  # audio before the first picture: dropped
            packet.stream = self._audio
            self._container.mux(packet)
            self._take()

    def audio_opus(self, packet: av.Packet) -> None:
        pass  # fMP4 HLS carries AAC here

    def close(self) -> None:
        if self._container is None:
            return
        try:
            self._container.close()  # the muxer writes its last fragment
            self._take()
        finally:
            self._container = None
        if self._parts:
            self._finish_segment()
        self.snapshot = self._state(ended=True)
        self._write_playlist()
        for name in self._part_files(keep=0):
            _remove(self.directory / name)
        self._publish(self.snapshot)

    # -- fragments into parts and segments -------------------------------------------
    def _take(self) -> None:
        """File every complete box the muxer wrote since the last call."""
        data = self._sink.data
        found = fmp4.boxes(data)
        if not found:
            return
        used = found[-1][1] + found[-1][2]
        for kind, at, size in found:
            box = bytes(data[at:at + size])
            if kind == b"moov":
                init = bytes(data[:at + size])
                self._tracks = fmp4.tracks(init)
                self._video_track = next((t.track_id for t in self._tracks.values() if t.kind == "video"), None)
                _write_atomic(self.directory / (self.prefix + media_layout.INIT), init)
            elif kind == b"moof":
                self._pending_moof = box
            elif kind == b"mdat" and self._pending_moof is not None:
                moof, self._pending_moof = self._pending_moof, None
                self._add_fragment(moof, moof + box)
        del data[:used]

    def _add_fragment(self, moof: bytes, fragment: bytes) -> None:
        runs = fmp4.fragment(moof, self._tracks)
        video = next((r for r in runs if r.track_id == self._video_track), None)
        run = video or (runs[0] if runs else None)
        if run is None:
            return
        scale = self._tracks[run.track_id].timescale if run.track_id in self._tracks else 1
        start, duration = run.start / scale, run.duration / scale
        independent = video is not None and video.starts_with_sync
        if self._t0 is None:
            self._t0 = start
        if independent and self._parts and self._segment_length() >= SEGMENT_MIN_S:
            self._finish_segment()
        if not self._parts and not independent:
            return  # a segment (and a player joining at its first part) starts on a keyframe
        name = media_layout.part_name(self._msn, len(self._parts), self.prefix)
        _write_atomic(self.directory / name, fragment)
        self._parts.append((Part(name, duration, independent, len(fragment)), fragment, start))
        self.snapshot = self._state(ended=False)
        self._publish(self.snapshot)

    def _segment_length(self) -> float:
        return sum(part.duration for part, _, _ in self._parts)

    def _finish_segment(self) -> None:
        name = media_layout.segment_name(self._msn, self.prefix)
        data = b"".join(fragment for _, fragment, _ in self._parts)
        _write_atomic(self.directory / name, data)
        duration = self._segment_length()
        start = self._parts[0][2]
        date = (self._wall0 or time.time()) + start - (self._t0 or 0.0)
        if duration > 0:
            self._peak_bps = max(self._peak_bps, int(len(data) * 8 / duration))
        self._segments.append(Segment(self._msn, name, duration, date, tuple(p for p, _, _ in self._parts), len(data)))
        self._segments = self._segments[-PLAYLIST_SEGMENTS:]
        self._msn += 1
        self._parts = []
        for old in self._part_files(keep=PARTS_KEPT_SEGMENTS + 1):
            _remove(self.directory / old)
        self.snapshot = self._state(ended=False)
        self._write_playlist()

    def _part_files(self, keep: int) -> list[str]:
        """Part files of the window's segments older than the newest `keep`."""
        old = self._segments[:-keep] if keep else self._segments
        return [part.name for seg in old for part in seg.parts]

    def _state(self, *, ended: bool) -> Snapshot:
        return Snapshot(
            prefix=self.prefix, width=self.snapshot.width, height=self.snapshot.height, codecs=self.snapshot.codecs,
            nominal_bandwidth=self._nominal_bps, part_target=PART_TARGET_S, target_duration=TARGET_DURATION_S,
            segments=tuple(self._segments), pending=tuple(p for p, _, _ in self._parts), next_msn=self._msn,
            ended=ended, peak_bandwidth=self._peak_bps)

    def _write_playlist(self) -> None:
        name = media_layout.PLAYLIST if not self.prefix else media_layout.media_playlist_name(self.prefix)
        _write_atomic(self.directory / name, media_playlist(self.snapshot).encode())


def codecs_of(encoded: Encoded) -> str:
    """The RFC 6381 `CODECS` of a rendition: avc1.PPCCLL from the SPS, AAC-LC."""
    video = "avc1.42e01f"
    headers = encoded.h264_headers
    for start in (headers.find(b"\x00\x00\x00\x01"), headers.find(b"\x00\x00\x01")):
        if start >= 0:
            nal = headers[start + (4 if headers[start + 2] == 0 else 3):]
            if len(nal) >= 4 and nal[0] & 0x1F == 7:
                video = f"avc1.{nal[1]:02x}{nal[2]:02x}{nal[3]:02x}"
            break
    return video + (",mp4a.40.2" if encoded.aac_config is not None else "")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _with_prefix(packet: av.Packet, prefix: bytes) -> av.Packet:
    copy = av.Packet(prefix + bytes(packet))
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    copy.is_keyframe = packet.is_keyframe
    return copy

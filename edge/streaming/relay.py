"""Fan-out of one stream's encoded packets to its WHEP viewers, without re-encoding.

The stream's single encoder hands each encoded frame, through `RelayOutput` (the
encoder's output for WebRTC), to the stream's `Relay`, which wraps it once in a
`rtp_fanout.SharedFrame` and gives it to every viewer's track of its kind. Two paths,
chosen by `WAVE_WHEP_FANOUT` (settings.whep_fanout, see whep.py):

- `shared` (default): a `rtp_fanout.FanoutTrack`; the frame is packetized into RTP once
  for all viewers, each viewer's sender only writes its headers, protects and sends (in C
  where `make` built it: one call per frame for all the viewers in order, the stream's
  `FanoutGroup` of that kind). `shared-python` is the same path with
  the Python writer only, kept for comparison in bench/edge.py.
- `per-viewer` (the former path, kept for comparison in bench/edge.py): a `PacketTrack`
  per viewer whose `recv()` gives aiortc an `av.Packet`; aiortc packetizes it again for
  every viewer. A viewer starts (and restarts after its queue overflowed) at a keyframe;
  the encoder is asked for one at once rather than making the viewer wait for the GOP.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from edge.streaming.outputs import Encoded
from edge.streaming.rtp_fanout import FanoutGroup, FanoutTrack, SharedFrame


class PacketTrack(MediaStreamTrack):
    def __init__(self, kind: str, on_need_keyframe: Callable[[], None], max_queue: int = 90) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._need_keyframe = kind == "video"
        self._on_need_keyframe = on_need_keyframe
        self.sent = 0
        self.bytes_sent = 0

    def push(self, frame: SharedFrame) -> None:
        if self._need_keyframe:
            if not frame.keyframe:
                return
            self._need_keyframe = False
        try:
            self._queue.put_nowait((frame.data, frame.pts, frame.time_base))
        except asyncio.QueueFull:  # a slow viewer: drop its backlog, resume at a keyframe
            while not self._queue.empty():
                self._queue.get_nowait()
            if self.kind == "video":
                self._need_keyframe = True
                self._on_need_keyframe()

    def finish(self) -> None:
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            self.stop()
            raise MediaStreamError
        data, pts, time_base = item
        packet = av.Packet(data)
        packet.pts, packet.time_base = pts, time_base
        self.sent += 1
        self.bytes_sent += len(data)
        return packet


def viewer_track(path: str, kind: str, on_need_keyframe: Callable[[], None]) -> PacketTrack | FanoutTrack:
    """A WHEP viewer's track of `kind` on the fan-out `path` (settings.WHEP_FANOUT_PATHS)."""
    if path in ("shared", "shared-python"):
        return FanoutTrack(kind, on_need_keyframe)
    if path == "per-viewer":
        return PacketTrack(kind, on_need_keyframe)
    raise ValueError(f"unknown WHEP fan-out path {path!r}")


class Relay:
    """The viewers' tracks of one stream; runs on the event loop. On the shared path the
    viewers whose sending is in order are also in the stream's `FanoutGroup` of their
    kind, which sends each frame to all of them in one C call; `push` serves the others."""

    def __init__(self) -> None:
        self.tracks: set[PacketTrack | FanoutTrack] = set()
        self.groups = {"video": FanoutGroup("video"), "audio": FanoutGroup("audio")}

    def add(self, track: PacketTrack | FanoutTrack) -> None:
        self.groups[track.kind].attach(track)
        self.tracks.add(track)

    def remove(self, track: PacketTrack | FanoutTrack) -> None:
        """The viewer gets no more frames, from its group's C call either."""
        self.tracks.discard(track)
        self.groups[track.kind].detach(track)

    def publish(self, kind: str, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        frame = SharedFrame(kind, data, pts, time_base, keyframe)  # packetized once, if a viewer wants RTP
        group = self.groups[kind]
        group.publish(frame)  # every viewer in order, in one C call
        for track in group.pushing:  # the others; a join or leave replaces the set, not this one
            track.push(frame)

    def close(self) -> None:
        for group in self.groups.values():
            group.close()
        for track in self.tracks:
            track.finish()
        self.tracks.clear()


class RelayOutput:
    """The encoder's output to WebRTC viewers: H.264 in Annex B with SPS/PPS before each
    keyframe (WebRTC receivers need them in-band), and Opus; handed to the event loop,
    where the relay's tracks live."""

    def __init__(self, relay: Relay, loop: asyncio.AbstractEventLoop) -> None:
        self._relay = relay
        self._loop = loop
        self._headers = b""

    def open(self, encoded: Encoded) -> None:
        self._headers = encoded.h264_headers

    def video(self, packet: av.Packet) -> None:
        data = bytes(packet)
        if packet.is_keyframe:
            data = self._headers + data
        self._loop.call_soon_threadsafe(self._relay.publish, "video", data, packet.pts, packet.time_base,
                                        packet.is_keyframe)

    def audio_aac(self, packet: av.Packet) -> None:
        pass  # WebRTC takes Opus

    def audio_opus(self, packet: av.Packet) -> None:
        self._loop.call_soon_threadsafe(self._relay.publish, "audio", bytes(packet), packet.pts,
                                        packet.time_base, True)

    def close(self) -> None:
        pass  # the stream's owner closes the relay, on the loop, when the publish ends

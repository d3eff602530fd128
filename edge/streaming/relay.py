"""Fan-out of one stream's encoded packets to its WHEP viewers, without re-encoding.

aiortc packetizes an `av.Packet` returned by a track as is, so each viewer gets a
`PacketTrack` fed from the stream's single encoder, through `RelayOutput` (the encoder's
output for WebRTC) and the stream's `Relay`. A viewer starts (and restarts after its
queue overflowed) at a keyframe; the encoder is asked for one at once rather than making
the viewer wait for the next GOP.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Callable

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from edge.streaming.outputs import Encoded


class PacketTrack(MediaStreamTrack):
    def __init__(self, kind: str, on_need_keyframe: Callable[[], None], max_queue: int = 90) -> None:
        super().__init__()
        self.kind = kind
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._need_keyframe = kind == "video"
        self._on_need_keyframe = on_need_keyframe
        self.sent = 0
        self.bytes_sent = 0

    def push(self, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        if self._need_keyframe:
            if not keyframe:
                return
            self._need_keyframe = False
        try:
            self._queue.put_nowait((data, pts, time_base))
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


class Relay:
    """The viewers' tracks of one stream; `publish` runs on the event loop."""

    def __init__(self) -> None:
        self.tracks: set[PacketTrack] = set()

    def publish(self, kind: str, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        for track in self.tracks:
            if track.kind == kind:
                track.push(data, pts, time_base, keyframe)

    def close(self) -> None:
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

"""WHEP fan-out that packetizes each encoded frame once per stream, not once per viewer.

aiortc's sender, given an `av.Packet`, splits it into RTP payloads, builds an `RtpPacket`
object per payload, serializes its header extensions through a map, and awaits three
coroutines per packet (DTLS transport, ICE connection, datagram protocol) before the
`sendto`. With N viewers of one stream all of that ran N times for identical payloads,
and the per-packet awaits and objects were most of the edge's CPU (bench/RESULTS.md).

Here a `SharedFrame` holds one encoded frame and computes its RTP payloads (H.264
single NAL units and STAP-A as aiortc cuts them, FU-A fragments of one size by `fu_a`;
or one Opus payload) the first time any viewer needs them; every viewer shares that
list. Per viewer only the 12-byte RTP header and the header extensions aiortc's sender
writes (mid, abs-send-time: aiortc writes no transport-cc sequence number and no audio
level for pre-encoded audio) are written by its `RtpHeaderWriter`, the SRTP protect is
applied (the session's own pylibsrtp context) and the datagrams leave without an await,
straight to the selected ICE pair's socket, a frame's equal-size packets in one
segmented send. That per-viewer work is C (`native_rtp`, built by `make`) when the
library is there, and the same bytes from Python (`RtpHeaderWriter.write`, pylibsrtp,
`udp_batch`) when it is not.

With the C writer, the viewers of a stream whose sending is in order are a
`FanoutGroup`: one C call per frame sends to all of them, so a frame costs Python the
same for ten viewers as for a thousand. The others (connecting, waiting for a keyframe,
backed up, on the Python writer) get the frame from their track's `push`, one call each.

`FanoutSender` replaces aiortc's RTP loop on a viewer's `RTCRtpSender` (`adopt`) and
keeps the rest of it: RTCP (receiver reports -> remote-inbound RTT/jitter/loss, SR),
`getStats()` (packetsSent/bytesSent kept in the sender's own counters, transport
counters too; in the group they are counted in C and moved over by `sync`), NACK ->
retransmission (RTX when negotiated) from a per-viewer history of the frames it sent
(in C on the C writer), PLI/FIR -> the stream's encoder makes a keyframe. The aiortc
internals this relies on are pinned by tests/test_library_contracts.py.

A viewer starts at a keyframe (the encoder is asked for one when the viewer's sender
starts), and a viewer whose socket backs up skips frames until the next keyframe it
asks for, as the per-viewer path's queue overflow did.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import struct
import time
from fractions import Fraction
from typing import Callable

from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.codecs.h264 import PACKET_MAX, H264Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket, wrap_rtx
from aiortc.utils import random32

from edge.streaming import native_rtp, udp_batch

log = logging.getLogger(__name__)

CLOCK_RATE = {"video": 90_000, "audio": 48_000}
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
# Frames a viewer keeps to answer NACKs from: aiortc keeps 128 packets; 128 frames is at
# least that (the frames themselves are shared, so this is a list of references).
HISTORY_FRAMES = 128
# A viewer whose datagram transport holds more than this unsent skips to a keyframe.
MAX_BACKLOG_BYTES = 512 * 1024
# How often (in frames of its kind) a FanoutGroup re-checks its viewers (DTLS still
# connected, ICE pair unchanged, nothing queued) and moves their C counters into the
# senders' (getStats() syncs at once; RTCP sender reports may lag by this much).
CHECK_EVERY = 30
_serials = itertools.count(1)

_HEADER = struct.Struct("!BBHLL")
_CONNECTED = DtlsState.CONNECTED


FU_A_ROOM = PACKET_MAX - 2  # an FU-A fragment's NAL bytes: the packet less its two-byte FU header


def fu_a(nal: bytes) -> list[bytes]:
    """The FU-A payloads (RFC 6184 5.8) of one NAL unit too big for a packet, cut into as
    many fragments as aiortc cuts it into, but all of one size but the last (shorter or
    equal). aiortc makes two sizes a byte apart, which splits a NAL unit's datagrams
    into two segmented sends (a run is equal sizes, only its last may be shorter): one
    size halves the sends of a typical frame, and the reads of a receiver with GRO."""
    body = nal[1:]  # the NAL header travels in the FU indicator and header
    count = -(-len(body) // FU_A_ROOM)
    size = -(-len(body) // count)
    indicator = (nal[0] & 0xE0) | 28  # F and NRI of the NAL unit, type FU-A
    kind = nal[0] & 0x1F
    last = len(body) - size
    return [bytes((indicator, kind | (0x80 if at == 0 else 0) | (0x40 if at >= last else 0))) + body[at:at + size]
            for at in range(0, len(body), size)]


def packetize(kind: str, data: bytes) -> list[bytes]:
    """RTP payloads of one encoded frame: H.264 Annex B -> NAL units -> single NAL / STAP-A
    payloads as aiortc's own sender cuts them, FU-A by `fu_a`; an Opus packet is one payload."""
    if kind != "video":
        return [data]
    payloads: list[bytes] = []
    nals = iter(H264Encoder._split_bitstream(data))  # noqa: SLF001 - see contracts
    nal = next(nals, None)
    while nal is not None:
        if len(nal) > PACKET_MAX:
            payloads += fu_a(nal)
            nal = next(nals, None)
        else:  # one NAL unit, or several small ones in a STAP-A, as aiortc aggregates them
            payload, nal = H264Encoder._packetize_stap_a(nal, nals)  # noqa: SLF001 - see contracts
            payloads.append(payload)
    return payloads


class SharedFrame:
    """One encoded frame of a stream as all of its viewers get it; the RTP payloads and the
    RTP timestamp are computed once, by whichever viewer asks first."""

    __slots__ = ("kind", "data", "pts", "time_base", "keyframe", "_payloads", "_timestamp", "payload_bytes", "native",
                 "serial")

    def __init__(self, kind: str, data: bytes, pts: int, time_base: Fraction, keyframe: bool) -> None:
        self.kind, self.data, self.pts, self.time_base, self.keyframe = kind, data, pts, time_base, keyframe
        self.serial = next(_serials) & 0xFFFFFFFF  # names it in the viewers' NACK histories (FanoutGroup.frame)
        self._payloads: list[bytes] | None = None
        self._timestamp: int | None = None
        self.native: native_rtp.NativeFrame | None = None  # the payloads where C reads them, made once

    @property
    def payloads(self) -> list[bytes]:
        if self._payloads is None:
            self._payloads = packetize(self.kind, self.data)
            self.payload_bytes = sum(map(len, self._payloads))
        return self._payloads

    @property
    def timestamp(self) -> int:
        """Media time in the RTP clock of its kind (before a viewer's random origin)."""
        if self._timestamp is None:
            self._timestamp = int(self.pts * self.time_base * CLOCK_RATE[self.kind])
        return self._timestamp


def ntp_now() -> int:
    """The 64-bit NTP time aiortc's clock gives, without its datetime arithmetic."""
    now = time.time() + NTP_EPOCH_OFFSET
    seconds = int(now)
    return (seconds << 32) | int((now - seconds) * 4_294_967_296)


class RtpHeaderWriter:
    """One viewer's RTP stream: its SSRC, payload type, sequence numbers (continuous across
    frames, whatever frames it skipped), random timestamp origin, and the header
    extensions negotiated with it. Writes the viewer's packets of a shared frame."""

    def __init__(self, ssrc: int, payload_type: int, extensions: HeaderExtensionsMap, mid: str | None,
                 sequence_number: int, timestamp_origin: int) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp_origin = timestamp_origin
        self._extensions = extensions
        self._mid = mid
        # Only the abs-send-time changes from frame to frame: find its 3 bytes in the block
        # aiortc's map writes (two different times differ exactly there) and splice them
        # in, rather than running the map for every frame of every viewer.
        low, high = self._block(0), self._block(0xFFFFFF)
        differ = [i for i in range(len(low)) if low[i] != high[i]] if len(low) == len(high) else None
        self._constant: bytes | None = None
        self._split: tuple[bytes, bytes] | None = None
        if differ is not None and not differ:
            self._constant = low  # no abs-send-time negotiated: the same block every time
        elif differ is not None and differ == list(range(differ[0], differ[0] + 3)):
            self._split = (low[:differ[0]], low[differ[0] + 3:])

    def _block(self, abs_send_time: int) -> bytes:
        profile, value = self._extensions.set(HeaderExtensions(mid=self._mid, abs_send_time=abs_send_time))
        return struct.pack("!HH", profile, len(value) >> 2) + value if value else b""

    def extension_layout(self) -> tuple[bytes, int] | None:
        """(the extension block, where abs-send-time's 3 bytes go in it or -1) for the
        native writer; None for a layout only aiortc's map can write."""
        if self._split is not None:
            head, tail = self._split
            return head + bytes(3) + tail, len(head)
        if self._constant is not None:
            return self._constant, -1
        return None

    def extension_block(self, abs_send_time: int) -> bytes:
        """The header extension (profile, length, elements) of this viewer's packets, as
        aiortc's map writes it (mid, abs-send-time); b"" when none was negotiated."""
        if self._split is not None:
            head, tail = self._split
            return head + abs_send_time.to_bytes(3, "big") + tail
        if self._constant is not None:
            return self._constant
        return self._block(abs_send_time)

    def write(self, frame: SharedFrame, abs_send_time: int) -> tuple[list[bytes], int, int]:
        """(packets, first sequence number, RTP timestamp) of `frame` for this viewer: the
        shared payloads behind this viewer's headers; the marker is set on the frame's last."""
        payloads = frame.payloads
        timestamp = (self.timestamp_origin + frame.timestamp) & 0xFFFFFFFF
        ext = self.extension_block(abs_send_time)
        first_byte = 0x90 if ext else 0x80  # version 2, extension bit
        pt, ssrc, pack = self.payload_type, self.ssrc, _HEADER.pack
        first = seq = self.sequence_number
        last = len(payloads) - 1
        packets = []
        for i, payload in enumerate(payloads):
            packets.append(pack(first_byte, pt | 0x80 if i == last else pt, seq, timestamp, ssrc) + ext + payload)
            seq = (seq + 1) & 0xFFFF
        self.sequence_number = seq
        return packets, first, timestamp


class FanoutTrack(MediaStreamTrack):
    """A viewer's place in the stream's relay on the shared path: the relay hands it each
    shared frame, it hands the frame to the viewer's sender once that has started (the
    viewer is connected). aiortc needs a track to answer with; nothing calls `recv`."""

    def __init__(self, kind: str, on_need_keyframe: Callable[[], None]) -> None:
        super().__init__()
        self.kind = kind
        self.on_need_keyframe = on_need_keyframe
        self.sender: FanoutSender | None = None
        self.group: FanoutGroup | None = None  # set by the stream's Relay
        self.ended = asyncio.Event()
        self._sent = 0
        self._bytes_sent = 0

    @property
    def sent(self) -> int:
        """Frames sent to the viewer (its C counters included)."""
        if self.sender is not None:
            self.sender.sync()
        return self._sent

    @property
    def bytes_sent(self) -> int:
        """Encoded bytes sent to the viewer (its C counters included)."""
        if self.sender is not None:
            self.sender.sync()
        return self._bytes_sent

    def push(self, frame: SharedFrame) -> None:
        """A frame for a viewer outside its FanoutGroup's C batch (not yet connected,
        waiting for a keyframe, backed up, or on the Python writer)."""
        sender = self.sender
        if sender is not None and not sender.batched and frame.serial != sender.skip_serial:
            sender.send_frame(frame)

    def finish(self) -> None:
        """The publish ended: the sender's RTP loop ends, as on the per-viewer path."""
        self.sender = None
        self.ended.set()

    async def recv(self):
        await self.ended.wait()
        raise MediaStreamError


class FanoutGroup:
    """One stream's viewers of one kind, as the stream's Relay gives them frames.

    Those whose sending is in order (connected, on the C writer, nothing queued, not
    waiting for a keyframe) are its members: each frame goes to all of them in one C call
    (`native_rtp.NativeBatch`). A viewer joins after a frame it sent whole
    (`FanoutSender.send_frame`) and leaves when its datagrams do not all leave, its route
    or DTLS changes (checked every CHECK_EVERY frames), or it stops. The others are in
    `pushing`, the tracks the Relay hands each frame to one by one, so that a frame costs
    Python nothing per member. Also keeps the stream's last frames, which the viewers' NACK
    histories name by serial.

    `pushing` and the members are replaced, never changed in place: a frame being handed
    out keeps the sets it started with while a viewer joins or leaves."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.pushing: frozenset = frozenset()
        self._tracks: set = set()  # every track the Relay attached, members' too
        self._members: list[FanoutSender] = []
        self._batch: native_rtp.NativeBatch | None = None
        self._frames: dict[int, SharedFrame] = {}
        self._order: collections.deque[int] = collections.deque()
        self._since_check = 0

    def __len__(self) -> int:
        return len(self._members)

    def attach(self, track) -> None:
        """A viewer's track (FanoutTrack, or the per-viewer path's PacketTrack) gets frames."""
        if isinstance(track, FanoutTrack):
            track.group = self
        self._tracks.add(track)
        self.pushing = self.pushing | {track}

    def detach(self, track) -> None:
        """It gets no more frames, from the C call either."""
        self._tracks.discard(track)
        sender = getattr(track, "sender", None)
        if isinstance(sender, FanoutSender):
            self.leave(sender)
        self.pushing = self.pushing - {track}

    def join(self, sender: FanoutSender) -> None:
        if not sender.batched:
            sender.batched = True
            self._members = [*self._members, sender]
            self._batch = None
            self.pushing = self.pushing - {sender.track}

    def leave(self, sender: FanoutSender) -> None:
        if sender.batched:
            sender.batched = False
            self._members = [m for m in self._members if m is not sender]
            self._batch = None
            if sender.track in self._tracks:
                self.pushing = self.pushing | {sender.track}
            sender.sync()

    def frame(self, serial: int) -> SharedFrame | None:
        return self._frames.get(serial)

    def publish(self, frame: SharedFrame) -> None:
        """Keep `frame` for NACKs and send it to every member; the Relay then pushes it to
        the stream's other viewers."""
        self._frames[frame.serial] = frame
        self._order.append(frame.serial)
        if len(self._order) > HISTORY_FRAMES:
            del self._frames[self._order.popleft()]
        members = self._members
        if not members:
            return
        batch = self._batch
        if batch is None:
            batch = self._batch = native_rtp.NativeBatch([m._native for m in members])
        start = 0
        while start < batch.count:
            stopped, result, native = batch.send(frame, start)
            if stopped >= batch.count:
                break
            members[stopped].batch_stopped(frame, native, result)
            start = stopped + 1
        self._since_check += 1
        if self._since_check >= CHECK_EVERY:
            self._since_check = 0
            for member in members:
                if not member.still_in_order():
                    self.leave(member)
                else:
                    member.sync()

    def close(self) -> None:
        for member in self._members:
            self.leave(member)
        self._tracks.clear()
        self.pushing = frozenset()
        self._frames.clear()
        self._order.clear()


class FanoutSender(RTCRtpSender):
    """aiortc's sender with its RTP loop replaced by `send_frame`, called by the relay for
    every shared frame. Use `adopt` on the sender aiortc made for a `FanoutTrack`."""

    @classmethod
    def adopt(cls, sender: RTCRtpSender, on_keyframe_request: Callable[[], None], native: bool = True) -> FanoutSender:
        """`native=False` keeps this viewer on the Python writer even where the C one is
        built (`WAVE_WHEP_FANOUT=shared-python`, for bench/edge.py's comparison)."""
        if not isinstance(sender.track, FanoutTrack):
            raise TypeError("FanoutSender.adopt wants the sender of a FanoutTrack")
        sender.__class__ = cls
        sender._fanout_init(on_keyframe_request, native)  # type: ignore[attr-defined]
        return sender  # type: ignore[return-value]

    def _fanout_init(self, on_keyframe_request: Callable[[], None], native: bool = True) -> None:
        self._on_keyframe_request = on_keyframe_request
        self._writer: RtpHeaderWriter | None = None
        self._history: collections.deque = collections.deque(maxlen=HISTORY_FRAMES)
        self._need_keyframe = True
        self._done = asyncio.Event()
        self._udp: udp_batch.DatagramSender | None = None  # the ICE pair's transport, sent on directly
        self._use_native = native
        # (ICE's nominated pairs, the pair, its datagram transport, the C writer or None),
        # found once and kept while that pair stays nominated and DTLS connected: looking
        # them up through aiortc's and aioice's objects for every frame of every viewer
        # was a fifth of the edge's Python time at 400 viewers (bench/RESULTS.md).
        self._route: tuple | None = None
        self.batched = False  # in its track's FanoutGroup: the group's C call sends its frames
        self.skip_serial = -1  # a frame the group already sent (part of) before this left it
        self._history_native: native_rtp.NativeViewer | None = None  # the C writer whose ring is the NACK history

    @property
    def _group(self) -> FanoutGroup | None:
        """Its track's group in the stream's Relay (None before the Relay has the track)."""
        track = self.track
        return track.group if isinstance(track, FanoutTrack) else None

    @property
    def _native(self) -> native_rtp.NativeViewer | None:
        return self._route[3] if self._route is not None else None

    def _close_udp(self) -> None:
        if self._group is not None:
            self._group.leave(self)
        self.sync()
        if self._route is not None and self._route[3] is not None:
            self._route[3].close()  # its own descriptor of the socket
        self._route = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def sync(self) -> None:
        """Move what the C writer counted into the counters getStats(), the RTCP sender
        reports and the session's byte count read."""
        route = self._route
        counts = route[3].take_counts() if route is not None and route[3] is not None else None
        if counts is None:
            return
        packets, octets, wire, frames, frame_bytes, ntp, rtp_timestamp = counts
        self._RTCRtpSender__packet_count += packets
        self._RTCRtpSender__octet_count += octets
        self._RTCRtpSender__ntp_timestamp = ntp
        self._RTCRtpSender__rtp_timestamp = rtp_timestamp
        dtls = self.transport
        dtls._RTCDtlsTransport__tx_packets += packets
        dtls._RTCDtlsTransport__tx_bytes += wire
        track = self.track
        if isinstance(track, FanoutTrack):
            track._sent += frames
            track._bytes_sent += frame_bytes

    async def getStats(self):
        self.sync()
        return await super().getStats()

    def still_in_order(self) -> bool:
        """May the group go on sending for this viewer: DTLS connected, the same ICE pair,
        nothing queued on its transport."""
        route = self._route
        return (self.transport._state is _CONNECTED and route is not None and route[0].get(1) is route[1]
                and not route[2].get_write_buffer_size())

    def batch_stopped(self, frame: SharedFrame, native: native_rtp.NativeFrame, result: int) -> None:
        """The group's C call stopped at this viewer: its datagrams of `frame` did not all
        leave (a full socket: the rest is queued, in order) or SRTP failed (its RTP stream
        ends). It leaves the group either way; its track sends from the next frame."""
        self.skip_serial = frame.serial
        if self._group is not None:
            self._group.leave(self)
        if result < 0:
            log.warning("WHEP fan-out: SRTP protect failed for a viewer (libsrtp error %d); ending its RTP stream",
                        -result)
            self._stop_sending()
            return
        route = self._route
        if route is None:
            return
        udp, addr = route[2], route[1].remote_addr
        try:
            for datagram in native.rest(native_rtp.load()[0]):
                udp.sendto(datagram, addr)
        except Exception:  # noqa: BLE001 - one viewer's failure must not stop the others
            log.warning("WHEP fan-out: sending to a viewer failed; ending its RTP stream", exc_info=True)
            self._stop_sending()

    def _find_route(self, dtls) -> tuple | None:
        """This viewer's route as `_route` keeps it, or None when ICE has no pair (or
        the pair no transport): the viewer is gone."""
        nominated = dtls.transport._connection._nominated
        pair = nominated.get(1)
        udp = pair.protocol.transport if pair is not None else None
        if udp is None:
            return None
        self._close_udp()
        self._udp = udp_batch.DatagramSender(udp)
        sock = self._udp.sock
        native = None
        if self._use_native and sock is not None:
            try:
                native = native_rtp.NativeViewer.make(self._writer, dtls._tx_srtp, sock.fileno(), pair.remote_addr)
            except Exception:  # noqa: BLE001 - this viewer keeps the Python writer; the others are untouched
                log.warning("WHEP fan-out: the C writer could not take a viewer; Python writes its packets",
                            exc_info=True)
        if native is not None and self._history_native is not None:
            native.take_history(self._history_native)
        self._history_native = native
        self._route = (nominated, pair, udp, native)
        return self._route

    # -- aiortc's hooks ---------------------------------------------------------------
    def _send_keyframe(self) -> None:
        """PLI/FIR from the viewer: the stream's one encoder makes a keyframe."""
        self._on_keyframe_request()

    async def _run_rtp(self, codec) -> None:
        """Replaces aiortc's loop: sets up this viewer's header writer, joins the track's
        fan-out, and waits for the end (sender stopped, publish ended, transport gone)."""
        self._RTCRtpSender__rtp_started.set()
        track: FanoutTrack = self.track
        self._writer = RtpHeaderWriter(
            ssrc=self._ssrc, payload_type=codec.payloadType,
            extensions=self._RTCRtpSender__rtp_header_extensions_map, mid=self._RTCRtpSender__mid,
            sequence_number=random_sequence_number(), timestamp_origin=random32())
        try:
            if track is not None and not track.ended.is_set():
                self._need_keyframe = track.kind == "video"
                track.sender = self
                if self._need_keyframe:
                    self._on_keyframe_request()  # start within a frame, not a GOP
                ended = asyncio.ensure_future(track.ended.wait())
                done = asyncio.ensure_future(self._done.wait())
                try:
                    await asyncio.wait((ended, done), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    ended.cancel()
                    done.cancel()
        except asyncio.CancelledError:
            pass
        finally:
            self._close_udp()
            if track is not None:
                if track.sender is self:
                    track.sender = None
                track.stop()
            self._RTCRtpSender__rtp_exited.set()

    async def _retransmit(self, sequence_number: int) -> None:
        """NACK: resend a packet from the frames this viewer was sent (RTX when negotiated),
        through aiortc's own path: rare, so no need to be quick."""
        packet = self._packet_from_history(sequence_number)
        if packet is None:
            return
        rtx_type = self._RTCRtpSender__rtx_payload_type
        if rtx_type is not None:
            packet = wrap_rtx(packet, payload_type=rtx_type, sequence_number=self._RTCRtpSender__rtx_sequence_number,
                              ssrc=self._rtx_ssrc)
            self._RTCRtpSender__rtx_sequence_number = (self._RTCRtpSender__rtx_sequence_number + 1) & 0xFFFF
        try:
            await self.transport._send_rtp(packet.serialize(self._RTCRtpSender__rtp_header_extensions_map))
        except ConnectionError:
            pass

    def _sent_frames(self):
        """(first sequence number, RTP timestamp, payloads, abs-send-time) of the frames
        this viewer was sent, newest first: the C writer's ring (frames named by serial, kept
        by the group) or, on the Python writer, the sender's own list."""
        native, group = self._history_native, self._group
        if native is not None and group is not None:
            origin = self._writer.timestamp_origin
            for serial, first, abs_send_time in native.history():
                frame = group.frame(serial)
                if frame is not None:
                    yield first, (origin + frame.timestamp) & 0xFFFFFFFF, frame.payloads, abs_send_time
        else:
            yield from reversed(self._history)

    def _packet_from_history(self, sequence_number: int) -> RtpPacket | None:
        writer = self._writer
        for first, timestamp, payloads, abs_send_time in self._sent_frames():
            offset = (sequence_number - first) & 0xFFFF
            if offset < len(payloads):
                packet = RtpPacket(payload_type=writer.payload_type, marker=int(offset == len(payloads) - 1),
                                   sequence_number=sequence_number, timestamp=timestamp, ssrc=writer.ssrc,
                                   payload=payloads[offset])
                packet.extensions.mid = self._RTCRtpSender__mid
                packet.extensions.abs_send_time = abs_send_time
                return packet
        return None

    # -- the hot path ---------------------------------------------------------------
    def send_frame(self, frame: SharedFrame) -> None:
        """Send one shared frame to this viewer now: header and SRTP protect per packet, then
        the frame's datagrams in as few sends as possible (`udp_batch`), no await. Runs on
        the event loop, called by the relay."""
        if self._need_keyframe:
            if not frame.keyframe:
                return
            self._need_keyframe = False
        dtls = self.transport
        if dtls._state is not _CONNECTED:
            self._stop_sending()
            return
        route = self._route
        if route is None or route[0].get(1) is not route[1]:
            route = self._find_route(dtls)
            if route is None:
                self._stop_sending()
                return
        _, pair, udp, native = route
        backlog = udp.get_write_buffer_size()
        if backlog > MAX_BACKLOG_BYTES:  # a slow viewer: resume at a keyframe
            if frame.kind == "video":
                self._need_keyframe = True
                self._on_keyframe_request()
            return
        try:
            ntp = ntp_now()
            if native is not None:
                # in order behind anything the transport still holds (a full socket); the
                # C writer counts it and keeps it for NACKs
                _, _, rest = native.send(frame, ntp, send=not backlog)
                if rest:
                    addr = pair.remote_addr
                    for datagram in rest:
                        udp.sendto(datagram, addr)
                elif not backlog and self._group is not None:
                    self._group.join(self)  # in order: the group's C call sends from the next frame
                return
            abs_send_time = (ntp >> 14) & 0xFFFFFF
            packets, first, timestamp = self._writer.write(frame, abs_send_time)
            protect = dtls._tx_srtp.protect
            datagrams = [protect(packet) for packet in packets]
            self._udp.send(datagrams, pair.remote_addr)
            wire = sum(map(len, datagrams))
        except Exception:  # noqa: BLE001 - one viewer's failure must not stop the others
            log.warning("WHEP fan-out: sending to a viewer failed; ending its RTP stream", exc_info=True)
            self._stop_sending()
            return
        payloads = frame.payloads
        self._history.append((first, timestamp, payloads, abs_send_time))
        count = len(payloads)
        # getStats() and the RTCP sender reports read these, as they read aiortc's own loop's
        self._RTCRtpSender__packet_count += count
        self._RTCRtpSender__octet_count += frame.payload_bytes
        self._RTCRtpSender__ntp_timestamp = ntp
        self._RTCRtpSender__rtp_timestamp = timestamp
        dtls._RTCDtlsTransport__tx_packets += count
        dtls._RTCDtlsTransport__tx_bytes += wire
        track = self.track
        if isinstance(track, FanoutTrack):
            track._sent += 1
            track._bytes_sent += len(frame.data)

    def _stop_sending(self) -> None:
        """The transport is gone (as aiortc's loop stops on a ConnectionError)."""
        track = self.track
        if track is not None and track.sender is self:
            track.sender = None
        self._close_udp()
        self._done.set()


"""The shared WHEP fan-out (edge/streaming/rtp_fanout.py) at the packet level: payloads made
once per frame reassemble to the frame's NAL units and decode; each viewer's headers are
valid RTP with its own SSRC and continuous sequence numbers; a real aiortc receiver on
loopback decodes what a `FanoutSender` sends, after a keyframe resume too, and the
sender still answers PLI, NACK and reports getStats()."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder, H264PayloadDescriptor
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from edge.streaming import rtp_fanout, sdp
from edge.streaming.relay import Relay
from edge.streaming.rtp_fanout import FanoutSender, FanoutTrack, RtpHeaderWriter, SharedFrame

TIME_BASE = Fraction(1, 90_000)
_HEAD = bytes([0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])  # RTP v2 with the extension bit


def _encoded_frames(count: int = 40, width: int = 320, height: int = 240, gop: int = 20) -> list[tuple[bytes, bool]]:
    """H.264 Annex B frames (SPS/PPS in band before each IDR) as the live encoder gives
    WebRTC, from a noisy picture (keyframes need FU-A fragments) with a moving bar."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base, codec.framerate = Fraction(1, 30), Fraction(30, 1)
    codec.gop_size = gop
    codec.options = {"tune": "zerolatency", "preset": "ultrafast", "profile": "baseline"}
    noise = np.random.default_rng(7).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = []
    for i in range(count):
        img = noise.copy()
        img[:, (i * 8) % width:(i * 8) % width + 8] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        for packet in codec.encode(frame):
            out.append((bytes(packet), packet.is_keyframe))
    for packet in codec.encode(None):
        out.append((bytes(packet), packet.is_keyframe))
    return out


@pytest.fixture(scope="module")
def encoded():
    return _encoded_frames()


def _shared(encoded) -> list[SharedFrame]:
    return [SharedFrame("video", data, i * 3000, TIME_BASE, key) for i, (data, key) in enumerate(encoded)]


def _map(mid_id: int = 1, abs_id: int = 3) -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=mid_id, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=abs_id, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
    ]))
    return extensions


def test_shared_payloads_reassemble_to_the_frames_nal_units_and_decode(encoded):
    frames = _shared(encoded)
    assert frames[0].keyframe
    decoder = av.CodecContext.create("h264", "r")
    decoded = 0
    kinds = set()
    for frame in frames:
        payloads = frame.payloads
        assert payloads is frame.payloads  # computed once, shared by every viewer
        assert all(len(p) <= 1300 for p in payloads)  # aiortc's PACKET_MAX: one datagram each
        kinds.update(p[0] & 0x1F for p in payloads)
        # depacketized by aiortc's receiver-side code, not by the packetizer under test
        annex_b = b"".join(H264PayloadDescriptor.parse(p)[1] for p in payloads)
        assert list(H264Encoder._split_bitstream(annex_b)) == list(H264Encoder._split_bitstream(frame.data))
        decoded += len(decoder.decode(av.Packet(annex_b)))
    decoded += len(decoder.decode(None))
    assert decoded == len(frames)
    assert 28 in kinds and 24 in kinds  # FU-A fragments (the big IDR) and a STAP-A (SPS+PPS)


@pytest.mark.parametrize("length", [1301, 1302, 2597, 2598, 2599, 2600, 9000, 65_000])
def test_fu_a_fragments_are_one_size_but_the_last(length):
    """As many fragments as aiortc cuts, each within a packet, all of one size but a
    shorter or equal last (one segmented send per NAL unit), start and end bits set, and
    together exactly the NAL unit."""
    nal = bytes([0x65]) + bytes(range(256)) * (length // 256) + bytes(length % 256 - 1 if length % 256 else 255)
    nal = nal[:length]
    fragments = rtp_fanout.fu_a(nal)
    assert len(fragments) == len(H264Encoder._packetize_fu_a(nal))
    sizes = [len(f) for f in fragments]
    assert max(sizes) <= 1300 and set(sizes[:-1]) <= {sizes[0]} and sizes[-1] <= sizes[0]
    assert [f[0] for f in fragments] == [0x60 | 28] * len(fragments)  # F, NRI of the NAL unit; FU-A
    assert [f[1] & 0xC0 for f in fragments] == [0x80] + [0] * (len(fragments) - 2) + [0x40]
    assert {f[1] & 0x1F for f in fragments} == {5}
    assert bytes([0x65]) + b"".join(f[2:] for f in fragments) == nal


def test_two_viewers_get_the_same_payloads_under_their_own_headers(encoded):
    frames = _shared(encoded[:5])
    extensions = _map()
    a = RtpHeaderWriter(0x11111111, 102, extensions, "0", sequence_number=65530, timestamp_origin=4_294_967_000)
    b = RtpHeaderWriter(0x22222222, 102, extensions, "1", sequence_number=100, timestamp_origin=0)
    seqs: dict[int, list[int]] = {a.ssrc: [], b.ssrc: []}
    for frame in frames:
        got = {}
        for writer in (a, b):
            packets, first, timestamp = writer.write(frame, abs_send_time=0x123456)
            parsed = [RtpPacket.parse(p, extensions) for p in packets]
            assert first == parsed[0].sequence_number
            assert {p.ssrc for p in parsed} == {writer.ssrc}
            assert {p.payload_type for p in parsed} == {102}
            assert timestamp == (writer.timestamp_origin + frame.pts) % 2**32
            assert {p.timestamp for p in parsed} == {timestamp}
            assert [p.marker for p in parsed] == [0] * (len(parsed) - 1) + [1]  # end of the frame
            assert all(p.extensions.abs_send_time == 0x123456 for p in parsed)
            assert {p.extensions.mid for p in parsed} == {"0" if writer is a else "1"}
            seqs[writer.ssrc] += [p.sequence_number for p in parsed]
            got[writer.ssrc] = [p.payload for p in parsed]
        assert got[a.ssrc] == got[b.ssrc] == frame.payloads
    for ssrc, numbers in seqs.items():  # continuous across frames, through the 16-bit wrap
        assert all((y - x) & 0xFFFF == 1 for x, y in zip(numbers, numbers[1:])), ssrc
    assert 65535 in seqs[a.ssrc] and 0 in seqs[a.ssrc]


def test_a_viewer_without_negotiated_extensions_gets_plain_headers(encoded):
    writer = RtpHeaderWriter(5, 96, HeaderExtensionsMap(), "0", sequence_number=1, timestamp_origin=0)
    packets, _, _ = writer.write(_shared(encoded[:1])[0], abs_send_time=1)
    assert all(p[0] == 0x80 for p in packets)  # version 2, no extension bit
    assert packets[0][12:] == _shared(encoded[:1])[0].payloads[0]


def test_opus_frames_are_one_payload_with_the_marker():
    frame = SharedFrame("audio", b"\xfc" + b"o" * 80, 960, Fraction(1, 48_000), True)
    writer = RtpHeaderWriter(9, 111, _map(), "1", sequence_number=7, timestamp_origin=0)
    packets, first, timestamp = writer.write(frame, abs_send_time=0)
    assert len(packets) == 1 and first == 7 and timestamp == 960
    assert RtpPacket.parse(packets[0], _map()).marker == 1  # as aiortc marks a frame's last packet
    assert RtpPacket.parse(packets[0], _map()).payload == frame.data


# A real aiortc receiver on loopback -----------------------------------------------------


class _Loopback:
    """An aiortc viewer (recvonly) and an answering peer whose video sender is adopted by
    `FanoutSender`, fed through a `Relay` as the live stream feeds it."""

    def __init__(self, native: bool = True):
        self.keyframe_requests = 0
        self.relay = Relay()
        self.native = native
        self.track = FanoutTrack("video", self._want_keyframe)
        self.seen: list[tuple] = []  # (ssrc, payload type, seq, first 2 payload bytes) as received
        self.frames: list[av.VideoFrame] = []

    def _want_keyframe(self):
        self.keyframe_requests += 1

    async def connect(self):
        self.viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.viewer.addTransceiver("video", direction="recvonly")
        self.edge = RTCPeerConnection(RTCConfiguration(iceServers=[]))

        @self.viewer.on("track")
        def on_track(track):
            async def read():
                while True:
                    self.frames.append(await track.recv())
            asyncio.ensure_future(read())

        await self.viewer.setLocalDescription(await self.viewer.createOffer())
        offer = sdp.narrow_for_relay(self.viewer.localDescription.sdp)  # as whep.py steers the answer
        await self.edge.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        self.edge.addTrack(self.track)
        self.sender = FanoutSender.adopt(self.edge.getSenders()[0], self._want_keyframe, native=self.native)
        await self.edge.setLocalDescription(await self.edge.createAnswer())
        self.receiver: RTCRtpReceiver = self.viewer.getReceivers()[0]
        original = self.receiver._handle_rtp_packet

        async def spy(packet, arrival_time_ms):
            self.seen.append((packet.ssrc, packet.payload_type, packet.sequence_number, bytes(packet.payload[:2])))
            return await original(packet, arrival_time_ms)

        self.receiver._handle_rtp_packet = spy
        await self.viewer.setRemoteDescription(self.edge.localDescription)
        self.relay.add(self.track)
        for _ in range(200):
            if self.track.sender is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the fan-out sender never started")

    async def send(self, frames: list[SharedFrame]):
        for frame in frames:
            self.relay.publish("video", frame.data, frame.pts, frame.time_base, frame.keyframe)
            await asyncio.sleep(1 / 60)

    async def close(self):
        self.relay.close()
        await self.viewer.close()
        await self.edge.close()


async def _packets_sent(sender) -> int:
    stats = await sender.getStats()
    return [s for s in stats.values() if s.type == "outbound-rtp"][0].packetsSent


async def _wait(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("native", [True, False], ids=["native-writer", "python-writer"])
def test_an_aiortc_viewer_decodes_the_shared_path_and_resumes_at_a_keyframe(encoded, monkeypatch, native):
    """Both writers of the shared path (the C one `make` builds, and Python's)."""
    frames = _shared(encoded)  # keyframes at 0 and 20

    async def scenario():
        link = _Loopback(native)
        await link.connect()
        assert link.keyframe_requests == 1  # the viewer's sender asked for a keyframe to start
        await link.send(frames[1:5])  # not keyframes: nothing is sent before one
        assert not link.seen
        await link.send(frames[:12])
        assert await _wait(lambda: len(link.frames) >= 10), len(link.frames)
        sent_before = await _packets_sent(link.sender)
        assert link.sender.batched == native  # in order on the C writer: the group's C call sends
        monkeypatch.setattr(rtp_fanout, "MAX_BACKLOG_BYTES", -1)  # as if its socket backed up
        link.track.group.leave(link.sender)  # as a send that did not all leave makes it
        await link.send(frames[12:14])
        assert await _packets_sent(link.sender) == sent_before and link.keyframe_requests == 2
        monkeypatch.setattr(rtp_fanout, "MAX_BACKLOG_BYTES", 512 * 1024)
        await link.send(frames[14:20])  # still waiting for the keyframe it asked for
        assert await _packets_sent(link.sender) == sent_before
        await link.send(frames[20:30])
        assert await _wait(lambda: len(link.frames) >= 20), len(link.frames)
        sent = await _packets_sent(link.sender)
        assert sent > sent_before

        def media():
            return [seq for ssrc, pt, seq, _ in link.seen if ssrc == link.sender._ssrc]
        assert await _wait(lambda: len(media()) >= sent), (len(media()), sent)  # all arrived
        media = media()
        assert all((y - x) & 0xFFFF == 1 for x, y in zip(media, media[1:])), [(x, y) for x, y in zip(media, media[1:]) if (y - x) & 0xFFFF != 1]  # no gap at the resume
        sizes = {(f.width, f.height) for f in link.frames}
        assert sizes == {(320, 240)}
        assert (link.sender._native is not None) == native  # the writer under test sent them
        stats = await link.sender.getStats()
        outbound = [s for s in stats.values() if s.type == "outbound-rtp"][0]
        assert outbound.packetsSent == len(media)
        assert outbound.bytesSent == sum(len(p) for f in frames[:12] + frames[20:30] for p in f.payloads)
        transport = [s for s in stats.values() if s.type == "transport"][0]
        assert transport.packetsSent >= len(media)
        await link.close()

    asyncio.run(scenario())


def test_the_group_sends_in_one_call_hands_a_failed_send_back_and_answers_nacks_from_its_ring(encoded):
    """Viewers in order are sent each frame by their FanoutGroup's one C call; a viewer
    whose datagrams do not all leave gets the rest queued in order and leaves the group,
    then rejoins; NACKs are answered from the C writer's history; the counters are exact."""
    frames = _shared(encoded)

    async def scenario():
        link = _Loopback()
        await link.connect()
        group = link.track.group
        await link.send(frames[:10])
        assert await _wait(lambda: len(link.frames) >= 8), len(link.frames)
        assert link.sender.batched and len(group) == 1
        assert link.track not in group.pushing  # the Relay's per-viewer loop no longer visits it
        native = link.sender._native
        fd = native.struct.fd
        native.struct.fd = -1  # the next send fails (EBADF) before any datagram leaves
        await link.send(frames[10:11])
        assert not link.sender.batched and len(group) == 0  # left, its datagrams queued on the transport
        assert link.track in group.pushing
        native.struct.fd = fd
        await link.send(frames[11:20])
        assert link.sender.batched  # back after a frame sent whole
        assert await _wait(lambda: len(link.frames) >= 18), len(link.frames)
        ssrc = link.sender._ssrc

        def media():
            return [seq for s, pt, seq, _ in link.seen if s == ssrc]
        sent = await _packets_sent(link.sender)
        assert sent == sum(len(f.payloads) for f in frames[:20])
        assert await _wait(lambda: len(media()) >= sent)
        assert all((y - x) & 0xFFFF == 1 for x, y in zip(media(), media()[1:]))  # none lost, none twice, in order
        lost = media()[-3]  # NACK -> the packet again from the ring, as RTX with the original seq
        await link.receiver._send_rtcp_nack(ssrc, [lost])
        assert await _wait(lambda: any(s == link.sender._rtx_ssrc and int.from_bytes(head, "big") == lost
                                       for s, pt, seq, head in link.seen))
        link.relay.remove(link.track)  # the viewer ended: no frame from the C call or the loop
        assert len(group) == 0 and not group.pushing and not link.sender.batched
        await link.close()

    asyncio.run(scenario())


def test_the_shared_path_answers_pli_nack_and_reports_remote_stats(encoded):
    frames = _shared(encoded)

    async def scenario():
        link = _Loopback()
        await link.connect()
        await link.send(frames[:10])
        assert await _wait(lambda: len(link.frames) >= 8)
        ssrc = link.sender._ssrc
        # PLI from the viewer -> the stream's encoder is asked for a keyframe
        before = link.keyframe_requests
        await link.receiver._send_rtcp_pli(ssrc)
        assert await _wait(lambda: link.keyframe_requests == before + 1)
        # NACK -> the packet again, as RTX (negotiated by aiortc) carrying the original seq
        lost = [seq for s, pt, seq, _ in link.seen if s == ssrc][3]
        await link.receiver._send_rtcp_nack(ssrc, [lost])
        assert await _wait(lambda: any(s == link.sender._rtx_ssrc and int.from_bytes(head, "big") == lost
                                       for s, pt, seq, head in link.seen))
        # receiver reports -> remote-inbound stats (RTT once an SR has been answered)
        for _ in range(60):  # an SR, then an RR answering it: 0.5-1.5 s each
            await link.send(frames[10:20])

            def remote():
                return [s for s in link.sender._RTCRtpSender__stats.values() if s.type == "remote-inbound-rtp"]
            if remote() and remote()[0].roundTripTime is not None:
                break
        stats = await link.sender.getStats()
        remote_in = [s for s in stats.values() if s.type == "remote-inbound-rtp"]
        assert remote_in and remote_in[0].packetsLost == 0 and remote_in[0].roundTripTime is not None
        await link.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("ids", [(1, 3), (3, 1), (14, 2), (15, 4), (None, 3), (2, None)])
def test_the_spliced_extension_block_is_what_aiortcs_map_writes(ids):
    """The writer splices the abs-send-time into a block made once; it must be byte for
    byte what aiortc's map writes (one-byte or two-byte form, either order, either alone)."""
    mid_id, abs_id = ids
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in (
            (mid_id, "urn:ietf:params:rtp-hdrext:sdes:mid"),
            (abs_id, "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")) if i is not None]))
    writer = RtpHeaderWriter(1, 96, extensions, "video0", sequence_number=0, timestamp_origin=0)
    for abs_send_time in (0, 1, 0x00FF00, 0xABCDEF, 0xFFFFFF, 0x10203):
        assert writer.extension_block(abs_send_time) == writer._block(abs_send_time)
        packet = RtpPacket.parse(_HEAD + writer.extension_block(abs_send_time) + b"x", extensions)
        assert packet.extensions.abs_send_time == (abs_send_time if abs_id else None)
        assert packet.extensions.mid == ("video0" if mid_id else None)


def test_the_fanout_path_is_read_from_the_environment_in_one_place():
    from edge.settings import from_env

    assert from_env({}).whep_fanout == "shared"
    assert from_env({"WAVE_WHEP_FANOUT": "per-viewer"}).whep_fanout == "per-viewer"
    assert from_env({"WAVE_WHEP_FANOUT": "shared-python"}).whep_fanout == "shared-python"
    with pytest.raises(ValueError, match="WAVE_WHEP_FANOUT"):
        from_env({"WAVE_WHEP_FANOUT": "perviewer"})  # a typo is a start-up error, not the default

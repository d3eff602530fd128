"""The C writer of the shared WHEP fan-out (edge/streaming/native_rtp.py, rtp_send.c): the
datagrams it writes are byte for byte those of the Python writer (RtpHeaderWriter +
pylibsrtp) for the same viewer state, whatever the extensions negotiated; it sends them
whole and in order; a send that fails hands back what did not leave; and where the
library is missing the fan-out keeps the Python writer."""

from __future__ import annotations

import os
import socket
from fractions import Fraction

import pylibsrtp
import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from edge.streaming import native_rtp
from edge.streaming.rtp_fanout import RtpHeaderWriter, SharedFrame

TIME_BASE = Fraction(1, 90_000)
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def _frames() -> list[SharedFrame]:
    """A keyframe cut into FU-A fragments (equal sizes, a shorter last), a one-packet
    frame, a STAP-A of small NAL units, and an Opus packet, with timestamps past 2^32."""
    rng = os.urandom
    idr = b"\x00\x00\x00\x01\x67" + rng(20) + b"\x00\x00\x00\x01\x68" + rng(4) + b"\x00\x00\x00\x01\x65" + rng(9000)
    small = b"\x00\x00\x00\x01\x41" + rng(700)
    return [SharedFrame("video", idr, 0, TIME_BASE, True),
            SharedFrame("video", small, 3000, TIME_BASE, False),
            SharedFrame("video", idr, 2**32 + 6000, TIME_BASE, True),
            SharedFrame("audio", rng(120), 960, Fraction(1, 48_000), False)]


def _map(extensions: list[tuple[int, str]]) -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions]))
    return m


def _pair(extensions, profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80):
    """Two identical viewers (writer + SRTP session with the same key), one per writer."""
    key = os.urandom(30 if profile == pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80 else 28)

    def one():
        session = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                                     srtp_profile=profile))
        return RtpHeaderWriter(0x11223344, 102, _map(extensions), "0", sequence_number=65533,
                               timestamp_origin=0xFFFFFF00), session
    return one(), one()


class _Socket:
    def __init__(self):
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.settimeout(2)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))

    def close(self):
        self.rx.close()
        self.tx.close()


def test_the_library_is_built_and_loads():
    """`make` builds it; a missing or stale library would silently put every edge back on
    the slower Python writer, so the suite insists."""
    assert native_rtp.load() is not None
    assert native_rtp.LIBRARY.stat().st_mtime >= native_rtp.SOURCE.stat().st_mtime


@pytest.mark.parametrize("extensions", [[(1, MID), (3, ABS)], [(3, ABS), (1, MID)], [(14, MID), (15, ABS)],
                                        [(1, MID)], [(2, ABS)], []],
                         ids=["mid+abs", "abs+mid", "two-byte-ids", "mid", "abs", "none"])
@pytest.mark.parametrize("profile", [pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                                     pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM], ids=["cm-sha1", "gcm"])
def test_the_c_writer_makes_the_python_writers_datagrams(extensions, profile):
    (py_writer, py_session), (c_writer, c_session) = _pair(extensions, profile)
    sock = _Socket()
    try:
        viewer = native_rtp.NativeViewer.make(c_writer, c_session, sock.tx.fileno(), sock.rx.getsockname())
        assert viewer is not None
        sent = []
        for n, frame in enumerate(_frames()):
            abs_send_time = (0xABCDEF + n * 0x10101) & 0xFFFFFF
            ntp = (0x1234 << 38) | (abs_send_time << 14) | 0x2A5  # its abs-send-time: bits 14-37
            packets, first, timestamp = py_writer.write(frame, abs_send_time)
            expected = [py_session.protect(p) for p in packets]
            got_first, wire, rest = viewer.send(frame, ntp, send=False)
            sent.append((frame, first, abs_send_time, expected, ntp, timestamp))
            assert (got_first, rest, wire) == (first, expected, sum(map(len, expected)))
            assert c_writer.sequence_number == py_writer.sequence_number  # 65533 wraps past 0
            assert timestamp == (c_writer.timestamp_origin + frame.timestamp) & 0xFFFFFFFF
            # and they are RTP a receiver reads: its marker on the last, its payloads
            plain = [RtpPacket.parse(p, _map(extensions)) for p in packets]
            assert [p.marker for p in plain] == [0] * (len(plain) - 1) + [1]
            assert [p.payload for p in plain] == frame.payloads
        # counted for getStats() and the RTCP sender reports, and kept for NACKs
        assert viewer.take_counts() == (
            sum(len(f.payloads) for f, *_ in sent), sum(len(p) for f, *_ in sent for p in f.payloads),
            sum(len(d) for *_, e, _, _ in sent for d in e), len(sent), sum(len(f.data) for f, *_ in sent),
            sent[-1][4], sent[-1][5])
        assert viewer.take_counts() is None  # taken
        assert list(viewer.history()) == [(f.serial, first, a) for f, first, a, *_ in reversed(sent)]
    finally:
        viewer.close()
        sock.close()


def test_sent_datagrams_arrive_whole_and_in_order():
    """The frame's datagrams leave in one segmented send per run of equal sizes and arrive
    as separate datagrams, each the one the Python writer would have made."""
    (py_writer, py_session), (c_writer, c_session) = _pair([(1, MID), (3, ABS)])
    sock = _Socket()
    try:
        viewer = native_rtp.NativeViewer.make(c_writer, c_session, sock.tx.fileno(), sock.rx.getsockname())
        for frame in _frames():
            packets, _, _ = py_writer.write(frame, 77)
            expected = [py_session.protect(p) for p in packets]
            _, wire, rest = viewer.send(frame, 77 << 14, send=True)  # abs-send-time 77
            assert rest == [] and wire == sum(map(len, expected))
            assert [sock.rx.recv(65536) for _ in expected] == expected
        assert native_rtp.NativeViewer.segmentation() is True  # this kernel segments UDP
    finally:
        sock.close()


def test_a_failed_send_hands_back_the_datagrams_that_did_not_leave():
    """What the kernel refuses (here: an IPv6 destination for an IPv4 socket) comes back,
    in order, for the asyncio transport to queue or report, as udp_batch does."""
    (py_writer, py_session), (c_writer, c_session) = _pair([(1, MID)])
    sock = _Socket()
    try:
        viewer = native_rtp.NativeViewer.make(c_writer, c_session, sock.tx.fileno(), ("::1", 9))
        frame = _frames()[0]
        packets, _, _ = py_writer.write(frame, 5)
        _, _, rest = viewer.send(frame, 5 << 14, send=True)
        assert rest == [py_session.protect(p) for p in packets] and len(rest) > 1
        assert native_rtp.NativeViewer.segmentation() is True  # EAFNOSUPPORT is no refusal to segment
    finally:
        sock.close()


def test_a_packet_libsrtp_refuses_is_an_error_not_garbage():
    """libsrtp refuses to protect a sequence number twice (its replay check): an error the
    fan-out ends that viewer's stream on, and nothing is sent."""
    (writer, session), _ = _pair([(1, MID)])
    sock = _Socket()
    try:
        viewer = native_rtp.NativeViewer.make(writer, session, sock.tx.fileno(), sock.rx.getsockname())
        frame = _frames()[1]
        viewer.send(frame, 0, send=True)
        assert sock.rx.recv(65536)
        viewer.struct.sequence_number = (viewer.struct.sequence_number - 1) & 0xFFFF  # the same packet again
        with pytest.raises(RuntimeError, match="SRTP protect failed"):
            viewer.send(frame, 0, send=True)
        sock.rx.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.rx.recv(65536)
    finally:
        sock.close()


def test_addresses_it_encodes_and_those_it_leaves_to_python():
    assert native_rtp.sockaddr(("127.0.0.1", 5004))[2:8] == bytes([0x13, 0x8C, 127, 0, 0, 1])
    six = native_rtp.sockaddr(("::1", 5004))
    assert len(six) == 28 and six[8:24] == socket.inet_pton(socket.AF_INET6, "::1")
    assert native_rtp.sockaddr(("fe80::1%eth0", 5004)) is None
    assert native_rtp.sockaddr(("not an address", 5004)) is None


def test_without_the_library_the_fanout_keeps_the_python_writer(monkeypatch, tmp_path):
    monkeypatch.setattr(native_rtp, "LIBRARY", tmp_path / "missing.so")
    monkeypatch.setattr(native_rtp, "_tried", False)
    monkeypatch.setattr(native_rtp, "_loaded", None)
    (writer, session), _ = _pair([(1, MID)])
    assert native_rtp.load() is None
    assert native_rtp.NativeViewer.make(writer, session, 0, ("127.0.0.1", 9)) is None

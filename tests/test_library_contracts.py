"""Library behaviour the edge depends on, one test per dependency, named after it.

The code relies on a few libraries doing something exact that their documentation does not
promise: how msgspec reports bad UTF-8 and what `encode_lines` keeps, which settings chDB
starts ClickHouse with, an aiortc/aioice internal we replace, and the OpenSSL that
cryptography ships accepting FFmpeg's P-224 DTLS certificate. `requirements.lock` pins
them; when `make lock` moves one of them and the behaviour changes, the test named after
that library fails here, loudly, instead of something downstream failing strangely.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from analytics import events as events_module
from analytics.wire import CollectBatch
from core.validation import BadInput, decode

ROOT = Path(__file__).resolve().parent.parent


# msgspec ---------------------------------------------------------------------------------


def test_msgspec_invalid_utf8_is_named_whatever_exception_msgspec_raises():
    """msgspec 0.22 raised UnicodeDecodeError for invalid UTF-8, 0.23 a DecodeError: the
    400 must say `invalid_utf8` under both."""
    for raw in (b'{"tenant_id": "t\xff", "viewer_id": "v", "events": []}', b"\xfe{}"):
        with pytest.raises(BadInput) as caught:
            decode(raw, CollectBatch)
        assert caught.value.error == "invalid_utf8"
    with pytest.raises(BadInput) as caught:
        decode(b'{"tenant_id": ', CollectBatch)
    assert caught.value.error == "invalid_json"


def test_msgspec_encode_lines_keeps_no_reference_to_a_list():
    """The beacon path encodes batches with `Encoder.encode_lines(list)`; msgspec 0.22 kept a
    reference to a generator argument (a leak per batch). A list must come back out with
    the references it went in with."""
    encoder = msgspec.json.Encoder()
    rows = [[1, "a"], [2, "b"]]
    before = sys.getrefcount(rows)
    for _ in range(100):
        encoder.encode_lines(rows)
    gc.collect()
    assert sys.getrefcount(rows) == before
    assert encoder.encode_lines(rows) == b'[1,"a"]\n[2,"b"]\n'
    # and the module that owns the wire format passes lists, whatever it is given
    assert events_module.encode_rows(iter(rows)) == b'[1,"a"]\n[2,"b"]\n'


# chDB ------------------------------------------------------------------------------------


def test_chdb_takes_server_settings_from_the_client_options(store):
    """Purge times rest on a start-up setting chDB takes from the client's options: the
    mutation pool (chDB's own default is 2, a server's 16). The backups path, the other
    one, is exercised by every test in test_backups.py."""
    pool = store.command(
        "SELECT value FROM system.server_settings WHERE name = 'background_pool_size'"
    )
    assert str(pool) == "16"


def test_chdb_lightweight_delete_is_synchronous_and_masked_until_applied(store):
    """Erasure is verified by counting with the deleted-rows mask off after the mutation;
    that needs DELETE to be synchronous and the mask setting to exist."""
    table = "contract_lwd"
    store.command(f"DROP TABLE IF EXISTS {table}")
    store.command(f"CREATE TABLE {table} (k UInt32) ENGINE = MergeTree ORDER BY k")
    try:
        store.command(f"INSERT INTO {table} SELECT number FROM numbers(10)")
        store.command(f"DELETE FROM {table} WHERE k < 3")
        assert store.command(f"SELECT count() FROM {table}") == 7
        masked_off = f"SELECT count() FROM {table} SETTINGS apply_deleted_mask = 0"
        assert store.command(masked_off) == 10
        store.command(f"ALTER TABLE {table} APPLY DELETED MASK SETTINGS mutations_sync = 2")
        assert store.command(masked_off) == 7
    finally:
        store.command(f"DROP TABLE IF EXISTS {table}")


# aiortc / aioice -------------------------------------------------------------------------


def test_aioice_host_discovery_is_the_function_the_edge_replaces():
    """`WAVE_ICE_HOSTS` works by replacing `aioice.ice.get_host_addresses`; if aioice stops
    calling it, the edge would offer every interface (or none) without any error."""
    from aiortc import RTCPeerConnection

    from edge.streaming import rtc

    async def offer_candidates() -> list[str]:
        pc = RTCPeerConnection(rtc.RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]

    rtc.restrict_host_candidates(("127.0.0.1",))
    try:
        candidates = asyncio.run(offer_candidates())
    finally:
        rtc.restrict_host_candidates(())
    assert candidates, "aioice offered no candidate at all"
    assert all(" 127.0.0.1 " in c for c in candidates), candidates


def test_aiortc_sends_an_av_packet_without_encoding():
    """The WHEP relay hands aiortc `av.Packet`s (one encoder per stream, none per viewer);
    aiortc's sender must packetize them as they are rather than expect frames."""
    import av
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    codec = RTCRtpCodecParameters(
        mimeType="video/H264", clockRate=90000, payloadType=102,
        parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
    )
    encoder = get_encoder(codec)
    annex_b = b"\x00\x00\x00\x01\x67\x42\xe0\x1f" + b"\x00\x00\x00\x01\x65" + b"\x88" * 3000
    packet = av.Packet(annex_b)
    packet.pts, packet.time_base = 0, __import__("fractions").Fraction(1, 90000)
    payloads, timestamp = encoder.pack(packet)
    assert len(payloads) > 1  # split into FU-A fragments, no decoding or re-encoding
    assert timestamp == 0


def test_pylibsrtp_internals_the_native_rtp_writer_relies_on():
    """edge/streaming/native_rtp.py hands rtp_send.c libsrtp's `srtp_protect` (libsrtp 2's
    signature: context, packet protected in place, its length in and out) and the session's
    `srtp_t`, both from pylibsrtp's own binding. If pylibsrtp changes either, this fails
    here rather than the C writer calling through a wrong pointer."""
    import os

    import pylibsrtp

    protect = pylibsrtp.ffi.addressof(pylibsrtp.lib, "srtp_protect")
    assert pylibsrtp.ffi.typeof(protect).cname.endswith("(*)(struct srtp_ctx_t_ *, void *, int *)")
    session = pylibsrtp.Session(pylibsrtp.Policy(key=os.urandom(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    assert pylibsrtp.ffi.typeof(session._srtp).cname == "struct srtp_ctx_t_ * *"
    assert session._srtp[0] != pylibsrtp.ffi.NULL


def test_aiortc_internals_the_shared_whep_fanout_relies_on():
    """edge/streaming/rtp_fanout.py replaces aiortc's RTP loop on a viewer's sender and keeps
    the rest: it overrides `_run_rtp` (started by `send()`), `_retransmit` and
    `_send_keyframe` (called by `_handle_rtcp_packet` for NACK and PLI/FIR), keeps the
    sender's own counters that `getStats()` and the RTCP sender reports read, reads the
    negotiated header extensions and RTX payload type, and sends through the DTLS
    transport's SRTP session and the selected ICE pair's datagram transport, counting in
    the transport's stats. Cut with aiortc's own packetizer. If aiortc renames any of it,
    this fails here rather than viewers silently getting nothing (or stats going flat)."""
    import inspect

    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.codecs.h264 import H264Encoder
    from aiortc.rtcdtlstransport import RTCDtlsTransport, State
    from aiortc.rtp import (RTCP_PSFB_PLI, RTCP_RTPFB_NACK, HeaderExtensionsMap, RtcpPsfbPacket,
                            RtcpRtpfbPacket)

    assert isinstance(inspect.getattr_static(H264Encoder, "_packetize"), classmethod)
    assert isinstance(inspect.getattr_static(H264Encoder, "_split_bitstream"), staticmethod)
    assert isinstance(inspect.getattr_static(H264Encoder, "_packetize_stap_a"), staticmethod)
    assert "self._run_rtp(" in inspect.getsource(RTCRtpSender.send)
    assert list(inspect.signature(RTCDtlsTransport._handle_rtp_data).parameters) == [
        "self", "data", "arrival_time_ms"]  # bench/whep_load.py counts frames there
    assert State.CONNECTED

    async def check() -> None:
        pc = RTCPeerConnection()
        sender = pc.addTransceiver("video").sender
        for name in ("packet_count", "octet_count", "ntp_timestamp", "rtp_timestamp", "mid", "rtp_started",
                     "rtp_exited", "rtx_payload_type", "rtx_sequence_number", "stats", "track"):
            assert hasattr(sender, f"_RTCRtpSender__{name}"), name
        assert isinstance(sender._RTCRtpSender__rtp_header_extensions_map, HeaderExtensionsMap)
        assert isinstance(sender._ssrc, int) and isinstance(sender._rtx_ssrc, int)
        dtls = sender.transport
        for name in ("_state", "_tx_srtp", "_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets"):
            assert hasattr(dtls, name), name
        assert isinstance(dtls.transport._connection._nominated, dict)  # component -> CandidatePair
        calls = []
        sender._send_keyframe = lambda: calls.append("keyframe")

        async def retransmit(seq):
            calls.append(seq)
        sender._retransmit = retransmit
        await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
        await sender._handle_rtcp_packet(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=sender._ssrc,
                                                         lost=[7, 9]))
        assert calls == ["keyframe", 7, 9]
        await pc.close()

    asyncio.run(check())

    from aioice.ice import CandidatePair
    pair_fields = inspect.signature(CandidatePair.__init__).parameters
    assert "protocol" in pair_fields and "remote_candidate" in pair_fields
    assert isinstance(inspect.getattr_static(CandidatePair, "remote_addr"), property)


# cryptography / OpenSSL ------------------------------------------------------------------

_P224_HANDSHAKE = textwrap.dedent(
    """
    import edge  # sets OPENSSL_CONF (unless already set) before OpenSSL loads
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from OpenSSL import SSL, crypto
    from aiortc.rtcdtlstransport import RTCCertificate, SRTP_AES128_CM_SHA1_80

    # FFmpeg's WHIP muxer (GnuTLS) is the DTLS server with a secp224r1 certificate.
    key = ec.generate_private_key(ec.SECP224R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ffmpeg")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    server_ctx = SSL.Context(SSL.DTLS_METHOD)
    server_ctx.use_certificate(crypto.X509.from_cryptography(cert))
    server_ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))
    server_ctx.set_verify(SSL.VERIFY_PEER, lambda *a: True)
    server_ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")

    # The edge's side is aiortc's own DTLS client context, unchanged.
    client_ctx = RTCCertificate.generateCertificate()._create_ssl_context([SRTP_AES128_CM_SHA1_80])
    client, server = SSL.Connection(client_ctx), SSL.Connection(server_ctx)
    client.set_connect_state(); server.set_accept_state()
    done = set()
    for _ in range(50):
        for side, peer, label in ((client, server, "c"), (server, client, "s")):
            try:
                side.do_handshake(); done.add(label)
            except SSL.WantReadError:
                pass
            try:
                peer.bio_write(side.bio_read(65536))
            except SSL.WantReadError:
                pass
        if done == {"c", "s"}:
            break
    print("handshake", "ok" if done == {"c", "s"} else "incomplete")
    """
)


def _p224_handshake(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _P224_HANDSHAKE], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )


def test_openssl_accepts_ffmpegs_p224_dtls_certificate():
    """FFmpeg's WHIP publisher signs DTLS with P-224; aiortc's client accepts it only with
    edge/streaming/openssl-webrtc.cnf loaded and OpenSSL 3.x (cryptography < 47). Each
    run is a fresh process: OPENSSL_CONF is read once, when OpenSSL loads."""
    import cryptography
    from cryptography.hazmat.backends.openssl import backend

    assert int(cryptography.__version__.split(".")[0]) < 47, cryptography.__version__
    assert backend.openssl_version_text().startswith("OpenSSL 3."), backend.openssl_version_text()

    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    with_conf = _p224_handshake(env)
    assert with_conf.stdout.strip() == "handshake ok", with_conf.stderr[-2000:]
    # The control: without the configuration the same handshake must not complete, or the
    # file (and this pin) no longer matter and can go.
    without = _p224_handshake({**env, "OPENSSL_CONF": "/dev/null"})
    assert "handshake ok" not in without.stdout, "P-224 works without openssl-webrtc.cnf now"

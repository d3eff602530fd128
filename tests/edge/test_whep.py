"""WHEP playback from the shared encoder: decodable frames, H.264 forced, no second encoder."""

import asyncio
import time

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from edge.streaming.pipeline import LivePipeline
from tests.conftest import admin_headers
from tests.edge.test_whip_hls import _publish, stream  # noqa: F401 - fixture
from tests.media import PatternTrack, read_counter


async def _watch(base_url, stream_id, frames_wanted=30, timeout=20.0, follow=False):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    got: dict = {"video": [], "audio": 0}
    done = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        async def read():
            while not done.is_set():
                frame = await track.recv()
                if track.kind == "video":
                    got["video"].append(frame)
                    if len(got["video"]) >= frames_wanted:
                        done.set()
                else:
                    got["audio"] += 1

        asyncio.ensure_future(read())

    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base_url, timeout=30, follow_redirects=follow) as http:
        r = await http.post(f"/whep/{stream_id}", content=pc.localDescription.sdp,
                            headers={"content-type": "application/sdp"})
    assert r.status_code == 201, r.text
    video_section = r.text.split("m=video", 1)[1].split("m=audio", 1)[0]
    assert "H264/90000" in video_section and "VP8" not in video_section
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    await asyncio.wait_for(done.wait(), timeout)
    return pc, got, str(r.url.join(r.headers["location"]))


def test_whep_viewers_share_the_encoder_and_decode_frames(server, stream):
    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        pipelines = len(LivePipeline.running)
        first = time.monotonic()
        (pc1, got1, loc1), (pc2, got2, loc2) = await asyncio.gather(
            _watch(server.base_url, stream["stream_id"]), _watch(server.base_url, stream["stream_id"])
        )
        assert time.monotonic() - first < 20
        assert len(LivePipeline.running) == pipelines  # two viewers, still one encoder
        for got in (got1, got2):
            frames = got["video"]
            assert (frames[-1].width, frames[-1].height) == (640, 360)
            counters = [read_counter(f) for f in frames[-10:]]
            assert counters == sorted(counters) and counters[-1] > counters[0]  # moving, in order
            assert got["audio"] > 0
        info = server.http.get(f"/v1/streams/{stream['stream_id']}",
                               headers={"authorization": f"Bearer {stream['admin_key']}"}).json()
        assert info["viewers"] == 2
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.delete(loc1)).status_code == 200
            assert (await http.delete(loc1)).status_code == 200  # just ended: idempotent
        assert len(server.edge.live.viewers()) == 1
        await pc1.close()
        await pc2.close()
        await publisher.close()

    asyncio.run(scenario())


def test_whep_rejections(server, stream):
    sid = stream["stream_id"]
    offer = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
             "a=rtpmap:96 VP8/90000\r\na=recvonly\r\n")
    sdp = {"content-type": "application/sdp"}
    not_live = server.http.post(f"/whep/{sid}", content=offer, headers=sdp)  # the WHEP draft: 409, retry later
    assert not_live.status_code == 409 and not_live.json()["error"] == "not_live"
    assert not_live.headers["retry-after"] == "2"
    assert server.http.post(f"/whep/{sid}", content=offer, headers={"content-type": "text/plain"}).status_code == 415
    assert server.http.post("/whep/st_0123456789abcdef", content=offer, headers=sdp).status_code == 404

    async def live_but_vp8_only():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            bad = await http.post(f"/whep/{sid}", content=offer, headers=sdp)
            assert bad.status_code == 400 and "H.264" in bad.json()["detail"]["message"]
            viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            viewer.addTransceiver("video", direction="recvonly")
            await viewer.setLocalDescription(await viewer.createOffer())
            real = viewer.localDescription.sdp
            await viewer.close()
            for body in ("", "v=0", real[: len(real) // 3], real[: len(real) * 2 // 3], real.replace("m=video", "m=vid"),
                         "\x00garbage\r\nm=\r\n", real + "a=x\r\n" * 14_000):
                r = await http.post(f"/whep/{sid}", content=body, headers=sdp)
                assert r.status_code in (400, 413), (body[-200:], r.status_code, r.text)
        assert server.edge.live.viewers() == {}  # nothing half-made was kept
        await publisher.close()

    asyncio.run(live_but_vp8_only())


def test_sessions_are_recorded_in_history(server, stream, store):
    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        viewer, got, location = await _watch(server.base_url, stream["stream_id"], frames_wanted=5)
        async with httpx.AsyncClient(base_url=server.base_url, headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}) as http:
            for _ in range(50):
                if (await http.get(f"/live/{stream['stream_id']}/index.m3u8")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.delete(location)).status_code == 200
            stop = await http.delete(r.headers["location"], headers={"authorization": f"Bearer {stream['publish_token']}"})
            assert stop.status_code == 200
        await viewer.close()
        await publisher.close()

    asyncio.run(scenario())
    server.stop()  # flushes open HLS sessions
    rows = store.rows(
        "SELECT toString(kind), media_id, toString(ip), browser, bytes_sent > 0, ended_at >= started_at"
        " FROM sessions WHERE media_id = {s:String} ORDER BY kind",
        {"s": stream["stream_id"]},
    )
    kinds = {row[0]: row for row in rows}
    assert set(kinds) == {"publish", "whep", "hls"}
    assert kinds["whep"][4] and kinds["hls"][4]
    assert kinds["hls"][3] == "Firefox"
    assert all(row[2] == "::ffff:127.0.0.1" and row[5] for row in rows)


# ---- half-open sessions (issue #14): viewers whose client vanished are closed ------------


def _socket_inodes(pc) -> set[str]:
    """`socket:[inode]` of every UDP socket a peer connection's ICE holds."""
    import os

    inodes = set()
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport  # RTCDtlsTransport -> RTCIceTransport
        for protocol in ice._connection._protocols:  # noqa: SLF001 - the sockets themselves
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                inodes.add(os.readlink(f"/proc/self/fd/{sock.fileno()}"))
    return inodes


def _open_sockets() -> set[str]:
    import os

    links = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return links


def _viewers(srv, created) -> int:
    return srv.http.get(f"/v1/streams/{created['stream_id']}", headers=admin_headers(created["admin_key"])).json()["viewers"]


async def _poll(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


@pytest.fixture
def quick_rtc(server_factory, tenant_factory):
    """An edge that closes sessions not connected within 2 s, or silent for 3 s."""
    srv = server_factory(rtc_connect_timeout_s=2.0, rtc_consent_timeout_s=3.0)
    _, key = tenant_factory()
    created = srv.http.post("/v1/streams", json={"name": "live"}, headers=admin_headers(key)).json()
    created["admin_key"] = key
    return srv, created


def test_whep_offers_whose_clients_vanish_before_connecting_are_closed(quick_rtc):
    """A client sends its offer without candidates (it would trickle them) and is gone:
    ICE waits for candidates forever, so only the connect timeout frees the viewer slot,
    the relay tracks and the sockets."""
    srv, created = quick_rtc

    async def scenario():
        publisher, r = await _publish(srv.base_url, created)
        assert r.status_code == 201
        held = set()
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            for _ in range(5):
                client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                client.addTransceiver("video", direction="recvonly")
                client.addTransceiver("audio", direction="recvonly")
                await client.setLocalDescription(await client.createOffer())
                offer = "".join(line + "\r\n" for line in client.localDescription.sdp.splitlines()
                                if not line.startswith(("a=candidate", "a=end-of-candidates")))
                await client.close()  # vanished: no answer applied, no DELETE
                answer = await http.post(f"/whep/{created['stream_id']}", content=offer,
                                         headers={"content-type": "application/sdp"})
                assert answer.status_code == 201, answer.text
                session = srv.edge.live.viewers()[answer.headers["location"].rsplit("/", 1)[1]]
                held |= _socket_inodes(session.pc)
        assert held and held <= _open_sockets()
        await _poll(lambda: not srv.edge.live.viewers(), 20, "the half-open viewers to be closed")
        assert _viewers(srv, created) == 0
        assert srv.edge.rtc_closed.get(kind="whep", reason="connect_timeout") == 5
        relay = srv.edge.live.get(created["stream_id"]).relay
        assert not relay.tracks  # the relay no longer feeds them
        await _poll(lambda: not held & _open_sockets(), 10, "their sockets to be closed")
        assert 'wave_rtc_sessions_closed_total{kind="whep",reason="connect_timeout"} 5' in srv.edge.metrics.render()
        await publisher.close()

    asyncio.run(scenario())


def test_a_connected_whep_viewer_that_stops_answering_is_closed_by_ice_consent(quick_rtc):
    """RFC 7675 consent freshness: aioice checks the selected pair and, with no answers,
    closes ICE; aiortc reports `failed` and the edge ends the viewer (here after 3 s,
    `WAVE_RTC_CONSENT_TIMEOUT_S`; 30 s by default)."""
    srv, created = quick_rtc

    async def scenario():
        publisher, r = await _publish(srv.base_url, created)
        assert r.status_code == 201
        viewer, _, _ = await _watch(srv.base_url, created["stream_id"], frames_wanted=5)
        assert _viewers(srv, created) == 1
        (session,) = srv.edge.live.viewers().values()
        assert session.pc.connectionState == "connected"
        held = _socket_inodes(session.pc)
        # The client vanishes without a word: its sockets stay open (no ICMP error reaches
        # the edge) but it neither reads nor sends anything any more, like a lost network.
        for transceiver in viewer.getTransceivers():
            for protocol in transceiver.receiver.transport.transport._connection._protocols:  # noqa: SLF001
                protocol.datagram_received = lambda data, addr: None
                protocol.transport.sendto = lambda *args, **kwargs: None
        await _poll(lambda: not srv.edge.live.viewers(), 20, "the silent viewer to be closed")
        assert _viewers(srv, created) == 0
        assert srv.edge.rtc_closed.get(kind="whep", reason="connection_lost") == 1, srv.edge.rtc_closed.values
        await _poll(lambda: not held & _open_sockets(), 10, "its sockets to be closed")


def test_webrtc_sessions_leave_no_address_in_the_logs(server, stream, caplog):
    """aioice logs every ICE check with both ends' addresses at INFO; aiortc logs its
    transports. With every logger at DEBUG at the root, a WHIP publish and a WHEP view
    leave no IP address in what is logged (the libraries are held at WARNING)."""
    import logging
    import re

    caplog.set_level(logging.DEBUG)

    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        viewer, _, location = await _watch(server.base_url, stream["stream_id"], frames_wanted=5)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.delete(location)).status_code == 200
        await viewer.close()
        await publisher.close()

    asyncio.run(scenario())
    lines = [f"{r.name}: {r.getMessage()}" for r in caplog.records
             if not r.name.startswith(("httpx", "httpcore"))]  # the test's own client logs its URLs
    assert lines, "nothing was logged: the check would prove nothing"
    leaked = [line for line in lines if re.search(r"\b127\.0\.0\.1\b|\b\d{1,3}(?:\.\d{1,3}){3}\b|::1\b", line)]
    assert not leaked, leaked[:5]


def test_a_whip_publisher_that_never_connects_is_closed(quick_rtc):
    srv, created = quick_rtc

    async def scenario():
        client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        client.addTrack(PatternTrack())
        await client.setLocalDescription(await client.createOffer())
        offer = "".join(line + "\r\n" for line in client.localDescription.sdp.splitlines()
                        if not line.startswith(("a=candidate", "a=end-of-candidates")))
        await client.close()
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
            r = await http.post(f"/whip/{created['stream_id']}", content=offer,
                                headers={"content-type": "application/sdp",
                                         "authorization": f"Bearer {created['publish_token']}"})
        assert r.status_code == 201, r.text
        session = srv.edge.live.publishers()[created["stream_id"]]
        held = _socket_inodes(session.pc)
        await _poll(lambda: created["stream_id"] not in srv.edge.live.publishers(), 20, "the publish to end")
        assert session.end_code == "connect_timeout"
        assert srv.edge.rtc_closed.get(kind="whip", reason="connect_timeout") == 1
        await _poll(lambda: not held & _open_sockets(), 10, "its sockets to be closed")

    asyncio.run(scenario())


def test_the_servers_log_handler_blanks_addresses_any_library_logs():
    """Defence in depth for a library line nobody has read yet (edge/logs.py)."""
    import logging

    from edge.logs import RedactAddresses

    record = logging.LogRecord("somelib", logging.WARNING, __file__, 1, "peer %s via %s at 12:30:05, ratio 1:2:3",
                               (("203.0.113.7", 5000), "2001:db8::5%eth0"), None)
    assert RedactAddresses().filter(record)
    assert record.getMessage() == "peer ('[address]', 5000) via [address] at 12:30:05, ratio 1:2:3"


def test_the_per_viewer_fanout_path_still_works_when_switched_beside_the_shared_one(server, stream):
    """WAVE_WHEP_FANOUT=per-viewer (settings.whep_fanout) keeps the former path for the
    benchmark's comparison; it is read per offer, so viewers of both paths share a stream."""
    from edge.streaming.relay import PacketTrack
    from edge.streaming.rtp_fanout import FanoutSender, FanoutTrack

    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        assert server.edge.settings.whep_fanout == "shared"  # the default
        pc1, got1, _ = await _watch(server.base_url, stream["stream_id"])
        server.edge.settings.whep_fanout = "per-viewer"
        pc2, got2, _ = await _watch(server.base_url, stream["stream_id"])
        server.edge.settings.whep_fanout = "shared-python"  # the shared path without the C writer
        pc3, got3, _ = await _watch(server.base_url, stream["stream_id"])
        sessions = sorted(server.edge.live.viewers().values(), key=lambda s: s.started)
        assert [type(t) for t in sessions[0].tracks] == [FanoutTrack, FanoutTrack]
        assert [type(t) for t in sessions[1].tracks] == [PacketTrack, PacketTrack]
        assert [type(t) for t in sessions[2].tracks] == [FanoutTrack, FanoutTrack]
        assert all(isinstance(s, FanoutSender) for s in sessions[0].pc.getSenders())
        assert not any(isinstance(s, FanoutSender) for s in sessions[1].pc.getSenders())
        # video and audio: the C writer on the default path, Python's on shared-python
        assert all(s._native is not None for s in sessions[0].pc.getSenders())
        assert all(isinstance(s, FanoutSender) and s._native is None for s in sessions[2].pc.getSenders())
        for got in (got1, got2, got3):
            frames = got["video"]
            assert (frames[-1].width, frames[-1].height) == (640, 360)
            counters = [read_counter(f) for f in frames[-10:]]
            assert counters == sorted(counters) and counters[-1] > counters[0]
            assert got["audio"] > 0
        for session in sessions:  # history and stats see the bytes of every path
            assert sum(t.bytes_sent for t in session.tracks) > 0
            stats = await session.pc.getSenders()[0].getStats()
            assert [s for s in stats.values() if s.type == "outbound-rtp"][0].packetsSent > 30
        await pc1.close()
        await pc2.close()
        await pc3.close()
        await publisher.close()

    asyncio.run(scenario())


def test_a_pli_from_a_shared_path_viewer_makes_the_encoder_produce_a_keyframe(server, stream, monkeypatch):
    requests: list[float] = []
    original = LivePipeline.request_keyframe

    def recording(self):
        requests.append(time.monotonic())
        original(self)

    monkeypatch.setattr(LivePipeline, "request_keyframe", recording)

    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        pc, got, _ = await _watch(server.base_url, stream["stream_id"], frames_wanted=20)
        live = server.edge.live.stream(stream["stream_id"])
        published: list[tuple[float, bool]] = []
        relay_publish = live.relay.publish

        def spy(kind, data, pts, time_base, keyframe):
            if kind == "video":
                published.append((time.monotonic(), keyframe))
            relay_publish(kind, data, pts, time_base, keyframe)

        live.relay.publish = spy
        await asyncio.sleep(0.7)  # past the encoder's minimum interval between forced IDRs
        session = next(iter(server.edge.live.viewers().values()))
        video_sender = next(s for s in session.pc.getSenders() if s.kind == "video")
        before = len(requests)
        asked = time.monotonic()
        receiver = next(r for r in pc.getReceivers() if r.track.kind == "video")
        await receiver._send_rtcp_pli(video_sender._ssrc)
        for _ in range(100):
            if len(requests) > before:
                break
            await asyncio.sleep(0.05)
        assert len(requests) == before + 1  # the PLI reached the stream's encoder
        for _ in range(100):
            after = [key for at, key in published if at > asked]
            if len(after) >= 4:
                break
            await asyncio.sleep(0.05)
        assert any(after[:4]), after  # an IDR within a few frames, not at the next 1 s GOP
        await pc.close()
        await publisher.close()

    asyncio.run(scenario())


def test_a_new_viewer_is_refused_while_the_event_loop_is_behind_and_admitted_once_it_caught_up(server, stream):
    """Overload: the edge answers 503 with Retry-After rather than take a viewer it cannot
    serve (edge/loop_lag.py), and takes it once the loop has caught up."""
    sid = stream["stream_id"]

    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        viewer.addTransceiver("video", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        server.edge.loop.call_soon_threadsafe(time.sleep, 3.0)  # the edge's loop is held for 3 s
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            busy = await http.post(f"/whep/{sid}", content=viewer.localDescription.sdp,
                                   headers={"content-type": "application/sdp"})
            assert busy.status_code == 503, busy.text
            assert busy.headers["retry-after"] == "2"
            assert busy.json()["error"] == "edge_busy"
            metrics = (await http.get("/metrics")).text
        assert "wave_whep_refused_busy_total 1" in metrics
        assert server.edge.live.viewers() == {}  # nothing was made for the refused offer
        await viewer.close()
        await asyncio.sleep(float(busy.headers["retry-after"]) + 0.5)
        pc, got, _ = await _watch(server.base_url, sid, frames_wanted=10)
        assert len(got["video"]) >= 10
        await pc.close()
        await publisher.close()

    asyncio.run(scenario())

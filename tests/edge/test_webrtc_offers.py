"""Offers as third-party WHEP players and WHIP publishers send them (the WHEP draft, RFC 9725):
a player that offers to send too, sound listed PCMU first, sound only, a token as a Bearer
credential, many or mDNS candidates; a publisher's offer the encoder cannot take; OPTIONS."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from edge.streaming import sdp as sdp_module
from tests.conftest import admin_headers
from tests.edge.test_whip_hls import _publish
from tests.media import PatternTrack, ToneTrack

SDP = {"content-type": "application/sdp"}


def _directions(answer: str) -> list[str]:
    return re.findall(r"^a=(sendonly|recvonly|sendrecv|inactive)\r?$", answer, re.M)


async def _offer(*tracks, recv: tuple[str, ...] = ()) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks:
        pc.addTrack(track)
    for kind in recv:
        pc.addTransceiver(kind, direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def _frames(pc: RTCPeerConnection, answer: str, kind: str, wanted: int, timeout: float = 20) -> int:
    """Apply the answer and count `kind` frames decoded until `wanted` (or the timeout)."""
    got = {"n": 0}
    enough = asyncio.Event()

    @pc.on("track")
    def on_track(track):
        async def read():
            while not enough.is_set():
                await track.recv()
                if track.kind == kind:
                    got["n"] += 1
                    if got["n"] >= wanted:
                        enough.set()
        asyncio.ensure_future(read())

    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(enough.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    return got["n"]


def test_whep_answers_what_third_party_players_offer(server, tenant_factory):
    _, key = tenant_factory()
    stream = server.http.post("/v1/streams", json={"name": "p", "playback": "private"},
                              headers=admin_headers(key)).json()
    sid = stream["stream_id"]
    token = server.http.post(f"/v1/streams/{sid}/playback-token", json={}, headers=admin_headers(key)).json()["token"]
    bearer = {**SDP, "authorization": f"Bearer {token}"}

    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201, r.text
        pcs = [publisher]
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            # The draft has players send a configured token as a Bearer credential.
            plain = await _offer(recv=("video",))
            pcs.append(plain)
            assert (await http.post(f"/whep/{sid}", content=plain.localDescription.sdp, headers=SDP)).status_code == 403

            # A player that offers to send as well (camera and microphone: sendrecv) is
            # answered sendonly, and nothing it sends is taken in.
            both = await _offer(PatternTrack(), ToneTrack())
            pcs.append(both)
            assert _directions(both.localDescription.sdp) == ["sendrecv", "sendrecv"]
            r = await http.post(f"/whep/{sid}", content=both.localDescription.sdp, headers=bearer)
            assert r.status_code == 201, r.text
            assert _directions(r.text) == ["sendonly", "sendonly"]
            session = server.edge.live.viewer(sid, r.headers["location"].rsplit("/", 1)[1])
            assert [t.currentDirection for t in session.pc.getTransceivers()] == ["sendonly", "sendonly"]
            assert await _frames(both, r.text, "video", 10) >= 10

            # Sound only, listed PCMU first: answered with Opus alone (the relay sends under
            # the answer's first payload type: PCMU first meant Opus played as PCMU).
            sound = await _offer(recv=("audio",))
            pcs.append(sound)
            offer = sound.localDescription.sdp
            m_line = re.search(r"^m=audio \S+ \S+ (.*)\r$", offer, re.M)
            pcmu = re.search(r"^a=rtpmap:(\d+) PCMU/", offer, re.M).group(1)
            pts = m_line.group(1).split(" ")
            offer = offer.replace(m_line.group(0), m_line.group(0).replace(m_line.group(1), " ".join(
                [pcmu] + [pt for pt in pts if pt != pcmu])))
            r = await http.post(f"/whep/{sid}", content=offer, headers=bearer)
            assert r.status_code == 201, r.text
            assert "m=video" not in r.text and _directions(r.text) == ["sendonly"]
            assert re.findall(r"^a=rtpmap:\d+ (\w+)/", r.text, re.M) == ["opus"]
            assert await _frames(sound, r.text, "audio", 20) >= 20

            # Candidates: mDNS names are not looked up (a second's wait, a multicast query),
            # and at most MAX_CANDIDATES per section are checked.
            many = await _offer(recv=("video",))
            pcs.append(many)
            extra = "".join(f"a=candidate:{i} 1 udp 2130706431 127.0.0.{2 + i} {40000 + i} typ host\r\n"
                            for i in range(60))
            extra += "a=candidate:99 1 udp 2130706431 0d5a6f1c-0b7e-4a8e-9d4b-2f6c1e0a7b3d.local 40999 typ host\r\n"
            offer = many.localDescription.sdp.replace("a=mid:0\r\n", "a=mid:0\r\n" + extra, 1)
            started = time.monotonic()
            r = await http.post(f"/whep/{sid}", content=offer, headers=bearer)
            assert r.status_code == 201, r.text
            assert time.monotonic() - started < 5
            session = server.edge.live.viewer(sid, r.headers["location"].rsplit("/", 1)[1])
            remote = session.pc.remoteDescription.sdp
            assert ".local" not in remote
            assert 0 < len(re.findall(r"^a=candidate:", remote, re.M)) <= sdp_module.MAX_CANDIDATES
        for pc in pcs:
            await pc.close()

    asyncio.run(scenario())


def test_whip_refuses_offers_it_cannot_ingest_before_replacing_the_publish_on_air(server, tenant_factory):
    """A tenant that lets the newest publisher win: a POST whose offer is refused must not
    have ended the publish on air first. Then what third-party clients read from OPTIONS."""
    _, key = tenant_factory(publisher_takeover="newest")
    stream = server.http.post("/v1/streams", json={"name": "w"}, headers=admin_headers(key)).json()
    sid = stream["stream_id"]
    auth = {**SDP, "authorization": f"Bearer {stream['publish_token']}"}

    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201, r.text
        location = r.headers["location"]
        on_air = server.edge.live.publisher(sid)
        sound_only = await _offer(ToneTrack())
        two_cameras = await _offer(PatternTrack(), PatternTrack(), ToneTrack())
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            for body, why in (("v=0\r\nthis is not sdp", "not an SDP offer"),
                              (sound_only.localDescription.sdp, "exactly one video track"),
                              (two_cameras.localDescription.sdp, "exactly one video track")):
                refused = await http.post(f"/whip/{sid}", content=body, headers=auth)
                assert refused.status_code == 400 and why in refused.json()["detail"]["message"], refused.text
            assert server.edge.live.publisher(sid) is on_air and not on_air.ended

            wrong = await http.post(f"/whip/{sid}", content=sound_only.localDescription.sdp,
                                    headers={**SDP, "authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")

            endpoint = await http.options(f"/whip/{sid}")
            assert endpoint.status_code == 200 and endpoint.headers["accept-post"] == "application/sdp"
            assert "POST" in endpoint.headers["allow"]
            session = await http.options(location, headers={"origin": "https://studio.example"})
            assert session.headers["accept-patch"] == "application/trickle-ice-sdpfrag"
            assert "PATCH" in session.headers["access-control-allow-methods"]
            assert session.headers["access-control-allow-origin"] == "https://studio.example"
            assert "etag" in session.headers["access-control-allow-headers"]
        for pc in (publisher, sound_only, two_cameras):
            await pc.close()

    asyncio.run(scenario())


def test_a_publish_still_connecting_is_not_replaced_by_the_next_post(server, live_stream):
    """Before its first frame a publish is connecting (ICE, DTLS: ffmpeg allows itself 5 s),
    not silent: a second encoder on the same key waits (409) instead of ending it."""
    async def scenario():
        first = await _offer(PatternTrack(), ToneTrack())
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            auth = {**SDP, "authorization": f"Bearer {live_stream['publish_token']}"}
            r = await http.post(f"/whip/{live_stream['stream_id']}", content=first.localDescription.sdp, headers=auth)
            assert r.status_code == 201, r.text  # and the answer is never applied: still connecting
            await asyncio.sleep(server.edge.settings.publish_takeover_s + 0.5)
            second = await _offer(PatternTrack(), ToneTrack())
            r = await http.post(f"/whip/{live_stream['stream_id']}", content=second.localDescription.sdp, headers=auth)
            assert r.status_code == 409 and int(r.headers["retry-after"]) >= 1, r.text
        await first.close()
        await second.close()

    asyncio.run(scenario())

"""WHIP/WHEP sessions as real clients use them (RFC 9725): trickle ICE by PATCH, ICE
restart refused as the RFC allows, DELETE after the session already ended, a crashed
publisher replaced at once, and CORS for a studio page on another origin."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.edge.test_whip_hls import _publish, _wait_segments, stream  # noqa: F401 - fixture
from tests.media import PatternTrack

FRAG = "application/trickle-ice-sdpfrag"


def _without_candidates(sdp: str) -> tuple[str, list[str]]:
    """An offer as a trickling client sends it: no candidates yet (they follow by PATCH)."""
    lines = sdp.splitlines()
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    kept = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(kept) + "\r\n", candidates


def _fragment(sdp: str, candidates: list[str], ufrag: str | None = None, pwd: str | None = None) -> str:
    ufrag = ufrag or re.search(r"a=ice-ufrag:(\S+)", sdp).group(1)
    pwd = pwd or re.search(r"a=ice-pwd:(\S+)", sdp).group(1)
    mid = re.search(r"a=mid:(\S+)", sdp).group(1)
    return "\r\n".join([f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", "m=video 9 UDP/TLS/RTP/SAVPF 0",
                        f"a=mid:{mid}", *candidates, "a=end-of-candidates"]) + "\r\n"


def _remote_candidates(pc) -> list:
    return pc.getTransceivers()[0].receiver.transport.transport.getRemoteCandidates()


def test_whip_trickle_adds_candidates_and_refuses_an_ice_restart_with_422(server, stream):
    auth = {"authorization": f"Bearer {stream['publish_token']}"}

    async def scenario():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(PatternTrack())
        await pc.setLocalDescription(await pc.createOffer())
        offer, candidates = _without_candidates(pc.localDescription.sdp)
        assert candidates
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            r = await http.post(f"/whip/{stream['stream_id']}", content=offer,
                                headers={"content-type": "application/sdp", **auth})
            assert r.status_code == 201, r.text
            location, etag = r.headers["location"], r.headers["etag"]
            session = server.edge.live.publishers()[stream["stream_id"]]
            assert _remote_candidates(session.pc) == []

            fragment = _fragment(offer, candidates)
            wrong_type = await http.patch(location, content=fragment, headers={"content-type": "text/plain", **auth})
            assert wrong_type.status_code == 415
            stale = await http.patch(location, content=fragment,
                                     headers={"content-type": FRAG, "if-match": '"other"', **auth})
            assert stale.status_code == 412 and stale.json()["error"] == "precondition_failed"
            nobody = await http.patch(location, content=fragment, headers={"content-type": FRAG})
            assert nobody.status_code == 401
            ok = await http.patch(location, content=fragment, headers={"content-type": FRAG, "if-match": etag, **auth})
            assert ok.status_code == 204, ok.text
            added = {(c.ip, c.port) for c in _remote_candidates(session.pc)}
            sent = {(c.split()[4], int(c.split()[5])) for c in candidates}
            assert sent <= added

            await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
            await _wait_segments(http, stream["stream_id"], 1, timeout=10)

            restart = await http.patch(location, content=_fragment(offer, [], ufrag="newU", pwd="n" * 24),
                                       headers={"content-type": FRAG, "if-match": etag, **auth})
            assert restart.status_code == 422 and restart.json()["error"] == "ice_restart_unsupported"
            garbage = await http.patch(location, content="a=candidate:nonsense\r\n",
                                       headers={"content-type": FRAG, "if-match": etag, **auth})
            assert garbage.status_code == 400
            assert stream["stream_id"] in server.edge.live.publishers()  # none of that hurt the publish
        await pc.close()

    asyncio.run(scenario())


async def _whep_viewer(base_url: str, stream_id: str):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post(f"/whep/{stream_id}", content=pc.localDescription.sdp,
                            headers={"content-type": "application/sdp"})
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    return pc, r


def test_whep_trickle_and_delete_after_the_session_ended(server, stream):
    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            await _wait_segments(http, stream["stream_id"], 1, timeout=10)
            viewer, answer = await _whep_viewer(server.base_url, stream["stream_id"])
            location, etag = answer.headers["location"], answer.headers["etag"]
            ok = await http.patch(location, content=_fragment(viewer.localDescription.sdp, []),
                                  headers={"content-type": FRAG, "if-match": etag})
            assert ok.status_code == 204, ok.text

            # The client closes its peer connection first, then sends DELETE (whip-whep's
            # order): often the edge has ended the session by then; and a DELETE may be
            # repeated. Either way the answer is 200, never a 404 a client logs as an error.
            await viewer.close()
            session_id = location.rsplit("/", 1)[1]
            assert (await http.delete(location)).status_code == 200
            assert session_id not in server.edge.live.viewers()
            assert (await http.delete(location)).status_code == 200  # already ended: still 200
            assert (await http.delete(f"/whep/{stream['stream_id']}/{'0' * 24}")).status_code == 404
            assert (await http.patch(location, content="", headers={"content-type": FRAG})).status_code == 404

            # the same for the publisher; and ending the publish ends its viewers
            whip_location = r.headers["location"]
            second, _ = await _whep_viewer(server.base_url, stream["stream_id"])
            await publisher.close()
            auth = {"authorization": f"Bearer {stream['publish_token']}"}
            assert (await http.delete(whip_location, headers=auth)).status_code == 200
            assert stream["stream_id"] not in server.edge.live.publishers()
            assert (await http.delete(whip_location, headers=auth)).status_code == 200
            assert (await http.delete(whip_location)).status_code == 401  # still needs the token
            other = f"/whip/{stream['stream_id']}/{'0' * 24}"
            assert (await http.delete(other, headers=auth)).status_code == 404
            assert not [v for v in server.edge.live.viewers().values() if v.stream_id == stream["stream_id"]]
            await second.close()

    asyncio.run(scenario())


def test_a_crashed_publisher_is_replaced_within_two_seconds(server, stream):
    """The publisher's process dies (no DELETE, no DTLS close); a new publish is on air
    within 2 s, not after the 10 s silence watchdog."""
    script = Path(__file__).parent.parent / "ffmpeg_whip_publish.py"
    crashed = subprocess.Popen([sys.executable, str(script), stream["whip_url"], stream["publish_token"], "60"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def scenario():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            await _wait_segments(http, stream["stream_id"], 1, timeout=15)
            old = server.edge.live.publishers()[stream["stream_id"]]
            crashed.send_signal(signal.SIGKILL)
            crashed.wait(10)
            killed_at = time.monotonic()
            refusals = []
            while True:
                pc, r = await _publish(server.base_url, stream)
                if r.status_code == 201:
                    break
                await pc.close()
                assert r.status_code == 409, r.text
                refusals.append(int(r.headers["retry-after"]))
                await asyncio.sleep(0.25)  # a client may honour Retry-After; this one polls
                assert time.monotonic() - killed_at < 5, refusals
            back_on_air = time.monotonic() - killed_at
            assert all(1 <= wait <= 2 for wait in refusals), refusals
            assert old.ended and old.end_reason == "replaced by a new publish"
            assert server.edge.live.publishers()[stream["stream_id"]] is not old
            new = server.edge.live.publishers()[stream["stream_id"]]
            deadline = time.monotonic() + 10
            while new.idle_s() > 0.5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert new.idle_s() <= 0.5, "the new publish carries media"
            await pc.close()
            return back_on_air

    try:
        back_on_air = asyncio.run(scenario())
    finally:
        if crashed.poll() is None:
            crashed.kill()
    assert back_on_air < 2.0


def test_a_live_publisher_is_not_taken_over(server, stream):
    async def scenario():
        pc, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            await _wait_segments(http, stream["stream_id"], 1, timeout=10)
        second_pc, second = await _publish(server.base_url, stream)
        assert second.status_code == 409 and second.headers["retry-after"] == "1"
        assert server.edge.live.publishers()[stream["stream_id"]].session_id in r.headers["location"]
        await second_pc.close()
        await pc.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_whip_cors_follows_the_tenants_allowed_origins(server, tenant_factory, method):
    _, key = tenant_factory(allowed_origins=("https://studio.example",))
    sid = server.http.post("/v1/streams", json={"name": "s"}, headers={"authorization": f"Bearer {key}"}
                           ).json()["stream_id"]
    path = f"/whip/{sid}" if method == "POST" else f"/whip/{sid}/{'0' * 24}"
    preflight = {"access-control-request-method": method,
                 "access-control-request-headers": "authorization, content-type, if-match"}
    mine = server.http.options(path, headers={"origin": "https://studio.example", **preflight})
    assert mine.status_code == 204
    assert mine.headers["access-control-allow-origin"] == "https://studio.example"
    assert method in mine.headers["access-control-allow-methods"]
    assert {"authorization", "content-type", "if-match"} <= {
        h.strip() for h in mine.headers["access-control-allow-headers"].split(",")}
    assert {"location", "etag", "link"} <= {h.strip() for h in mine.headers["access-control-expose-headers"].split(",")}
    theirs = server.http.options(path, headers={"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in theirs.headers
    # the publish itself answers the studio's origin (here a 401: no token), never another
    refused = server.http.post(f"/whip/{sid}", content="v=0", headers={
        "origin": "https://studio.example", "content-type": "application/sdp"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "https://studio.example"


def test_whep_viewers_are_told_by_server_sent_events_when_the_stream_ends(server, stream):
    """The WHEP answer links an events resource (WHEP's server-sent events extension):
    `active` while the stream plays to the viewer, `inactive` the moment the publish ends."""
    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            await _wait_segments(http, stream["stream_id"], 1, timeout=10)
            viewer, answer = await _whep_viewer(server.base_url, stream["stream_id"])
            link = answer.headers["link"]
            assert 'rel="urn:ietf:params:whep:ext:core:server-sent-events"' in link
            events_url = re.match(r"<([^>]+)>", link).group(1)
            assert (await http.post(events_url, content=b"[1, 2]")).status_code == 400
            assert (await http.post(events_url, content=b'["layers"]')).status_code == 400
            other = events_url.replace(answer.headers["location"].rsplit("/", 1)[1], "0" * 24)
            assert (await http.post(other, content=b'["active"]')).status_code == 404
            subscribed = await http.post(events_url, content=b'["active", "inactive"]',
                                         headers={"content-type": "application/json"})
            assert subscribed.status_code == 201
            seen = []
            async with http.stream("GET", subscribed.headers["location"]) as sse:
                assert sse.headers["content-type"].startswith("text/event-stream")
                ended_at = None
                async for line in sse.aiter_lines():
                    if line.startswith("event:"):
                        seen.append(line.split(":", 1)[1].strip())
                        if seen == ["active"]:
                            ended_at = time.monotonic()
                            await http.delete(r.headers["location"],
                                              headers={"authorization": f"Bearer {stream['publish_token']}"})
                told_after = time.monotonic() - ended_at  # the stream closed after `inactive`
            late = await http.get(subscribed.headers["location"])  # ended a moment ago: told at once
            await viewer.close()
            await publisher.close()
            return seen, told_after, late

    seen, told_after, late = asyncio.run(scenario())
    assert seen == ["active", "inactive"]
    assert told_after < 2.0
    assert late.status_code == 200 and "event: inactive" in late.text


@pytest.mark.parametrize("listed, params, largest", [
    ("q;h;f", {}, "f"),                       # mediasoup, whip-whep demos
    ("h;m;l", {}, "h"),                       # Janus
    ("l;m;h", {}, "h"),
    ("a;b", {"a": "max-width=1280;max-height=720", "b": "max-width=320;max-height=180"}, "a"),
    ("x;y", {}, "x"),                         # nothing to go on: what a browser keeps anyway
    ("~q;h,f", {}, "f"),                      # paused and alternative layers
])
def test_the_largest_simulcast_layer_is_accepted(listed, params, largest):
    from edge.streaming.sdp import keep_largest_simulcast_layer

    rids = [r.lstrip("~") for alt in listed.split(";") for r in alt.split(",")]
    offer = "\r\n".join(["v=0", "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:0",
                         "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                         *[f"a=rid:{r} send {params.get(r, '')}".rstrip() for r in rids],
                         f"a=simulcast:send {listed}"]) + "\r\n"
    answer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\n"
    result = keep_largest_simulcast_layer(offer, answer)
    assert f"a=simulcast:recv {largest}\r\n" in result and f"a=rid:{largest} recv\r\n" in result
    assert "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in result
    assert keep_largest_simulcast_layer(answer, answer) == answer  # no simulcast: untouched


def test_a_tenant_may_let_the_newest_publisher_win(server, tenant_factory):
    """`tenant create --publisher-takeover newest`: any new authenticated publish replaces a
    live one at once (MediaMTX's default), where the default waits for it to go silent."""
    _, key = tenant_factory(publisher_takeover="newest")
    stream = server.http.post("/v1/streams", json={"name": "s"}, headers={"authorization": f"Bearer {key}"}).json()

    async def scenario():
        first_pc, first = await _publish(server.base_url, stream)
        assert first.status_code == 201
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            await _wait_segments(http, stream["stream_id"], 1, timeout=10)
        old = server.edge.live.publisher(stream["stream_id"])
        assert old.idle_s() < 0.5  # live, sending media
        second_pc, second = await _publish(server.base_url, stream)
        assert second.status_code == 201, second.text
        assert old.ended and old.end_reason == "replaced by a new publish"
        assert server.edge.live.publisher(stream["stream_id"]).session_id in second.headers["location"]
        await first_pc.close()
        await second_pc.close()

    asyncio.run(scenario())

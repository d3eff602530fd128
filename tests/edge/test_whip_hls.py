"""WHIP ingest with a real aiortc publisher, encoded once into live fMP4 HLS."""

import asyncio
import re
import time

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from edge.streaming.pipeline import LivePipeline
from tests.conftest import admin_headers
from tests.media import PatternTrack, ToneTrack, decode_fmp4


@pytest.fixture
def stream(live_stream):
    return live_stream


async def _publish(base_url, stream, token=None, tracks=None):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks or (PatternTrack(), ToneTrack()):
        pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post(
            f"/whip/{stream['stream_id']}",
            content=pc.localDescription.sdp,
            headers={"content-type": "application/sdp",
                     "authorization": f"Bearer {token or stream['publish_token']}"},
        )
    if r.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    return pc, r


async def _wait_segments(http, stream_id, count, timeout):
    """The source's media playlist once it lists `count` segments: `index.m3u8`, or the
    first playlist it names when it is a multivariant one (a source taller than a rung
    of the tenant's live ladder)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await http.get(f"/live/{stream_id}/index.m3u8")
        if r.status_code == 200 and "#EXT-X-STREAM-INF" in r.text:
            first = next(line for line in r.text.splitlines() if line and not line.startswith("#"))
            r = await http.get(f"/live/{stream_id}/{first}")
        if r.status_code == 200:
            segments = re.findall(r"^(seg_\d+\.m4s)$", r.text, re.M)
            if len(segments) >= count:
                return r, segments
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {count} live segments within {timeout} s")


def test_whip_publish_goes_live_as_hls_and_ends_with_endlist(server, stream):
    async def scenario():
        started = time.monotonic()
        pc, r = await _publish(server.base_url, stream)
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("application/sdp")
        assert r.headers["etag"]
        location = r.headers["location"]
        assert location.startswith(f"/whip/{stream['stream_id']}/")
        assert "a=candidate:" in r.text and "127.0.0.1" in r.text  # all candidates, loopback only
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            playlist, segments = await _wait_segments(http, stream["stream_id"], 1, timeout=5.0)
            assert time.monotonic() - started < 5.0 + 1.0
            assert playlist.headers["content-type"] == "application/vnd.apple.mpegurl"
            assert playlist.headers["cache-control"] == "no-cache"
            assert "#EXT-X-PROGRAM-DATE-TIME:" in playlist.text
            assert '#EXT-X-MAP:URI="init.mp4"' in playlist.text
            info = (await http.get(f"/v1/streams/{stream['stream_id']}", headers=admin_headers(stream["admin_key"]))).json()
            assert info["publishing"] is True and info["publishing_since"]

            init = await http.get(f"/live/{stream['stream_id']}/init.mp4")
            seg = await http.get(f"/live/{stream['stream_id']}/{segments[0]}")
            assert seg.headers["content-type"] == "video/iso.segment"
            assert "immutable" in seg.headers["cache-control"]
            frames, codecs = decode_fmp4(init.content, seg.content)
            assert {"h264", "aac"} <= set(codecs)
            assert frames and (frames[0].width, frames[0].height) == (640, 360)
            assert 20 <= len(frames) <= 70  # a 1-2 s segment at up to 30 fps

            stop = await http.delete(location, headers={"authorization": f"Bearer {stream['publish_token']}"})
            assert stop.status_code == 200
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                text = (await http.get(f"/live/{stream['stream_id']}/index.m3u8")).text
                if "#EXT-X-ENDLIST" in text:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("playlist never ended")
            info = (await http.get(f"/v1/streams/{stream['stream_id']}", headers=admin_headers(stream["admin_key"]))).json()
            assert info["publishing"] is False
        await pc.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("fps", [20, 25])
def test_segments_are_one_second_whatever_the_source_frame_rate(server, stream, fps):
    """Keyframes follow the clock, not a frame count: a 20 fps camera got 1.5 s segments
    when the GOP was 30 frames."""
    async def scenario():
        pc, r = await _publish(server.base_url, stream, tracks=[PatternTrack(fps=fps)])
        assert r.status_code == 201, r.text
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            playlist, segments = await _wait_segments(http, stream["stream_id"], 4, timeout=15.0)
            durations = [float(d) for d in re.findall(r"^#EXTINF:([0-9.]+),", playlist.text, re.M)]
            init = (await http.get(f"/live/{stream['stream_id']}/init.mp4")).content
            last = (await http.get(f"/live/{stream['stream_id']}/{segments[-1]}")).content
        await pc.close()
        # the first segment starts wherever the publish began; the rest sit on the grid
        steady = durations[1:]
        assert steady and all(0.85 <= d <= 1.2 for d in steady), (fps, durations)
        frames, _ = decode_fmp4(init, last)
        assert len(frames) >= fps // 2, (fps, len(frames))  # about a second of the source

    asyncio.run(scenario())


def test_one_encoder_per_stream(server, stream):
    async def scenario():
        before = len(LivePipeline.running)
        pc, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        assert len(LivePipeline.running) == before + 1
        second_pc, second = await _publish(server.base_url, stream)
        assert second.status_code == 409 and second.json()["error"] == "conflict"
        assert len(LivePipeline.running) == before + 1
        await second_pc.close()
        await pc.close()  # the publisher vanishes: the edge notices and ends the publish
        deadline = time.monotonic() + 15
        while stream["stream_id"] in server.edge.live.publishers() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert stream["stream_id"] not in server.edge.live.publishers()

    asyncio.run(scenario())


def test_whip_rejections(server, stream):
    sid = stream["stream_id"]
    token = {"authorization": f"Bearer {stream['publish_token']}"}
    sdp = {"content-type": "application/sdp"}
    offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    r = server.http.post(f"/whip/{sid}", content=offer, headers={**sdp, "authorization": "Bearer pt_wrong"})
    assert r.status_code == 401
    r = server.http.post(f"/whip/{sid}", content=offer, headers=sdp)
    assert r.status_code == 401
    r = server.http.post(f"/whip/{sid}", content=offer, headers={**token, "content-type": "application/json"})
    assert r.status_code == 415
    r = server.http.post(f"/whip/{sid}", content="this is not sdp", headers={**sdp, **token})
    assert r.status_code == 400 and r.json()["error"] == "bad_sdp"
    no_codec = offer.replace("VP8", "THEORA")
    r = server.http.post(f"/whip/{sid}", content=no_codec, headers={**sdp, **token})
    assert r.status_code == 400 and "codec" in r.json()["detail"]["message"]
    r = server.http.post(f"/whip/{sid}", content=offer, headers={**sdp, **token})
    assert r.status_code == 400  # parses as text but not as a usable offer (no ICE/DTLS)
    r = server.http.post("/whip/st_0123456789abcdef", content=offer, headers={**sdp, **token})
    assert r.status_code == 404
    r = server.http.patch(f"/whip/{sid}/whatever", content="a=candidate", headers=token)
    assert r.status_code == 404  # trickle exists (test_webrtc_sessions.py), not this session
    assert sid not in server.edge.live.publishers()


@pytest.mark.parametrize(
    "path",
    ["/live/{sid}/../../secret.key", "/live/{sid}/..%2F..%2Fsecret.key", "/live/{sid}/%2e%2e/secret.key",
     "/live/..%2Fmedia/index.m3u8", "/live/{sid}/index.m3u8%00", "/live/{sid}/seg_1.m4s",
     "/vod/vd_0123456789abcdef/..%2F..%2Fsecret.key", "/vod/..%2F..%2Fsecret.key/index.m3u8",
     "/vod/vd_0123456789abcdef/vod.m3u8", "/vod/vd_0123456789abcdef/hls.m3u8"],
)
def test_live_paths_cannot_escape(server, stream, path):
    r = server.http.get(path.format(sid=stream["stream_id"]))
    assert r.status_code == 404


def test_private_live_playback_needs_a_token(server, tenant_factory):
    _, key = tenant_factory()
    created = server.http.post("/v1/streams", json={"name": "p", "playback": "private"}, headers=admin_headers(key)).json()
    sid = created["stream_id"]
    r = server.http.get(f"/live/{sid}/index.m3u8")
    assert r.status_code == 403
    token = server.http.post(f"/v1/streams/{sid}/playback-token", json={}, headers=admin_headers(key)).json()["token"]
    r = server.http.get(f"/live/{sid}/index.m3u8", params={"token": token})
    assert r.status_code == 404  # authorised; simply not live yet


def test_ffmpeg_whip_client_publishes(server, stream):
    """Interop with a publisher nobody here wrote: FFmpeg's WHIP muxer, bundled in PyAV."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "ffmpeg_whip_publish.py"
    publisher = subprocess.Popen([sys.executable, str(script), stream["whip_url"], stream["publish_token"], "6"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def watch():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            _, segments = await _wait_segments(http, stream["stream_id"], 1, timeout=10)
            init = (await http.get(f"/live/{stream['stream_id']}/init.mp4")).content
            seg = (await http.get(f"/live/{stream['stream_id']}/{segments[0]}")).content
            return decode_fmp4(init, seg)

    try:
        frames, codecs = asyncio.run(watch())
        output, _ = publisher.communicate(timeout=60)
    finally:
        if publisher.poll() is None:
            publisher.kill()
    assert publisher.returncode == 0, output
    assert "h264" in codecs and frames and (frames[0].width, frames[0].height) == (640, 360)


def test_a_silent_publisher_is_ended(server_factory, tenant_factory):
    """Media stops but the peer connection stays up: the publish ends after the silence."""
    from tests.media import PatternTrack

    class Freezing(PatternTrack):
        async def recv(self):
            if self.count >= 30:
                await asyncio.sleep(3600)  # the camera hangs; ICE and DTLS stay alive
            return await super().recv()

    srv = server_factory(publish_silence_s=2.0)
    _, key = tenant_factory()
    created = srv.http.post("/v1/streams", json={"name": "silent"}, headers=admin_headers(key)).json()

    async def scenario():
        pc, r = await _publish(srv.base_url, created, tracks=[Freezing()])
        assert r.status_code == 201
        session = srv.edge.live.publishers()[created["stream_id"]]
        deadline = time.monotonic() + 15
        while created["stream_id"] in srv.edge.live.publishers() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert created["stream_id"] not in srv.edge.live.publishers()
        assert session.end_reason == "no media for 2 s"
        await pc.close()

    asyncio.run(scenario())


def test_concurrent_publishes_are_capped_per_tenant_and_per_edge(server_factory, tenant_factory):
    server = server_factory(max_publishes=2, max_publishes_per_tenant=1)

    def streams(n):
        _, key = tenant_factory()
        return [server.http.post("/v1/streams", json={"name": f"s{i}"}, headers=admin_headers(key)).json() for i in range(n)]

    first, second = streams(2)
    (third,) = streams(1)

    async def scenario():
        pcs = []
        for s, expected in ((first, 201), (second, 429), (third, 201)):
            pc, r = await _publish(server.base_url, s)
            pcs.append(pc)
            assert r.status_code == expected, r.text
        _, other = tenant_factory()
        fifth = server.http.post("/v1/streams", json={"name": "x"}, headers=admin_headers(other)).json()
        pc, r = await _publish(server.base_url, fifth)
        pcs.append(pc)
        assert r.status_code == 503 and r.json()["error"] == "at_capacity" and r.headers["retry-after"] == "30"
        assert set(server.edge.live.publishers()) == {first["stream_id"], third["stream_id"]}
        for pc in pcs:
            await pc.close()

    asyncio.run(scenario())

"""LL-HLS for live streams: parts, blocking playlist reloads, preload hints, whole segments.

A real aiortc publisher over WHIP, the real encoder and writer, the edge over HTTP; parts
and segments are decoded with PyAV.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from edge.streaming.llhls_playlist import Part, Segment, Snapshot, media_playlist
from edge.streaming.llhls_timeline import LivePlaylists
from tests.conftest import admin_headers
from tests.edge.test_whip_hls import _publish
from tests.media import PatternTrack, ToneTrack, decode_fmp4

PART_LINE = re.compile(r'^#EXT-X-PART:DURATION=([0-9.]+),URI="([^"]+)"(,INDEPENDENT=YES)?$', re.M)
HINT = re.compile(r'^#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"$', re.M)


@pytest.fixture
def stream(live_stream):
    return live_stream


async def _playlist_with(http, stream_id, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await http.get(f"/live/{stream_id}/index.m3u8")
        if r.status_code == 200 and predicate(r.text):
            return r.text
        await asyncio.sleep(0.1)
    raise AssertionError("the live playlist never got there")


def _hint(text: str) -> tuple[int, int]:
    found = HINT.search(text)
    assert found, text
    return int(found.group(1)), int(found.group(2))


def test_live_playlist_has_parts_and_a_blocking_reload_answers_when_the_part_exists(server, stream):
    sid = stream["stream_id"]
    directory_of = lambda: server.edge.live.directory(sid)  # noqa: E731

    async def scenario():
        pc, r = await _publish(server.base_url, stream, tracks=[PatternTrack(), ToneTrack()])
        assert r.status_code == 201, r.text
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            text = await _playlist_with(http, sid, lambda t: "#EXTINF" in t and "#EXT-X-PART:" in t, 15)
            assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=" in text
            target = float(re.search(r"#EXT-X-PART-INF:PART-TARGET=([0-9.]+)", text).group(1))
            hold_back = float(re.search(r"PART-HOLD-BACK=([0-9.]+)", text).group(1))
            assert 0.2 <= target <= 0.34 and hold_back >= 3 * target
            assert int(re.search(r"#EXT-X-VERSION:(\d+)", text).group(1)) >= 9
            assert '#EXT-X-MAP:URI="init.mp4"' in text and "#EXT-X-PROGRAM-DATE-TIME:" in text
            parts = PART_LINE.findall(text)
            # A source that stalls makes one longer part (its last frame lasts until the
            # next arrives); the parts are cut at the target otherwise.
            durations = sorted(float(d) for d, _, _ in parts)
            assert parts and durations[0] > 0 and durations[len(durations) // 2] <= target, parts
            assert all(re.fullmatch(r"part_\d{5}_\d+\.m4s", uri) for _, uri, _ in parts)

            # A blocking reload for the second part after the hinted one: it does not exist
            # yet (a loaded event loop may learn of a part a little after it is on disk).
            msn, index = _hint(text)
            want = f"part_{msn:05d}_{index + 2}.m4s"
            directory = directory_of()
            assert not (directory / want).exists()
            asked = time.time()
            blocked = await http.get(f"/live/{sid}/index.m3u8", params={"_HLS_msn": msn, "_HLS_part": index + 2})
            answered = time.time()
            assert blocked.status_code == 200
            body = blocked.text
            # Either that part is listed, or the segment ended at a keyframe first and the
            # next segment is there (the spec's "or later").
            later = f'URI="part_{msn + 1:05d}_0.m4s"'
            assert f'URI="{want}"' in body or later in body, body
            created = (directory / (want if f'URI="{want}"' in body else f"part_{msn + 1:05d}_0.m4s")).stat()
            made = created.st_mtime
            assert asked < answered and made <= answered + 0.05  # never answered before the part existed
            assert answered - made < 3.0, (answered - made)  # woken by the writer, not by a timeout

            # The preload-hinted part: a request for it waits for it and gets its bytes.
            msn, index = _hint(body)
            hinted = f"part_{msn:05d}_{index}.m4s"
            got = await http.get(f"/live/{sid}/{hinted}")
            assert got.status_code == 200 and got.headers["content-type"] == "video/iso.segment"
            assert got.content == (directory / hinted).read_bytes()
            # A part far ahead of the hint is not waited for.
            assert (await http.get(f"/live/{sid}/part_{msn + 5:05d}_0.m4s")).status_code == 404

            # Bad blocking parameters are a 400 naming the parameter; far ahead is a 400 too.
            for params, where in (({"_HLS_msn": "x"}, "_HLS_msn"), ({"_HLS_msn": "-1"}, "_HLS_msn"),
                                  ({"_HLS_part": "1"}, "_HLS_part"), ({"_HLS_msn": "1", "_HLS_part": "1e3"}, "_HLS_part"),
                                  ({"_HLS_msn": str(msn + 50)}, "_HLS_msn")):
                bad = await http.get(f"/live/{sid}/index.m3u8", params=params)
                assert bad.status_code == 400, (params, bad.text)
                assert bad.json()["detail"]["path"] == f"$.query.{where}"

            # Every part and segment listed decodes with the init section; a segment is its parts.
            text = await _playlist_with(http, sid, lambda t: len(re.findall(r"^seg_", t, re.M)) >= 3, 15)
            init = (await http.get(f"/live/{sid}/init.mp4")).content
            segments = re.findall(r"^(seg_(\d+)\.m4s)$", text, re.M)
            listed = {uri: (float(d), bool(ind)) for d, uri, ind in PART_LINE.findall(text)}
            checked = 0
            for name, number in segments:
                seg = (await http.get(f"/live/{sid}/{name}")).content
                frames, codecs = decode_fmp4(init, seg)
                assert {"h264", "aac"} <= set(codecs) and frames and (frames[0].width, frames[0].height) == (640, 360)
                own = sorted((u for u in listed if u.startswith(f"part_{number}_")), key=lambda u: int(u[11:-4]))
                if not own:
                    continue
                datas = [(await http.get(f"/live/{sid}/{u}")).content for u in own]
                assert b"".join(datas) == seg, name
                assert listed[own[0]][1], "a segment's first part is independent"
                for uri, data in zip(own, datas):
                    frames, _ = decode_fmp4(init, data) if listed[uri][1] else decode_fmp4(init, datas[0] + data)
                    assert frames, uri
                checked += 1
            assert checked >= 2

            stop = await http.delete(r.headers["location"], headers={"authorization": f"Bearer {stream['publish_token']}"})
            assert stop.status_code == 200
            ended = await _playlist_with(http, sid, lambda t: "#EXT-X-ENDLIST" in t, 10)
            assert "#EXT-X-PART:" not in ended and "#EXT-X-PRELOAD-HINT" not in ended
            # An ended playlist answers a blocking reload at once.
            late = await http.get(f"/live/{sid}/index.m3u8", params={"_HLS_msn": 99999 % (msn + 3)})
            assert late.status_code == 200 and "#EXT-X-ENDLIST" in late.text
        await pc.close()
        directory = directory_of()
        assert not list(directory.glob("part_*")), "parts go when the publish ends; segments stay"
        assert list(directory.glob("seg_*.m4s"))

    asyncio.run(scenario())


def test_private_stream_playlists_carry_the_token_on_every_uri(server, tenant_factory):
    _, key = tenant_factory()
    created = server.http.post("/v1/streams", json={"name": "p", "playback": "private"}, headers=admin_headers(key))
    assert created.status_code == 201, created.text
    stream = created.json()
    sid = stream["stream_id"]
    token = server.http.post(f"/v1/streams/{sid}/playback-token", json={"ttl_s": 600}, headers=admin_headers(key)).json()["token"]

    async def scenario():
        pc, r = await _publish(server.base_url, stream, tracks=[PatternTrack()])
        assert r.status_code == 201, r.text
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            deadline = time.monotonic() + 15
            text = ""
            while time.monotonic() < deadline and "#EXT-X-PART:" not in text:
                text = (await http.get(f"/live/{sid}/index.m3u8", params={"token": token})).text
                await asyncio.sleep(0.1)
            uris = re.findall(r'URI="([^"]+)"', text) + [ln for ln in text.splitlines() if ln and ln[0] != "#"]
            assert uris and all(u.endswith(f"?token={token}") for u in uris), text
            part = re.search(r'#EXT-X-PART:[^\n]*URI="([^"?]+)', text).group(1)
            assert (await http.get(f"/live/{sid}/{part}")).status_code == 403
            assert (await http.get(f"/live/{sid}/{part}", params={"token": token})).status_code == 200
            blocked = await http.get(f"/live/{sid}/index.m3u8", params={"_HLS_msn": "0", "_HLS_part": "0"})
            assert blocked.status_code == 403  # no token, no waiting either
        await pc.close()

    asyncio.run(scenario())


def _snap(next_msn: int, pending: int, ended: bool = False) -> Snapshot:
    parts = tuple(Part(f"part_{next_msn:05d}_{i}.m4s", 0.2, i == 0, 10) for i in range(pending))
    segs = tuple(Segment(m, f"seg_{m:05d}.m4s", 1.0, 1.7e9 + m, (), 100) for m in range(next_msn))
    return Snapshot(prefix="", width=640, height=360, codecs="avc1.42c01e", nominal_bandwidth=1, part_target=0.3,
                    target_duration=2, segments=segs, pending=parts, next_msn=next_msn, ended=ended)


def test_waiters_wake_on_the_update_that_holds_their_part_and_not_before():
    async def scenario():
        playlists = LivePlaylists()
        playlists.update(_snap(2, 1))
        waiter = asyncio.create_task(playlists.wait("", lambda s: s.has(2, 2), timeout=30))
        await asyncio.sleep(0.05)
        playlists.update(_snap(2, 2))  # part 1: not the one wanted
        await asyncio.sleep(0.05)
        assert not waiter.done()
        playlists.update(_snap(2, 3))  # part 2
        snap = await asyncio.wait_for(waiter, 1)
        assert snap.has(2, 2) and "part_00002_2.m4s" in media_playlist(snap)
        # the next segment counts as "or later"; an ended stream answers; a timeout is None
        assert _snap(3, 0).has(2, 5) and not _snap(2, 1).has(2, 1)
        assert await playlists.wait("", lambda s: s.has(9, 0), timeout=0.05) is None
        playlists.update(_snap(3, 0, ended=True))
        assert (await playlists.wait("", lambda s: s.has(9, 0), timeout=5)).ended

    asyncio.run(scenario())


class PausingTrack(PatternTrack):
    """Sends pictures until `pause` is set, then nothing (the connection stays up)."""

    def __init__(self) -> None:
        super().__init__()
        self.pause = asyncio.Event()

    async def recv(self):
        if self.pause.is_set():
            await asyncio.sleep(3600)
        return await super().recv()


def test_a_stalled_publisher_keeps_the_playlist_going_and_a_reload_never_true_is_a_503(server, stream, monkeypatch):
    """The publisher stops sending (under the 10 s silence watchdog): its last picture is
    encoded again, so a reload for a segment two ahead answers as segments keep coming.
    With nothing encoded at all (the repeats turned off here, as an encoder that stopped),
    a reload for a future segment waits three target durations, then 503 as the spec says."""
    from edge.streaming import pipeline

    sid = stream["stream_id"]

    async def scenario():
        track = PausingTrack()
        pc, r = await _publish(server.base_url, stream, tracks=[track])
        assert r.status_code == 201, r.text
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            text = await _playlist_with(http, sid, lambda t: "#EXT-X-PART:" in t, 15)
            track.pause.set()
            msn, _ = _hint(text)
            asked = time.monotonic()
            filled = await http.get(f"/live/{sid}/index.m3u8", params={"_HLS_msn": msn + 2})
            assert filled.status_code == 200 and f"seg_{msn + 1:05d}.m4s" in filled.text, filled.text
            assert time.monotonic() - asked < 3 * 2 - 0.5

            monkeypatch.setattr(pipeline, "STALL_FILL_S", 3600.0)
            await asyncio.sleep(0.5)  # the repeat already waited for, then none
            msn, _ = _hint((await http.get(f"/live/{sid}/index.m3u8")).text)
            asked = time.monotonic()
            stalled = await http.get(f"/live/{sid}/index.m3u8", params={"_HLS_msn": msn + 2})
            assert stalled.status_code == 503, stalled.text
            assert stalled.json()["error"] == "not_ready"
            assert time.monotonic() - asked >= 3 * 2 - 0.5  # held for three target durations
        await pc.close()

    asyncio.run(scenario())

"""The VOD ladder (issue #18): an upload becomes renditions under one multivariant
playlist, every rendition decodes at the size it declares, its BANDWIDTH covers what its
segments really need, keyframes line up across renditions, and a storyboard of seek
previews covers the whole video. Real uploads through the API, real files decoded."""

from __future__ import annotations

import io
import re
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest

from edge.vod import ladder, package
from tests.conftest import admin_headers, wait_for
from tests.media import mux_tone
from tests.edge.test_front import front  # noqa: F401 - the nginx front fixture

STREAM_INF = re.compile(r"^#EXT-X-STREAM-INF:(.*)\n(\S+)$", re.M)


def write_clip(path, size, seconds=5.0, fps=25, vcodec="libx264", gop_s=1.0):
    """A test clip with real motion and detail (a sweeping bar over noise that changes every
    frame: encoders must spend bits) and a tone; a keyframe every `gop_s`."""
    width, height = size
    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(vcodec, rate=fps, options={"preset": "ultrafast"} if vcodec == "libx264" else {})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.gop_size = int(fps * gop_s)
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        noise = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            img = np.repeat(np.repeat(np.roll(noise, i, axis=1), 8, axis=0), 8, axis=1)
            x = (i * 24) % width
            img[:, x:x + 32] = (255, 255, 255)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        mux_tone(out, audio, seconds)


def _upload(server, key, path, **form):
    with open(path, "rb") as fh:
        r = server.http.post("/v1/videos", headers=admin_headers(key), files={"file": (path.name, fh)}, data=form)
    assert r.status_code == 202, r.text
    video_id = r.json()["video_id"]

    def done():
        return server.http.get(f"/v1/videos/{video_id}", headers=admin_headers(key)).json()["status"] in ("ready", "failed")

    wait_for(done, timeout=240, what="packaging")
    video = server.http.get(f"/v1/videos/{video_id}", headers=admin_headers(key)).json()
    assert video["status"] == "ready", video
    return video


def _attributes(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z-]+)=("[^"]*"|[^,]*)', text)}


def _variants(http, video_id, q=""):
    r = http.get(f"/vod/{video_id}/index.m3u8{q}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apple.mpegurl"
    return [(_attributes(attrs), uri) for attrs, uri in STREAM_INF.findall(r.text)]


def _rendition(http, video_id, uri):
    """A media playlist's segments: (durations, init bytes, [segment bytes])."""
    text = http.get(f"/vod/{video_id}/{uri}").text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and "#EXT-X-ENDLIST" in text
    init_name = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
    durations = [float(d) for d in re.findall(r"^#EXTINF:([\d.]+),", text, re.M)]
    names = [line for line in text.splitlines() if line and not line.startswith("#")]
    init = http.get(f"/vod/{video_id}/{init_name}").content
    return durations, init, [http.get(f"/vod/{video_id}/{n}").content for n in names]


def _decode(init, segment):
    with av.open(io.BytesIO(init + segment), "r") as c:
        frames = list(c.decode(video=0))
        return frames, c.streams.video[0].codec_context.extradata


def test_a_1080p_upload_becomes_a_four_rung_ladder_that_decodes_as_declared(server, tenant_factory, tmp_path):
    _, key = tenant_factory()
    source = tmp_path / "talk.mp4"
    write_clip(source, (1920, 1080), seconds=5)
    video = _upload(server, key, source)
    assert (video["width"], video["height"], video["metadata"]["packaging"]) == (1920, 1080, "remux")

    variants = _variants(server.http, video["video_id"])
    assert [a["RESOLUTION"] for a, _ in variants] == ["1920x1080", "1280x720", "854x480", "640x360"]
    cuts = None
    for attrs, uri in variants:
        width, height = map(int, attrs["RESOLUTION"].split("x"))
        assert re.fullmatch(r"avc1\.[0-9A-F]{6},mp4a\.40\.2", attrs["CODECS"]), attrs
        assert float(attrs["FRAME-RATE"]) == pytest.approx(25, abs=0.01)
        durations, init, segments = _rendition(server.http, video["video_id"], uri)
        frames = 0
        for segment in segments:
            decoded, extradata = _decode(init, segment)
            assert decoded and all((f.width, f.height) == (width, height) for f in decoded), uri
            assert decoded[0].key_frame, f"{uri}: every segment starts with a keyframe"
            frames += len(decoded)
        assert frames == 125, uri  # every source frame, in every rendition
        # CODECS says what the rendition's own SPS says.
        assert attrs["CODECS"].split(",")[0] == ladder.avc1(bytes(extradata))
        encoded = uri != f"r{video['height']}.m3u8"  # the top rung is the source's own H.264, remuxed
        if encoded:
            profile = int(attrs["CODECS"][5:7], 16)
            assert profile == (0x64 if height >= 720 else 0x4D), attrs  # High from 720p up, Main below
        # BANDWIDTH covers the peak segment bitrate measured here; the average is below it.
        measured_peak = max(8 * len(s) / d for s, d in zip(segments, durations))
        assert int(attrs["BANDWIDTH"]) >= measured_peak * 0.99
        assert int(attrs["AVERAGE-BANDWIDTH"]) <= int(attrs["BANDWIDTH"])
        if encoded:  # encoded rungs keep under their cap: x264's VBV (maxrate, a buffer of two
            # seconds of it, starting 90 % full: over a short clip that allowance shows), + audio
            cap = dict(ladder.STANDARD)[height]
            allowed = cap + 2 * cap * 0.9 / sum(durations) + ladder.AUDIO_KBPS
            assert int(attrs["AVERAGE-BANDWIDTH"]) <= allowed * 1000 * 1.1, (uri, attrs, allowed)
        # Keyframes aligned: every rendition cuts its segments at the same instants.
        if cuts is None:
            cuts = durations
        assert durations == pytest.approx(cuts, abs=0.05), uri
    assert len(cuts) >= 2  # a 1 s GOP source gives several 2 s segments


def test_a_480p_source_gets_only_rungs_up_to_480(server, tenant_factory, tmp_path):
    _, key = tenant_factory()
    source = tmp_path / "small.mp4"
    write_clip(source, (854, 480), seconds=4, vcodec="mpeg4")  # not H.264: transcoded
    video = _upload(server, key, source)
    assert video["metadata"]["packaging"] == "transcode"
    variants = _variants(server.http, video["video_id"])
    assert [a["RESOLUTION"] for a, _ in variants] == ["854x480", "640x360"]
    for attrs, uri in variants:
        width, height = map(int, attrs["RESOLUTION"].split("x"))
        durations, init, segments = _rendition(server.http, video["video_id"], uri)
        decoded, _ = _decode(init, segments[-1])
        assert (decoded[0].width, decoded[0].height) == (width, height)
        assert len(segments) >= 2 and all(d <= 2.1 for d in durations[:-1])  # a keyframe every 2 s


def _cues(vtt: str):
    cues = []
    for start, end, target in re.findall(r"^(\S+) --> (\S+)\n(\S+)$", vtt, re.M):
        def sec(stamp):
            h, m, s = stamp.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)

        name, xywh = target.split("#xywh=")
        cues.append((sec(start), sec(end), name, tuple(int(v) for v in xywh.split(","))))
    return cues


def _check_storyboard(http, video_id, duration_s, q=""):
    r = http.get(f"/vod/{video_id}/storyboard.vtt{q}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/vtt")
    assert r.text.startswith("WEBVTT\n")
    cues = _cues(r.text)
    assert cues and cues[0][0] == 0
    for (_, end, _, _), (start, _, _, _) in zip(cues, cues[1:]):
        assert start == pytest.approx(end, abs=0.0005)  # no gap, no overlap
    assert cues[-1][1] == pytest.approx(duration_s, abs=0.05)  # up to the very end
    sprites, pictures = {}, []
    for _, _, name, (x, y, w, h) in cues:
        if name not in sprites:
            img = http.get(f"/vod/{video_id}/{name}")
            assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg", name
            with av.open(io.BytesIO(img.content), "r") as c:
                sprites[name] = next(c.decode(video=0)).to_ndarray(format="rgb24")
        sheet = sprites[name]
        assert (w, h) == (160, 90)
        assert x + w <= sheet.shape[1] and y + h <= sheet.shape[0], (name, x, y, sheet.shape)
        pictures.append(sheet[y:y + h, x:x + w].astype(int))
    return cues, pictures


def test_the_storyboard_covers_the_video_with_real_pictures(server, tenant_factory, tmp_path):
    _, key = tenant_factory()
    source = tmp_path / "clip.mp4"
    write_clip(source, (1280, 720), seconds=7)
    video = _upload(server, key, source)
    cues, pictures = _check_storyboard(server.http, video["video_id"], video["duration_s"])
    assert len(cues) == 4  # every 2 s: 0, 2, 4, 6 (the last one until 7)
    # The pictures are the video's moments, not one frame repeated (the bar moves).
    assert all(np.abs(a - b).mean() > 5 for a, b in zip(pictures, pictures[1:]))


def test_a_private_videos_renditions_storyboard_and_sprites_need_the_token(server, tenant_factory, tmp_path):
    _, key = tenant_factory()
    source = tmp_path / "private.mp4"
    write_clip(source, (854, 480), seconds=3)
    video = _upload(server, key, source, playback="private")
    vid = video["video_id"]
    token = server.http.post(f"/v1/videos/{vid}/playback-token", json={"ttl_s": 600}, headers=admin_headers(key)).json()["token"]
    q = f"?token={token}"
    for name in ("index.m3u8", "r360.m3u8", "r360_init.mp4", "storyboard.vtt", "sprite-0.jpg"):
        assert server.http.get(f"/vod/{vid}/{name}").status_code == 403, name
    variants = _variants(server.http, vid, q)
    assert all(uri.endswith(q) for _, uri in variants)  # the token travels to the renditions
    vtt = server.http.get(f"/vod/{vid}/storyboard.vtt{q}").text
    sprite = re.search(r"^(sprite-0\.jpg\?token=[^#]+)#xywh=", vtt, re.M).group(1)
    assert server.http.get(f"/vod/{vid}/{sprite}").headers["content-type"] == "image/jpeg"
    _check_storyboard(server.http, vid, video["duration_s"], q)


@pytest.mark.parametrize("name", ["r720.m3u8/../x", "r1.m3u8", "r72000.m3u8", "sprite-1000.jpg", "main.m3u8",
                                  "r720.hls.m3u8", "storyboard.vtt.tmp", "r720_1.m4s"])
def test_only_layout_names_are_served(server, name):
    r = server.http.get(f"/vod/vd_0123456789abcdef/{name}")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_a_recording_gets_a_multivariant_playlist_and_a_storyboard_from_its_segments(server, tenant_factory,
                                                                                       tmp_path):
    """What `Recordings.finalize` does with a live publish's segments (no decoding while
    live): here the top rendition of an upload stands in for them."""
    _, key = tenant_factory()
    source = tmp_path / "clip.mp4"
    write_clip(source, (640, 360), seconds=5)
    video = _upload(server, key, source)
    packaged = server.edge.settings.media_dir / "videos" / video["video_id"]
    recorded = tmp_path / "recording"
    recorded.mkdir()
    for p in packaged.iterdir():
        if p.name == "init.mp4" or p.name.startswith("seg_"):
            shutil.copy(p, recorded / p.name)
    probe = package.finalize(recorded)
    assert (probe.width, probe.height) == (640, 360)
    text = (recorded / "main.m3u8").read_text()
    assert text.count("#EXT-X-STREAM-INF:") == 1 and "RESOLUTION=640x360" in text and "\nr360.m3u8\n" in text
    vtt = (recorded / "storyboard.vtt").read_text()
    cues = _cues(vtt)
    assert cues[0][0] == 0 and cues[-1][1] == pytest.approx(probe.duration_s, abs=0.05)
    assert all(a[1] == pytest.approx(b[0], abs=0.0005) for a, b in zip(cues, cues[1:]))


@pytest.mark.parametrize("size, expected", [
    ((1920, 1080), [(1920, 1080), (1280, 720), (854, 480), (640, 360)]),
    ((1080, 1920), [(1080, 1920), (720, 1280), (480, 854), (360, 640)]),  # upright: by the short side
    ((1280, 544), [(1280, 544), (1130, 480), (848, 360)]),  # not a standard rung: its own size on top
    ((640, 360), [(640, 360)]),
    ((320, 240), [(320, 240)]),
])
def test_the_ladder_never_goes_above_the_source(size, expected):
    rungs = ladder.plan(*size)
    assert [(r.width, r.height) for r in rungs] == expected
    assert [r.max_kbps for r in rungs] == sorted((r.max_kbps for r in rungs), reverse=True)
    assert ladder.work_factor(rungs) == pytest.approx(sum(w * h for w, h in expected) / (size[0] * size[1]))


def test_codec_names_come_from_the_sps():
    avcc = bytes([1, 0x64, 0x00, 0x28, 0xFF, 0xE1])
    assert ladder.avc1(avcc) == "avc1.640028"
    annexb = b"\x00\x00\x00\x01\x67\x4d\x40\x1e\xab" + b"\x00\x00\x00\x01\x68\xee"
    assert ladder.avc1(annexb) == "avc1.4D401E"
    with pytest.raises(ValueError):
        ladder.avc1(b"\x00\x00\x01\x68\xee\x3c\x80")
    assert ladder.bitrates([1000, 3000], [2.0, 2.0]) == (12000, 8000)


def test_the_front_serves_public_renditions_and_sprites_from_disk(front, tenant_factory, tmp_path):
    """nginx sends a public video's lower renditions and sprites itself (sendfile); the
    playlists and the storyboard's text still come from the edge."""
    server, client = front
    _, key = tenant_factory()
    source = tmp_path / "clip.mp4"
    write_clip(source, (854, 480), seconds=3)
    vid = _upload(server, key, source)["video_id"]
    media = server.edge.settings.media_dir / "videos" / vid
    for name in ("index.m3u8", "r360.m3u8", "storyboard.vtt"):
        r = client.get(f"/vod/{vid}/{name}")
        assert r.status_code == 200 and "x-wave-front" not in r.headers, name
    for name, kind in (("r360_init.mp4", "video/mp4"), ("r360_00000.m4s", "video/iso.segment"),
                       ("sprite-0.jpg", "image/jpeg")):
        r = client.get(f"/vod/{vid}/{name}")
        assert r.status_code == 200 and r.headers["x-wave-front"] == "file", name
        assert r.headers["content-type"] == kind and r.content == (media / name).read_bytes()
    assert client.get(f"/vod/{vid}/r360_00999.m4s").status_code == 404  # not there: the edge says so


def test_only_a_lean_h264_source_is_copied_into_the_top_rung(tmp_path):
    """A source far above the top rung's bitrate cap would stall the players that pick the
    top rung: it is encoded like any other."""
    from edge.vod import packager

    lean, heavy = tmp_path / "lean.mp4", tmp_path / "heavy.mp4"
    write_clip(lean, (640, 360), seconds=1)
    with av.open(str(heavy), "w", format="mp4") as out:  # lossless noise: tens of Mbps
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        rng = np.random.default_rng(3)
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with av.open(str(heavy)) as c:
        assert c.bit_rate > packager.REMUX_MAX_RATIO * 730_000
    assert packager.plan(lean) == "remux"
    assert packager.plan(heavy) == "transcode"


@pytest.mark.parametrize("how", ["the publish ended", "a crash left it open"])
def test_a_recording_gains_the_lower_rungs_in_the_packaging_queue(store, tenant_factory, tmp_path, how):
    """`Recordings.end` (or, after a crash, `Recordings.resume` at the next start) with a
    480p recording's segments (made here as the live writer makes them: one rendition,
    init + fMP4 segments): ready at once with one rendition, then the 360p rung from its
    own segments, in the tenant's packaging turn, the 480p one untouched."""
    import asyncio

    from edge.public_media import PublicLinks
    from edge.vod import packager, videos
    from edge.vod.jobs import FairJobs
    from edge.vod.recordings import Recordings

    tenant, _ = tenant_factory()
    media = tmp_path / "media"
    source = tmp_path / "live.mp4"
    write_clip(source, (854, 480), seconds=4)
    video = videos.Video(video_id=videos.new_video_id(), tenant_id=tenant.tenant_id, source="recording",
                         status="recording")
    videos.save(store, video)
    directory = media / "videos" / video.video_id
    packager.package_upload(source, directory, lambda p: None, rungs=lambda w, h: ladder.plan(w, h)[:1])
    for extra in ("storyboard.vtt", "sprite-0.jpg"):
        (directory / extra).unlink()
    recorded = {p.name: p.read_bytes() for p in directory.iterdir() if p.name == "init.mp4" or p.name.startswith("seg_")}

    class Done:
        def join(self, timeout=None):
            return True

    jobs = FairJobs(1)
    recordings = Recordings(store, media, PublicLinks(media), jobs)
    seen = {}

    async def scenario():
        if how == "a crash left it open":
            (task,) = await recordings.resume()  # finished at once, its rungs queued
            seen["while"] = (directory / "main.m3u8").read_text().count("#EXT-X-STREAM-INF:")
            await task
            return videos.get(store, video.video_id)
        task = asyncio.create_task(recordings.end(video, Done()))
        while jobs.running == 0 and not task.done():  # ready with one rendition, then its turn
            await asyncio.sleep(0.01)
        seen["while"] = (directory / "main.m3u8").read_text().count("#EXT-X-STREAM-INF:")
        return await task

    done = asyncio.run(scenario())
    assert done.status == "ready" and seen["while"] == 1
    text = (directory / "main.m3u8").read_text()
    assert re.findall(r"RESOLUTION=(\d+x\d+)", text) == ["854x480", "640x360"]
    assert {p.name: p.read_bytes() for p in directory.iterdir() if p.name in recorded} == recorded  # untouched
    assert not (directory / ".recording-source.mp4").exists()
    init = (directory / "r360_init.mp4").read_bytes()
    frames = [f for seg in media_segments(directory, 360) for f in _decode(init, seg.read_bytes())[0]]
    assert len(frames) == 100 and {(f.width, f.height) for f in frames} == {(640, 360)}
    assert (directory / "storyboard.vtt").exists()
    stored = videos.get(store, video.video_id)
    assert stored.status == "ready" and stored.size_bytes == sum(
        p.stat().st_size for p in directory.iterdir() if re.match(r"^(init\.mp4|seg_\d+\.m4s|r360_.*)$", p.name))


def media_segments(directory, height):
    from edge import media_layout

    return media_layout.rung_segments(directory, height)

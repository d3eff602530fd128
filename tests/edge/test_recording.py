"""Every publish becomes a video: on a clean stop and after a SIGKILL mid-publish."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys

import httpx

from tests.conftest import ROOT, admin_headers, free_port, wait_for
from tests.edge.test_whip_hls import _publish, _wait_segments, stream  # noqa: F401 - fixture
from tests.media import decode_fmp4


def _recordings(http, key, stream_id):
    listed = http.get("/v1/videos", headers=admin_headers(key)).json()["videos"]
    return [v for v in listed if v["stream_id"] == stream_id]


def _assert_plays(http, video_id, width=640, height=360):
    variants = http.get(f"/vod/{video_id}/index.m3u8")
    assert variants.status_code == 200 and "#EXT-X-STREAM-INF:" in variants.text, variants.text
    playlist = http.get(f"/vod/{video_id}/{variants.text.splitlines()[-1]}")  # its one rendition
    assert playlist.status_code == 200, playlist.text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist.text and "#EXT-X-ENDLIST" in playlist.text
    segments = re.findall(r"^(seg_\d+\.m4s)$", playlist.text, re.M)
    assert segments
    init = http.get(f"/vod/{video_id}/init.mp4").content
    frames, codecs = decode_fmp4(init, http.get(f"/vod/{video_id}/{segments[-1]}").content)
    assert "h264" in codecs and frames and (frames[0].width, frames[0].height) == (width, height)
    return segments


def test_a_stopped_publish_becomes_a_ready_video(server, stream):
    key, sid = stream["admin_key"], stream["stream_id"]

    async def publish_three_seconds():
        pc, r = await _publish(server.base_url, stream)
        assert r.status_code == 201
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            await _wait_segments(http, sid, 3, timeout=15)
            assert (await http.delete(r.headers["location"], headers={
                "authorization": f"Bearer {stream['publish_token']}"})).status_code == 200
        await pc.close()

    asyncio.run(publish_three_seconds())
    wait_for(lambda: [v["status"] for v in _recordings(server.http, key, sid)] == ["ready"], what="a ready video")
    (video,) = _recordings(server.http, key, sid)
    assert video["source"] == "recording" and video["video_codec"] == "h264" and video["audio_codec"] == "aac"
    assert (video["width"], video["height"]) == (640, 360)
    assert video["duration_s"] >= 2.5 and video["size_bytes"] > 0
    _assert_plays(server.http, video["video_id"])

    # edit, filter by tag, delete
    vid = video["video_id"]
    r = server.http.patch(f"/v1/videos/{vid}", json={"title": "Keynote", "tags": ["conf", "2026"],
                                                     "metadata": {"speaker": "Ann"}}, headers=admin_headers(key))
    assert r.status_code == 200 and r.json()["title"] == "Keynote"
    assert [v["video_id"] for v in server.http.get("/v1/videos", params={"tag": "conf"}, headers=admin_headers(key)).json()["videos"]] == [vid]
    assert server.http.get("/v1/videos", params={"tag": "other"}, headers=admin_headers(key)).json()["videos"] == []
    assert server.http.get(f"/v1/videos/{vid}", headers=admin_headers(key)).json()["metadata"] == {"speaker": "Ann"}
    r = server.http.patch(f"/v1/videos/{vid}", json={"tags": "notalist"}, headers=admin_headers(key))
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.tags"
    directory = server.edge.settings.media_dir / "videos" / vid
    assert directory.exists()
    assert server.http.delete(f"/v1/videos/{vid}", headers=admin_headers(key)).status_code == 200
    assert not directory.exists()
    assert server.http.get(f"/v1/videos/{vid}", headers=admin_headers(key)).status_code == 404
    assert server.http.get(f"/vod/{vid}/index.m3u8").status_code == 404


def _serve(data_dir, port):
    env = dict(os.environ, WAVE_DATA_DIR=str(data_dir), WAVE_ICE_HOSTS="127.0.0.1")
    env.pop("WAVE_CLICKHOUSE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_mid_publish_leaves_a_playable_recording(tmp_path):
    data_dir = tmp_path / "var"
    out = subprocess.run([sys.executable, "-m", "edge.cli", "tenant", "create", "rec"], cwd=ROOT,
                         env=dict(os.environ, WAVE_DATA_DIR=str(data_dir)), capture_output=True, text=True, check=True)
    key = json.loads(out.stdout)["admin_key"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, timeout=30)

    def healthy(proc):
        def check():
            assert proc.poll() is None, "edge exited"
            try:
                return http.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False
        return check

    proc = _serve(data_dir, port)
    try:
        wait_for(healthy(proc), timeout=60, what="the edge")
        created = http.post("/v1/streams", json={"name": "crash"}, headers=admin_headers(key)).json()

        async def publish_then_kill():
            pc, r = await _publish(base, created)
            assert r.status_code == 201
            async with httpx.AsyncClient(base_url=base) as client:
                await _wait_segments(client, created["stream_id"], 3, timeout=20)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await pc.close()

        asyncio.run(publish_then_kill())
        (before,) = _recordings_offline(data_dir)
        assert before == "recording"
        proc = _serve(data_dir, port)
        wait_for(healthy(proc), timeout=60, what="the edge after the crash")
        (video,) = _recordings(http, key, created["stream_id"])
        assert video["status"] == "ready", video
        assert video["duration_s"] >= 2.0
        assert len(_assert_plays(http, video["video_id"])) >= 3
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        http.close()


def _recordings_offline(data_dir):
    from tests.conftest import query_path

    return [row[0] for row in query_path(data_dir / "clickhouse", "SELECT toString(status) FROM videos FINAL")]


def test_a_finished_publishs_live_only_files_are_told_apart_from_the_recording(tmp_path):
    """The live ladder's files share the `r<H>` stems the recording's own VOD rungs get
    afterwards: they are dropped before the recording is finalized, the recording kept."""
    from edge import media_layout

    live_only = ["r360_init.mp4", "r360_seg_00001.m4s", "r360_part_00002_1.m4s", "r360.m3u8", "src.m3u8"]
    recording = ["init.mp4", "seg_00001.m4s", "index.m3u8", "r360_init.mp4.vod", "r360_00001.m4s", "main.m3u8"]
    for name in live_only + recording:
        (tmp_path / name).write_bytes(b"x")
    assert sorted(p.name for p in media_layout.live_rendition_files(tmp_path)) == sorted(live_only)

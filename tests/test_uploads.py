"""Uploads: H.264/AAC is remuxed untouched, VP9/Opus is transcoded, bad files fail cleanly."""

import re

import pytest

from tests.conftest import wait_for
from tests.media import decode_fmp4, video_packet_digests, write_file


def _admin(key):
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def admin(tenant_factory):
    return tenant_factory()[1]


def _upload(server, key, path, **form):
    with open(path, "rb") as fh:
        return server.http.post("/v1/videos", headers=_admin(key), files={"file": (path.name, fh)}, data=form)


def _wait_done(server, key, video_id):
    def done():
        status = server.http.get(f"/v1/videos/{video_id}", headers=_admin(key)).json()["status"]
        return status in ("ready", "failed")

    wait_for(done, timeout=120, what="packaging")
    return server.http.get(f"/v1/videos/{video_id}", headers=_admin(key)).json()


def _hls_bytes(server, video_id):
    playlist = server.http.get(f"/vod/{video_id}/index.m3u8").text
    segments = re.findall(r"^(seg_\d+\.m4s)$", playlist, re.M)
    init = server.http.get(f"/vod/{video_id}/init.mp4").content
    return init, [server.http.get(f"/vod/{video_id}/{s}").content for s in segments]


def test_h264_aac_mp4_is_remuxed_without_reencoding(server, admin, tmp_path):
    source = tmp_path / "talk.mp4"
    write_file(source, "mp4", "libx264", "aac", seconds=5)
    r = _upload(server, admin, source, title="Talk", tags="conf, 2026")
    assert r.status_code == 202 and r.json()["status"] == "processing"
    video = _wait_done(server, admin, r.json()["video_id"])
    assert video["status"] == "ready", video
    assert video["metadata"]["packaging"] == "remux"
    assert (video["video_codec"], video["audio_codec"], video["width"], video["height"]) == ("h264", "aac", 320, 240)
    assert 4.5 <= video["duration_s"] <= 5.5
    assert video["title"] == "Talk" and video["tags"] == ["conf", "2026"] and video["progress"] == 100
    init, segments = _hls_bytes(server, video["video_id"])
    packaged = [d for seg in segments for d in video_packet_digests(init + seg)]
    assert packaged == video_packet_digests(source)  # the very same H.264 packets
    assert not list((server.edge.settings.media_dir / "uploads").iterdir())  # the upload file is gone


def test_vp9_opus_webm_is_transcoded_to_h264_aac(server, admin, tmp_path):
    source = tmp_path / "clip.webm"
    write_file(source, "webm", "libvpx-vp9", "libopus", seconds=3)
    r = _upload(server, admin, source)
    video = _wait_done(server, admin, r.json()["video_id"])
    assert video["status"] == "ready", video
    assert video["metadata"]["packaging"] == "transcode"
    assert (video["video_codec"], video["audio_codec"]) == ("h264", "aac")
    init, segments = _hls_bytes(server, video["video_id"])
    frames, codecs = decode_fmp4(init, segments[0])
    assert "h264" in codecs and frames and (frames[0].width, frames[0].height) == (320, 240)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 5000, "not a media file"),
        ("notes.mp4", b"these are my meeting notes, not a video\n" * 50, "not a media file"),
    ],
)
def test_corrupt_uploads_fail_with_a_reason(server, admin, tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    r = _upload(server, admin, path)
    assert r.status_code == 202
    video = _wait_done(server, admin, r.json()["video_id"])
    assert video["status"] == "failed" and reason in video["reason"]
    assert server.http.get(f"/vod/{video['video_id']}/index.m3u8").status_code == 404


def test_audio_only_upload_fails_as_no_video(server, admin, tmp_path):
    import av
    import numpy as np

    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48_000)
        for i in range(50):
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48_000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
    video = _wait_done(server, admin, _upload(server, admin, path).json()["video_id"])
    assert video["status"] == "failed" and "no video stream" in video["reason"]


def test_upload_limits_and_bad_requests(server_factory, admin, tmp_path):
    srv = server_factory(upload_max_bytes=10_000)
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\x00" * 50_000)
    r = _upload(srv, admin, big)
    assert r.status_code == 413
    assert not list((srv.edge.settings.media_dir / "uploads").iterdir())
    r = srv.http.post("/v1/videos", headers=_admin(admin), content=b"raw", )
    assert r.status_code == 415
    r = srv.http.post("/v1/videos", headers=_admin(admin), files={"other": ("x.txt", b"x")})
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.form.file"
    r = srv.http.post("/v1/videos", files={"file": ("x.mp4", b"x")})
    assert r.status_code == 401


def test_uploads_interrupted_by_a_stop_are_resumed_at_start(server_factory, store, tenant_factory, tmp_path):
    """A video left `processing` (the edge stopped mid-packaging) is packaged at the next
    start from the file already received; one whose file never fully arrived fails."""
    from edge.vod import videos

    tenant, key = tenant_factory()
    resumable = videos.Video(video_id=videos.new_video_id(), tenant_id=tenant.tenant_id, title="r")
    lost = videos.Video(video_id=videos.new_video_id(), tenant_id=tenant.tenant_id, title="l")
    for video in (resumable, lost):
        videos.save(store, video)
    uploads = tmp_path / "media" / "uploads"
    uploads.mkdir(parents=True)
    write_file(uploads / f"{resumable.video_id}.part", "mp4", "libx264", "aac", seconds=2)

    srv = server_factory(data_dir=tmp_path)
    assert _wait_done(srv, key, resumable.video_id)["status"] == "ready"
    failed = srv.http.get(f"/v1/videos/{lost.video_id}", headers=_admin(key)).json()
    assert failed["status"] == "failed" and "interrupted" in failed["reason"]

"""Uploads: H.264/AAC is remuxed untouched, VP9/Opus is transcoded, bad files fail cleanly."""

import re

import pytest

from tests.conftest import admin_headers, wait_for
from tests.media import decode_fmp4, video_packet_digests, write_file, write_low_rate_sound, write_still_bomb


@pytest.fixture
def admin(tenant_factory):
    return tenant_factory()[1]


def _upload(server, key, path, **form):
    with open(path, "rb") as fh:
        return server.http.post("/v1/videos", headers=admin_headers(key), files={"file": (path.name, fh)}, data=form)


def _wait_done(server, key, video_id):
    def done():
        status = server.http.get(f"/v1/videos/{video_id}", headers=admin_headers(key)).json()["status"]
        return status in ("ready", "failed")

    wait_for(done, timeout=120, what="packaging")
    return server.http.get(f"/v1/videos/{video_id}", headers=admin_headers(key)).json()


def _hls_bytes(server, video_id):
    """The top rendition's init section and segments (the multivariant playlist lists it first)."""
    variants = server.http.get(f"/vod/{video_id}/index.m3u8").text
    top = next(line for line in variants.splitlines() if line and not line.startswith("#"))
    playlist = server.http.get(f"/vod/{video_id}/{top}").text
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
    r = srv.http.post("/v1/videos", headers=admin_headers(admin), content=b"raw", )
    assert r.status_code == 415
    r = srv.http.post("/v1/videos", headers=admin_headers(admin), files={"other": ("x.txt", b"x")})
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
    failed = srv.http.get(f"/v1/videos/{lost.video_id}", headers=admin_headers(key)).json()
    assert failed["status"] == "failed" and "interrupted" in failed["reason"]


# ---- hostile uploads (issue #14): limits probed before decoding, fair packaging ----------


def _failed_with(server, key, path, reason):
    r = _upload(server, key, path)
    assert r.status_code == 202, r.text
    video = _wait_done(server, key, r.json()["video_id"])
    assert video["status"] == "failed" and reason in video["reason"], video
    assert not video_dir_of(server, video["video_id"]).exists()  # nothing half-made is kept
    return video


def video_dir_of(server, video_id):
    from edge.vod.recordings import video_dir

    return video_dir(server.edge.settings.media_dir, video_id)


def test_an_8k_upload_fails_on_its_header_before_any_decoding(server, admin, tmp_path):
    """176 KB of 7680x4320 VP8 took an edge from 0.7 to 3 GB; now it fails as it is opened."""
    bomb = tmp_path / "8k.webm"
    write_still_bomb(bomb, (7680, 4320), repeats=50)
    assert bomb.stat().st_size < 200_000
    video = _failed_with(server, admin, bomb, "7680x4320")
    assert "WAVE_UPLOAD_MAX_SIDE" in video["reason"]
    assert video["progress"] == 0  # refused before the first frame was packaged


def test_sound_that_claims_one_sample_a_second_is_refused_before_it_is_resampled(server, admin, tmp_path):
    """9 KB of PCM said to be sampled at 1 Hz (honest about its 2,000 s) took an edge from
    0.7 to 5.2 GB: every sample became 48,000 at the resampler. Sound must be 8-192 kHz."""
    bomb = tmp_path / "1hz.mkv"
    write_low_rate_sound(bomb, samples=200)
    assert bomb.stat().st_size < 10_000
    video = _failed_with(server, admin, bomb, "sampled at 1 Hz")
    assert video["progress"] == 0


def test_a_stream_that_grows_past_the_pixel_limit_midway_is_refused_by_the_decoder(server, admin, tmp_path):
    """The header says 64x64, the keyframe is 7680x4320: the decoder refuses that picture
    (FFmpeg's max_pixels) instead of allocating it."""
    bomb = tmp_path / "grows.webm"
    write_still_bomb(bomb, (7680, 4320), repeats=5, header_size=(64, 64))
    _failed_with(server, admin, bomb, "larger than 8847360 pixels")


def test_frame_count_and_duration_limits_are_probed_before_decoding(server_factory, admin, tmp_path):
    from edge.vod.limits import MediaLimits

    srv = server_factory(upload_limits=MediaLimits(max_frames=500))
    many = tmp_path / "many.webm"
    write_still_bomb(many, (64, 64), repeats=2000, fps=1000)  # 2 s, 2,001 frames
    video = _failed_with(srv, admin, many, "more than 500 frames")
    assert "WAVE_UPLOAD_MAX_FRAMES" in video["reason"]
    # default limits: two frames five hours apart describe a five-hour video
    long = tmp_path / "long.webm"
    write_still_bomb(long, (64, 64), repeats=1, fps=1, step=5 * 3600)
    video = _failed_with(srv, admin, long, "the video lasts 1800")
    assert "at most 14400 s" in video["reason"] and "WAVE_UPLOAD_MAX_DURATION_S" in video["reason"]


def test_a_job_over_its_processing_budget_fails_with_that_reason(server_factory, admin, tmp_path):
    from edge.vod.limits import MediaLimits

    srv = server_factory(upload_limits=MediaLimits(budget_s=0.0))
    clip = tmp_path / "clip.webm"
    write_file(clip, "webm", "libvpx-vp9", None, seconds=1)
    _failed_with(srv, admin, clip, "longer than the budget of 0 s (WAVE_TRANSCODE_BUDGET_S)")


def test_a_4k_still_bomb_is_transcoded_at_1080p_in_bounded_memory(tmp_path):
    """One 4K keyframe and 100 tiny repeats (32 KB): transcoded to the output's size, not the
    source's. Measured in a process of its own: before, the 4K encode peaked at 650 MB."""
    import json
    import subprocess
    import sys

    bomb = tmp_path / "4k.webm"
    write_still_bomb(bomb, (3840, 2160), repeats=100)
    out = tmp_path / "out"
    code = (
        "import json, re, sys\n"
        "from pathlib import Path\n"
        "from edge.vod import packager\n"
        "how = packager.package_upload(Path(sys.argv[1]), Path(sys.argv[2]), lambda p: None)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (big) pytest parent
        "peak = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024\n"
        "print(json.dumps({'how': how, 'peak_mb': peak}))\n"
    )
    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-c", code, str(bomb), str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["how"] == "transcode"
    init = (out / "init.mp4").read_bytes()
    frames, codecs = decode_fmp4(init, (out / "seg_00000.m4s").read_bytes())
    assert "h264" in codecs and (frames[0].width, frames[0].height) == (1920, 1080)
    assert result["peak_mb"] < 450, result


@pytest.mark.parametrize("size, expected", [
    ((3840, 2160), (1920, 1080)), ((2160, 3840), (1080, 1920)), ((1280, 720), (1280, 720)),
    ((7681, 1000), (1920, 248)), ((321, 241), (320, 240)), ((640, 640), (640, 640)), ((4000, 4000), (1080, 1080)),
])
def test_output_size_fits_the_box_keeps_aspect_and_never_upscales(size, expected):
    from edge.vod.packager import output_size

    assert output_size(*size) == expected


def test_one_tenants_long_job_does_not_hold_up_another_tenants_upload(server, tenant_factory, tmp_path):
    """At most one job per tenant runs: while tenant A's long job runs, A's next upload waits
    and tenant B's upload is packaged."""
    import asyncio
    import threading

    tenant_a, key_a = tenant_factory()
    _, key_b = tenant_factory()
    jobs = server.edge.packaging
    release = threading.Event()
    started = threading.Event()

    async def long_job():  # A's long transcode, held until the test lets it go
        async with jobs.turn(tenant_a.tenant_id):
            started.set()
            await asyncio.to_thread(release.wait, 120)

    running = asyncio.run_coroutine_threadsafe(long_job(), server.edge.loop)
    try:
        assert started.wait(30)
        clip = tmp_path / "clip.webm"
        write_file(clip, "webm", "libvpx-vp9", None, seconds=1)
        queued = _upload(server, key_a, clip).json()["video_id"]
        other = _wait_done(server, key_b, _upload(server, key_b, clip).json()["video_id"])
        assert other["status"] == "ready", other
        waiting = server.http.get(f"/v1/videos/{queued}", headers=admin_headers(key_a)).json()
        assert waiting["status"] == "processing" and waiting["progress"] == 0
        assert jobs.running_for(tenant_a.tenant_id) == 1 and jobs.waiting == 1
        assert "wave_uploads_waiting 1" in server.edge.metrics.render()
    finally:
        release.set()
        running.result(timeout=60)
    assert _wait_done(server, key_a, queued)["status"] == "ready"


def test_packaging_slots_go_round_robin_between_tenants():
    """One slot, tenant A queues three jobs before B and C queue one each: A's backlog
    does not go first; the order is A, B, C, A, A."""
    import asyncio

    from edge.vod.jobs import FairJobs

    async def scenario():
        jobs = FairJobs(1)
        order, gates = [], {}

        async def job(tenant, n):
            async with jobs.turn(tenant):
                order.append(f"{tenant}{n}")
                await gates[f"{tenant}{n}"].wait()

        names = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1)]
        gates.update({f"{t}{n}": asyncio.Event() for t, n in names})
        tasks = []
        for tenant, n in names:
            tasks.append(asyncio.create_task(job(tenant, n)))
            await asyncio.sleep(0)  # queued in this order
        for _ in names:
            await asyncio.sleep(0.01)
            assert jobs.running == 1
            gates[order[-1]].set()
        await asyncio.gather(*tasks)
        return order, jobs

    order, jobs = asyncio.run(scenario())
    assert order == ["a1", "b1", "c1", "a2", "a3"]
    assert jobs.running == 0 and jobs.waiting == 0 and not jobs._served


def test_upload_and_rtc_limits_come_from_the_environment(tmp_path):
    from edge.settings import from_env
    from edge.vod.limits import MediaLimits

    s = from_env({"WAVE_DATA_DIR": str(tmp_path), "WAVE_UPLOAD_MAX_SIDE": "1920", "WAVE_UPLOAD_MAX_PIXELS": "2073600",
                  "WAVE_UPLOAD_MAX_DURATION_S": "600", "WAVE_UPLOAD_MAX_FRAMES": "36000",
                  "WAVE_TRANSCODE_BUDGET_S": "120", "WAVE_TRANSCODE_JOBS": "3",
                  "WAVE_RTC_CONNECT_TIMEOUT_S": "5", "WAVE_RTC_CONSENT_TIMEOUT_S": "15"})
    assert s.upload_limits == MediaLimits(max_side=1920, max_pixels=2073600, max_duration_s=600, max_frames=36000,
                                          budget_s=120)
    assert (s.transcode_jobs, s.rtc_connect_timeout_s, s.rtc_consent_timeout_s) == (3, 5.0, 15.0)
    defaults = from_env({"WAVE_DATA_DIR": str(tmp_path)})
    assert defaults.upload_limits == MediaLimits() and defaults.transcode_jobs == 2

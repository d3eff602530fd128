"""The nginx front (`wave-edge front-config`): public segments from disk, the rest through
the edge, and the segments nginx served itself still in the session history."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from edge import front_config, front_log
from edge.demo import write_demo_video
from tests.conftest import admin_headers, free_port, wait_for

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture
def front(server_factory, tmp_path):
    """An edge and an nginx front before it, configured by the edge's own command."""
    if not Path(NGINX).exists():
        raise AssertionError("nginx is missing: `apt-get install nginx-light` (.ci/run does)")
    server = server_factory()
    port = free_port()
    conf = front_config.write(server.edge.settings, listen=f"127.0.0.1:{port}",
                              edge=server.base_url.removeprefix("http://"), workers="1")
    # As root, nginx's workers would run as `nobody`, who cannot read pytest's 0700 dirs.
    proc = subprocess.Popen([NGINX, "-c", conf, "-p", str(Path(conf).parent), "-g", "daemon off; user root;"],
                            stderr=subprocess.PIPE)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    wait_for(lambda: _up(client), timeout=10, what="nginx")
    yield server, client
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def _up(client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except Exception:
        return False


def _upload(server, key, path, **form):
    with open(path, "rb") as fh:
        r = server.http.post("/v1/videos", headers=admin_headers(key), files={"file": (path.name, fh)}, data=form)
    assert r.status_code == 202, r.text
    video_id = r.json()["video_id"]
    wait_for(lambda: server.http.get(f"/v1/videos/{video_id}", headers=admin_headers(key)).json()["status"] == "ready",
             timeout=60, what="packaging")
    return video_id


def test_front_serves_public_segments_from_disk_and_passes_the_rest(front, tenant_factory, tmp_path, store):
    server, client = front
    _, key = tenant_factory()
    source = tmp_path / "clip.mp4"
    write_demo_video(source, seconds=4)
    public = _upload(server, key, source)
    private = _upload(server, key, source, playback="private")
    media = server.edge.settings.media_dir / "videos"
    ua = {"user-agent": f"front-test/{uuid.uuid4().hex[:6]}"}

    variants = client.get(f"/vod/{public}/index.m3u8", headers=ua)
    assert variants.status_code == 200 and "x-wave-front" not in variants.headers  # the edge wrote it
    assert variants.headers["content-type"] == "application/vnd.apple.mpegurl"
    top = next(line for line in variants.text.splitlines() if line and not line.startswith("#"))
    playlist = client.get(f"/vod/{public}/{top}", headers=ua)  # the top rendition's media playlist
    assert playlist.status_code == 200 and "x-wave-front" not in playlist.headers
    names = ["init.mp4", *[line for line in playlist.text.splitlines() if line.startswith("seg_")]]
    sent = 0
    for name in names:
        r = client.get(f"/vod/{public}/{name}", headers=ua)
        assert r.status_code == 200 and r.headers["x-wave-front"] == "file", name
        assert r.content == (media / public / name).read_bytes()
        assert r.headers["content-type"] == ("video/mp4" if name.endswith(".mp4") else "video/iso.segment")
        assert "immutable" in r.headers["cache-control"]
        sent += len(r.content)

    # Private media is never in the link tree: the edge checks its token.
    denied = client.get(f"/vod/{private}/seg_00000.m4s")
    assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
    minted = server.http.post(f"/v1/videos/{private}/playback-token", json={"ttl_s": 600}, headers=admin_headers(key))
    assert minted.status_code == 201
    token = minted.json()["token"]
    allowed = client.get(f"/vod/{private}/seg_00000.m4s", params={"token": token})
    assert allowed.status_code == 200 and "x-wave-front" not in allowed.headers
    assert client.get("/vod/vd_0000000000000000/seg_00000.m4s").status_code == 404

    # Segments nginx sent itself reached the session history through the front-log files,
    # which the edge deleted once read.
    wait_for(lambda: any(r.bytes_sent >= sent for r in server.edge.sessions._hls.values() if r.media_id == public),
             timeout=10, what="front log accounting")
    server.stop()  # flushes open HLS sessions and takes the front's last files
    assert not list(server.edge.settings.front_log_path.glob("*.jsonl")), "hand-off files are deleted"
    rows = store.rows("SELECT bytes_sent FROM sessions WHERE media_id = {m:String} AND kind = 'hls'",
                      parameters={"m": public})
    assert len(rows) == 1 and rows[0][0] >= sent + len(playlist.content)


def test_deleting_a_video_takes_it_off_the_front_at_once(front, tenant_factory, tmp_path):
    server, client = front
    _, key = tenant_factory()
    source = tmp_path / "clip.mp4"
    write_demo_video(source, seconds=3)
    video_id = _upload(server, key, source)
    assert client.get(f"/vod/{video_id}/init.mp4").headers.get("x-wave-front") == "file"
    assert server.http.delete(f"/v1/videos/{video_id}", headers=admin_headers(key)).status_code == 200
    assert client.get(f"/vod/{video_id}/init.mp4").status_code == 404
    assert not (server.edge.settings.media_dir / "public" / "vod" / video_id).is_symlink()


def test_front_log_files_are_summed_per_client_and_deleted(tmp_path):
    now = 1_764_230_410
    line = '{{"uri":"/vod/vd_00000000000000aa/{name}","bytes":{n},"addr":"203.0.113.9","at":{at},"ua":"UA","status":{st}}}'
    (tmp_path / f"{now - 5}.jsonl").write_text("\n".join([
        line.format(name="init.mp4", n=700, at=now - 5.2, st=200),
        line.format(name="seg_00001.m4s", n=90_000, at=now - 4.1, st=200),
        line.format(name="seg_00002.m4s", n=1, at=now - 4.0, st=404),  # not served: not counted
        "not json at all",
        '{"uri": "/etc/passwd", "bytes": 5, "addr": "x"}',  # not media: ignored
    ]) + "\n")
    (tmp_path / f"{now}.jsonl").write_text(line.format(name="init.mp4", n=1, at=now, st=200))  # still open
    sums, bad = front_log.take_finished(tmp_path, now + 0.5)
    assert sums == {("vod", "vd_00000000000000aa", "203.0.113.9", "UA"): (90_700, now - 4.1)}
    assert bad == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{now}.jsonl"]


def test_front_serves_live_parts_by_sendfile_and_passes_blocking_reloads_to_the_edge(front, tenant_factory):
    """LL-HLS through the front: parts and segments from disk, playlists (blocking or not)
    and the not-yet-written preload-hinted part from the edge, which waits for it."""
    import asyncio
    import re

    from tests.edge.test_whip_hls import _publish
    from tests.media import PatternTrack

    server, client = front
    _, key = tenant_factory()
    stream = server.http.post("/v1/streams", json={"name": "live"}, headers=admin_headers(key)).json()
    sid = stream["stream_id"]

    async def scenario():
        pc, r = await _publish(server.base_url, stream, tracks=[PatternTrack()])
        assert r.status_code == 201, r.text
        try:
            await asyncio.to_thread(wait_for, lambda: "#EXT-X-PART:" in client.get(f"/live/{sid}/index.m3u8").text,
                                    timeout=15, what="parts")  # in a thread: the publisher runs on this loop
            text = (await asyncio.to_thread(client.get, f"/live/{sid}/index.m3u8")).text
            msn, index = map(int, re.search(r'PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"', text).groups())
            blocked = await asyncio.to_thread(client.get, f"/live/{sid}/index.m3u8",
                                              params={"_HLS_msn": msn, "_HLS_part": index})
            assert blocked.status_code == 200 and "x-wave-front" not in blocked.headers
            assert f'part_{msn:05d}_{index}.m4s' in blocked.text or f"part_{msn + 1:05d}_0.m4s" in blocked.text
            part = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', blocked.text)[-1]
            served = await asyncio.to_thread(client.get, f"/live/{sid}/{part}")
            assert served.status_code == 200 and served.headers["x-wave-front"] == "file"
            assert served.headers["content-type"] == "video/iso.segment"
            msn, index = map(int, re.search(r'PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"', blocked.text).groups())
            hinted = await asyncio.to_thread(client.get, f"/live/{sid}/part_{msn:05d}_{index}.m4s")
            assert hinted.status_code == 200 and hinted.content  # waited for at the edge, or on disk by then
        finally:
            await pc.close()

    asyncio.run(scenario())

"""The live ABR ladder: lower renditions encoded once per stream beside the source, each
its own LL-HLS media playlist, under a multivariant playlist; the ladder is a tenant setting."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest

from core.tenants import TenantError, check_live_ladder, load_tenant, parse_live_ladder
from edge import media_layout
from edge.streaming.hls_writer import HlsWriter
from edge.streaming.pipeline import LivePipeline
from edge.streaming.renditions import Rendition, bitrate_for, rungs_below, scaled_size
from tests.edge.test_cli_and_http import _cli
from tests.edge.test_pipeline_outputs import _feed
from tests.edge.test_whip_hls import _publish
from tests.media import PatternTrack, ToneTrack, decode_fmp4


def _first_pts(init: bytes, segment: bytes) -> float:
    frames, _ = decode_fmp4(init, segment)
    return float(frames[0].pts * frames[0].time_base)


def test_the_pipeline_encodes_each_rung_below_the_source_once_with_aligned_keyframes(tmp_path):
    directory = tmp_path / "vd_0123456789abcdef"
    source = HlsWriter(directory)
    rungs = [Rendition(h, bitrate_for(h), HlsWriter(directory, prefix=media_layout.rendition_prefix(h)))
             for h in (480, 240, 180)]
    pipeline = LivePipeline("st_0123456789abcdef", [source], audio=True, renditions=rungs)
    _feed(pipeline, 3.2, audio=True)  # 320x240 pictures
    pipeline.close()
    assert pipeline.join(20)
    names = {p.name for p in directory.iterdir()}
    assert not any(n.startswith(("r480_", "r240_")) for n in names), "never a rung at or above the source"
    assert "r180_init.mp4" in names and "r180.m3u8" in names
    init, small_init = (directory / "init.mp4").read_bytes(), (directory / "r180_init.mp4").read_bytes()
    segments = sorted(n for n in names if media_layout.SEGMENT.match(n))
    small = sorted(n for n in names if n.startswith("r180_seg_"))
    assert len(segments) >= 3 and len(small) == len(segments)
    for big, little in zip(segments, small):
        frames, codecs = decode_fmp4(small_init, (directory / little).read_bytes())
        assert {"h264", "aac"} <= set(codecs)
        assert (frames[0].width, frames[0].height) == scaled_size(320, 240, 180) == (240, 180)
        # switching renditions at a segment boundary needs the same keyframe instants
        assert abs(_first_pts(init, (directory / big).read_bytes()) - _first_pts(small_init, (directory / little).read_bytes())) < 1e-3
    playlist = (directory / "r180.m3u8").read_text()
    assert "#EXT-X-ENDLIST" in playlist and '#EXT-X-MAP:URI="r180_init.mp4"' in playlist


def test_ladder_rules():
    assert rungs_below((360, 240), 360) == [240] and rungs_below((360,), 1080) == [360] and rungs_below((), 720) == []
    assert scaled_size(1280, 720, 360) == (640, 360) and scaled_size(640, 360, 240) == (426, 240)
    assert bitrate_for(360) == 800_000 and bitrate_for(1080) > bitrate_for(720) > bitrate_for(360)
    assert check_live_ladder([240, 360]) == (360, 240)
    assert parse_live_ladder("360,240") == (360, 240) and parse_live_ladder("none") == () == parse_live_ladder("")
    for bad in ("abc", "360,360", "100", "361", "2160", "144,180,240,360"):
        with pytest.raises(TenantError):
            parse_live_ladder(bad)


def test_the_ladder_is_a_tenant_setting(store, tenant_factory, tmp_path):
    tenant, _ = tenant_factory()
    assert tenant.live_ladder == (360,) and load_tenant(store, tenant.tenant_id).live_ladder == (360,)
    custom, _ = tenant_factory(live_ladder=(240, 432))
    assert load_tenant(store, custom.tenant_id).live_ladder == (432, 240)
    none, _ = tenant_factory(live_ladder=())
    assert load_tenant(store, none.tenant_id).live_ladder == ()

    data = tmp_path / "var"
    out = _cli(data, "tenant", "create", "t", "--live-ladder", "360,240")
    assert out.returncode == 0, out.stderr
    bad = _cli(data, "tenant", "create", "u", "--live-ladder", "360,abc")
    assert bad.returncode == 2 and "live_ladder" in json.loads(bad.stderr)["detail"]


def test_a_live_stream_with_a_ladder_has_a_multivariant_playlist_of_decodable_renditions(server, tenant_factory):
    _, key = tenant_factory(live_ladder=(240,))
    stream = server.http.post("/v1/streams", json={"name": "abr"}, headers={"authorization": f"Bearer {key}"}).json()
    sid = stream["stream_id"]

    async def scenario():
        pc, r = await _publish(server.base_url, stream, tracks=[PatternTrack(), ToneTrack()])
        assert r.status_code == 201, r.text
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                deadline = time.monotonic() + 20
                while True:
                    top = await http.get(f"/live/{sid}/index.m3u8")
                    if top.status_code == 200 and top.text.count("#EXT-X-STREAM-INF") == 2:
                        break
                    assert time.monotonic() < deadline, top.text
                    await asyncio.sleep(0.1)
                variants = re.findall(r'^#EXT-X-STREAM-INF:BANDWIDTH=(\d+),RESOLUTION=(\d+)x(\d+),CODECS="([^"]+)"\n(\S+)$',
                                      top.text, re.M)
                assert [(w, h, uri) for _, w, h, _, uri in variants] == [("640", "360", "src.m3u8"),
                                                                           ("426", "240", "r240.m3u8")]
                assert int(variants[0][0]) > int(variants[1][0]) > 0
                assert all(re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", codecs) for *_, codecs, _ in variants)
                for _, width, height, _, uri in variants:
                    deadline = time.monotonic() + 20
                    while True:
                        media = (await http.get(f"/live/{sid}/{uri}")).text
                        if len(re.findall(r"^\S*seg_\d+\.m4s$", media, re.M)) >= 2:
                            break
                        assert time.monotonic() < deadline, media
                        await asyncio.sleep(0.2)
                    assert "#EXT-X-PART:" in media and "#EXT-X-PRELOAD-HINT" in media
                    other = "r240.m3u8" if uri == "src.m3u8" else "src.m3u8"
                    assert re.search(rf'^#EXT-X-RENDITION-REPORT:URI="{re.escape(other)}",LAST-MSN=\d+,LAST-PART=\d+$',
                                     media, re.M), media
                    init_name = re.search(r'#EXT-X-MAP:URI="([^"]+)"', media).group(1)
                    init = (await http.get(f"/live/{sid}/{init_name}")).content
                    segment = re.findall(r"^(\S*seg_\d+\.m4s)$", media, re.M)[-1]
                    frames, codecs = decode_fmp4(init, (await http.get(f"/live/{sid}/{segment}")).content)
                    assert {"h264", "aac"} <= set(codecs)
                    assert frames and (frames[0].width, frames[0].height) == (int(width), int(height)), uri
                    # a blocking reload works on every rendition's playlist
                    msn, part = map(int, re.search(r'PRELOAD-HINT:TYPE=PART,URI="\S*part_(\d+)_(\d+)\.m4s"', media).groups())
                    blocked = await http.get(f"/live/{sid}/{uri}", params={"_HLS_msn": msn, "_HLS_part": part})
                    assert blocked.status_code == 200 and re.search(rf"part_({msn:05d}_{part}|{msn + 1:05d}_0)\.m4s", blocked.text)
        finally:
            await pc.close()

    asyncio.run(scenario())


def test_the_ladder_is_read_and_changed_through_the_live_settings_api(server, tenant_factory, store):
    tenant, key = tenant_factory()
    admin = {"authorization": f"Bearer {key}"}
    assert server.http.get("/v1/live/settings", headers=admin).json() == {"live_ladder": [360]}
    assert server.http.get("/v1/live/settings").status_code == 401
    changed = server.http.put("/v1/live/settings", json={"live_ladder": [240, 432]}, headers=admin)
    assert changed.status_code == 200 and changed.json() == {"live_ladder": [432, 240]}
    assert load_tenant(store, tenant.tenant_id).live_ladder == (432, 240)
    assert server.http.get("/v1/live/settings", headers=admin).json() == {"live_ladder": [432, 240]}
    for body, path in (({"live_ladder": [361]}, "$.live_ladder"), ({"live_ladder": "360"}, "$.live_ladder"),
                       ({"live_ladder": [360, 240, 180, 144]}, "$.live_ladder"), ({"ladder": [360]}, "$")):
        bad = server.http.put("/v1/live/settings", json=body, headers=admin)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["detail"]["path"].startswith(path), (body, bad.json())
    assert server.http.put("/v1/live/settings", json={"live_ladder": []}, headers=admin).json() == {"live_ladder": []}
    assert load_tenant(store, tenant.tenant_id).live_ladder == ()

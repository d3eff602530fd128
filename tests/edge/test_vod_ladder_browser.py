"""The ladder in headless Chromium with hls.js: a 1080p upload plays as a multivariant
stream, the seek bar shows storyboard previews, and the player reports its renditions."""

from __future__ import annotations

import asyncio
import re

from tests.browser import ARTIFACTS, chromium, played
from tests.conftest import wait_for
from tests.edge.test_vod_ladder import STREAM_INF, _attributes, _upload, write_clip


def _renditions(store, tenant_id):
    return store.rows("SELECT rendition_w, rendition_h, bitrate_kbps, player_w, player_h FROM viewer_events"
                      " WHERE tenant_id = {t:String} AND type = 'rendition_change' ORDER BY ts",
                      parameters={"t": tenant_id})


def test_chromium_plays_the_ladder_shows_seek_previews_and_reports_renditions(server, tenant_factory, store,
                                                                              tmp_path):
    tenant, key = tenant_factory()
    source = tmp_path / "clip.mp4"
    write_clip(source, (1920, 1080), seconds=8)
    video_id = _upload(server, key, source)["video_id"]
    ladder = {a["RESOLUTION"]: int(a["BANDWIDTH"])
              for a, _ in ((_attributes(x), u) for x, u in STREAM_INF.findall(
                  server.http.get(f"/vod/{video_id}/index.m3u8").text))}
    assert len(ladder) == 4
    responses: list[tuple[int, str]] = []

    async def scenario():
        async with chromium(viewport=(960, 600)) as (context, errors):
            page = await context.new_page()
            page.on("response", lambda r: responses.append((r.status, r.url)))
            await page.goto(f"{server.base_url}/embed/{video_id}")
            await page.click('[data-consent="accept"]')
            await page.click(".wave-play")
            await played(page, 1.5)
            size = await page.evaluate("(() => { const v = document.querySelector('wave-player video');"
                                       " return `${v.videoWidth}x${v.videoHeight}`; })()")
            await page.evaluate("document.querySelector('wave-player video').pause()")
            # Hover 60% along the seek bar: the preview shows that moment's thumbnail.
            seek = page.locator(".wave-seek")
            for _ in range(100):  # the storyboard loaded (polled: the embed's CSP forbids wait_for_function)
                if await seek.get_attribute("data-previews") == "on":
                    break
                await asyncio.sleep(0.1)
            box = await seek.bounding_box()
            await page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
            preview = page.locator(".wave-preview")
            await preview.wait_for(state="visible", timeout=5_000)
            shown = await page.evaluate("""(() => {
                const box = document.querySelector('.wave-preview');
                const img = box.querySelector('.wave-preview-image');
                const r = img.getBoundingClientRect();
                return { time: Number(box.dataset.time), image: getComputedStyle(img).backgroundImage,
                         position: img.style.backgroundPosition, w: r.width, h: r.height,
                         hidden: box.getAttribute('aria-hidden'),
                         duration: document.querySelector('wave-player video').duration };
            })()""")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "vod-seek-preview.png"))
            await page.mouse.move(5, 5)  # away: the preview goes
            await preview.wait_for(state="hidden", timeout=5_000)
            await page.goto("about:blank")
            await asyncio.sleep(0.5)
            return size, shown, errors

    size, shown, errors = asyncio.run(scenario())
    assert not errors, errors
    assert size in ladder, (size, ladder)  # the picture is one of the ladder's renditions
    fetched = [u for s, u in responses if s == 200 and f"/vod/{video_id}/" in u]
    assert any(u.endswith("/index.m3u8") for u in fetched)
    assert any(re.search(r"/r\d+\.m3u8$", u) for u in fetched)  # hls.js went through the multivariant playlist
    assert any(u.endswith("/storyboard.vtt") for u in fetched) and any(u.endswith("/sprite-0.jpg") for u in fetched)
    # The thumbnail of the moment under the pointer: 60% of the video, its cue's sprite tile.
    assert abs(shown["time"] - 0.6 * shown["duration"]) < 0.5, shown
    cue = int(shown["time"] // 2)  # 2 s a thumbnail for a short video
    assert "sprite-0.jpg" in shown["image"] and shown["position"] == f"-{cue * 160}px 0px", shown
    assert (shown["w"], shown["h"]) == (160, 90) and shown["hidden"] == "true"
    # The player reported the rendition it played: its size and its BANDWIDTH, as beacons.
    wait_for(lambda: _renditions(store, tenant.tenant_id), what="a rendition_change beacon")
    rows = _renditions(store, tenant.tenant_id)
    for w, h, kbps, player_w, _ in rows:
        assert f"{w}x{h}" in ladder and kbps == round(ladder[f"{w}x{h}"] / 1000), (rows, ladder)
        assert player_w == 960


def test_under_a_throttled_network_hls_js_plays_a_lower_rung_and_reports_it(server, tenant_factory, store, tmp_path):
    """DevTools network emulation at 1.2 Mbit/s: the 1080p rung (several Mbit/s) cannot
    keep up, hls.js's ABR plays a rung of at most 480p, and the beacons say which."""
    tenant, key = tenant_factory()
    source = tmp_path / "clip.mp4"
    write_clip(source, (1920, 1080), seconds=8)
    video_id = _upload(server, key, source)["video_id"]

    async def scenario():
        async with chromium(viewport=(960, 600)) as (context, errors):
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
            await cdp.send("Network.enable")
            await cdp.send("Network.emulateNetworkConditions", {
                "offline": False, "latency": 20, "downloadThroughput": 1_200_000 / 8, "uploadThroughput": 1_000_000 / 8})
            await page.goto(f"{server.base_url}/embed/{video_id}")
            await page.click('[data-consent="accept"]')
            await page.click(".wave-play")
            await played(page, 2.5, timeout=90)
            height = await page.evaluate("document.querySelector('wave-player video').videoHeight")
            await page.goto("about:blank")
            await asyncio.sleep(0.5)
            return height, errors

    height, errors = asyncio.run(scenario())
    assert height <= 480, height
    wait_for(lambda: any(r[1] <= 480 for r in _renditions(store, tenant.tenant_id)), what="a low rung's beacon")
    assert all(h in (1080, 720, 480, 360) for _, h, *_ in _renditions(store, tenant.tenant_id))

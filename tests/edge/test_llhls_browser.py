"""Chromium plays a live stream over LL-HLS with hls.js in low-latency mode: it fetches
parts and blocking playlist reloads, targets PART-HOLD-BACK, and the LIVE badge shows
its latency; with transport=hls-plain it fetches whole segments only."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.browser import advances, chromium
from tests.edge.test_whip_hls import _publish, _wait_segments, stream  # noqa: F401 - fixture


def test_chromium_plays_the_live_stream_over_ll_hls_in_low_latency_mode(server, stream):
    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201, r.text
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                await _wait_segments(http, stream["stream_id"], 2, timeout=20)
                playlist = (await http.get(f"/live/{stream['stream_id']}/index.m3u8")).text
            hold_back = float(re.search(r"PART-HOLD-BACK=([0-9.]+)", playlist).group(1))
            results = {}
            async with chromium() as (context, errors):
                for transport in ("hls", "hls-plain"):
                    page = await context.new_page()
                    urls: list[str] = []
                    page.on("request", lambda req, urls=urls: urls.append(req.url))
                    await page.goto(f"{server.base_url}/embed/{stream['stream_id']}?transport={transport}")
                    await page.click('[data-consent="decline"]')
                    await page.click(".wave-play")
                    await advances(page, 2.0)
                    state = await page.evaluate(
                        "(() => { const p = document.querySelector('wave-player'); const v = p.querySelector('video');"
                        " const t = p.querySelector('.wave-time');"
                        " return {transport: p.transport, size: [v.videoWidth, v.videoHeight], badge: t.textContent,"
                        " live: t.classList.contains('wave-live'), latency: Number(t.dataset.latency),"
                        " target: Number(t.dataset.targetLatency)}; })()")
                    state["parts"] = sum(1 for u in urls if re.search(r"/part_\d+_\d+\.m4s", u))
                    state["segments"] = sum(1 for u in urls if re.search(r"/seg_\d+\.m4s", u))
                    state["blocking"] = sum(1 for u in urls if "_HLS_msn=" in u)
                    results[transport] = state
                    await page.close()
            return hold_back, results, errors
        finally:
            await publisher.close()

    hold_back, results, errors = asyncio.run(scenario())
    ll, plain = results["hls"], results["hls-plain"]
    assert ll["transport"] == "hls" and ll["size"] == [640, 360]
    assert ll["parts"] >= 3 and ll["blocking"] >= 3, ll  # parts, fetched as blocking reloads announce them
    # hls.js targets the edge's PART-HOLD-BACK (plus up to a target duration after stalls)
    assert hold_back - 1e-3 <= ll["target"] <= hold_back + 2, ll
    assert ll["live"] and ll["badge"].startswith("LIVE · ") and ll["latency"] > 0, ll
    assert plain["size"] == [640, 360] and plain["parts"] == 0, plain
    assert plain["segments"] >= 2 and plain["target"] > ll["target"], plain  # three segments behind
    assert not errors, errors


def test_chromium_switches_to_the_lower_rendition_when_the_bandwidth_is_throttled(server, tenant_factory):
    """hls.js's ABR over the live ladder: 640x360 unthrottled, then DevTools network
    emulation below the source's bandwidth and it plays the 240p rendition."""
    _, key = tenant_factory(live_ladder=(240,))
    stream = server.http.post("/v1/streams", json={"name": "abr"}, headers={"authorization": f"Bearer {key}"}).json()
    sid = stream["stream_id"]

    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201, r.text
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                deadline = asyncio.get_running_loop().time() + 20
                while len(re.findall(r"^seg_", (await http.get(f"/live/{sid}/src.m3u8")).text, re.M)) < 3:
                    assert asyncio.get_running_loop().time() < deadline, "no segments"
                    await asyncio.sleep(0.2)
                top = (await http.get(f"/live/{sid}/index.m3u8")).text
            rates = {int(h): int(b) for b, h in re.findall(r"BANDWIDTH=(\d+),RESOLUTION=\d+x(\d+)", top)}
            assert set(rates) == {360, 240}, top
            async with chromium() as (context, errors):
                page = await context.new_page()
                await page.goto(f"{server.base_url}/embed/{sid}?transport=hls")
                await page.click('[data-consent="decline"]')
                await page.click(".wave-play")
                await advances(page, 1.0)
                heights = [await _height(page)]
                cdp = await context.new_cdp_session(page)
                await cdp.send("Network.enable")
                # between the two renditions' bandwidths: only the lower one fits
                throughput = (rates[240] + rates[360]) / 2 / 8
                await cdp.send("Network.emulateNetworkConditions", {
                    "offline": False, "latency": 20, "downloadThroughput": throughput, "uploadThroughput": throughput})
                deadline = asyncio.get_running_loop().time() + 40
                while heights[-1] != 240 and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.5)
                    heights.append(await _height(page))
                return rates, heights, errors
        finally:
            await publisher.close()

    rates, heights, errors = asyncio.run(scenario())
    assert rates[360] > rates[240], rates
    assert heights[0] == 360 and heights[-1] == 240, heights  # the source first, then switched down
    assert not [e for e in errors if "hls_" in e], errors


async def _height(page) -> int:
    return await page.evaluate("document.querySelector('wave-player video').videoHeight")

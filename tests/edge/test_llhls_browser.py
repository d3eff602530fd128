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

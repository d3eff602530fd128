"""A live stream published over WHIP plays in headless Chromium: over HLS and over WHEP."""

from __future__ import annotations

import asyncio

import httpx

from tests.browser import advances, chromium
from tests.test_whip_hls import _publish, _wait_segments, stream  # noqa: F401 - fixture


def test_live_stream_plays_in_chromium_over_hls_and_whep(server, stream):
    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201, r.text
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
                await _wait_segments(http, stream["stream_id"], 3, timeout=20)
            async with chromium() as (context, errors):
                results = {}
                for transport in ("hls", "whep"):
                    page = await context.new_page()
                    await page.goto(f"{server.base_url}/embed/{stream['stream_id']}?transport={transport}")
                    await page.click('[data-consent="decline"]')
                    await page.click(".wave-play")
                    await advances(page, 2.0)
                    results[transport] = await page.evaluate(
                        "(() => { const p = document.querySelector('wave-player'); const v = p.querySelector('video');"
                        " return [p.transport, v.videoWidth, v.videoHeight]; })()")
                    viewers = server.edge.live.describe(stream["stream_id"])["viewers"]
                    results[transport].append(viewers)
                    await page.close()
                return results, errors
        finally:
            await publisher.close()

    results, errors = asyncio.run(scenario())
    assert results["hls"][:3] == ["hls", 640, 360]
    assert results["whep"][:3] == ["whep", 640, 360]
    assert results["whep"][3] == 1, "the browser is the stream's one WHEP viewer"
    assert not errors, errors

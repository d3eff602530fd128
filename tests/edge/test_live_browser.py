"""A live stream published over WHIP plays in headless Chromium: over HLS and over WHEP."""

from __future__ import annotations

import asyncio

import httpx

from tests.browser import advances, chromium
from tests.edge.test_whip_hls import _publish, _wait_segments, stream  # noqa: F401 - fixture


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


def test_the_player_says_the_live_stream_ended_when_the_publisher_stops(server, stream):
    """Over WHEP, Chromium alone would hold a frozen picture for seconds; the player hears
    `inactive` from the edge's events resource (or sees DTLS close) and says so."""
    async def scenario():
        publisher, r = await _publish(server.base_url, stream)
        assert r.status_code == 201, r.text
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            await _wait_segments(http, stream["stream_id"], 2, timeout=20)
            async with chromium() as (context, errors):
                page = await context.new_page()
                await page.goto(f"{server.base_url}/embed/{stream['stream_id']}?transport=whep")
                await page.click('[data-consent="decline"]')
                await page.click(".wave-play")
                await advances(page, 1.0)
                stopped = asyncio.get_running_loop().time()
                await http.delete(r.headers["location"], headers={"authorization": f"Bearer {stream['publish_token']}"})
                message = ""
                while asyncio.get_running_loop().time() - stopped < 5:
                    message = await page.evaluate(
                        "(() => { const m = document.querySelector('wave-player .wave-message');"
                        " return m && !m.hidden ? m.textContent : ''; })()")
                    if message:
                        break
                    await asyncio.sleep(0.05)
                told_after = asyncio.get_running_loop().time() - stopped
                await page.close()
        await publisher.close()
        return message, told_after, errors

    message, told_after, errors = asyncio.run(scenario())
    assert message == "The live stream has ended."
    assert told_after < 2.0
    assert not errors, errors

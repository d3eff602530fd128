"""Average bitrate and upscale % (analytics/quality.py) from hand-built beacons: playing
time billed to the rendition the player reported, in the summary the dashboard shows."""

from __future__ import annotations

import time

import pytest

from analytics import quality, queries
from tests.conftest import store_view

P720 = {"player_w": 1280, "player_h": 720}
LOW = {"rendition_w": 640, "rendition_h": 360, "bitrate_kbps": 730}
HIGH = {"rendition_w": 1920, "rendition_h": 1080, "bitrate_kbps": 6000}


def _views(store, tenant_id, t0):
    # A: 14 s playing on 360p in a 1280x720 player (100 % upscaled), then 16 s on 1080p (0 %).
    store_view(store, tenant_id, "a", [
        (0, "viewstart", P720), (0.1, "rendition_change", {**P720, **LOW}), (1, "playing", P720),
        (11, "heartbeat", P720), (15, "rendition_change", {**P720, **HIGH}), (21, "heartbeat", P720),
        (31, "pause", P720), (40, "viewend", P720),  # paused time counts for nothing
    ], video_id="vd_a", t0=t0)
    # C: 10 s on 360p in a 320x180 player: downscaled, 0 % upscale.
    small = {"player_w": 320, "player_h": 180}
    store_view(store, tenant_id, "c", [
        (0, "viewstart", small), (0.05, "rendition_change", {**small, **LOW}), (1, "playing", small),
        (11, "pause", small),
    ], video_id="vd_c", t0=t0)
    # B: no rendition reported (a WebRTC view, an old player): in neither figure.
    store_view(store, tenant_id, "b", [(0, "viewstart", P720), (1, "playing", P720), (50, "pause", P720)],
               video_id="vd_b", t0=t0)


def test_bitrate_and_upscale_are_weighted_by_playing_time_on_each_rendition(store, tenant_factory):
    tenant, _ = tenant_factory()
    t0 = time.time() - 3600
    _views(store, tenant.tenant_id, t0)
    scope = queries.Scope(tenant.tenant_id, t0 - 60, t0 + 600)
    # (14 s x 730 + 16 s x 6000 + 10 s x 730) / 40 s; (14 s x 100 %) / 40 s
    assert quality.quality(store, scope) == {"average_bitrate_kbps": 2838.0, "upscale_pct": 35.0}
    one = queries.Scope(tenant.tenant_id, t0 - 60, t0 + 600, "vd_a")
    assert quality.quality(store, one) == {"average_bitrate_kbps": pytest.approx(3540.7, abs=0.05),
                                           "upscale_pct": pytest.approx(46.67, abs=0.005)}
    none = queries.Scope(tenant.tenant_id, t0 - 60, t0 + 600, "vd_b")
    assert quality.quality(store, none) == {"average_bitrate_kbps": None, "upscale_pct": None}
    other = tenant_factory()[0]  # another tenant sees none of it
    assert quality.quality(store, queries.Scope(other.tenant_id, t0 - 60, t0 + 600))["upscale_pct"] is None


def test_the_quality_route_and_the_dashboard_show_them(server, store, tenant_factory):
    import asyncio

    from tests.browser import chromium

    tenant, key = tenant_factory(k_anonymity=1)
    t0 = time.time() - 3600
    _views(store, tenant.tenant_id, t0)
    admin = {"authorization": f"Bearer {key}"}
    r = server.http.get("/v1/analytics/quality", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"average_bitrate_kbps": 2838.0, "upscale_pct": 35.0}
    assert server.http.get("/v1/analytics/quality", params={"from": "yesterday"}, headers=admin).status_code == 400
    assert server.http.get("/v1/analytics/quality").status_code == 401

    async def tiles():
        async with chromium() as (context, errors):
            page = await context.new_page()
            await page.goto(f"{server.base_url}/admin")
            await page.fill("#key", key)
            await page.click("#signin button[type=submit]")
            await page.locator("body[data-loaded=true]").wait_for(timeout=20_000)
            return [await page.locator(f'.tile[data-field="{f}"] .value').inner_text()
                    for f in ("average_bitrate_kbps", "upscale_pct")], errors

    shown, errors = asyncio.run(tiles())
    assert shown == ["2.84 Mbps", "35.00 %"] and not errors, (shown, errors)

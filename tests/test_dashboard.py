"""The dashboard: its session cookie, and the page in headless Chromium showing the API's figures."""

from __future__ import annotations

import asyncio
import time

from analytics import rollup
from tests.browser import ARTIFACTS, chromium
from tests.conftest import store_view
from tests.test_analytics_api import VIEWS


def _fill(store, tenant_id):
    t0 = time.time() - 3 * 3600
    since = time.time() - 1
    for view_id, video_id, offset, common, timeline in VIEWS:
        store_view(store, tenant_id, view_id, timeline, video_id, t0=t0 + offset, **common)
    rollup.fold_touched(store, since)


def test_session_cookie_is_httponly_strict_and_ends_on_sign_out(server, tenant_factory):
    tenant, key = tenant_factory(name="Acme")
    assert server.http.post("/admin/session", json={"admin_key": "wk_wrong"}).status_code == 401
    assert server.http.post("/admin/session", json={"key": key}).status_code == 400
    r = server.http.post("/admin/session", json={"admin_key": key})
    assert r.status_code == 201 and r.json() == {"tenant_id": tenant.tenant_id, "name": "Acme"}
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header and "path=/" in header
    assert key not in r.headers["set-cookie"]
    assert server.http.get("/v1/analytics/summary").status_code == 200  # the client keeps the cookie
    assert server.http.get("/admin/session").json()["name"] == "Acme"
    server.http.cookies.set("wave_admin", server.http.cookies["wave_admin"][:-2] + "xx")  # tampered
    assert server.http.get("/v1/analytics/summary").status_code == 401
    server.http.cookies.clear()
    server.http.post("/admin/session", json={"admin_key": key})
    assert server.http.delete("/admin/session").status_code == 200
    assert server.http.get("/v1/analytics/summary").status_code == 401
    page = server.http.get("/admin")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_dashboard_signs_in_and_shows_the_apis_figures(server, tenant_factory, store):
    tenant, key = tenant_factory(name="Acme")
    _fill(store, tenant.tenant_id)
    api = server.http.get("/v1/analytics/summary", headers={"authorization": f"Bearer {key}"}).json()

    async def scenario(viewport, shot):
        async with chromium(viewport=viewport) as (context, errors):
            page = await context.new_page()
            await page.goto(f"{server.base_url}/admin")
            await page.fill("#key", key)
            await page.click("#signin button[type=submit]")
            await page.locator("body[data-loaded=true]").wait_for(timeout=20_000)
            tiles = {f: await page.locator(f'.tile[data-field="{f}"] .value').inner_text()
                     for f in ("views", "unique_viewers", "startup_time_ms_p50", "rebuffer_pct", "playback_failure_pct")}
            countries = await page.locator('table[data-dimension="country"] tbody tr').evaluate_all(
                "rows => rows.map(r => [r.dataset.value, r.children[1].textContent])")
            videos = await page.locator('table[data-dimension="video"] tbody tr').count()
            storage = await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
            wide = await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
            return tiles, countries, videos, storage, wide, errors

    tiles, countries, videos, storage, wide, errors = asyncio.run(scenario((1280, 900), "dashboard-1280.png"))
    assert tiles == {"views": str(api["views"]), "unique_viewers": str(api["unique_viewers"]),
                     "startup_time_ms_p50": f"{api['startup_time_ms_p50']} ms",
                     "rebuffer_pct": f"{api['rebuffer_pct']:.2f} %",
                     "playback_failure_pct": f"{api['playback_failure_pct']:.2f} %"}
    assert countries == [["DE", "3"], ["FR", "1"], ["US", "1"]]
    assert videos == 2
    assert storage == [0, 0, ""], "the key is in no storage and the cookie is HttpOnly"
    assert wide and not errors, errors
    *_, wide_phone, phone_errors = asyncio.run(scenario((390, 844), "dashboard-phone.png"))
    assert wide_phone, "nothing overflows sideways at phone width"
    assert not phone_errors, phone_errors

"""An anonymous tenant's embed in headless Chromium: it plays with no consent prompt, its
beacons are stored under a daily key without IP, and the device keeps nothing at all."""

from __future__ import annotations

import asyncio
import json
import time

from analytics import anonymous, rollup
from tests.browser import ARTIFACTS, chromium, played
from tests.conftest import wait_for
from tests.edge.test_player_browser import _ready_video

STORAGE = """async () => ({
  local: localStorage.length,
  session: sessionStorage.length,
  cookie: document.cookie,
  indexeddb: (await indexedDB.databases()).map((d) => d.name),
})"""
EMPTY = {"local": 0, "session": 0, "cookie": "", "indexeddb": []}


def test_anonymous_embed_plays_without_prompt_and_leaves_nothing_on_the_device(server, tenant_factory, tmp_path, store):
    tenant, video_id, key = _ready_video(server, tenant_factory, tmp_path, consent_mode="anonymous", ip_mode="full")
    set_cookies: list[str] = []

    async def scenario():
        async with chromium(screen=(1366, 768), viewport=(1000, 700)) as (context, errors):
            page = await context.new_page()
            page.on("response", lambda r: set_cookies.extend(
                f"{r.url}: {v}" for k, v in r.headers.items() if k.lower() == "set-cookie"))
            await page.goto(f"{server.base_url}/embed/{video_id}")
            await page.locator(".wave-root[aria-label^='Video player:']").wait_for()  # the config arrived
            prompt = {"accept": await page.locator('[data-consent="accept"]').count(),
                      "decline": await page.locator('[data-consent="decline"]').count(),
                      "panel_hidden": await page.locator(".wave-consent").is_hidden()}
            await page.click(".wave-play")
            t = await played(page, 4.0)
            during = await page.evaluate(STORAGE)
            # What every batch is wrapped in (beacons leave by sendBeacon, which the
            # browser's request events do not show): the tenant, and no viewer id.
            envelope = await page.evaluate("JSON.stringify(document.querySelector('wave-player').batcher.envelope())")
            # The Privacy button explains the counting; it offers nothing to accept.
            await page.click('[data-consent="settings"]')
            notice = await page.locator(".wave-consent-text").inner_text()
            accept_after = await page.locator('[data-consent="accept"]').count()
            await page.click('[data-consent="close"]')
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "player-anonymous.png"))
            await page.goto("about:blank")  # pagehide: viewend goes out by sendBeacon
            await asyncio.sleep(0.5)
            # The edge's origin afterwards: still nothing in any of its storage.
            await page.goto(f"{server.base_url}/healthz")
            after = await page.evaluate(STORAGE)
            cookies = await context.cookies()
            return t, prompt, during, envelope, notice, accept_after, after, cookies, errors

    t, prompt, during, envelope, notice, accept_after, after, cookies, errors = asyncio.run(scenario())
    assert prompt == {"accept": 0, "decline": 0, "panel_hidden": True}, prompt
    assert during == EMPTY and after == EMPTY, (during, after)
    assert cookies == [] and set_cookies == [], (cookies, set_cookies)
    assert "anonymously" in notice and accept_after == 0
    assert json.loads(envelope) == {"tenant_id": tenant.tenant_id}

    def rows():
        return store.rows(
            "SELECT type, viewer_id, email, toString(ip), region, city, os, os_version, browser, browser_version,"
            " device FROM viewer_events WHERE tenant_id = {t:String} ORDER BY ts", {"t": tenant.tenant_id})

    wait_for(lambda: any(r[0] == "viewend" for r in rows()), what="the viewend beacon")
    stored = rows()
    types = [r[0] for r in stored]
    assert types[0] == "viewstart" and "playing" in types and types[-1] == "viewend"
    [viewer_key] = {r[1] for r in stored}  # one client, one day: one key
    assert viewer_key.startswith(anonymous.KEY_PREFIX)
    assert {r[2:] for r in stored} == {("", "::", "", "", "", "", "", "", "desktop")}
    assert not errors, errors

    # The figures count it, and the dashboard says how: unique viewers per day.
    rollup.fold_touched(store, time.time() - 120)
    summary = server.http.get("/v1/analytics/summary", headers={"authorization": f"Bearer {key}"}).json()
    assert summary["views"] == 1 and summary["unique_viewers"] == 1
    assert (summary["consent_mode"], summary["unique_viewers_scope"]) == ("anonymous", "day")
    assert abs(summary["watch_time_s"] - t) < 1.5

    async def dashboard():
        async with chromium(viewport=(1280, 900)) as (context, errors):
            page = await context.new_page()
            await page.goto(f"{server.base_url}/admin")
            await page.fill("#key", key)
            await page.click("#signin button[type=submit]")
            await page.locator("body[data-loaded=true]").wait_for(timeout=20_000)
            badge = page.locator('.tile[data-field="unique_viewers"] #counting')
            label = await page.locator('.tile[data-field="unique_viewers"] .label').inner_text()
            await page.screenshot(path=str(ARTIFACTS / "dashboard-anonymous.png"), full_page=True)
            return await badge.inner_text(), await badge.get_attribute("data-scope"), label, errors

    badge, scope, label, errors = asyncio.run(dashboard())
    assert badge == "anonymous counting: unique viewers per day" and scope == "day"
    assert label == "Unique viewers (per day)"
    assert not errors, errors

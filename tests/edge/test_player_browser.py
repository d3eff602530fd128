"""The player in headless Chromium: it plays, and consent decides what is stored."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time

import pytest

from analytics import rollup, views
from edge.demo import write_demo_video
from tests.browser import ARTIFACTS, chromium, played
from tests.conftest import count_events, identity_token, wait_for

def _ready_video(server, tenant_factory, tmp_path, **tenant_kwargs):
    """A tenant and a ready 12 s H.264/AAC video with a keyframe a second, uploaded for real."""
    tenant, key = tenant_factory(consent_text="Measure playback quality?", policy_version="2026-11", **tenant_kwargs)
    source = tmp_path / "clip.mp4"
    write_demo_video(source, seconds=12)
    with open(source, "rb") as fh:
        r = server.http.post("/v1/videos", headers={"authorization": f"Bearer {key}"}, files={"file": ("clip.mp4", fh)})
    assert r.status_code == 202, r.text
    video_id = r.json()["video_id"]

    def ready():
        return server.http.get(f"/v1/videos/{video_id}", headers={"authorization": f"Bearer {key}"}).json()["status"] == "ready"

    wait_for(ready, timeout=60, what="the upload to be packaged")
    return tenant, video_id, key


@pytest.fixture
def video(server, tenant_factory, tmp_path):
    return _ready_video(server, tenant_factory, tmp_path)


def _rows(store, tenant_id, columns="type, viewer_id, browser, os, screen_w, screen_h, player_w"):
    return store.rows(f"SELECT {columns} FROM viewer_events WHERE tenant_id = {{t:String}} ORDER BY ts",
                      parameters={"t": tenant_id})


def _requests_to(log, path):
    return [r for r in log if path in r]


def test_accept_then_watch_stores_the_view_with_its_qoe(server, video, store):
    tenant, video_id, key = video
    requests: list[str] = []

    async def scenario():
        async with chromium(screen=(1366, 768), viewport=(1000, 700)) as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
            await page.goto(f"{server.base_url}/embed/{video_id}")
            prompt = page.locator('[data-consent="accept"]')
            await prompt.wait_for()
            text = await page.locator(".wave-consent-text").inner_text()
            policy = await page.locator(".wave-consent-policy").inner_text()
            assert not _requests_to(requests, "/v1/collect"), "nothing may be sent before the answer"
            assert await page.evaluate("localStorage.length") == 0, "nothing stored before the answer"
            await prompt.click()
            await page.click(".wave-play")
            t = await played(page, 6.0)
            stored = await page.evaluate("JSON.parse(localStorage.getItem(Object.keys(localStorage)[0]))")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "player-embed.png"))
            await page.goto("about:blank")  # pagehide: viewend goes out by sendBeacon
            await asyncio.sleep(0.5)
            return t, stored, text, policy, errors

    t, stored, text, policy, errors = asyncio.run(scenario())
    assert text == "Measure playback quality?" and "2026-11" in policy
    assert stored["policy_version"] == "2026-11"

    wait_for(lambda: any(r[0] == "viewend" for r in _rows(store, tenant.tenant_id)), what="the viewend beacon")
    rows = _rows(store, tenant.tenant_id)
    types = [r[0] for r in rows]
    assert types[0] == "viewstart" and "playing" in types and types[-1] == "viewend"
    assert {r[1] for r in rows} == {stored["viewer_id"]}
    assert {r[2] for r in rows} <= {"Chrome", "HeadlessChrome"}, rows[0]
    assert {r[3] for r in rows} == {"Linux"}
    assert {(r[4], r[5]) for r in rows} == {(1366, 768)}
    assert {r[6] for r in rows} == {1000}
    [view] = views.per_view(store, tenant.tenant_id, time.time() - 600, time.time() + 60)
    assert view.started and view.startup_ms is not None and view.startup_ms > 0
    # Watch time is what was played (the view ended at about the last currentTime seen).
    assert abs(view.watch_ms / 1000 - t) < 1.5, (view, t)
    # ...and the admin's analytics show it, once the rollup has folded it.
    rollup.fold_touched(store, time.time() - 120)
    summary = server.http.get("/v1/analytics/summary", headers={"authorization": f"Bearer {key}"}).json()
    assert summary["views"] == 1 and summary["unique_viewers"] == 1
    assert summary["startup_time_ms_p50"] == view.startup_ms
    assert abs(summary["watch_time_s"] - t) < 1.5
    assert not errors, errors


def test_decline_sends_nothing_and_stores_nothing(server, video, store):
    tenant, video_id, _ = video
    requests: list[str] = []

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
            await page.goto(f"{server.base_url}/embed/{video_id}")
            await page.click('[data-consent="decline"]')
            await page.click(".wave-play")
            await played(page, 3.0)
            storage = await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
            cookies = await context.cookies()
            await page.goto("about:blank")
            await asyncio.sleep(1.0)
            return storage, cookies, errors

    storage, cookies, errors = asyncio.run(scenario())
    assert storage == [0, 0, ""] and cookies == []
    assert not _requests_to(requests, "/v1/consent") and not _requests_to(requests, "/v1/collect")
    time.sleep(0.3)  # the edge flushes every 50 ms in tests: anything sent would be stored now
    assert count_events(store, tenant.tenant_id) == 0
    assert not errors, errors


def test_withdraw_stops_beacons_and_forgets_the_viewer(server, video, store):
    tenant, video_id, _ = video
    requests: list[tuple[float, str]] = []

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: requests.append((time.monotonic(), f"{r.method} {r.url}")))
            await page.goto(f"{server.base_url}/embed/{video_id}")
            await page.click('[data-consent="accept"]')
            await page.click(".wave-play")
            await played(page, 2.0)
            await page.click('[data-consent="settings"]')
            await page.click('[data-consent="withdraw"]')
            for _ in range(50):
                if await page.evaluate("localStorage.length") == 0:
                    break
                await asyncio.sleep(0.1)
            storage = await page.evaluate("localStorage.length")
            await asyncio.sleep(0.3)  # anything sent before the withdrawal is stored by now
            stored_at_withdrawal = count_events(store, tenant.tenant_id)
            await played(page, 5.0)
            await page.goto("about:blank")
            await asyncio.sleep(1.0)
            return storage, stored_at_withdrawal, errors

    storage, stored_at_withdrawal, errors = asyncio.run(scenario())
    assert storage == 0
    withdraws = [t for t, r in requests if r.endswith("/v1/consent/withdraw")]
    assert len(withdraws) == 1
    assert not [r for t, r in requests if "/v1/collect" in r and t > withdraws[0]], "beacons after withdrawal"
    time.sleep(0.3)
    # Nothing after the withdrawal reached the edge (what waited in the page was dropped;
    # a batch sent earlier, if the 10 s timer fired first, was sent under consent).
    assert count_events(store, tenant.tenant_id) == stored_at_withdrawal
    assert not errors, errors


def test_script_embed_on_another_site_with_the_hosts_consent(server, video, store, tmp_path):
    """`<script src=.../player/wave-player.js>` + `<wave-player>` on a page of another origin,
    whose own consent manager already asked: CORS, consent from the host, beacons."""
    tenant, video_id, _ = video
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text(f"""<!doctype html><html><head><meta charset="utf-8">
<link rel="icon" href="data:,"><script src="{server.base_url}/player/wave-player.js"></script></head><body>
<h1>A tenant's own site</h1>
<wave-player video-id="{video_id}" consent="granted" viewer-id="host-viewer-7"></wave-player>
</body></html>""")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "site"), **kw)  # noqa: E731
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{site.server_address[1]}/index.html")
            assert await page.locator('[data-consent="accept"]').count() == 0, "the host already asked"
            await page.click(".wave-play")
            await played(page, 3.0)
            storage = await page.evaluate("localStorage.length")
            await page.goto("about:blank")
            await asyncio.sleep(0.5)
            return storage, errors

    try:
        storage, errors = asyncio.run(scenario())
    finally:
        site.shutdown()
    assert storage == 0, "the host manages the viewer id: the player stores nothing"
    wait_for(lambda: any(r[0] == "viewend" for r in _rows(store, tenant.tenant_id)), what="the viewend beacon")
    assert {r[1] for r in _rows(store, tenant.tenant_id)} == {"host-viewer-7"}
    assert not errors, errors


class _Site:
    """Another web site on its own loopback port (another origin than the edge)."""

    def __init__(self, root):
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, name, html):
        (self.root / name).write_text(html)
        return f"{self.origin}/{name}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _framing_page(edge, video_id, query="", message=None):
    """A page that frames the embed and, if `message`, posts it to the player as soon as the
    player says it is ready (and once on load, early, for good measure)."""
    script = ""
    if message is not None:
        script = f"""<script>
window.recorded = [];
const f = document.getElementById("f");
const send = () => f.contentWindow.postMessage({json.dumps(message)}, "*");
f.addEventListener("load", send);
window.addEventListener("message", (e) => {{
  if (e.source !== f.contentWindow || !e.data) return;
  if (e.data.type === "wave:ready") send();
  if (e.data.type === "wave:consent-recorded") window.recorded.push(e.data.granted);
}});
</script>"""
    return f"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>
<iframe id="f" src="{edge}/embed/{video_id}{query}" allow="autoplay; fullscreen" width="640" height="360"></iframe>
{script}</body></html>"""


def _consents(store, tenant_id):
    return store.rows("SELECT viewer_id, toString(action) FROM consents WHERE tenant_id = {t:String} ORDER BY ts",
                      {"t": tenant_id})


async def _embed_frame(page):
    handle = await page.wait_for_selector("#f")
    frame = await handle.content_frame()
    await frame.wait_for_selector(".wave-play")
    return frame


def test_a_hostile_page_framing_the_embed_with_consent_granted_gets_no_consent_and_no_beacon(server, video, store,
                                                                                              tmp_path):
    """Issue #14: `/embed/{id}?consent=granted` on a page any site may frame recorded a grant
    and sent beacons with no click. Now the URL answers nothing for the viewer, and the
    framing page's postMessage is refused (the tenant lists no origin that may answer)."""
    tenant, video_id, _ = video
    hostile = _Site(tmp_path / "hostile")
    url = hostile.page("index.html", _framing_page(
        server.base_url, video_id, "?consent=granted&viewer_id=victim-v&muted=",
        message={"type": "wave:consent", "consent": "granted", "viewer_id": "victim-v"}))
    requests: list[str] = []
    warnings: list[str] = []

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
            page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
            await page.goto(url)
            frame = await _embed_frame(page)
            await frame.wait_for_selector('[data-consent="accept"]')  # the viewer is still asked
            await frame.click(".wave-play")
            await played(frame, 3.0)
            for _ in range(50):
                if any("ignored" in w for w in warnings):
                    break
                await asyncio.sleep(0.1)
            prompt_visible = await frame.is_visible('[data-consent="accept"]')
            await page.goto("about:blank")  # pagehide: anything queued would go now
            await asyncio.sleep(1.0)
            return prompt_visible, errors

    try:
        prompt_visible, errors = asyncio.run(scenario())
    finally:
        hostile.close()
    assert prompt_visible
    assert any(hostile.origin in w and "ignored" in w for w in warnings), warnings
    assert not _requests_to(requests, "/v1/consent") and not _requests_to(requests, "/v1/collect")
    time.sleep(0.3)  # the edge flushes every 50 ms in tests: anything sent would be stored now
    assert _consents(store, tenant.tenant_id) == []
    assert count_events(store, tenant.tenant_id) == 0
    assert not errors, errors


async def _frame_holds_a_player(page) -> bool:
    """After time for a player to load, if the frame may hold one: does it?"""
    await asyncio.sleep(2.0)
    frame = await (await page.wait_for_selector("#f")).content_frame()
    return frame is not None and await frame.query_selector(".wave-play") is not None


def _clickjacking_page(edge, video_id, opacity):
    """A site's page with a big button of its own under the embed, framed at `opacity`: a
    viewer clicking "Claim your prize" clicks whatever of the player lies over it."""
    return f"""<!doctype html><html><head><link rel="icon" href="data:,"></head><body style="margin:0">
<button style="position:absolute;left:0;top:0;width:900px;height:600px">Claim your prize</button>
<iframe id="f" src="{edge}/embed/{video_id}?muted=1" allow="autoplay"
  style="position:absolute;left:0;top:0;width:640px;height:360px;border:0;opacity:{opacity}"></iframe>
</body></html>"""


def test_a_site_the_tenant_does_not_list_cannot_frame_its_player_to_collect_a_click(server, tenant_factory, store,
                                                                                    tmp_path):
    """Clickjacking: a site frames the embed transparent over a button of its own, so that
    the viewer's click lands on "Accept". A tenant that lists its origins is framed by those
    only (frame-ancestors): the site's frame stays empty, and the click grants nothing."""
    site = _Site(tmp_path / "jack")
    tenant, video_id, _ = _ready_video(server, tenant_factory, tmp_path, allowed_origins=("https://shop.example",))
    hidden = site.page("hidden.html", _clickjacking_page(server.base_url, video_id, 0))
    requests: list[str] = []

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
            await page.goto(hidden)
            framed = await _frame_holds_a_player(page)
            await page.mouse.click(320, 300)  # where the prompt's buttons would be
            await asyncio.sleep(1.0)
            return framed, errors

    try:
        framed, errors = asyncio.run(scenario())
    finally:
        site.close()
    assert not framed
    assert not _requests_to(requests, "/v1/consent") and not _requests_to(requests, "/v1/collect")
    assert _consents(store, tenant.tenant_id) == []
    assert all("frame-ancestors" in e for e in errors), errors  # only Chromium's note of the refused frame


def test_an_allowed_host_grants_by_postmessage_and_another_origin_cannot(server, tenant_factory, store, tmp_path):
    """The tenant's own page (an allowed origin) passes its consent manager's answer and its
    viewer id to the iframe by postMessage; another origin cannot even frame the player
    (frame-ancestors), so its message reaches none (the player ignores it too).
    The grant and beacons come from the iframe (the edge's own origin), which the tenant's
    allowed origins do not name: they are accepted."""
    allowed, other = _Site(tmp_path / "allowed"), _Site(tmp_path / "other")
    tenant, video_id, _ = _ready_video(server, tenant_factory, tmp_path, allowed_origins=(allowed.origin,))
    grant = {"type": "wave:consent", "consent": "granted"}
    evil_url = other.page("index.html", _framing_page(server.base_url, video_id,
                                                      message={**grant, "viewer_id": "host-other"}))
    good_url = allowed.page("index.html", _framing_page(server.base_url, video_id,
                                                        message={**grant, "viewer_id": "host-allowed"}))
    requests: list[str] = []

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: requests.append(f"{r.method} {r.url}"))
            await page.goto(evil_url)
            framed = await _frame_holds_a_player(page)  # the wait leaves time for a grant to be (wrongly) made
            refused_requests = list(requests)
            await page.goto(good_url)
            frame = await _embed_frame(page)
            for _ in range(100):
                if await page.evaluate("window.recorded.length"):
                    break
                await asyncio.sleep(0.1)
            recorded = await page.evaluate("window.recorded")
            prompt_visible = await frame.is_visible('[data-consent="accept"]')
            await frame.click(".wave-play")
            await played(frame, 3.0)
            await page.goto("about:blank")
            await asyncio.sleep(0.5)
            return framed, refused_requests, recorded, prompt_visible, errors

    try:
        framed, refused_requests, recorded, prompt_visible, errors = asyncio.run(scenario())
    finally:
        allowed.close()
        other.close()
    assert not framed, "another origin cannot frame the player of a tenant that lists its origins"
    errors = [e for e in errors if "frame-ancestors" not in e]  # Chromium reports the refused frame
    assert not _requests_to(refused_requests, "/v1/consent") and not _requests_to(refused_requests, "/v1/collect")
    assert recorded and all(recorded) and not prompt_visible, "the allowed host answered for the viewer"
    assert _consents(store, tenant.tenant_id) == [("host-allowed", "grant")]
    wait_for(lambda: any(r[0] == "viewend" for r in _rows(store, tenant.tenant_id)), what="the viewend beacon")
    assert {r[1] for r in _rows(store, tenant.tenant_id)} == {"host-allowed"}
    assert not errors, errors


def test_the_tenants_own_iframe_embed_records_consent_with_allowed_origins_set(server, tenant_factory, store,
                                                                               tmp_path):
    """The viewer accepts in the iframe on the tenant's site: the grant and the beacons carry
    the edge's own Origin (the embed page's), not the site's, and must not get 403."""
    site = _Site(tmp_path / "tenant-site")
    tenant, video_id, _ = _ready_video(server, tenant_factory, tmp_path, allowed_origins=(site.origin,))
    url = site.page("index.html", _framing_page(server.base_url, video_id))
    statuses: dict[str, list[int]] = {"/v1/consent": [], "/v1/collect": []}
    warnings: list[str] = []

    def note(response):
        for path, seen in statuses.items():
            if response.url.endswith(path):
                seen.append(response.status)

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("response", note)
            page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
            await page.goto(url)
            frame = await _embed_frame(page)
            await frame.click('[data-consent="accept"]')
            await frame.click(".wave-play")
            await played(frame, 3.0)
            await page.goto("about:blank")
            await asyncio.sleep(0.5)
            return errors

    try:
        errors = asyncio.run(scenario())
    finally:
        site.close()
    assert statuses["/v1/consent"] == [201], (statuses, warnings)
    assert [v for v, _ in _consents(store, tenant.tenant_id)] != []
    wait_for(lambda: any(r[0] == "viewend" for r in _rows(store, tenant.tenant_id)), what="the viewend beacon")
    assert not errors, errors


def test_an_identified_viewer_is_linked_only_with_the_sites_identity_token(server, tenant_factory, store, tmp_path):
    """Script embed on the tenant's site, which signed the viewer in: viewer-id, viewer-email
    and the identity token its server signed. The grant carries the proven e-mail; the
    beacons carry none; an export by that e-mail reaches the viewer's beacons."""
    site = _Site(tmp_path / "identified-site")
    tenant, video_id, key = _ready_video(server, tenant_factory, tmp_path, allowed_origins=(site.origin,),
                                         identified_viewers=True)
    token = identity_token(server.http, key, tenant.tenant_id, "member-42", "ann@example.org")
    url = site.page("index.html", f"""<!doctype html><html><head><meta charset="utf-8">
<link rel="icon" href="data:,"><script src="{server.base_url}/player/wave-player.js"></script></head><body>
<wave-player video-id="{video_id}" consent="granted" viewer-id="member-42" viewer-email="ann@example.org"
 identity-token="{token}"></wave-player></body></html>""")
    bodies: list[str] = []

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            page.on("request", lambda r: bodies.append(r.post_data or "") if "/v1/c" in r.url else None)
            await page.goto(url)
            await page.click(".wave-play")
            await played(page, 3.0)
            await page.goto("about:blank")
            await asyncio.sleep(0.5)
            return errors

    try:
        errors = asyncio.run(scenario())
    finally:
        site.close()
    wait_for(lambda: any(r[0] == "viewend" for r in _rows(store, tenant.tenant_id)), what="the viewend beacon")
    assert store.rows("SELECT viewer_id, email, email_proof FROM consents WHERE tenant_id = {t:String}",
                      {"t": tenant.tenant_id}) == [("member-42", "ann@example.org", "token")]
    assert [b for b in bodies if "ann@example.org" in b] == [bodies[0]], "the e-mail goes with the grant only"
    assert _rows(store, tenant.tenant_id, "DISTINCT email") == [("",)]
    export = server.http.get("/v1/privacy/export", params={"email": "ann@example.org"},
                             headers={"authorization": f"Bearer {key}"}).json()
    assert export["subject"]["linked_viewer_ids"] == ["member-42"]
    assert len(export["tables"]["viewer_events"]) == len(_rows(store, tenant.tenant_id)) > 0
    assert not errors, errors

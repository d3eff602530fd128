"""The dashboard: its session cookie, and the page in headless Chromium showing the API's figures."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from analytics import rollup
from tests.analytics.test_analytics_api import VIEWS
from tests.browser import ARTIFACTS, chromium
from tests.conftest import free_port, store_view

CSRF = {"x-wave-csrf": "1"}


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
    assert server.http.delete("/admin/session", headers=CSRF).status_code == 200
    assert server.http.get("/v1/analytics/summary").status_code == 401
    page = server.http.get("/admin")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_dashboard_signs_in_and_shows_the_apis_figures(server, tenant_factory, store):
    tenant, key = tenant_factory(name="Acme", k_anonymity=1)  # every row shown (test_small_groups.py folds)
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


def _signed_in(server, key) -> httpx.Client:
    """A client holding a fresh dashboard session (use it in a `with`)."""
    http = httpx.Client(base_url=server.base_url, timeout=30)
    with http:
        assert http.post("/admin/session", json={"admin_key": key}).status_code == 201
    fresh = httpx.Client(base_url=server.base_url, timeout=30, cookies=http.cookies)
    return fresh


def test_sign_out_ends_the_session_on_the_server(server, tenant_factory):
    """A copy of the cookie (another tab, a stolen one) dies with the sign-out."""
    _, key = tenant_factory()
    with _signed_in(server, key) as http:
        copy = http.cookies["wave_admin"]
        assert http.delete("/admin/session", headers=CSRF).status_code == 200
    with httpx.Client(base_url=server.base_url, timeout=30, cookies={"wave_admin": copy}) as thief:
        r = thief.get("/v1/analytics/summary")
        assert r.status_code == 401 and r.json()["detail"]["path"] == "$.cookies.wave_admin"
        assert thief.get("/admin/session").status_code == 401


def test_cookie_calls_that_change_state_need_the_csrf_header_and_this_origin(server, tenant_factory):
    tenant, key = tenant_factory()
    bearer = {"authorization": f"Bearer {key}"}
    me = server.base_url
    with _signed_in(server, key) as http:
        # What a same-site page on another port sent: a "simple" text/plain POST with the cookie.
        simple = {"content-type": "text/plain"}
        for path, body in (("/v1/support-grants", {"duration_s": 2592000}), ("/v1/streams", {"name": "evil"}),
                           ("/v1/privacy/purge", {"viewer_id": "victim"})):
            r = http.post(path, content=json.dumps(body), headers=simple)
            assert r.status_code in (403, 415), (path, r.status_code, r.text)
            r = http.post(path, json=body)  # JSON, but without the dashboard's header
            assert r.status_code == 403 and r.json()["detail"]["path"] == "$.headers.x-wave-csrf", r.text
        for hostile in ({"origin": "http://127.0.0.1:1"}, {"origin": "null"}, {"sec-fetch-site": "same-site"}):
            r = http.post("/v1/streams", json={"name": "evil"}, headers={**CSRF, **hostile})
            assert r.status_code == 403, (hostile, r.text)
        assert http.get("/v1/support-grants", headers=bearer).json()["grants"] == []
        assert [s for s in http.get("/v1/streams", headers=bearer).json()["streams"] if s["name"] == "evil"] == []
        # The dashboard's own calls pass; reads need nothing.
        assert http.get("/v1/streams").status_code == 200
        r = http.post("/v1/streams", json={"name": "mine"}, headers={**CSRF, "origin": me, "sec-fetch-site": "same-origin"})
        assert r.status_code == 201, r.text
    # Bearer clients (curl) are not asked for the header, but send JSON as application/json.
    assert server.http.post("/v1/streams", json={"name": "api"}, headers=bearer).status_code == 201
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        r = server.http.post("/v1/streams", content=b'{"name": "form"}', headers={**bearer, "content-type": content_type})
        assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type", r.text
    # Signing in from another origin (logging the victim into the attacker's tenant) is refused.
    r = server.http.post("/admin/session", json={"admin_key": key}, headers={"origin": "http://127.0.0.1:1"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = server.http.post("/admin/session", content=json.dumps({"admin_key": key}), headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "set-cookie" not in r.headers


def test_a_same_site_page_cannot_act_with_the_admins_session(server, tenant_factory):
    """The attack of issue #14 in a real browser: the admin signed in to the dashboard; a
    page on another port of the same host (same site: SameSite=Strict lets the cookie go)
    posts text/plain with `mode: "no-cors", credentials: "include"`. Nothing happens."""
    tenant, key = tenant_factory()
    bearer = {"authorization": f"Bearer {key}"}
    other_port = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the browser gets the page from the test

    async def scenario():
        async with chromium() as (context, errors):
            page = await context.new_page()
            await page.goto(f"{server.base_url}/admin")
            await page.fill("#key", key)
            await page.click("#signin button[type=submit]")
            await page.locator("body[data-loaded=true]").wait_for(timeout=20_000)
            evil = await context.new_page()
            await evil.route(f"{other_port}/**", lambda route: route.fulfill(
                status=200, content_type="text/html", body="<!doctype html><title>cat pictures</title>"))
            await evil.goto(f"{other_port}/cats.html")
            await evil.evaluate("""async (base) => {
                const send = (path, body) => fetch(base + path, {method: "POST", mode: "no-cors",
                    credentials: "include", headers: {"content-type": "text/plain"}, body: JSON.stringify(body)})
                    .catch(() => null);  // the opaque answer may be blocked (ORB): the request went anyway
                await send("/v1/support-grants", {duration_s: 2592000});
                await send("/v1/streams", {name: "evil"});
                await send("/v1/privacy/purge", {viewer_id: "victim"});
            }""", server.base_url)
            cookie = next(c["value"] for c in await context.cookies() if c["name"] == "wave_admin")
            await page.click("#signout")
            await page.locator('body[data-view="signin"]').wait_for(timeout=10_000)
            return cookie

    cookie = asyncio.run(scenario())
    assert server.http.get("/v1/support-grants", headers=bearer).json()["grants"] == []
    assert [s for s in server.http.get("/v1/streams", headers=bearer).json()["streams"] if s["name"] == "evil"] == []
    records = server.http.get("/v1/audit", headers=bearer).json()["records"]
    assert not [r for r in records if r["action"] == "POST /v1/privacy/purge" and r["status"] < 400]
    # The dashboard's sign-out button ended the session on the server too.
    with httpx.Client(base_url=server.base_url, cookies={"wave_admin": cookie}) as copy:
        assert copy.get("/v1/analytics/summary").status_code == 401


def test_session_cookie_is_secure_only_behind_a_trusted_tls_front(server_factory, tenant_factory):
    _, key = tenant_factory()
    https = {"x-forwarded-proto": "https"}
    trusted = server_factory()  # trusts 127.0.0.1, the test client's address
    r = trusted.http.post("/admin/session", json={"admin_key": key}, headers=https)
    assert "secure" in r.headers["set-cookie"].lower()
    r = trusted.http.post("/admin/session", json={"admin_key": key})
    assert "secure" not in r.headers["set-cookie"].lower()
    untrusted = server_factory(trusted_proxies=())
    r = untrusted.http.post("/admin/session", json={"admin_key": key}, headers=https)
    assert r.status_code == 201 and "secure" not in r.headers["set-cookie"].lower()


def test_non_ascii_digits_in_tokens_cookies_and_limits_are_refused_not_500(server, tenant_factory):
    """`"²".isdigit()` is true and `hmac.compare_digest` raises on non-ASCII text: both
    used to turn hostile input into 500s."""
    tenant, key = tenant_factory()
    bearer = {"authorization": f"Bearer {key}"}
    stream = server.http.post("/v1/streams", json={"name": "p", "playback": "private"}, headers=bearer).json()
    sid = stream["stream_id"]
    with _signed_in(server, key) as http:
        good_cookie = http.cookies["wave_admin"]
    hash_, expires, session_id, mac = good_cookie.split(".")
    cookies = [f"{hash_}.{'²' * len(expires)}.{session_id}.{mac}", f"{hash_}.{expires}.{session_id}.{'é' * len(mac)}",
               "²." * 3 + "²"]
    for value in cookies:
        r = server.http.get("/v1/analytics/summary", headers={"cookie": f"wave_admin={value}".encode()})
        assert r.status_code == 401, (value, r.status_code, r.text)
    for token in ("²²²².abc", "1700000000.é", "٣٣٣٣٣٣٣٣٣٣.x"):
        r = server.http.get(f"/v1/playback/{sid}", params={"token": token})
        assert r.status_code in (401, 403), (token, r.status_code, r.text)
        r = server.http.get(f"/live/{sid}/index.m3u8", params={"token": token})
        assert 400 <= r.status_code < 500, (token, r.status_code, r.text)
    for limit in ("²", "٣", "1²"):
        r = server.http.get("/v1/analytics/breakdown", params={"dimension": "country", "limit": limit}, headers=bearer)
        assert r.status_code == 400 and r.json()["detail"]["path"] == "$.query.limit", r.text
    r = server.http.get("/v1/streams", headers={"authorization": "Bearer wk_²²²".encode()})
    assert r.status_code == 401
    r = server.http.post(f"/whip/{sid}", content=b"v=0", headers={"authorization": "Bearer pt_é".encode(),
                                                                   "content-type": "application/sdp"})
    assert 400 <= r.status_code < 500

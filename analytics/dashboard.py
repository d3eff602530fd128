"""The admin dashboard: its page (`/admin`) and its session (`/admin/session`).

The page is a static shell; `/player/dashboard.js` (built with the player) fills it from
the analytics API. Signing in exchanges the admin key for the session cookie
(`core.auth`): HttpOnly (no script reads it), SameSite=Strict (no other site's page
makes the browser send it), Secure when the request came over HTTPS (directly, or through
the TLS front: `X-Forwarded-Proto: https` from a peer in `WAVE_TRUSTED_PROXIES`, and only
from one: anyone else could claim it), Path=/. Signing in is refused from other origins
(core/csrf.py); signing out ends the session on the server, not just in the browser.
The page may not be framed (clickjacking), unlike the player's embed page.
"""

from __future__ import annotations

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.datastructures import Cookie
from litestar.openapi import ResponseSpec

from analytics.wire import SignedIn, SignIn
from core import csrf, validation
from core.auth import AdminAuth, COOKIE, SESSION_S
from core.openapi import body, errors

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wave-edge · analytics</title>
<style>
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: #1c1f24; background: #f4f6f9; }
header { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; padding: 10px 16px;
  background: #14213d; color: #fff; }
header h1 { font-size: 17px; margin: 0; flex: 1; }
header button, form button { font: inherit; padding: 5px 12px; border-radius: 5px; border: 1px solid #b8c2d3;
  background: #fff; color: #14213d; cursor: pointer; }
main { padding: 16px; max-width: 1400px; margin: 0 auto; }
.controls { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 14px; }
.controls input, .controls select { font: inherit; padding: 4px 6px; }
#tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.tile { background: #fff; border-radius: 8px; padding: 10px 12px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.tile .label { display: block; color: #5b6472; font-size: 12px; }
.tile .value { font-size: 20px; }
.tile .badge { display: block; margin-top: 4px; font-size: 11px; color: #14213d; background: #e3ebf8;
  border-radius: 4px; padding: 1px 5px; }
.panel { background: #fff; border-radius: 8px; padding: 12px; box-shadow: 0 1px 2px rgba(0,0,0,.08); overflow-x: auto; }
.panel h2 { font-size: 15px; margin: 0 0 8px; }
.panel h2 .csv { font-size: 12px; font-weight: normal; margin-left: 6px; }
.panel h3 { font-size: 13px; margin: 12px 0 6px; }
.note { color: #5b6472; font-size: 12px; margin: 0 0 8px; }
#webrtc { margin-top: 12px; }
.chart-box { position: relative; height: 280px; }
#breakdowns { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; margin-top: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: right; padding: 4px 6px; border-bottom: 1px solid #eef0f3; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
.row { display: grid; grid-template-columns: 3fr 1fr; gap: 12px; margin-top: 12px; }
#realtime-now { font-size: 34px; display: block; }
#signin-view { max-width: 420px; margin: 10vh auto; background: #fff; padding: 20px; border-radius: 8px; }
#signin-view input { width: 100%; font: inherit; padding: 8px; margin: 8px 0; }
body[data-view="signin"] #dashboard-view, body[data-view="signin"] #signout,
body:not([data-view="signin"]) #signin-view { display: none; }
body:not([data-view]) main { visibility: hidden; }
.error { color: #b00020; }
footer { color: #5b6472; font-size: 12px; padding: 16px; text-align: center; }
@media (max-width: 700px) {
  .row { grid-template-columns: 1fr; }
  #breakdowns { grid-template-columns: 1fr; }
  #tiles { grid-template-columns: repeat(2, 1fr); }
}
</style>
<script src="/player/dashboard.js" defer></script>
</head>
<body>
<header><h1>wave-edge analytics <span id="tenant"></span></h1><button id="signout" type="button">Sign out</button></header>
<main>
<section id="signin-view">
  <h2>Sign in</h2>
  <form id="signin">
    <label for="key">Admin key (from <code>wave-edge tenant create</code>)</label>
    <input id="key" name="key" type="password" autocomplete="off" required>
    <button type="submit">Sign in</button>
    <p id="signin-error" class="error" hidden></p>
  </form>
  <p>The key is exchanged for a session cookie; it is not stored in this browser.</p>
</section>
<section id="dashboard-view">
  <div class="controls">
    <button type="button" data-preset="24">24 h</button>
    <button type="button" data-preset="168">7 days</button>
    <button type="button" data-preset="720">30 days</button>
    <form id="range"><label>From <input id="from" type="datetime-local"></label>
      <label>to <input id="to" type="datetime-local"></label> (UTC) <button type="submit">Apply</button></form>
    <label>Media <select id="video"><option value="">All videos and streams</option></select></label>
  </div>
  <p id="error" class="error" hidden></p>
  <div id="tiles"></div>
  <div class="row">
    <section class="panel"><h2>Over time <select id="metric"></select></h2><div class="chart-box"><canvas id="chart"></canvas></div></section>
    <section class="panel"><h2>Watching now</h2><strong id="realtime-now">–</strong>
      <span>viewers in the current minute; last 5 minutes: <span id="realtime-minutes"></span></span></section>
  </div>
  <section class="panel" id="webrtc"><h2>Live streams over WebRTC <a class="csv" id="webrtc-csv" href="/v1/analytics/webrtc?format=csv">CSV</a></h2>
    <p class="note">Measured by the edge from each viewer's RTCP receiver reports (no client script involved).</p>
    <table data-panel="webrtc-streams"><thead><tr><th>Stream</th><th>Sessions</th><th>Avg RTT</th><th>Avg jitter</th>
      <th>Packet loss</th><th>Packets sent</th></tr></thead><tbody></tbody></table>
    <h3>Viewer sessions</h3>
    <table data-panel="webrtc-sessions"><thead><tr><th>Session</th><th>Stream</th><th>Media</th><th>Started</th>
      <th>RTT</th><th>Jitter</th><th>Loss</th><th>Sent</th></tr></thead><tbody></tbody></table>
  </section>
  <div id="breakdowns"></div>
</section>
</main>
<footer>IP geolocation by <a href="https://db-ip.com">DB-IP</a> (City Lite,
<a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>).
Metrics as defined by Mux Data, Conviva and CTA-2066: a view runs from play intent to its end.</footer>
</body>
</html>
"""


@get("/admin", media_type="text/html", include_in_schema=False)
async def admin_page() -> Response[str]:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)


@post("/admin/session", status_code=201, request_max_body_size=4096,
      responses=errors(400, 401, 403, 413, 415, 429, 503),
      opt=body(SignIn))
async def sign_in(request: Request, auth: NamedDependency[AdminAuth], over_tls: NamedDependency[bool]) -> Response[SignedIn]:
    """Exchange an admin key for the dashboard's session cookie."""
    csrf.same_origin(request)
    body = validation.decode(await request.body(), SignIn)
    tenant, value = await auth.sign_in(request, body.admin_key)
    cookie = Cookie(key=COOKIE, value=value, max_age=SESSION_S, path="/", httponly=True, samesite="strict",
                    secure=over_tls)
    return Response(SignedIn(tenant.tenant_id, tenant.name), status_code=201, cookies=[cookie],
                    headers={"Cache-Control": "no-store"})


@get("/admin/session", responses={204: ResponseSpec(None, description="not signed in"), **errors(401, 429, 503)})
async def who_am_i(request: Request, auth: NamedDependency[AdminAuth]) -> Response[SignedIn | None]:
    """The tenant the session acts for; 204 when signed out (the page's first question,
    which is not an error), 401 only for a cookie that is no longer valid."""
    if not request.cookies.get(COOKIE) and not request.headers.get("authorization"):
        return Response(None, status_code=204)
    tenant = await auth.tenant(request)
    return Response(SignedIn(tenant.tenant_id, tenant.name))


@delete("/admin/session", status_code=200, responses=errors(403, 429, 503))
async def sign_out(request: Request, auth: NamedDependency[AdminAuth], over_tls: NamedDependency[bool]) -> Response[None]:
    """End the session: its id is recorded as ended, so a copy of the cookie is dead too."""
    value = request.cookies.get(COOKIE)
    if value:
        csrf.cookie_call(request)
        await auth.sign_out(value)
    cookie = Cookie(key=COOKIE, value="", max_age=0, path="/", httponly=True, samesite="strict",
                    secure=over_tls)
    return Response(None, cookies=[cookie])


ROUTES = [admin_page, sign_in, who_am_i, sign_out]

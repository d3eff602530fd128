"""HTTP plumbing shared by every route: the error shape, CORS for the public API, metrics.

Errors are always `{"error": "...", "detail": ...}` with a 4xx (or a logged 500 that never
echoes internals), whatever raised them: our own `BadInput`, Litestar's routing and size
limits, or an unexpected bug.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core import client_address
from core.limits import RateLimited
from core.metrics import Registry
from core.regions import region_of
from core.paths import is_admin_path
from core.store import StoreUnavailable
from core.validation import BadInput
from edge import media_layout
from retention import audit

log = logging.getLogger("edge.http")

# Paths the player calls from other origins (script embeds on clients' sites).
PUBLIC_PREFIXES = ("/v1/collect", "/v1/consent", "/v1/playback/", "/healthz", "/whep/", "/whip/", "/vod/", "/live/",
                   "/player/")
# What WHIP and WHEP clients in a browser need (RFC 9725 §4.8): trickle and restart by
# PATCH with If-Match, and the session's Location, ETag and Link headers readable.
_CORS_METHODS = b"GET, POST, PATCH, DELETE, OPTIONS"
# `etag`: @eyevinn/whip-web-client sends the session's ETag back under that name.
_CORS_HEADERS = b"content-type, authorization, if-match, etag, x-wave-viewer"
_CORS_EXPOSE = b"location, etag, link, retry-after, accept-post, accept-patch, allow, access-control-allow-methods"
_WEBRTC_PREFIXES = ("/whip/", "/whep/")


def _cors_headers(origin: bytes, preflight: bool) -> list[tuple[bytes, bytes]]:
    out = [(b"access-control-allow-origin", origin), (b"access-control-expose-headers", _CORS_EXPOSE)]
    if preflight:
        out += [(b"access-control-allow-methods", _CORS_METHODS), (b"access-control-allow-headers", _CORS_HEADERS),
                (b"access-control-max-age", b"600")]
    return [*out, (b"vary", b"Origin")]


def _webrtc_options(path: str) -> list[tuple[bytes, bytes]]:
    """What an OPTIONS on a WHIP/WHEP URL answers (RFC 9725 §4.2, the WHEP draft): the
    methods, and the body types POST (the endpoint) or PATCH (a session) takes. Browser
    clients read them from a plain OPTIONS, not a preflight (@eyevinn/whip-web-client
    decides whether to trickle from its Access-Control-Allow-Methods)."""
    if path.rstrip("/").count("/") >= 3:  # /whip/{stream}/{session}
        return [(b"allow", b"PATCH, DELETE, OPTIONS"), (b"accept-patch", b"application/trickle-ice-sdpfrag")]
    return [(b"allow", b"POST, OPTIONS"), (b"accept-post", b"application/sdp")]


async def _send_empty(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def error_response(status: int, error: str, detail: object = None, headers: dict[str, str] | None = None) -> Response:
    """The one error shape. It carries the baseline security headers itself: the router's
    own 404/405 answers never pass through the middlewares that add them elsewhere."""
    return Response(
        content={"error": error, "detail": detail},
        status_code=status,
        media_type="application/json",
        headers={**BASELINE_HEADERS, **(headers or {})},
    )


def on_bad_input(_: Request, exc: BadInput) -> Response:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if exc.status == 401:  # RFC 9110 §15.5.2: a 401 names the scheme that would be accepted
        headers["WWW-Authenticate"] = 'Bearer realm="wave-edge"'
    return error_response(exc.status, exc.error, exc.detail(), headers or None)


_FAILED = {"path": "$", "message": "the server failed; the event was logged"}
_HTTP_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


_DISCONNECTED = "client disconnected prematurely"  # Litestar's words when a body stops halfway
CLIENT_CLOSED = 499  # nginx's status for a request its client gave up on: no one reads it


def on_http_exception(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500 and exc.detail == _DISCONNECTED:
        # Not the server's failure: counted apart, never logged as an error, so a client
        # that hangs up mid-body cannot drive the 5xx rate (and its alert) up.
        return error_response(CLIENT_CLOSED, "client_closed_request",
                              {"path": "$", "message": "the client closed the connection before its body ended"})
    if status >= 500:
        log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
        return error_response(status, "internal_error", _FAILED)
    message = exc.detail or _HTTP_NAMES.get(status, "client error").replace("_", " ")
    if status == 413:
        message = "request body exceeds the limit for this endpoint"
    elif status == 405:
        message = f"{request.method} is not allowed here"
    return error_response(status, _HTTP_NAMES.get(status, "client_error"), {"path": "$", "message": message},
                          exc.headers)


def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", _FAILED)


def on_store_unavailable(request: Request, exc: StoreUnavailable) -> Response:
    """ClickHouse is away: a clear 503 to retry, not a 500 (beacons are spooled, not here)."""
    log.warning("store unavailable on %s %s", request.method, request.url.path)
    return error_response(503, "unavailable", {"path": "$", "message": "the database is unavailable; retry shortly"},
                          {"Retry-After": "5"})


EXCEPTION_HANDLERS = {BadInput: on_bad_input, HTTPException: on_http_exception, StoreUnavailable: on_store_unavailable,
                      Exception: on_unexpected}


def cors_middleware(edge):
    """CORS for the player's endpoints only, and only for origins the tenant allows.

    Media (`/v1/playback/ID`, `/vod/ID/...`, `/live/ID/...`, `/whep/ID`, `/whip/ID`) names its
    tenant in the path: an origin the tenant does not list gets no Allow-Origin, so a
    browser on another site cannot read its playlists, start WebRTC with it, or publish to
    it from a studio page (the publish token is still required). Beacons name the tenant
    in the body, unknown at preflight time, so their preflights are allowed for any origin
    and the tenant's origins are enforced on the request itself (403, nothing stored):
    stronger than CORS, which only stops a browser from reading. Responses refused for
    origin or consent (403) carry no Allow-Origin. An empty list allows every origin.
    """

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not scope["path"].startswith(PUBLIC_PREFIXES):
                await app(scope, receive, send)
                return
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            allowed = origin is not None and await _origin_allowed(edge, scope["path"], origin)
            preflight = scope["method"] == "OPTIONS" and b"access-control-request-method" in headers
            if allowed and preflight:
                await _send_empty(send, 204, _cors_headers(origin, preflight=True))
                return
            if scope["method"] == "OPTIONS" and scope["path"].startswith(_WEBRTC_PREFIXES):
                await _send_empty(send, 200, _webrtc_options(scope["path"])
                                  + (_cors_headers(origin, preflight=True) if allowed else []))
                return
            if not allowed:
                await app(scope, receive, send)
                return

            async def send_with_cors(message: Message) -> None:
                if message["type"] == "http.response.start" and message["status"] != 403:
                    message["headers"] = [*message.get("headers", []), *_cors_headers(origin, preflight=False)]
                await send(message)

            await app(scope, receive, send_with_cors)

        return middleware

    return factory


_MEDIA_PATH = re.compile(rf"^/(?:v1/playback|vod|live|whep|whip)/({media_layout.MEDIA_ID_PATTERN})(?:/|$)")


async def _origin_allowed(edge, path: str, origin: bytes) -> bool:
    """May a page from `origin` read this response? Media asks its tenant; the rest of the
    public surface (beacons, the player script, health) is open to any origin."""
    m = _MEDIA_PATH.match(path)
    if m is None or edge.tenants is None:
        return True
    media_id = m.group(1)
    if region_of(media_id) not in (None, edge.settings.region):
        return True  # another region's media: redirected (edge/regions.py), its edge decides
    if media_id.startswith("vd_"):
        media = await edge.video_cache.get(media_id)
    else:
        media = await edge.streams.get(media_id)
    tenant = await edge.tenants.get(media.tenant_id) if media is not None else None
    return tenant is None or tenant.origin_allowed(origin.decode("latin-1"))


# The player's endpoints that anyone may call, and what each costs its caller's address.
_LIMITED = (("/v1/collect", "per_ip"), ("/v1/consent", "per_ip"), ("/whep/", "whep_per_ip"))


def rate_limit_middleware(edge):
    """Per-address limits on the public POST endpoints and on every admin call (any
    method, with or without a key), checked before the body is read or a key looked up,
    so a flood costs the edge a dictionary lookup per request (core/limits.py)."""
    limited = edge.metrics.counter("wave_rate_limited_total", "Requests refused with 429, by limit")

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            name = _limit_for(scope)
            if name is not None:
                wait = getattr(edge.limits, name).take(_address(scope, edge.settings.trusted_proxies))
                if wait:
                    limited.inc(limit=name)
                    exc = RateLimited("requests from this address", wait)
                    await _send_json(send, 429, {"error": exc.error, "detail": exc.detail()},
                                     (b"retry-after", str(exc.retry_after).encode()))
                    return
            await app(scope, receive, send)

        return middleware

    return factory


def _limit_for(scope: Scope) -> str | None:
    if scope["type"] != "http":
        return None
    path = scope["path"]
    if is_admin_path(path):
        return "admin_per_ip" if scope["method"] != "OPTIONS" else None
    if scope["method"] == "PATCH" and path.startswith(_WEBRTC_PREFIXES):
        return "per_ip"  # trickle: anyone with a WHEP session may send them
    if scope["method"] != "POST":
        return None
    return next((name for prefix, name in _LIMITED if path.startswith(prefix)), None)


def _address(scope: Scope, trusted) -> str:
    """The client address as WAVE_TRUSTED_PROXIES vouches for it, as a bucket key: an IPv6
    address by its /64, the least an ISP hands one subscriber (RFC 6177), who can then
    pick a new address in it for every request."""
    ip = client_address.from_scope(scope, trusted)
    if ip is not None and ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


async def _send_json(send: Send, status: int, content: dict, *headers: tuple[bytes, bytes]) -> None:
    body = msgspec.json.encode(content)
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


_BASELINE = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
BASELINE_HEADERS = {name.decode(): value.decode() for name, value in _BASELINE}


def security_headers(app: ASGIApp) -> ASGIApp:
    """Headers every response carries unless its route set its own: no MIME sniffing (a
    segment or beacon answer is never run as script) and no referrer leaking media ids.
    Pages add their CSP and frame-ancestors themselves (embed: any site may frame it;
    dashboard: none)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in _BASELINE if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


class _Status:
    """Passes messages on and notes the response status (500 if none was sent)."""

    __slots__ = ("_send", "code")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code = 500

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)


def request_metrics(metrics: Registry):
    """Counts requests by route template and status, and times them."""
    requests = metrics.counter("wave_http_requests_total", "HTTP requests by route and status")
    seconds = metrics.histogram(
        "wave_http_request_seconds", "HTTP request latency", (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
    )

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = _Status(send)
            try:
                await app(scope, receive, status.send)
            finally:
                route = scope.get("path_template") or "unmatched"
                requests.inc(route=route, method=scope["method"], status=str(status.code))
                seconds.observe(time.perf_counter() - started)

        return middleware

    return factory


# Query parameters that name a privacy subject: hashed in audit records, never in clear.
SUBJECT_PARAMS = ("viewer_id", "email", "ip")


def audit_middleware(edge):
    """One audit record per admin request, after its response: who (set on the scope by
    the auth check), route, parameters (privacy subjects hashed), outcome. Records go
    through the edge's `AuditWriter` (its own thread, batched under load); a request
    refused before anyone was identified is only counted there, so a flood of them writes
    nothing per request."""
    from retention import subjects

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "")
            if scope["type"] != "http" or not is_admin_path(path):
                await app(scope, receive, send)
                return
            status = _Status(send)
            try:
                await app(scope, receive, status.send)
            finally:
                writer = edge.audit
                state = scope.get("state") or {}
                action = f"{scope['method']} {scope.get('path_template') or 'unmatched'}"
                actor_known = "wave_actor" in state
                if writer is None:
                    pass
                elif not actor_known:
                    writer.refused(action, status.code, _address(scope, edge.settings.trusted_proxies))
                else:
                    tenant_id, actor, kind = state["wave_actor"]
                    request = Request(scope)
                    params = dict(request.query_params)
                    for name in SUBJECT_PARAMS:
                        if name in params:
                            params[name] = "sha256:" + subjects.hash_value(edge.secret, name, params[name])
                    change = state.get("wave_audit", {})
                    tenant = await edge.tenants.get(tenant_id) if tenant_id and edge.tenants is not None else None
                    await writer.write(audit.row(
                        tenant_id, actor, kind, f"{scope['method']} {scope.get('path_template') or path}",
                        params={**params, **change.get("params", {})}, before=change.get("before"),
                        after=change.get("after"), ip=edge.client_ip(request), status=status.code,
                        retention_days=tenant.audit_days if tenant else audit.DEFAULT_RETENTION_DAYS))

        return middleware

    return factory

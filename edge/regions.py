"""Nothing crosses a border: a request for another region's tenant goes to that region.

An edge serves one region (`WAVE_REGION`) with its own store and media. Every id a
request can carry names its region (core/regions.py), so this one middleware, in front of
every handler, finds the region a request belongs to and, when it is not ours, answers
`307 Temporary Redirect` with `Location` on that region's edge (`WAVE_REGIONS`) before any
handler runs: nothing of it is stored, logged to the audit trail or processed here. 307
keeps the method and the body, so a beacon, a consent, an upload or a WHIP offer is sent
again, as is, to the right edge (RFC 9725 §4.5 allows WHIP/WHEP redirects). A region this
edge has no address for answers 421 (misdirected), again without storing anything (an
admin key's region counts only when the map names it: see `_key_region`).

Where the region is read, first match wins:
1. the path: any segment that is a tenant, stream or video id (`/embed/st_us_…`,
   `/v1/playback/vd_us_…`, `/live/…`, `/vod/…`, `/whep/…`, `/whip/…`, `/v1/videos/…`,
   `/v1/tenants/tn_us_…`);
2. the admin key (`Authorization: Bearer wk_us_…`), or the tenant a support key names
   (`X-Wave-Tenant: tn_us_…`);
3. the body of the calls that name their tenant only there: beacons and consents
   (`tenant_id`) and the dashboard's sign-in (`admin_key`). They are small (a few KB;
   the handlers cap them), so they are read here and handed on unchanged.
Ids and keys without a region (made before regions) belong to the edge that holds them.
"""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.regions import region_of

# Calls that name their tenant (or key) in the body only, and the field that does.
_BODY_FIELD = {"/v1/collect": "tenant_id", "/v1/consent": "tenant_id", "/v1/consent/withdraw": "tenant_id",
               "/admin/session": "admin_key"}
_BODY_CAP = 2 * 1024 * 1024  # past this the body is not inspected (the handlers refuse it anyway)


class _Named(msgspec.Struct):
    tenant_id: object = None
    admin_key: object = None


def region_of_request(scope: Scope, known: dict[str, str]) -> str | None:
    """The region the path or the admin key names, if any."""
    for part in scope["path"].split("/"):
        if part[:3] in ("tn_", "st_", "vd_") and (region := region_of(part)):
            return region
    for name, value in scope["headers"]:
        if name == b"x-wave-tenant":  # a support key's tenant (core/auth.py)
            if region := region_of(value.decode("latin-1").strip()):
                return region
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and key.startswith("wk_"):
                return _key_region(key.strip(), known)
    return None


def _key_region(key: str, known: dict[str, str]) -> str | None:
    """A key's region, if it is one of the map's: a key made before regions may begin with
    something that looks like one (`wk_ab_…`), and stays with the edge that holds it."""
    region = region_of(key)
    return region if region in known else None


def _region_in_body(body: bytes, field: str, known: dict[str, str]) -> str | None:
    try:
        named = msgspec.json.decode(body, type=_Named)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # the handler answers the malformed body
    value = getattr(named, field)
    if not isinstance(value, str):
        return None
    return _key_region(value, known) if field == "admin_key" else region_of(value)


class RegionMap(msgspec.Struct):
    region: str
    regions: dict[str, str]


@get("/.well-known/wave-edge/regions", sync_to_thread=False)
def region_map(state: State) -> RegionMap:
    """The region this edge serves and where every region's edge is (`WAVE_REGIONS`). The
    dashboard asks it when a sign-in was redirected: a browser hides the `Location` of a
    cross-origin redirect from the page, so the page finds the key's region's edge here."""
    settings = state.edge.settings
    return RegionMap(settings.region, dict(settings.regions))


ROUTES = [region_map]


def region_redirect(settings) -> object:
    """The middleware factory (Litestar `middleware=[...]`)."""
    here = settings.region
    regions = settings.regions
    # With no other region known, a body naming one cannot be routed anyway, and its
    # handler refuses the unknown tenant without storing anything: skip reading it.
    inspect_bodies = any(name != here for name in regions)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            region = region_of_request(scope, regions)
            field = _BODY_FIELD.get(scope["path"]) if scope["method"] == "POST" and inspect_bodies else None
            if region is None and field is not None:
                messages, body = await _read_body(receive)
                region = _region_in_body(body, field, regions)
                receive = _replay(messages, receive)
            if region is None or region == here:
                await app(scope, receive, send)
                return
            await _answer_elsewhere(scope, send, region, regions.get(region))

        return middleware

    return factory


async def _read_body(receive: Receive) -> tuple[list[Message], bytes]:
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body") or size > _BODY_CAP:
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
    return messages, body if size <= _BODY_CAP else b""


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _answer_elsewhere(scope: Scope, send: Send, region: str, base: str | None) -> None:
    if base is None:
        status, headers = 421, []
        message = f"region {region!r} is not served here and this edge does not know its address (WAVE_REGIONS)"
    else:
        query = scope.get("query_string", b"")
        location = base + scope["path"] + ("?" + query.decode("latin-1") if query else "")
        status, headers = 307, [(b"location", location.encode("latin-1"))]
        message = f"this belongs to region {region!r}: repeat the request at its edge"
    body = msgspec.json.encode({"error": "other_region" if base else "unknown_region",
                                "detail": {"path": "$", "message": message}})
    await send({"type": "http.response.start", "status": status, "headers": [
        *headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})

"""Cross-site request forgery: what a browser could send for another page, refused.

`SameSite=Strict` keeps the dashboard cookie from other *sites*, but a page on another
port or subdomain of the same host is the same site: its `fetch(url, {mode: "no-cors",
credentials: "include"})` carries the cookie on a "simple" request (GET/POST, a body of
`text/plain`, form or multipart type, no custom header) without asking the edge first.
Three defences, each enough against that request, together so one mistake is not fatal:

- a state-changing call authenticated by the cookie must carry `X-Wave-CSRF` (the
  dashboard sets it). A custom header makes the browser ask first (a CORS preflight),
  and the edge answers preflights only on the player's public paths, never on admin ones;
- when the browser says where the request comes from (`Sec-Fetch-Site`, `Origin`), it
  must be this very origin, for cookie calls and for signing in (no logging a victim
  into the attacker's tenant);
- admin routes that take JSON accept it only as `application/json` (what `fetch` cannot
  send cross-origin without a preflight); the route's declared body types (`opt=body`,
  also in the OpenAPI document) are the ones accepted. `/v1/collect` and `/v1/consent`
  keep accepting `text/plain` (sendBeacon): they carry no cookie authority.

API clients with `Authorization: Bearer` are unaffected by the first two: a browser never
adds that header on its own.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from core.paths import is_admin_path
from core.validation import BadInput

HEADER = "x-wave-csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def same_origin(connection: ASGIConnection) -> None:
    """403 unless the browser's own statements (if any) place the request on this origin."""
    headers = connection.headers
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise BadInput("forbidden", f"cross-origin request refused (Sec-Fetch-Site: {site[:20]})",
                       "$.headers.sec-fetch-site", status=403)
    origin = headers.get("origin")
    if origin is not None:
        host = headers.get("host", "")
        if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            raise BadInput("forbidden", "cross-origin request refused (Origin is not this edge)",
                           "$.headers.origin", status=403)


def cookie_call(connection: ASGIConnection) -> None:
    """A call made with the dashboard's cookie: state changes need the header and the origin."""
    if connection.scope["method"] in SAFE_METHODS:
        return
    if not connection.headers.get(HEADER):
        raise BadInput("forbidden", f"requests made with the session cookie must carry the {HEADER} header",
                       f"$.headers.{HEADER}", status=403)
    same_origin(connection)


def json_content_type(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard: an admin route's body must come as one of its declared media types (415)."""
    declared = handler.opt.get("body")
    if declared is None or not is_admin_path(connection.scope["path"]):
        return
    headers = connection.headers
    if headers.get("content-length", "0") in ("0", "") and "transfer-encoding" not in headers:
        return  # no body: optional bodies may be left out, and there is nothing to misread
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    accepted = declared[1]
    if media not in accepted:
        raise BadInput("unsupported_media_type",
                       f"send the body as {' or '.join(accepted)}, not {media or 'no content type'!r}",
                       "$.headers.content-type", status=415)

"""The OpenAPI document at `/schema`, complete enough to fuzz the service against it.

Two things Litestar cannot see on its own, stated by each route in its decorator:
- its errors: every 4xx/5xx has one body shape (`ErrorBody`); `responses=errors(...)`
  lists the statuses a route can answer, so a client (and schemathesis) knows them;
- its request body: handlers read raw bytes and decode them with msgspec themselves (a
  beacon may come as `text/plain` from `sendBeacon`, and a bad field must be named by its
  JSON path), so `opt=body(Type)` names the type and `complete()` writes its JSON Schema
  into the document once, at start-up.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Reference

from core.wire import ErrorBody

_WHY = {
    400: "malformed input; detail.path names the bad field or parameter",
    401: "no credentials, or an unknown or revoked key or token",
    403: "credentials valid but not allowed here (consent, origin, grant, read-only)",
    404: "no such resource for this tenant",
    409: "conflicts with the resource's state",
    412: "If-Match does not name the resource's current ETag",
    413: "body over the endpoint's limit",
    415: "unsupported content type",
    422: "understood but not supported for this resource (e.g. an ICE restart)",
    429: "rate limit reached; retry after Retry-After seconds",
    503: "a dependency (database, spool) is unavailable; retry after Retry-After seconds",
}

SDP = "application/sdp"
MULTIPART = "multipart/form-data"
# What every admin route (a tenant's key or dashboard session) may answer.
ADMIN = (400, 401, 403, 404, 413, 415, 429, 503)
_ERROR_REF = "#/components/schemas/ErrorBody"


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """`responses=` for a route decorator: the given error statuses, each an ErrorBody."""
    return {code: ResponseSpec(data_container=ErrorBody, description=_WHY[code]) for code in sorted(set(statuses))}


def body(kind: type | str, *media_types: str, required: bool = True) -> dict[str, Any]:
    """`opt=` for a route decorator: its request body (a msgspec Struct decoded from JSON,
    or the media type of a raw body such as SDP) and the content types it accepts."""
    return {"body": (kind, media_types or ("application/json",), required)}


def complete(app: Litestar) -> None:
    """Adds the declared request bodies to the app's OpenAPI document (built once, before
    the first request), and gives Litestar's own 400 for bad path parameters our shape."""
    doc = app.openapi_schema
    schemas = doc.components.schemas if doc.components.schemas is not None else {}
    doc.components.schemas = schemas
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            path = doc.paths.get(route.path_format) if doc.paths else None
            if path is None or not handler.include_in_schema:
                continue
            for method in handler.http_methods:
                operation = getattr(path, method.lower(), None)
                if operation is None:
                    continue
                for response in (operation.responses or {}).values():
                    for media in (getattr(response, "content", None) or {}).values():
                        if getattr(media.schema, "description", None) == "Validation Exception":
                            media.schema = Reference(ref=_ERROR_REF)
                if "body" in handler.opt:
                    operation.request_body = _request_body(*handler.opt["body"], schemas)


def _request_body(kind: type | str, media_types: tuple[str, ...], required: bool, schemas: dict) -> dict:
    if isinstance(kind, str):  # a raw body: SDP, or a multipart upload
        schema: dict = {"type": "string"} if kind != MULTIPART else {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}, "title": {"type": "string"},
                           "tags": {"type": "string"}, "playback": {"enum": ["public", "private"]}}}
        return {"required": required, "content": {media: {"schema": schema} for media in media_types}}
    (ref,), components = msgspec.json.schema_components([kind], ref_template="#/components/schemas/{name}")
    for name, component in components.items():
        schemas.setdefault(name, component)
    return {"required": required, "content": {media: {"schema": ref} for media in media_types}}

"""HTTP routes of the public telemetry API: consent and collect.

Handlers read the raw body and hand it to the collector, which owns decoding: the
collector must accept `text/plain` bodies (what `navigator.sendBeacon` sends) exactly
like JSON ones, and name the bad field on failure.
"""

from __future__ import annotations

from litestar import Request, Response, post
from litestar.datastructures import State

from analytics.collector import Collector, RequestInfo
from analytics.spool import SpoolFull
from analytics.wire import (
    CollectAccepted,
    CollectBatch,
    ConsentGrant,
    ConsentRecorded,
    ConsentWithdraw,
    Withdrawn,
)
from core.openapi import body, errors
from core.validation import BadInput
from core.wire import ErrorBody, ErrorDetail

MAX_BODY = 256 * 1024
_BODY_TYPES = ("application/json", "text/plain", "")
BODY_TYPES = ("application/json", "text/plain")
RETRY_AFTER_S = "5"


def request_info(request: Request) -> RequestInfo:
    client = request.scope.get("client")
    headers = request.headers
    return RequestInfo(
        peer=client[0] if client else None,
        forwarded_for=headers.get("x-forwarded-for"),
        user_agent=headers.get("user-agent", ""),
        origin=headers.get("origin"),
        host=headers.get("host"),
    )


async def _body(request: Request) -> bytes:
    body = await request.body()  # enforces the size limit first: 413 beats 415
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _BODY_TYPES:
        raise BadInput(
            "unsupported_media_type",
            f"send JSON as application/json or text/plain, not {content_type!r}",
            status=415,
        )
    return body


def _unavailable() -> Response:
    return Response(
        content=ErrorBody("unavailable", ErrorDetail("$", "cannot store events now; retry later")),
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_S},
    )


def _collector(state: State) -> Collector:
    return state.collector


@post("/v1/collect", status_code=202, request_max_body_size=MAX_BODY, responses=errors(400, 403, 413, 415, 429, 503),
      opt=body(CollectBatch, *BODY_TYPES))
async def collect(request: Request, state: State) -> CollectAccepted:
    """Store a batch of a consenting viewer's playback events (202 once durable)."""
    body = await _body(request)
    try:
        accepted = await _collector(state).collect(body, request_info(request))
    except SpoolFull:
        return _unavailable()  # type: ignore[return-value]
    return CollectAccepted(accepted=accepted)


@post("/v1/consent", status_code=201, request_max_body_size=16 * 1024, responses=errors(400, 403, 413, 415, 429, 503),
      opt=body(ConsentGrant, *BODY_TYPES))
async def consent(request: Request, state: State) -> ConsentRecorded:
    """Record a viewer's consent (purposes and policy version) in the ledger."""
    body = await _body(request)
    return ConsentRecorded(consent_id=await _collector(state).grant(body, request_info(request)))


@post("/v1/consent/withdraw", status_code=200, request_max_body_size=16 * 1024,
      responses=errors(400, 403, 413, 415, 429, 503), opt=body(ConsentWithdraw, *BODY_TYPES))
async def withdraw(request: Request, state: State) -> Withdrawn:
    """Withdraw a viewer's consent; beacons are refused from the next one on."""
    body = await _body(request)
    await _collector(state).withdraw(body, request_info(request))
    return Withdrawn()


ROUTES = [collect, consent, withdraw]

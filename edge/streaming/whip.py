"""WHIP ingest (RFC 9725): `POST /whip/{stream_id}` with an SDP offer and the stream's
publish token; `PATCH` on the returned Location trickles ICE candidates (trickle.py);
`DELETE` on it ends the publish, and answers 200 again for a session that has just ended.

A publisher that crashed (no DELETE, no close) is replaced by the next authenticated POST
as soon as its session has sent no media for `WAVE_PUBLISH_TAKEOVER_S` (1 s), or at once
for a tenant that lets the newest publisher win; before that the POST gets 409 with
`Retry-After`, so an encoder that reconnects is back on air within a second or two
instead of waiting out the 10 s silence watchdog."""

from __future__ import annotations

from litestar import Request, Response, delete, patch, post
from litestar.datastructures import State
from litestar.params import FromPath

from core.auth import bearer
from core.limits import RateLimited
from core.openapi import SDP, body, errors
from core.validation import BadInput
from edge.streaming import registry, rtc, sdp, trickle
from edge.streaming.live import Busy

MAX_SDP = 64 * 1024
VIDEO_CODECS = {"H264", "VP8"}
AUDIO_CODECS = {"OPUS"}


def _sdp_body_required(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise BadInput("unsupported_media_type", "send the SDP offer as application/sdp", status=415)


def _check_offer(offer: str) -> None:
    """400 for an offer the encoder cannot take: it needs one picture (H.264 or VP8) and
    takes at most one sound (Opus). Answering such an offer 201 would give a session that
    is on air with nothing to show (sound only), or two cameras fed into one encoder,
    where RFC 9725 §4.2 wants the offer refused."""
    if "v=0" not in offer or "m=" not in offer:
        raise BadInput("bad_sdp", "not an SDP offer (no v= or m= line)")
    sections = sdp.media_sections(offer)
    video = [s for s in sections if s[0].startswith("m=video")]
    audio = [s for s in sections if s[0].startswith("m=audio")]
    if len(video) != 1 or not any(sdp.has_codec(video[0], codec) for codec in VIDEO_CODECS):
        raise BadInput("bad_sdp", f"a publish sends exactly one video track (H.264 or VP8); this offer has"
                       f" {len(video)} video section(s){' without either codec' if len(video) == 1 else ''}")
    if len(audio) > 1 or (audio and not any(sdp.has_codec(audio[0], codec) for codec in AUDIO_CODECS)):
        raise BadInput("bad_sdp", f"a publish sends at most one audio track, in Opus; this offer has {len(audio)}"
                       f" audio section(s){' without Opus' if len(audio) == 1 else ''}")
    try:
        rtc.check_offer(offer)
    except rtc.BadOffer as exc:
        raise BadInput("bad_sdp", str(exc)) from None


def _check_capacity(edge, tenant_id: str) -> None:
    """Each publish runs an encoder: the edge takes `max_publishes` at once (503 past it,
    for a load balancer to send the publisher elsewhere), a tenant `max_publishes_per_tenant`
    (429: one tenant cannot take every encoder)."""
    settings = edge.settings
    publishers = edge.live.publishers().values()
    if len(publishers) >= settings.max_publishes:
        exc = BadInput("at_capacity", "this edge runs as many publishes as it can; retry later or elsewhere",
                       "$.path.stream_id", status=503)
        exc.retry_after = 30
        raise exc
    if sum(1 for p in publishers if p.tenant.tenant_id == tenant_id) >= settings.max_publishes_per_tenant:
        raise RateLimited("concurrent publishes for this tenant", 30)


async def _stream_for_publisher(request: Request, state: State, stream_id: str) -> registry.Stream:
    stream = await state.edge.streams.get(stream_id)
    if stream is None:
        raise BadInput("not_found", f"no stream {stream_id!r}", "$.path.stream_id", status=404)
    if not registry.token_matches(stream, bearer(request)):
        raise BadInput("unauthorized", "a valid publish token is required (Authorization: Bearer)",
                       "$.headers.authorization", status=401)
    return stream


def _conflict(busy: Busy) -> BadInput:
    """409, with Retry-After when the current publisher may be replaced after a while."""
    if busy.retry_after is None:  # another POST took it just now
        return BadInput("conflict", "this stream already has a publisher", "$.path.stream_id", status=409)
    exc = BadInput("conflict", "this stream already has a publisher sending media", "$.path.stream_id", status=409)
    exc.retry_after = busy.retry_after
    return exc


async def _take_over(edge, stream_id: str, takeover: str) -> None:
    """Make room for a new publish of this stream, or refuse it (409 + Retry-After): a
    current session is ended first if the tenant lets the newest publisher win, or if it
    has sent no media for the takeover time."""
    silent_s = 0.0 if takeover == "newest" else edge.settings.publish_takeover_s
    try:
        await edge.live.make_room(stream_id, silent_s)
    except Busy as busy:
        raise _conflict(busy) from None


@post("/whip/{stream_id:str}", request_max_body_size=MAX_SDP, status_code=201,
      responses=errors(400, 401, 404, 409, 413, 415, 429, 503), opt=body(SDP, SDP))
async def whip_publish(request: Request, state: State, stream_id: FromPath[str]) -> Response[str]:
    """Start publishing: SDP offer in, SDP answer (with all candidates) out."""
    _sdp_body_required(request)
    stream = await _stream_for_publisher(request, state, stream_id)
    edge = state.edge
    tenant = await edge.tenants.get(stream.tenant_id)
    offer = (await request.body()).decode("utf-8", "replace")
    _check_offer(offer)  # before the takeover: a POST that fails must not end the publish on air
    await _take_over(edge, stream.stream_id, tenant.publisher_takeover if tenant else "idle")
    _check_capacity(edge, stream.tenant_id)
    pc = rtc.peer_connection(edge.settings.ice_servers)
    try:  # claimed before awaiting: a racing second publisher gets 409
        session = edge.live.publish(stream, pc, tenant=tenant, client_ip=edge.client_ip(request),
                                    user_agent=request.headers.get("user-agent", ""))
    except Busy as busy:
        await rtc.close(pc)
        raise _conflict(busy) from None
    try:
        answer = await rtc.answer(pc, offer)
    except BaseException as exc:  # whatever failed, the claim goes: a stale one would 409 the next publisher
        edge.live.release(session)
        await rtc.close(pc)
        if isinstance(exc, rtc.BadOffer):
            raise BadInput("bad_sdp", str(exc)) from None
        raise
    answer = sdp.keep_largest_simulcast_layer(offer, answer)
    await session.start()
    edge.live.on_air(session)
    location = f"/whip/{stream.stream_id}/{session.session_id}"
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": location, "ETag": f'"{session.session_id}"'})


@delete("/whip/{stream_id:str}/{session_id:str}", status_code=200, responses=errors(401, 404))
async def whip_stop(request: Request, state: State, stream_id: FromPath[str], session_id: FromPath[str]) -> None:
    """End the publish; the live playlist is closed with #EXT-X-ENDLIST. A session that
    ended a moment ago (the client closed its peer connection first) is a 200 too."""
    stream = await _stream_for_publisher(request, state, stream_id)
    session = state.edge.live.publisher(stream.stream_id)
    if session is not None and session.session_id == session_id:
        await session.end("publisher sent DELETE", "deleted")
    elif not state.edge.live.ended_recently(stream.stream_id, session_id):
        raise BadInput("not_found", "no such publish session", "$.path.session_id", status=404)


@patch("/whip/{stream_id:str}/{session_id:str}", status_code=204, request_max_body_size=trickle.MAX_FRAGMENT,
       responses=errors(400, 401, 404, 409, 412, 413, 415, 422))
async def whip_trickle(request: Request, state: State, stream_id: FromPath[str], session_id: FromPath[str]) -> None:
    """Trickle ICE candidates into the publish (RFC 9725 §4.3); an ICE restart is 422."""
    stream = await _stream_for_publisher(request, state, stream_id)
    session = state.edge.live.publisher(stream.stream_id)
    if session is None or session.session_id != session_id:
        raise BadInput("not_found", "no such publish session", "$.path.session_id", status=404)
    trickle.check_request(request.headers.get("content-type", ""), request.headers.get("if-match"),
                          f'"{session.session_id}"')
    await trickle.apply(session.pc, await request.body())


ROUTES = [whip_publish, whip_stop, whip_trickle]

"""WHEP playback: `POST /whep/{stream_id}` with a recvonly offer; the stream's owner
(`live.LiveStream`) attaches the viewer to the stream's relay (no encoder of its own).
`PATCH` on the Location trickles ICE candidates (trickle.py); `DELETE` on it ends the
session, and answers 200 again for a session that has just ended (the publish stopped,
or the client closed first); a viewer that never connects or stops answering ends too
(`liveness`)."""

from __future__ import annotations

import logging
import secrets
import time

from litestar import Request, Response, delete, patch, post
from litestar.datastructures import State
from litestar.params import FromPath

from core.auth import bearer
from core.openapi import SDP, body, errors
from core.tenants import Tenant
from core.validation import BadInput
from edge.streaming import events, liveness, rtc, sdp, trickle, webrtc_stats
from edge.streaming.relay import PacketTrack, viewer_track
from edge.streaming.rtp_fanout import FanoutSender, FanoutTrack

log = logging.getLogger(__name__)
MAX_SDP = 64 * 1024


class ViewerSession:
    def __init__(self, stream_id: str, pc, tracks: list[PacketTrack | FanoutTrack], tenant: Tenant,
                 client_ip: str | None, user_agent: str) -> None:
        self.session_id = secrets.token_hex(12)
        self.stream_id = stream_id
        self.pc = pc
        self.tracks = tracks
        self.tenant = tenant
        self.client_ip = client_ip
        self.user_agent = user_agent
        self.started = time.time()
        self.watch: liveness.Watch | None = None
        self.qoe: webrtc_stats.QoeSampler | None = None


@post("/whep/{stream_id:str}", request_max_body_size=MAX_SDP, status_code=201,
      responses=errors(400, 403, 404, 409, 413, 415, 429, 503), opt=body(SDP, SDP))
async def whep_play(request: Request, state: State, stream_id: FromPath[str]) -> Response[str]:
    """Watch a live stream over WebRTC: recvonly SDP offer in, SDP answer out."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise BadInput("unsupported_media_type", "send the SDP offer as application/sdp", status=415)
    edge = state.edge
    stream = await edge.streams.get(stream_id)
    if stream is None:
        raise BadInput("not_found", f"no stream {stream_id!r}", "$.path.stream_id", status=404)
    # The WHEP draft has players send a configured token as a Bearer credential; the
    # embed's player puts it in the URL (?token=), as HLS requests carry it too.
    token = request.query_params.get("token") or bearer(request)
    if stream.playback == "private" and not edge.playback_tokens.valid(stream.stream_id, token):
        raise BadInput("forbidden", "this stream needs a valid playback token (Authorization: Bearer, or ?token=)",
                       "$.query.token", status=403)
    live = edge.live.get(stream.stream_id)
    publish = live.publisher if live is not None else None
    pipeline = live.pipeline if publish is not None else None
    if pipeline is None:
        raise _not_live()
    _admit(edge)
    edge.limits.whep_per_tenant.check(stream.tenant_id, "WebRTC viewers joining this tenant's streams")
    offer = (await request.body()).decode("utf-8", "replace")
    viewer_id = await webrtc_stats.consented_viewer(request.headers.get(webrtc_stats.VIEWER_HEADER),
                                                    publish.tenant.tenant_id, edge.consents)
    try:
        offer = sdp.narrow_for_relay(offer)
    except sdp.NoH264 as exc:
        raise BadInput("bad_sdp", str(exc)) from None
    sections = sdp.media_sections(offer)
    # A viewer may ask for the picture only, or the sound only.
    wants_video = any(s[0].startswith("m=video") for s in sections)
    wants_audio = pipeline.audio and any(s[0].startswith("m=audio") and sdp.has_codec(s, "OPUS") for s in sections)
    if not (wants_video or wants_audio):
        raise BadInput("bad_sdp", "the offer asks for nothing this stream sends (H.264 video"
                       + (", Opus audio)" if pipeline.audio else "; it has no sound)"))

    pc = rtc.peer_connection(edge.settings.ice_servers)
    fanout = edge.settings.whep_fanout  # "shared" (RTP packetized once per stream), "shared-python", "per-viewer"
    tracks = [viewer_track(fanout, kind, pipeline.request_keyframe)
              for kind, wanted in (("video", wants_video), ("audio", wants_audio)) if wanted]
    try:
        answer = await rtc.answer(pc, offer, send=tracks)
    except rtc.BadOffer as exc:
        await rtc.close(pc)
        raise BadInput("bad_sdp", str(exc)) from None
    for sender in pc.getSenders():
        if isinstance(sender.track, FanoutTrack):  # shared path: headers + SRTP per viewer only
            FanoutSender.adopt(sender, pipeline.request_keyframe, native=fanout != "shared-python")
        else:
            # aiortc answers a PLI by re-encoding; we have no encoder here, the stream has one
            sender._send_keyframe = pipeline.request_keyframe  # noqa: SLF001 - no public hook
    session = ViewerSession(stream.stream_id, pc, tracks, publish.tenant, edge.client_ip(request),
                            request.headers.get("user-agent", ""))
    if not live.add_viewer(session, pipeline):  # the publish ended while the answer was made
        await rtc.close(pc)
        raise _not_live()
    session.qoe = webrtc_stats.start(pc, edge.webrtc_qoe.add, tenant_id=publish.tenant.tenant_id,
                                     stream_id=stream.stream_id, viewer_id=viewer_id,
                                     retention_days=publish.tenant.retention_days,
                                     interval_s=edge.settings.webrtc_stats_s)
    location = f"/whep/{stream.stream_id}/{session.session_id}"
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": location, "ETag": f'"{session.session_id}"',
                             "Link": events.link_header(stream.stream_id, session.session_id)})


BUSY_RETRY_AFTER_S = 2


def _admit(edge) -> None:
    """503 while the event loop is behind (edge/loop_lag.py): the viewers already
    watching keep their picture, and this one is told when to come back."""
    limit = edge.settings.whep_busy_lag_s
    if limit > 0 and edge.loop_lag.lag_s() > limit:
        exc = BadInput("edge_busy", "this edge is serving all the WebRTC viewers it can; retry after Retry-After"
                       " seconds", "$", status=503)
        exc.retry_after = BUSY_RETRY_AFTER_S
        edge.whep_refused_busy.inc()
        raise exc


NOT_LIVE_RETRY_AFTER_S = 2


def _not_live() -> BadInput:
    """409 with Retry-After, as the WHEP draft prescribes for a stream that exists but is
    not being published: a player opened before the publisher starts tries again, where
    a 404 (kept for a stream that does not exist) would make it give up."""
    exc = BadInput("not_live", "the stream is not being published yet; retry after Retry-After seconds",
                   "$.path.stream_id", status=409)
    exc.retry_after = NOT_LIVE_RETRY_AFTER_S
    return exc


@delete("/whep/{stream_id:str}/{session_id:str}", status_code=200, responses=errors(404))
async def whep_stop(state: State, stream_id: FromPath[str], session_id: FromPath[str]) -> None:
    """Stop watching."""
    session = state.edge.live.viewer(stream_id, session_id)
    if session is not None:
        await state.edge.live.stream(stream_id).end_viewer(session, "deleted")
    elif not state.edge.live.ended_recently(stream_id, session_id):
        raise BadInput("not_found", "no such viewer session", "$.path.session_id", status=404)


@patch("/whep/{stream_id:str}/{session_id:str}", status_code=204, request_max_body_size=trickle.MAX_FRAGMENT,
       responses=errors(400, 404, 409, 412, 413, 415, 422))
async def whep_trickle(request: Request, state: State, stream_id: FromPath[str], session_id: FromPath[str]) -> None:
    """Trickle ICE candidates into the viewer's session; an ICE restart is 422."""
    session = state.edge.live.viewer(stream_id, session_id)
    if session is None:
        raise BadInput("not_found", "no such viewer session", "$.path.session_id", status=404)
    trickle.check_request(request.headers.get("content-type", ""), request.headers.get("if-match"),
                          f'"{session.session_id}"')
    await trickle.apply(session.pc, await request.body())


ROUTES = [whep_play, whep_stop, whep_trickle]

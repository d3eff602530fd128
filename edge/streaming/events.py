"""WHEP's server-sent events extension: a viewer learns that the stream went away.

When a publisher stops, Chromium keeps a WHEP connection "connected" for seconds with a
frozen picture whose `currentTime` runs on, so a player cannot tell an ended stream from
a stall. The WHEP answer therefore carries a `Link` (rel
`urn:ietf:params:whep:ext:core:server-sent-events`) to this resource: the client POSTs the
events it wants (a JSON array), gets a `Location`, and reads `text/event-stream` from it:
`active` while the stream is published to this viewer, then `inactive` the moment it is
not (publish ended, or the viewer's session did), after which the stream closes.

The session id in the path is the capability, as for DELETE: a session that is live or
ended a moment ago; anything else is a 404. Every open event stream is one idle socket,
bounded by the session's life plus one message.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import ServerSentEvent, ServerSentEventMessage

from core.openapi import errors
from core.validation import BadInput
from edge.streaming.live import LiveStream

REL = "urn:ietf:params:whep:ext:core:server-sent-events"
EVENTS = ("active", "inactive")
KEEPALIVE_S = 15.0
MAX_BODY = 1024


def link_header(stream_id: str, session_id: str) -> str:
    return f'<{_path(stream_id, session_id)}>; rel="{REL}"; events="{",".join(EVENTS)}"'


def _path(stream_id: str, session_id: str) -> str:
    return f"/whep/{stream_id}/{session_id}/events"


def _known(state: State, stream_id: str, session_id: str) -> bool:
    live = state.edge.live
    return live.viewer(stream_id, session_id) is not None or live.ended_recently(stream_id, session_id)


@post("/whep/{stream_id:str}/{session_id:str}/events", status_code=201, request_max_body_size=MAX_BODY,
      responses=errors(400, 404, 413))
async def subscribe(request: Request, state: State, stream_id: FromPath[str], session_id: FromPath[str]) -> Response:
    """Ask for events (a JSON array of names; `active` and `inactive` are offered)."""
    if not _known(state, stream_id, session_id):
        raise BadInput("not_found", "no such viewer session", "$.path.session_id", status=404)
    body = await request.body()
    if body.strip():
        try:
            wanted = msgspec.json.decode(body, type=list[str])
        except msgspec.DecodeError as exc:
            raise BadInput("invalid_json", f"send a JSON array of event names: {exc}", "$.body") from None
        if not set(wanted) & set(EVENTS):
            raise BadInput("invalid_field", f"no supported event; offered: {', '.join(EVENTS)}", "$.body")
    return Response(b"", status_code=201, headers={"Location": _path(stream_id, session_id)})


@get("/whep/{stream_id:str}/{session_id:str}/events", responses=errors(404))
async def event_stream(state: State, stream_id: FromPath[str], session_id: FromPath[str]) -> ServerSentEvent:
    """`active` now if the stream plays to this viewer, `inactive` when it stops."""
    if not _known(state, stream_id, session_id):
        raise BadInput("not_found", "no such viewer session", "$.path.session_id", status=404)
    return ServerSentEvent(_events(state.edge.live.stream(stream_id), session_id),
                           headers={"Cache-Control": "no-store"})


async def _events(live: LiveStream, session_id: str) -> AsyncIterator[ServerSentEventMessage]:
    reported = None
    while True:
        changed = live.changed  # taken before the check: a change after it still wakes us
        active = live.playing_to(session_id)
        if active != reported:
            reported = active
            yield ServerSentEventMessage(event="active" if active else "inactive", data="{}")
        if not active:
            return
        try:
            await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
        except TimeoutError:
            yield ServerSentEventMessage(comment="keep-alive")


ROUTES = [subscribe, event_stream]

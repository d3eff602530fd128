"""Live HLS: `/live/{stream_id}/{file}` from the directory of the stream's newest publish
(kept by the stream's owner, `live.LiveStreams`)."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from core.openapi import errors
from edge import media_files, media_layout


@get("/live/{stream_id:str}/{name:str}", responses=errors(400, 401, 404))
async def live_file(request: Request, state: State, stream_id: FromPath[str], name: FromPath[str]) -> Response[bytes]:
    """A live playlist or segment; private streams need `?token=`."""
    stream = await state.edge.streams.get(stream_id)
    if stream is None or not media_layout.SERVED_FILE.match(name):
        raise media_files.not_found()
    token = request.query_params.get("token")
    private = stream.playback == "private"
    media_files.check_token(private, state.edge.playback_tokens.valid(stream.stream_id, token))
    directory = state.edge.live.directory(stream.stream_id)
    if directory is None:
        raise media_files.not_found("not published yet")
    data = await media_files.read(directory / name)
    tenant = await state.edge.tenants.get(stream.tenant_id)
    if tenant is not None:
        state.edge.sessions.hls_request(tenant, stream.stream_id, state.edge.client_ip(request),
                                        request.headers.get("user-agent", ""), len(data))
    return media_files.respond(directory / name, data, playlist_cache="no-cache", token=token if private else None)


ROUTES = [live_file]

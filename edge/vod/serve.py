"""VOD HLS: `/vod/{video_id}/{file}` for ready recordings and uploads."""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from core.openapi import errors
from edge import media_files, media_layout


@get("/vod/{video_id:str}/{name:str}", responses=errors(400, 401, 404))
async def vod_file(request: Request, state: State, video_id: FromPath[str], name: FromPath[str]) -> Response[bytes]:
    """A VOD playlist or segment; private videos need `?token=`."""
    if not media_layout.VIDEO_ID.match(video_id) or not media_layout.SERVED_FILE.match(name):
        raise media_files.not_found()
    video = await state.edge.video_cache.get(video_id)
    if video is None or video.status != "ready":
        raise media_files.not_found("no such video, or not ready")
    token = request.query_params.get("token")
    private = video.playback == "private"
    media_files.check_token(private, state.edge.playback_tokens.valid(video.video_id, token))
    file = media_layout.VOD_PLAYLIST if name == media_layout.PLAYLIST else name
    path = media_layout.video_dir(state.edge.settings.media_dir, video.video_id) / file
    data = await media_files.read(path)
    tenant = await state.edge.tenants.get(video.tenant_id)
    if tenant is not None and file != media_layout.POSTER:  # a poster is a page view, not a play
        state.edge.sessions.hls_request(tenant, video.video_id, state.edge.client_ip(request),
                                        request.headers.get("user-agent", ""), len(data))
    return media_files.respond(path, data, playlist_cache="public, max-age=60", token=token if private else None)


ROUTES = [vod_file]

"""VOD HLS: `/vod/{video_id}/{file}` for ready recordings and uploads.

`index.m3u8` is the multivariant playlist (`main.m3u8` on disk), or for a video packaged
before the ladder its one media playlist; renditions, the storyboard and its sprites are
named by `media_layout.VOD_FILE`."""

from __future__ import annotations

import asyncio

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from core.openapi import errors
from edge import media_files, media_layout


@get("/vod/{video_id:str}/{name:str}", responses=errors(400, 401, 404))
async def vod_file(request: Request, state: State, video_id: FromPath[str], name: FromPath[str]) -> Response[bytes]:
    """A VOD playlist, segment, storyboard or sprite; private videos need `?token=`."""
    if not media_layout.VIDEO_ID.match(video_id) or not media_layout.VOD_FILE.match(name):
        raise media_files.not_found()
    video = await state.edge.video_cache.get(video_id)
    if video is None or video.status != "ready":
        raise media_files.not_found("no such video, or not ready")
    token = request.query_params.get("token")
    private = video.playback == "private"
    media_files.check_token(private, state.edge.playback_tokens.valid(video.video_id, token))
    directory = media_layout.video_dir(state.edge.settings.media_dir, video.video_id)
    file = name
    if name == media_layout.PLAYLIST:
        file = media_layout.MULTIVARIANT
        if not await asyncio.to_thread((directory / file).exists):
            file = media_layout.VOD_PLAYLIST  # packaged before the ladder
    path = directory / file
    data = await media_files.read(path)
    tenant = await state.edge.tenants.get(video.tenant_id)
    if tenant is not None and not file.endswith((".jpg", ".vtt")):  # posters and previews are not plays
        state.edge.sessions.hls_request(tenant, video.video_id, state.edge.client_ip(request),
                                        request.headers.get("user-agent", ""), len(data))
    return media_files.respond(path, data, playlist_cache="public, max-age=60", token=token if private else None)


ROUTES = [vod_file]

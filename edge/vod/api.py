"""Admin routes for videos: list (by tag), show, edit title/tags/metadata, delete.

As for streams, a video of another tenant answers 404 like a missing one.
"""

from __future__ import annotations

import asyncio
import shutil

from litestar import Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.datastructures import State
from litestar.params import FromPath
from msgspec import UNSET

from core import validation
from core.openapi import ADMIN, body, errors
from core.tenants import Tenant
from core.validation import BadInput
from edge.media_layout import PLAYLIST, video_dir
from edge.streaming import tokens
from edge.streaming.wire import PlaybackToken, TokenRequest
from edge.vod import videos
from edge.vod.wire import VideoInfo, VideoList, VideoPatch


def info(request: Request, video: videos.Video) -> VideoInfo:
    base = str(request.base_url).rstrip("/")
    return VideoInfo(
        video_id=video.video_id, title=video.title, tags=video.tags, metadata=video.metadata,
        source=video.source, stream_id=video.stream_id, playback=video.playback, status=video.status,
        progress=round(video.progress, 1), reason=video.reason, duration_s=video.duration_s,
        width=video.width, height=video.height, video_codec=video.video_codec,
        audio_codec=video.audio_codec, size_bytes=video.size_bytes,
        hls_url=f"{base}/vod/{video.video_id}/{PLAYLIST}",
    )


async def own_video(state: State, tenant: Tenant, video_id: str) -> videos.Video:
    video = await asyncio.to_thread(videos.get, state.edge.store, video_id)
    if video is None or video.tenant_id != tenant.tenant_id:
        raise BadInput("not_found", f"no video {video_id!r}", "$.path.video_id", status=404)
    return video


@get("/v1/videos", responses=errors(*ADMIN))
async def list_videos(request: Request, state: State, tenant: NamedDependency[Tenant]) -> VideoList:
    """The tenant's videos, newest first; `?tag=` keeps those with that tag."""
    tag = request.query_params.get("tag") or None
    found = await asyncio.to_thread(videos.list_for, state.edge.store, tenant.tenant_id, tag)
    return VideoList([info(request, v) for v in found])


@get("/v1/videos/{video_id:str}", responses=errors(*ADMIN))
async def show_video(request: Request, state: State, video_id: FromPath[str], tenant: NamedDependency[Tenant]) -> VideoInfo:
    """One video with its processing status and progress."""
    return info(request, await own_video(state, tenant, video_id))


@patch("/v1/videos/{video_id:str}", request_max_body_size=128 * 1024, responses=errors(*ADMIN), opt=body(VideoPatch))
async def edit_video(request: Request, state: State, video_id: FromPath[str], tenant: NamedDependency[Tenant]) -> VideoInfo:
    """Edit title, tags and free key/value metadata (fields left out stay as they are)."""
    change = validation.decode(await request.body(), VideoPatch)
    video = await own_video(state, tenant, video_id)
    for field in ("title", "tags", "metadata"):
        value = getattr(change, field)
        if value is not UNSET:
            setattr(video, field, value)
    await asyncio.to_thread(videos.save, state.edge.store, video)
    state.edge.video_cache.forget(video.video_id)
    return info(request, video)


@delete("/v1/videos/{video_id:str}", status_code=200, responses=errors(*ADMIN))
async def delete_video(request: Request, state: State, video_id: FromPath[str], tenant: NamedDependency[Tenant]) -> None:
    """Delete the video's rows and every media file."""
    video = await own_video(state, tenant, video_id)
    if video.status == "recording":
        raise BadInput("conflict", "the stream is still being recorded; stop the publish first", status=409)
    state.edge.public_links.unlink("vod", video.video_id)  # the front stops serving it first
    await asyncio.to_thread(videos.delete, state.edge.store, video)
    state.edge.video_cache.forget(video.video_id)
    await asyncio.to_thread(shutil.rmtree, video_dir(state.edge.settings.media_dir, video.video_id), True)


@post("/v1/videos/{video_id:str}/playback-token", status_code=201, request_max_body_size=4096, responses=errors(*ADMIN),
      opt=body(TokenRequest, required=False))
async def video_playback_token(request: Request, state: State, video_id: FromPath[str], tenant: NamedDependency[Tenant]) -> PlaybackToken:
    """A signed, expiring token for a private video's playback URLs (`?token=`)."""
    video = await own_video(state, tenant, video_id)
    return await tokens.mint(request, state.edge.playback_tokens, video.video_id)


ROUTES = [list_videos, show_video, edit_video, delete_video, video_playback_token]

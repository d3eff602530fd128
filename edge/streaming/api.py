"""Admin routes for streams: create, list, inspect, mint playback tokens; the tenant's
live settings (its ABR ladder, `GET|PUT /v1/live/settings`).

Every handler starts from `admin_tenant()`; a stream id of another tenant answers 404
exactly like one that does not exist, so ids cannot be probed across tenants.
"""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Request, get, post, put
from litestar.di import NamedDependency
from litestar.datastructures import State
from litestar.params import FromPath

from core import validation
from core.openapi import ADMIN, body, errors
from core.store import Store
from core.tenants import Tenant, TenantDirectory, TenantError, check_live_ladder, save_tenant
from core.validation import BadInput
from edge.media_layout import PLAYLIST
from edge.streaming import registry, tokens
from edge.streaming.wire import (
    LiveSettings,
    LiveSettingsChange,
    PlaybackToken,
    StreamCreate,
    StreamCreated,
    StreamInfo,
    StreamList,
    TokenRequest,
)


def _urls(request: Request, stream_id: str) -> dict[str, str]:
    base = str(request.base_url).rstrip("/")
    return {
        "whip_url": f"{base}/whip/{stream_id}",
        "whep_url": f"{base}/whep/{stream_id}",
        "hls_url": f"{base}/live/{stream_id}/{PLAYLIST}",
        "embed_url": f"{base}/embed/{stream_id}",
    }


async def _own_stream(state: State, tenant: Tenant, stream_id: str) -> registry.Stream:
    stream = await asyncio.to_thread(registry.get_stream, state.edge.store, stream_id)
    if stream is None or stream.tenant_id != tenant.tenant_id:
        raise BadInput("not_found", f"no stream {stream_id!r}", "$.path.stream_id", status=404)
    return stream


def _info(request: Request, state: State, stream: registry.Stream) -> StreamInfo:
    return StreamInfo(
        stream_id=stream.stream_id,
        name=stream.name,
        playback=stream.playback,
        **state.edge.live.describe(stream.stream_id),
        **_urls(request, stream.stream_id),
    )


@post("/v1/streams", status_code=201, request_max_body_size=16 * 1024, responses=errors(*ADMIN), opt=body(StreamCreate))
async def create_stream(request: Request, state: State, tenant: NamedDependency[Tenant]) -> StreamCreated:
    """Create a live stream; the publish token is shown once."""
    body = validation.decode(await request.body(), StreamCreate)
    stream, token = await asyncio.to_thread(
        registry.create_stream, state.edge.store, tenant.tenant_id, body.name, body.playback
    )
    return StreamCreated(stream_id=stream.stream_id, publish_token=token, playback=stream.playback,
                         **_urls(request, stream.stream_id))


@get("/v1/streams", responses=errors(*ADMIN))
async def list_streams(request: Request, state: State, tenant: NamedDependency[Tenant]) -> StreamList:
    """The tenant's streams with their live state on this edge."""
    streams = await asyncio.to_thread(registry.list_streams, state.edge.store, tenant.tenant_id)
    return StreamList([_info(request, state, s) for s in streams])


@get("/v1/streams/{stream_id:str}", responses=errors(*ADMIN))
async def show_stream(request: Request, state: State, stream_id: FromPath[str], tenant: NamedDependency[Tenant]) -> StreamInfo:
    """One stream: publishing or not, since when, current viewers."""
    return _info(request, state, await _own_stream(state, tenant, stream_id))


@post("/v1/streams/{stream_id:str}/playback-token", status_code=201, request_max_body_size=4096, responses=errors(*ADMIN),
      opt=body(TokenRequest, required=False))
async def playback_token(request: Request, state: State, stream_id: FromPath[str], tenant: NamedDependency[Tenant]) -> PlaybackToken:
    """A signed, expiring token for a private stream's playback URLs (`?token=`)."""
    stream = await _own_stream(state, tenant, stream_id)
    return await tokens.mint(request, state.edge.playback_tokens, stream.stream_id)


@get("/v1/live/settings", responses=errors(*ADMIN))
async def live_settings(tenant: NamedDependency[Tenant]) -> LiveSettings:
    """The tenant's live settings: the ladder of lower renditions every live stream gets."""
    return LiveSettings(live_ladder=list(tenant.live_ladder))


@put("/v1/live/settings", request_max_body_size=4096, responses=errors(*ADMIN), opt=body(LiveSettingsChange))
async def live_settings_set(request: Request, store: NamedDependency[Store], tenant_directory: NamedDependency[TenantDirectory],
                            tenant: NamedDependency[Tenant]) -> LiveSettings:
    """Change the ladder; publishes that begin afterwards use it."""
    change = validation.decode(await request.body(), LiveSettingsChange)
    try:
        ladder = check_live_ladder(change.live_ladder)
    except TenantError as exc:
        raise BadInput("invalid_body", str(exc), "$.live_ladder") from None
    updated = msgspec.structs.replace(tenant, live_ladder=ladder)
    await asyncio.to_thread(save_tenant, store, updated)
    tenant_directory.forget(tenant.tenant_id)
    request.scope.setdefault("state", {})["wave_audit"] = {"before": {"live_ladder": list(tenant.live_ladder)},
                                                           "after": {"live_ladder": list(ladder)}}
    return LiveSettings(live_ladder=list(ladder))


ROUTES = [create_stream, list_streams, show_stream, playback_token, live_settings, live_settings_set]

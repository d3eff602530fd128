"""Player-facing routes: `/player/*` (the built script), `/embed/{id}`, the playback config
the player fetches (`/v1/playback/{id}`), and the welcome page `/`.

The config route is public and CORS-open like the beacons: the script embed runs on the
tenant's own site. Private media still needs its playback token here, so the config of a
private stream tells nothing without one.
"""

from __future__ import annotations

import re

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from core.openapi import errors
from core.validation import BadInput
from edge import media_files, media_layout
from edge.embed import pages
from edge.embed.wire import ConsentPrompt, PlaybackConfig

_PLAYER_FILE = re.compile(r"^[a-z0-9-]+\.js(\.map)?$")
_TYPES = {".js": "text/javascript; charset=utf-8", ".map": "application/json"}


def _media_id(media_id: str) -> str:
    if not media_layout.MEDIA_ID.match(media_id):
        raise BadInput("not_found", "no such video or stream", "$.path.media_id", status=404)
    return media_id


async def playback_config(state: State, media_id: str, token: str | None) -> PlaybackConfig:
    """The player's view of one video or stream (404 alike for unknown and not ready)."""
    edge = state.edge
    _media_id(media_id)
    q = f"?token={token}" if token else ""
    if media_id.startswith("st_"):
        stream = await edge.streams.get(media_id)
        if stream is None:
            raise media_files.not_found("no such video or stream")
        media_files.check_token(stream.playback == "private", edge.playback_tokens.valid(media_id, token))
        tenant_id, title, private = stream.tenant_id, stream.name, stream.playback == "private"
        hls, whep, poster, live = f"/live/{media_id}/{media_layout.PLAYLIST}", f"/whep/{media_id}", None, True
    else:
        video = await edge.video_cache.get(media_id)
        if video is None or video.status != "ready":
            raise media_files.not_found("no such video, or not ready yet")
        media_files.check_token(video.playback == "private", edge.playback_tokens.valid(media_id, token))
        tenant_id, title, private = video.tenant_id, video.title, video.playback == "private"
        hls, whep, live = f"/vod/{media_id}/{media_layout.PLAYLIST}", None, False
        has_poster = (media_layout.video_dir(edge.settings.media_dir, media_id) / media_layout.POSTER).exists()
        poster = f"/vod/{media_id}/{media_layout.POSTER}" if has_poster else None
    tenant = await edge.tenants.get(tenant_id)
    if tenant is None:
        raise media_files.not_found("no such video or stream")
    if private and poster:
        poster += q
    return PlaybackConfig(
        media_id=media_id,
        kind="stream" if live else "video",
        tenant_id=tenant_id,
        title=title,
        live=live,
        hls_url=hls + (q if private else ""),
        whep_url=(whep + (q if private else "")) if whep else None,
        poster_url=poster,
        consent=ConsentPrompt(tenant.consent_text, tenant.policy_version, tenant.identified_viewers,
                              list(tenant.allowed_origins), tenant.consent_mode, tenant.grants_valid_from_ms),
    )


@get("/v1/playback/{media_id:str}", responses=errors(400, 404))
async def playback(request: Request, state: State, media_id: FromPath[str]) -> PlaybackConfig:
    """What the player needs for a video or stream: URLs, poster, tenant, consent prompt."""
    return await playback_config(state, media_id, request.query_params.get("token"))


@get("/embed/{media_id:str}", media_type="text/html", responses=errors(400, 404))
async def embed(request: Request, state: State, media_id: FromPath[str]) -> Response[str]:
    """The iframe embed: a full-window player. Query: token, autoplay, muted, transport.

    Anyone can frame this page and write its URL, so nothing about the viewer comes from
    the query (a `consent=granted` here recorded grants no viewer gave): the host page's
    consent, viewer id and identity arrive by `postMessage` from the tenant's allowed
    origins, or the viewer answers the prompt."""
    config = await playback_config(state, media_id, request.query_params.get("token"))
    params = {k.replace("_", "-"): v for k, v in request.query_params.items()}
    return Response(
        pages.embed_page(media_id, config.title, params),
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": pages.embed_csp(config.consent.host_origins), "Cache-Control": "no-cache",
                 "Referrer-Policy": "no-referrer"},
    )


@get("/", media_type="text/html")
async def home(state: State) -> Response[str]:
    """Welcome page; shows the demo video in the player when there is one."""
    demo = state.edge.demo
    video = await state.edge.video_cache.get(demo.video_id) if demo else None
    ready = video is not None and video.status == "ready"
    return Response(
        pages.home_page(video.video_id if ready else None, video.title if ready else "", preparing=bool(demo) and not ready),
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": pages.HOME_CSP, "Cache-Control": "no-cache"},
    )


@get("/player/{name:str}", responses=errors(400, 404))
async def player_file(state: State, name: FromPath[str]) -> Response[bytes]:
    """The built player (`make` builds it into player/dist)."""
    if not _PLAYER_FILE.match(name):
        raise media_files.not_found("no such player file")
    path = state.edge.settings.player_dir / name
    try:
        data = await media_files.read(path)
    except BadInput:
        raise BadInput("not_found", f"{name} is not built (run `make`: it builds player/)", "$.path", 404) from None
    suffix = ".map" if name.endswith(".map") else ".js"
    return Response(data, media_type=_TYPES[suffix], headers={"Cache-Control": "public, max-age=300"})


@get("/favicon.ico", status_code=204, sync_to_thread=False)
def favicon() -> None:
    """Browsers ask on every page; an empty answer keeps the embed's console clean."""


ROUTES = [playback, embed, home, player_file, favicon]

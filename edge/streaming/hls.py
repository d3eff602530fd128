"""Live HLS: `/live/{stream_id}/{file}` from the directory of the stream's newest publish
(kept by the stream's owner, `live.LiveStreams`).

Playlists are rendered from the publish's playlists in memory (`llhls_timeline`), so a
blocking reload (`?_HLS_msn=N[&_HLS_part=M]`, RFC 8216bis 6.2.5.2) is answered the moment
that part exists, and a private stream's token goes onto every URI, parts included.
`index.m3u8` is the source's media playlist, or the multivariant playlist when the
publish has lower renditions (the tenant's live ladder). Parts, segments and init
sections are files (a front serves public ones itself); a request for the preload-hinted
part waits for it too.
"""

from __future__ import annotations

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from core.openapi import errors
from core.validation import BadInput
from edge import media_files, media_layout
from edge.streaming import llhls_playlist
from edge.streaming.llhls_timeline import LivePlaylists

MAX_MSN = 2**31
MAX_PART = 999


@get("/live/{stream_id:str}/{name:str}", responses=errors(400, 401, 404, 503))
async def live_file(request: Request, state: State, stream_id: FromPath[str], name: FromPath[str]) -> Response[bytes]:
    """A live playlist (blocking with `_HLS_msn`/`_HLS_part`), part or segment; private
    streams need `?token=`."""
    stream = await state.edge.streams.get(stream_id)
    if stream is None or not media_layout.SERVED_FILE.match(name):
        raise media_files.not_found()
    token = request.query_params.get("token")
    private = stream.playback == "private"
    media_files.check_token(private, state.edge.playback_tokens.valid(stream.stream_id, token))
    live = state.edge.live.get(stream.stream_id)
    directory = live.directory if live is not None else None
    if directory is None:
        raise media_files.not_found("not published yet")
    uri_token = token if private else None
    if name.endswith(".m3u8"):
        data = (await playlist(live.playlists, name, request.query_params, uri_token)).encode()
        uri_token = None  # already on every URI
    else:
        part = media_layout.PART.match(name)
        if part is not None and not (directory / name).exists():
            await _wait_for_part(live.playlists, part.group(1) or "", int(part.group(2)), int(part.group(3)))
        data = await media_files.read(directory / name)
    tenant = await state.edge.tenants.get(stream.tenant_id)
    if tenant is not None:
        state.edge.sessions.hls_request(tenant, stream.stream_id, state.edge.client_ip(request),
                                        request.headers.get("user-agent", ""), len(data))
    return media_files.respond(directory / name, data, playlist_cache="no-cache", token=uri_token)


def blocking_request(query) -> tuple[int, int | None] | None:
    """(msn, part) of a blocking reload, None for a plain one; bad values are a 400."""
    msn, part = query.get("_HLS_msn"), query.get("_HLS_part")
    if msn is None:
        if part is not None:
            raise BadInput("invalid_query", "_HLS_part needs _HLS_msn", "$.query._HLS_part")
        return None
    return _number(msn, "_HLS_msn", MAX_MSN), (None if part is None else _number(part, "_HLS_part", MAX_PART))


def _number(value: str, what: str, most: int) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > most:
        raise BadInput("invalid_query", f"{what} must be a whole number from 0 to {most}", f"$.query.{what}")
    return int(value)


async def playlist(playlists: LivePlaylists | None, name: str, query, token: str | None) -> str:
    """The text of a live playlist, once it holds what a blocking reload asks for."""
    wanted = blocking_request(query)
    renditions = playlists.renditions() if playlists is not None else []
    if name == media_layout.PLAYLIST and len(renditions) > 1:
        return llhls_playlist.multivariant(renditions, token)
    prefix = "" if name in (media_layout.PLAYLIST, media_layout.SOURCE_PLAYLIST) else name[:-len(".m3u8")] + "_"
    snap = playlists.get(prefix) if playlists is not None else None
    if snap is None and not (wanted and playlists is not None and prefix == ""):
        raise media_files.not_found("not there (yet, or any more)")
    if wanted is not None:
        msn, part = wanted
        if snap is not None and msn > snap.next_msn + 2:
            raise BadInput("invalid_query", f"_HLS_msn is more than two segments ahead of the live edge"
                           f" ({snap.next_msn})", "$.query._HLS_msn")
        limit = 3 * (snap.target_duration if snap is not None else 2)
        snap = await playlists.wait(prefix, lambda s: s.has(msn, part), limit)
        if snap is None:
            raise BadInput("not_ready", f"segment {msn} part {part} did not appear within {limit} s",
                           "$.query._HLS_msn", status=503)
    return llhls_playlist.media_playlist(snap, playlists.renditions(), token)


async def _wait_for_part(playlists: LivePlaylists | None, prefix: str, msn: int, index: int) -> None:
    """Hold a request for the next part (the preload hint) until it is written; any other
    part that is not there is a 404 at once (the caller reads the file)."""
    snap = playlists.get(prefix) if playlists is not None else None
    if snap is None or snap.ended:
        return
    upcoming = snap.next_part()
    if (msn, index) not in (upcoming, (upcoming[0] + 1, 0)):
        return
    await playlists.wait(prefix, lambda s: s.part_exists(msn, index) or s.next_msn > msn,
                         3 * snap.target_duration)


ROUTES = [live_file]

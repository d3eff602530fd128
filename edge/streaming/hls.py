"""Serving live HLS: `/live/{stream_id}/{file}` from the stream's pipeline directory.

File names are matched against the only names a pipeline writes (`index.m3u8`,
`init.mp4`, `seg_NNNNN.m4s`), and stream ids against their own pattern, so no request
can name a path outside the media directory: there is nothing to normalise or escape.
Playlists must never be cached (they change every second); segments never change.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath

from analytics.validation import BadInput

_FILE = re.compile(r"^(index\.m3u8|init\.mp4|seg_\d{5,9}\.m4s)$")
_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".mp4": "video/mp4", ".m4s": "video/iso.segment"}
_PLAYLIST_CACHE = "no-cache"
_SEGMENT_CACHE = "public, max-age=86400, immutable"


def live_dir(media_dir: Path, stream_id: str) -> Path:
    return media_dir / "live" / stream_id


@get("/live/{stream_id:str}/{name:str}")
async def live_file(request: Request, state: State, stream_id: FromPath[str], name: FromPath[str]) -> Response[bytes]:
    """A live playlist or segment; private streams need `?token=`."""
    stream = await state.edge.streams.get(stream_id)
    if stream is None or not _FILE.match(name):
        raise BadInput("not_found", "no such stream or file", "$.path", status=404)
    if stream.playback == "private" and not state.edge.playback_tokens.valid(
        stream.stream_id, request.query_params.get("token")
    ):
        raise BadInput("forbidden", "this stream needs a valid playback token (?token=)", "$.query.token", status=403)
    path = live_dir(state.edge.settings.media_dir, stream.stream_id) / name
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        raise BadInput("not_found", "not published yet, or already gone", "$.path", status=404) from None
    suffix = path.suffix
    if suffix == ".m3u8" and stream.playback == "private":
        data = _with_token(data, request.query_params.get("token", ""))
    return Response(
        data,
        media_type=_TYPES[suffix],
        headers={"Cache-Control": _PLAYLIST_CACHE if suffix == ".m3u8" else _SEGMENT_CACHE},
    )


def _with_token(playlist: bytes, token: str) -> bytes:
    """Carry the playback token onto every URI the playlist names (segments, init map)."""
    suffix = f"?token={token}".encode()
    lines = []
    for line in playlist.split(b"\n"):
        if line and not line.startswith(b"#"):
            line += suffix
        elif line.startswith(b'#EXT-X-MAP:URI="'):
            line = line.replace(b'.mp4"', b'.mp4' + suffix + b'"')
        lines.append(line)
    return b"\n".join(lines)


ROUTES = [live_file]

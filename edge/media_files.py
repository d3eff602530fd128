"""Serving HLS files (live and VOD) safely.

Routes match file names against the only names the packagers write
(`media_layout.SERVED_FILE`) and ids against their own patterns before they get here, so
no request can name a path outside the media directory: there is nothing to normalise or
escape. Playlists are never cached when live; segments never change.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from litestar import Response

from core.validation import BadInput

_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt; charset=utf-8",
}
SEGMENT_CACHE = "public, max-age=86400, immutable"


def not_found(message: str = "no such media or file") -> BadInput:
    return BadInput("not_found", message, "$.path", status=404)


def check_token(private: bool, valid: bool) -> None:
    if private and not valid:
        raise BadInput("forbidden", "this media needs a valid playback token (?token=)", "$.query.token", status=403)


async def read(path: Path) -> bytes:
    try:
        return await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        raise not_found("not there (yet, or any more)") from None


def respond(path: Path, data: bytes, *, playlist_cache: str, token: str | None) -> Response[bytes]:
    suffix = path.suffix
    if suffix == ".m3u8" and token:
        data = with_token(data, token)
    elif suffix == ".vtt" and token:
        data = storyboard_with_token(data, token)
    return Response(
        data,
        media_type=_TYPES[suffix],
        headers={"Cache-Control": playlist_cache if suffix in (".m3u8", ".vtt") else SEGMENT_CACHE},
    )


def with_token(playlist: bytes, token: str) -> bytes:
    """Carry the playback token onto every URI the playlist names (segments, init map)."""
    suffix = f"?token={token}".encode()
    lines = []
    for line in playlist.split(b"\n"):
        if line and not line.startswith(b"#"):
            line += suffix
        elif line.startswith(b'#EXT-X-MAP:URI="'):
            line = line.replace(b'.mp4"', b".mp4" + suffix + b'"')
        lines.append(line)
    return b"\n".join(lines)


def storyboard_with_token(vtt: bytes, token: str) -> bytes:
    """Carry the playback token onto the sprite images a storyboard's cues name
    (`sprite-0.jpg#xywh=...` -> `sprite-0.jpg?token=...#xywh=...`)."""
    return vtt.replace(b".jpg#", f".jpg?token={token}#".encode())

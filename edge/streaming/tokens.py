"""Signed playback tokens for private streams and videos.

`token = <expiry>.<hex HMAC-SHA256(secret, "<media_id>.<expiry>")>`: anyone holding it may
play that one id until it expires; nothing is stored per token. The secret comes from
`WAVE_SECRET_KEY`, else is generated once into `$WAVE_DATA_DIR/secret.key` (mode 0600), so
tokens survive restarts. Checks compare digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from core.auth import equal_secrets
from core.validation import ascii_int


def load_secret(data_dir: Path, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    path = data_dir / "secret.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


async def mint(request, tokens: "PlaybackTokens", media_id: str):
    """`POST .../playback-token` for a stream or a video: optional `{"ttl_s"}` body."""
    from core import validation
    from edge.streaming.wire import PlaybackToken, TokenRequest

    raw = await request.body()
    body = validation.decode(raw, TokenRequest) if raw.strip() else TokenRequest()
    token, expires = tokens.sign(media_id, body.ttl_s)
    return PlaybackToken(token=token, expires_at=expires)


class PlaybackTokens:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, media_id: str, ttl_s: int, now: float | None = None) -> tuple[str, int]:
        expires = int((now if now is not None else time.time()) + ttl_s)
        return f"{expires}.{self._mac(media_id, expires)}", expires

    def valid(self, media_id: str, token: str | None, now: float | None = None) -> bool:
        if not token:
            return False
        expires_text, _, mac = token.partition(".")
        expires = ascii_int(expires_text)  # "²".isdigit() is true: ASCII digits only
        if expires is None:
            return False
        expected = self._mac(media_id, expires)
        return equal_secrets(mac, expected) and expires > (now if now is not None else time.time())

    def _mac(self, media_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{media_id}.{expires}".encode(), hashlib.sha256).hexdigest()

"""Session history for the segments a front server sends on its own.

When nginx serves public segments straight from the link tree (`public_media`), the edge
never sees those requests, yet HLS play sessions (who watched what, bytes sent) are part
of the session history. nginx reports each such request as one syslog datagram on a unix
socket the edge listens on (`access_log syslog:server=unix:...`, a JSON line per request);
the edge feeds them to the same `SessionLog` its own requests go to. Nothing touches disk:
no access log file holds viewers' addresses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)
_URI = re.compile(r"^/(vod|live)/((?:vd|st)_[0-9a-f]{16})/")
MAX_UNIX_PATH = 107
BATCH_S = 0.2


class FrontRequest(msgspec.Struct):
    """What the shipped nginx `log_format wave_hls` writes for one request."""

    uri: str
    bytes: int
    addr: str
    ua: str = ""
    status: int = 200


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, handle) -> None:
        self._handle = handle
        self._decoder = msgspec.json.Decoder(FrontRequest)

    def datagram_received(self, data: bytes, addr) -> None:
        start = data.find(b"{")  # after the syslog header `<190>Nov 27 10:00:00 wave: `
        if start < 0:
            return
        try:
            request = self._decoder.decode(data[start:])
        except msgspec.DecodeError:
            log.warning("front log: a datagram that is not the expected JSON was ignored")
            return
        self._handle(request)


class FrontLog:
    """Listens on `socket_path`; each successful media request becomes session accounting."""

    def __init__(self, edge, socket_path: Path) -> None:
        self._edge = edge
        self.path = socket_path
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: set[asyncio.Task] = set()
        self._batch: dict[tuple[str, str, str, str], int] = {}

    async def start(self) -> bool:
        if len(str(self.path)) > MAX_UNIX_PATH:
            log.warning("front log socket path is too long for a unix socket; set WAVE_FRONT_LOG_SOCKET")
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self._handle), sock=sock)
        return True

    def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self.path.unlink(missing_ok=True)

    def _handle(self, request: FrontRequest) -> None:
        """Called per datagram (tens of thousands a second): sum, and account in batches."""
        m = _URI.match(request.uri)
        if m is None or not 200 <= request.status < 300:
            return
        key = (m.group(1), m.group(2), request.addr, request.ua)
        self._batch[key] = self._batch.get(key, 0) + request.bytes
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_later(BATCH_S, self._flush)

    def _flush(self) -> None:
        batch, self._batch = self._batch, {}
        task = asyncio.get_running_loop().create_task(self._account(batch))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _account(self, batch: dict[tuple[str, str, str, str], int]) -> None:
        edge = self._edge
        for (kind, media_id, addr, ua), size in batch.items():
            if kind == "vod":
                video = await edge.video_cache.get(media_id)
                tenant_id = video.tenant_id if video else None
            else:
                stream = await edge.streams.get(media_id)
                tenant_id = stream.tenant_id if stream else None
            tenant = await edge.tenants.get(tenant_id) if tenant_id else None
            if tenant is not None:
                edge.sessions.hls_request(tenant, media_id, addr, ua, size)

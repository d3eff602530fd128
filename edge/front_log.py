"""Session history for the segments a front server sends on its own.

When nginx serves public segments straight from the link tree (`public_media`), the edge
never sees those requests, yet HLS play sessions (who watched what, bytes sent) are part
of the session history. nginx appends one JSON line per such request to a file named by
the second it was served in (`front-log/1764230400.jsonl`); the edge takes every file of
a second that is over, adds its lines to the session history, and deletes it. So the
addresses in those files live a few seconds, like the beacon spool's: this is a hand-off,
not an access log.

Files, not datagrams: a syslog datagram per request made nginx wait on (or drop
messages to) a Python reader at tens of thousands of requests a second; an append to a
file costs nginx one `write` and the edge reads a second's worth at once, off the loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import msgspec

from edge.media_layout import MEDIA_ID_PATTERN

log = logging.getLogger(__name__)
_URI = re.compile(rf"^/(vod|live)/({MEDIA_ID_PATTERN})/")
_NAME = re.compile(r"^(\d{9,12})\.jsonl$")
POLL_S = 1.0

Key = tuple[str, str, str, str]  # kind, media id, address, user agent


class FrontRequest(msgspec.Struct):
    """What the shipped nginx `log_format wave_hls` writes for one request."""

    uri: str
    bytes: int
    addr: str
    at: float = 0.0
    ua: str = ""
    status: int = 200


_decoder = msgspec.json.Decoder(FrontRequest)


def read_second(path: Path) -> tuple[dict[Key, tuple[int, float]], int]:
    """Sum one file's successful media requests by client: key -> (bytes, last time).
    Returns the sums and how many lines were not the expected JSON."""
    sums: dict[Key, tuple[int, float]] = {}
    bad = 0
    for line in path.read_bytes().splitlines():
        if not line:
            continue
        try:
            request = _decoder.decode(line)
        except msgspec.DecodeError:
            bad += 1
            continue
        m = _URI.match(request.uri)
        if m is None or not 200 <= request.status < 300:
            continue
        key = (m.group(1), m.group(2), request.addr, request.ua)
        size, last = sums.get(key, (0, 0.0))
        sums[key] = (size + request.bytes, max(last, request.at))
    return sums, bad


def take_finished(directory: Path, now: float) -> tuple[dict[Key, tuple[int, float]], int]:
    """Read and delete every file of a second that ended at least a second ago."""
    total: dict[Key, tuple[int, float]] = {}
    bad = 0
    if not directory.is_dir():
        return total, bad
    for path in directory.iterdir():
        m = _NAME.match(path.name)
        if m is None or int(m.group(1)) >= int(now) - 1:
            continue
        sums, wrong = read_second(path)
        path.unlink(missing_ok=True)
        bad += wrong
        for key, (size, last) in sums.items():
            prev_size, prev_last = total.get(key, (0, 0.0))
            total[key] = (prev_size + size, max(prev_last, last))
    return total, bad


class FrontLog:
    """Every `POLL_S`, turns the front's finished files into HLS session accounting."""

    def __init__(self, edge, directory: Path) -> None:
        self._edge = edge
        self.directory = directory
        self._task: asyncio.Task | None = None
        self.ignored = 0  # lines that were not the expected JSON

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self.collect(time.time() + 2)  # whatever the front wrote until now

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.collect(time.time())
            except Exception:  # one bad pass must not end the accounting for good
                log.exception("front log pass failed")

    async def collect(self, now: float) -> None:
        sums, bad = await asyncio.to_thread(take_finished, self.directory, now)
        if bad:
            self.ignored += bad
            log.warning("front log: %d lines were not the expected JSON", bad)
        edge = self._edge
        for (kind, media_id, addr, ua), (size, at) in sums.items():
            if kind == "vod":
                video = await edge.video_cache.get(media_id)
                tenant_id = video.tenant_id if video else None
            else:
                stream = await edge.streams.get(media_id)
                tenant_id = stream.tenant_id if stream else None
            tenant = await edge.tenants.get(tenant_id) if tenant_id else None
            if tenant is not None:
                edge.sessions.hls_request(tenant, media_id, addr, ua, size, at=at or None)

"""A WHIP publish session: one peer connection feeding one stream's encoder pipeline.

The session ends, once, on whichever comes first: the publisher's DELETE, the peer
connection failing or closing, its tracks ending, or 10 s without any media.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Awaitable, Callable

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from analytics.tenants import Tenant
from edge.streaming.pipeline import LivePipeline

log = logging.getLogger(__name__)

SILENCE_S = 10.0


class PublishSession:
    def __init__(
        self,
        stream_id: str,
        pc: RTCPeerConnection,
        pipeline_factory: Callable[[bool], Awaitable[LivePipeline]],
        on_end: Callable[["PublishSession"], Awaitable[None]],
        *,
        tenant: Tenant,
        client_ip: str | None,
        user_agent: str,
        silence_s: float = SILENCE_S,
    ) -> None:
        self.tenant = tenant
        self.client_ip = client_ip
        self.user_agent = user_agent
        self.session_id = secrets.token_hex(12)
        self.stream_id = stream_id
        self.pc = pc
        self.started = time.time()
        self.pipeline: LivePipeline | None = None
        self._pipeline_factory = pipeline_factory
        self._on_end = on_end
        self._silence_s = silence_s
        self._last_media = time.monotonic()
        self._tracks: list[MediaStreamTrack] = []
        self._tasks: list[asyncio.Task] = []
        self._ended = asyncio.Event()
        self._finished = asyncio.Event()
        self.end_reason: str | None = None
        pc.on("track", self._tracks.append)  # fires inside setRemoteDescription
        pc.on("connectionstatechange", self._state_changed)

    async def start(self) -> None:
        """Begin consuming media; call after the answer is set."""
        has_audio = any(t.kind == "audio" for t in self._tracks)
        self.pipeline = await self._pipeline_factory(has_audio)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(track)) for track in self._tracks]
        self._tasks.append(loop.create_task(self._watchdog()))

    async def end(self, reason: str) -> None:
        """End the publish, once; a second caller (a DELETE racing the peer connection's
        close) returns when the first has finished, so its answer is true when sent."""
        if self._ended.is_set():
            if asyncio.current_task() not in self._tasks:  # our own tasks are being cancelled
                await self._finished.wait()
            return
        self._ended.set()
        try:
            await self._end(reason)
        finally:
            self._finished.set()

    async def _end(self, reason: str) -> None:
        self.end_reason = reason
        log.info("publish of %s ended: %s", self.stream_id, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self.pc.close()
        if self.pipeline is not None:
            self.pipeline.close()
        await self._on_end(self)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def idle_s(self) -> float:
        """Seconds since the last media frame (or since the session began, before any)."""
        return time.monotonic() - self._last_media

    async def _consume(self, track: MediaStreamTrack) -> None:
        feed = self.pipeline.feed_video if track.kind == "video" else self.pipeline.feed_audio
        try:
            while True:
                frame = await track.recv()
                self._last_media = time.monotonic()
                feed(frame)
        except MediaStreamError:
            await self.end(f"{track.kind} track ended")

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if time.monotonic() - self._last_media > self._silence_s:
                await self.end(f"no media for {self._silence_s:g} s")
                return

    async def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.end(f"peer connection {self.pc.connectionState}")

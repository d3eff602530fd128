"""A WHIP publish session: one peer connection feeding one stream's encoder pipeline.

The session ends, once, on whichever comes first: the publisher's DELETE, the peer
connection not connecting in time, failing (consent lost) or closing (`liveness`), its
tracks ending, or 10 s without any media. `end_code` says which, for the metrics. What a
publish's start and end mean for the stream (encoder, recording, viewers) is the stream's
owner's business (`live.LiveStream`), reached through `pipeline_factory` and `on_end`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Awaitable, Callable

from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from core.tenants import Tenant
from edge.streaming import liveness
from edge.streaming.pipeline import LivePipeline

log = logging.getLogger(__name__)

SILENCE_S = 10.0
CONNECT_GRACE_S = 5.0


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
        connect_timeout_s: float = 10.0,
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
        self._media_seen = False
        self._tracks: list[MediaStreamTrack] = []
        self._tasks: list[asyncio.Task] = []
        self._ended = asyncio.Event()
        self._finished = asyncio.Event()
        self.end_reason: str | None = None
        self.end_code = "other"
        pc.on("track", self._tracks.append)  # fires inside setRemoteDescription
        self._watch = liveness.Watch(pc, connect_timeout_s, self._dead)

    async def start(self) -> None:
        """Begin consuming media; call after the answer is set."""
        if self.ended:  # ended before its answer went out (replaced, timed out): nothing to start
            return
        has_audio = any(t.kind == "audio" for t in self._tracks)
        self.pipeline = await self._pipeline_factory(has_audio)
        if self.ended:  # while the recording began
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._consume(track)) for track in self._tracks]
        self._tasks.append(loop.create_task(self._watchdog()))

    def abandon(self) -> None:
        """The offer failed before the publish began: end without ending a publish (no
        history row, no metric), so closing the peer connection afterwards is a no-op."""
        self._ended.set()
        self._finished.set()
        self._watch.cancel()

    async def end(self, reason: str, code: str = "other") -> None:
        """End the publish, once: `reason` for people (the log), `code` for the metric's
        label. A second caller (a DELETE racing the peer connection's close) returns when
        the first has finished, so its answer is true when sent."""
        if self._ended.is_set():
            if asyncio.current_task() not in self._tasks:  # our own tasks are being cancelled
                await self._finished.wait()
            return
        self._ended.set()
        try:
            await self._end(reason, code)
        finally:
            self._finished.set()

    async def _end(self, reason: str, code: str) -> None:
        self.end_reason, self.end_code = reason, code
        self._watch.cancel()
        log.info("publish of %s ended: %s", self.stream_id, reason)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self.pc.close()
        await self._on_end(self)  # the stream's owner closes the pipeline

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def idle_s(self) -> float:
        """Seconds since the last media frame (or since the session began, before any)."""
        return time.monotonic() - self._last_media

    @property
    def media_seen(self) -> bool:
        """A frame has arrived (before that, `idle_s` counts from the session's start)."""
        return self._media_seen

    def takeover_idle_s(self) -> float:
        """How long this session has been silent, as a new publish replacing it sees it. A
        session that has not had its first frame yet is still connecting (ICE, then DTLS:
        ffmpeg's WHIP muxer allows itself 5 s, a TURN relay takes its time), so it counts as
        silent only from CONNECT_GRACE_S on: a second encoder on the same key does not end
        a publish that is about to start."""
        if self._media_seen:
            return self.idle_s()
        return max(0.0, self.idle_s() - CONNECT_GRACE_S)

    async def _consume(self, track: MediaStreamTrack) -> None:
        feed = self.pipeline.feed_video if track.kind == "video" else self.pipeline.feed_audio
        try:
            while True:
                frame = await track.recv()
                self._last_media = time.monotonic()
                self._media_seen = True
                feed(frame)
        except MediaStreamError:
            await self.end(f"{track.kind} track ended", "track_ended")

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if time.monotonic() - self._last_media > self._silence_s:
                await self.end(f"no media for {self._silence_s:g} s", "silence")
                return

    async def _dead(self, code: str) -> None:
        await self.end(f"peer connection {self.pc.connectionState} ({code})", code)

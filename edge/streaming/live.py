"""The live streams on this edge: one `LiveStream` per stream, from publish to last viewer.

A stream's live state used to be spread over the app (publishers, viewers, live
directories, recordings) and a registry of flags, and every route climbed back up to the
app to change it. Here one object holds it all (its publisher session, the encoder
pipeline and the WHEP relay it feeds, the viewers, the directory of its newest publish
and that publish's recording) and creates and ends each of them; the WHIP, WHEP, HLS and
events routes, the streams API and the edge's shutdown go through `LiveStreams`.

What happens when, exactly once:
- a publish is *claimed* (`LiveStreams.publish`) before its answer is made, so a racing
  second publisher gets 409; a silent publisher is replaced (`make_room`);
- its media begins (the first frames' kinds known): the recording's row and directory,
  the relay, the LL-HLS writers (the source's and the tenant's lower renditions'), one
  encoder feeding them all, the public link;
- it ends (DELETE, a dead peer connection, silence, takeover, shutdown, offboarding):
  the encoder is closed (the playlist gets #EXT-X-ENDLIST), its viewers end, the session
  history gets its row, the recording is finalized, watchers of the events resource hear;
- a viewer ends once, whoever asks first.
Ended sessions are remembered for `ENDED_KEPT_S`, so a DELETE that comes after the edge
ended the session (clients close their peer connection first) still answers 200.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aiortc import RTCPeerConnection

from core.metrics import Counter
from core.tenants import Tenant
from edge import media_layout
from edge.public_media import PublicLinks
from edge.sessions import row as session_row, SessionLog
from edge.streaming import liveness
from edge.streaming.hls_writer import HlsWriter
from edge.streaming.llhls_timeline import LivePlaylists
from edge.streaming.pipeline import LivePipeline
from edge.streaming.publish import PublishSession
from edge.streaming.registry import Stream
from edge.streaming.renditions import AUDIO_BPS, Rendition, bitrate_for
from edge.streaming.relay import Relay, RelayOutput

if TYPE_CHECKING:
    from edge.streaming.whep import ViewerSession

log = logging.getLogger(__name__)


class Recorder(Protocol):
    """Keeps each publish as a video (edge/vod/recordings.py): the live segments are it."""

    async def begin(self, stream: Stream) -> tuple[object, Path]:
        """A recording for a publish beginning: its handle and the directory to write to."""

    async def end(self, recording: object, pipeline: LivePipeline) -> object:
        """The publish ended: wait for the pipeline's last segment, then finish the recording."""


class Busy(Exception):
    """The stream has a publisher; `retry_after` seconds until it may be replaced (None:
    another new publish took it just now)."""

    def __init__(self, retry_after: int | None = None) -> None:
        super().__init__("this stream already has a publisher")
        self.retry_after = retry_after


class LiveStream:
    """One stream on this edge. Kept after a publish ends: its directory still serves the
    ended playlist, and its events resource still answers, until the next publish."""

    def __init__(self, stream_id: str, streams: "LiveStreams") -> None:
        self.stream_id = stream_id
        self._streams = streams
        self.publisher: PublishSession | None = None
        self.pipeline: LivePipeline | None = None  # the publisher's encoder, once media began
        self.relay: Relay | None = None  # the WHEP viewers' fan-out of that encoder
        self.recording: object | None = None  # the recorder's handle for this publish
        self.directory: Path | None = None  # the newest publish's live HLS (its recording)
        self.playlists: LivePlaylists | None = None  # that publish's LL-HLS playlists, in memory
        self.viewers: dict[str, ViewerSession] = {}
        self.publishing_since: float | None = None
        # Set (and replaced) on every change, so a waiter learns of it without polling: the
        # WHEP events resource tells viewers the stream ended the moment it does.
        self.changed = asyncio.Event()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def describe(self) -> dict:
        since = self.publishing_since
        return {
            "publishing": since is not None,
            "publishing_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)) if since else None,
            "viewers": len(self.viewers),
        }

    def playing_to(self, session_id: str) -> bool:
        """Whether the stream is published and this viewer session is watching it."""
        return self.publishing_since is not None and session_id in self.viewers

    # -- the publish ------------------------------------------------------------------
    async def _begin_media(self, stream: Stream, session: PublishSession, audio: bool) -> LivePipeline:
        """The publisher's tracks are known: recording, relay, HLS writer, one encoder."""
        streams = self._streams
        recording, directory = await streams.recorder.begin(stream)
        relay = Relay()
        loop = asyncio.get_running_loop()
        playlists = LivePlaylists()
        # The encoder's outputs, in the order it calls them: the relay first, so WebRTC
        # viewers never wait on the muxer; then the source's LL-HLS writer.
        publish = playlists.handover(loop)
        outputs = [RelayOutput(relay, loop), HlsWriter(directory, publish=publish)]
        # The tenant's lower renditions, each with its own writer (used only below the source).
        ladder = [Rendition(height, bitrate_for(height), HlsWriter(
            directory, prefix=media_layout.rendition_prefix(height), publish=publish,
            nominal_bps=bitrate_for(height) + AUDIO_BPS)) for height in session.tenant.live_ladder]
        pipeline = LivePipeline(stream.stream_id, outputs, audio=audio, renditions=ladder)
        if stream.playback == "public":
            streams.links.link("live", stream.stream_id, directory)
        self.directory, self.playlists = directory, playlists
        if self.publisher is not session:  # it ended while the recording began: finish at once
            pipeline.close()
            streams.finish_recording(recording, pipeline)
            return pipeline
        self.pipeline, self.relay, self.recording = pipeline, relay, recording
        return pipeline

    def _on_air(self, session: PublishSession) -> None:
        if self.publisher is session and not session.ended:
            self.publishing_since = session.started
            self.notify()

    async def _publish_ended(self, session: PublishSession) -> None:
        streams = self._streams
        pipeline = relay = recording = None
        if self.publisher is session:
            self.publisher = None
            pipeline, relay, recording = self.pipeline, self.relay, self.recording
            self.pipeline = self.relay = self.recording = None
        if pipeline is not None:
            pipeline.close()  # flushes the encoder; the HLS writer ends the playlist
        if relay is not None:
            relay.close()
        streams.closed.inc(kind="whip", reason=session.end_code)
        streams.session_ended(self, session.session_id)
        for viewer in list(self.viewers.values()):
            await self.end_viewer(viewer, "publish_ended")  # first: they are watching nothing now
        await streams.history.record(session_row(
            session.tenant, "publish", session.stream_id, session.session_id, session.client_ip,
            session.user_agent, session.started, time.time(), 0))
        if recording is not None:
            streams.finish_recording(recording, pipeline)
        self.publishing_since = None
        self.notify()

    # -- viewers ----------------------------------------------------------------------
    def add_viewer(self, session: ViewerSession, pipeline: LivePipeline) -> bool:
        """Attach a WHEP viewer to the relay of `pipeline`, the encoder its answer was made
        for; False if that publish has ended meanwhile."""
        if self.pipeline is not pipeline or self.relay is None:
            return False
        self.viewers[session.session_id] = session
        for track in session.tracks:
            self.relay.add(track)
        pipeline.request_keyframe()  # the new viewer starts within a frame, not a GOP
        session.watch = liveness.Watch(session.pc, self._streams.connect_timeout_s,
                                       lambda reason: self.end_viewer(session, reason))
        return True

    async def end_viewer(self, session: ViewerSession, reason: str = "other") -> None:
        """End a WHEP viewer once, whoever asks first; `reason` labels the closed-sessions metric."""
        if self.viewers.pop(session.session_id, None) is None:
            return
        streams = self._streams
        if session.watch is not None:
            session.watch.cancel()
        streams.closed.inc(kind="whep", reason=reason)
        streams.session_ended(self, session.session_id)
        await streams.history.record(session_row(
            session.tenant, "whep", session.stream_id, session.session_id, session.client_ip,
            session.user_agent, session.started, time.time(), sum(t.bytes_sent for t in session.tracks)))
        if self.relay is not None:
            for track in session.tracks:
                self.relay.remove(track)
        await session.pc.close()


class LiveStreams:
    """Every stream live (or lately live) on this edge, by stream id."""

    ENDED_KEPT_S = 120.0

    def __init__(self, recorder: Recorder, links: PublicLinks, history: SessionLog, closed: Counter, *,
                 silence_s: float, connect_timeout_s: float) -> None:
        self.recorder = recorder
        self.links = links
        self.history = history
        self.closed = closed  # wave_rtc_sessions_closed_total{kind, reason}
        self.silence_s = silence_s
        self.connect_timeout_s = connect_timeout_s
        self.finishing: set[asyncio.Task] = set()  # recordings being finalized
        self._streams: dict[str, LiveStream] = {}
        self._ended: dict[str, tuple[str, float]] = {}  # session id -> (stream id, ended at)

    # -- lookups ----------------------------------------------------------------------
    def get(self, stream_id: str) -> LiveStream | None:
        return self._streams.get(stream_id)

    def stream(self, stream_id: str) -> LiveStream:
        live = self._streams.get(stream_id)
        if live is None:
            live = self._streams[stream_id] = LiveStream(stream_id, self)
        return live

    def publisher(self, stream_id: str) -> PublishSession | None:
        live = self._streams.get(stream_id)
        return live.publisher if live is not None else None

    def publishers(self) -> dict[str, PublishSession]:
        """Stream id -> its publisher, for every stream publishing (or claimed) now."""
        return {sid: live.publisher for sid, live in self._streams.items() if live.publisher is not None}

    def viewer(self, stream_id: str, session_id: str) -> ViewerSession | None:
        live = self._streams.get(stream_id)
        return live.viewers.get(session_id) if live is not None else None

    def viewers(self) -> dict[str, ViewerSession]:
        """Session id -> WHEP viewer, over every stream."""
        return {sid: viewer for live in self._streams.values() for sid, viewer in live.viewers.items()}

    def directory(self, stream_id: str) -> Path | None:
        """Where the stream's newest publish writes (or wrote) its live HLS."""
        live = self._streams.get(stream_id)
        return live.directory if live is not None else None

    def describe(self, stream_id: str) -> dict:
        live = self._streams.get(stream_id)
        return live.describe() if live is not None else {"publishing": False, "publishing_since": None, "viewers": 0}

    # -- publishing -------------------------------------------------------------------
    async def make_room(self, stream_id: str, takeover_s: float) -> None:
        """Free the stream for a new publish, or raise `Busy`: a current publisher that has
        sent no media for `takeover_s` is ended first (a crashed encoder is replaced at once)."""
        current = self.publisher(stream_id)
        if current is None:
            return
        wait = takeover_s - current.takeover_idle_s()
        if wait > 0:
            raise Busy(max(1, math.ceil(wait)))
        await current.end("replaced by a new publish", "replaced")
        if self.publisher(stream_id) is not None:  # another POST took it while the old one ended
            raise Busy()

    def publish(self, stream: Stream, pc: RTCPeerConnection, *, tenant: Tenant, client_ip: str | None,
                user_agent: str) -> PublishSession:
        """Claim the stream for a new publish session (before its answer is made, so a
        racing second publisher gets `Busy`)."""
        live = self.stream(stream.stream_id)
        if live.publisher is not None:
            raise Busy()
        session = PublishSession(stream.stream_id, pc, lambda audio: live._begin_media(stream, session, audio),
                                 live._publish_ended, tenant=tenant, client_ip=client_ip, user_agent=user_agent,
                                 silence_s=self.silence_s, connect_timeout_s=self.connect_timeout_s)
        live.publisher = session
        return session

    def release(self, session: PublishSession) -> None:
        """The offer failed before the publish began: drop the claim, end nothing."""
        live = self._streams.get(session.stream_id)
        if live is not None and live.publisher is session:
            live.publisher = None
        session.abandon()

    def on_air(self, session: PublishSession) -> None:
        """The publish answered and its media flows: the stream is live."""
        self.stream(session.stream_id)._on_air(session)

    async def end_tenant(self, tenant_id: str, reason: str, code: str) -> None:
        """End every publish of a tenant (offboarding); their viewers end with them."""
        for session in [s for s in self.publishers().values() if s.tenant.tenant_id == tenant_id]:
            await session.end(reason, code)

    async def stop(self) -> None:
        """The edge shuts down: every viewer, then every publish, ends."""
        for viewer in list(self.viewers().values()):
            await self.stream(viewer.stream_id).end_viewer(viewer, "shutdown")
        for session in list(self.publishers().values()):
            await session.end("edge shutting down", "shutdown")

    # -- bookkeeping ------------------------------------------------------------------
    def finish_recording(self, recording: object, pipeline: LivePipeline) -> None:
        task = asyncio.get_running_loop().create_task(self.recorder.end(recording, pipeline))
        self.finishing.add(task)
        task.add_done_callback(self.finishing.discard)

    def session_ended(self, live: LiveStream, session_id: str) -> None:
        now = time.monotonic()
        if len(self._ended) >= 1024:  # sweep only when it grew: O(1) amortised per session
            self._ended = {k: v for k, v in self._ended.items() if now - v[1] < self.ENDED_KEPT_S}
        self._ended[session_id] = (live.stream_id, now)
        live.notify()

    def ended_recently(self, stream_id: str, session_id: str) -> bool:
        entry = self._ended.get(session_id)
        return entry is not None and entry[0] == stream_id and time.monotonic() - entry[1] < self.ENDED_KEPT_S

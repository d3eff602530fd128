"""The `streams` table and the live state of streams on this edge.

Durable facts (name, owner, playback mode, publish-token hash) live in ClickHouse; live
state (who publishes since when, how many watch) is this edge's own, in memory.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

import msgspec

from analytics.cache import TTLCache
from analytics.store import Store
from analytics.tenants import hash_key
from edge.media_layout import STREAM_ID, new_stream_id

Playback = Literal["public", "private"]


class Stream(msgspec.Struct, frozen=True):
    stream_id: str
    tenant_id: str
    name: str
    playback: Playback
    publish_token_hash: str


@dataclass
class LiveState:
    publishing_since: float | None = None
    viewers: set[str] = field(default_factory=set)
    # Set (and replaced) on every change, so a waiter learns of it without polling: the
    # WHEP events resource tells viewers the stream ended the moment it does.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def create_stream(store: Store, tenant_id: str, name: str, playback: str) -> tuple[Stream, str]:
    """A new stream and its publish token (returned once, stored as a hash)."""
    token = "pt_" + secrets.token_urlsafe(32)
    stream = Stream(new_stream_id(), tenant_id, name, playback, hash_key(token))  # type: ignore[arg-type]
    store.command(
        "INSERT INTO streams (stream_id, tenant_id, name, publish_token_hash, playback, created_at, updated_at)"
        " VALUES ({s:String}, {t:String}, {n:String}, {h:String}, {p:String}, now64(6), now64(6))",
        parameters={"s": stream.stream_id, "t": tenant_id, "n": name, "h": stream.publish_token_hash, "p": playback},
    )
    return stream, token


_SELECT = "SELECT stream_id, tenant_id, name, toString(playback), publish_token_hash FROM streams FINAL"


def get_stream(store: Store, stream_id: str) -> Stream | None:
    if not STREAM_ID.match(stream_id):
        return None
    rows = store.rows(f"{_SELECT} WHERE stream_id = {{s:String}} AND NOT deleted", {"s": stream_id})
    return Stream(*rows[0]) if rows else None


def list_streams(store: Store, tenant_id: str) -> list[Stream]:
    rows = store.rows(f"{_SELECT} WHERE tenant_id = {{t:String}} AND NOT deleted ORDER BY created_at", {"t": tenant_id})
    return [Stream(*row) for row in rows]


def token_matches(stream: Stream, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(hash_key(token), stream.publish_token_hash)


class LiveRegistry:
    """Which streams publish on this edge right now, who watches them, and which WHIP/WHEP
    sessions ended a moment ago.

    The last is for DELETE: clients such as `whip-whep` close their peer connection before
    they send DELETE, so the edge has usually ended the session already; a DELETE of a
    session that ended within `ENDED_KEPT_S` answers 200, as if it had ended it, and only
    an id never seen (or long gone) is a 404."""

    ENDED_KEPT_S = 120.0

    def __init__(self) -> None:
        self._live: dict[str, LiveState] = {}
        self._ended: dict[str, tuple[str, float]] = {}  # session id -> (stream id, ended at)

    def state(self, stream_id: str) -> LiveState:
        return self._live.setdefault(stream_id, LiveState())

    def publish_started(self, stream_id: str, since: float) -> None:
        state = self.state(stream_id)
        state.publishing_since = since
        state.notify()

    def publish_stopped(self, stream_id: str) -> None:
        state = self.state(stream_id)
        state.publishing_since = None
        state.notify()

    def session_ended(self, stream_id: str, session_id: str) -> None:
        now = time.monotonic()
        if len(self._ended) >= 1024:  # sweep only when it grew: O(1) amortised per session
            self._ended = {k: v for k, v in self._ended.items() if now - v[1] < self.ENDED_KEPT_S}
        self._ended[session_id] = (stream_id, now)
        self.state(stream_id).notify()

    def ended_recently(self, stream_id: str, session_id: str) -> bool:
        entry = self._ended.get(session_id)
        return entry is not None and entry[0] == stream_id and time.monotonic() - entry[1] < self.ENDED_KEPT_S

    def describe(self, stream_id: str) -> dict:
        state = self._live.get(stream_id) or LiveState()
        since = state.publishing_since
        return {
            "publishing": since is not None,
            "publishing_since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)) if since else None,
            "viewers": len(state.viewers),
        }


class StreamCache:
    """Stream lookups for playback and publish paths, cached briefly (segments are
    requested every second by every viewer; the row changes rarely)."""

    def __init__(self, store: Store, ttl_s: float = 5.0) -> None:
        self._store = store
        self._cache: TTLCache[Stream] = TTLCache(ttl_s)

    async def get(self, stream_id: str) -> Stream | None:
        if not STREAM_ID.match(stream_id):
            return None
        return await self._cache.get(stream_id, lambda: get_stream(self._store, stream_id))

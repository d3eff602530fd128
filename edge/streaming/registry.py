"""The `streams` table: durable facts about streams (name, owner, playback mode,
publish-token hash), in ClickHouse. Their live state on this edge (who publishes since
when, who watches) is in memory, owned by `live.LiveStreams`.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Literal

import msgspec

from core.cache import TTLCache
from core.regions import region_of
from core.store import Store
from core.tenants import hash_key
from edge.media_layout import STREAM_ID, new_stream_id

Playback = Literal["public", "private"]


class Stream(msgspec.Struct, frozen=True):
    stream_id: str
    tenant_id: str
    name: str
    playback: Playback
    publish_token_hash: str


def create_stream(store: Store, tenant_id: str, name: str, playback: str) -> tuple[Stream, str]:
    """A new stream and its publish token (returned once, stored as a hash)."""
    token = "pt_" + secrets.token_urlsafe(32)
    stream = Stream(new_stream_id(region_of(tenant_id)), tenant_id, name, playback, hash_key(token))  # type: ignore[arg-type]
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

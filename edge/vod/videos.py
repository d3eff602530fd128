"""The `videos` table: recordings and uploads, their processing state and metadata.

Rows are versioned (ReplacingMergeTree on `updated_at`): an update writes the whole row
again, so reads take the newest version with FINAL.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

from core import cluster
from core.cache import TTLCache
from core.store import Store
from edge.media_layout import VIDEO_ID, new_video_id  # noqa: F401 - a video's id, made here for callers
from edge.vod.package import Probe

Status = Literal["recording", "processing", "ready", "failed"]


class Video(msgspec.Struct, kw_only=True):
    video_id: str
    tenant_id: str
    title: str = ""
    tags: list[str] = []
    metadata: dict[str, str] = {}
    source: Literal["recording", "upload"] = "upload"
    stream_id: str = ""
    playback: Literal["public", "private"] = "public"
    status: Status = "processing"
    progress: float = 0.0
    reason: str = ""
    duration_s: float = 0.0
    width: int = 0
    height: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    size_bytes: int = 0
    created_at: float = 0.0
    deleted: bool = False

    def mark_ready(self, probe: "Probe") -> None:
        """Ready to play, described by what the packaged files really contain."""
        self.status, self.progress, self.reason = "ready", 100.0, ""
        self.duration_s, self.size_bytes = probe.duration_s, probe.size_bytes
        self.width, self.height = probe.width, probe.height
        self.video_codec, self.audio_codec = probe.video_codec, probe.audio_codec


_FIELDS = [f for f in Video.__struct_fields__]
_SELECT_COLUMNS = ", ".join(
    {
        "source": "toString(source)",
        "playback": "toString(playback)",
        "status": "toString(status)",
        "created_at": "toUnixTimestamp64Micro(created_at) / 1e6",
    }.get(f, f)
    for f in _FIELDS
)


def save(store: Store, video: Video) -> None:
    """Write the whole row as its newest version (one JSON row: no per-type binding)."""
    if not video.created_at:
        video.created_at = time.time()
    row = msgspec.structs.asdict(video) | {"updated_at": time.time()}
    store.insert_json_lines("videos", msgspec.json.encode(row) + b"\n")


def get(store: Store, video_id: str) -> Video | None:
    if not VIDEO_ID.match(video_id):
        return None
    rows = store.rows(
        f"SELECT {_SELECT_COLUMNS} FROM videos FINAL WHERE video_id = {{v:String}} AND NOT deleted",
        {"v": video_id},
    )
    return _video(rows[0]) if rows else None


def list_for(store: Store, tenant_id: str, tag: str | None = None) -> list[Video]:
    where = "tenant_id = {t:String} AND NOT deleted"
    params: dict = {"t": tenant_id}
    if tag:
        where += " AND has(tags, {tag:String})"
        params["tag"] = tag
    rows = store.rows(f"SELECT {_SELECT_COLUMNS} FROM videos FINAL WHERE {where} ORDER BY created_at DESC", params)
    return [_video(row) for row in rows]


def ids_ever_of(store: Store, tenant_id: str) -> list[str]:
    """Every video id the tenant ever had, deleted ones included (their files may linger)."""
    return [r[0] for r in store.rows("SELECT DISTINCT video_id FROM videos WHERE tenant_id = {t:String}",
                                     {"t": tenant_id})]


def in_status(store: Store, status: str) -> list[Video]:
    rows = store.rows(
        f"SELECT {_SELECT_COLUMNS} FROM videos FINAL WHERE status = {{s:String}} AND NOT deleted", {"s": status}
    )
    return [_video(row) for row in rows]


def _video(row: tuple) -> Video:
    values = dict(zip(_FIELDS, row))
    values["tags"] = list(values["tags"])
    values["metadata"] = dict(values["metadata"])
    values["progress"] = float(values["progress"])
    values["created_at"] = float(values["created_at"])
    return Video(**values)


def delete(store: Store, video: Video) -> None:
    """Remove every version of the row (not a tombstone: the data must be gone)."""
    store.command(cluster.delete_from("videos", "video_id = {v:String}"), parameters={"v": video.video_id})


class VideoCache:
    """Video lookups for `/vod/` (every segment request of every viewer), cached briefly;
    this edge's own edits and deletions drop the entry at once."""

    def __init__(self, store: Store, ttl_s: float = 5.0) -> None:
        self._store = store
        self._cache: TTLCache[Video] = TTLCache(ttl_s)

    async def get(self, video_id: str) -> Video | None:
        return await self._cache.get(video_id, lambda: get(self._store, video_id))

    def forget(self, video_id: str) -> None:
        self._cache.forget(video_id)

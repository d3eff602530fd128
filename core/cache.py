"""Expiring lookups for hot paths: ClickHouse is asked at most once per key per `ttl_s`.

Every request names a tenant, a stream or a video, and every HLS viewer asks each
second; the rows behind them change rarely, and another edge's change may show up
`ttl_s` late. A miss is loaded once (in a thread), however many requests wait on it, so
an entry expiring under load does not become a stampede of identical queries.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Generic, TypeVar

V = TypeVar("V")


def drop_oldest_tenth(entries: dict, size: int) -> None:
    """Make room in a full dict by its oldest tenth (insertion order), not by clearing it:
    a flood of made-up keys must not evict every real one at once."""
    for key in list(entries)[: max(1, size // 10)]:
        del entries[key]


class TTLCache(Generic[V]):
    def __init__(self, ttl_s: float, miss_ttl_s: float | None = None, max_entries: int = 50_000) -> None:
        self._ttl = ttl_s
        self._miss_ttl = ttl_s if miss_ttl_s is None else miss_ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, V | None]] = {}
        self._loading: dict[str, asyncio.Task] = {}

    def lookup(self, key: str) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def put(self, key: str, value: V | None) -> None:
        if len(self._entries) >= self._max:
            self._evict()
        ttl = self._ttl if value is not None else self._miss_ttl
        self._entries[key] = (time.monotonic() + ttl, value)

    def _evict(self) -> None:
        """Full: drop what expired, then the oldest tenth. Clearing everything let a client
        asking for 50k made-up ids empty every viewer's entries, so each of them went back
        to the database at once."""
        now = time.monotonic()
        self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
        if len(self._entries) >= self._max:
            drop_oldest_tenth(self._entries, self._max)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    async def get(self, key: str, load: Callable[[], V | None]) -> V | None:
        """The cached value, or `load()` run in a thread (once per key at a time)."""
        hit, value = self.lookup(key)
        if hit:
            return value
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key, load))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(task)

    async def _load(self, key: str, load: Callable[[], V | None]) -> V | None:
        value = await asyncio.to_thread(load)
        self.put(key, value)
        return value

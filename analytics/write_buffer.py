"""Accepted rows -> durable spool -> batched ClickHouse inserts, losing and doubling nothing.

`submit()` appends a request's rows to the spool and returns once they are fsync'd (group
commit), which is when the collector may answer 202. A background flusher inserts what is
pending every `flush_ms` or `flush_rows` rows; only after ClickHouse confirms does it
release the spool records. A failed insert is retried as the *same* block with the same
deduplication token, so an insert that committed but timed out is not doubled. After a
crash, records left in the spool are replayed, skipping rows whose event id is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass

from analytics import events
from analytics.spool import Record, Spool, SpoolFull
from core.metrics import Registry
from core.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

@dataclass
class _Pending:
    segment: int
    data: bytes
    rows: int
    verify: bool = False  # replayed after a crash: skip rows whose event id is stored


class WriteBuffer:
    def __init__(
        self,
        store: Store,
        spool: Spool,
        metrics: Registry,
        *,
        flush_rows: int = 20_000,
        flush_ms: int = 250,
        retry_max_s: float = 5.0,
    ) -> None:
        self.store = store
        self.spool = spool
        self.flush_rows = flush_rows
        self.flush_ms = flush_ms
        self.retry_max_s = retry_max_s
        self._pending: deque[_Pending] = deque()
        self._inflight: list[_Pending] = []  # the block being inserted, retried as is
        self.pending_rows = 0
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._token_prefix = uuid.uuid4().hex
        self._batches = 0
        self.healthy = True
        self.inserted = metrics.counter("wave_rows_inserted_total", "Rows confirmed by ClickHouse")
        self.insert_errors = metrics.counter("wave_insert_errors_total", "Failed ClickHouse inserts")
        self.insert_seconds = metrics.histogram(
            "wave_insert_seconds",
            "ClickHouse insert latency",
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        metrics.gauge("wave_write_buffer_rows", "Rows accepted, not yet in ClickHouse", lambda: self.pending_rows)
        metrics.gauge("wave_spool_bytes", "Bytes in the durable spool", lambda: self.spool.bytes_on_disk)

    async def start(self) -> None:
        """Queue what a previous process left in the spool, then start flushing."""
        leftovers = self.spool.recover()
        if leftovers:
            await asyncio.to_thread(self._replay, leftovers)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="write-buffer")

    async def submit(self, data: bytes, rows: int) -> None:
        """Make `rows` JSON lines durable; raises SpoolFull when they cannot be."""
        segment = self.spool.append(data)
        try:
            await self.spool.sync()
        except SpoolFull:
            # The client is told 503 and will send again: these rows must never be
            # inserted, so the record counts as done and its segment can go.
            self.spool.release(segment)
            raise
        self._pending.append(_Pending(segment, data, rows))
        self.pending_rows += rows
        if self.pending_rows >= self.flush_rows:
            self._wake.set()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Drain before exit if ClickHouse lets us; what is left stays in the spool."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except asyncio.TimeoutError:
                log.warning("stopping with %d rows still spooled", self.pending_rows)
                self._task.cancel()
            self._task = None
        self.spool.close()

    async def drain(self, timeout_s: float = 10.0) -> bool:
        """Insert everything accepted so far and delete the drained spool files; False if
        ClickHouse did not take it all in time (the rows stay spooled)."""
        deadline = time.monotonic() + timeout_s
        while self._pending or self._inflight:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.01)
        await self.spool.unlink_drained()
        return True

    # -- flusher ----------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.05
        while True:
            if not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_ms / 1000)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
            while self._pending or self._inflight:
                if await self._flush_once():
                    delay = 0.05
                    if self.pending_rows < self.flush_rows and not self._stopping:
                        break
                elif self._stopping:
                    return
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
            if self._stopping:
                return

    async def _flush_once(self) -> bool:
        """Insert the oldest pending records as one block; True when ClickHouse confirmed."""
        if not self._inflight:
            rows = 0
            while self._pending and (not self._inflight or rows + self._pending[0].rows <= self.flush_rows * 2):
                item = self._pending.popleft()
                self._inflight.append(item)
                rows += item.rows
            self._batches += 1
        batch = self._inflight
        rows = sum(item.rows for item in batch)
        # The token names this exact block, which is retried whole until it lands.
        token = f"{self._token_prefix}-{self._batches}"
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._insert, batch, token)
        except StoreUnavailable as exc:
            self.healthy = False
            self.insert_errors.inc()
            log.warning("insert of %d rows failed, will retry: %s", rows, exc)
            return False
        self.insert_seconds.observe(time.perf_counter() - started)
        self.healthy = True
        self._inflight = []
        self.pending_rows -= rows
        for item in batch:
            self.spool.release(item.segment)
        self.inserted.inc(rows)
        return True

    def _insert(self, batch: list[_Pending], token: str) -> None:
        data = b"".join(item.data for item in batch)
        if any(item.verify for item in batch):
            data = events.missing_lines(self.store, data)
        if data:
            events.insert(self.store, data, token)

    # -- crash recovery ---------------------------------------------------------------
    def _replay(self, records: list[Record]) -> None:
        """Insert what a crashed process had accepted, minus what it had already stored.

        Runs before the edge serves, so the check cannot race with new inserts. If the store
        is down, records are queued as pending and the flusher retries them like any other.
        """
        group: list[Record] = []
        size = 0
        for record in records:
            group.append(record)
            size += record.payload.count(b"\n")
            if size >= self.flush_rows:
                self._replay_group(group)
                group, size = [], 0
        if group:
            self._replay_group(group)

    def _replay_group(self, group: list[Record]) -> None:
        data = b"".join(record.payload for record in group)
        try:
            missing = events.missing_lines(self.store, data)
            if missing:
                events.insert(self.store, missing, f"replay-{uuid.uuid4().hex}")
            for record in group:
                self.spool.release(record.segment)
            self.inserted.inc(missing.count(b"\n"))
        except StoreUnavailable as exc:
            log.warning("replay deferred, store unavailable: %s", exc)
            for record in group:
                rows = record.payload.count(b"\n")
                self._pending.append(_Pending(record.segment, record.payload, rows, verify=True))
                self.pending_rows += rows

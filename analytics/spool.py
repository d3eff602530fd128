"""Durable on-disk spool: accepted beacons survive a crash or a ClickHouse outage.

Records are appended to numbered segment files as `[u32 length][u32 crc32][payload]`.
Durability is by group commit: every caller awaits `sync()`, and one round covers all the
appends made before it started, so a thousand requests a second cost a few hundred
fsyncs, not a thousand. A round runs in a worker thread and does all the file work there:
the checksums, one write per segment for all its new records, the fsyncs. The event loop
only queues the payloads, because a `write()` into a page that is under writeback waits
for that I/O, and on the loop that wait stalled every request (bench/RESULTS.md, "Ingest"). A segment file is removed only once it is sealed (full, or drained)
and every record in it was confirmed inserted by ClickHouse.

At start-up `recover()` returns the records of the segments left behind; a torn tail
(a crash mid-write, never acknowledged to a client) is cut off there.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

_HEADER = struct.Struct("<II")
_SUFFIX = ".spool"


class SpoolFull(RuntimeError):
    """The spool reached its cap or the disk refused a write; callers answer 503."""


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int | None = None
    size: int = 0  # bytes of the records appended, written or queued
    written: int = 0  # bytes on file (written by a completed round)
    records: int = 0
    released: int = 0
    sealed: bool = False


@dataclass(frozen=True)
class Record:
    segment: int
    payload: bytes


@dataclass
class _SyncState:
    appended: int = 0  # appends made so far (a sequence number)
    synced: int = 0  # appends known durable
    dirty_fds: set[int] = field(default_factory=set)
    # Records appended and not yet written, in order: (segment, payload). The fd is the
    # segment's at append time; sealing hands it to `_closing`, closed after the write.
    queued: list[tuple[_Segment, int, bytes]] = field(default_factory=list)
    dir_dirty: bool = False
    task: asyncio.Task | None = None


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._sync = _SyncState()
        self._closing: list[int] = []  # fds of sealed segments, closed after their fsync
        self._unlink: list[Path] = []  # drained segments, deleted off the event loop
        self.bytes_on_disk = 0
        directory.mkdir(parents=True, exist_ok=True)
        # Numbers only grow: a drained segment's file is unlinked at the next fsync round,
        # so reusing its number would reopen that file and the unlink would take the new
        # (acknowledged) records with it.
        self._last_number = max((int(p.stem) for p in directory.glob("*" + _SUFFIX)), default=0)

    # -- start-up ---------------------------------------------------------------------
    def recover(self) -> list[Record]:
        """Records left by a previous process, oldest first; their segments become sealed."""
        records: list[Record] = []
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            number = int(path.stem)
            payloads, good_size = _read_segment(path)
            if good_size < path.stat().st_size:
                with open(path, "r+b") as fh:  # cut the torn tail so a re-read agrees
                    fh.truncate(good_size)
                    os.fsync(fh.fileno())
            segment = _Segment(number, path, size=good_size, records=len(payloads), sealed=True)
            self._segments[number] = segment
            self.bytes_on_disk += good_size
            records.extend(Record(number, payload) for payload in payloads)
            if not payloads:
                self._remove(segment)
        for path in self._unlink:
            path.unlink(missing_ok=True)
        self._unlink = []
        return records

    # -- write path -------------------------------------------------------------------
    @property
    def full(self) -> bool:
        return self.bytes_on_disk >= self.max_bytes

    def append(self, payload: bytes) -> int:
        """Queue one record (not yet written nor durable: await `sync()`); returns its
        segment number."""
        if self.full:
            raise SpoolFull(f"spool holds {self.bytes_on_disk} bytes, cap {self.max_bytes}")
        try:
            segment = self._writable()
        except OSError as exc:  # e.g. ENOSPC or EMFILE creating a segment file
            raise SpoolFull(f"spool segment cannot be created: {exc.strerror or exc}") from exc
        size = _HEADER.size + len(payload)
        self._sync.queued.append((segment, segment.fd, payload))
        segment.size += size
        segment.records += 1
        self.bytes_on_disk += size
        self._sync.appended += 1
        self._sync.dirty_fds.add(segment.fd)
        if segment.size >= self.segment_bytes:
            self._seal(segment)
        return segment.number

    async def sync(self) -> None:
        """Return once every append made before this call is on stable storage."""
        state = self._sync
        target = state.appended
        while state.synced < target:
            if state.task is None:
                state.task = asyncio.get_running_loop().create_task(self._fsync_round())
            await asyncio.shield(state.task)

    async def _fsync_round(self) -> None:
        state = self._sync
        try:
            covered = state.appended
            writes = _writes(state.queued)
            state.queued = []
            fds, state.dirty_fds = state.dirty_fds, set()
            closing, self._closing = self._closing, []
            unlink, self._unlink = self._unlink, []
            dir_dirty, state.dir_dirty = state.dir_dirty, False
            try:
                await asyncio.to_thread(_write_and_sync, writes, fds, closing,
                                        self.directory if dir_dirty else None, unlink)
            except _WriteFailed as exc:  # ENOSPC, EFBIG, EIO: nothing of this round is on file
                # The callers answer 503 and release their records. The segments take no
                # more (a fresh one is started); what the round would have unlinked waits.
                for write in writes:
                    write.segment.size -= write.size
                    self.bytes_on_disk -= write.size
                    if write.fd in closing:
                        write.segment.fd = None  # closed by the round
                    self._seal(write.segment)
                self._unlink[:0] = unlink
                state.dir_dirty = state.dir_dirty or dir_dirty
                raise SpoolFull(f"spool write failed: {exc.strerror or exc}") from exc
            except OSError as exc:  # EIO or ENOSPC at writeback: not durable, say so
                raise SpoolFull(f"spool sync failed: {exc.strerror or exc}") from exc
            for write in writes:
                write.segment.written += write.size
            state.synced = max(state.synced, covered)
        finally:
            state.task = None

    # -- after ClickHouse confirmed ---------------------------------------------------
    def release(self, segment_number: int, count: int = 1) -> None:
        segment = self._segments.get(segment_number)
        if segment is None:
            return
        segment.released += count
        if segment is self._current and segment.released >= segment.records:
            self._seal(segment)  # fully drained: start afresh so the file can go now
        self._maybe_remove(segment)

    # -- internals --------------------------------------------------------------------
    def _writable(self) -> _Segment:
        if self._current is None or self._current.sealed:
            number = max(self._last_number, *self._segments, 0) + 1
            self._last_number = number  # even if the open fails: a retry takes the next one
            path = self.directory / f"{number:016d}{_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            self._current = self._segments[number] = _Segment(number, path, fd=fd)
            self._sync.dir_dirty = True
        return self._current

    def _seal(self, segment: _Segment) -> None:
        segment.sealed = True
        if segment.fd is not None:
            self._closing.append(segment.fd)
            self._sync.dirty_fds.discard(segment.fd)
            segment.fd = None
        self._maybe_remove(segment)

    def _maybe_remove(self, segment: _Segment) -> None:
        if segment.sealed and segment.released >= segment.records and segment.fd is None:
            self._remove(segment)

    def _remove(self, segment: _Segment) -> None:
        if self._segments.pop(segment.number, None) is None:
            return  # already gone
        self.bytes_on_disk -= segment.size
        # Unlinking a large file can stall for milliseconds: leave it to the next fsync
        # round's thread. Should we crash first, replay finds its rows stored and skips them.
        self._unlink.append(segment.path)

    async def unlink_drained(self) -> None:
        """Delete drained segments now rather than at the next fsync round (a purge must
        not leave a subject's rows in a file that only waits for the next beacon)."""
        paths, self._unlink = self._unlink, []
        await asyncio.to_thread(lambda: [p.unlink(missing_ok=True) for p in paths])

    def files_containing(self, needles: list[bytes]) -> list[Path]:
        """Segment files holding any of `needles` (run off the loop: reads every segment)."""
        found = []
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if any(n in data for n in needles):
                found.append(path)
        return found

    def close(self) -> None:
        """Flush and close files; segments still holding records stay for the next start."""
        fds = [s.fd for s in self._segments.values() if s.fd is not None]
        writes = _writes(self._sync.queued)
        self._sync.queued = []
        _write_and_sync(writes, set(fds), self._closing, self.directory, self._unlink)
        self._closing, self._unlink = [], []
        for segment in self._segments.values():
            if segment.fd is not None:
                os.close(segment.fd)
                segment.fd = None
        for segment in list(self._segments.values()):
            segment.sealed = True
            self._maybe_remove(segment)
        _write_and_sync([], set(), [], None, self._unlink)
        self._unlink = []


@dataclass
class _Write:
    """One segment's share of a round: its new records, framed in the round's thread."""

    segment: _Segment
    fd: int
    payloads: list[bytes]
    size: int = 0  # bytes they take on file

    def frames(self) -> bytes:
        return b"".join(_HEADER.pack(len(p), zlib.crc32(p)) + p for p in self.payloads)


class _WriteFailed(OSError):
    """A round's write failed and its segments were cut back: nothing of it is on file."""


def _writes(queued: list[tuple[_Segment, int, bytes]]) -> list[_Write]:
    """Group queued payloads by segment, in order."""
    out: dict[int, _Write] = {}
    for segment, fd, payload in queued:
        write = out.setdefault(segment.number, _Write(segment, fd, []))
        write.payloads.append(payload)
        write.size += _HEADER.size + len(payload)
    return list(out.values())


def _write_and_sync(writes: list[_Write], fds: set[int], closing: list[int], directory: Path | None,
                    unlink: list[Path] = ()) -> None:
    """One round's file work: write each segment's new records, then fsync. A failed write
    cuts every segment of the round back to its size before it (a torn record would hide
    the records after it from recovery), closes the sealed ones, and raises."""
    try:
        for write in writes:
            data = write.frames()
            written = os.write(write.fd, data)
            if written != len(data):  # e.g. the file size limit: the rest would fail anyway
                raise OSError(f"short write ({written} of {len(data)} bytes)")
    except OSError as exc:
        for write in writes:
            try:
                os.ftruncate(write.fd, write.segment.written)
            except OSError:
                pass
        for fd in closing:
            try:
                os.close(fd)
            except OSError:
                pass
        raise _WriteFailed(exc.errno, exc.strerror or str(exc)) from exc
    _fsync_all(fds, closing, directory, unlink)


def _fsync_all(fds: set[int], closing: list[int], directory: Path | None, unlink: list[Path] = ()) -> None:
    for path in unlink:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    for fd in fds:
        os.fsync(fd)
    for fd in closing:
        os.fsync(fd)
        os.close(fd)
    if directory is not None:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _read_segment(path: Path) -> tuple[list[bytes], int]:
    data = path.read_bytes()
    payloads: list[bytes] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        if end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        payloads.append(data[start:end])
        offset = end
    return payloads, offset

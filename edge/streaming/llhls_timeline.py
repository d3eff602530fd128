"""A live publish's playlists on the event loop, and the blocking reloads waiting on them.

The writers (`hls_writer.HlsWriter`, one per rendition) run on the encoder's thread and
hand each new `Snapshot` over with `loop.call_soon_threadsafe` (`handover`); `update`
stores it and wakes every waiter at once. A blocking playlist reload (`_HLS_msn`,
`_HLS_part`) or a request for a preload-hinted part waits here for the state it needs,
so it is answered the moment the part exists, with no polling of the disk.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from edge.streaming.llhls_playlist import Snapshot


class LivePlaylists:
    def __init__(self) -> None:
        self._snaps: dict[str, Snapshot] = {}  # by rendition prefix ("" = the source)
        self._changed = asyncio.Event()

    def handover(self, loop: asyncio.AbstractEventLoop) -> Callable[[Snapshot], None]:
        """A `publish` callback for a writer on another thread."""

        def publish(snap: Snapshot) -> None:
            try:
                loop.call_soon_threadsafe(self.update, snap)
            except RuntimeError:
                pass  # the loop is closed (the edge is shutting down): nobody is waiting

        return publish

    def update(self, snap: Snapshot) -> None:
        self._snaps[snap.prefix] = snap
        self._changed.set()
        self._changed = asyncio.Event()

    def get(self, prefix: str = "") -> Snapshot | None:
        return self._snaps.get(prefix)

    def renditions(self) -> list[Snapshot]:
        """Every rendition with media, the source first."""
        return sorted(self._snaps.values(), key=lambda s: (s.prefix != "", -s.height))

    async def wait(self, prefix: str, ready: Callable[[Snapshot], bool], timeout: float) -> Snapshot | None:
        """The rendition's newest snapshot once `ready` holds for it (or it ended); None
        if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self._snaps.get(prefix)
            if snap is not None and (snap.ended or ready(snap)):
                return snap
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                return None

"""Which uploads are packaged now: at most one per tenant, `slots` in all, fairly.

Packaging is CPU-bound. With one global lock, a tenant's hostile or merely huge upload
blocked every other tenant's (issue #14); with no lock at all, one tenant could start as
many encoders as it has uploads. So each tenant gets at most one running job, the edge at
most `slots` (`WAVE_TRANSCODE_JOBS`), and a freed slot goes round-robin: to the tenant
served least recently among those waiting with none running (then the oldest job). A
tenant with a hundred uploads queued delays another tenant's first by at most one job
per slot, never by a hundred, even with a single slot.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator


class _Ticket:
    __slots__ = ("tenant_id", "go")

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.go = asyncio.Event()


class FairJobs:
    """`async with jobs.turn(tenant_id):` waits for the tenant's turn, holds it inside."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._waiting: list[_Ticket] = []
        self._running: dict[str, int] = {}  # tenant id -> jobs running (0 or 1)
        self._served: dict[str, int] = {}  # tenant id -> when it last started a job (a counter)
        self._starts = 0

    @property
    def running(self) -> int:
        return sum(self._running.values())

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def running_for(self, tenant_id: str) -> int:
        return self._running.get(tenant_id, 0)

    @asynccontextmanager
    async def turn(self, tenant_id: str) -> AsyncIterator[None]:
        ticket = _Ticket(tenant_id)
        self._waiting.append(ticket)
        self._dispatch()
        try:
            await ticket.go.wait()
        except BaseException:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            else:  # started just as it was cancelled: give the slot back
                self._finish(tenant_id)
            raise
        try:
            yield
        finally:
            self._finish(tenant_id)

    def _finish(self, tenant_id: str) -> None:
        left = self._running.get(tenant_id, 0) - 1
        if left > 0:
            self._running[tenant_id] = left
        else:
            self._running.pop(tenant_id, None)
        self._dispatch()

    def _dispatch(self) -> None:
        """Fill free slots: the least recently served tenant without a running job first,
        its oldest waiting job."""
        while self.running < self.slots:
            eligible = [t for t in self._waiting if t.tenant_id not in self._running]
            if not eligible:
                break
            ticket = min(eligible, key=lambda t: self._served.get(t.tenant_id, -1))  # min keeps the oldest of ties
            self._waiting.remove(ticket)
            self._running[ticket.tenant_id] = 1
            self._starts += 1
            self._served[ticket.tenant_id] = self._starts
            ticket.go.set()
        busy = self._running.keys() | {t.tenant_id for t in self._waiting}
        for tenant_id in [t for t in self._served if t not in busy]:
            del self._served[tenant_id]  # nothing queued: forget it (memory stays per active tenant)

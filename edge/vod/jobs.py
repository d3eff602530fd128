"""Which uploads are packaged now: at most one per tenant, `slots` in all, fairly.

Packaging is CPU-bound. With one global lock, a tenant's hostile or merely huge upload
blocked every other tenant's (issue #14); with no lock at all, one tenant could start as
many encoders as it has uploads. So each tenant gets at most one running job, the edge at
most `slots` (`WAVE_TRANSCODE_JOBS`), and a freed slot goes to the job waiting longest
among tenants that have none running: a tenant with a hundred uploads queued delays
another tenant's first by at most one job, never by a hundred.
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
        """Start waiting jobs, oldest first, skipping tenants with one running."""
        for ticket in list(self._waiting):
            if self.running >= self.slots:
                return
            if ticket.tenant_id in self._running:
                continue
            self._waiting.remove(ticket)
            self._running[ticket.tenant_id] = 1
            ticket.go.set()

"""What the retention service needs from whoever runs it: the seam between `retention/`
and the edge.

Purge, export and offboarding (retention/service.py) know the order of the work and own
the tables; a running edge also holds state of its own that must follow (beacons still
buffered, the view rollup folding, caches and open sessions tied to a subject or a
tenant, media files on disk). `edge` implements these hooks (edge/retention_hooks.py),
for the server and for the CLI with the server stopped, so `retention/` never reaches into
the edge's attributes and the orchestration exists once.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from retention.subjects import Subject


@dataclass(frozen=True)
class MediaDeleted:
    """A tenant's media files, deleted: how many videos, and those whose files remain."""

    videos: int
    left: list[str] = field(default_factory=list)


class RetentionHooks(Protocol):
    async def forget_subject(self, tenant_id: str, subject: Subject) -> None:
        """Drop in-memory state tied to the subject (its links already resolved) before
        its rows are erased, so none of it is written back afterwards."""

    async def drain_buffers(self) -> bool:
        """Insert every accepted, not yet stored row; False if the store cannot take them now."""

    def spooled(self, needles: list[bytes]) -> bool:
        """Does a buffered (spooled) row still hold one of `needles`? Called in a thread."""

    def hold_rollup(self) -> AbstractAsyncContextManager:
        """Held while the subject's rows are erased: no fold writes a view of them back."""

    async def end_tenant_sessions(self, tenant_id: str) -> None:
        """End the tenant's live sessions (publishes) before its data goes."""

    def delete_tenant_media(self, tenant_id: str) -> MediaDeleted:
        """Delete every media file of the tenant (called in a thread, before its rows go:
        the rows are what lists the files)."""

    def forget_tenant(self, tenant_id: str) -> None:
        """The tenant is gone: caches stop answering for it."""

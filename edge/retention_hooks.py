"""The edge's side of the retention service (retention/hooks.py): what a purge or an
offboarding must do to state the edge holds outside the tables.

`ServerHooks` acts on the running edge: the consent cache, open HLS runs and the nginx
front's unread hand-off files forget a subject; the write buffer drains and its spool is
searched; the view rollup is held still; a tenant's publishes end; its media files go.
`OfflineHooks` is the same for the CLI with the server stopped: nothing is in memory, the
stopped edge's spool is inserted first, and media files go the same way.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from core.store import Store
from edge import media_layout
from edge.settings import Settings
from edge.vod import videos
from retention.hooks import MediaDeleted
from retention.subjects import Subject

if TYPE_CHECKING:
    from edge.app import Edge


def delete_tenant_media(store: Store, media_dir: Path, tenant_id: str) -> MediaDeleted:
    """Every video's directory and public link of the tenant, and the public live links
    left pointing into a deleted recording."""
    ids = videos.ids_ever_of(store, tenant_id)
    for video_id in ids:
        media_layout.public_link(media_dir, "vod", video_id).unlink(missing_ok=True)
        shutil.rmtree(media_layout.video_dir(media_dir, video_id), ignore_errors=True)
    live_links = media_layout.public_dir(media_dir) / "live"
    for link in live_links.glob(media_layout.STREAM_PREFIX + "*") if live_links.exists() else ():
        if not link.exists():  # pointed into a deleted recording
            link.unlink(missing_ok=True)
    return MediaDeleted(len(ids), [v for v in ids if media_layout.video_dir(media_dir, v).exists()])


async def drain_spool(settings: Settings, store: Store) -> None:
    """Beacons a stopped edge left in the spool go into ClickHouse first: a purge or an
    export must see them (and the purge then finds the spool empty)."""
    from core.metrics import Registry
    from analytics.spool import Spool
    from analytics.write_buffer import WriteBuffer

    buffer = WriteBuffer(store, Spool(settings.spool_dir, settings.spool_max_bytes), Registry())
    await buffer.start()
    ok = await buffer.drain(timeout_s=30)
    await buffer.stop()
    if not ok:
        raise RuntimeError("spooled beacons could not be inserted; is ClickHouse reachable?")


class ServerHooks:
    """A running edge's state (its parts exist once `Edge.start` has run)."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge

    async def forget_subject(self, tenant_id: str, subject: Subject) -> None:
        edge = self._edge
        for viewer_id in ([subject.value] if subject.kind == "viewer_id" else list(subject.linked_viewer_ids)):
            edge.consents.forget(tenant_id, viewer_id)
            await edge.webrtc_qoe.forget_viewer(tenant_id, viewer_id)
        if subject.kind == "ip":
            await edge.front_log.collect(time.time() + 2)  # the nginx front's unread hand-off files, too
            edge.sessions.forget_ip(subject.value, tenant_id)

    async def drain_buffers(self) -> bool:
        return await self._edge.buffer.drain(timeout_s=10)

    def spooled(self, needles: list[bytes]) -> bool:
        return bool(self._edge.buffer.spool.files_containing(needles))

    def hold_rollup(self) -> AbstractAsyncContextManager:
        rollup = self._edge.rollup
        return rollup.lock if rollup is not None else contextlib.nullcontext()

    async def end_tenant_sessions(self, tenant_id: str) -> None:
        await self._edge.live.end_tenant(tenant_id, "tenant deleted", "offboarded")
        await self._edge.webrtc_qoe.forget_tenant(tenant_id)  # its viewers' last QoE samples too

    def delete_tenant_media(self, tenant_id: str) -> MediaDeleted:
        return delete_tenant_media(self._edge.store, self._edge.settings.media_dir, tenant_id)

    def forget_tenant(self, tenant_id: str) -> None:
        self._edge.tenants.forget(tenant_id)


class OfflineHooks:
    """The CLI's, server stopped: no memory to forget, no rollup running, no sessions."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store

    async def forget_subject(self, tenant_id: str, subject: Subject) -> None:
        pass

    async def drain_buffers(self) -> bool:
        """The stopped edge's spool, inserted; raises if ClickHouse cannot take it."""
        await drain_spool(self._settings, self._store)
        return True

    def spooled(self, needles: list[bytes]) -> bool:
        return False  # the drain left no spool file (it raises otherwise), and no edge adds one

    def hold_rollup(self) -> AbstractAsyncContextManager:
        return contextlib.nullcontext()

    async def end_tenant_sessions(self, tenant_id: str) -> None:
        pass

    def delete_tenant_media(self, tenant_id: str) -> MediaDeleted:
        return delete_tenant_media(self._store, self._settings.media_dir, tenant_id)

    def forget_tenant(self, tenant_id: str) -> None:
        pass

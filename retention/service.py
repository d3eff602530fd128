"""Purge (erasure), export (access) and offboarding: the one orchestration behind both the
HTTP API (retention/api.py) and the CLI (`wave-edge privacy purge|export`, `tenant delete`).

A purge first lets the runner forget what it holds in memory about the subject (so no
beacon of theirs is accepted between the drain and the delete: their consent rows are
about to go anyway), then drains the write buffer (beacons accepted but not yet in
ClickHouse are inserted, then the drained spool files are deleted) and holds the rollup
still, so no row of the subject is on its way in while the tables are cleaned; then it
checks that no spool file names the subject. If ClickHouse cannot take the spooled rows
now, the purge answers 503 and erases nothing: better a retry than a report of success
with rows still queued. Offboarding ends the tenant's live sessions, drains, deletes its
media and then its rows (retention/offboard.py), and forgets the tenant.

Where the state lives differs between a running edge and the CLI with the server stopped;
that part is behind `RetentionHooks` (retention/hooks.py), implemented by `edge`.

Each purge and offboarding ends with a signed receipt (retention/receipts.py), stored and
noted beside the backups that still hold the erased rows; the records of processing
(retention/ropa.py) are built here too, from the registry and the tenant's settings.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from core.store import Store
from core.tenants import Tenant, load_tenant
from core.validation import BadInput
from retention import backups, export, offboard, purge, receipts, ropa, subjects
from retention.hooks import RetentionHooks
from retention.subjects import Subject


class RetentionService:
    def __init__(self, store: Store, secret: bytes, hooks: RetentionHooks, backups_dir: Path | None = None,
                 backup_every_s: float = 0) -> None:
        self.store = store
        self.hooks = hooks
        self._secret = secret
        self.signer = receipts.ReceiptSigner.from_secret(secret)
        self.backups_dir = backups_dir  # where backups are listed, for what receipts say of them
        self.backup_every_s = backup_every_s  # the schedule, for the records of processing

    def ropa(self, tenant: Tenant) -> dict:
        """The tenant's records of processing (retention/ropa.py)."""
        return ropa.build(tenant, backup_every_s=self.backup_every_s, embedded=self.store.embedded)

    def _region(self, tenant_id: str) -> str:
        tenant = load_tenant(self.store, tenant_id)
        return tenant.region if tenant is not None else ""

    def _backups(self, done_at: float) -> dict:
        manifests = backups.list_backups(self.backups_dir) if self.backups_dir is not None else []
        return receipts.backups_status(manifests, done_at)

    def _purge_receipt(self, tenant_id: str, subject: Subject, result: purge.PurgeResult, actor: str) -> dict:
        """Sign and store the receipt of a finished purge."""
        linked = result.subject or subject
        named = {"kind": subject.kind,
                 "hash": receipts.subject_hash(self._secret, tenant_id, subject.kind, subject.value),
                 "linked_viewer_id_hashes": sorted(receipts.subject_hash(self._secret, tenant_id, "viewer_id", v)
                                                   for v in linked.linked_viewer_ids)}
        receipt = self.signer.sign(receipts.fields(
            kind="erasure", purge_id=result.purge_id, tenant_id=tenant_id, region=self._region(tenant_id),
            subject=named, requested_by=actor, requested_at=result.requested_at, completed_at=result.completed_at,
            found=result.rows_deleted, after=result.rows_after,
            spool={"status": "drained", "subject_spooled": False,
                   "detail": "the write buffer was drained and no spool file names the subject"},
            backups=self._backups(result.completed_at)))
        receipts.save(self.store, receipt, result.completed_at)
        self._note_replays(receipt)
        return receipt

    def _note_replays(self, receipt: dict) -> None:
        if self.backups_dir is not None:
            backups.note_replay(self.backups_dir, receipt["backups"]["backups_holding_data"], receipt["purge_id"])

    def receipt(self, tenant_id: str, purge_id: str) -> dict | None:
        return receipts.load(self.store, tenant_id, purge_id)

    def subject_params(self, subject: Subject) -> dict[str, str]:
        """The subject as audit records name it: by salted hash only, so the log that
        proves an erasure does not undo it."""
        return {subject.kind: "sha256:" + subjects.hash_value(self._secret, subject.kind, subject.value)}

    async def purge(self, tenant_id: str, subject: Subject, requested_by: str) -> purge.PurgeResult:
        """Stop accepting the subject's beacons, drain, erase everywhere, verify, record,
        and sign the receipt (retention/receipts.py)."""
        requested_at = time.time()
        linked = await asyncio.to_thread(subjects.with_links, self.store, tenant_id, subject)
        await self.hooks.forget_subject(tenant_id, linked)
        if not await self.hooks.drain_buffers():
            raise BadInput("unavailable", "beacons are waiting for ClickHouse; retry the purge shortly", status=503)
        async with self.hooks.hold_rollup():  # no fold pass writes a view of the subject back meanwhile
            needles = [linked.value.encode(), *(v.encode() for v in linked.linked_viewer_ids)]
            if subject.kind == "ip":
                needles = [subject.value.removeprefix("::ffff:").encode()]
            if await asyncio.to_thread(self.hooks.spooled, needles):
                raise BadInput("unavailable", "the subject's beacons are still spooled; retry shortly", status=503)
            result = await asyncio.to_thread(purge.purge, self.store, tenant_id, subject, self._secret, requested_by,
                                           requested_at)
        result.receipt = await asyncio.to_thread(self._purge_receipt, tenant_id, subject, result, requested_by)
        return result

    async def export(self, tenant_id: str, subject: Subject) -> tuple[Subject, dict[str, dict]]:
        """Every row about the subject (its links resolved), by registered table."""
        linked = await asyncio.to_thread(subjects.with_links, self.store, tenant_id, subject)
        return linked, await asyncio.to_thread(export.collect, self.store, tenant_id, linked)

    async def offboard(self, tenant_id: str, actor: str) -> dict:
        """Every row and media file of the tenant, gone and verified; returns the summary."""
        requested_at = time.time()
        region = await asyncio.to_thread(self._region, tenant_id)
        await self.hooks.end_tenant_sessions(tenant_id)
        if not await self.hooks.drain_buffers():
            raise BadInput("unavailable", "beacons are waiting for ClickHouse; retry shortly", status=503)
        media = await asyncio.to_thread(self.hooks.delete_tenant_media, tenant_id)
        summary, after, done = await asyncio.to_thread(offboard.delete_tenant_counted, self.store, tenant_id, media,
                                                       actor)
        self.hooks.forget_tenant(tenant_id)
        receipt = self.signer.sign(receipts.fields(
            kind="offboarding", purge_id=f"tenant-{tenant_id}", tenant_id=tenant_id, region=region,
            subject={"kind": "tenant", "videos_deleted": int(media.videos)}, requested_by=actor,
            requested_at=requested_at, completed_at=done, found=summary["rows_deleted"], after=after,
            spool={"status": "drained", "detail": "the write buffer was drained before the rows were deleted"},
            backups=await asyncio.to_thread(self._backups, done)))
        await asyncio.to_thread(receipts.save, self.store, receipt, done)
        await asyncio.to_thread(self._note_replays, receipt)
        return {**summary, "receipt": receipt}

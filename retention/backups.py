"""Backups in tiers, and restores that never bring an erased subject back.

`create` makes a consistent copy with ClickHouse's own `BACKUP DATABASE ... TO File(...)`
(chDB gets `backups.allowed_path` as a start-up option, see `core.store`), plus a
manifest: its tier, when it was taken and when it expires, and the media index (which
videos' files existed). Tiers follow the promise: a daily backup is kept 24 hours, a
weekly one 7 days, a monthly one 1 month (30 days). A new backup is monthly if no monthly
backup is younger than a month, else weekly if none is younger than a week, else daily.
`prune` deletes expired ones (the CLI, and the server every hour); `restore` refuses an
expired or missing backup, so nothing older than the oldest monthly can come back.

A backup is complete once its manifest is there, written last (fsync'd, renamed into
place). `create` holds a lock on `backups/.lock` throughout, so a directory without a
manifest while nobody holds the lock is what a killed `create` left: `list` names it
incomplete, `restore` refuses it and `prune` deletes it.

`restore` replaces every table but the purge ledger and the audit log (both must stay
complete: they record what happened after the backup too), then replays the ledger:
every subject purged since the backup was taken is erased again before anything is served.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from core import cluster
from core.store import Store, chdb_path
from core.timefmt import iso_utc
from retention import part_rewrite, purge, receipts, registry

TIERS = {"daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400}
KEEP_CURRENT = ("purges", "receipts", "audit_log", "admin_sessions_ended")  # never rolled back by a restore (a sign-out stays)
REPLAY_MARGIN_S = 600
_LOCK = ".lock"


class Incomplete(LookupError):
    """The backup's creation never finished: there is nothing consistent to restore."""


@dataclass
class Manifest:
    backup_id: str
    tier: str
    created_at: float
    expires_at: float
    tables: list[str] = field(default_factory=list)
    media: list[str] = field(default_factory=list)
    region: str = ""  # the region whose store this is ("" before regions): restored only there

    def public(self, now: float, directory: Path | None = None) -> dict:
        out = {"backup_id": self.backup_id, "tier": self.tier, "created_at": iso_utc(self.created_at),
               "expires_at": iso_utc(self.expires_at), "age_s": round(now - self.created_at),
               "expired": self.expires_at <= now}
        if directory is not None:
            out["replays"] = replays_noted(directory, self.backup_id)
        return out


def backups_dir(data_dir: Path, clickhouse_url: str) -> Path:
    """Beside the embedded store (where chDB is allowed to write backups); for a server,
    under the data dir (which the server's `backups.allowed_path` must name)."""
    path = chdb_path(clickhouse_url)
    return path.parent / "backups" if path is not None else data_dir / "backups"


def due(directory: Path, every_s: float, now: float) -> bool:
    """Is a scheduled backup due (none taken in the last `every_s`)?"""
    latest = max((m.created_at for m in list_backups(directory)), default=0.0)
    return now - latest >= every_s


def list_backups(directory: Path) -> list[Manifest]:
    out = []
    for path in sorted(directory.glob("*/manifest.json")):
        try:
            out.append(Manifest(**json.loads(path.read_text())))
        except (ValueError, TypeError):
            continue  # a half-written backup (crash during create): not a backup
    return sorted(out, key=lambda m: m.created_at)


def incomplete(directory: Path) -> list[str]:
    """Backup directories without a readable manifest: being created, or left by a crash."""
    if not directory.is_dir():
        return []
    complete = {m.backup_id for m in list_backups(directory)}
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and p.name not in complete)


@contextmanager
def _create_lock(directory: Path, wait: bool = True):
    """Held by `create` from its first write to its manifest; yields False (without
    waiting) when another process holds it, i.e. a backup is being made right now."""
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock (so does the kernel if we are killed)


def choose_tier(existing: list[Manifest], now: float) -> str:
    def has(tier: str, within: float) -> bool:
        return any(m.tier == tier and now - m.created_at < within for m in existing)

    if not has("monthly", TIERS["monthly"]):
        return "monthly"
    if not has("weekly", TIERS["weekly"]):
        return "weekly"
    return "daily"


def create(store: Store, directory: Path, media: Iterable[str], tier: str | None = None,
           now: float | None = None, region: str = "") -> Manifest:
    """A backup of the whole database, with `media` (the videos on disk, from the edge's
    media layout) listed in its manifest."""
    now = time.time() if now is None else now
    directory.mkdir(parents=True, exist_ok=True)
    tier = tier or choose_tier(list_backups(directory), now)
    if tier not in TIERS:
        raise ValueError(f"tier must be one of: {', '.join(TIERS)}")
    backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + secrets.token_hex(3)
    target = directory / backup_id
    with _create_lock(directory):
        target.mkdir()
        # Some tables must never outlive their rows in a backup (the anonymous mode's daily salts).
        with part_rewrite.no_rewrite_running():
            store.command(cluster.backup_database(_db(store), f"File('{target / 'db'}')", registry.NOT_BACKED_UP))
        tables = [r[0] for r in store.rows("SELECT name FROM system.tables WHERE database = currentDatabase()"
                                           " AND NOT is_temporary ORDER BY name") if r[0] not in registry.NOT_BACKED_UP]
        manifest = Manifest(backup_id, tier, now, now + TIERS[tier], tables, sorted(media), region)
        if store.embedded:  # we wrote those files (a server fsyncs its own, or not ours to read)
            _fsync_tree(target / "db")  # a manifest must never outlive the data it vouches for
        tmp = target / "manifest.json.tmp"
        with open(tmp, "w") as fh:
            fh.write(json.dumps(asdict(manifest)))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(target / "manifest.json")  # the manifest's presence means "complete"
        _fsync_dir(target)
    return manifest


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(directory: Path, now: float | None = None) -> list[str]:
    """Delete every backup past its expiry, and the incomplete ones a killed `create`
    left (while a `create` runs, incomplete ones are kept: one of them is its own)."""
    now = time.time() if now is None else now
    gone: list[str] = []
    if not directory.is_dir():
        return gone
    with _create_lock(directory, wait=False) as nobody_creating:
        complete = {m.backup_id: m for m in list_backups(directory)}
        for path in directory.iterdir():
            manifest = complete.get(path.name)
            dead_partial = manifest is None and path.is_dir() and nobody_creating
            if (manifest is not None and manifest.expires_at <= now) or dead_partial:
                shutil.rmtree(path, ignore_errors=True)
                gone.append(path.name)
    return sorted(gone)


class WrongRegion(LookupError):
    """A backup of another region's store: its tenants' data must not land here."""


def restore(store: Store, directory: Path, backup_id: str, secret: bytes, now: float | None = None,
            region: str = "") -> dict:
    """Replace the data with the backup's, then erase again every subject purged since.
    A backup stays in its region: one made by another region's deployment is refused."""
    now = time.time() if now is None else now
    manifest = next((m for m in list_backups(directory) if m.backup_id == backup_id), None)
    if manifest is None and backup_id in incomplete(directory):
        raise Incomplete(f"backup {backup_id} is incomplete (its creation did not finish): nothing was restored;"
                         " `wave-edge backup prune` deletes it")
    if manifest is None:
        raise LookupError(f"no backup {backup_id!r} (expired backups are deleted)")
    if manifest.region and region and manifest.region != region:
        raise WrongRegion(f"backup {backup_id} holds region {manifest.region!r}; this deployment serves {region!r}:"
                          " nothing was restored")
    if manifest.expires_at <= now:
        raise LookupError(f"backup {backup_id} expired at {iso_utc(manifest.expires_at)}")
    db = _db(store)
    source = f"File('{directory / backup_id / 'db'}')"
    for table in manifest.tables:
        if (cluster.logical(table) in KEEP_CURRENT or cluster.logical(table) in registry.NOT_BACKED_UP
                or table.startswith(".inner") or not cluster.restorable(table)):
            continue
        store.command(cluster.truncate_table(db, table))
        store.command(cluster.restore_table(db, table, source) + " SETTINGS allow_non_empty_tables = true")
    # A purge that started shortly before the backup may have finished after it: replaying
    # a few minutes more than strictly needed costs nothing and misses nobody.
    since = manifest.created_at - REPLAY_MARGIN_S
    erased = purge.replay(store, secret, since)
    return {"backup_id": backup_id, "restored_from": iso_utc(manifest.created_at), "replayed_purges": erased,
            "reapplied_receipts": receipts.issued_since(store, since)}


_REPLAYS = "replays"


def note_replay(directory: Path, backup_ids: Iterable[str], purge_id: str) -> None:
    """Beside each backup that still holds an erased subject's rows, the receipt a restore
    of it must replay (one purge id a line, appended): `backup list` shows them without
    opening the store, while the server runs."""
    for backup_id in backup_ids:
        folder = directory / backup_id
        if folder.is_dir():
            fd = os.open(folder / _REPLAYS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, purge_id.encode() + b"\n")
            finally:
                os.close(fd)


def replays_noted(directory: Path, backup_id: str) -> list[str]:
    try:
        return [line for line in (directory / backup_id / _REPLAYS).read_text().splitlines() if line]
    except OSError:
        return []


def replays(store: Store, manifest: Manifest) -> list[str]:
    """The receipts a restore of this backup re-applies: those issued since it was taken."""
    return receipts.issued_since(store, manifest.created_at - REPLAY_MARGIN_S)


def _db(store: Store) -> str:
    return str(store.command("SELECT currentDatabase()"))

"""Backups: tiers that expire on schedule, and restores that keep erased subjects erased."""

from __future__ import annotations

import json

from retention import backups
from tests.conftest import insert_beacons_at, query_path
from tests.edge.test_cli_and_http import _cli

DAY = 86400


def _fake(directory, backup_id, tier, created_at):
    (directory / backup_id).mkdir(parents=True)
    manifest = backups.Manifest(backup_id, tier, created_at, created_at + backups.TIERS[tier])
    (directory / backup_id / "manifest.json").write_text(json.dumps(manifest.__dict__))


def test_tiers_are_chosen_by_age_and_expire_on_schedule(tmp_path):
    t0 = 1_800_000_000.0
    d = tmp_path / "backups"
    d.mkdir()
    # A backup a day for 40 days, with an injectable clock: the tier the scheduler picks.
    for day in range(40):
        now = t0 + day * DAY
        tier = backups.choose_tier(backups.list_backups(d), now)
        _fake(d, f"b{day:02d}", tier, now)
        backups.prune(d, now)
        kept = backups.list_backups(d)
        assert all(now - m.created_at < backups.TIERS[m.tier] for m in kept)
        by_tier = {t: [m for m in kept if m.tier == t] for t in backups.TIERS}
        assert len(by_tier["daily"]) <= 1, "a daily backup lives 24 h"
        assert len(by_tier["weekly"]) <= 1 and len(by_tier["monthly"]) <= 1
    names = {m.backup_id: m.tier for m in backups.list_backups(d)}
    # Monthly on days 0 and 30; weekly on days 1, 8, ..., 36; the rest daily.
    assert names == {"b30": "monthly", "b36": "weekly", "b39": "daily"}
    # A month after the last backup, everything has expired and is gone.
    assert set(backups.prune(d, t0 + 70 * DAY)) == set(names)
    assert backups.list_backups(d) == []


def test_backup_purge_restore_keeps_the_subject_erased(tmp_path):
    data = tmp_path / "var"
    tenant = json.loads(_cli(data, "tenant", "create", "t").stdout)["tenant_id"]
    ch = data / "clickhouse"
    for viewer, n in (("erin", 4), ("frank", 3)):
        insert_beacons_at(ch, tenant, viewer, n)
    made = _cli(data, "backup", "create")
    assert made.returncode == 0, made.stderr
    backup = json.loads(made.stdout)
    assert set(backup) == {"backup_id", "tier", "expires_at"} and backup["tier"] == "monthly"
    assert _cli(data, "privacy", "purge", "--tenant", tenant, "--viewer-id", "erin").returncode == 0
    restored = _cli(data, "backup", "restore", backup["backup_id"])
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["replayed_purges"]["viewer_events"] == 4
    rows = query_path(ch, "SELECT viewer_id, count() FROM viewer_events GROUP BY viewer_id"
                          " SETTINGS apply_deleted_mask = 0")
    assert rows == [["frank", 3]], "erin stays erased; frank is back from the backup"
    # The ledger and the audit log were not rolled back.
    assert query_path(ch, "SELECT count() FROM purges") == [[1]]
    actions = [a for a, in query_path(ch, "SELECT action FROM audit_log ORDER BY ts")]
    assert actions == ["tenant create", "backup create", "privacy purge", "backup restore"]
    listed = json.loads(_cli(data, "backup", "list").stdout)["backups"]
    assert [b["backup_id"] for b in listed] == [backup["backup_id"]] and not listed[0]["expired"]
    # An expired backup cannot be restored.
    manifest = data / "backups" / backup["backup_id"] / "manifest.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "expires_at": m["created_at"] - 1}))
    refused = _cli(data, "backup", "restore", backup["backup_id"])
    assert refused.returncode == 2 and "expired" in refused.stderr
    assert json.loads(_cli(data, "backup", "prune").stdout)["pruned"] == [backup["backup_id"]]

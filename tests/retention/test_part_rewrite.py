"""Erasure by rewriting only the parts that hold the rows (retention/part_rewrite.py), on
the real embedded engine: what it removes, what it keeps, and every way it can be cut off."""

from __future__ import annotations

import secrets

import pytest

from core.store import StoreUnavailable
from retention import part_rewrite

WHERE = "tenant_id = {t:String} AND viewer_id = {v:String}"
SUBJECT = {"t": "tn_a", "v": "subject"}


@pytest.fixture
def table(store):
    """Four parts in two partitions, no background merge (parts stay as inserted): the
    subject's rows in two of them, one row whose `note` makes a condition NULL."""
    name = "pr_" + secrets.token_hex(4)
    store.command(f"CREATE TABLE {name} (tenant_id String, viewer_id String, note Nullable(String), n UInt32)"
                  " ENGINE = MergeTree PARTITION BY n % 2 ORDER BY (tenant_id, n)"
                  " SETTINGS max_bytes_to_merge_at_max_space_in_pool = 1")
    for block in range(4):
        subject = "if(number % 10 = 0, 'subject', concat('v', toString(number)))" if block in (1, 2) else \
            "concat('v', toString(number))"
        store.command(f"INSERT INTO {name} SELECT if(number = 5, 'tn_b', 'tn_a'), {subject},"
                      f" if(number = 7, NULL, 'x'), {block} * 2 FROM numbers(100)")
    yield name
    store.command(f"DROP TABLE IF EXISTS {name} SYNC")
    store.command(f"DROP TABLE IF EXISTS {part_rewrite.scratch(name)} SYNC")


def rows(store, name: str) -> list[tuple]:
    return sorted(store.rows(f"SELECT tenant_id, viewer_id, note, n FROM {name} SETTINGS apply_deleted_mask = 0"))


def parts(store, name: str) -> set[str]:
    return {r[0] for r in store.rows("SELECT name FROM system.parts WHERE database = currentDatabase()"
                                     " AND table = {t:String} AND active", {"t": name})}


def detached(store, name: str) -> list:
    return store.rows("SELECT name FROM system.detached_parts WHERE database = currentDatabase()"
                      " AND table = {t:String}", {"t": name})


def scratch_exists(store, name: str) -> bool:
    return bool(store.rows("SELECT 1 FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                           {"t": part_rewrite.scratch(name)}))


def expected_after(before: list[tuple]) -> list[tuple]:
    return [r for r in before if not (r[0] == "tn_a" and r[1] == "subject")]


def fail_at(monkeypatch, store, fragment: str, nth: int = 1) -> None:
    """Make the `nth` statement containing `fragment` fail, as a crash or an outage there."""
    real, seen = store.command, [0]

    def command(sql, parameters=None):
        if fragment in sql:
            seen[0] += 1
            if seen[0] == nth:
                raise StoreUnavailable(f"injected failure at {fragment!r}")
        return real(sql, parameters=parameters)

    monkeypatch.setattr(store, "command", command)


def test_only_the_parts_holding_the_subject_are_rewritten_and_every_other_row_stays(store, table):
    before, parts_before = rows(store, table), parts(store, table)
    holding = {r[0] for r in store.rows(f"SELECT DISTINCT _part FROM {table} WHERE {WHERE}", SUBJECT)}
    assert len(holding) == 2 and len(parts_before) == 4

    assert part_rewrite.delete_rows(store, table, WHERE, SUBJECT) == 20

    assert rows(store, table) == expected_after(before)  # the NULL-note row and the other tenant's row kept
    after = parts(store, table)
    assert parts_before - holding <= after  # the other parts are the very same parts
    assert not (after & holding)
    assert detached(store, table) == [] and not scratch_exists(store, table)  # no file of the old parts left
    assert part_rewrite.delete_rows(store, table, WHERE, SUBJECT) == 0  # nothing left, nothing done
    assert parts(store, table) == after


def test_a_row_the_condition_is_null_about_is_kept(store, table):
    before = rows(store, table)
    n = part_rewrite.delete_rows(store, table, "tenant_id = {t:String} AND note = {x:String}", {"t": "tn_a", "x": "x"})
    assert n == len([r for r in before if r[0] == "tn_a" and r[2] == "x"])
    assert rows(store, table) == [r for r in before if not (r[0] == "tn_a" and r[2] == "x")]
    assert any(r[2] is None for r in rows(store, table))


def test_an_error_after_the_parts_were_detached_is_finished_at_once(store, table, monkeypatch):
    before = rows(store, table)
    with monkeypatch.context() as m:
        fail_at(m, store, "MOVE PARTITION")
        with pytest.raises(StoreUnavailable):
            part_rewrite.delete_rows(store, table, WHERE, SUBJECT)
    # the caller saw the error, but the table was not left without the detached parts' other rows
    assert rows(store, table) == expected_after(before)
    assert detached(store, table) == [] and not scratch_exists(store, table)


def test_a_crash_after_the_copy_is_finished_by_recovery(store, table, monkeypatch):
    before = rows(store, table)
    with monkeypatch.context() as m:
        m.setattr(part_rewrite, "recover", lambda *a: "")  # the process dies: nothing runs after the failure
        fail_at(m, store, "MOVE PARTITION")
        with pytest.raises(StoreUnavailable):
            part_rewrite.delete_rows(store, table, WHERE, SUBJECT)
    assert len(detached(store, table)) == 2 and scratch_exists(store, table)
    assert len(rows(store, table)) < len(expected_after(before))  # other rows only in the copy now

    assert part_rewrite.recover_all(store)[table] == "finished"  # at the next start (or the next erasure)
    assert rows(store, table) == expected_after(before)
    assert detached(store, table) == [] and not scratch_exists(store, table)


def test_a_crash_during_the_copy_drops_the_copy_and_leaves_the_table_as_it_was(store, table, monkeypatch):
    before, parts_before = rows(store, table), parts(store, table)
    with monkeypatch.context() as m:
        m.setattr(part_rewrite, "recover", lambda *a: "")
        fail_at(m, store, "SELECT count() FROM " + part_rewrite.scratch(table))  # after the INSERT, before "copied"
        with pytest.raises(StoreUnavailable):
            part_rewrite.delete_rows(store, table, WHERE, SUBJECT)
    assert scratch_exists(store, table)

    assert part_rewrite.recover(store, table) == "dropped copy"
    assert rows(store, table) == before and parts(store, table) == parts_before
    assert part_rewrite.delete_rows(store, table, WHERE, SUBJECT) == 20  # asked again, it erases
    assert rows(store, table) == expected_after(before)


def test_a_crashed_rewrite_whose_parts_were_merged_meanwhile_is_undone_whole(store, table, monkeypatch):
    """After a restart merges run again: if a journalled part was merged away before
    recovery, finishing would double rows; recovery puts the detached part back instead."""
    before = rows(store, table)
    with monkeypatch.context() as m:
        m.setattr(part_rewrite, "recover", lambda *a: "")
        fail_at(m, store, "DETACH PART", nth=2)  # one part detached, the other still attached
        with pytest.raises(StoreUnavailable):
            part_rewrite.delete_rows(store, table, WHERE, SUBJECT)
    assert len(detached(store, table)) == 1
    store.command(f"SYSTEM START MERGES {table}")  # as after a restart
    store.command(f"ALTER TABLE {table} MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = 1000000000")
    store.command(f"OPTIMIZE TABLE {table} FINAL")  # the still-attached journalled part is merged away

    assert part_rewrite.recover(store, table) == "undone"
    assert rows(store, table) == before  # every row exactly once, the subject's too: nothing half-done
    assert detached(store, table) == [] and not scratch_exists(store, table)
    assert part_rewrite.delete_rows(store, table, WHERE, SUBJECT) == 20
    assert rows(store, table) == expected_after(before)


def test_its_statements_are_for_one_node_and_never_take_sql_for_a_name(monkeypatch):
    from core import cluster

    assert cluster.detach_part("t", "202611_1_2_1") == "ALTER TABLE t DETACH PART '202611_1_2_1'"
    assert cluster.create_scratch("t", "t__erasing", "it's \\") == "CREATE TABLE t__erasing AS t COMMENT 'it\\'s \\\\'"
    with pytest.raises(ValueError):
        cluster.drop_detached_part("t", "x' OR '1")
    with pytest.raises(ValueError):
        cluster.move_partition("t__erasing", "1'; DROP TABLE t; --", "t")
    monkeypatch.setenv("WAVE_CLICKHOUSE_CLUSTER", "wave")  # a cluster replicates parts: erasure stays a mutation
    with pytest.raises(RuntimeError):
        cluster.detach_part("t", "202611_1_2_1")


def test_a_replacing_tables_versions_are_copied_as_they_are(store):
    """The rollup keeps several versions of a view until merges fold them: the rewrite must
    not fold them itself (ClickHouse collapses a ReplacingMergeTree's insert block by default)."""
    name = "pr_" + secrets.token_hex(4)
    store.command(f"CREATE TABLE {name} (tenant_id String, viewer_id String, view_id String, version UInt32)"
                  " ENGINE = ReplacingMergeTree(version) ORDER BY (tenant_id, view_id)"
                  " SETTINGS max_bytes_to_merge_at_max_space_in_pool = 1")
    try:
        store.command(f"INSERT INTO {name} SETTINGS optimize_on_insert = 0 VALUES ('tn_a', 'other', 'w1', 1),"
                      " ('tn_a', 'other', 'w1', 2), ('tn_a', 'subject', 'w2', 1)")
        assert store.command(f"SELECT count() FROM {name}") == 3
        assert part_rewrite.delete_rows(store, name, WHERE, SUBJECT) == 1
        assert sorted(store.rows(f"SELECT view_id, version FROM {name}")) == [("w1", 1), ("w1", 2)]
    finally:
        store.command(f"DROP TABLE IF EXISTS {name} SYNC")


def test_a_copy_that_does_not_add_up_swaps_nothing(store, table, monkeypatch):
    """The copy is counted before anything is detached: short by one row, the table stays
    whole and the caller gets an outage (503 through the API), not a silent loss."""
    before, parts_before = rows(store, table), parts(store, table)
    real = store.command

    def short_count(sql, parameters=None):
        n = real(sql, parameters=parameters)
        return n - 1 if sql == f"SELECT count() FROM {part_rewrite.scratch(table)}" else n

    with monkeypatch.context() as m:
        m.setattr(store, "command", short_count)
        with pytest.raises(part_rewrite.CopyMismatch):
            part_rewrite.delete_rows(store, table, WHERE, SUBJECT)
    assert rows(store, table) == before and parts(store, table) == parts_before
    assert detached(store, table) == [] and not scratch_exists(store, table)
    assert isinstance(part_rewrite.CopyMismatch("x"), StoreUnavailable)


def test_a_mutation_still_to_run_reaches_the_rows_copied(store, table):
    """A mutation issued without waiting (on a server, `mutations_sync` is 0 by default; chDB
    waits): the parts a rewrite moves in are newer than it and would escape it, so the
    rewrite lets it finish first."""
    before = rows(store, table)
    store.command(f"SYSTEM STOP MERGES {table}")  # hold the UPDATE back, as a busy pool would
    store.command(f"ALTER TABLE {table} UPDATE note = 'updated' WHERE note = 'x' SETTINGS mutations_sync = 0")
    store.command(f"SYSTEM START MERGES {table}")

    assert part_rewrite.delete_rows(store, table, WHERE, SUBJECT) == 20
    after = rows(store, table)
    assert len(after) == len(expected_after(before))
    assert {r[2] for r in after} == {"updated", None}  # every row, copied or not, has the update

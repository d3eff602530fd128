"""Erasing a few rows of a large embedded table by rewriting only the parts that hold them.

Why not a mutation: `ALTER TABLE ... DELETE` rewrites the parts that hold the rows, but a
plain MergeTree also moves every other part of the table to the mutation's version (a
hard-link clone each, `IN PARTITION` or not) and waits on the background pool. At 100 M
beacons (some 200 parts) that was about 1.2 s before the first part and 20 ms for each
part after, so one subject's purge grew with the table (bench/RESULTS.md, "Privacy
requests"). Here the cost is the rewritten parts alone:

1. the table's pending mutations finish (one made before would miss the parts moved in),
   then its merges stop, so that the parts named next stay what they are;
2. the parts holding matching rows are listed, and their other rows copied into a scratch
   table of the same structure (`<table>__erasing`, its comment the journal: the parts);
   the copy is checked (rows copied + rows matched = the parts' rows) before the journal
   says `copied`;
3. the parts are detached, the scratch table's partitions moved into the table, the
   detached parts' files dropped (at once: a mutation's replaced parts wait for the
   outdated-part cleaner), the scratch table dropped; merges start again.

A crash (or an error) between two steps leaves the journal, and `recover` (run before each
rewrite and when the store is opened) ends it: a copy that was not complete is dropped
(the table was not touched); a complete one is finished (detach what is still attached,
move, drop). Should a journalled part have been merged away meanwhile (merges run again
after a restart), the parts already detached are attached back and the copy dropped: the
erasure is undone, never half-done, and the purge that did not return success is asked
again. Either way no other row is lost or doubled.

Embedded stores only (`Store.embedded`): one process owns a chDB path, so one lock here
serializes every rewrite and no other process can hold a scratch table. A server may be
shared by several edges, and a cluster replicates parts, so those keep the mutation.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Iterator

from core import cluster
from core.store import Store, StoreUnavailable

SCRATCH_SUFFIX = "__erasing"
# How long to wait for merges already running when merges are stopped (they are cancelled;
# one past its last check may still commit, and would replace a part about to be named).
MERGES_DRAIN_S = 10.0
MUTATIONS_DRAIN_S = 30.0

_lock = threading.RLock()
_clean: set[tuple[str, str]] = set()  # (store, table) known to have no scratch table left


class CopyMismatch(StoreUnavailable):
    """The copy did not hold exactly the parts' other rows: nothing was swapped (an
    outage for the caller, 503 through the API: the erasure can be asked again)."""


def scratch(table: str) -> str:
    return table + SCRATCH_SUFFIX


@contextlib.contextmanager
def no_rewrite_running() -> Iterator[None]:
    """Hold every rewrite off meanwhile. A backup taken while a part is detached would hold
    neither that part nor (once restored and recovered) its other rows; and a mutation
    (a retention DELETE or UPDATE, an erasure of a small table) applies only to the parts
    that existed when it was made, so one made during a rewrite would miss the parts the
    rewrite moves in. Re-entrant: a rewrite may run inside it."""
    with _lock:
        yield


def delete_rows(store: Store, table: str, where: str, parameters: dict) -> int:
    """Delete the rows `where` selects by rewriting the parts that hold them; returns how
    many there were. The rows are physically gone when it returns (their parts' files too)."""
    with _lock:
        if (store.url, table) not in _clean:
            recover(store, table)
        # A mutation still to run (an UPDATE of the retention days, issued without waiting)
        # would miss the parts moved in: let it finish first (merges stopped, it could not).
        _wait_for(store, "mutations", table, "AND NOT is_done", MUTATIONS_DRAIN_S)
        # Merges stop first, then the parts are found once: looking for them twice (before,
        # to spare a table without rows the stop, and after) cost 0.19 s a look at 760 parts.
        store.command(cluster.merges(table, running=False))
        try:
            _wait_for(store, "merges", table, "", MERGES_DRAIN_S)
            return _rewrite(store, table, where, parameters)
        except BaseException:
            _clean.discard((store.url, table))
            recover(store, table)  # never leave the table without its detached parts' other rows
            raise
        finally:
            store.command(cluster.merges(table, running=True))


def _parts_with(store: Store, table: str, where: str, parameters: dict) -> dict[str, int]:
    """The active parts holding rows `where` selects, and how many each holds."""
    return {str(p): int(n) for p, n in store.rows(
        f"SELECT _part, count() FROM {table} WHERE {where} GROUP BY _part", parameters)}


def _wait_for(store: Store, system_table: str, table: str, condition: str, limit_s: float) -> None:
    """Wait until `system.<system_table>` lists nothing for `table` (or `limit_s` passed)."""
    deadline = time.monotonic() + limit_s
    while int(store.command(f"SELECT count() FROM system.{system_table} WHERE database = currentDatabase()"
                            f" AND table = {{t:String}} {condition}", {"t": table})) and time.monotonic() < deadline:
        time.sleep(0.01)


def _rewrite(store: Store, table: str, where: str, parameters: dict) -> int:
    found = _parts_with(store, table, where, parameters)
    if not found:
        return 0
    parts = sorted(found)
    matched = sum(found.values())
    held = int(store.command(f"SELECT count() FROM {table} WHERE _part IN {{parts:Array(String)}}", {"parts": parts}))
    work = scratch(table)
    _clean.discard((store.url, table))
    store.command(cluster.create_scratch(table, work, _note(parts, "copying")))
    # ifNull: a row the condition says NULL about is not the subject's (as with ALTER DELETE).
    # One INSERT for all the parts: read in parallel, it took 0.35 us a row, against 0.75 us
    # for one INSERT per part read in order (which saves the writer's sort). Every row is
    # copied as it is: no deduplication of the blocks, and no collapsing of a
    # ReplacingMergeTree's versions on insert (the rollup keeps a view's versions until merges).
    store.command(
        f"INSERT INTO {work} SELECT * FROM {table} WHERE _part IN {{parts:Array(String)}} AND NOT ifNull(({where}), 0)"
        " SETTINGS insert_deduplicate = 0, optimize_on_insert = 0",
        parameters={**parameters, "parts": parts},
    )
    copied = int(store.command(f"SELECT count() FROM {work}"))
    if copied + matched != held:
        store.command(cluster.drop_table(work))
        raise CopyMismatch(f"{table}: copied {copied} + matched {matched} rows, the parts held {held}")
    store.command(cluster.set_comment(work, _note(parts, "copied")))
    _finish(store, table, parts, attached=set(parts), detached=set())
    _clean.add((store.url, table))
    return matched


def _note(parts: list[str], state: str) -> str:
    """The journal: the parts being rewritten, and how far it got."""
    return json.dumps({"parts": parts, "state": state})


def _finish(store: Store, table: str, parts: list[str], attached: set[str], detached: set[str]) -> None:
    """Steps after a complete copy, each safe to repeat: detach the parts still attached,
    move the copy in, drop the detached parts' files, drop the scratch table."""
    work = scratch(table)
    for part in parts:
        if part in attached:
            store.command(cluster.detach_part(table, part))
    for (partition,) in store.rows(f"SELECT DISTINCT _partition_id FROM {work}"):
        store.command(cluster.move_partition(work, str(partition), table))
    for part in parts:
        if part in attached or part in detached:
            store.command(cluster.drop_detached_part(table, part))
    store.command(cluster.drop_table(work))


def recover(store: Store, table: str) -> str:
    """End a rewrite of `table` that a crash or an error interrupted (see the module's
    docstring). Returns what it did: "" (nothing was interrupted), "dropped copy",
    "finished" or "undone" (the erasure did not happen: its rows are still there)."""
    with _lock:
        work = scratch(table)
        rows = store.rows("SELECT comment FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                          {"t": work})
        if not rows:
            _clean.add((store.url, table))
            return ""
        try:
            note = json.loads(rows[0][0] or "{}")
        except ValueError:
            note = {}
        parts, state = list(note.get("parts", [])), note.get("state", "")
        if state != "copied":  # the table was not touched yet
            store.command(cluster.drop_table(work))
            _clean.add((store.url, table))
            return "dropped copy"
        store.command(cluster.merges(table, running=False))
        try:
            _wait_for(store, "merges", table, "", MERGES_DRAIN_S)
            attached, detached = _active(store, table, parts), _detached(store, table, parts)
            if attached | detached == set(parts):
                _finish(store, table, parts, attached, detached)
                _clean.add((store.url, table))
                return "finished"
            for part in detached:  # merged away meanwhile: undo
                store.command(cluster.attach_part(table, part))
            store.command(cluster.drop_table(work))
            _clean.add((store.url, table))
            return "undone"
        finally:
            store.command(cluster.merges(table, running=True))


def recover_all(store: Store) -> dict[str, str]:
    """`recover` every table a crash left a scratch table for (at start, before any
    query can miss the detached parts' other rows); returns what was done per table."""
    if not store.embedded:
        return {}
    names = [str(r[0]) for r in store.rows(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND endsWith(name, {s:String})",
        {"s": SCRATCH_SUFFIX})]
    return {table: recover(store, table) for table in (n[: -len(SCRATCH_SUFFIX)] for n in names)}


def _active(store: Store, table: str, parts: list[str]) -> set[str]:
    return {str(n) for (n,) in store.rows(
        "SELECT name FROM system.parts WHERE database = currentDatabase() AND table = {t:String} AND active"
        " AND name IN {parts:Array(String)}", {"t": table, "parts": parts})}


def _detached(store: Store, table: str, parts: list[str]) -> set[str]:
    return {str(n) for (n,) in store.rows(
        "SELECT name FROM system.detached_parts WHERE database = currentDatabase() AND table = {t:String}"
        " AND name IN {parts:Array(String)}", {"t": table, "parts": parts})}

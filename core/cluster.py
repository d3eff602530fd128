"""The one place that knows whether the store is a ClickHouse cluster: table layout, engines,
the `ON CLUSTER` clause of every DDL statement, and every mutation's statement.

Embedded chDB and a single server get plain MergeTree tables under their own names and no
clause. With `WAVE_CLICKHOUSE_CLUSTER=name` every table becomes two:

- `<table>_local`: the rows this node holds, `Replicated*MergeTree` with `{shard}` and
  `{replica}` macros, with the ORDER BY, partitions, TTL, indexes and projections;
- `<table>`: a `Distributed` table over it, sharded by `cityHash64(tenant_id, viewer_id)`
  where the table has a viewer key, else `cityHash64(tenant_id)`, so a subject's rows (and
  every version of a ReplacingMergeTree row) sit on one shard.

So every SELECT and INSERT in the code keeps naming `<table>` and reaches the whole cluster,
while what must run where the rows are goes to `<table>_local ON CLUSTER`: DDL of the
storage (indexes, settings, TTL, projections), and every mutation (`ALTER ... DELETE`,
`UPDATE`, `MODIFY TTL`, `APPLY DELETED MASK`, lightweight `DELETE`), with `IN PARTITION`
when the caller knows the partitions its rows sit in. Column changes reach both tables.
`create_table` and `alter_table` return the statement for the local table carrying the
follow-ups (the Distributed table, its columns) that `expand` lists, and the migration
runner applies them all: a new migration needs nothing extra.

A materialized view must read the local table of its source and write the local table of
its target (each shard folds its own rows; reading the Distributed table would fold every
shard's rows on every shard): `create_materialized_view` names both through `local`.

Every DDL statement is `IF NOT EXISTS` (or `ADD COLUMN IF NOT EXISTS`), so two edges
starting at once converge.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

LOCAL_SUFFIX = "_local"


@dataclass(frozen=True)
class Layout:
    """How the store is laid out. `name` "" is one node (nothing below applies)."""

    name: str = ""
    # Replicated*MergeTree local tables (needs Keeper and each server's interserver HTTP).
    replicated: bool = True
    # DDL and mutations `ON CLUSTER` (needs the servers' distributed DDL worker).
    ddl_on_cluster: bool = True


_forced: Layout | None = None


def layout() -> Layout:
    if _forced is not None:
        return _forced
    return Layout(os.environ.get("WAVE_CLICKHOUSE_CLUSTER", ""))


def force_layout(forced: Layout | None) -> None:
    """Run this process with a given layout instead of the environment's (None: back to it).

    For the embedded proof of the cluster layout (tests/core/test_cluster_node.py): chDB
    can host Distributed tables over a one-shard cluster of itself, but activates no
    replicated table and runs no `ON CLUSTER` DDL (README, "Scaling out"), so that proof
    runs `Layout(name, replicated=False, ddl_on_cluster=False)`: the same tables, sharding
    and statements, minus those two clauses.
    """
    global _forced
    _forced = forced


def cluster() -> str:
    """The ClickHouse cluster this deployment runs on, or "" for one node."""
    return layout().name


def engine(kind: str, *args: str) -> str:
    """`MergeTree`-family engine of a table's rows; replicated when running on a cluster."""
    current = layout()
    if current.name and current.replicated:
        zk = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
        return f"Replicated{kind}({', '.join((zk, *args))})"
    return f"{kind}({', '.join(args)})"


def on_cluster() -> str:
    current = layout()
    return f" ON CLUSTER {current.name}" if current.name and current.ddl_on_cluster else ""


def local(table: str) -> str:
    """The table holding `table`'s rows on this node: what mutations, materialized views,
    partitions and parts are about (the table itself on one node)."""
    return f"{table}{LOCAL_SUFFIX}" if cluster() else table


def is_local(table: str) -> bool:
    """Is `table` (a name from ClickHouse's catalogue) the per-node half of a table? Code
    that walks the catalogue keeps the others: they are the tables it may query."""
    return bool(cluster()) and table.endswith(LOCAL_SUFFIX)


def logical(table: str) -> str:
    """The name the code uses for a table of the catalogue (`x` for `x_local`)."""
    return table[: -len(LOCAL_SUFFIX)] if is_local(table) else table


class Ddl(str):
    """A statement, plus the statements that must follow it (`expand` lists them all).
    Appending to it (`+ " SETTINGS ..."`) keeps them."""

    follow_ups: tuple[str, ...] = ()

    def __add__(self, other: str) -> Ddl:
        return _ddl(str.__add__(self, other), *self.follow_ups)


def _ddl(statement: str, *follow_ups: str) -> Ddl:
    out = Ddl(statement)
    out.follow_ups = tuple(follow_ups)
    return out


def expand(statements: Iterable[str]) -> tuple[str, ...]:
    """Every statement to run, in order: each one, then its follow-ups."""
    out: list[str] = []
    for statement in statements:
        out.append(str(statement))
        out.extend(getattr(statement, "follow_ups", ()))
    return tuple(out)


# ---------------------------------------------------------------------------------- DDL

_REPLACING = re.compile(r"\b(Replacing|Collapsing|VersionedCollapsing|Summing|Aggregating)MergeTree\b")


def _columns(body: str) -> list[str]:
    names = []
    for line in body.splitlines():
        match = re.match(r"\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s+\S", line)
        if match and match.group(1).upper() not in ("INDEX", "PROJECTION", "CONSTRAINT"):
            names.append(match.group(1))
    return names


def sharding_key(name: str, body: str, tail: str, shard_by: str | None = None) -> str:
    """How a table's rows are spread over shards: a subject's rows on one shard.

    A table without a tenant column must name its key (`shard_by`) when rows are replaced
    or folded by key (Replacing, Summing...: every version of a row must meet on one shard);
    other such tables are spread at random. Checked in every mode, so a wrong table fails
    its first test, not its first cluster deployment.
    """
    if shard_by:
        return shard_by
    columns = _columns(body)
    if "tenant_id" in columns and "viewer_id" in columns:
        return "cityHash64(tenant_id, viewer_id)"
    if "tenant_id" in columns:
        return "cityHash64(tenant_id)"
    if _REPLACING.search(tail):
        raise ValueError(f"table {name}: rows replaced by key and no tenant_id column; name its shard_by")
    return "rand()"


def create_table(name: str, body: str, tail: str, shard_by: str | None = None) -> Ddl:
    """CREATE TABLE `name`: on a cluster, `name_local` (body and tail: engine, keys, TTL)
    followed by the Distributed `name` over it."""
    key = sharding_key(name, body, tail, shard_by)
    create = f"CREATE TABLE IF NOT EXISTS {local(name)}{on_cluster()} (\n{body}\n) {tail}"
    if not cluster():
        return _ddl(create)
    distributed = (f"CREATE TABLE IF NOT EXISTS {name}{on_cluster()} AS {local(name)}"
                   f" ENGINE = Distributed({cluster()}, currentDatabase(), {local(name)}, {key})")
    return _ddl(create, distributed)


def create_materialized_view(name: str, target: str, select: str) -> Ddl:
    """A materialized view writing `target`; its `select` must name its source through
    `local(source)`: on a cluster each shard's view folds that shard's inserts into that
    shard's `target_local` (the Distributed `target` reads them all)."""
    return _ddl(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}{on_cluster()} TO {local(target)} AS {select}")


_COLUMN_CHANGE = re.compile(r"(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.IGNORECASE)


def _top_level_clauses(clauses: str) -> list[str]:
    """`clauses` split at the commas outside parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(clauses):
        if quote:
            if ch == quote and clauses[i - 1] != "\\":
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(clauses[start:i].strip())
            start = i + 1
    parts.append(clauses[start:].strip())
    return [p for p in parts if p]


def alter_table(name: str, clauses: str) -> Ddl:
    """ALTER TABLE `name`: of its rows' table (`name_local ON CLUSTER`); column changes
    (ADD/DROP/MODIFY/RENAME/COMMENT COLUMN) also reach the Distributed table, which has the
    columns but no storage (indexes, settings, TTL, projections and mutations: local only)."""
    statement = f"ALTER TABLE {local(name)}{on_cluster()} {clauses}"
    if not cluster():
        return _ddl(statement)
    # A codec is how the rows' parts are compressed: the Distributed table has none to give.
    columns = [_CODEC.sub("", c) for c in _top_level_clauses(clauses) if _COLUMN_CHANGE.match(c)]
    if not columns:
        return _ddl(statement)
    return _ddl(statement, f"ALTER TABLE {name}{on_cluster()} {', '.join(columns)}")


_CODEC = re.compile(r"\s+CODEC\((?:[^()]|\([^()]*\))*\)", re.IGNORECASE)


# ---------------------------------------------------------------------------- mutations
# Each returns one statement for the rows' table; callers append `SETTINGS ...` (sync or not).

_PARTITION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _in_partition(partition: str | None) -> str:
    """` IN PARTITION ID '...'`: the mutation reads and rewrites that partition's parts only
    (a plain MergeTree still clones every other part to the mutation's version, measured in
    bench/RESULTS.md, "Privacy requests"; retention/part_rewrite.py avoids mutations for that)."""
    if partition is None:
        return ""
    if not _PARTITION_ID.fullmatch(partition):
        raise ValueError(f"not a partition id: {partition!r}")
    return f" IN PARTITION ID '{partition}'"


def delete_rows(table: str, where: str, partition: str | None = None) -> str:
    """A mutation deleting rows (`ALTER ... DELETE`): the parts are rewritten without them."""
    return f"ALTER TABLE {local(table)}{on_cluster()} DELETE{_in_partition(partition)} WHERE {where}"


def update_rows(table: str, assignments: str, where: str, partition: str | None = None) -> str:
    return f"ALTER TABLE {local(table)}{on_cluster()} UPDATE {assignments}{_in_partition(partition)} WHERE {where}"


def delete_from(table: str, where: str, partition: str | None = None) -> str:
    """A lightweight DELETE (rows masked at once, removed at merges or `apply_deleted_mask`)."""
    return f"DELETE FROM {local(table)}{on_cluster()}{_in_partition(partition)} WHERE {where}"


def apply_deleted_mask(table: str, partition: str | None = None) -> str:
    """Rewrite the parts holding rows masked by lightweight DELETEs without them."""
    return f"ALTER TABLE {local(table)}{on_cluster()} APPLY DELETED MASK{_in_partition(partition)}"


def drop_partition(table: str, partition: str) -> str:
    """Drop a whole partition's parts at once (no mutation): how a day's data is forgotten."""
    if not _PARTITION_ID.fullmatch(partition):
        raise ValueError(f"not a partition id: {partition!r}")
    return f"ALTER TABLE {local(table)}{on_cluster()} DROP PARTITION ID '{partition}'"


def _one_node(what: str) -> None:
    if cluster():
        raise RuntimeError(f"{what} is for one node (retention/part_rewrite.py): a cluster's erasure is a mutation")


def _name(kind: str, value: str) -> str:
    if not _PARTITION_ID.fullmatch(value):
        raise ValueError(f"not a {kind}: {value!r}")
    return value


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def create_scratch(table: str, scratch: str, comment: str) -> str:
    """An empty table of `table`'s very structure (so its partitions can move into it),
    carrying `comment` (the targeted erasure's journal)."""
    _one_node("a scratch table")
    return f"CREATE TABLE {scratch} AS {table} COMMENT {_sql_string(comment)}"


def set_comment(table: str, comment: str) -> str:
    _one_node("a journal comment")
    return f"ALTER TABLE {table} MODIFY COMMENT {_sql_string(comment)}"


def drop_table(table: str) -> str:
    _one_node("dropping a scratch table")
    return f"DROP TABLE IF EXISTS {table} SYNC"


def merges(table: str, running: bool) -> str:
    """Stop or start the background merges (and mutations) of one table."""
    _one_node("stopping merges")
    return f"SYSTEM {'START' if running else 'STOP'} MERGES {table}"


def detach_part(table: str, part: str) -> str:
    _one_node("detaching a part")
    return f"ALTER TABLE {table} DETACH PART '{_name('part name', part)}'"


def attach_part(table: str, part: str) -> str:
    _one_node("attaching a part")
    return f"ALTER TABLE {table} ATTACH PART '{_name('part name', part)}'"


def drop_detached_part(table: str, part: str) -> str:
    """Remove a detached part's files at once."""
    _one_node("dropping a detached part")
    return f"ALTER TABLE {table} DROP DETACHED PART '{_name('part name', part)}' SETTINGS allow_drop_detached = 1"


def move_partition(source: str, partition: str, target: str) -> str:
    """Move a partition's parts from `source` into `target` (same structure), atomically."""
    _one_node("moving a partition")
    return f"ALTER TABLE {source} MOVE PARTITION ID '{_name('partition id', partition)}' TO TABLE {target}"


def modify_ttl(table: str, ttl: str) -> str:
    return f"ALTER TABLE {local(table)}{on_cluster()} MODIFY TTL {ttl}"


def backup_database(database: str, target: str, except_tables: tuple[str, ...] = ()) -> str:
    """`except_tables`: tables no backup may hold (retention/registry.py NOT_BACKED_UP); on a
    cluster both halves of each (the rows' local table and the Distributed one)."""
    names = [n for t in except_tables for n in dict.fromkeys((local(t), t))]
    skip = f" EXCEPT TABLES {', '.join(f'{database}.{t}' for t in names)}" if names else ""
    return f"BACKUP DATABASE {database}{skip}{on_cluster()} TO {target}"


def truncate_table(database: str, table: str) -> str:
    """Empty a table of the catalogue (give the local table on a cluster: it holds the rows)."""
    return f"TRUNCATE TABLE IF EXISTS {database}.{table}{on_cluster()}"


def restore_table(database: str, table: str, source: str) -> str:
    return f"RESTORE TABLE {database}.{table}{on_cluster()} FROM {source}"


def restorable(table: str) -> bool:
    """Does a restore bring back this catalogue table's rows? On a cluster the local
    tables hold them; the Distributed ones only point at them and are left as they are."""
    return is_local(table) if cluster() else True

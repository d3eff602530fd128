"""The one place that knows whether the store is a ClickHouse cluster: engines and the
`ON CLUSTER` clause of every DDL statement and every mutation.

Embedded chDB and a single server get plain MergeTree engines and no clause; with
`WAVE_CLICKHOUSE_CLUSTER` set, migrations emit Replicated engines and `ON CLUSTER`, and so
do the mutations other modules run (`ALTER ... DELETE|UPDATE|APPLY DELETED MASK`,
lightweight `DELETE`, `BACKUP`), which build their statements here. Every DDL statement is
`IF NOT EXISTS` (or `ADD COLUMN IF NOT EXISTS`), so two edges starting at once converge.
"""

from __future__ import annotations

import os


def cluster() -> str:
    """The ClickHouse cluster this deployment runs on, or "" for one node."""
    return os.environ.get("WAVE_CLICKHOUSE_CLUSTER", "")


def engine(kind: str, *args: str) -> str:
    """`MergeTree`-family engine; replicated when running on a cluster."""
    if cluster():
        zk = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
        return f"Replicated{kind}({', '.join((zk, *args))})"
    return f"{kind}({', '.join(args)})"


def on_cluster() -> str:
    return f" ON CLUSTER {cluster()}" if cluster() else ""


def create_table(name: str, body: str, tail: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {name}{on_cluster()} (\n{body}\n) {tail}"


def alter_table(name: str, clauses: str) -> str:
    return f"ALTER TABLE {name}{on_cluster()} {clauses}"


def delete_from(table: str, where: str) -> str:
    """A lightweight DELETE (rows masked at once, removed at merges)."""
    return f"DELETE FROM {table}{on_cluster()} WHERE {where}"


def backup_database(database: str, target: str, except_tables: tuple[str, ...] = ()) -> str:
    """`except_tables`: tables no backup may hold (retention/registry.py NOT_BACKED_UP)."""
    skip = f" EXCEPT TABLES {', '.join(f'{database}.{t}' for t in except_tables)}" if except_tables else ""
    return f"BACKUP DATABASE {database}{skip}{on_cluster()} TO {target}"

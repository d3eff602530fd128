"""The one place that decides engines and cluster clauses for every DDL statement.

Embedded chDB and a single server get plain MergeTree engines; with
`WAVE_CLICKHOUSE_CLUSTER` set, the same migrations emit `ON CLUSTER` and Replicated
engines. Every statement is `IF NOT EXISTS` (or `ADD COLUMN IF NOT EXISTS`), so two edges
starting at once converge instead of failing.
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

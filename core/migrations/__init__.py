"""Every CREATE TABLE of the platform, as versioned, idempotent migrations: one module per
version (`vNNN_*.py`, each a `VERSION`, a `NAME` and its `statements()`), applied in order
and recorded in `schema_migrations`.

All DDL lives here (DML stays with the module that owns the table); engines and cluster
clauses are decided in `core/cluster.py`. A new table or column is a new version module.
A migration's statements are built when it is applied (so the layout in force then
decides them) and expanded by `cluster.expand`: on a cluster a `create_table` also
creates the Distributed table over the local one, with nothing to write in the migration.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from types import ModuleType

from core import cluster
from core.store import Store


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType

    @property
    def statements(self) -> tuple[str, ...]:
        """Every statement to run, for the store's layout now (follow-ups included)."""
        return cluster.expand(self.module.statements())


# Every `vNNN_*.py` module beside this file, in version order: a new migration is a new
# file, nothing to list here.
_VERSIONS = tuple(
    importlib.import_module(f"{__name__}.{module.name}")
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)
    if re.fullmatch(r"v[0-9]{3}_[a-z0-9_]+", module.name)
)
MIGRATIONS: tuple[Migration, ...] = tuple(Migration(v.VERSION, v.NAME, v) for v in _VERSIONS)
assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1)), "versions must run 1..N"


def schema_migrations() -> str:
    """The table recording applied versions (on a cluster, sharded by version: a version
    recorded twice by two edges starting at once is one row after FINAL)."""
    return cluster.create_table(
        "schema_migrations",
        "version UInt32, name String, applied_at DateTime64(6, 'UTC')",
        f"ENGINE = {cluster.engine('ReplacingMergeTree', 'applied_at')} ORDER BY version",
        shard_by="cityHash64(version)",
    )


def apply(store: Store) -> list[int]:
    """Apply what is missing, in order; returns the versions applied now."""
    for statement in cluster.expand([schema_migrations()]):
        store.command(statement)
    done = {row[0] for row in store.rows("SELECT version FROM schema_migrations")}
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        for statement in migration.statements:
            store.command(statement)
        store.command(
            "INSERT INTO schema_migrations (version, name, applied_at)"
            " VALUES ({v:UInt32}, {n:String}, now64(6))",
            parameters={"v": migration.version, "n": migration.name},
        )
        applied.append(migration.version)
    return applied

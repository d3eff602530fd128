"""The one ClickHouse connection of a process, embedded (chDB) or remote.

`WAVE_CLICKHOUSE_URL` picks it: `chdb:///abs/path` opens ClickHouse in-process (one
process owns a path at a time), `http://user:pass@host:8123/db` talks to a server or a
cluster. Both give the same clickhouse-connect client, so nothing above this module
knows which one it has.

`faults` lets tests make the store fail on purpose (an outage of the embedded engine
cannot be produced any other way) without mocking the database itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client


class StoreUnavailable(RuntimeError):
    """ClickHouse refused or failed a call; the caller decides whether to retry."""


class Faults:
    """Switches for fault-injection tests. Off in production; flipping one is the outage."""

    def __init__(self) -> None:
        self.inserts_fail = False
        self.queries_fail = False


class Store:
    def __init__(self, client: Client, url: str) -> None:
        self.client = client
        self.url = url
        self.embedded = url.startswith("chdb:")
        self.faults = Faults()
        self._closed = threading.Event()

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        self._check(self.faults.queries_fail)
        return self._call(self.client.command, sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """The whole result (column names and types too), for exports."""
        self._check(self.faults.queries_fail)
        return self._call(self.client.query, sql, parameters=parameters)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        self._check(self.faults.queries_fail)
        return self._call(self.client.query, sql, parameters=parameters).result_rows

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        self._check(self.faults.inserts_fail)
        self._call(self.client.insert, table, rows, column_names=list(columns))

    def insert_json_lines(
        self,
        table: str,
        data: bytes,
        dedup_token: str | None = None,
        *,
        columns: Sequence[str] | None = None,
        fmt: str = "JSONEachRow",
    ) -> None:
        """Insert newline-delimited JSON rows; ClickHouse parses them in C++ without the GIL.

        `dedup_token` makes a retried insert of the same block a no-op, so a timeout after
        the server already committed cannot double rows.
        """
        self._check(self.faults.inserts_fail)
        settings = {"insert_deduplication_token": dedup_token} if dedup_token else None
        self._call(
            self.client.raw_insert, table, column_names=columns, insert_block=data, fmt=fmt, settings=settings
        )

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self.client.close()

    def _check(self, failing: bool) -> None:
        if failing:
            raise StoreUnavailable("fault injected: store unavailable")

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # the driver raises many types; callers need one
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc


def chdb_path(url: str) -> Path | None:
    if not url.startswith("chdb:"):
        return None
    return Path(urlsplit(url).path)


def chdb_server_settings(backups: Path) -> dict[str, str]:
    """The start-up settings chDB needs that a ClickHouse server has by default or in its config.

    `backups.allowed_path`: BACKUP ... TO File() writes only under it (retention/backups.py).
    `background_pool_size`: chDB starts with 2 threads for merges and mutations (a server with
    16). With 2, every mutation waited seconds for the scheduler however few rows it changed
    (measured: one row deleted from a 40-part table took 4-6 s; 0.05 s with 16), and erasure
    is a mutation (retention/deletion.py).
    """
    return {"backups.allowed_path": f"{backups}/", "background_pool_size": "16"}


def open_store(url: str) -> Store:
    path = chdb_path(url)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        backups = path.parent / "backups"
        backups.mkdir(parents=True, exist_ok=True)
        client = clickhouse_connect.get_client(dsn=url, chdb_options=chdb_server_settings(backups))
    else:
        # No auto session id: a session forbids the concurrent queries the edge makes.
        client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False)
    return Store(client, url)

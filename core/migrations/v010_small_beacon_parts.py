"""Migration 10: beacon parts small enough to purge quickly."""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 10
NAME = "beacon parts small enough to purge quickly"


def statements() -> tuple[str, ...]:
    # Erasure rewrites every part that holds a subject's rows (retention/deletion.py), so
    # the size of those parts is a purge's cost: uncapped, a month merged into one part of
    # millions of beacons and a purge took 3-4 s at 10 M. Capped at 32 MiB (about 1 M
    # beacons), a purge rewrites at most a few such parts (0.5-1 s; bench/RESULTS.md). The
    # price is more parts per month: about volume / 32 MiB, far below the 1,000 at which
    # ClickHouse delays inserts until a month holds some 30 GB of compressed beacons.
    return (
        alter_table("viewer_events", f"MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = {32 * 1024 * 1024}"),
    )


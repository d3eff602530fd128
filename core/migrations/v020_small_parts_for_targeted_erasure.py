"""Migration 20: smaller merged parts, now that an erasure rewrites only the parts it needs.

On the embedded store an erasure no longer runs a mutation (retention/part_rewrite.py):
it copies the other rows of the parts that hold the subject and swaps them in, so its
cost is the size of those parts, and the number of parts in the table costs it only the
look-up of the subject (a mutation stepped over every part: 20 ms each at 100 M beacons).
Smaller caps then make erasure faster (bench/RESULTS.md, "Privacy requests"):

- beacons at 1 MiB (140-190k beacons a part, at 5.5-7 bytes each): a median subject sits
  in two or three parts, so a purge copies some 0.5 M rows instead of 1.5-2 M;
- the `views` rollup at 2 MiB (its rows carry the view's active minutes): a month's views
  were one part of up to 8 MiB, copied whole by every purge, and bigger at 100 M than at
  10 M.

More parts per month is the price: about a month's compressed beacons / 1 MiB, which a
subject's export and look-up open one by one (an export took 0.05 s at 10 M beacons in 11
parts, 0.2 s in 77). ClickHouse delays inserts into a partition of 1,000 active parts and
refuses them at 3,000, limits meant for merges falling behind, not for parts finished at
their cap; raised to 3,000 and 6,000 for the beacons, a month holds some 450 M beacons
before inserts slow down (a deployment that size runs a ClickHouse server, where erasure
is still a mutation and bigger parts pay: set the caps there with `ALTER TABLE ... MODIFY
SETTING`).

Idempotent: MODIFY SETTING states the result, not a change.
"""

from __future__ import annotations

from core.cluster import alter_table

VERSION = 20
NAME = "smaller merged parts for targeted erasure"

BEACON_PART_BYTES = 1 * 1024 * 1024
VIEWS_PART_BYTES = 2 * 1024 * 1024


def statements() -> tuple[str, ...]:
    return (
        alter_table("viewer_events", f"MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = {BEACON_PART_BYTES},"
                                     " parts_to_delay_insert = 3000, parts_to_throw_insert = 6000"),
        alter_table("views", f"MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = {VIEWS_PART_BYTES}"),
    )

"""Migration 16: RESERVED for the anonymous-mode branch, which owns this number. This
placeholder (no statements) only keeps versions contiguous on this branch (perf-data, like llhls) so that its
v019 applies; when merging, take the anonymous-mode branch's file instead of this one. (A store
migrated with this placeholder records version 16 as applied: recreate such a store, as
the tests' temporary ones are.)"""

from __future__ import annotations

VERSION = 16
NAME = "anonymous mode"


def statements() -> tuple[str, ...]:
    return ()

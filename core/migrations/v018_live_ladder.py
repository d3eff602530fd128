"""Migration 18: RESERVED for the llhls branch (live rendition ladder), which owns this
number. This placeholder (no statements) only keeps versions contiguous on the perf-data
branch so that its v019 applies; when merging, take the llhls branch's file instead of this
one. (A store migrated with this placeholder records version 18 as applied: recreate such a
store, as the tests' temporary ones are.)"""

from __future__ import annotations

VERSION = 18
NAME = "live rendition ladder per tenant"


def statements() -> tuple[str, ...]:
    return ()

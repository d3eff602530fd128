"""Migration 17: RESERVED for the webrtc-qoe branch, which owns this number. This
placeholder (no statements) only keeps versions contiguous on this branch (perf-data, like llhls) so that its
v019 applies; when merging, take the webrtc-qoe branch's file instead of this one. (A store
migrated with this placeholder records version 17 as applied: recreate such a store, as
the tests' temporary ones are.)"""

from __future__ import annotations

VERSION = 17
NAME = "webrtc viewer qoe samples"


def statements() -> tuple[str, ...]:
    return ()

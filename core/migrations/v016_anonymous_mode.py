"""Migration 16: RESERVED for the anonymous-mode branch (issue #19 point 3), which owns this
number. This placeholder only keeps versions contiguous on the webrtc-qoe branch so that
its v017 applies; when merging, take the anonymous-mode branch's file instead of this one.
(A store migrated with this placeholder records version 16 as applied: recreate such a
development store rather than keeping it.)"""

from __future__ import annotations

VERSION = 16
NAME = "reserved (anonymous mode)"


def statements() -> tuple[str, ...]:
    return ()

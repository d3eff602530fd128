"""Times on the wire: ISO 8601 in UTC to the second, `2026-11-27T09:30:00Z`, everywhere."""

from __future__ import annotations

import time


def iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

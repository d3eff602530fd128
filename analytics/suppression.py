"""Small-group suppression (k-anonymity): no figure the dashboard shows may single out
fewer than the tenant's `k_anonymity` unique viewers.

- Breakdown rows under k unique viewers fold into the `"other"` row (queries.breakdown);
  a range whose folded groups are all there is still answers, so totals stay exact.
- A `video_id`/`stream_id` filter narrowing the summary or a series to 1..k-1 unique
  viewers is refused (400 `small_group`): the filter would isolate them.
- Breakdowns and filtered figures count whole hours: `from` is floored and `to` raised to
  the hour, so two ranges a few seconds apart (the differencing attack: one range minus
  a nearly identical one isolates the views between) answer the same.

What this does not stop is stated in SECURITY.md: differencing across whole hours, and
unfiltered totals (exact by design).
"""

from __future__ import annotations

import math
from dataclasses import replace

from analytics.queries import Scope
from core.validation import BadInput

SNAP_S = 3600


def snapped(scope: Scope) -> Scope:
    """The scope widened to whole hours (never narrowed)."""
    start = math.floor(scope.start / SNAP_S) * SNAP_S
    end = math.ceil(scope.end / SNAP_S) * SNAP_S
    return replace(scope, start=float(start), end=float(max(end, start + SNAP_S)))


def check_filtered(scope: Scope, unique_viewers: int, k: int) -> None:
    """Refuse a media filter that isolates 1..k-1 unique viewers (none isolates nobody)."""
    if scope.video_id and 0 < unique_viewers < k:
        raise BadInput("small_group", f"fewer than {k} unique viewers match this video_id in this range"
                       " (the tenant's k_anonymity); widen the range or drop the filter", "$.query.video_id")

"""What a beacon batch must satisfy beyond its schema: a clock window, and ids that can go
into CSVs and file names unharmed. The generic decoding and error shape are core's."""

from __future__ import annotations

import re
from typing import get_args

from analytics.wire import ID_CHARS, CollectBatch, EventType
from core.validation import BadInput, decode

MAX_FUTURE_MS = 5 * 60 * 1000
MAX_AGE_MS = 24 * 3600 * 1000
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
_NOT_ID = re.compile(f"[^{ID_CHARS}]")
_HINTS = {".type": EVENT_TYPES}


def decode_batch(body: bytes) -> CollectBatch:
    """A beacon batch; a wrong event type lists the types there are."""
    return decode(body, CollectBatch, _HINTS)


def check_clock(batch: CollectBatch, now_ms: int) -> None:
    """Reject events stamped too far ahead (clock skew, forgery) or too old to be live."""
    for index, event in enumerate(batch.events):
        if event.ts > now_ms + MAX_FUTURE_MS:
            raise BadInput(
                "invalid_field", "ts is more than 5 minutes in the future", f"$.events[{index}].ts"
            )
        if event.ts < now_ms - MAX_AGE_MS:
            raise BadInput("invalid_field", "ts is more than 24 hours old", f"$.events[{index}].ts")


def check_event_ids(batch: CollectBatch) -> None:
    """Every event's `view_id` and `video_id` within `[A-Za-z0-9._:-]` (lengths are msgspec's).

    They end up in CSVs, playlists' names and dashboards: a `=HYPERLINK(...)`, a CR or a
    quote has no business in an id. One regex pass over all of them (the common case, all
    fine, costs about 0.1 us an event); on a hit, a second pass names the field.
    """
    if not _NOT_ID.search("".join([e.view_id + e.video_id for e in batch.events])):
        return
    for index, event in enumerate(batch.events):
        for field in ("view_id", "video_id"):
            if _NOT_ID.search(getattr(event, field)):
                raise BadInput("invalid_field", f"{field} may hold only letters, digits and . _ : -",
                               f"$.events[{index}].{field}")

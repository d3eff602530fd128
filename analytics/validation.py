"""Turning request bytes into wire structs, or into a 4xx that says what and where.

msgspec does the type checking; this module adds what a schema cannot say (clock windows)
and shapes every failure as `{"error", "detail": {"path", "message"}}`.
"""

from __future__ import annotations

import re
from typing import TypeVar, get_args

import msgspec

from analytics.wire import ID_CHARS, CollectBatch, EventType

T = TypeVar("T")

MAX_FUTURE_MS = 5 * 60 * 1000
MAX_AGE_MS = 24 * 3600 * 1000
_AT = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
_NOT_ID = re.compile(f"[^{ID_CHARS}]")


class BadInput(Exception):
    """A client error with the JSON path of the offending value."""

    def __init__(self, error: str, message: str, path: str = "$", status: int = 400) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.path = path
        self.status = status

    def detail(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


_decoders: dict[type, msgspec.json.Decoder] = {}


def decode(body: bytes, kind: type[T]) -> T:
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        return dec.decode(body)
    except UnicodeDecodeError as exc:  # msgspec <= 0.22 raised this for invalid UTF-8
        raise _not_utf8(exc) from None
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        message, path = match.group("message"), match.group("path") or "$"
        if path.endswith(".type") and message.startswith("Invalid enum value"):
            message += "; expected one of: " + ", ".join(EVENT_TYPES)
        raise BadInput("invalid_field", message, path) from None
    except msgspec.DecodeError as exc:
        # msgspec 0.23 reports invalid UTF-8 as a DecodeError like any malformed JSON. Which
        # of the two it was is the body's own property, so ask the body (only on this error
        # path) rather than the library's wording, which changed once already.
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as utf8_exc:
            raise _not_utf8(utf8_exc) from None
        raise BadInput("invalid_json", str(exc)) from None


def ascii_int(text: str | None, max_digits: int = 12) -> int | None:
    """`text` as a whole number if it is ASCII digits only, else None. `str.isdigit()`
    is true for "²" or "٣", on which `int()` fails or means something else."""
    if text is None or not 0 < len(text) <= max_digits or not all("0" <= c <= "9" for c in text):
        return None
    return int(text)


def _not_utf8(exc: UnicodeDecodeError) -> BadInput:
    return BadInput("invalid_utf8", f"body is not valid UTF-8 (byte {exc.start})")


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

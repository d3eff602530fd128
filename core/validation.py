"""Turning request bytes into wire structs, or into a 4xx that says what and where.

msgspec does the type checking; this module shapes every failure as
`{"error", "detail": {"path", "message"}}` (checks a schema cannot say, such as a beacon's
clock window, live with the module that owns the input).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence, TypeVar

import msgspec

T = TypeVar("T")

_AT = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)


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


def decode(body: bytes, kind: type[T], enum_hints: Mapping[str, Sequence[str]] | None = None) -> T:
    """`body` as a `kind`, or a BadInput naming what is wrong and where. `enum_hints`: for a
    field (by the end of its JSON path, e.g. ".type") the values to list when one is wrong."""
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
        if message.startswith("Invalid enum value"):
            for suffix, allowed in (enum_hints or {}).items():
                if path.endswith(suffix):
                    message += "; expected one of: " + ", ".join(allowed)
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

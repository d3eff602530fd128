"""Query parameters every listing route shares: a time range, a choice among values, and
whether the client asked for CSV. Each mistake is a 400 naming the parameter and what it
may be, before any SQL runs."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from litestar import Request

from core.validation import BadInput

DEFAULT_RANGE_S = 7 * 86400
MAX_RANGE_DAYS = 400


def iso_time(request: Request, name: str) -> float | None:
    """An ISO 8601 time (a date alone is midnight UTC; no offset means UTC) as epoch s."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "+"))  # a '+' in a URL decodes to ' '
    except ValueError:
        raise BadInput("invalid_parameter", f"{name} must be an ISO 8601 time such as 2026-11-01T00:00:00Z",
                       f"$.query.{name}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def time_range(request: Request) -> tuple[float, float]:
    """[from, to) in epoch seconds; without them the last 7 days; at most 400 days."""
    end = iso_time(request, "to")
    end = time.time() if end is None else end
    start = iso_time(request, "from")
    start = end - DEFAULT_RANGE_S if start is None else start
    if start >= end:
        raise BadInput("invalid_parameter", "from must be before to", "$.query.from")
    if end - start > MAX_RANGE_DAYS * 86400:
        raise BadInput("invalid_parameter", f"the range may span at most {MAX_RANGE_DAYS} days", "$.query.from")
    return start, end


def choice(request: Request, name: str, allowed, default: str | None = None) -> str:
    value = request.query_params.get(name, default)
    if value not in allowed:
        raise BadInput("invalid_parameter", f"{name} must be one of: {', '.join(allowed)}", f"$.query.{name}")
    return value


def wants_csv(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None and fmt not in ("json", "csv"):
        raise BadInput("invalid_parameter", "format must be one of: json, csv", "$.query.format")
    return fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))

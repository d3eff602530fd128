"""Admin analytics routes: summary, breakdown, timeseries, realtime (JSON or CSV).

Query parameters are checked before any SQL runs and a mistake answers 400 naming the
parameter and the allowed values. `from`/`to` are ISO 8601 (a date alone means midnight
UTC; no offset means UTC); without them, the last 7 days. `video_id` (or `stream_id`, the
same thing to the player) narrows to one media.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import State

from analytics import queries, safe_csv
from analytics.openapi import ADMIN, errors
from analytics.validation import BadInput, ascii_int
from analytics.wire import Breakdown, BreakdownRow, Realtime, Series, SeriesPoint, Summary

MAX_RANGE_DAYS = 400
DEFAULT_RANGE_S = 7 * 86400
MAX_LIMIT = 1000
_MEDIA_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _time(request: Request, name: str) -> float | None:
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


def scope(request: Request, tenant_id: str) -> queries.Scope:
    end = _time(request, "to")
    end = time.time() if end is None else end
    start = _time(request, "from")
    start = end - DEFAULT_RANGE_S if start is None else start
    if start >= end:
        raise BadInput("invalid_parameter", "from must be before to", "$.query.from")
    if end - start > MAX_RANGE_DAYS * 86400:
        raise BadInput("invalid_parameter", f"the range may span at most {MAX_RANGE_DAYS} days", "$.query.from")
    video = request.query_params.get("video_id") or request.query_params.get("stream_id")
    if video is not None and not _MEDIA_ID.match(video):
        raise BadInput("invalid_parameter", "video_id is not a media id", "$.query.video_id")
    return queries.Scope(tenant_id, start, end, video)


def _choice(request: Request, name: str, allowed, default: str | None = None) -> str:
    value = request.query_params.get(name, default)
    if value not in allowed:
        raise BadInput("invalid_parameter", f"{name} must be one of: {', '.join(allowed)}", f"$.query.{name}")
    return value


def wants_csv(request: Request) -> bool:
    fmt = request.query_params.get("format")
    if fmt is not None and fmt not in ("json", "csv"):
        raise BadInput("invalid_parameter", "format must be one of: json, csv", "$.query.format")
    return fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))


def csv_response(rows: list[dict], columns: list[str], filename: str) -> Response[str]:
    """Rows as a CSV download, formula-neutralised and quoted (`safe_csv`): values in it
    come from beacons and requests."""
    return Response(safe_csv.table(columns, rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@get("/v1/analytics/summary", responses=errors(*ADMIN))
async def summary(request: Request, state: State) -> Summary:
    """Views, unique viewers, playing and watch time, startup p50/p95, rebuffering,
    failures and exits before start for the range (views that started in it)."""
    tenant = await state.edge.auth.tenant(request)
    figures = await asyncio.to_thread(queries.summary, state.edge.store, scope(request, tenant.tenant_id))
    return Summary(**figures)


@get("/v1/analytics/breakdown", responses=errors(*ADMIN))
async def breakdown(request: Request, state: State) -> Breakdown | Response[str]:
    """Figures by country, region, city, os, browser, device, screen or video; most views
    first, `limit` rows (default 20) and an "other" row for the rest."""
    tenant = await state.edge.auth.tenant(request)
    dimension = _choice(request, "dimension", tuple(queries.DIMENSIONS))
    limit = ascii_int(request.query_params.get("limit", "20"), 4)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise BadInput("invalid_parameter", f"limit must be a whole number from 1 to {MAX_LIMIT}", "$.query.limit")
    as_csv = wants_csv(request)
    rows = await asyncio.to_thread(queries.breakdown, state.edge.store, scope(request, tenant.tenant_id),
                                   dimension, limit)
    if as_csv:
        return csv_response(rows, ["value", *queries.SUMMARY_FIELDS], f"breakdown-{dimension}.csv")
    return Breakdown(dimension=dimension, rows=[BreakdownRow(**row) for row in rows])


@get("/v1/analytics/timeseries", responses=errors(*ADMIN))
async def timeseries(request: Request, state: State) -> Series | Response[str]:
    """One metric per minute, hour or day, every bucket present; `concurrent_viewers` is
    views active in each minute (the peak minute per hour or day)."""
    tenant = await state.edge.auth.tenant(request)
    metric = _choice(request, "metric", queries.METRICS, "views")
    interval = _choice(request, "interval", tuple(queries.INTERVALS), "hour")
    where = scope(request, tenant.tenant_id)
    if queries.points(where, interval) > queries.MAX_POINTS:
        raise BadInput("invalid_parameter", f"too many {interval}s in this range (at most {queries.MAX_POINTS});"
                       " use a coarser interval", "$.query.interval")
    as_csv = wants_csv(request)
    points = await asyncio.to_thread(queries.timeseries, state.edge.store, where, metric, interval)
    if as_csv:
        return csv_response(points, ["t", "value"], f"{metric}-{interval}.csv")
    return Series(metric=metric, interval=interval, points=[SeriesPoint(**p) for p in points])


@get("/v1/analytics/realtime", responses=errors(*ADMIN))
async def realtime(request: Request, state: State) -> Realtime:
    """The last 5 minutes: viewers now, viewers per minute, the most watched media."""
    tenant = await state.edge.auth.tenant(request)
    data = await asyncio.to_thread(queries.realtime, state.edge.store, tenant.tenant_id)
    return msgspec.convert(data, Realtime)


ROUTES = [summary, breakdown, timeseries, realtime]

"""Admin analytics routes: summary, breakdown, timeseries, realtime (JSON or CSV).

Query parameters are checked before any SQL runs and a mistake answers 400 naming the
parameter and the allowed values. `from`/`to` are ISO 8601 (a date alone means midnight
UTC; no offset means UTC); without them, the last 7 days. `video_id` (or `stream_id`, the
same thing to the player) narrows to one media.
"""

from __future__ import annotations

import asyncio
import re

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency

from analytics import counting, quality, queries, suppression, webrtc_qoe
from analytics.wire import (Breakdown, BreakdownRow, CountedSummary, Quality, Realtime, Series, SeriesPoint,
                            WebrtcQoe, WebrtcSession, WebrtcStream)
from core.csv_responses import csv_response
from core.openapi import ADMIN, errors
from core.query_params import choice, time_range, wants_csv
from core.store import Store
from core.tenants import Tenant
from core.validation import BadInput, ascii_int

MAX_LIMIT = 1000
MAX_WEBRTC_ROWS = 10_000
_MEDIA_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def scope(request: Request, tenant_id: str) -> queries.Scope:
    start, end = time_range(request)
    video = request.query_params.get("video_id") or request.query_params.get("stream_id")
    if video is not None and not _MEDIA_ID.match(video):
        raise BadInput("invalid_parameter", "video_id is not a media id", "$.query.video_id")
    return queries.Scope(tenant_id, start, end, video)


@get("/v1/analytics/summary", responses=errors(*ADMIN))
async def summary(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> CountedSummary:
    """Views, unique viewers, playing and watch time, startup p50/p95, rebuffering,
    failures and exits before start for the range (views that started in it); with
    `consent_mode` and `unique_viewers_scope` ("day" for anonymous counting: each day's
    unique viewers, summed)."""
    where = scope(request, tenant.tenant_id)
    if where.video_id:  # a filter: whole hours, and never fewer than k viewers
        where = suppression.snapped(where)
    figures = await asyncio.to_thread(queries.summary, store, where)
    suppression.check_filtered(where, figures["unique_viewers"], tenant.k_anonymity)
    label = await asyncio.to_thread(counting.label, store, where, tenant)
    return CountedSummary(**figures, **label)


@get("/v1/analytics/quality", responses=errors(*ADMIN))
async def video_quality(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> Quality:
    """Average bitrate (kbps) and upscale % over the playing time in the range, billed to
    the renditions the players reported (`rendition_change`); filtered by media like the
    summary (whole hours, never fewer than the tenant's `k_anonymity` viewers)."""
    where = scope(request, tenant.tenant_id)
    if where.video_id:
        where = suppression.snapped(where)
        viewers = await asyncio.to_thread(queries.unique_viewers, store, where)
        suppression.check_filtered(where, viewers, tenant.k_anonymity)
    return Quality(**await asyncio.to_thread(quality.quality, store, where))


@get("/v1/analytics/breakdown", responses=errors(*ADMIN))
async def breakdown(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> Breakdown | Response[str]:
    """Figures by country, region, city, os, browser, device, screen or video; most views
    first, `limit` rows (default 20) and an "other" row for the rest and for every value
    under the tenant's `k_anonymity` unique viewers; the range counts whole hours."""
    dimension = choice(request, "dimension", tuple(queries.DIMENSIONS))
    limit = ascii_int(request.query_params.get("limit", "20"), 4)
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise BadInput("invalid_parameter", f"limit must be a whole number from 1 to {MAX_LIMIT}", "$.query.limit")
    as_csv = wants_csv(request)
    where = suppression.snapped(scope(request, tenant.tenant_id))
    if where.video_id:  # else "other" would be the isolated group
        viewers = await asyncio.to_thread(queries.unique_viewers, store, where)
        suppression.check_filtered(where, viewers, tenant.k_anonymity)
    rows = await asyncio.to_thread(queries.breakdown, store, where, dimension, limit, k=tenant.k_anonymity)
    if as_csv:
        return csv_response(rows, ["value", *queries.SUMMARY_FIELDS], f"breakdown-{dimension}.csv")
    label = await asyncio.to_thread(counting.label, store, where, tenant)
    return Breakdown(dimension=dimension, rows=[BreakdownRow(**row) for row in rows], **label)


@get("/v1/analytics/timeseries", responses=errors(*ADMIN))
async def timeseries(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> Series | Response[str]:
    """One metric per minute, hour or day, every bucket present; `concurrent_viewers` is
    views active in each minute (the peak minute per hour or day). Filtered by media, a
    bucket of fewer than the tenant's `k_anonymity` viewers is null."""
    metric = choice(request, "metric", queries.METRICS, "views")
    interval = choice(request, "interval", tuple(queries.INTERVALS), "hour")
    where = scope(request, tenant.tenant_id)
    if queries.points(where, interval) > queries.MAX_POINTS:
        raise BadInput("invalid_parameter", f"too many {interval}s in this range (at most {queries.MAX_POINTS});"
                       " use a coarser interval", "$.query.interval")
    as_csv = wants_csv(request)
    if where.video_id:  # a filter: whole hours, and never fewer than k viewers
        where = suppression.snapped(where)
        viewers = await asyncio.to_thread(queries.unique_viewers, store, where)
        suppression.check_filtered(where, viewers, tenant.k_anonymity)
    k = tenant.k_anonymity if where.video_id else 1  # unfiltered totals stay exact
    points = await asyncio.to_thread(queries.timeseries, store, where, metric, interval, k=k)
    if as_csv:
        return csv_response(points, ["t", "value"], f"{metric}-{interval}.csv")
    label = await asyncio.to_thread(counting.label, store, where, tenant)
    return Series(metric=metric, interval=interval, points=[SeriesPoint(**p) for p in points], **label)


@get("/v1/analytics/realtime", responses=errors(*ADMIN))
async def realtime(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> Realtime:
    """The last 5 minutes: viewers now, viewers per minute, the most watched media (those
    with at least the tenant's `k_anonymity` unique viewers now)."""
    data = await asyncio.to_thread(queries.realtime, store, tenant.tenant_id, k=tenant.k_anonymity)
    return msgspec.convert(data, Realtime)


@get("/v1/analytics/webrtc", responses=errors(*ADMIN))
async def webrtc(request: Request, tenant: NamedDependency[Tenant], store: NamedDependency[Store]) -> WebrtcQoe:
    """WebRTC viewer QoE measured by the edge from RTCP receiver reports: one row per WHEP
    viewer session and media kind with samples in the range (newest first, `limit` rows,
    default 500), with `packets_lost`, `loss_pct`, `jitter_ms` and `rtt_ms`, and a summary
    per stream. `stream_id` narrows to one stream. Rows name no viewer (a random session
    id), so no small-group folding applies. CSV (`format=csv`) lists the session rows."""
    start, end = time_range(request)
    stream_id = request.query_params.get("stream_id") or None
    if stream_id is not None and not _MEDIA_ID.match(stream_id):
        raise BadInput("invalid_parameter", "stream_id is not a stream id", "$.query.stream_id")
    limit = ascii_int(request.query_params.get("limit", "500"), 5)
    if limit is None or not 1 <= limit <= MAX_WEBRTC_ROWS:
        raise BadInput("invalid_parameter", f"limit must be a whole number from 1 to {MAX_WEBRTC_ROWS}",
                       "$.query.limit")
    as_csv = wants_csv(request)
    rows = await asyncio.to_thread(webrtc_qoe.sessions, store, tenant.tenant_id, start, end, stream_id, limit)
    if as_csv:  # declared as the JSON type only: a union with text makes the schema's 200 ambiguous
        return csv_response(rows, list(webrtc_qoe.SESSION_FIELDS), "webrtc-sessions.csv")  # type: ignore[return-value]
    per_stream = await asyncio.to_thread(webrtc_qoe.streams, store, tenant.tenant_id, start, end, stream_id)
    return WebrtcQoe(streams=[WebrtcStream(**s) for s in per_stream], rows=[WebrtcSession(**r) for r in rows])


ROUTES = [summary, video_quality, breakdown, timeseries, realtime, webrtc]

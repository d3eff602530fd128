"""The app factory: one `Edge` owns the store, the pipelines and their lifecycle.

Litestar only routes; the objects it routes to are built here, explicitly, at start-up,
so tests can reach the same objects (`app.state.edge`) that serve traffic.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time

from litestar import Litestar, MediaType, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from analytics import api as analytics_api, dashboard, dashboard_api, identity_api
from analytics.anonymous import DailySalts
from analytics.collector import Collector
from analytics.consent import ConsentLedger
from analytics.enrichment.geo import GeoLocator
from analytics.identity import IdentityTokens
from analytics.rollup import ViewRollup
from analytics.spool import Spool
from analytics.webrtc_qoe import QoeLog
from analytics.write_buffer import WriteBuffer
from core import client_address, csrf, keys_api, migrations, openapi
from core.auth import AdminAuth
from core.limits import Limits
from core.metrics import Registry
from core.store import Store, open_store
from core.tenants import TenantDirectory
from core.wire import Health
from edge import demo as demo_setup, http, logs, metrics_access, regions
from edge.dependencies import DEPENDENCIES
from edge.embed import routes as embed_routes
from edge.front_log import FrontLog
from edge.loop_lag import LoopLag
from edge import media_layout
from edge.media_layout import video_dir
from edge.public_media import PublicLinks
from edge.retention_hooks import ServerHooks
from edge.sessions import SessionLog
from edge.settings import Settings
from edge.streaming import api as streaming_api, events as whep_events, hls, liveness, rtc, whep, whip
from edge.streaming.live import LiveStreams
from edge.streaming.registry import StreamCache
from edge.streaming.tokens import PlaybackTokens, load_secret
from edge.vod import api as vod_api, serve as vod_serve, upload as vod_upload, videos
from edge.vod.jobs import FairJobs
from edge.vod.recordings import Recordings
from edge.vod.videos import VideoCache
from retention import api as retention_api, audit, backups, part_rewrite, policy
from retention.service import RetentionService

# Cyclic GC after start-up (CPython's default is 700, 10, 10): young collections every 50k
# net allocations instead of 700, full ones after 20 of the middle generation's.
GC_THRESHOLDS = (50_000, 20, 20)

log = logging.getLogger("edge")


class Edge:
    """Everything one running edge owns, built at start-up and torn down at shutdown."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.metrics = Registry()
        # The Python heap apart from RSS (which also holds chDB's caches): a leak shows here.
        self.metrics.gauge("wave_python_allocated_blocks", "Memory blocks held by Python objects",
                           sys.getallocatedblocks)
        self.rtc_closed = self.metrics.counter(
            "wave_rtc_sessions_closed_total", "WebRTC sessions ended, by kind (whep, whip) and reason")
        self._own_store = store is None
        self.store: Store | None = store
        self.buffer: WriteBuffer | None = None
        self.collector: Collector | None = None
        self.geo: GeoLocator | None = None
        self.consents: ConsentLedger | None = None
        self.salts: DailySalts | None = None
        self.tenants: TenantDirectory | None = None
        self.auth: AdminAuth | None = None
        self.audit: audit.AuditWriter | None = None
        self.retention: RetentionService | None = None
        self.live: LiveStreams | None = None  # the streams publishing on this edge, and their viewers
        self.streams: StreamCache | None = None
        self.finishing: set[asyncio.Task] = set()  # uploads and recovered recordings being packaged
        self.loop: asyncio.AbstractEventLoop | None = None
        self._housekeeping_task: asyncio.Task | None = None
        self.loop_lag = LoopLag()  # how late the loop runs: new WHEP viewers wait while it is late
        self.metrics.gauge("wave_event_loop_lag_seconds", "Mean lateness of the event loop over the last 2 s",
                           self.loop_lag.lag_s)
        self.whep_refused_busy = self.metrics.counter(
            "wave_whep_refused_busy_total", "WHEP viewers refused (503) while the event loop was behind")
        self.recordings: Recordings | None = None
        self.sessions: SessionLog | None = None
        self.webrtc_qoe: QoeLog | None = None  # WHEP viewers' QoE samples, batched into the store
        self.video_cache: VideoCache | None = None
        self.packaging = FairJobs(settings.transcode_jobs)  # uploads packaged at once, one per tenant
        self.metrics.gauge("wave_uploads_packaging", "Uploads being packaged now", lambda: self.packaging.running)
        self.metrics.gauge("wave_uploads_waiting", "Uploads waiting for a packaging slot", lambda: self.packaging.waiting)
        self.secret = load_secret(settings.data_dir, settings.secret_key)
        self.playback_tokens = PlaybackTokens(self.secret)
        self.demo: demo_setup.Demo | None = None
        self.rollup: ViewRollup | None = None
        self.public_links = PublicLinks(settings.media_dir)
        self.front_log = FrontLog(self, settings.front_log_path)
        self.limits = Limits(settings.limit_ip, settings.limit_tenant_events, settings.limit_tenant_consents,
                             settings.limit_whep_ip, settings.limit_whep_tenant,
                             admin_per_ip=settings.limit_admin_ip)

    async def start(self) -> None:
        s = self.settings
        self.loop = asyncio.get_running_loop()  # the loop serving this edge (tests hand it work)
        if self.store is None:
            self.store = await asyncio.to_thread(open_store, s.clickhouse_url)
        await asyncio.to_thread(migrations.apply, self.store)
        for table, outcome in (await asyncio.to_thread(part_rewrite.recover_all, self.store)).items():
            log.warning("an erasure of rows in %s, cut off by a crash: %s", table, outcome)
        self.geo = GeoLocator(s.geoip_db)
        self.buffer = WriteBuffer(
            self.store,
            Spool(s.spool_dir, s.spool_max_bytes),
            self.metrics,
            flush_rows=s.flush_rows,
            flush_ms=s.flush_ms,
        )
        await self.buffer.start()
        self.consents = ConsentLedger(self.store, s.consent_poll_s)
        self.consents.start()
        self.salts = DailySalts(self.store)  # anonymous tenants' daily salts; past days dropped
        self.salts.start()
        self.tenants = TenantDirectory(self.store)
        self.auth = AdminAuth(self.store, self.tenants, self.secret)
        self.audit = audit.AuditWriter(self.store, self.metrics)
        self.audit.start()
        self.retention = RetentionService(self.store, self.secret, ServerHooks(self),
                                          backups.backups_dir(s.data_dir, s.clickhouse_url), s.backup_every_s)
        self.streams = StreamCache(self.store)
        self.recordings = Recordings(self.store, s.media_dir, self.public_links, self.packaging, s.upload_limits)
        self.video_cache = VideoCache(self.store)
        self.sessions = SessionLog(self.store)
        self.sessions.start()
        self.webrtc_qoe = QoeLog(self.store, self.consents)
        self.webrtc_qoe.start()
        self.live = LiveStreams(self.recordings, self.public_links, self.sessions, self.rtc_closed,
                                silence_s=s.publish_silence_s, connect_timeout_s=s.rtc_connect_timeout_s)
        await vod_upload.resume(self)
        for task in await self.recordings.resume():  # recordings a crash left open: their rungs
            self.finishing.add(task)
            task.add_done_callback(self.finishing.discard)
        await asyncio.to_thread(self._sync_public_links)
        self.front_log.start()
        self.rollup = ViewRollup(self.store, s.rollup_s)
        if s.rollup_s > 0:
            self.rollup.start()
        self._housekeeping_task = asyncio.get_running_loop().create_task(self._housekeeping())
        self.loop_lag.start()
        rtc.restrict_host_candidates(s.ice_hosts)
        liveness.configure_consent(s.rtc_consent_timeout_s)
        self.collector = Collector(
            self.tenants,
            self.consents,
            self.geo,
            self.buffer,
            self.metrics,
            s.trusted_proxies,
            self.limits,
            IdentityTokens(self.secret),
            self.salts,
        )
        self.demo = await demo_setup.ensure(self) if s.demo else demo_setup.load(s.data_dir)
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # GC's full collections, which otherwise pause the event loop for tens of ms.
        gc.freeze()
        # And collect less often: a request's objects die by reference count, so young
        # collections mostly find nothing, yet each paused the loop (a cold-start ingest
        # traced 190 collections of 2-240 ms; bench/RESULTS.md, "Ingest").
        gc.set_threshold(*GC_THRESHOLDS)
        log.info("edge ready (store %s)", "embedded chDB" if self.store.embedded else "ClickHouse server")

    async def _housekeeping(self) -> None:
        """Hourly: prune expired backups, take one when due (the embedded store belongs to
        this process, so scheduled backups of it can only be taken here), and delete rows
        past their retention period."""
        directory = backups.backups_dir(self.settings.data_dir, self.settings.clickhouse_url)
        await asyncio.sleep(300)  # not in the start-up rush
        while True:
            try:
                pruned = await asyncio.to_thread(backups.prune, directory)
                if pruned:
                    log.info("pruned expired backups: %s", ", ".join(pruned))
                every = self.settings.backup_every_s
                if every > 0 and await asyncio.to_thread(backups.due, directory, every, time.time()):
                    if await self.buffer.drain(timeout_s=30):
                        media = media_layout.videos_on_disk(self.settings.media_dir)
                        manifest = await asyncio.to_thread(backups.create, self.store, directory, media,
                                                            region=self.settings.region)
                        log.info("backup %s (%s) taken", manifest.backup_id, manifest.tier)
            except Exception:
                log.exception("scheduled backup work failed")
            try:
                deleted = await asyncio.to_thread(policy.enforce, self.store)
                if any(deleted.values()):
                    log.info("retention: expired rows deleted %s", deleted)
            except Exception:
                log.exception("retention enforcement failed")
            await asyncio.sleep(3600)

    def _sync_public_links(self) -> None:
        ready = videos.in_status(self.store, "ready")
        media = self.settings.media_dir
        self.public_links.sync_videos((v.video_id, video_dir(media, v.video_id)) for v in ready if v.playback == "public")

    def client_ip(self, request) -> str | None:
        ip = client_address.from_scope(request.scope, self.settings.trusted_proxies)
        return str(ip) if ip else None

    async def stop(self) -> None:
        if self.live is not None:
            await self.live.stop()
        await self.front_log.stop()
        if self._housekeeping_task is not None:
            self._housekeeping_task.cancel()
        await self.loop_lag.stop()
        if self.rollup is not None:
            await self.rollup.stop()
        finishing = self.finishing | (self.live.finishing if self.live is not None else set())
        if finishing:  # uploads being packaged, recordings being finalized
            await asyncio.wait(finishing, timeout=30)
        if self.sessions is not None:
            await self.sessions.stop()
        if self.webrtc_qoe is not None:
            await self.webrtc_qoe.stop()
        if self.consents is not None:
            await self.consents.stop()
        if self.salts is not None:
            await self.salts.stop()
        if self.audit is not None:
            await self.audit.stop()
        if self.buffer is not None:
            await self.buffer.stop()
        if self.geo is not None:
            self.geo.close()
        if self.store is not None and self._own_store:
            self.store.close()


@get("/healthz", sync_to_thread=False)
def healthz() -> Health:
    """Liveness: the edge answers (events are spooled even while ClickHouse is away)."""
    return Health()


@get("/metrics", media_type=MediaType.TEXT, sync_to_thread=False, responses=openapi.errors(403))
def metrics(request: Request, state: State) -> Response[str]:
    """Prometheus text exposition, for this host (or `WAVE_METRICS_ALLOW`) or with
    `Authorization: Bearer $WAVE_METRICS_TOKEN`: request rates, errors and queue sizes
    tell an outsider how the service is doing and when it is weak."""
    metrics_access.check(request, state.edge.settings)
    return Response(
        state.edge.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


def create_app(settings: Settings, store: Store | None = None) -> Litestar:
    logs.hold_libraries()  # libraries that log peers' addresses stay quiet (edge/logs.py)
    edge = Edge(settings, store)

    async def on_startup(app: Litestar) -> None:
        await edge.start()
        app.state.collector = edge.collector

    async def on_shutdown(app: Litestar) -> None:
        await edge.stop()

    app = Litestar(
        route_handlers=[healthz, metrics, *analytics_api.ROUTES, *streaming_api.ROUTES,
                        *whip.ROUTES, *whep.ROUTES, *whep_events.ROUTES, *hls.ROUTES, *vod_serve.ROUTES,
                        *vod_api.ROUTES, *vod_upload.ROUTES, *embed_routes.ROUTES, *dashboard_api.ROUTES,
                        *dashboard.ROUTES, *retention_api.ROUTES, *keys_api.ROUTES,
                        *identity_api.ROUTES, *regions.ROUTES],
        state=State({"edge": edge}),
        dependencies=DEPENDENCIES,
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        exception_handlers=http.EXCEPTION_HANDLERS,
        guards=[csrf.json_content_type],
        middleware=[http.request_metrics(edge.metrics), http.security_headers, http.cors_middleware(edge),
                    http.rate_limit_middleware(edge), regions.region_redirect(settings),
                    http.audit_middleware(edge)],
        # The document only, as JSON at /schema and /schema/openapi.json: Litestar's HTML
        # renderers load their scripts from a CDN, on the dashboard's origin (SECURITY.md).
        openapi_config=OpenAPIConfig(title="wave-edge", version="0.1.0", path="/schema",
                                     render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])]),
        request_max_body_size=1024 * 1024,  # routes that take more say so (uploads stream to disk)
        debug=False,
    )
    openapi.complete(app)
    return app

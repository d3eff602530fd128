"""History of successful sessions: who published or watched what, from where, how long.

Publisher (WHIP) and WebRTC viewer (WHEP) sessions have a clear start and end. HLS is
stateless, so an HLS play session is the run of requests for one media by one client
(address + user agent), ended after `HLS_IDLE_S` without a request. Addresses are stored
as the tenant's IP mode allows; the table has a retention TTL like viewer events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

import msgspec

from analytics.enrichment.useragent import parse_user_agent
from core.client_address import parse_ip, stored_ip
from core.store import Store, StoreUnavailable
from core.tenants import Tenant

log = logging.getLogger(__name__)
HLS_IDLE_S = 30.0


class SessionRow(msgspec.Struct):
    session_id: str
    tenant_id: str
    kind: str
    media_id: str
    endpoint: str
    ip: str
    browser: str
    os: str
    started_at: float
    ended_at: float
    bytes_sent: int
    retention_days: int


@dataclass
class _HlsRun:
    tenant: Tenant
    media_id: str
    ip: str | None
    user_agent: str
    started: float
    last_seen: float
    bytes_sent: int = 0


def _same_ip(a: str, b: str) -> bool:
    return parse_ip(a) == parse_ip(b)


def row(tenant: Tenant, kind: str, media_id: str, endpoint: str, ip: str | None, user_agent: str,
        started: float, ended: float, bytes_sent: int) -> SessionRow:
    agent = parse_user_agent(user_agent)
    return SessionRow(
        session_id=hashlib.sha256(f"{kind}:{endpoint}:{started}".encode()).hexdigest()[:24],
        tenant_id=tenant.tenant_id, kind=kind, media_id=media_id, endpoint=endpoint,
        ip=stored_ip(parse_ip(ip), tenant.ip_mode), browser=agent.browser, os=agent.os,
        started_at=started, ended_at=ended, bytes_sent=bytes_sent, retention_days=tenant.sessions_days,
    )


class SessionLog:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._hls: dict[tuple[str, str], _HlsRun] = {}
        self._task: asyncio.Task | None = None

    async def record(self, session: SessionRow) -> None:
        data = msgspec.json.encode(session) + b"\n"
        try:
            await asyncio.to_thread(self._store.insert_json_lines, "sessions", data)
        except StoreUnavailable as exc:
            log.warning("session history row not written: %s", exc)

    def hls_request(self, tenant: Tenant, media_id: str, ip: str | None, user_agent: str, size: int,
                    at: float | None = None) -> None:
        """One request (or a front's sum of them, `at` the last one's time) for `media_id`."""
        key = (media_id, hashlib.sha256(f"{ip}|{user_agent}".encode()).hexdigest())
        now = time.time() if at is None else at
        run = self._hls.get(key)
        if run is None:
            run = self._hls[key] = _HlsRun(tenant, media_id, ip, user_agent, now, now)
        run.started = min(run.started, now)
        run.last_seen = max(run.last_seen, now)
        run.bytes_sent += size

    def forget_ip(self, ip: str, tenant_id: str) -> int:
        """Drop the tenant's open HLS runs from this address (a purge by IP), before they
        are written."""
        gone = [k for k, run in self._hls.items()
                if run.ip and run.tenant.tenant_id == tenant_id and _same_ip(run.ip, ip)]
        for key in gone:
            del self._hls[key]
        return len(gone)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.sweep(idle_s=0)

    async def sweep(self, idle_s: float = HLS_IDLE_S) -> None:
        now = time.time()
        for key, run in list(self._hls.items()):
            if now - run.last_seen >= idle_s:
                del self._hls[key]
                await self.record(row(run.tenant, "hls", run.media_id, key[1][:24], run.ip, run.user_agent,
                                      run.started, run.last_seen, run.bytes_sent))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(5)
            await self.sweep()

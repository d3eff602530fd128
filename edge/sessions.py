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
# An HLS run is per address and User-Agent, both the client's to choose: a made-up agent
# per request was a new run each (its whole agent kept in memory, one insert each when
# written). So an address has at most this many runs of its own (a household's devices),
# the rest of its requests go to one run with no agent, and the edge keeps at most
# MAX_HLS_RUNS in all (then new clients are not recorded until a sweep frees room).
MAX_RUNS_PER_ADDRESS = 16
MAX_HLS_RUNS = 100_000


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
    endpoint: str  # a hash of address and agent: the run's name in the history
    browser: str
    os: str
    started: float
    last_seen: float
    bytes_sent: int = 0


def _same_ip(a: str, b: str) -> bool:
    return parse_ip(a) == parse_ip(b)


def row(tenant: Tenant, kind: str, media_id: str, endpoint: str, ip: str | None, user_agent: str,
        started: float, ended: float, bytes_sent: int) -> SessionRow:
    agent = parse_user_agent(user_agent)
    return _row(tenant, kind, media_id, endpoint, ip, agent.browser, agent.os, started, ended, bytes_sent)


def _row(tenant: Tenant, kind: str, media_id: str, endpoint: str, ip: str | None, browser: str, os: str,
         started: float, ended: float, bytes_sent: int) -> SessionRow:
    return SessionRow(
        session_id=hashlib.sha256(f"{kind}:{endpoint}:{started}".encode()).hexdigest()[:24],
        tenant_id=tenant.tenant_id, kind=kind, media_id=media_id, endpoint=endpoint,
        ip=stored_ip(parse_ip(ip), tenant.ip_mode), browser=browser, os=os,
        started_at=started, ended_at=ended, bytes_sent=bytes_sent, retention_days=tenant.sessions_days,
    )


class SessionLog:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._hls: dict[tuple[str, str, str], _HlsRun] = {}  # (media, address, agent hash)
        self._runs_of: dict[str, int] = {}  # address -> its runs with an agent of their own
        self.hls_not_recorded = 0
        self._task: asyncio.Task | None = None

    async def record(self, *sessions: SessionRow) -> None:
        """Write session rows, in one insert."""
        data = b"".join(msgspec.json.encode(session) + b"\n" for session in sessions)
        try:
            await asyncio.to_thread(self._store.insert_json_lines, "sessions", data)
        except StoreUnavailable as exc:
            log.warning("%d session history rows not written: %s", len(sessions), exc)

    def hls_request(self, tenant: Tenant, media_id: str, ip: str | None, user_agent: str, size: int,
                    at: float | None = None) -> None:
        """One request (or a front's sum of them, `at` the last one's time) for `media_id`."""
        address = ip or ""
        agent_hash = hashlib.sha256(user_agent.encode()).hexdigest()
        key = (media_id, address, agent_hash)
        now = time.time() if at is None else at
        run = self._hls.get(key)
        if run is None and self._runs_of.get(address, 0) >= MAX_RUNS_PER_ADDRESS:
            key, user_agent = (media_id, address, ""), ""
            run = self._hls.get(key)
        if run is None:
            if len(self._hls) >= MAX_HLS_RUNS:
                self.hls_not_recorded += 1
                return
            agent = parse_user_agent(user_agent)
            endpoint = hashlib.sha256(f"{ip}|{user_agent}".encode()).hexdigest()[:24]
            run = self._hls[key] = _HlsRun(tenant, media_id, ip, endpoint, agent.browser, agent.os, now, now)
            if key[2]:
                self._runs_of[address] = self._runs_of.get(address, 0) + 1
        run.started = min(run.started, now)
        run.last_seen = max(run.last_seen, now)
        run.bytes_sent += size

    def forget_ip(self, ip: str, tenant_id: str) -> int:
        """Drop the tenant's open HLS runs from this address (a purge by IP), before they
        are written."""
        gone = [k for k, run in self._hls.items()
                if run.ip and run.tenant.tenant_id == tenant_id and _same_ip(run.ip, ip)]
        for key in gone:
            self._drop(key)
        return len(gone)

    def _drop(self, key: tuple[str, str, str]) -> _HlsRun:
        run = self._hls.pop(key)
        if key[2]:
            left = self._runs_of.get(key[1], 1) - 1
            if left > 0:
                self._runs_of[key[1]] = left
            else:
                self._runs_of.pop(key[1], None)
        return run

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.sweep(idle_s=0)

    async def sweep(self, idle_s: float = HLS_IDLE_S) -> None:
        """Write the runs idle for `idle_s`, in one insert."""
        now = time.time()
        ended = [self._drop(key) for key, run in list(self._hls.items()) if now - run.last_seen >= idle_s]
        if ended:
            await self.record(*(_row(run.tenant, "hls", run.media_id, run.endpoint, run.ip, run.browser, run.os,
                                       run.started, run.last_seen, run.bytes_sent) for run in ended))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(5)
            await self.sweep()

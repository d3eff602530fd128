"""The ingestion pipeline, request by request: validate, authorise, enrich, make durable.

    bytes -> CollectBatch (strict) -> clock window -> tenant -> origin -> consent
          -> user agent + geo (before the IP is cut) -> tenant IP mode -> rows -> spool

A tenant in anonymous mode skips the consent step and gets other rows: the viewer key is
the edge's daily hash, with no IP, country and device class only (analytics/anonymous.py).

Every check runs before anything is written, so a rejected batch stores nothing; the
answer is given only after the rows are fsync'd in the spool, so an accepted batch is
never lost.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from analytics import anonymous, validation
from analytics.anonymous import DailySalts
from analytics.consent import ConsentLedger
from analytics.enrichment.geo import GeoLocator
from analytics.enrichment.useragent import parse_user_agent
from analytics.events import EventIds, encode_batch
from analytics.identity import IdentityTokens
from analytics.wire import ConsentGrant, ConsentWithdraw
from analytics.write_buffer import WriteBuffer
from core.client_address import Network, client_ip, stored_ip
from core.limits import Limits
from core.metrics import Registry
from core.tenants import Tenant, TenantDirectory
from core.validation import BadInput


class RequestInfo:
    """What the collector needs of an HTTP request besides its body."""

    __slots__ = ("peer", "forwarded_for", "user_agent", "origin", "host")

    def __init__(self, peer: str | None, forwarded_for: str | None, user_agent: str, origin: str | None,
                 host: str | None = None):
        self.peer = peer
        self.forwarded_for = forwarded_for
        self.user_agent = user_agent
        self.origin = origin
        self.host = host


_SCHEMES = ("http", "https")


def same_origin(origin: str | None, host: str | None) -> bool:
    """Was the request sent by a page the edge itself served (the iframe embed, `/`)?

    A browser names the page's origin in `Origin` and the server it talks to in `Host`; on
    the edge's own pages they are the same host and port (the scheme may differ behind a
    TLS front, which keeps `Host`). Only the edge's own code runs in its origin, so these
    requests come from our player whatever site framed it: the tenant's allowed origins
    restrict other sites' pages, not the edge's own embed.
    """
    if not origin or not host:
        return False
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _SCHEMES or not parts.hostname:
        return False
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    own = name if port is None else _without_default_port(f"{name}:{port}")
    return _without_default_port(host.strip().lower()) == own


def _consenting_viewer(viewer_id: str | None) -> str:
    """An opt-in viewer's id: required (its characters never make an anonymous key's)."""
    if viewer_id is None:
        raise BadInput("invalid_field", "Object missing required field `viewer_id`", "$")
    return viewer_id


def _consents_used(tenant: Tenant) -> None:
    """An anonymous tenant records no consents: there is nothing to consent to."""
    if tenant.anonymous:
        raise BadInput("consent_not_used", "this tenant counts viewers anonymously and records no consent;"
                       " nothing was stored", "$.tenant_id", status=409)


def _without_default_port(netloc: str) -> str:
    return netloc.removesuffix(":80").removesuffix(":443")


class Collector:
    def __init__(
        self,
        tenants: TenantDirectory,
        consents: ConsentLedger,
        geo: GeoLocator,
        buffer: WriteBuffer,
        metrics: Registry,
        trusted_proxies: tuple[Network, ...] = (),
        limits: Limits | None = None,
        identity: IdentityTokens | None = None,
        salts: DailySalts | None = None,
    ) -> None:
        self.tenants = tenants
        self.salts = salts
        self.identity = identity
        self.consents = consents
        self.geo = geo
        self.buffer = buffer
        self.trusted_proxies = trusted_proxies
        self.limits = limits
        self._ids = EventIds()
        self.accepted = metrics.counter("wave_events_accepted_total", "Events accepted and spooled")
        self.rejected = metrics.counter("wave_events_rejected_total", "Events refused, by reason")
        self.dropped = metrics.counter("wave_events_dropped_total", "Events accepted but not stored, by reason")

    async def collect(self, body: bytes, request: RequestInfo) -> int:
        try:
            return await self._collect(body, request)
        except BadInput as exc:
            self.rejected.inc(reason=exc.error)
            raise

    async def _collect(self, body: bytes, request: RequestInfo) -> int:
        now = time.time()
        batch = validation.decode_batch(body)
        validation.check_clock(batch, int(now * 1000))
        validation.check_event_ids(batch)
        tenant = await self._tenant(batch.tenant_id, request)
        if not tenant.anonymous:
            viewer_id = _consenting_viewer(batch.viewer_id)
            if not await self.consents.allows_analytics(tenant.tenant_id, viewer_id, tenant.grants_valid_from_ms):
                raise BadInput(
                    "consent_required",
                    "this viewer has no active consent for analytics; nothing was stored",
                    "$.viewer_id",
                    status=403,
                )
        if self.limits is not None:  # after consent: refused junk does not spend the tenant's budget
            self.limits.tenant_events.check(tenant.tenant_id, "events for this tenant", len(batch.events))
        agent = parse_user_agent(request.user_agent)
        if agent.is_bot and tenant.drop_bots:
            self.dropped.inc(len(batch.events), reason="bot")
            return 0
        ip = client_ip(request.peer, request.forwarded_for, self.trusted_proxies)
        geo = self.geo.lookup(ip)  # before the tenant's IP mode cuts the address
        if tenant.anonymous:
            context = await self._anonymous_context(tenant, ip, request.user_agent, geo, agent, now)
        else:
            context = (
                tenant.tenant_id,
                viewer_id,
                "",  # never the batch's viewer_email: anyone can write it (see ConsentGrant)
                stored_ip(ip, tenant.ip_mode),
                geo.country,
                geo.region,
                geo.region_code,
                geo.city,
                agent.os,
                agent.os_version,
                agent.browser,
                agent.browser_version,
                agent.device,
                agent.is_bot,
                tenant.retention_days,
                now,
            )
        count = len(batch.events)
        await self.buffer.submit(encode_batch(context, batch.events, self._ids), count)
        self.accepted.inc(count)
        return count

    async def _anonymous_context(self, tenant: Tenant, ip, user_agent: str, geo, agent, now: float) -> tuple:
        """The shared part of an anonymous row: the day's hash as the only viewer key; no
        e-mail, no IP (not even cut), no region, city, OS or browser."""
        if self.salts is None:
            raise BadInput("unavailable", "anonymous counting is not set up on this edge", status=503)
        day = anonymous.utc_day(now)
        try:
            salt = self.salts.cached(day) or await asyncio.to_thread(self.salts.salt, day)
        except anonymous.SaltGone:  # this host's clock went back over midnight: never remake a salt
            raise BadInput("unavailable", "the edge's clock is behind the day it counts; retry later",
                           status=503) from None
        country, device = anonymous.coarse(geo, agent)
        key = anonymous.viewer_key(salt, tenant.tenant_id, str(ip or ""), user_agent)
        return (tenant.tenant_id, key, "", anonymous.UNSPECIFIED_IP, country, "", "", "",
                "", "", "", "", device, agent.is_bot, tenant.retention_days, now)

    async def grant(self, body: bytes, request: RequestInfo) -> str:
        grant = validation.decode(body, ConsentGrant)
        tenant = await self._tenant(grant.tenant_id, request)
        _consents_used(tenant)
        proof = self._proven_email(tenant, grant) if grant.viewer_email or grant.identity_token else ""
        return await self._ledger_row(
            tenant, grant.viewer_id, request, "grant",
            sorted(set(grant.purposes)), grant.policy_version, (grant.viewer_email or "") if proof else "", proof,
        )

    def _proven_email(self, tenant: Tenant, grant: ConsentGrant) -> str:
        """How the grant's e-mail is proven ('token'), or a 4xx: an unproven e-mail is never
        stored, since a link would hand the viewer's data to whoever names that e-mail."""
        if not grant.viewer_email:
            raise BadInput("invalid_field", "identity_token proves a viewer_email: send both", "$.viewer_email")
        if not tenant.identified_viewers:
            raise BadInput("identification_disabled",
                           "this tenant does not identify its viewers: send no viewer_email; nothing was stored",
                           "$.viewer_email", status=403)
        if self.identity is None or not self.identity.valid(
                tenant.tenant_id, tenant.identity_version, grant.viewer_id, grant.viewer_email, grant.identity_token):
            raise BadInput("identity_unproven",
                           "viewer_email needs a valid, unexpired identity_token signed by the tenant's server"
                           " for this viewer_id and e-mail; nothing was stored", "$.identity_token", status=403)
        return "token"

    async def withdraw(self, body: bytes, request: RequestInfo) -> str:
        withdraw = validation.decode(body, ConsentWithdraw)
        tenant = await self._tenant(withdraw.tenant_id, request)
        # A withdrawal is always recorded, in any mode: a viewer who consented before the
        # tenant went anonymous may still withdraw that consent (and it counts if it
        # ever switches back).
        return await self._ledger_row(tenant, withdraw.viewer_id, request, "withdraw", [], "", "", "")

    async def _ledger_row(
        self, tenant: Tenant, viewer_id: str, request: RequestInfo, action: str,
        purposes: list[str], policy_version: str, email: str, email_proof: str,
    ) -> str:
        """Append a grant or withdrawal, with the address as the tenant's IP mode allows."""
        if self.limits is not None:
            self.limits.tenant_consents.check(tenant.tenant_id, "consent calls for this tenant")
        ip = client_ip(request.peer, request.forwarded_for, self.trusted_proxies)
        return await self.consents.record(
            tenant_id=tenant.tenant_id,
            viewer_id=viewer_id,
            action=action,
            purposes=purposes,
            policy_version=policy_version,
            email=email,
            email_proof=email_proof,
            ip=stored_ip(ip, tenant.ip_mode),
            browser=parse_user_agent(request.user_agent).browser,
        )

    async def _tenant(self, tenant_id: str, request: RequestInfo) -> Tenant:
        tenant = await self.tenants.get(tenant_id)
        if tenant is None:
            raise BadInput("unknown_tenant", f"no tenant {tenant_id!r}", "$.tenant_id")
        origin = request.origin
        if not (tenant.origin_allowed(origin) or same_origin(origin, request.host)):
            raise BadInput(
                "origin_not_allowed", f"origin {origin!r} may not send data to this tenant", "$", 403
            )
        return tenant

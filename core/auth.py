"""Admin authentication: the tenant's admin key decides the tenant.

Two ways to present it: `Authorization: Bearer <admin_key>` (API clients), or the
dashboard's session cookie, which the key is exchanged for once (`POST /admin/session`)
so the key itself never sits in the browser's storage. The cookie is HttpOnly and
SameSite=Strict (other sites' pages cannot make the browser send it), signed with the
edge's secret, and names the *hash* of the key it came from: every request re-checks that
this key is still valid, so revoking a key ends its dashboard sessions too. It also names
a random session id: signing out records that id as ended (core/admin_sessions.py),
so a copy of the cookie stops working with the session. Same-site pages can still make
the browser send it: state changes made with it pass the CSRF checks (core/csrf.py).

Every admin route calls `tenant()`; there is no other way to learn which tenant a request
acts for, so one tenant's key can never reach another tenant's data. Keys are looked up
by hash (no comparison of secrets in Python) and cached for a couple of seconds so
revocations take effect quickly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time

from litestar import Request
from litestar.di import NamedDependency

from core import admin_sessions, csrf
from core.cache import TTLCache
from core.regions import REGION_PATTERN
from core.store import Store
from core.tenants import Tenant, TenantDirectory, hash_key, tenant_id_for_key_hash
from core.validation import BadInput

_CACHE_S = 2.0
COOKIE = "wave_admin"
SESSION_S = 8 * 3600
# What the edge issues: `wk_` admin, `sk_` support, `ok_` operator keys (core/tenants.py).
_KEY_SHAPE = re.compile(rf"^(?:wk|sk|ok)_(?:{REGION_PATTERN}_)?[A-Za-z0-9_-]{{43}}$", re.ASCII)  # `wk_eu_…` or legacy
# Lookups of keys not in the cache at once: a flood of guessed keys waits on itself, not on
# the threads that beacons and consents need.
_LOOKUPS_AT_ONCE = 2
_COOKIE_PARTS = re.compile(r"^([0-9a-f]{64})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$", re.ASCII)


def equal_secrets(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected (ASCII) one.
    `hmac.compare_digest` raises TypeError on non-ASCII `str`: compare bytes instead, so
    a token of any characters is simply wrong (a 4xx), never a 500."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token


def support_granted(store: Store, tenant_id: str) -> bool:
    """Has the tenant a live grant of support access (retention/support.py makes them)?"""
    return bool(store.rows(
        "SELECT 1 FROM support_grants FINAL WHERE tenant_id = {t:String} AND NOT revoked"
        " AND expires_at > now64(3) LIMIT 1", {"t": tenant_id}))


def _actor(request: Request, tenant: Tenant, key_hash: str, kind: str) -> None:
    """Who acts, for the audit log (edge/http.py writes it after the response)."""
    request.scope.setdefault("state", {})["wave_actor"] = (tenant.tenant_id, "key:" + key_hash[:12], kind)


class AdminAuth:
    def __init__(self, store: Store, tenants: TenantDirectory, secret: bytes) -> None:
        self._store = store
        self._tenants = tenants
        self._keys: TTLCache[str] = TTLCache(_CACHE_S, max_entries=10_000)
        self._lookups = asyncio.Semaphore(_LOOKUPS_AT_ONCE)
        self._ended: TTLCache[bool] = TTLCache(_CACHE_S, max_entries=10_000)  # session id -> signed out
        # A key of its own, so a session cookie can never pass for a playback token.
        self._signing = hmac.new(secret, b"wave-edge admin session", hashlib.sha256).digest()

    async def tenant(self, request: Request) -> Tenant:
        key = bearer(request)
        if key is not None:
            if not _KEY_SHAPE.fullmatch(key):  # not a key this edge issued: no lookup at all
                raise BadInput("unauthorized", "unknown or revoked admin key", "$.headers.authorization", status=401)
            key_hash = hash_key(key)
            if await self._key_owner(key_hash) == "support:":
                return await self._support(request, key_hash)
            tenant = await self._tenant_for_hash(key_hash)
            if tenant is None:
                raise BadInput("unauthorized", "unknown or revoked admin key", "$.headers.authorization", status=401)
            _actor(request, tenant, hash_key(key), "admin")
            return tenant
        cookie = request.cookies.get(COOKIE)
        if cookie:
            session = await self.session(cookie)
            tenant = await self._tenant_for_hash(session[0]) if session else None
            if tenant is None:
                raise BadInput("unauthorized", "the dashboard session ended; sign in again", "$.cookies.wave_admin",
                               status=401)
            _actor(request, tenant, session[0], "admin-dashboard")
            csrf.cookie_call(request)
            return tenant
        raise BadInput("unauthorized", "send the tenant's admin key as 'Authorization: Bearer <key>'",
                       "$.headers.authorization", status=401)

    def forget(self, key_hash: str) -> None:
        """A revoked key stops working on this edge now, not when its cache entry expires."""
        self._keys.forget(key_hash)

    async def _support(self, request: Request, key_hash: str) -> Tenant:
        """An operator's support key: reads only, of the tenant named in X-Wave-Tenant,
        and only while that tenant's grant is live (checked on every request)."""
        tenant_id = request.headers.get("x-wave-tenant", "")
        tenant = await self._tenants.get(tenant_id) if tenant_id else None
        if tenant is None:
            raise BadInput("forbidden", "support keys name the tenant in X-Wave-Tenant", "$.headers.x-wave-tenant",
                           status=403)
        _actor(request, tenant, key_hash, "support")
        if request.method not in ("GET", "HEAD"):
            raise BadInput("forbidden", "support access is read-only", "$.method", status=403)
        if not await asyncio.to_thread(support_granted, self._store, tenant.tenant_id):
            raise BadInput("forbidden", "this tenant has not granted support access (or it expired)",
                           "$.headers.x-wave-tenant", status=403)
        return tenant

    async def operator(self, request: Request) -> str:
        """An operator key (offboarding only); returns its key id for the audit log."""
        key = bearer(request)
        key_hash = hash_key(key) if key else ""
        if not key or not _KEY_SHAPE.fullmatch(key) or await self._key_owner(key_hash) != "operator:":
            raise BadInput("unauthorized", "send an operator key as 'Authorization: Bearer <key>'",
                           "$.headers.authorization", status=401)
        actor = "key:" + key_hash[:12]
        request.scope.setdefault("state", {})["wave_actor"] = ("", actor, "operator")
        return actor

    async def sign_in(self, request: Request, key: str) -> tuple[Tenant, str]:
        """Check a key and make the session cookie's value for it."""
        key_hash = hash_key(key)
        tenant = await self._tenant_for_hash(key_hash) if _KEY_SHAPE.fullmatch(key) else None
        if tenant is None:
            raise BadInput("unauthorized", "unknown or revoked admin key", "$.admin_key", status=401)
        _actor(request, tenant, key_hash, "admin-dashboard")
        expires = int(time.time()) + SESSION_S
        payload = f"{key_hash}.{expires}.{secrets.token_urlsafe(16)}"
        return tenant, f"{payload}.{self._mac(payload)}"

    async def session(self, cookie: str) -> tuple[str, str, int] | None:
        """(key hash, session id, expiry) of a valid, unexpired, not signed-out cookie."""
        parsed = self._verify(cookie)
        if parsed is None or await self._ended.get(parsed[1], lambda: admin_sessions.ended(self._store, parsed[1])):
            return None
        return parsed

    async def sign_out(self, cookie: str) -> None:
        """End the cookie's session on every edge (at once on this one)."""
        parsed = self._verify(cookie)
        if parsed is not None:
            await asyncio.to_thread(admin_sessions.end, self._store, parsed[1], parsed[2])
            self._ended.put(parsed[1], True)

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._signing, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _verify(self, value: str) -> tuple[str, str, int] | None:
        """(key hash, session id, expiry) of a well-signed, unexpired cookie, else None.
        Checked against an ASCII pattern first: `"²".isdigit()` is true, and `int` or
        `compare_digest` on such text would raise (a 500) instead of refusing."""
        match = _COOKIE_PARTS.fullmatch(value)
        if match is None:
            return None
        key_hash, expires, session_id, mac = match.groups()
        if not equal_secrets(mac, self._mac(f"{key_hash}.{expires}.{session_id}")) or int(expires) < time.time():
            return None
        return key_hash, session_id, int(expires)

    async def _tenant_for_hash(self, key_hash: str) -> Tenant | None:
        # cached by hash: no clear key is kept in memory
        tenant_id = await self._key_owner(key_hash)
        if tenant_id in ("support:", "operator:"):  # not admin keys (and no dashboard sessions)
            return None
        return await self._tenants.get(tenant_id) if tenant_id else None

    async def _key_owner(self, key_hash: str) -> str | None:
        """The tenant id (or "support:"/"operator:") of a live key, from the cache or, a few
        at a time, from the store."""
        hit, owner = self._keys.lookup(key_hash)
        if hit:
            return owner
        async with self._lookups:
            return await self._keys.get(key_hash, lambda: tenant_id_for_key_hash(self._store, key_hash))


async def admin_tenant(request: Request, auth: NamedDependency[AdminAuth]) -> Tenant:
    """The `tenant` dependency of every admin route: the tenant the request's key or
    dashboard session acts for (401 otherwise). A route that names `tenant` among its
    parameters cannot run unauthenticated; there is no inline check to forget."""
    return await auth.tenant(request)

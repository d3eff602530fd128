"""Admin authentication: `Authorization: Bearer <admin_key>` decides the tenant.

Every admin route calls `admin_tenant()`; there is no other way to learn which tenant a
request acts for, so one tenant's key can never reach another tenant's data. The key's
hash is looked up (constant-time by construction: no comparison of secrets happens in
Python) and the answer cached for a couple of seconds so revocations take effect quickly.
"""

from __future__ import annotations

from litestar import Request

from analytics.cache import TTLCache
from analytics.store import Store
from analytics.tenants import Tenant, TenantDirectory, hash_key, tenant_id_for_key
from analytics.validation import BadInput

_CACHE_S = 2.0


class AdminAuth:
    def __init__(self, store: Store, tenants: TenantDirectory) -> None:
        self._store = store
        self._tenants = tenants
        self._keys: TTLCache[str] = TTLCache(_CACHE_S, max_entries=10_000)

    async def tenant(self, request: Request) -> Tenant:
        key = bearer(request)
        if key is None:
            raise BadInput("unauthorized", "send the tenant's admin key as 'Authorization: Bearer <key>'",
                           "$.headers.authorization", status=401)
        # cached by hash: no clear key is kept in memory
        tenant_id = await self._keys.get(hash_key(key), lambda: tenant_id_for_key(self._store, key))
        tenant = await self._tenants.get(tenant_id) if tenant_id else None
        if tenant is None:
            raise BadInput("unauthorized", "unknown or revoked admin key", "$.headers.authorization", status=401)
        return tenant


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token

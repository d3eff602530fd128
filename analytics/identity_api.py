"""A tenant's identity secret: read it (to configure the tenant's server) and rotate it.

The tenant's server signs identity tokens with this secret (analytics/identity.py); the
edge derives it and never stores it. Rotation retires the old secret at once on this edge
and within the tenant cache's few seconds on others; tokens are short-lived, so a site
switches by deploying the new secret right after rotating. Both calls are audited like
every admin call; the audit records the version, never the secret.
"""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.datastructures import CacheControlHeader

from analytics.identity import IdentityTokens
from analytics.wire import IdentitySecret
from core import tenants
from core.openapi import ADMIN, errors
from core.store import Store
from core.tenants import TenantDirectory


def _answer(identity: IdentityTokens, tenant: tenants.Tenant) -> IdentitySecret:
    secret = identity.secret(tenant.tenant_id, tenant.identity_version)
    return IdentitySecret(identity_secret=secret, version=tenant.identity_version,
                          identified_viewers=tenant.identified_viewers)


_NO_STORE = CacheControlHeader(no_store=True)


@get("/v1/identity-secret", responses=errors(*ADMIN), cache_control=_NO_STORE)
async def read_secret(tenant: NamedDependency[tenants.Tenant], identity: NamedDependency[IdentityTokens]) -> IdentitySecret:
    """The secret the tenant's server signs viewers' identity tokens with."""
    return _answer(identity, tenant)


@post("/v1/identity-secret", status_code=200, request_max_body_size=1024, responses=errors(*ADMIN),
      cache_control=_NO_STORE)
async def rotate_secret(request: Request, tenant: NamedDependency[tenants.Tenant], store: NamedDependency[Store],
                        tenant_directory: NamedDependency[TenantDirectory],
                        identity: NamedDependency[IdentityTokens]) -> IdentitySecret:
    """Replace the identity secret: tokens signed with the old one stop proving anything."""
    current = await asyncio.to_thread(tenants.load_tenant, store, tenant.tenant_id) or tenant  # not a cached copy
    rotated = msgspec.structs.replace(current, identity_version=current.identity_version + 1)
    await asyncio.to_thread(tenants.save_tenant, store, rotated)
    tenant_directory.forget(tenant.tenant_id)
    request.scope.setdefault("state", {})["wave_audit"] = {
        "before": {"identity_version": current.identity_version},
        "after": {"identity_version": rotated.identity_version},
    }
    return _answer(identity, rotated)


ROUTES = [read_secret, rotate_secret]

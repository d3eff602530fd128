"""The services route handlers receive as parameters (Litestar dependencies).

Handlers outside edge/ never reach into the `Edge` object: each names what it needs
(`tenant`, `store`, `auth`, `tenant_directory`, `identity`, `retention`, `over_tls`) and this module, in
the composition root, says where each comes from. `tenant` is the authenticated tenant of
an admin route (core.auth.admin_tenant): asking for it is the authentication.
"""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State
from litestar.di import Provide

from analytics.identity import IdentityTokens
from core import client_address
from core.auth import AdminAuth, admin_tenant
from core.store import Store
from core.tenants import TenantDirectory
from retention.service import RetentionService


def _store(state: State) -> Store:
    return state.edge.store


def _auth(state: State) -> AdminAuth:
    return state.edge.auth


def _tenant_directory(state: State) -> TenantDirectory:
    return state.edge.tenants


def _identity(state: State) -> IdentityTokens:
    return state.edge.collector.identity


def _retention(state: State) -> RetentionService:
    return state.edge.retention


def _over_tls(request: Request, state: State) -> bool:
    return client_address.over_tls(request.scope, state.edge.settings.trusted_proxies)


DEPENDENCIES = {
    "store": Provide(_store, sync_to_thread=False),
    "auth": Provide(_auth, sync_to_thread=False),
    "tenant_directory": Provide(_tenant_directory, sync_to_thread=False),
    "identity": Provide(_identity, sync_to_thread=False),
    "retention": Provide(_retention, sync_to_thread=False),
    "over_tls": Provide(_over_tls, sync_to_thread=False),
    "tenant": Provide(admin_tenant),
}

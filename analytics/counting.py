"""Which way the viewers behind a figure were counted: consented ids or daily keys.

Opt-in viewers carry a stable random id, so "unique viewers" over a week counts each of
them once. Anonymous viewers (analytics/anonymous.py) get a new key every day, so the same
week counts a daily visitor seven times: the figure means "unique viewers per day, summed".
A tenant may switch modes, so the answer comes from the views in the range (anonymous
keys carry a prefix no client's viewer id can have), not from today's setting.
"""

from __future__ import annotations

from analytics.queries import Scope, views_by_mode
from core.store import Store
from core.tenants import Tenant


def unique_viewers_scope(anonymous_views: int, consented_views: int, tenant: Tenant) -> str:
    """"day", "range" or "mixed"; a range without views says what the tenant's mode gives."""
    if anonymous_views and consented_views:
        return "mixed"
    if anonymous_views:
        return "day"
    if consented_views:
        return "range"
    return "day" if tenant.anonymous else "range"


def label(store: Store, scope: Scope, tenant: Tenant) -> dict[str, str]:
    """The fields every analytics answer carries: `consent_mode`, `unique_viewers_scope`."""
    return {"consent_mode": tenant.consent_mode,
            "unique_viewers_scope": unique_viewers_scope(*views_by_mode(store, scope), tenant)}

"""Which paths are the admin surface: audited, limited per address, CSRF-guarded.

Everything under `/v1/` is admin (a tenant's key or dashboard session decides the tenant)
except the player's public calls, plus the dashboard's session itself.
"""

from __future__ import annotations

ADMIN_PREFIXES = ("/v1/", "/admin/session")
PUBLIC_PREFIXES = ("/v1/collect", "/v1/consent", "/v1/playback/")


def is_admin_path(path: str) -> bool:
    return path.startswith(ADMIN_PREFIXES) and not path.startswith(PUBLIC_PREFIXES)

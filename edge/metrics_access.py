"""Who may read `/metrics`: this host, the networks in `WAVE_METRICS_ALLOW`, or whoever
holds `WAVE_METRICS_TOKEN`.

Request rates, error counts and queue sizes hold no personal data, but they tell an
outsider how the edge is doing and when an attack starts to bite (SECURITY.md).
"""

from __future__ import annotations

from litestar import Request

from core.auth import bearer, equal_secrets
from core.client_address import client_ip, trusted_peer
from core.validation import BadInput


def check(request: Request, settings) -> None:
    """403 unless the caller has the metrics token or an allowed address. A request that
    came through a proxy we do not trust (it has X-Forwarded-For, the peer is not in
    WAVE_TRUSTED_PROXIES) gets no address-based access: a front on this host without that
    setting would otherwise make every visitor look local."""
    token = settings.metrics_token
    if token and equal_secrets(bearer(request) or "", token):
        return
    client = request.scope.get("client")
    peer = client[0] if client else None
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and not trusted_peer(peer, settings.trusted_proxies):
        address = None
    else:
        address = client_ip(peer, forwarded, settings.trusted_proxies)
    if address is None or not any(address.version == net.version and address in net for net in settings.metrics_allow):
        raise BadInput("forbidden", "metrics are for this host, WAVE_METRICS_ALLOW or WAVE_METRICS_TOKEN",
                       "$.headers.authorization", status=403)

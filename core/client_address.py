"""Which address a request came from, and how much of it a tenant lets us keep.

The client address is the socket peer unless that peer is a proxy we trust; then we walk
`X-Forwarded-For` from the right and take the first address not in a trusted network
(the left part of the header is whatever the client chose to send).
The tenant's IP mode is applied *after* geolocation: `full`, `truncated` (IPv4 /24, IPv6
/48: no longer one person) or `none`. Stored values are IPv6 (IPv4 mapped).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNSPECIFIED = "::"


def parse_ip(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: IPAddress, networks: Iterable[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def trusted_peer(peer: str | None, trusted: tuple[Network, ...]) -> bool:
    """Is the socket peer one of the proxies whose forwarded headers we believe?"""
    ip = parse_ip(peer)
    return ip is not None and _trusted(ip, trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> IPAddress | None:
    ip = parse_ip(peer)
    if ip is None or not trusted or not forwarded_for or not _trusted(ip, trusted):
        return ip
    for hop in reversed(forwarded_for.split(",")):
        hop_ip = parse_ip(hop)
        if hop_ip is None:
            return ip  # garbage in the chain: trust nothing past the last good hop
        ip = hop_ip
        if not _trusted(hop_ip, trusted):
            return hop_ip
    return ip


def from_scope(scope, trusted: tuple[Network, ...]) -> IPAddress | None:
    """The client address of an ASGI request (a Litestar `Request.scope` too): the one rule
    the collector, the rate limits, session history and /metrics all use."""
    client = scope.get("client")
    forwarded = next((v for k, v in scope["headers"] if k == b"x-forwarded-for"), None)
    return client_ip(client[0] if client else None, forwarded.decode("latin-1") if forwarded else None, trusted)


def stored_ip(ip: IPAddress | None, mode: str) -> str:
    """The address as the tenant's IP mode allows it to be stored, in IPv6 text form."""
    if ip is None or mode == "none":
        return UNSPECIFIED
    if mode == "truncated":
        prefix = 24 if ip.version == 4 else 48
        ip = ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address
    if ip.version == 4:
        return f"::ffff:{ip}"
    return str(ip)


def over_tls(scope, trusted: tuple[Network, ...]) -> bool:
    """Did the browser reach us over HTTPS? Only a trusted proxy may say so for it
    (`X-Forwarded-Proto`), as only it may say who the client is."""
    if scope.get("scheme") == "https":
        return True
    client = scope.get("client")
    proto = next((v for k, v in scope["headers"] if k == b"x-forwarded-proto"), b"").decode("latin-1")
    return proto.split(",")[0].strip().lower() == "https" and trusted_peer(client[0] if client else None, trusted)

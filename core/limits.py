"""Abuse limits: token buckets per client address and per tenant.

A bucket holds up to `burst` tokens and gains `rate` a second; a request (or, for beacons,
an event) takes one, and when none is left the answer is 429 with the seconds until one
is back. Buckets live in memory, one process each: an edge protects itself, and the limits
are set so that legitimate traffic never comes near them (README "Configuration",
SECURITY.md).

The address is the one the trusted proxies vouch for (`WAVE_TRUSTED_PROXIES`); without a
trusted proxy, every viewer behind a load balancer would share the balancer's bucket.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import msgspec

from core.validation import BadInput


class Limit(msgspec.Struct, frozen=True):
    """`rate` per second, up to `burst` at once; a rate of 0 means unlimited."""

    rate: float
    burst: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        """`50/300` (rate/burst), `50` (burst = rate), or `0`/`off` (unlimited)."""
        text = text.strip().lower()
        if text in ("", "0", "off", "none"):
            return cls(0.0, 0.0)
        rate, _, burst = text.partition("/")
        limit = cls(float(rate), float(burst or rate))
        if limit.rate < 0 or limit.burst < 1:
            raise ValueError(f"a limit is RATE[/BURST] with BURST >= 1, not {text!r}")
        return limit


class RateLimited(BadInput):
    """429: the caller's bucket is empty; `retry_after` seconds until it is not."""

    def __init__(self, what: str, retry_after: float) -> None:
        super().__init__("rate_limited", f"too many {what}; retry after {math.ceil(retry_after)} s", "$", 429)
        self.retry_after = max(1, math.ceil(retry_after))


class TokenBuckets:
    """One bucket per key. Full buckets carry no information, so they are dropped whenever
    the table has doubled since the last sweep (memory follows the clients active now, not
    every client ever seen), and it never exceeds `max_keys` (a flood of fresh addresses
    cannot grow memory without bound)."""

    def __init__(self, limit: Limit, clock: Callable[[], float] = time.monotonic, max_keys: int = 200_000,
                 sweep_from: int = 10_000) -> None:
        self.limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._sweep_from = sweep_from
        self._sweep_at = sweep_from
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, updated]

    def take(self, key: str, cost: float = 1.0) -> float:
        """Takes `cost` tokens if the bucket has them and returns 0; else returns the
        seconds until it would (nothing is taken: a refused request costs nothing)."""
        rate, burst = self.limit.rate, self.limit.burst
        if rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= min(self._sweep_at, self._max_keys):
                self._forget_full(now)
            bucket = self._buckets[key] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        cost = min(cost, burst)  # a batch bigger than the burst is not refused forever
        if tokens >= cost:
            bucket[0] = tokens - cost
            return 0.0
        bucket[0] = tokens
        return (cost - tokens) / rate

    def check(self, key: str, what: str, cost: float = 1.0) -> None:
        """`take`, raising RateLimited when refused."""
        wait = self.take(key, cost)
        if wait:
            raise RateLimited(what, wait)

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_full(self, now: float) -> None:
        rate, burst = self.limit.rate, self.limit.burst
        self._buckets = {k: b for k, b in self._buckets.items() if b[0] + (now - b[1]) * rate < burst}
        if len(self._buckets) >= self._max_keys:  # all of them busy: start afresh, never grow
            self._buckets.clear()
        self._sweep_at = max(self._sweep_from, 2 * len(self._buckets))


class Limits:
    """Every abuse limit of one edge (settings give the figures)."""

    def __init__(self, per_ip: Limit, tenant_events: Limit, tenant_consents: Limit, whep_per_ip: Limit,
                 whep_per_tenant: Limit, clock: Callable[[], float] = time.monotonic,
                 admin_per_ip: Limit = Limit(20, 400)) -> None:
        self.per_ip = TokenBuckets(per_ip, clock)
        # Admin routes and the dashboard's session, per address, before any key is looked up.
        self.admin_per_ip = TokenBuckets(admin_per_ip, clock)
        self.tenant_events = TokenBuckets(tenant_events, clock)
        self.tenant_consents = TokenBuckets(tenant_consents, clock)
        self.whep_per_ip = TokenBuckets(whep_per_ip, clock)
        self.whep_per_tenant = TokenBuckets(whep_per_tenant, clock)

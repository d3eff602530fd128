"""Which abuse limits a benchmark's edge ran with, said in the benchmark's own output.

A load generator is one process on one address, sending as fast as it can: to the edge's
abuse limits (core/limits.py) it looks like an attacker, and a refusal it provokes is then
measured as if it were the edge's capacity (bench/edge.py once reported 10 WHEP viewers
because the per-address WHEP limit refused viewer 21). So each benchmark either turns off
the limits its load would trip, or spreads its load over addresses behind the trusted proxy
as production traffic would be, and prints which in a `"limits"` field: every limit's
value as the edge saw it, and how the load met it.
"""

from __future__ import annotations

import msgspec

from core.limits import Limit
from edge.settings import _LIMITS, Settings

NAMES = tuple(_LIMITS.values())  # WAVE_LIMIT_IP, WAVE_LIMIT_TENANT_EVENTS, ...
_DEFAULTS = {_LIMITS[f.name]: f.default for f in msgspec.structs.fields(Settings) if f.name in _LIMITS}


def turned_off(env: dict[str, str], *names: str) -> dict[str, str]:
    """`env` with the named limits set to `off` for the edge process it starts."""
    unknown = set(names) - set(NAMES)
    if unknown:
        raise ValueError(f"not an abuse limit: {sorted(unknown)}")
    return {**env, **{name: "off" for name in names}}


def _value(env: dict[str, str], name: str) -> str:
    limit = Limit.parse(env[name]) if name in env else _DEFAULTS[name]
    return "off" if limit.rate == 0 else f"{limit.rate:g}/{limit.burst:g}"


def report(env: dict[str, str], how: dict[str, str] | None = None) -> dict[str, str]:
    """{limit: "off" | "RATE/BURST" | "RATE/BURST; <how the load met it>"} for every limit,
    from the environment the edge was started with (defaults where it set none)."""
    how = how or {}
    out = {}
    for name in NAMES:
        value = _value(env, name)
        out[name] = f"{value}; {how[name]}" if name in how and value != "off" else value
    return out


def not_on_path(why: str) -> dict[str, str]:
    """For a benchmark that calls the store in-process: no HTTP request, no limit met."""
    return {name: f"not on the path ({why})" for name in NAMES}

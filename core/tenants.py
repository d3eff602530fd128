"""Tenants (the platform's clients) and their API keys.

A tenant owns its media and data and decides how its viewers are treated: how long events
are kept, how much of an IP address is stored, which web origins may send beacons.
API keys are random 256-bit secrets; only their SHA-256 is stored (a slow KDF buys
nothing for secrets with that much entropy, and lookups stay one indexed read).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Literal, get_args

import msgspec

from core.cache import TTLCache
from core.regions import REGION, region_of, tagged
from core.store import Store

IpMode = Literal["full", "truncated", "none"]
IP_MODES: tuple[str, ...] = ("full", "truncated", "none")


Takeover = Literal["idle", "newest"]
TAKEOVERS: tuple[str, ...] = get_args(Takeover)
# The small-group threshold's bounds: 1 shows every group (suppression off).
MIN_K, MAX_K = 1, 1000
# How viewers are counted: "opt-in" stores beacons only under a recorded consent;
# "anonymous" asks nothing and keeps no stable viewer id, no IP (analytics/anonymous.py).
ConsentMode = Literal["opt-in", "anonymous"]
CONSENT_MODES: tuple[str, ...] = get_args(ConsentMode)
# A live ladder's rungs: picture heights of the lower renditions (edge/streaming/renditions.py).
LADDER_MIN_HEIGHT, LADDER_MAX_HEIGHT, LADDER_MAX_RUNGS = 144, 1080, 3
DEFAULT_LIVE_LADDER = (360,)


class Tenant(msgspec.Struct, frozen=True):
    tenant_id: str
    name: str
    region: str
    retention_days: int
    ip_mode: IpMode
    allowed_origins: tuple[str, ...] = ()
    drop_bots: bool = True
    consent_text: str = ""
    policy_version: str = "1"
    identified_viewers: bool = False
    sessions_days: int = 395
    consents_days: int = 425
    audit_days: int = 400
    server_logs_days: int = 30
    identity_version: int = 1  # which identity secret is current (analytics/identity.py)
    # Who may replace a live publish: "idle" (a publish silent for WAVE_PUBLISH_TAKEOVER_S)
    # or "newest" (any new authenticated publish, as MediaMTX does by default).
    publisher_takeover: Takeover = "idle"
    # Small groups: a breakdown row or a filtered figure under this many unique viewers is
    # never shown on its own (analytics/suppression.py). 1 turns suppression off.
    k_anonymity: int = 5
    consent_mode: ConsentMode = "opt-in"
    # Consents recorded before this instant (epoch ms) do not count: set when the tenant
    # switches (back) to opt-in, so every viewer is asked again (`with_consent_mode`).
    grants_valid_from_ms: int = 0

    @property
    def anonymous(self) -> bool:
        return self.consent_mode == "anonymous"
    # Live ABR: heights of the lower renditions each live stream also gets (encoded once
    # per stream, only those below the source's height); () = the source alone.
    live_ladder: tuple[int, ...] = DEFAULT_LIVE_LADDER

    def origin_allowed(self, origin: str | None) -> bool:
        """No list means any origin (script embeds work out of the box); else exact match."""
        return not self.allowed_origins or origin is None or origin in self.allowed_origins


class TenantError(ValueError):
    pass


def check_live_ladder(heights) -> tuple[int, ...]:
    """A live ladder as stored: distinct even heights, tallest first; TenantError if not one."""
    heights = tuple(heights)
    if len(heights) > LADDER_MAX_RUNGS:
        raise TenantError(f"live_ladder has at most {LADDER_MAX_RUNGS} rungs")
    for height in heights:
        if isinstance(height, bool) or not isinstance(height, int) or not (
                LADDER_MIN_HEIGHT <= height <= LADDER_MAX_HEIGHT) or height % 2:
            raise TenantError(f"live_ladder heights must be even numbers from {LADDER_MIN_HEIGHT}"
                              f" to {LADDER_MAX_HEIGHT}, not {height!r}")
    if len(set(heights)) != len(heights):
        raise TenantError("live_ladder heights must be distinct")
    return tuple(sorted(heights, reverse=True))


def parse_live_ladder(text: str) -> tuple[int, ...]:
    """`360,240` (the CLI's spelling) as a ladder; "" or "none" = the source alone."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        heights = [int(part) for part in text.split(",")]
    except ValueError:
        raise TenantError(f"live_ladder must be heights separated by commas (e.g. 360,240), not {text!r}") from None
    return check_live_ladder(heights)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(
    store: Store,
    name: str,
    *,
    region: str = "eu",
    retention_days: int = 395,
    ip_mode: str = "truncated",
    allowed_origins: tuple[str, ...] = (),
    drop_bots: bool = True,
    consent_text: str = "",
    policy_version: str = "1",
    identified_viewers: bool = False,
    publisher_takeover: str = "idle",
    k_anonymity: int = 5,
    consent_mode: str = "opt-in",
    live_ladder: tuple[int, ...] = DEFAULT_LIVE_LADDER,
) -> tuple[Tenant, str]:
    """Create a tenant and its first admin key; the clear key is returned once, never stored."""
    if not name.strip():
        raise TenantError("name must not be empty")
    if not REGION.match(region):
        raise TenantError("region must be 2-32 lowercase letters, digits or '-'")
    if not 1 <= retention_days <= 3650:
        raise TenantError("retention_days must be between 1 and 3650")
    if ip_mode not in IP_MODES:
        raise TenantError(f"ip_mode must be one of {', '.join(IP_MODES)}")
    if len(consent_text) > 2000:
        raise TenantError("consent_text must be at most 2000 characters")
    if not 1 <= len(policy_version) <= 64:
        raise TenantError("policy_version must be 1-64 characters")
    if publisher_takeover not in TAKEOVERS:
        raise TenantError(f"publisher_takeover must be one of {', '.join(TAKEOVERS)}")
    if not MIN_K <= k_anonymity <= MAX_K:
        raise TenantError(f"k_anonymity must be between {MIN_K} and {MAX_K}")
    if consent_mode not in CONSENT_MODES:
        raise TenantError(f"consent_mode must be one of {', '.join(CONSENT_MODES)}")
    if consent_mode == "anonymous" and identified_viewers:
        raise TenantError("an anonymous tenant cannot identify its viewers: drop identified_viewers")
    live_ladder = check_live_ladder(live_ladder)
    tenant = Tenant(
        tenant_id=tagged("tn_", region, secrets.token_hex(8)),  # the region for life
        name=name.strip(),
        region=region,
        retention_days=retention_days,
        ip_mode=ip_mode,  # type: ignore[arg-type]
        allowed_origins=tuple(allowed_origins),
        drop_bots=drop_bots,
        consent_text=consent_text,
        policy_version=policy_version,
        identified_viewers=identified_viewers,
        publisher_takeover=publisher_takeover,  # type: ignore[arg-type]
        k_anonymity=k_anonymity,
        consent_mode=consent_mode,  # type: ignore[arg-type]
        live_ladder=live_ladder,
    )
    store.command(
        "INSERT INTO tenants (tenant_id, name, region, retention_days, ip_mode, allowed_origins,"
        " drop_bots, consent_text, policy_version, identified_viewers, publisher_takeover, k_anonymity,"
        " consent_mode, live_ladder, created_at, updated_at)"
        " VALUES ({id:String}, {name:String}, {region:String}, {days:UInt16}, {mode:String},"
        " {origins:Array(String)}, {bots:Bool}, {text:String}, {policy:String}, {identified:Bool},"
        " {takeover:String}, {k:UInt16}, {consent_mode:String}, {ladder:Array(UInt16)}, now64(6), now64(6))",
        parameters={
            "id": tenant.tenant_id,
            "name": tenant.name,
            "region": tenant.region,
            "days": tenant.retention_days,
            "mode": tenant.ip_mode,
            "origins": list(tenant.allowed_origins),
            "bots": tenant.drop_bots,
            "text": tenant.consent_text,
            "policy": tenant.policy_version,
            "identified": tenant.identified_viewers,
            "takeover": tenant.publisher_takeover,
            "k": tenant.k_anonymity,
            "consent_mode": tenant.consent_mode,
            "ladder": list(tenant.live_ladder),
        },
    )
    return tenant, create_admin_key(store, tenant.tenant_id)


def with_consent_mode(tenant: Tenant, mode: str, now_ms: int) -> Tenant:
    """The tenant after switching its consent mode; what a switch means for data and consents:

    - to `anonymous`: stored history stays as it is (its consents still prove it, and it
      keeps its retention); beacons from now on are anonymous, and no consent is asked or
      recorded (`/v1/consent` answers 409);
    - back to `opt-in`: beacons need a consent again, and only one given *after* the switch
      counts (`grants_valid_from_ms`), because a viewer who consented long ago may have
      been counted anonymously in between and must be asked again, not assumed.
    Switching to the mode the tenant is already in changes nothing."""
    if mode not in CONSENT_MODES:
        raise TenantError(f"consent_mode must be one of {', '.join(CONSENT_MODES)}")
    if mode == tenant.consent_mode:
        return tenant
    changes: dict = {"consent_mode": mode}
    if mode == "opt-in":
        changes["grants_valid_from_ms"] = now_ms
    return msgspec.structs.replace(tenant, **changes)


# ---- a tenant's admin keys: rotation is "create a new one, then revoke the old one" ----
KEY_ID_CHARS = 12  # a key's public name: the start of its hash (audit actors use the same)


def create_admin_key(store: Store, tenant_id: str) -> str:
    """A new admin key for the tenant; only its hash is stored, the key is shown once.
    It names the tenant's region (`wk_eu_...`), so any edge can send its calls there."""
    admin_key = tagged("wk_", region_of(tenant_id), secrets.token_urlsafe(32))
    store.command(
        "INSERT INTO api_keys (key_hash, tenant_id, role, created_at, updated_at)"
        " VALUES ({h:String}, {id:String}, 'admin', now64(6), now64(6))",
        parameters={"h": hash_key(admin_key), "id": tenant_id},
    )
    return admin_key


def admin_keys(store: Store, tenant_id: str) -> list[tuple[str, float, bool]]:
    """(key hash, created at, revoked) of every admin key the tenant ever had."""
    return [(h, float(c), bool(r)) for h, c, r in store.rows(
        "SELECT key_hash, toUnixTimestamp64Micro(created_at) / 1e6, revoked FROM api_keys FINAL"
        " WHERE tenant_id = {t:String} AND role = 'admin' ORDER BY created_at", {"t": tenant_id})]


def named_key(keys: list[tuple[str, float, bool]], key_id: str) -> tuple[str, float, bool] | None:
    """The one key of `admin_keys(...)` that `key_id` names (8+ characters of its hash)."""
    matches = [key for key in keys if key[0].startswith(key_id)] if len(key_id) >= 8 else []
    return matches[0] if len(matches) == 1 else None


def revoke_admin_key(store: Store, tenant_id: str, key_hash: str) -> None:
    """The key stops working (on this edge at once; others within their key cache's TTL)."""
    store.command(
        "INSERT INTO api_keys (key_hash, tenant_id, role, created_at, revoked, updated_at)"
        " SELECT key_hash, tenant_id, role, created_at, true, now64(6) FROM api_keys FINAL"
        " WHERE key_hash = {h:String} AND tenant_id = {t:String} AND role = 'admin'",
        parameters={"h": key_hash, "t": tenant_id},
    )


def load_tenant(store: Store, tenant_id: str) -> Tenant | None:
    """The tenant's newest row, every column named after its `Tenant` field."""
    rows = store.rows(
        f"SELECT {_SELECT} FROM tenants FINAL WHERE tenant_id = {{id:String}} AND NOT deleted",
        parameters={"id": tenant_id},
    )
    if not rows:
        return None
    return msgspec.convert(dict(zip(_FIELDS, rows[0])), Tenant, strict=False)


_FIELDS = Tenant.__struct_fields__
# Enums come back as strings; everything else as the field's own type.
_SELECT = ", ".join(f"toString({f})" if f in ("ip_mode", "consent_mode") else f for f in _FIELDS)


def all_tenant_ids(store: Store) -> list[str]:
    return [r[0] for r in store.rows("SELECT tenant_id FROM tenants FINAL WHERE NOT deleted ORDER BY tenant_id")]


def save_tenant(store: Store, tenant: Tenant, deleted: bool = False) -> None:
    """Write the tenant's whole row as its newest version (ReplacingMergeTree)."""
    row = msgspec.structs.asdict(tenant) | {"deleted": deleted, "updated_at": time.time(),
                                            "allowed_origins": list(tenant.allowed_origins),
                                            "live_ladder": list(tenant.live_ladder)}
    created = store.rows("SELECT toUnixTimestamp64Micro(created_at) / 1e6 FROM tenants FINAL"
                         " WHERE tenant_id = {id:String}", {"id": tenant.tenant_id})
    row["created_at"] = created[0][0] if created else time.time()
    store.insert_json_lines("tenants", msgspec.json.encode(row) + b"\n")


def tenant_id_for_key_hash(store: Store, key_hash: str) -> str | None:
    """The tenant an admin key acts for ("support:" / "operator:" for the operator's keys)."""
    rows = store.rows(
        "SELECT tenant_id, role FROM api_keys FINAL WHERE key_hash = {h:String} AND NOT revoked",
        parameters={"h": key_hash},
    )
    if not rows:
        return None
    tenant_id, role = rows[0]
    return f"{role}:" if role in ("support", "operator") else tenant_id


def create_support_key(store: Store, name: str, role: str = "support") -> str:
    """A key of the operator's staff: `support` reads a tenant's data only under that
    tenant's grant; `operator` may only offboard tenants (no data access at all)."""
    if role not in ("support", "operator"):
        raise TenantError("role must be support or operator")
    key = ("sk_" if role == "support" else "ok_") + secrets.token_urlsafe(32)
    store.command(
        "INSERT INTO api_keys (key_hash, tenant_id, role, created_at, updated_at)"
        " VALUES ({h:String}, {name:String}, {role:String}, now64(6), now64(6))",
        parameters={"h": hash_key(key), "name": f"{role}:{name}", "role": role},
    )
    return key


class TenantDirectory:
    """Tenant lookups for the hot path, cached briefly so other edges' changes show up."""

    def __init__(self, store: Store, ttl_s: float = 10.0, miss_ttl_s: float = 2.0) -> None:
        self._store = store
        self._cache: TTLCache[Tenant] = TTLCache(ttl_s, miss_ttl_s, max_entries=100_000)

    async def get(self, tenant_id: str) -> Tenant | None:
        return await self._cache.get(tenant_id, lambda: load_tenant(self._store, tenant_id))

    def forget(self, tenant_id: str) -> None:
        """This edge changed the tenant: read it afresh (other edges within the TTL)."""
        self._cache.forget(tenant_id)

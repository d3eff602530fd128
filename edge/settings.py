"""Service configuration, read once from the environment.

Every knob is an environment variable (see README "Configuration") so that the same
image runs embedded on a laptop and against a ClickHouse cluster in production.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import msgspec

from core.limits import Limit
from core.regions import DEFAULT_REGION, REGION
from edge.vod.limits import MediaLimits

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
WHEP_FANOUT_PATHS = ("shared", "shared-python", "per-viewer")
DEFAULT_PLAYER_DIR = Path(__file__).resolve().parent.parent / "player" / "dist"


class Settings(msgspec.Struct, kw_only=True):
    data_dir: Path
    clickhouse_url: str
    geoip_db: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    trusted_proxies: tuple[Network, ...] = ()
    # Write path: rows are flushed to ClickHouse at `flush_rows` or every `flush_ms`.
    flush_rows: int = 20_000
    flush_ms: int = 250
    # Durable spool cap: past it /v1/collect answers 503 rather than risk the disk.
    spool_max_bytes: int = 512 * 1024 * 1024
    # How often the consent cache reads ledger changes made by other edges; bounds how
    # stale a withdrawal made through *another* edge can be (own withdrawals are instant).
    consent_poll_s: float = 1.0
    # WebRTC: STUN/TURN URLs (none by default: nothing leaves the machine unless asked) and
    # the addresses offered as host candidates (production: the public address).
    ice_servers: tuple[str, ...] = ()
    ice_hosts: tuple[str, ...] = ()
    upload_max_bytes: int = 2 * 1024**3
    # What one upload may make the edge do (edge/vod/limits.py), and how many uploads are
    # packaged at once (at most one per tenant: edge/vod/jobs.py).
    upload_limits: MediaLimits = MediaLimits()
    transcode_jobs: int = 2
    # A publish with no media for this long is over (the publisher vanished).
    publish_silence_s: float = 10.0
    # A new authenticated publish replaces a current one that has sent no media for this
    # long (a crashed browser or encoder is back on air at once, with no DELETE and before
    # the silence watchdog); 0: the newest publisher always wins, as in MediaMTX.
    publish_takeover_s: float = 1.0
    # A WHIP or WHEP session not connected (ICE + DTLS) this long after its offer is closed;
    # one whose peer stops answering ICE consent checks this long is closed (RFC 7675: 30 s).
    rtc_connect_timeout_s: float = 10.0
    rtc_consent_timeout_s: float = 30.0
    # How often each WHEP viewer's RTP senders are sampled for QoE (RTCP receiver reports:
    # loss, jitter, round trip; bytes sent), analytics/webrtc_qoe.py; and once at the end.
    webrtc_stats_s: float = 5.0
    # How WHEP viewers get a stream's packets: "shared" packetizes each frame into RTP once
    # for all of them (edge/streaming/rtp_fanout.py); "per-viewer" is the former path, where
    # aiortc packetizes for each viewer (kept so bench/edge.py can compare both in one run).
    whep_fanout: str = "shared"
    # A new WHEP viewer is refused (503, Retry-After) while the event loop runs this late on
    # average over the last 2 s (edge/loop_lag.py): past it, viewers already watching start
    # to lose their picture and their ICE consent. 0: never refused for load.
    whep_busy_lag_s: float = 0.5
    # Signs playback tokens; generated into $WAVE_DATA_DIR/secret.key when unset.
    secret_key: str | None = None
    # The built player (`npm run build` in player/), served under /player/.
    player_dir: Path = DEFAULT_PLAYER_DIR
    # Make the demo tenant and video at start if missing (`make run` sets WAVE_DEMO=1).
    demo: bool = False
    # How often beacons are folded into the per-view rollup the dashboards read; 0: never
    # (another edge does it).
    rollup_s: float = 10.0
    # A backup when none is younger than this (tier chosen by age, see retention/backups);
    # expired backups are pruned every hour. 0: no scheduled backups (`wave-edge backup`).
    backup_every_s: float = 0.0
    # Where an nginx front writes the segments it served itself (see edge/front_log.py).
    front_log_dir: Path | None = None
    # Abuse limits (core/limits.py), RATE/BURST: requests per client address on the
    # player's endpoints; a tenant's events and consent calls; WHEP sessions opened per
    # address and per tenant. Far above legitimate use: one viewer sends a batch per 10 s.
    limit_ip: Limit = Limit(50, 300)
    limit_tenant_events: Limit = Limit(100_000, 200_000)
    limit_tenant_consents: Limit = Limit(2_000, 10_000)
    limit_whep_ip: Limit = Limit(2, 20)
    limit_whep_tenant: Limit = Limit(100, 500)
    # Admin API and dashboard session calls per client address (a dashboard load is about a
    # dozen calls): bounds what unauthenticated floods and key guessing cost.
    limit_admin_ip: Limit = Limit(20, 400)
    # Publishes (one encoder each) this edge runs at once, and one tenant may run at once.
    max_publishes: int = 8
    max_publishes_per_tenant: int = 4
    # Slow or bloated requests (edge/serving.py): seconds for a request's line and headers,
    # seconds without a body chunk, bytes of request line and headers.
    head_timeout_s: float = 10.0
    body_idle_s: float = 15.0
    max_head_bytes: int = 32 * 1024
    # Who may read /metrics: a bearer token, and/or client addresses (default: this host).
    metrics_token: str | None = None
    metrics_allow: tuple[Network, ...] = LOOPBACK
    # The one region this edge serves (its store and media hold that region's tenants
    # only), and where every region's edge is: region -> base URL, e.g.
    # {"eu": "https://eu.example", "us": "https://us.example"} (edge/regions.py).
    region: str = DEFAULT_REGION
    regions: dict[str, str] = {}

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def front_log_path(self) -> Path:
        return self.front_log_dir or self.data_dir / "run" / "front-log"


def parse_networks(text: str) -> tuple[Network, ...]:
    """`10.0.0.0/8, 192.168.1.7` -> networks; a bad entry is a start-up error, not ignored."""
    items = [part.strip() for part in text.replace(";", ",").split(",")]
    return tuple(ipaddress.ip_network(item, strict=False) for item in items if item)


def _words(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.replace(";", ",").split(",") if part.strip())


def from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("WAVE_DATA_DIR") or "./var").resolve()
    url = env.get("WAVE_CLICKHOUSE_URL") or f"chdb://{data_dir / 'clickhouse'}"
    return Settings(
        data_dir=data_dir,
        clickhouse_url=url,
        geoip_db=env.get("WAVE_GEOIP_DB") or None,
        host=env.get("WAVE_HOST") or "127.0.0.1",
        port=int(env.get("WAVE_PORT") or 8080),
        trusted_proxies=parse_networks(env.get("WAVE_TRUSTED_PROXIES", "")),
        flush_rows=int(env.get("WAVE_FLUSH_ROWS") or 20_000),
        flush_ms=int(env.get("WAVE_FLUSH_MS") or 250),
        spool_max_bytes=int(env.get("WAVE_SPOOL_MAX_BYTES") or 512 * 1024 * 1024),
        consent_poll_s=float(env.get("WAVE_CONSENT_POLL_S") or 1.0),
        secret_key=env.get("WAVE_SECRET_KEY") or None,
        upload_max_bytes=int(env.get("WAVE_UPLOAD_MAX_BYTES") or 2 * 1024**3),
        upload_limits=_media_limits(env),
        transcode_jobs=int(env.get("WAVE_TRANSCODE_JOBS") or 2),
        publish_silence_s=float(env.get("WAVE_PUBLISH_SILENCE_S") or 10.0),
        publish_takeover_s=float(env.get("WAVE_PUBLISH_TAKEOVER_S") or 1.0),
        rtc_connect_timeout_s=float(env.get("WAVE_RTC_CONNECT_TIMEOUT_S") or 10.0),
        rtc_consent_timeout_s=float(env.get("WAVE_RTC_CONSENT_TIMEOUT_S") or 30.0),
        webrtc_stats_s=float(env.get("WAVE_WEBRTC_STATS_S") or 5.0),
        whep_fanout=_whep_fanout(env.get("WAVE_WHEP_FANOUT") or "shared"),
        whep_busy_lag_s=float(env.get("WAVE_WHEP_BUSY_LAG_MS") or 500) / 1000,
        ice_servers=_words(env.get("WAVE_ICE_SERVERS", "")),
        ice_hosts=_words(env.get("WAVE_ICE_HOSTS", "")),
        player_dir=Path(env["WAVE_PLAYER_DIR"]).resolve() if env.get("WAVE_PLAYER_DIR") else DEFAULT_PLAYER_DIR,
        demo=env.get("WAVE_DEMO", "") in ("1", "true", "yes"),
        rollup_s=float(env.get("WAVE_ROLLUP_S") or 10.0),
        backup_every_s=float(env.get("WAVE_BACKUP_EVERY_H") or 24) * 3600,
        front_log_dir=Path(env["WAVE_FRONT_LOG_DIR"]).resolve() if env.get("WAVE_FRONT_LOG_DIR") else None,
        max_publishes=int(env.get("WAVE_MAX_PUBLISHES") or 8),
        max_publishes_per_tenant=int(env.get("WAVE_MAX_PUBLISHES_PER_TENANT") or 4),
        head_timeout_s=float(env.get("WAVE_HEAD_TIMEOUT_S") or 10.0),
        body_idle_s=float(env.get("WAVE_BODY_IDLE_S") or 15.0),
        max_head_bytes=int(env.get("WAVE_MAX_HEAD_BYTES") or 32 * 1024),
        metrics_token=env.get("WAVE_METRICS_TOKEN") or None,
        metrics_allow=parse_networks(env["WAVE_METRICS_ALLOW"]) if "WAVE_METRICS_ALLOW" in env else LOOPBACK,
        region=_region(env.get("WAVE_REGION") or DEFAULT_REGION),
        regions=parse_regions(env.get("WAVE_REGIONS", "")),
        **{name: Limit.parse(env[var]) for name, var in _LIMITS.items() if var in env},
    )


def _whep_fanout(path: str) -> str:
    if path not in WHEP_FANOUT_PATHS:
        raise ValueError(f"WAVE_WHEP_FANOUT={path!r}: one of {', '.join(WHEP_FANOUT_PATHS)}")
    return path


def _region(name: str) -> str:
    if not REGION.match(name):
        raise ValueError(f"WAVE_REGION={name!r}: 2-32 lowercase letters, digits or '-'")
    return name


def parse_regions(text: str) -> dict[str, str]:
    """`eu=https://eu.example,us=https://us.example` -> {region: base URL}. A value with no
    '=' is the path of a file holding the same entries (one a line or comma-separated, '#'
    starts a comment). A bad entry is a start-up error, not ignored."""
    text = text.strip()
    if text and "=" not in text:
        lines = Path(text).read_text().splitlines()
        text = ",".join(line.split("#", 1)[0] for line in lines)
    regions: dict[str, str] = {}
    for entry in _words(text):
        name, sep, url = (part.strip() for part in entry.partition("="))
        if not sep or not REGION.match(name) or not url.startswith(("http://", "https://")):
            raise ValueError(f"WAVE_REGIONS entry {entry!r}: want region=http(s)://host[:port]")
        regions[name] = url.rstrip("/")
    return regions


def _media_limits(env: dict[str, str]) -> MediaLimits:
    given = {field: kind(env[var]) for field, (var, kind) in _MEDIA_LIMITS.items() if env.get(var)}
    return MediaLimits(**given)


_MEDIA_LIMITS = {"max_side": ("WAVE_UPLOAD_MAX_SIDE", int), "max_pixels": ("WAVE_UPLOAD_MAX_PIXELS", int),
                 "max_duration_s": ("WAVE_UPLOAD_MAX_DURATION_S", float),
                 "max_frames": ("WAVE_UPLOAD_MAX_FRAMES", int), "budget_s": ("WAVE_TRANSCODE_BUDGET_S", float)}
_LIMITS = {"limit_ip": "WAVE_LIMIT_IP", "limit_tenant_events": "WAVE_LIMIT_TENANT_EVENTS",
           "limit_tenant_consents": "WAVE_LIMIT_TENANT_CONSENTS", "limit_whep_ip": "WAVE_LIMIT_WHEP_IP",
           "limit_whep_tenant": "WAVE_LIMIT_WHEP_TENANT", "limit_admin_ip": "WAVE_LIMIT_ADMIN_IP"}

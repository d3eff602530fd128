"""Every wire type of the analytics HTTP API, as msgspec Structs.

Decoding is strict on purpose: a typo in a field name or a wrong type is a 400 that names
the field (`$.events[3].ts`), not a silently empty column.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

EventType = Literal[
    "viewstart",
    "playing",
    "pause",
    "seeking",
    "seeked",
    "rebuffer_start",
    "rebuffer_end",
    "rendition_change",
    "heartbeat",
    "error",
    "ended",
    "viewend",
]

MAX_EVENTS = 500

ID_CHARS = "A-Za-z0-9._:-"
Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=f"^[{ID_CHARS}]+$")]
# Per-event ids (`view_id`, `video_id`) have the same character set, but msgspec checks only
# their length: its regex on every event cost more than the rest of decoding together
# (about 1.5 us each). `validation.check_event_ids` checks the whole batch in one regex
# pass instead; the pattern is still published in the schema.
EventRef = Annotated[str, Meta(min_length=1, max_length=128, extra_json_schema={"pattern": f"^[{ID_CHARS}]+$"})]
Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
Pixels = Annotated[int, Meta(ge=0, le=65535)]
MAX_POSITION_MS = 10**12
Purpose = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]


class Event(Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: EventType
    ts: Annotated[int, Meta(ge=0, description="epoch milliseconds")]
    view_id: EventRef
    video_id: EventRef
    # Bounded as its column (UInt64) is not: ClickHouse wraps a number past it silently,
    # and 2^64 was stored as 0. 10^12 ms is 31 years into a stream.
    position_ms: Annotated[int, Meta(ge=0, le=MAX_POSITION_MS)] | None = None
    screen_w: Pixels | None = None
    screen_h: Pixels | None = None
    player_w: Pixels | None = None
    player_h: Pixels | None = None
    rendition_w: Pixels | None = None
    rendition_h: Pixels | None = None
    bitrate_kbps: Annotated[int, Meta(ge=0, le=4_000_000)] | None = None
    error_code: Annotated[str, Meta(max_length=128)] | None = None
    error_message: Annotated[str, Meta(max_length=1024)] | None = None
    fatal: bool | None = None


class CollectBatch(Struct, forbid_unknown_fields=True, kw_only=True):
    tenant_id: Id
    # Required for opt-in tenants (the consenting viewer). Anonymous tenants ignore it: the
    # edge derives the only viewer key itself (analytics/anonymous.py), so the player
    # sends none.
    viewer_id: Id | None = None
    events: Annotated[list[Event], Meta(min_length=1, max_length=MAX_EVENTS)]
    # Accepted for compatibility and never stored: the viewer id's proven link in the
    # consent ledger is what ties beacons to an e-mail (analytics/identity.py).
    viewer_email: Email | None = None


class CollectAccepted(Struct):
    accepted: int


IdentityToken = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[0-9]{1,12}\.[0-9a-f]{64}$",
                                     description="<exp>.<hex HMAC-SHA256> signed by the tenant's server")]


class ConsentGrant(Struct, forbid_unknown_fields=True):
    tenant_id: Id
    viewer_id: Id
    purposes: Annotated[list[Purpose], Meta(max_length=16)]
    policy_version: Annotated[str, Meta(min_length=1, max_length=64)]
    # Tenants with identified viewers only, and only with an `identity_token` over this
    # tenant, viewer id and e-mail (analytics/identity.py): else 403 and nothing stored.
    viewer_email: Email | None = None
    identity_token: IdentityToken | None = None


class ConsentWithdraw(Struct, forbid_unknown_fields=True):
    tenant_id: Id
    viewer_id: Id


class ConsentRecorded(Struct):
    consent_id: str


class Withdrawn(Struct):
    status: str = "withdrawn"


# ---- admin analytics (analytics/dashboard_api.py) ----------------------------------------


class Summary(Struct):
    """DESIGN.md §4 figures; ratios are null where their denominator is zero."""

    views: int
    unique_viewers: int
    playing_time_s: float
    watch_time_s: float
    startup_time_ms_p50: int | None
    startup_time_ms_p95: int | None
    rebuffer_pct: float | None
    rebuffer_frequency_per_min: float | None
    playback_failure_pct: float | None
    exits_before_start_pct: float | None


class BreakdownRow(Summary):
    value: str = ""


class Quality(Struct):
    """Video quality over the playing time in the range (analytics/quality.py): null where no
    playing time had a rendition reported."""

    average_bitrate_kbps: float | None
    upscale_pct: float | None


# How the figures of an answer counted viewers (analytics/counting.py): the tenant's mode
# now, and what `unique_viewers` means for the views in the range: "range" (distinct
# consenting viewers over the whole range), "day" (anonymous views: a viewer's key lasts
# one day, so each day's unique viewers add up) or "mixed" (the range holds both).
ConsentModeName = Literal["opt-in", "anonymous"]
UniqueViewersScope = Literal["range", "day", "mixed"]


class CountedSummary(Summary):
    consent_mode: ConsentModeName = "opt-in"
    unique_viewers_scope: UniqueViewersScope = "range"


class Breakdown(Struct):
    dimension: str
    rows: list[BreakdownRow]
    consent_mode: ConsentModeName = "opt-in"
    unique_viewers_scope: UniqueViewersScope = "range"


class SeriesPoint(Struct):
    t: str
    value: float | int | None


class Series(Struct):
    metric: str
    interval: str
    points: list[SeriesPoint]
    consent_mode: ConsentModeName = "opt-in"
    unique_viewers_scope: UniqueViewersScope = "range"


class MinuteViewers(Struct):
    t: str
    viewers: int


class VideoViewers(Struct):
    video_id: str
    viewers: int


class Realtime(Struct):
    viewers_now: int
    per_minute: list[MinuteViewers]
    top_videos: list[VideoViewers]


class SignIn(Struct, forbid_unknown_fields=True):
    admin_key: Annotated[str, Meta(min_length=1, max_length=512)]


class SignedIn(Struct):
    tenant_id: str
    name: str


class IdentitySecret(Struct):
    """The key a tenant's server signs identity tokens with (analytics/identity.py)."""

    identity_secret: str
    version: int
    identified_viewers: bool  # tokens are only accepted for tenants that identify viewers


# ---- WebRTC viewer QoE (analytics/webrtc_qoe.py) ------------------------------------------


class WebrtcSession(Struct):
    """One WHEP viewer session's sender of one kind, as the edge measured it: counters are
    the session's newest sample's; `packets_lost` the viewer's newest RTCP receiver report
    (null before any); jitter and round trip averaged over the samples, and their max."""

    session_id: str
    stream_id: str
    kind: str
    started_at: str
    ended_at: str  # the newest sample in the range
    samples: int
    packets_sent: int
    bytes_sent: int
    packets_lost: int | None
    loss_pct: float | None
    jitter_ms: float | None
    jitter_ms_max: float | None
    rtt_ms: float | None
    rtt_ms_max: float | None
    viewer_linked: bool  # the viewer presented a consented viewer id (the rows hold it)


class WebrtcStream(Struct):
    stream_id: str
    sessions: int
    packets_sent: int
    packets_lost: int
    loss_pct: float | None
    jitter_ms: float | None
    rtt_ms: float | None


class WebrtcQoe(Struct):
    streams: list[WebrtcStream]
    rows: list[WebrtcSession]

"""Wire types of the player-facing routes."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class ConsentPrompt(Struct):
    """What the player's consent prompt shows: the tenant's words and policy version.

    `host_origins`: the pages that may answer for the viewer (consent, viewer id, identity)
    to the iframe embed by `postMessage`, i.e. the tenant's allowed origins. Empty: no page
    may, since any site can frame the embed; the viewer answers in the player itself.
    """

    text: str
    policy_version: str
    identified: bool
    host_origins: list[str]
    # "opt-in", or "anonymous": then the player shows no prompt, sends no viewer id and
    # stores nothing on the device (the edge derives a daily key itself).
    mode: Literal["opt-in", "anonymous"] = "opt-in"
    # A consent the player remembers from before this instant (epoch ms) is stale: the
    # tenant came back to opt-in since, and the edge counts only newer grants.
    valid_from_ms: int = 0


class PlaybackConfig(Struct):
    """Everything the player needs to play one video or stream and report on it.

    URLs are paths on the edge that answered, resolved by the player against its origin,
    so one config works behind any host name.
    """

    media_id: str
    kind: Literal["video", "stream"]
    tenant_id: str
    title: str
    live: bool
    hls_url: str
    whep_url: str | None
    poster_url: str | None
    consent: ConsentPrompt

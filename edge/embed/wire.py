"""Wire types of the player-facing routes."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct


class ConsentPrompt(Struct):
    """What the player's consent prompt shows: the tenant's words and policy version."""

    text: str
    policy_version: str
    identified: bool


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

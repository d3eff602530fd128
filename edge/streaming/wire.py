"""Wire types of the streams API."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct


class StreamCreate(Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    playback: Literal["public", "private"] = "public"


class StreamCreated(Struct):
    stream_id: str
    publish_token: str
    whip_url: str
    whep_url: str
    hls_url: str
    embed_url: str
    playback: str


class StreamInfo(Struct):
    stream_id: str
    name: str
    playback: str
    publishing: bool
    publishing_since: str | None
    viewers: int
    whip_url: str
    whep_url: str
    hls_url: str
    embed_url: str


class StreamList(Struct):
    streams: list[StreamInfo]


class TokenRequest(Struct, forbid_unknown_fields=True):
    ttl_s: Annotated[int, Meta(ge=60, le=7 * 86400)] = 3600


class PlaybackToken(Struct):
    token: str
    expires_at: int


class LiveSettings(Struct):
    live_ladder: list[int]  # heights of the lower live renditions beside the source; [] = source only


class LiveSettingsChange(Struct, forbid_unknown_fields=True):
    """The live ladder: up to three distinct even heights from 144 to 1080."""

    live_ladder: Annotated[list[int], Meta(max_length=3)]

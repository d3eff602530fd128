"""Wire types of the videos API."""

from __future__ import annotations

from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

Tag = Annotated[str, Meta(min_length=1, max_length=64)]
MetaKey = Annotated[str, Meta(min_length=1, max_length=64)]
MetaValue = Annotated[str, Meta(max_length=1024)]


class VideoInfo(Struct):
    video_id: str
    title: str
    tags: list[str]
    metadata: dict[str, str]
    source: str
    stream_id: str
    playback: str
    status: str
    progress: float
    reason: str
    duration_s: float
    width: int
    height: int
    video_codec: str
    audio_codec: str
    size_bytes: int
    hls_url: str


class VideoList(Struct):
    videos: list[VideoInfo]


class VideoPatch(Struct, forbid_unknown_fields=True):
    title: Annotated[str, Meta(max_length=300)] | UnsetType = UNSET
    tags: Annotated[list[Tag], Meta(max_length=50)] | UnsetType = UNSET
    metadata: Annotated[dict[MetaKey, MetaValue], Meta(max_length=50)] | UnsetType = UNSET


class UploadAccepted(Struct):
    video_id: str
    status: str

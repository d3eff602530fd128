"""Migration 3: videos."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 3
NAME = "videos"


def statements() -> tuple[str, ...]:
    # Recordings and uploads. Every change appends a row with a newer `updated_at`.
    videos = create_table(
        "videos",
        """
        video_id String,
        tenant_id String,
        title String,
        tags Array(String),
        metadata Map(String, String),
        source Enum8('recording' = 1, 'upload' = 2),
        stream_id String DEFAULT '',
        playback Enum8('public' = 1, 'private' = 2) DEFAULT 'public',
        status Enum8('recording' = 1, 'processing' = 2, 'ready' = 3, 'failed' = 4),
        progress Float32 DEFAULT 0,
        reason String DEFAULT '',
        duration_s Float64 DEFAULT 0,
        width UInt16 DEFAULT 0,
        height UInt16 DEFAULT 0,
        video_codec String DEFAULT '',
        audio_codec String DEFAULT '',
        size_bytes UInt64 DEFAULT 0,
        created_at DateTime64(6, 'UTC'),
        updated_at DateTime64(6, 'UTC'),
        deleted Bool DEFAULT false
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'updated_at')} ORDER BY (tenant_id, video_id)",
    )
    return (videos,)


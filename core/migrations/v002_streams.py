"""Migration 2: streams."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 2
NAME = "streams"


def statements() -> tuple[str, ...]:
    # Live streams a tenant publishes; the publish token is a random secret kept as a hash.
    streams = create_table(
        "streams",
        """
        stream_id String,
        tenant_id String,
        name String,
        publish_token_hash String,
        playback Enum8('public' = 1, 'private' = 2),
        created_at DateTime64(6, 'UTC'),
        updated_at DateTime64(6, 'UTC'),
        deleted Bool DEFAULT false
        """,
        f"ENGINE = {engine('ReplacingMergeTree', 'updated_at')} ORDER BY (tenant_id, stream_id)",
    )
    return (streams,)


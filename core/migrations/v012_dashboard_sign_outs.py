"""Migration 12: dashboard sign-outs."""

from __future__ import annotations

from core.cluster import create_table, engine

VERSION = 12
NAME = "dashboard sign-outs"


def statements() -> tuple[str, ...]:
    # Dashboard sessions ended by signing out (core/admin_sessions.py); a row lives as
    # long as the cookie it cancels.
    ended = create_table(
        "admin_sessions_ended",
        """
        session_id String,
        ended_at DateTime64(3, 'UTC'),
        expires_at DateTime('UTC')
        """,
        f"ENGINE = {engine('MergeTree')} ORDER BY session_id TTL expires_at",
    )
    return (ended,)


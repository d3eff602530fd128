"""Dashboard sessions ended by signing out, so a copied cookie ends with the session.

A session cookie is signed and carries its own expiry, so the edge needs no session
table while it is valid; signing out adds its id here (in ClickHouse, so every edge
sees it within its cache's couple of seconds), and the row expires with the cookie.
"""

from __future__ import annotations

from core.store import Store


def end(store: Store, session_id: str, expires_at: float) -> None:
    store.command(
        "INSERT INTO admin_sessions_ended (session_id, ended_at, expires_at)"
        " VALUES ({s:String}, now64(3), {e:DateTime})",
        parameters={"s": session_id, "e": int(expires_at)},
    )


def ended(store: Store, session_id: str) -> bool | None:
    """True when signed out; None (not False) otherwise, so the cache keeps misses briefly."""
    rows = store.rows("SELECT 1 FROM admin_sessions_ended WHERE session_id = {s:String} LIMIT 1", {"s": session_id})
    return True if rows else None

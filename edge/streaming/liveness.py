"""Ending WebRTC sessions whose other side is gone, WHEP viewers and WHIP publishers alike.

A session is a peer connection with sockets, a relay track and a viewer slot. Forty offers
whose clients vanished kept forty viewers and their sockets until the publish ended
(issue #14), because only a DELETE or a `failed`/`closed` state ended a session, and a
peer connection that never connects never fails by itself. So every session is watched:

- it must reach `connected` (ICE and DTLS done) within `WAVE_RTC_CONNECT_TIMEOUT_S`
  (default 10 s), or it is closed as `connect_timeout`;
- once connected, aioice runs ICE consent-freshness checks (RFC 7675) on the selected pair
  and, when the other side stops answering, closes the ICE connection; aiortc then reports
  the peer connection `failed` or `closed` (`consent_expired`), and the session is closed as
  `connection_lost`. RFC 7675's
  30 s is `WAVE_RTC_CONSENT_TIMEOUT_S` (`configure_consent` sets aioice's pacing from it);
- a peer connection that `failed` before connecting is `connect_failed`, one the other side
  closed (DTLS close_notify) without a DELETE is `peer_closed`.

The reason codes label `wave_rtc_sessions_closed_total{kind, reason}`.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import aioice.ice

OnDead = Callable[[str], Awaitable[None]]
CONSENT_FAILURES = 6  # aioice's own count of unanswered checks before consent expires


def configure_consent(timeout_s: float) -> None:
    """Consent expires after `timeout_s` without an answer: aioice checks every
    timeout/6 s (RFC 7675: every 5 s on average, expiring after 30 s) and gives up after
    six unanswered checks in a row. Process-wide, like `rtc.restrict_host_candidates`."""
    aioice.ice.CONSENT_FAILURES = CONSENT_FAILURES
    aioice.ice.CONSENT_INTERVAL = max(0.05, timeout_s / CONSENT_FAILURES)


class Watch:
    """Calls `on_dead(reason)` once when the peer connection is dead or never came alive."""

    def __init__(self, pc, connect_timeout_s: float, on_dead: OnDead) -> None:
        self._pc = pc
        self._on_dead = on_dead
        self.connected = False
        self.reason: str | None = None
        pc.on("connectionstatechange", self._changed)
        self._timer = asyncio.get_running_loop().call_later(connect_timeout_s, self._timed_out)

    def cancel(self) -> None:
        """The session ended another way (DELETE, publish over): stop watching, so the
        `closed` that our own close of the peer connection causes reports nothing."""
        self._timer.cancel()
        if self.reason is None:
            self.reason = "ended"

    async def _changed(self) -> None:
        state = self._pc.connectionState
        if state == "connected":
            self.connected = True
            self._timer.cancel()
        elif state == "failed":
            await self._dead("connection_lost" if self.connected else "connect_failed")
        elif state == "closed":  # by the other side or by aiortc itself (ours cancel the watch first)
            if not self.connected:
                await self._dead("connect_failed")
            else:
                await self._dead("connection_lost" if consent_expired(self._pc) else "peer_closed")

    def _timed_out(self) -> None:
        if not self.connected and self.reason is None:
            task = asyncio.get_running_loop().create_task(self._dead("connect_timeout"))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

    async def _dead(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self._timer.cancel()
        await self._on_dead(reason)


_pending: set[asyncio.Task] = set()  # a task needs a reference until it is done


def consent_expired(pc) -> bool:
    """Whether ICE consent expired on this peer connection.

    When consent expires aioice closes the ICE connection, and aiortc's DTLS transport,
    losing its ICE, goes `closed`; with every DTLS transport closed, aiortc closes the
    peer connection itself. The peer connection then reports `closed` (seen here, with
    aiortc 1.16 / aioice 0.13), not `failed` as for other ICE failures, just as when the
    other side closed cleanly. aioice tells the two apart only by forgetting its consent
    task (`_query_consent_task = None`) when consent expired, where a normal close keeps
    the cancelled task: read it, private as it is, for the metric's label only.
    """
    for transceiver in pc.getTransceivers():
        transport = transceiver.sender.transport
        connection = getattr(getattr(transport, "transport", None), "_connection", None)
        if connection is not None and getattr(connection, "_query_consent_task", False) is None:
            return True
    return False

"""Sampling a WHEP viewer session's RTP senders for QoE (rows: analytics/webrtc_qoe.py).

Once the peer connection is `connected`, every `interval_s` and once more when it closes,
each sender's `getStats()` (aiortc's public API) is read: its `outbound-rtp` entry (packets
and bytes sent) and, once the viewer's first RTCP receiver report arrived, its
`remote-inbound-rtp` entry (the report's cumulative packets lost, fraction lost,
interarrival jitter, and the round trip aiortc derives from the report's LSR/DLSR).

Units, as aiortc 1.16 reports them (checked in its rtcrtpsender.py): `jitter` is the
report's raw value in RTP timestamp units, so it is divided by the negotiated codec's
clock rate (90 kHz for H.264, 48 kHz for Opus, read from our own SDP answer);
`fractionLost` is the report's 8-bit fixed-point fraction (0..255, /256);
`roundTripTime` is in seconds, None until a report echoes one of our sender reports.

Kept apart from the send path (relay, whep) on purpose: it needs only the peer
connection, and `whep.py` starts it with one call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from typing import Callable

from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription

from analytics.webrtc_qoe import Sample
from core.store import StoreUnavailable
from core.validation import BadInput

log = logging.getLogger(__name__)
DEFAULT_CLOCK = {"video": 90_000, "audio": 48_000}
Sink = Callable[[list[Sample]], None]


def clock_rates(pc: RTCPeerConnection) -> dict[str, int]:
    """media id (mid) -> the clock rate of the codec we send there, from our answer."""
    rates: dict[str, int] = {}
    description = pc.localDescription
    if description is None:
        return rates
    try:
        for media in SessionDescription.parse(description.sdp).media:
            if media.rtp.codecs and media.rtp.muxId:
                rates[media.rtp.muxId] = int(media.rtp.codecs[0].clockRate)
    except Exception:  # noqa: BLE001 - our own answer; fall back to the codecs' defaults
        log.debug("could not read clock rates from the answer", exc_info=True)
    return rates


def from_stats(report, kind: str, clock_rate: int) -> dict | None:
    """A sender's stats report -> the row's measured fields (None before anything was sent)."""
    outbound = remote = None
    for entry in report.values():
        if entry.type == "outbound-rtp":
            outbound = entry
        elif entry.type == "remote-inbound-rtp":
            remote = entry
    if outbound is None:
        return None
    fields = {"kind": kind, "packets_sent": int(outbound.packetsSent), "bytes_sent": int(outbound.bytesSent),
              "packets_lost": None, "fraction_lost": None, "jitter_ms": None, "rtt_ms": None}
    if remote is not None:
        fields["packets_lost"] = int(remote.packetsLost)
        fields["fraction_lost"] = float(remote.fractionLost) / 256 if remote.fractionLost is not None else None
        fields["jitter_ms"] = 1000.0 * float(remote.jitter) / clock_rate if remote.jitter is not None else None
        rtt = remote.roundTripTime
        fields["rtt_ms"] = 1000.0 * float(rtt) if rtt is not None and rtt >= 0 else None
    return fields


class QoeSampler:
    """Samples one viewer session; starts at `connected`, samples a last time at `closed`."""

    def __init__(self, pc: RTCPeerConnection, sink: Sink, *, tenant_id: str, stream_id: str, viewer_id: str,
                 retention_days: int, interval_s: float) -> None:
        self.pc = pc
        self._sink = sink
        # Random, and used nowhere else: the rows cannot be joined to the session history
        # (which holds the address) through it.
        self.session_id = secrets.token_hex(12)
        self._base = {"tenant_id": tenant_id, "stream_id": stream_id, "session_id": self.session_id,
                      "viewer_id": viewer_id, "retention_days": retention_days}
        self.interval_s = interval_s
        self.started_at: float | None = None
        self.samples = 0
        self.rows = 0  # rows handed to the sink
        self.final_at: float | None = None  # when the last sample was taken, at the close
        self._task: asyncio.Task | None = None
        self._closed = False
        self._rates: dict[str, int] = {}
        pc.on("connectionstatechange", self._changed)
        if pc.connectionState == "connected":
            self._begin()

    async def _changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._begin()
        elif state in ("closed", "failed"):
            await self.stop()

    def _begin(self) -> None:
        if self._task is None and not self._closed:
            self.started_at = time.time()
            self._rates = clock_rates(self.pc)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webrtc-qoe-sample")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.sample()

    async def sample(self, now: float | None = None) -> None:
        """Read every sender once and hand the rows to the sink."""
        if self.started_at is None:
            return  # never connected: nothing was sent, no session to describe
        now = time.time() if now is None else now
        rows = []
        for transceiver in self.pc.getTransceivers():
            sender = transceiver.sender  # its track is already detached when the session closes
            if sender is None or sender.transport is None:
                continue
            kind = sender.kind
            rate = self._rates.get(transceiver.mid or "", DEFAULT_CLOCK.get(kind, 90_000))
            try:
                fields = from_stats(await sender.getStats(), kind, rate)
            except Exception:  # noqa: BLE001 - a sender torn down mid-read: skip this round
                log.debug("sender stats not readable", exc_info=True)
                continue
            if fields is not None and (fields["packets_sent"] or fields["rtt_ms"] is not None):
                rows.append(Sample(ts=now, started_at=self.started_at, **self._base, **fields))
        if rows:
            self.samples += 1
            self.rows += len(rows)
            self._sink(rows)

    async def stop(self) -> None:
        """The session ended: the last sample, then no more (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self.final_at = time.time()
        await self.sample(self.final_at)


def start(pc: RTCPeerConnection, sink: Sink, *, tenant_id: str, stream_id: str, viewer_id: str,
          retention_days: int, interval_s: float) -> QoeSampler:
    """Sample this viewer's peer connection until it closes (the hook `whep.py` calls)."""
    return QoeSampler(pc, sink, tenant_id=tenant_id, stream_id=stream_id, viewer_id=viewer_id,
                      retention_days=retention_days, interval_s=interval_s)


VIEWER_HEADER = "x-wave-viewer"
_VIEWER_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


async def consented_viewer(raw: str | None, tenant_id: str, consents) -> str:
    """The viewer id a player presented (`X-Wave-Viewer`) if it has a recorded, unwithdrawn
    analytics consent for this tenant; else "" (the rows are stored without it). A value
    that cannot be a viewer id is a 400, like everywhere else ids are taken."""
    if raw is None or raw == "":
        return ""
    if not _VIEWER_ID.match(raw):
        raise BadInput("invalid_header", "X-Wave-Viewer must be a viewer id: 1-128 letters, digits or ._:-",
                       "$.headers.x-wave-viewer")
    try:
        return raw if await consents.allows_analytics(tenant_id, raw) else ""
    except StoreUnavailable:
        return ""  # consent unknown: the session is measured without the link

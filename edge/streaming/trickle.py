"""Trickle ICE for WHIP and WHEP sessions (RFC 9725 §4.3): `PATCH` on the session's URL
with an `application/trickle-ice-sdpfrag` body carrying candidates found after the offer.

Candidates are handed to aiortc, except `.local` (mDNS) names: aioice would send a
multicast query on the edge's network for a name a data centre never resolves, and the
connection forms from the peer's own connectivity checks anyway (a peer-reflexive
candidate), as RFC 8838 intends. The WHEP draft lets a session discard a candidate it
cannot resolve, so those are dropped, as are candidates past `MAX_SESSION_CANDIDATES`
(an anonymous viewer must not make the edge check hundreds of addresses it names).

An ICE restart (a fragment with a new ice-ufrag/ice-pwd) is answered 422: aiortc cannot
restart ICE under a live DTLS association. RFC 9725 §4.3.1 prescribes exactly that answer
for a server that trickles but does not restart, and a client on a changed network then
POSTs a new session, which replaces this one at once (see whip.py's takeover).
"""

from __future__ import annotations

import weakref

from aiortc import RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from core.validation import BadInput
from edge.streaming.sdp import MAX_CANDIDATES

CONTENT_TYPE = "application/trickle-ice-sdpfrag"
MAX_FRAGMENT = 16 * 1024
MAX_SESSION_CANDIDATES = 2 * MAX_CANDIDATES  # trickled into one session, over all its PATCHes
_trickled: weakref.WeakKeyDictionary[RTCPeerConnection, int] = weakref.WeakKeyDictionary()


class Fragment:
    """The parts of an SDP fragment that matter here, per media section (by mid)."""

    def __init__(self, text: str) -> None:
        self.ufrag: str | None = None
        self.pwd: str | None = None
        self.candidates: list[tuple[str | None, str]] = []  # (mid, candidate attribute)
        self.end = False
        mid: str | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("m="):
                mid = None
            elif line.startswith("a=mid:"):
                mid = line[len("a=mid:"):]
            elif line.startswith("a=ice-ufrag:"):
                self.ufrag = line[len("a=ice-ufrag:"):]
            elif line.startswith("a=ice-pwd:"):
                self.pwd = line[len("a=ice-pwd:"):]
            elif line.startswith("a=candidate:"):
                self.candidates.append((mid, line[len("a=candidate:"):]))
            elif line == "a=end-of-candidates":
                self.end = True


def check_request(content_type: str, if_match: str | None, etag: str) -> None:
    """415 for another body type; 412 when If-Match names another entity (RFC 9110)."""
    if content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
        raise BadInput("unsupported_media_type", f"send ICE fragments as {CONTENT_TYPE}",
                       "$.headers.content-type", status=415)
    if if_match is not None and if_match.strip() not in ("*", etag):
        raise BadInput("precondition_failed", "If-Match does not name this session's current ETag",
                       "$.headers.if-match", status=412)


def _remote_ufrag(pc: RTCPeerConnection) -> str | None:
    remote = pc.remoteDescription
    for line in (remote.sdp if remote else "").splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:"):].strip()
    return None


async def apply(pc: RTCPeerConnection, body: bytes) -> None:
    """Add the fragment's candidates to the session, or refuse a restart (422)."""
    fragment = Fragment(body.decode("utf-8", "replace"))
    if fragment.ufrag is not None and fragment.ufrag != _remote_ufrag(pc):
        raise BadInput("ice_restart_unsupported",
                       "this edge does not restart ICE; start a new session with POST (it replaces this one)",
                       "$.body", status=422)
    mids = [t.mid for t in pc.getTransceivers() if t.mid is not None]
    if not mids:
        raise BadInput("not_ready", "the session has no negotiated media yet", "$.body", status=409)
    for mid, attribute in fragment.candidates:
        try:
            candidate = candidate_from_sdp(attribute)
        except Exception as exc:  # noqa: BLE001 - aiortc's parser asserts, indexes, converts
            raise BadInput("bad_candidate", f"unparsable candidate: {type(exc).__name__} {exc}".strip(),
                           "$.body") from None
        if candidate.ip.lower().endswith(".local") or _trickled.get(pc, 0) >= MAX_SESSION_CANDIDATES:
            continue
        _trickled[pc] = _trickled.get(pc, 0) + 1
        # Offered to every section: aiortc adds it to the transport of each section that
        # has its own (with BUNDLE, as every WebRTC client does, only the first) and aioice
        # ignores a repeat, so the fragment's mid need not match aiortc's bundling.
        for target in ([mid] if mid in mids else []) + [m for m in mids if m != mid]:
            candidate.sdpMid = target
            await pc.addIceCandidate(candidate)
    if fragment.end:
        try:
            await pc.addIceCandidate(None)
        except ValueError:  # a second end-of-candidates: already done
            pass

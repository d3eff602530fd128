"""aiortc set-up shared by WHIP and WHEP: ICE configuration and SDP answers.

aiortc asks Google's STUN server unless told otherwise and aioice never offers loopback
addresses, so both are configuration here: `WAVE_ICE_SERVERS` (default none) and
`WAVE_ICE_HOSTS`, the addresses offered as host candidates (production: the edge's
public address; tests: 127.0.0.1). aioice has no setting for the latter, so we replace
its address discovery, once, at start-up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

# Before aiortc (and with it OpenSSL) loads: see openssl-webrtc.cnf for why.
os.environ.setdefault("OPENSSL_CONF", str(Path(__file__).with_name("openssl-webrtc.cnf")))

import aioice.ice  # noqa: E402
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription  # noqa: E402

from edge.streaming import sdp as sdp_module  # noqa: E402

_discover_hosts = aioice.ice.get_host_addresses

log = logging.getLogger(__name__)


def restrict_host_candidates(addresses: tuple[str, ...]) -> None:
    """Offer exactly these addresses as host candidates (empty: aioice's own discovery)."""
    if not addresses:
        aioice.ice.get_host_addresses = _discover_hosts
        return

    def configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = configured


def peer_connection(ice_servers: tuple[str, ...]) -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers]))


_REQUIRED_ATTRIBUTES = ("ice-ufrag", "ice-pwd", "fingerprint")


class BadOffer(ValueError):
    """The SDP offer does not parse or offers nothing we can take."""


async def close(pc: RTCPeerConnection) -> None:
    """Close a peer connection whatever state a failed offer left it in (aiortc's close
    raises on a half-applied description: transceivers without a transport)."""
    try:
        await pc.close()
    except Exception:  # noqa: BLE001 - it is being thrown away either way
        log.debug("closing a failed peer connection raised", exc_info=True)


def check_offer(offer_sdp: str) -> None:
    """Refuse (BadOffer) what is not an offer we could ever connect, before anything else
    is done for it (a publish replaced, a viewer admitted)."""
    if "v=0" not in offer_sdp or "m=" not in offer_sdp:
        raise BadOffer("not an SDP offer (no v= or m= line)")
    # aiortc accepts an offer without these and then can never connect: a truncated or
    # forged offer must be a 400, not a session that holds a socket until it times out.
    missing = [a for a in _REQUIRED_ATTRIBUTES if f"\na={a}:" not in offer_sdp]
    if missing:
        raise BadOffer("the offer lacks " + ", ".join(f"a={a}" for a in missing) + " (ICE credentials, DTLS)")


async def answer(pc: RTCPeerConnection, offer_sdp: str, send: list | None = None) -> str:
    """Apply the offer and return the complete answer (aiortc gathers before returning).

    `send`: tracks to send back (WHEP), each attached to the offer's transceiver of its
    kind; the answer then only sends (`sendonly`, or `inactive` where there is nothing to
    send), as the WHEP draft requires. Without it (WHIP) the answer only receives. An
    offer's `sendrecv` would otherwise be answered `sendrecv`, and aiortc would decode
    whatever a viewer sends into a queue no one reads, for as long as it sends."""
    check_offer(offer_sdp)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp_module.tidy_candidates(offer_sdp), type="offer"))
        for track in send or ():
            pc.addTrack(track)
        for transceiver in pc.getTransceivers():
            if send is None:
                transceiver.direction = "recvonly"
            else:
                transceiver.direction = "sendonly" if transceiver.sender.track is not None else "inactive"
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001 - aiortc's parser fails in many ways (asserts, None attributes)
        raise BadOffer(f"SDP offer rejected: {type(exc).__name__} {exc}".strip()) from exc
    return pc.localDescription.sdp

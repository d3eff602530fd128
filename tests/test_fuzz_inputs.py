"""Property tests on the two parsers that take hostile input from anyone: the collector's
batch decoder and the SDP handling of WHIP/WHEP.

The property in both: any input ends as a parsed value or as the one client error the
HTTP layer turns into a 4xx naming what was wrong, never as another exception (a 500).
"""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import msgspec
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analytics import validation
from analytics.wire import MAX_POSITION_MS, CollectBatch
from core.validation import BadInput
from edge.streaming import rtc, sdp
from tests.media import PatternTrack, ToneTrack

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
ident = st.from_regex(r"\A[A-Za-z0-9._:-]{1,128}\Z")
event_ref = ident | st.text(min_size=1, max_size=128)  # lengths are msgspec's, characters check_event_ids'
event = st.fixed_dictionaries(
    {"type": st.sampled_from(validation.EVENT_TYPES), "ts": st.integers(0, 2**53),
     "view_id": event_ref, "video_id": event_ref},
    optional={"position_ms": st.integers(0, MAX_POSITION_MS), "screen_w": st.integers(0, 65535),
              "bitrate_kbps": st.integers(0, 4_000_000), "error_message": st.text(max_size=1024),
              "fatal": st.booleans()},
)
batch = st.fixed_dictionaries({"tenant_id": ident, "viewer_id": ident,
                               "events": st.lists(event, min_size=1, max_size=20)})


def _decode(body: bytes):
    try:
        return validation.decode(body, CollectBatch)
    except BadInput as exc:
        assert exc.status == 400 and exc.path.startswith("$"), (exc.status, exc.path)
        return None


@FUZZ
@given(st.binary(max_size=2048))
def test_collector_decoder_on_any_bytes(body):
    _decode(body)


@FUZZ
@given(json_values)
def test_collector_decoder_on_any_json(value):
    _decode(json.dumps(value).encode())


@FUZZ
@given(batch)
def test_collector_decoder_accepts_every_valid_batch_unchanged(value):
    decoded = _decode(json.dumps(value).encode())
    assert decoded is not None
    assert _builtins(decoded) == value


def _builtins(decoded) -> dict:
    """The decoded batch as plain data, without the optional fields it did not carry."""
    return {k: v for k, v in msgspec.to_builtins(decoded).items() if v is not None}


@FUZZ
@given(batch)
def test_event_ids_are_checked_exactly_against_the_id_characters(value):
    """`check_event_ids` refuses a batch iff some view_id or video_id has a character
    outside [A-Za-z0-9._:-], and names the first such field."""
    decoded = _decode(json.dumps(value).encode())
    bad = [f"$.events[{i}].{f}" for i, e in enumerate(value["events"]) for f in ("view_id", "video_id")
           if not re.fullmatch(r"[A-Za-z0-9._:-]+", e[f])]
    try:
        validation.check_event_ids(decoded)
    except BadInput as exc:
        assert bad and exc.path == bad[0], (exc.path, bad)
    else:
        assert not bad


@FUZZ
@given(batch, st.sampled_from(["tenant_id", "viewer_id", "events"]), json_values)
def test_collector_decoder_names_the_broken_field(value, field, junk):
    broken = {**value, field: junk}
    decoded = _decode(json.dumps(broken).encode())
    if decoded is None:
        return
    if field == "viewer_id" and junk is None:  # optional (anonymous tenants): null is its absence
        broken = {k: v for k, v in broken.items() if k != "viewer_id"}
    assert _builtins(decoded) == broken  # the junk happened to be valid


def _real_offer() -> str:
    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(PatternTrack())
        pc.addTrack(ToneTrack())
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        await pc.close()
        return offer

    return asyncio.run(make())


OFFER = _real_offer()
OFFER_LINES = OFFER.splitlines()


@st.composite
def mangled_offers(draw) -> str:
    """A real offer truncated, with lines dropped, repeated or replaced by nonsense."""
    lines = list(OFFER_LINES)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "repeat", "junk", "cut"]))
        if action == "drop":
            del lines[at]
        elif action == "repeat":
            lines.insert(at, lines[at])
        elif action == "junk":
            lines[at] = lines[at][:2] + draw(st.text(max_size=40))
        else:
            lines[at] = lines[at][: draw(st.integers(0, len(lines[at])))]
        if not lines:
            lines = ["v=0"]
    text = "\r\n".join(lines)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


@FUZZ
@given(st.one_of(st.text(max_size=2000), mangled_offers()))
def test_sdp_rewriting_on_any_text(offer):
    for section in sdp.media_sections(offer):
        sdp.has_codec(section, "OPUS")
    sdp.tidy_candidates(offer)
    try:
        sdp.narrow_for_relay(offer)
    except sdp.NoH264:
        pass


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(mangled_offers(), st.text(max_size=300).map(lambda t: "v=0\r\nm=" + t)))
def test_sdp_answering_on_mangled_offers(offer):
    async def attempt() -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            answer = await rtc.answer(pc, offer)
            assert answer.startswith("v=0")
        except rtc.BadOffer:
            pass
        finally:
            await rtc.close(pc)

    asyncio.run(attempt())


def test_whip_refuses_truncated_oversized_and_nonsense_sdp(server, tenant_factory):
    _, key = tenant_factory()
    stream = server.http.post("/v1/streams", json={"name": "fuzz"}, headers={"authorization": f"Bearer {key}"}).json()
    headers = {"content-type": "application/sdp", "authorization": f"Bearer {stream['publish_token']}"}
    bodies = [b"", b"v=0", OFFER[: len(OFFER) // 2].encode(), OFFER.replace("m=", "m=x").encode(),
              b"\xff\xfe\x00garbage", ("v=0\r\n" + "a=x\r\n" * 20_000).encode(), b"m=" * 40_000]
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for body in bodies:
            r = http.post(f"/whip/{stream['stream_id']}", content=body, headers=headers)
            assert r.status_code in (400, 413), (body[:40], r.status_code, r.text)
            assert r.json()["error"] and r.json()["detail"]["message"]
            r = http.post(f"/whep/{stream['stream_id']}", content=body, headers={"content-type": "application/sdp"})
            assert r.status_code in (409, 413), (body[:40], r.status_code, r.text)  # not live: never parsed
    assert server.edge.live.publishers() == {}  # no half-claimed publish left to block the real publisher

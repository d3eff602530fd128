"""Server-side WebRTC QoE (issue #19 point 5): every WHEP viewer session is sampled by the
edge from its RTP senders and the viewer's RTCP receiver reports, stored without any
personal key unless the player presented a consented viewer id, and read back through
`GET /v1/analytics/webrtc`, for its own tenant only."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.stats import RTCOutboundRtpStreamStats, RTCRemoteInboundRtpStreamStats, RTCStatsReport

from edge.streaming import webrtc_stats
from tests.conftest import admin_headers, consent
from tests.edge.test_whip_hls import _publish

STATS_S = 0.5


@pytest.fixture
def qoe_server(server_factory):
    return server_factory(webrtc_stats_s=STATS_S)


def _stream(srv, tenant_factory, **tenant):
    t, key = tenant_factory(**tenant)
    created = srv.http.post("/v1/streams", json={"name": "live"}, headers=admin_headers(key)).json()
    created["admin_key"] = key
    created["tenant_id"] = t.tenant_id
    return created


async def _watch(base_url, stream_id, headers=None):
    """A recvonly aiortc viewer that reads frames until closed; returns (pc, response)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    frames = {"video": 0, "audio": 0}

    @pc.on("track")
    def on_track(track):
        async def read():
            try:
                while True:
                    await track.recv()
                    frames[track.kind] += 1
            except Exception:  # noqa: BLE001 - the track ended
                pass

        asyncio.ensure_future(read())

    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post(f"/whep/{stream_id}", content=pc.localDescription.sdp,
                            headers={"content-type": "application/sdp", **(headers or {})})
    if r.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    pc.frames = frames
    return pc, r


def _rows(store, stream_id, where="1", physical=False):
    return store.rows(
        "SELECT session_id, kind, packets_sent, bytes_sent, packets_lost, fraction_lost, jitter_ms, rtt_ms,"
        f" viewer_id FROM webrtc_samples WHERE stream_id = {{s:String}} AND {where} ORDER BY ts"
        + (" SETTINGS apply_deleted_mask = 0" if physical else ""),
        {"s": stream_id})


async def _until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


def test_a_whep_session_is_sampled_with_loss_jitter_and_rtt_and_no_personal_key(qoe_server, tenant_factory, store):
    srv = qoe_server
    stream = _stream(srv, tenant_factory)
    sid = stream["stream_id"]

    async def scenario():
        publisher, r = await _publish(srv.base_url, stream)
        assert r.status_code == 201
        viewer, w = await _watch(srv.base_url, sid)
        assert w.status_code == 201, w.text
        # Receiver reports come every 0.5-1.5 s; a round trip needs one echoing a sender report.
        await _until(lambda: _rows(store, sid, "kind = 'video' AND rtt_ms IS NOT NULL AND packets_sent > 0"),
                     40, "a video sample with a round-trip time")
        session_id = w.headers["location"].rsplit("/", 1)[1]
        sampler = srv.edge.live.viewer(sid, session_id).qoe
        deleted_at = time.time()
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            assert (await http.delete(w.headers["location"])).status_code == 200
        # The final sample, taken as the session closes, lands too (for both senders)...
        await _until(lambda: sampler.final_at is not None, 10, "the session's close")
        final = f"ts = fromUnixTimestamp64Milli({int(sampler.final_at * 1000)})"
        assert sampler.final_at >= deleted_at
        await _until(lambda: {r[1] for r in _rows(store, sid, final)} == {"video", "audio"}, 20, "the final sample")
        # ... and then none: every sample taken is in the table, and no more are taken.
        await asyncio.sleep(STATS_S * 3)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(srv.edge.webrtc_qoe.flush(), srv.edge.loop))
        assert len(_rows(store, sid)) == sampler.rows
        await viewer.close()
        await publisher.close()
        return w.headers["location"].rsplit("/", 1)[1], viewer.frames

    whep_session, frames = asyncio.run(scenario())
    assert frames["video"] > 0
    rows = _rows(store, sid)
    kinds = {r[1] for r in rows}
    assert kinds == {"video", "audio"}
    sessions = {r[0] for r in rows}
    assert len(sessions) == 1 and whep_session not in sessions  # its own random id, not the Location's
    for session_id, kind, sent, sent_bytes, lost, fraction, jitter, rtt, viewer_id in rows:
        assert viewer_id == ""  # no personal key without a consented viewer id
        if lost is not None:  # a receiver report arrived: loopback loses (almost) nothing
            assert 0 <= lost <= sent and 0 <= fraction <= 1
            assert jitter is not None and 0 <= jitter < 1000  # ms, not RTP units
        if rtt is not None:
            assert 0 <= rtt < 2000  # ms
    video = [r for r in rows if r[1] == "video"]
    assert video[-1][2] > 0 and video[-1][3] > video[-1][2] * 12  # packets and bytes (RTP payload) sent
    assert any(r[7] is not None for r in video)
    sent = [r[2] for r in video]
    assert sent == sorted(sent)  # cumulative counters
    # No join to the session history (which holds the address): the id is nowhere there.
    assert not store.rows("SELECT 1 FROM sessions WHERE session_id IN {s:Array(String)} OR endpoint IN {s:Array(String)}",
                          {"s": list(sessions)})

    # The API: the owner's rows, with the contract's fields.
    r = srv.http.get("/v1/analytics/webrtc", params={"stream_id": sid}, headers=admin_headers(stream["admin_key"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {row["kind"] for row in body["rows"]} == {"video", "audio"}
    api_video = next(row for row in body["rows"] if row["kind"] == "video")
    assert api_video["session_id"] in sessions and api_video["packets_sent"] == video[-1][2]
    assert api_video["rtt_ms"] is not None and api_video["packets_lost"] is not None
    assert api_video["jitter_ms"] is not None and api_video["viewer_linked"] is False
    assert body["streams"][0]["stream_id"] == sid and body["streams"][0]["sessions"] == 1
    # Another tenant asking for the same stream gets nothing.
    _, other = tenant_factory()
    theirs = srv.http.get("/v1/analytics/webrtc", params={"stream_id": sid}, headers=admin_headers(other)).json()
    assert theirs == {"streams": [], "rows": []}


def test_a_consented_viewer_id_links_the_rows_and_a_purge_erases_them(qoe_server, tenant_factory, store):
    srv = qoe_server
    stream = _stream(srv, tenant_factory)
    sid, tenant_id = stream["stream_id"], stream["tenant_id"]
    assert consent(srv.http, tenant_id, "viewer-yes").status_code == 201

    async def scenario():
        publisher, r = await _publish(srv.base_url, stream)
        assert r.status_code == 201
        bad, r_bad = await _watch(srv.base_url, sid, {"x-wave-viewer": "not a viewer id!"})
        assert r_bad.status_code == 400 and r_bad.json()["detail"]["path"] == "$.headers.x-wave-viewer"
        await bad.close()
        yes, r_yes = await _watch(srv.base_url, sid, {"x-wave-viewer": "viewer-yes"})
        no, r_no = await _watch(srv.base_url, sid, {"x-wave-viewer": "viewer-never-consented"})
        assert r_yes.status_code == r_no.status_code == 201
        await _until(lambda: _rows(store, sid, "viewer_id = 'viewer-yes'") and
                     len({r[0] for r in _rows(store, sid)}) == 2, 40, "rows of both sessions")
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            for resp in (r_yes, r_no):
                assert (await http.delete(resp.headers["location"])).status_code == 200
        for pc in (yes, no, publisher):
            await pc.close()
        await asyncio.sleep(0.5)  # the sessions' final samples are taken as they close

    asyncio.run(scenario())
    asyncio.run_coroutine_threadsafe(srv.edge.webrtc_qoe.flush(), srv.edge.loop).result(30)
    rows = _rows(store, sid)
    by_session: dict[str, set] = {}
    for row in rows:
        by_session.setdefault(row[0], set()).add(row[8])
    assert sorted(by_session.values(), key=sorted) == [{""}, {"viewer-yes"}]  # the unconsented id is never stored
    linked = srv.http.get("/v1/analytics/webrtc", params={"stream_id": sid}, headers=admin_headers(stream["admin_key"])).json()
    assert sorted(r["viewer_linked"] for r in linked["rows"]) == [False, False, True, True]

    export = srv.http.get("/v1/privacy/export", params={"viewer_id": "viewer-yes"}, headers=admin_headers(stream["admin_key"]))
    assert export.status_code == 200 and export.json()["tables"]["webrtc_samples"]
    purge = srv.http.post("/v1/privacy/purge", json={"viewer_id": "viewer-yes"}, headers=admin_headers(stream["admin_key"]))
    assert purge.status_code == 200, purge.text
    assert purge.json()["rows_deleted"]["webrtc_samples"] == len([r for r in rows if r[8] == "viewer-yes"])
    assert _rows(store, sid, "viewer_id = 'viewer-yes'", physical=True) == []  # physically gone
    assert _rows(store, sid, "viewer_id = ''")  # the unlinked session's rows are operational data: kept


def test_jitter_is_converted_from_rtp_units_with_the_codec_clock_and_fraction_from_8_bits():
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    report = RTCStatsReport()
    report.add(RTCOutboundRtpStreamStats(timestamp=now, type="outbound-rtp", id="o", ssrc=1, kind="video",
                                         transportId="t", packetsSent=1000, bytesSent=900_000, trackId="x"))
    assert webrtc_stats.from_stats(report, "video", 90_000)["rtt_ms"] is None  # no receiver report yet
    report.add(RTCRemoteInboundRtpStreamStats(timestamp=now, type="remote-inbound-rtp", id="r", ssrc=2, kind="video",
                                              transportId="t", packetsReceived=990, packetsLost=10, jitter=900,
                                              roundTripTime=0.025, fractionLost=64))
    video = webrtc_stats.from_stats(report, "video", 90_000)
    assert video == {"kind": "video", "packets_sent": 1000, "bytes_sent": 900_000, "packets_lost": 10,
                     "fraction_lost": 0.25, "jitter_ms": 10.0, "rtt_ms": 25.0}
    assert webrtc_stats.from_stats(report, "audio", 48_000)["jitter_ms"] == pytest.approx(18.75)


def test_the_player_links_its_whep_session_only_after_consent(qoe_server, tenant_factory, store):
    """Chromium with the embed player: a viewer who declined is measured without an id;
    one who accepted sends its consented viewer id with the WHEP offer, and the rows hold it."""
    from tests.browser import advances, chromium

    srv = qoe_server
    stream = _stream(srv, tenant_factory)
    sid, tenant_id = stream["stream_id"], stream["tenant_id"]

    async def scenario():
        publisher, r = await _publish(srv.base_url, stream)
        assert r.status_code == 201, r.text
        try:
            async with chromium() as (context, errors):
                for answer in ("decline", "accept"):
                    page = await context.new_page()
                    await page.goto(f"{srv.base_url}/embed/{sid}?transport=whep")
                    if answer == "accept":  # the grant is recorded before the play button is pressed
                        async with page.expect_response(lambda resp: resp.url.endswith("/v1/consent")) as granted:
                            await page.click(f'[data-consent="{answer}"]')
                        assert (await granted.value).status == 201
                    else:
                        await page.click(f'[data-consent="{answer}"]')
                    await page.click(".wave-play")
                    await advances(page, 1.0)
                    assert await page.evaluate("document.querySelector('wave-player').transport") == "whep"
                    await _until(lambda: len({r[0] for r in _rows(store, sid, "rtt_ms IS NOT NULL")}) >=
                                 (1 if answer == "decline" else 2), 40, f"samples of the {answer} session")
                    await page.close()
                return errors
        finally:
            await publisher.close()

    errors = asyncio.run(scenario())
    assert not errors, errors
    consented = store.rows("SELECT DISTINCT viewer_id FROM consents WHERE tenant_id = {t:String}", {"t": tenant_id})
    assert len(consented) == 1
    linked = {r[8] for r in _rows(store, sid)}
    assert linked == {"", consented[0][0]}, linked

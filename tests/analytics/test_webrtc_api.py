"""`GET /v1/analytics/webrtc` and the dashboard's WebRTC panel over hand-built samples
written through the edge's own QoE writer (analytics/webrtc_qoe.py): the figures per
session and per stream, CSV, parameter errors, and tenant isolation."""

from __future__ import annotations

import asyncio
import csv
import io
import time

from analytics.webrtc_qoe import QoeLog, Sample
from tests.browser import chromium
from tests.conftest import admin_headers


def _sample(tenant_id, stream_id, session_id, kind, ts, sent, lost=None, jitter=None, rtt=None, viewer=""):
    return Sample(tenant_id=tenant_id, stream_id=stream_id, session_id=session_id, kind=kind, ts=ts,
                  started_at=STARTED.get(session_id, T0), packets_sent=sent, bytes_sent=sent * 1000, packets_lost=lost,
                  fraction_lost=None if lost is None else 0.0, jitter_ms=jitter, rtt_ms=rtt, viewer_id=viewer,
                  retention_days=30)


T0 = time.time() - 600
STARTED = {"s1": T0 - 1, "s2": T0 + 19, "s3": T0 + 29}


def _write(store, samples):
    async def go():
        log = QoeLog(store, consents=None)
        log.add(samples)
        return await log.flush()

    assert asyncio.run(go()) == len(samples)


def _fill(store, tenant_id, stream_a, stream_b):
    _write(store, [
        # session s1 on stream A: three samples, the last report says 10 of 1000 lost
        _sample(tenant_id, stream_a, "s1", "video", T0, 200),
        _sample(tenant_id, stream_a, "s1", "video", T0 + 5, 600, lost=4, jitter=2.0, rtt=10.0),
        _sample(tenant_id, stream_a, "s1", "video", T0 + 10, 1000, lost=10, jitter=4.0, rtt=30.0),
        _sample(tenant_id, stream_a, "s1", "audio", T0 + 10, 500, lost=0, jitter=1.0, rtt=20.0),
        # session s2 on stream A: no receiver report ever arrived
        _sample(tenant_id, stream_a, "s2", "video", T0 + 20, 300),
        # session s3 on stream B
        _sample(tenant_id, stream_b, "s3", "video", T0 + 30, 100, lost=50, jitter=8.0, rtt=100.0),
    ])


def test_webrtc_rows_per_session_and_stream_csv_and_errors(server, tenant_factory, store):
    tenant, key = tenant_factory()
    a, b = f"st_eu_a{tenant.tenant_id[-8:]}", f"st_eu_b{tenant.tenant_id[-8:]}"
    _fill(store, tenant.tenant_id, a, b)
    r = server.http.get("/v1/analytics/webrtc", headers=admin_headers(key))
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {(row["session_id"], row["kind"]): row for row in body["rows"]}
    assert set(rows) == {("s1", "video"), ("s1", "audio"), ("s2", "video"), ("s3", "video")}
    s1 = rows[("s1", "video")]
    assert (s1["samples"], s1["packets_sent"], s1["bytes_sent"], s1["packets_lost"]) == (3, 1000, 1_000_000, 10)
    assert s1["loss_pct"] == 1.0 and s1["jitter_ms"] == 3.0 and s1["jitter_ms_max"] == 4.0
    assert s1["rtt_ms"] == 20.0 and s1["rtt_ms_max"] == 30.0 and s1["viewer_linked"] is False
    s2 = rows[("s2", "video")]
    assert s2["packets_lost"] is None and s2["loss_pct"] is None and s2["rtt_ms"] is None and s2["jitter_ms"] is None
    assert [row["session_id"] for row in body["rows"]] == ["s3", "s2", "s1", "s1"]  # newest first
    streams = {s["stream_id"]: s for s in body["streams"]}
    assert streams[a]["sessions"] == 2 and streams[a]["packets_sent"] == 1000 + 500 + 300
    assert streams[a]["packets_lost"] == 10 and streams[a]["loss_pct"] == round(100 * 10 / 1500, 3)
    assert streams[a]["jitter_ms"] == round((2 + 4 + 1) / 3, 3) and streams[a]["rtt_ms"] == 20.0  # over samples
    assert streams[b] == {"stream_id": b, "sessions": 1, "packets_sent": 100, "packets_lost": 50, "loss_pct": 50.0,
                          "jitter_ms": 8.0, "rtt_ms": 100.0}

    one = server.http.get("/v1/analytics/webrtc", params={"stream_id": b}, headers=admin_headers(key)).json()
    assert [row["session_id"] for row in one["rows"]] == ["s3"] and [s["stream_id"] for s in one["streams"]] == [b]
    early = server.http.get("/v1/analytics/webrtc", headers=admin_headers(key),
                            params={"from": _iso(T0 - 60), "to": _iso(T0 + 6)}).json()
    assert {(row["session_id"], row["packets_sent"]) for row in early["rows"]} == {("s1", 600)}
    limited = server.http.get("/v1/analytics/webrtc", params={"limit": "1"}, headers=admin_headers(key)).json()
    assert len(limited["rows"]) == 1

    as_csv = server.http.get("/v1/analytics/webrtc", params={"format": "csv", "stream_id": a}, headers=admin_headers(key))
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert {(row["session_id"], row["kind"]) for row in table} == {("s1", "video"), ("s1", "audio"), ("s2", "video")}
    assert {"packets_lost", "jitter_ms", "rtt_ms", "loss_pct"} <= set(table[0])

    for params, path in (({"stream_id": "../x"}, "$.query.stream_id"), ({"limit": "0"}, "$.query.limit"),
                         ({"limit": "x"}, "$.query.limit"), ({"from": "yesterday"}, "$.query.from"),
                         ({"from": _iso(T0), "to": _iso(T0 - 1)}, "$.query.from"), ({"format": "xml"}, "$.query.format")):
        bad = server.http.get("/v1/analytics/webrtc", params=params, headers=admin_headers(key))
        assert bad.status_code == 400 and bad.json()["detail"]["path"] == path, (params, bad.text)
    assert server.http.get("/v1/analytics/webrtc").status_code == 401

    # Another tenant sees none of it, even naming the stream.
    _, other = tenant_factory()
    assert server.http.get("/v1/analytics/webrtc", headers=admin_headers(other)).json() == {"streams": [], "rows": []}
    assert server.http.get("/v1/analytics/webrtc", params={"stream_id": a},
                           headers=admin_headers(other)).json() == {"streams": [], "rows": []}


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_dashboard_shows_the_webrtc_panel(server, tenant_factory, store):
    tenant, key = tenant_factory(name="Acme")
    created = server.http.post("/v1/streams", json={"name": "keynote"}, headers=admin_headers(key)).json()
    a, b = created["stream_id"], f"st_eu_b{tenant.tenant_id[-8:]}"
    _fill(store, tenant.tenant_id, a, b)
    api = server.http.get("/v1/analytics/webrtc", headers=admin_headers(key)).json()

    async def scenario():
        async with chromium(viewport=(1280, 900)) as (context, errors):
            page = await context.new_page()
            await page.goto(f"{server.base_url}/admin")
            await page.fill("#key", key)
            await page.click("#signin button[type=submit]")
            await page.locator("body[data-loaded=true]").wait_for(timeout=20_000)
            streams = await page.locator('table[data-panel="webrtc-streams"] tbody tr').evaluate_all(
                "rows => rows.map(r => [r.dataset.stream, ...[...r.children].map(c => c.textContent)])")
            sessions = await page.locator('table[data-panel="webrtc-sessions"] tbody tr').evaluate_all(
                "rows => rows.map(r => [r.dataset.session, r.dataset.kind])")
            csv_href = await page.locator("#webrtc-csv").get_attribute("href")
            return streams, sessions, csv_href, errors

    streams, sessions, csv_href, errors = asyncio.run(scenario())
    assert not errors, errors
    by_stream = {row[0]: row[1:] for row in streams}
    assert set(by_stream) == {a, b}
    assert by_stream[a][0] == "keynote (live)"  # the stream's name, from /v1/streams
    assert by_stream[a][1:5] == ["2", "20.0 ms", "2.3 ms", f"{round(100 * 10 / 1500, 2):.2f} %"]
    assert by_stream[b][1:5] == ["1", "100.0 ms", "8.0 ms", "50.00 %"]
    assert sessions == [[r["session_id"], r["kind"]] for r in api["rows"]]
    assert csv_href.startswith("/v1/analytics/webrtc?") and "format=csv" in csv_href


def test_the_writer_keeps_a_viewer_id_only_while_its_consent_stands(store, tenant):
    """The consent is asked again at every flush: a withdrawal unlinks the rows written
    after it; a purge's `forget_viewer` unlinks rows still buffered."""
    from analytics.consent import ConsentLedger

    t = tenant.tenant_id
    stream = f"st_eu_w{t[-8:]}"

    async def scenario():
        ledger = ConsentLedger(store)
        log = QoeLog(store, ledger)
        await ledger.record(tenant_id=t, viewer_id="v-ok", action="grant", purposes=["analytics"],
                            policy_version="1", email="", ip="::", browser="")
        await ledger.record(tenant_id=t, viewer_id="v-other-purpose", action="grant", purposes=["personalisation"],
                            policy_version="1", email="", ip="::", browser="")
        log.add([_sample(t, stream, "s1", "video", T0, 10, viewer="v-ok"),
                 _sample(t, stream, "s2", "video", T0, 10, viewer="v-other-purpose"),
                 _sample(t, stream, "s3", "video", T0, 10, viewer="v-unknown")])
        await log.flush()
        await ledger.record(tenant_id=t, viewer_id="v-ok", action="withdraw", purposes=[],
                            policy_version="1", email="", ip="::", browser="")
        log.add([_sample(t, stream, "s1", "video", T0 + 5, 20, viewer="v-ok")])
        await log.flush()
        await ledger.record(tenant_id=t, viewer_id="v-ok", action="grant", purposes=["analytics"],
                            policy_version="1", email="", ip="::", browser="")
        log.add([_sample(t, stream, "s1", "video", T0 + 10, 30, viewer="v-ok")])
        await log.forget_viewer(t, "v-ok")  # a purge of v-ok, before this row is written
        await log.flush()

    asyncio.run(scenario())
    rows = store.rows("SELECT session_id, packets_sent, viewer_id FROM webrtc_samples WHERE stream_id = {s:String}"
                      " ORDER BY session_id, packets_sent", {"s": stream})
    assert rows == [("s1", 10, "v-ok"), ("s1", 20, ""), ("s1", 30, ""), ("s2", 10, ""), ("s3", 10, "")]


def test_an_offboarded_tenants_rows_are_never_written_back(store, tenant_factory):
    """Offboarding ends the tenant's sessions, whose closing samples arrive afterwards:
    `forget_tenant` drops what is buffered and whatever comes later; others' rows stay."""
    gone, _ = tenant_factory()
    kept, _ = tenant_factory()
    stream = f"st_eu_o{gone.tenant_id[-8:]}"

    async def scenario():
        log = QoeLog(store, consents=None)
        log.add([_sample(gone.tenant_id, stream, "s1", "video", T0, 10), _sample(kept.tenant_id, stream, "k1", "video", T0, 10)])
        await log.forget_tenant(gone.tenant_id)
        log.add([_sample(gone.tenant_id, stream, "s1", "video", T0 + 5, 20), _sample(kept.tenant_id, stream, "k1", "video", T0 + 5, 20)])
        return await log.flush()

    assert asyncio.run(scenario()) == 2
    rows = store.rows("SELECT tenant_id, packets_sent FROM webrtc_samples WHERE stream_id = {s:String} ORDER BY ts",
                      {"s": stream})
    assert rows == [(kept.tenant_id, 10), (kept.tenant_id, 20)]

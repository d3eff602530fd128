"""Abuse limits: a flood from one address is cut, a legitimate peak from many is not."""

from __future__ import annotations

import json

import httpx
import pytest

from analytics.limits import Limit, Limits, TokenBuckets
from edge.settings import Settings, from_env
from tests.conftest import CHROME_WIN, collect, consent, count_events, event, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_gives_the_burst_then_the_rate_and_says_when():
    clock = Clock()
    bucket = TokenBuckets(Limit(10, 50), clock)
    assert [bucket.take("a") for _ in range(50)] == [0.0] * 50
    assert bucket.take("a") == pytest.approx(0.1)  # one token every 1/10 s
    assert bucket.take("b") == 0.0  # another key has its own bucket
    clock.now += 1.0
    assert [bucket.take("a") for _ in range(10)] == [0.0] * 10
    assert bucket.take("a") > 0
    assert bucket.take("a", cost=500) == pytest.approx(5.0)  # a cost over the burst waits for a full bucket


def test_bucket_table_never_grows_past_its_cap():
    clock = Clock()
    bucket = TokenBuckets(Limit(1, 5), clock, max_keys=1000)
    for i in range(10_000):
        bucket.take(f"10.0.{i // 256}.{i % 256}")
    assert len(bucket) <= 1000
    clock.now += 10  # all full again: forgotten on the next growth, nothing lost
    bucket.take("fresh")
    assert len(bucket) <= 2


def test_idle_clients_are_forgotten_as_new_ones_come():
    clock = Clock()
    bucket = TokenBuckets(Limit(10, 20), clock, sweep_from=100)
    for i in range(5_000):  # a stream of one-off clients, a second apart
        clock.now += 1
        bucket.take(f"client-{i}")
    assert len(bucket) <= 200  # full again after 2 s: swept, not kept


def test_defaults_let_a_50k_events_per_second_peak_from_many_viewers_pass():
    """One tenant's peak, replayed against the default limits on a simulated clock:
    20,000 viewers (each its own address, as the trusted proxy reports it), each sending a
    25-event batch every 10 s (the player's cadence is at most one batch per 10 s), for a
    minute: 50,000 events/s and 2,000 requests/s. Nothing may be refused."""
    clock = Clock()
    d = Settings(data_dir=".", clickhouse_url="")
    limits = Limits(d.limit_ip, d.limit_tenant_events, d.limit_tenant_consents, d.limit_whep_ip,
                    d.limit_whep_tenant, clock)
    viewers, batch, refused, events = 20_000, 25, 0, 0
    for tick in range(60 * 100):  # 10 ms steps: 20 viewers send per step
        clock.now += 0.01
        for i in range(20):
            viewer = (tick * 20 + i) % viewers
            ip = f"10.{viewer // 65536}.{viewer // 256 % 256}.{viewer % 256}"
            refused += bool(limits.per_ip.take(ip)) + bool(limits.tenant_events.take("tenant", batch))
            events += batch
    assert events / 60 == 50_000 and refused == 0


def test_limits_come_from_the_environment():
    s = from_env({"WAVE_LIMIT_IP": "5/20", "WAVE_LIMIT_TENANT_EVENTS": "off", "WAVE_LIMIT_WHEP_IP": "3"})
    assert s.limit_ip == Limit(5, 20) and s.limit_tenant_events.rate == 0 and s.limit_whep_ip == Limit(3, 3)
    with pytest.raises(ValueError):
        Limit.parse("5/0")


def _beacon(tenant_id: str, viewer_id: str, ip: str) -> dict:
    return {"content": json.dumps({"tenant_id": tenant_id, "viewer_id": viewer_id, "events": [event("heartbeat")]}),
            "headers": {"user-agent": CHROME_WIN, "x-forwarded-for": ip}}


def test_a_burst_of_2000_from_one_address_is_limited_and_stores_only_what_was_accepted(server, tenant):
    assert consent(server.http, tenant.tenant_id, "flooder").status_code == 201
    statuses = []
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for _ in range(2000):
            r = http.post("/v1/collect", **_beacon(tenant.tenant_id, "flooder", "81.2.69.142"))
            statuses.append(r.status_code)
            if r.status_code == 429:
                limited = r
    accepted = statuses.count(202)
    assert statuses.count(429) >= 1000 and accepted + statuses.count(429) == 2000
    assert limited.json()["error"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    wait_for(lambda: count_events(server.edge.store, tenant.tenant_id) == accepted, what="accepted beacons stored")
    assert 'wave_rate_limited_total{limit="per_ip"}' in server.http.get("/metrics").text


def test_many_addresses_behind_the_trusted_proxy_are_not_limited(server, tenant):
    viewers = [f"viewer-{i}" for i in range(400)]
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for i, viewer in enumerate(viewers):
            ip = f"81.2.{i // 250}.{i % 250 + 1}"
            assert consent(http, tenant.tenant_id, viewer).status_code == 201
            for _ in range(2):
                assert http.post("/v1/collect", **_beacon(tenant.tenant_id, viewer, ip)).status_code == 202


def test_an_untrusted_peer_cannot_pick_its_address(server_factory, tenant):
    server = server_factory(trusted_proxies=(), limit_ip=Limit(1, 50))  # X-Forwarded-For is ignored now
    assert consent(server.http, tenant.tenant_id, "spoofer").status_code == 201
    codes = [server.http.post("/v1/collect", **_beacon(tenant.tenant_id, "spoofer", f"81.2.69.{i % 250}")).status_code
             for i in range(400)]
    assert codes.count(429) >= 300  # one bucket for all: 50, then about one a second


def test_a_tenant_over_its_event_budget_gets_429_and_others_do_not(server_factory, tenant_factory):
    server = server_factory(limit_tenant_events=Limit(10, 100))
    busy, _ = tenant_factory()
    quiet, _ = tenant_factory()
    for t in (busy, quiet):
        assert consent(server.http, t.tenant_id, "v").status_code == 201
    batch = [event("heartbeat") for _ in range(40)]
    codes = [collect(server.http, busy.tenant_id, "v", batch).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    refused = collect(server.http, busy.tenant_id, "v", batch)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert collect(server.http, quiet.tenant_id, "v", batch).status_code == 202
    wait_for(lambda: count_events(server.edge.store, busy.tenant_id) == 80, what="the two accepted batches")


def test_whep_offers_from_one_address_are_limited(server, tenant_factory):
    _, key = tenant_factory()
    stream = server.http.post("/v1/streams", json={"name": "s"}, headers={"authorization": f"Bearer {key}"}).json()
    sdp = {"content-type": "application/sdp", "x-forwarded-for": "81.2.69.160"}
    codes = [server.http.post(f"/whep/{stream['stream_id']}", content="v=0", headers=sdp).status_code
             for _ in range(40)]
    assert codes[:20] == [404] * 20 and set(codes[20:]) == {429}  # not live; then out of offers

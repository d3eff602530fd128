"""Abuse limits: a flood from one address is cut, a legitimate peak from many is not."""

from __future__ import annotations

import json

import httpx
import pytest

from core.limits import Limit, Limits, TokenBuckets
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


def test_the_addresses_of_one_ipv6_subscriber_share_one_bucket(server_factory, tenant):
    """An ISP hands a subscriber a /64 (RFC 6177): a new address in it for every request
    must not be a new bucket, while another subscriber's /64 keeps its own."""
    server = server_factory(limit_ip=Limit(1, 50))
    assert consent(server.http, tenant.tenant_id, "rotator").status_code == 201
    codes = [server.http.post("/v1/collect", **_beacon(tenant.tenant_id, "rotator", f"2001:db8:1:2::{i + 1:x}")).status_code
             for i in range(400)]
    assert codes.count(429) >= 300
    assert server.http.post("/v1/collect", **_beacon(tenant.tenant_id, "rotator", "2001:db8:1:3::1")).status_code == 202


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
    assert codes[:20] == [409] * 20 and set(codes[20:]) == {429}  # not live; then out of offers


def test_a_keyless_flood_on_admin_routes_is_limited_and_writes_one_summary_not_a_row_each(server_factory, store):
    """The attack of issue #14: thousands of keyless admin calls. Each used to write an
    audit row (and the rows held the full address for 400 days); now they are limited per
    address, counted, and summed up in one short-lived row without an address."""
    assert from_env({"WAVE_LIMIT_ADMIN_IP": "5/10"}).limit_admin_ip == Limit(5, 10)
    server = server_factory()
    since = store.command("SELECT now64(3)")
    attacker = {"x-forwarded-for": "81.2.69.77"}
    codes = [server.http.get("/v1/streams", headers=attacker).status_code for _ in range(600)]
    refused = codes.count(401)
    assert codes.count(429) >= 150 and refused + codes.count(429) == 600
    assert server.http.get("/v1/streams", headers={"x-forwarded-for": "81.2.69.78"}).status_code == 401  # others not
    assert 'wave_auth_refused_total{status="401"}' in server.http.get("/metrics").text
    server.stop()  # the writer sums up what it counted at shutdown
    rows = store.rows("SELECT tenant_id, actor_kind, action, params, toString(ip), status, retention_days"
                      " FROM audit_log WHERE ts >= {s:DateTime64(3)} AND tenant_id = ''", {"s": since})
    summary = [r for r in rows if r[2] == "GET /v1/streams" and r[5] == 401]
    assert len(summary) == 1, rows
    _, kind, _, params, ip, _, days = summary[0]
    assert kind == "refused" and json.loads(params) == {"count": refused + 1, "addresses": 2}
    assert ip == "::" and days == 30


def test_hot_paths_do_not_wait_for_audit_writes(server, tenant_factory, monkeypatch):
    """Audit inserts that hang (a slow store) must not hold the threads that consent,
    collect and key lookups need: the audit log has a thread and a bounded queue of its own."""
    import threading

    from retention import audit

    release = threading.Event()
    real_write = audit.write

    def stuck_write(store, data):
        release.wait(60)
        real_write(store, data)

    monkeypatch.setattr(audit, "write", stuck_write)
    tenant, key = tenant_factory()
    try:
        with httpx.Client(base_url=server.base_url, timeout=20) as http:
            for _ in range(40):  # more audited calls than the default thread pool has threads
                assert http.get("/v1/streams", headers={"authorization": f"Bearer {key}"}).status_code == 200
            _, fresh_key = tenant_factory()  # a key never seen: a database lookup
            assert http.get("/v1/streams", headers={"authorization": f"Bearer {fresh_key}"}).status_code == 200
            assert consent(http, tenant.tenant_id, "v-audit").status_code == 201
            assert collect(http, tenant.tenant_id, "v-audit", [event("heartbeat")]).status_code == 202
    finally:
        release.set()


def test_audit_rows_without_a_tenant_keep_a_short_retention_and_no_full_address(store):
    from retention import audit, policy

    record = json.loads(audit.row("", "key:abc", "operator", "DELETE /v1/tenants/{tenant_id:str}", ip="81.2.69.142"))
    assert record["retention_days"] == audit.ORPHAN_RETENTION_DAYS and record["ip"] == "::ffff:81.2.69.0"
    owned = json.loads(audit.row("tn_eu_x", "key:abc", "admin", "GET /v1/streams", ip="81.2.69.142"))
    assert owned["retention_days"] == audit.DEFAULT_RETENTION_DAYS and owned["ip"] == "81.2.69.142"
    import time

    marker = "orphan-" + str(time.time())
    old = audit.row("", "anonymous", "refused", marker, ts=time.time() - 31 * 86400, retention_days=400)
    young = audit.row("", "anonymous", "refused", marker, ts=time.time() - 86400)
    store.insert_json_lines("audit_log", old + young)  # as rows written before the TTL existed would be
    store.command("ALTER TABLE audit_log UPDATE retention_days = 400 WHERE action = {m:String}",
                  parameters={"m": marker}, )
    policy.enforce(store)
    left = store.rows("SELECT count() FROM audit_log WHERE action = {m:String} SETTINGS apply_deleted_mask = 0",
                      {"m": marker})
    assert left == [(1,)]


def test_guessed_keys_from_many_addresses_do_not_hold_the_hot_paths(server, tenant_factory, monkeypatch):
    """Well-formed but unknown keys each need a lookup; with the store slow to answer them,
    at most a couple of threads wait on those lookups, and consents and beacons still go
    through. Keys of a shape the edge never issues are refused without any lookup."""
    import asyncio
    import secrets
    import threading

    from core import auth

    release = threading.Event()
    real = auth.tenant_id_for_key_hash
    waiting = []

    def slow_lookup(store, key_hash):
        waiting.append(key_hash)
        release.wait(60)
        return real(store, key_hash)

    monkeypatch.setattr(auth, "tenant_id_for_key_hash", slow_lookup)
    tenant, _ = tenant_factory()

    async def scenario():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
            guesses = [asyncio.ensure_future(http.get("/v1/streams", headers={
                "authorization": f"Bearer wk_{secrets.token_urlsafe(32)}", "x-forwarded-for": f"81.2.70.{i}"}))
                for i in range(1, 41)]
            await asyncio.sleep(0.5)  # let them all reach the edge (not a timing assertion)
            junk = await http.get("/v1/streams", headers={"authorization": "Bearer not-a-key"})
            assert junk.status_code == 401
            assert (await http.post("/v1/consent", json={"tenant_id": tenant.tenant_id, "viewer_id": "v-guess",
                                                         "purposes": ["analytics"], "policy_version": "v1"})
                    ).status_code == 201
            r = await http.post("/v1/collect", content=json.dumps({"tenant_id": tenant.tenant_id, "viewer_id": "v-guess",
                                                                   "events": [event("heartbeat")]}),
                                headers={"user-agent": CHROME_WIN, "x-forwarded-for": "81.2.69.142"})
            assert r.status_code == 202
            assert len(waiting) <= 2
            release.set()
            assert {(await g).status_code for g in guesses} == {401}

    try:
        asyncio.run(scenario())
    finally:
        release.set()

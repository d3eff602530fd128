"""The consent-free anonymous mode (analytics/anonymous.py): beacons without consent, a
daily-rotating hash as the only viewer key, no IP, coarse data only; past salts physically
gone; switching modes; purge and export; answers that say unique viewers count per day."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from pathlib import Path

import pytest

from analytics import anonymous, rollup
from analytics.anonymous import DailySalts, SaltGone
from core.store import chdb_path
from core.tenants import load_tenant
from retention import registry, ropa
from tests.conftest import (
    CHROME_WIN, PUBLIC_IP, admin_headers, collect, consent, count_events, event, query_path, store_view, wait_for,
)
from tests.edge.test_cli_and_http import _cli

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
          " Version/17.4 Mobile/15E148 Safari/604.1")


def _rows(store, tenant_id):
    return store.rows(
        "SELECT viewer_id, email, toString(ip), country, region, region_code, city, os, os_version, browser,"
        " browser_version, device FROM viewer_events WHERE tenant_id = {t:String} ORDER BY ts, view_id",
        {"t": tenant_id})


def _post(server, tenant_id, body_extra: dict, ua=CHROME_WIN, ip=PUBLIC_IP, events=None):
    body = {"tenant_id": tenant_id, "events": events or [event("viewstart", view_id="view-a")], **body_extra}
    return server.http.post("/v1/collect", content=json.dumps(body),
                            headers={"user-agent": ua, "x-forwarded-for": ip})


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_anonymous_beacons_need_no_consent_and_keep_no_ip_no_stable_id(server, store, tenant_factory):
    tenant, _ = tenant_factory(consent_mode="anonymous", ip_mode="full")  # full: the mode still stores none
    # Without any viewer id, and with one the client made up (ignored: never stored, never hashed).
    r1 = _post(server, tenant.tenant_id, {}, events=[event("viewstart", view_id="view-a")])
    r2 = _post(server, tenant.tenant_id, {"viewer_id": "client-chosen-id"}, events=[event("playing", view_id="view-a")])
    r3 = _post(server, tenant.tenant_id, {"viewer_id": "other-id"}, ua=IPHONE,
               events=[event("viewstart", view_id="view-b")])
    for r in (r1, r2, r3):
        assert r.status_code == 202 and r.json() == {"accepted": 1}, r.text
        assert "set-cookie" not in r.headers
    wait_for(lambda: count_events(store, tenant.tenant_id) == 3, what="three rows")
    rows = _rows(store, tenant.tenant_id)
    keys = {row[0] for row in rows}
    assert all(k.startswith(anonymous.KEY_PREFIX) and len(k) == len(anonymous.KEY_PREFIX) + 32 for k in keys)
    assert "client-chosen-id" not in keys and "other-id" not in keys
    # The same address and browser: one key (with or without a client id); another browser: another key.
    assert rows[0][0] == rows[1][0] != rows[2][0]
    # ...which is the day's hash of exactly tenant, address and browser (tested day by day below).
    salt = server.edge.salts.salt(anonymous.utc_day())
    assert rows[0][0] == anonymous.viewer_key(salt, tenant.tenant_id, PUBLIC_IP, CHROME_WIN)
    assert rows[2][0] == anonymous.viewer_key(salt, tenant.tenant_id, PUBLIC_IP, IPHONE)
    for row in rows:  # no e-mail, no address at all, country and device class only
        assert row[1:] in (("", "::", "GB", "", "", "", "", "", "", "", "desktop"),
                           ("", "::", "GB", "", "", "", "", "", "", "", "mobile"))
    assert {row[-1] for row in rows} == {"desktop", "mobile"}
    raw = store.rows("SELECT count() FROM viewer_events WHERE tenant_id = {t:String}"
                     " AND (toString(ip) LIKE '%81.2.69%' OR position(viewer_id, '81.2.69') > 0)", {"t": tenant.tenant_id})
    assert raw == [(0,)]
    assert store.rows("SELECT count() FROM consents WHERE tenant_id = {t:String}", {"t": tenant.tenant_id}) == [(0,)]


def test_the_playback_config_tells_the_player_the_mode_and_no_cookie_is_set(server, tenant_factory):
    tenant, key = tenant_factory(consent_mode="anonymous")
    sid = server.http.post("/v1/streams", json={"name": "Launch"}, headers=admin_headers(key)).json()["stream_id"]
    r = server.http.get(f"/v1/playback/{sid}")
    assert r.status_code == 200 and r.json()["consent"]["mode"] == "anonymous"
    assert "set-cookie" not in r.headers
    page = server.http.get(f"/embed/{sid}")
    assert page.status_code == 200 and "set-cookie" not in page.headers
    server.http.put("/v1/privacy/settings", json={"consent_mode": "opt-in"}, headers=admin_headers(key))
    server.edge.tenants.forget(tenant.tenant_id)
    consent_config = server.http.get(f"/v1/playback/{sid}").json()["consent"]
    assert consent_config["mode"] == "opt-in" and consent_config["valid_from_ms"] > 0  # remembered grants: stale


def test_opt_in_tenants_still_need_consent_and_a_viewer_id_of_their_own(server, store, tenant_factory):
    tenant, _ = tenant_factory()  # opt-in, the default
    assert load_tenant(store, tenant.tenant_id).consent_mode == "opt-in"
    r = _post(server, tenant.tenant_id, {})
    assert r.status_code == 400 and r.json()["detail"]["message"].endswith("`viewer_id`")
    r = _post(server, tenant.tenant_id, {"viewer_id": "viewer-x"})
    assert r.status_code == 403 and r.json()["error"] == "consent_required"
    # No client id can pass for an anonymous key (dashboards tell them apart by it), and a
    # host id that merely looks like one ("anon-...") is an ordinary viewer id.
    fake = anonymous.KEY_PREFIX + "0" * 32
    assert consent(server.http, tenant.tenant_id, fake).status_code == 400
    r = _post(server, tenant.tenant_id, {"viewer_id": fake})
    assert r.status_code == 400 and r.json()["detail"]["path"] == "$.viewer_id"
    assert consent(server.http, tenant.tenant_id, "anon-0123").status_code == 201
    wait_for(lambda: server.edge.buffer.pending_rows == 0)
    assert count_events(store, tenant.tenant_id) == 0


def test_keys_rotate_daily_and_a_past_days_salt_is_gone_from_memory_table_and_disk(store):
    """The day is the salt provider's parameter: no sleeping until midnight."""
    salts = DailySalts(store)
    today = anonymous.utc_day()
    tomorrow = today + dt.timedelta(days=1)
    try:
        salt_today = salts.salt(today)
        assert salts.salt(today) == salt_today  # the same day: the same salt...
        key = anonymous.viewer_key(salt_today, "tn_eu_x", PUBLIC_IP, CHROME_WIN)
        assert anonymous.viewer_key(salts.salt(today), "tn_eu_x", PUBLIC_IP, CHROME_WIN) == key  # ...and key
        assert anonymous.viewer_key(salt_today, "tn_eu_y", PUBLIC_IP, CHROME_WIN) != key  # per tenant
        # Another edge (a fresh provider on the same store) derives the same key today.
        assert DailySalts(store).salt(today) == salt_today
        # The salt's first 16 hex digits: LZ4 stores a part's bytes as they are, except where a
        # run of 4 or more repeats earlier bytes of its block, so the full 64 digits were not
        # on disk in one piece about one run in 25 (a flaky "must find"); a repeat inside the
        # first 16 is some 100x rarer, and 64 bits do not occur on disk by chance.
        hex_today = salt_today.hex()[:16].encode()
        root = chdb_path(store.url)
        assert root is not None
        stored = store.rows("SELECT salt FROM anonymous_salts WHERE day = {d:Date}", {"d": today})
        assert (salt_today.hex(),) in stored
        assert _files_containing(root, hex_today), "the scan must find a salt that is there"

        salt_next = salts.salt(tomorrow)  # the first beacon of the next day rotates
        key_next = anonymous.viewer_key(salt_next, "tn_eu_x", PUBLIC_IP, CHROME_WIN)
        assert key_next != key and salt_next != salt_today
        assert salts.days_in_memory() == [tomorrow]
        assert store.rows("SELECT count() FROM anonymous_salts WHERE day <= {d:Date} SETTINGS apply_deleted_mask = 0",
                          {"d": today}) == [(0,)]
        assert _files_containing(root, hex_today) == []  # physically gone, not only masked
        with pytest.raises(SaltGone):
            salts.salt(today)  # never made again: yesterday's keys can no longer be recomputed
    finally:
        salts.rotate(tomorrow + dt.timedelta(days=1))  # leave no salt of tomorrow behind
    assert store.rows("SELECT count() FROM anonymous_salts WHERE day <= {d:Date}", {"d": tomorrow}) == [(0,)]


def test_the_edge_drops_yesterdays_salt_without_any_beacon(server, store):
    """The rotation runs on the edge's clock even when nobody watches."""
    yesterday = anonymous.utc_day() - dt.timedelta(days=1)
    store.command("INSERT INTO anonymous_salts (day, salt, created_at) VALUES ({d:Date}, 'feedface', now64(3))",
                  {"d": yesterday})
    assert store.rows("SELECT count() FROM anonymous_salts WHERE day = {d:Date}", {"d": yesterday}) == [(1,)]
    server.edge.salts.rotate(anonymous.utc_day())  # what its minute loop does
    assert store.rows("SELECT count() FROM anonymous_salts WHERE day = {d:Date} SETTINGS apply_deleted_mask = 0",
                      {"d": yesterday}) == [(0,)]


def test_switching_modes_keeps_history_and_asks_for_consent_again(server, store, tenant_factory):
    tenant, key = tenant_factory()
    tid = tenant.tenant_id
    assert server.http.get("/v1/privacy/settings", headers=admin_headers(key)).json() == {
        "k_anonymity": 5, "consent_mode": "opt-in"}
    assert consent(server.http, tid, "viewer-old").status_code == 201
    assert collect(server.http, tid, "viewer-old", [event("viewstart", view_id="v1")]).status_code == 202
    wait_for(lambda: count_events(store, tid) == 1, what="the consented row")

    r = server.http.put("/v1/privacy/settings", json={"consent_mode": "anonymous"}, headers=admin_headers(key))
    assert r.status_code == 200 and r.json() == {"k_anonymity": 5, "consent_mode": "anonymous"}
    # New beacons are anonymous, whatever id they carry; the consented history stays.
    assert collect(server.http, tid, "viewer-old", [event("viewstart", view_id="v2")]).status_code == 202
    assert consent(server.http, tid, "viewer-new").status_code == 409  # nothing to consent to
    wait_for(lambda: count_events(store, tid) == 2, what="the anonymous row")
    ids = [row[0] for row in store.rows("SELECT viewer_id FROM viewer_events WHERE tenant_id = {t:String}"
                                        " ORDER BY view_id", {"t": tid})]
    assert ids[0] == "viewer-old" and ids[1].startswith(anonymous.KEY_PREFIX)

    r = server.http.put("/v1/privacy/settings", json={"consent_mode": "opt-in"}, headers=admin_headers(key))
    assert r.status_code == 200 and r.json()["consent_mode"] == "opt-in"
    assert load_tenant(store, tid).grants_valid_from_ms > 0
    # The consent from before the anonymous period no longer counts: the viewer is asked again.
    r = collect(server.http, tid, "viewer-old", [event("viewstart", view_id="v3")])
    assert r.status_code == 403 and r.json()["error"] == "consent_required"
    assert consent(server.http, tid, "viewer-old").status_code == 201
    assert collect(server.http, tid, "viewer-old", [event("viewstart", view_id="v4")]).status_code == 202
    wait_for(lambda: count_events(store, tid) == 3, what="the re-consented row")

    audit = server.http.get("/v1/audit", params={"action": "privacy"}, headers=admin_headers(key)).json()["records"]
    assert any("anonymous" in str(rec["after"]) for rec in audit)
    bad = server.http.put("/v1/privacy/settings", json={"consent_mode": "none"}, headers=admin_headers(key))
    assert bad.status_code == 400 and bad.json()["detail"]["path"] == "$.consent_mode"


def test_purge_and_export_cannot_link_anonymous_rows_to_anyone(server, store, tenant_factory):
    """No address is stored, so a purge or export by IP finds nothing of an anonymous
    viewer, and the daily key is no subject anyone can name: it links to nobody. The rows
    leave with the tenant's retention period (or the tenant)."""
    tenant, key = tenant_factory(consent_mode="anonymous", ip_mode="full")
    tid = tenant.tenant_id
    assert _post(server, tid, {}).status_code == 202
    wait_for(lambda: count_events(store, tid) == 1, what="the row")
    exported = server.http.get("/v1/privacy/export", params={"ip": PUBLIC_IP}, headers=admin_headers(key))
    assert exported.status_code == 200
    assert not any(exported.json().get("tables", {}).get(t) for t in ("viewer_events", "views"))
    purged = server.http.post("/v1/privacy/purge", json={"ip": PUBLIC_IP}, headers=admin_headers(key))
    assert purged.status_code == 200 and purged.json()["rows_deleted"].get("viewer_events", 0) == 0
    assert count_events(store, tid) == 1
    anon_key = store.rows("SELECT viewer_id FROM viewer_events WHERE tenant_id = {t:String}", {"t": tid})[0][0]
    assert anon_key.startswith(anonymous.KEY_PREFIX)
    purged = server.http.post("/v1/privacy/purge", json={"viewer_id": anon_key}, headers=admin_headers(key))
    assert purged.status_code == 400 and purged.json()["detail"]["path"].endswith("viewer_id"), purged.text
    exported = server.http.get("/v1/privacy/export", params={"viewer_id": anon_key}, headers=admin_headers(key))
    assert exported.status_code == 400
    assert count_events(store, tid) == 1


def test_answers_say_unique_viewers_count_per_day(server, store, tenant_factory):
    anon, anon_key = tenant_factory(consent_mode="anonymous", k_anonymity=1)
    opt, opt_key = tenant_factory(k_anonymity=1)
    since = time.time() - 1
    day = 86400
    t0 = (int(time.time()) // day - 2) * day + 3600
    play = [(0, "viewstart"), (1, "playing"), (5, "viewend")]
    # One viewer on two days: two daily keys, so 2 "unique viewers" over the range.
    store_view(store, anon.tenant_id, "a-1", play, t0=t0, viewer_id=anonymous.KEY_PREFIX + "1" * 32)
    store_view(store, anon.tenant_id, "a-2", play, t0=t0 + day, viewer_id=anonymous.KEY_PREFIX + "2" * 32)
    store_view(store, opt.tenant_id, "o-1", play, t0=t0, viewer_id="viewer-1")
    store_view(store, opt.tenant_id, "o-2", play, t0=t0 + day, viewer_id="viewer-1")
    rollup.fold_touched(store, since)
    window = {"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 3600)),
              "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 2 * day))}
    for key, mode, scope, uniques in ((anon_key, "anonymous", "day", 2), (opt_key, "opt-in", "range", 1)):
        summary = server.http.get("/v1/analytics/summary", params=window, headers=admin_headers(key)).json()
        assert (summary["consent_mode"], summary["unique_viewers_scope"], summary["unique_viewers"]) == (
            mode, scope, uniques)
        for path, params in (("breakdown", {"dimension": "country"}), ("timeseries", {"interval": "day"})):
            body = server.http.get(f"/v1/analytics/{path}", params={**window, **params}, headers=admin_headers(key)).json()
            assert (body["consent_mode"], body["unique_viewers_scope"]) == (mode, scope), path
    # The opt-in tenant switches: its range now holds both kinds of views.
    server.http.put("/v1/privacy/settings", json={"consent_mode": "anonymous"}, headers=admin_headers(opt_key))
    store_view(store, opt.tenant_id, "o-3", play, t0=t0 + day + 60, viewer_id=anonymous.KEY_PREFIX + "3" * 32)
    rollup.fold_touched(store, since)
    summary = server.http.get("/v1/analytics/summary", params=window, headers=admin_headers(opt_key)).json()
    assert (summary["consent_mode"], summary["unique_viewers_scope"]) == ("anonymous", "mixed")


def test_ropa_says_legitimate_interest_and_lists_the_salts(store, tenant_factory):
    anon, _ = tenant_factory(consent_mode="anonymous")
    opt, _ = tenant_factory()
    record = ropa.build(anon, backup_every_s=0, embedded=True)
    by_table = {e["table"]: e for e in record["entries"]}
    assert record["consent_mode"] == "anonymous"
    assert by_table["viewer_events"]["legal_basis"].startswith("legitimate interest")
    assert by_table["views"]["legal_basis"].startswith("legitimate interest")
    assert ropa.build(opt, backup_every_s=0, embedded=True)["entries"][0]["legal_basis"].startswith("consent")
    supporting = {e["table"]: e for e in record["supporting_tables"]}
    assert set(supporting) == {t.table for t in registry.SUPPORTING}
    assert "anonymous_salts" in supporting and supporting["anonymous_salts"]["retention"]


def test_tenant_create_takes_consent_mode(tmp_path):
    out = _cli(tmp_path / "var", "tenant", "create", "demo", "--consent-mode", "anonymous")
    assert out.returncode == 0, out.stderr
    tenant_id = json.loads(out.stdout)["tenant_id"]
    chdb_dir = tmp_path / "var" / "clickhouse"
    assert query_path(chdb_dir, "SELECT tenant_id, consent_mode FROM tenants") == [[tenant_id, "anonymous"]]
    assert _cli(tmp_path / "var", "tenant", "create", "demo", "--consent-mode", "maybe").returncode != 0
    out = _cli(tmp_path / "var", "tenant", "create", "demo", "--consent-mode", "anonymous", "--identified-viewers")
    assert out.returncode == 2 and json.loads(out.stderr)["error"] == "invalid_tenant"


def test_no_backup_holds_a_daily_salt_and_a_restore_keeps_todays(tmp_path):
    """A backup lives for weeks: the salt of a day must not outlive the day in one."""
    data = tmp_path / "var"
    assert _cli(data, "tenant", "create", "t", "--consent-mode", "anonymous").returncode == 0
    ch = data / "clickhouse"
    salt = secrets.token_hex(32)  # random, as real ones are (a repetitive one compresses out of sight)
    query_path(ch, f"INSERT INTO anonymous_salts (day, salt, created_at) VALUES (today(), '{salt}', now64(3))")
    assert _files_containing(ch, salt.encode()), "the scan must find a salt that is there"
    made = _cli(data, "backup", "create")
    assert made.returncode == 0, made.stderr
    backup_id = json.loads(made.stdout)["backup_id"]
    folder = data / "backups" / backup_id
    assert any(folder.rglob("*")) and _files_containing(folder, salt.encode()) == []
    assert "anonymous_salts" not in json.loads((folder / "manifest.json").read_text())["tables"]
    restored = _cli(data, "backup", "restore", backup_id)
    assert restored.returncode == 0, restored.stderr
    assert query_path(ch, "SELECT salt FROM anonymous_salts") == [[salt]]  # today's stays in use

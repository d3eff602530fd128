"""Geo and user-agent enrichment, the tenant IP modes, and client-address resolution."""

import ipaddress

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from analytics.enrichment.geo import GeoInfo, GeoLocator, bundled_database
from analytics.enrichment.useragent import parse_user_agent
from core.client_address import client_ip, parse_ip, stored_ip
from edge.settings import parse_networks
from tests.conftest import collect, consent, count_events, event, wait_for


def _city(country, region_code, region, city):
    return {
        "country": {"iso_code": country, "names": {"en": country}},
        "subdivisions": [{"iso_code": region_code, "names": {"en": region}}],
        "city": {"names": {"en": city}},
    }


@pytest.fixture(scope="module")
def test_mmdb(tmp_path_factory):
    """A City database written by the test itself (the networks' real owners don't matter)."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-City", languages=["en"])
    writer.insert_network(IPSet(["5.44.0.0/16"]), _city("SE", "AB", "Stockholm County", "Stockholm"))
    writer.insert_network(IPSet(["91.198.174.0/24"]), _city("FR", "IDF", "Île-de-France", "Paris"))
    writer.insert_network(IPSet(["2a02:ec80::/32"]), _city("NO", "03", "Oslo", "Oslo"))
    path = tmp_path_factory.mktemp("geo") / "test-city.mmdb"
    writer.to_db_file(str(path))
    return path


def test_geo_from_generated_database(test_mmdb):
    geo = GeoLocator(test_mmdb)
    assert geo.lookup(parse_ip("5.44.1.7")) == GeoInfo("SE", "Stockholm County", "SE-AB", "Stockholm")
    assert geo.lookup(parse_ip("91.198.174.200")) == GeoInfo("FR", "Île-de-France", "FR-IDF", "Paris")
    assert geo.lookup(parse_ip("2a02:ec80:1::5")) == GeoInfo("NO", "Oslo", "NO-03", "Oslo")
    assert geo.lookup(parse_ip("81.2.69.142")) == GeoInfo()  # not in this database: empty


def test_server_uses_the_configured_database(server_factory, store, tenant, test_mmdb):
    srv = server_factory(geoip_db=str(test_mmdb))
    assert consent(srv.http, tenant.tenant_id, "viewer-geo").status_code == 201
    r = collect(srv.http, tenant.tenant_id, "viewer-geo", [event()], headers={"x-forwarded-for": "5.44.9.9"})
    assert r.status_code == 202
    wait_for(lambda: count_events(store, tenant.tenant_id) == 1)
    assert store.rows(
        "SELECT country, region, region_code, city FROM viewer_events WHERE tenant_id = {t:String}",
        {"t": tenant.tenant_id},
    ) == [("SE", "Stockholm County", "SE-AB", "Stockholm")]


def test_bundled_database_places_public_addresses():
    assert bundled_database() is not None
    geo = GeoLocator(None)
    london = geo.lookup(parse_ip("81.2.69.142"))
    assert (london.country, london.region, london.city) == ("GB", "England", "London")
    assert geo.lookup(parse_ip("8.8.8.8")).country == "US"
    assert geo.lookup(parse_ip("2a00:1450:4001::1")).country == "DE"


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.1.2.3", "192.168.0.9", "::1", "fe80::1", "fc00::7", None])
def test_private_loopback_and_missing_addresses_give_empty_geo(ip):
    assert GeoLocator(None).lookup(parse_ip(ip)) == GeoInfo()


UAS = {
    ("Chrome", "Windows", "desktop"): "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ("Firefox", "Windows", "desktop"): "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ("Edge", "Windows", "desktop"): "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70",
    ("Safari", "Mac OS X", "desktop"): "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    ("Chrome", "Mac OS X", "desktop"): "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ("Firefox", "Mac OS X", "desktop"): "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0",
    ("Edge", "Mac OS X", "desktop"): "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70",
    ("Chrome", "Linux", "desktop"): "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ("Firefox", "Linux", "desktop"): "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    ("Mobile Safari", "iOS", "mobile"): "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ("Chrome Mobile iOS", "iOS", "mobile"): "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    ("Firefox iOS", "iOS", "mobile"): "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
    ("Edge Mobile", "iOS", "mobile"): "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 EdgiOS/131.2903.68 Mobile/15E148 Safari/605.1.15",
    ("Mobile Safari", "iOS", "tablet"): "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    ("Chrome Mobile", "Android", "mobile"): "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
    ("Firefox Mobile", "Android", "mobile"): "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
    ("Edge Mobile", "Android", "mobile"): "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36 EdgA/131.0.2903.87",
    ("Chrome", "Android", "tablet"): "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Safari/537.36",
}


@pytest.mark.parametrize("expected, ua", list(UAS.items()), ids=[" / ".join(k) for k in UAS])
def test_real_browser_user_agents(expected, ua):
    info = parse_user_agent(ua)
    assert (info.browser, info.os, info.device) == expected
    assert info.browser_version and not info.is_bot


def test_bots_and_tvs_are_classified():
    bot = parse_user_agent("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
    assert bot.is_bot and bot.device == "bot"
    tv = parse_user_agent(
        "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/538.1 (KHTML, like Gecko) Version/6.0 TV Safari/538.1"
    )
    assert tv.device == "tv" and not tv.is_bot
    assert parse_user_agent("") .device == "other"


@pytest.mark.parametrize(
    "mode, v4, v6",
    [
        ("full", "::ffff:81.2.69.142", "2a00:1450:4001:81c::200e"),
        ("truncated", "::ffff:81.2.69.0", "2a00:1450:4001::"),
        ("none", "::", "::"),
    ],
)
def test_ip_modes(mode, v4, v6):
    assert ipaddress.ip_address(stored_ip(parse_ip("81.2.69.142"), mode)) == ipaddress.ip_address(v4)
    assert ipaddress.ip_address(stored_ip(parse_ip("2a00:1450:4001:81c::200e"), mode)) == ipaddress.ip_address(v6)


def test_client_ip_trusts_only_configured_proxies():
    trusted = parse_networks("10.0.0.0/8, 127.0.0.1")
    assert str(client_ip("127.0.0.1", "81.2.69.142", trusted)) == "81.2.69.142"
    # the left end of the chain is the client's to forge; the right-most untrusted hop wins
    assert str(client_ip("127.0.0.1", "6.6.6.6, 81.2.69.142, 10.0.0.5", trusted)) == "81.2.69.142"
    # an untrusted peer's header is ignored
    assert str(client_ip("203.0.113.9", "81.2.69.142", trusted)) == "203.0.113.9"
    assert str(client_ip("127.0.0.1", "81.2.69.142", ())) == "127.0.0.1"
    assert str(client_ip("127.0.0.1", "garbage", trusted)) == "127.0.0.1"


@pytest.mark.parametrize(
    "mode, stored",
    [("full", "::ffff:81.2.69.142"), ("truncated", "::ffff:81.2.69.0"), ("none", "::")],
)
def test_ip_mode_end_to_end_keeps_geo(server, store, tenant_factory, mode, stored):
    """Geo is looked up on the full address; only then is the address cut as the tenant says."""
    tenant, _ = tenant_factory(ip_mode=mode)
    assert consent(server.http, tenant.tenant_id, "viewer-ip").status_code == 201
    assert collect(server.http, tenant.tenant_id, "viewer-ip", [event()]).status_code == 202
    wait_for(lambda: count_events(store, tenant.tenant_id) == 1)
    ip, country, city = store.rows(
        "SELECT ip, country, city FROM viewer_events WHERE tenant_id = {t:String}", {"t": tenant.tenant_id}
    )[0]
    assert ipaddress.ip_address(ip) == ipaddress.ip_address(stored)
    assert (country, city) == ("GB", "London")
    consent_ip = store.rows(
        "SELECT ip FROM consents WHERE tenant_id = {t:String}", {"t": tenant.tenant_id}
    )[0][0]
    if mode == "none":
        assert ipaddress.ip_address(consent_ip) == ipaddress.ip_address("::")


def test_bots_are_dropped_when_the_tenant_says_so(server, store, tenant_factory):
    bot_ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    for drop in (True, False):
        tenant, _ = tenant_factory(drop_bots=drop)
        assert consent(server.http, tenant.tenant_id, "bot").status_code == 201
        r = collect(server.http, tenant.tenant_id, "bot", [event()], headers={"user-agent": bot_ua})
        assert r.status_code == 202
        assert r.json()["accepted"] == (0 if drop else 1)
        if not drop:
            wait_for(lambda: count_events(store, tenant.tenant_id) == 1)
            assert store.rows(
                "SELECT is_bot, device FROM viewer_events WHERE tenant_id = {t:String}", {"t": tenant.tenant_id}
            ) == [(True, "bot")]

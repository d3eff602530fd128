"""The consent-free anonymous mode: counting viewers without keeping anything stable.

A tenant in `consent_mode = "anonymous"` asks its viewers nothing, so nothing it stores
may single out a person beyond one day (the Plausible approach):

- the ONLY viewer key is `anon~` + the first 128 bits of
  HMAC-SHA256(salt of the day, tenant_id \\n ip \\n user_agent), computed on the edge;
  whatever viewer id the client sends is ignored;
- the salt of a day (UTC) is 32 random bytes, never derived from anything, kept in this
  process and in the `anonymous_salts` table (one partition per day) so every edge of the
  region derives the same key for the same viewer that day; once the day is over its
  partition is dropped (and its files with it: the table has `old_parts_lifetime = 0`)
  and the process forgets it, so nobody, operator included, can recompute a past day's
  keys: they can no longer be linked to an address, to each other, or across days;
- no IP address (not even truncated), no region or city, no OS, browser or versions are
  stored: the country and the device class (desktop, mobile, tablet, tv, other) only.

Two edges creating the first salt of a day at the same moment both insert one; every
edge then uses the smallest salt stored for the day, so they agree as soon as both
inserts are visible (in the worst case a viewer seen by both in that first second counts
twice that day). "Unique viewers" over a range is therefore the sum of each day's unique
viewers: the API says so (`unique_viewers_scope`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
import time
from typing import Callable

from analytics.enrichment.geo import GeoInfo
from analytics.enrichment.useragent import UAInfo
from core import cluster
from core.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

# Anonymous viewer keys start with it. `~` is outside the characters a client's viewer id
# may have (analytics/wire.py ID_CHARS), so no client can send, consent under, export or
# purge by an anonymous key, and no opt-in id is ever taken for one.
KEY_PREFIX = "anon~"
TABLE = "anonymous_salts"
UNSPECIFIED_IP = "::"  # what the `ip` column holds for every anonymous row


def utc_day(now: float | None = None) -> dt.date:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc).date()


class SaltGone(LookupError):
    """A past day's salt was asked for: it is deleted, and never made again."""


class DailySalts:
    """The salt of each day, from memory or the shared table; past days dropped from both.

    The day is always a parameter (tests inject it; the edge passes today's UTC date), and
    `rotate(today)` is what deletes: every day before `today` leaves memory and the table.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, every_s: float = 60.0) -> None:
        self._store = store
        self._clock = clock
        self._every_s = every_s
        self._salts: dict[dt.date, bytes] = {}
        self._oldest: dt.date | None = None  # days before this one are gone
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()  # one salt per day per process, whatever the threads

    def today(self) -> dt.date:
        return utc_day(self._clock())

    def cached(self, day: dt.date) -> bytes | None:
        """The day's salt if this process holds it (the hot path: no store, no thread)."""
        return self._salts.get(day)

    def salt(self, day: dt.date) -> bytes:
        """The day's salt, made (once, for all edges) on first use; a past day: SaltGone."""
        with self._lock:
            return self._salt(day)

    def _salt(self, day: dt.date) -> bytes:
        if self._oldest is not None and day < self._oldest:
            raise SaltGone(f"the salt of {day} is deleted")
        found = self._salts.get(day)
        if found is not None:
            return found
        self._rotate(day)  # first use of a new day: the days before it go now
        stored = self._stored(day)
        if stored is None:
            # Not in a server's query_log either: the salt is kept nowhere but this table.
            self._store.command(
                f"INSERT INTO {TABLE} (day, salt, created_at) SETTINGS log_queries = 0"
                " VALUES ({d:Date}, {s:String}, now64(3))",
                parameters={"d": day, "s": secrets.token_hex(32)},
            )
            stored = self._stored(day)
        salt = bytes.fromhex(stored)  # type: ignore[arg-type]
        self._salts[day] = salt
        return salt

    def _stored(self, day: dt.date) -> str | None:
        rows = self._store.rows(f"SELECT min(salt), count() FROM {TABLE} WHERE day = {{d:Date}}", {"d": day})
        return rows[0][0] if rows and rows[0][1] else None

    def rotate(self, today: dt.date) -> list[dt.date]:
        """Delete every salt of a day before `today`, from memory and physically from the
        table (its partitions dropped); returns the days dropped from the table."""
        with self._lock:
            return self._rotate(today)

    def _rotate(self, today: dt.date) -> list[dt.date]:
        if self._oldest is None or today > self._oldest:
            self._oldest = today
        for day in [d for d in self._salts if d < today]:
            del self._salts[day]
        past = [row[0] for row in self._store.rows(
            f"SELECT DISTINCT day FROM {TABLE} WHERE day < {{d:Date}} ORDER BY day", {"d": today})]
        for day in past:
            # The partition id of a Date key is its YYYYMMDD (made here from a date, not input).
            self._store.command(cluster.drop_partition(TABLE, f"{day:%Y%m%d}"))
        return past

    def days_in_memory(self) -> list[dt.date]:
        return sorted(self._salts)

    # -- the clock runs even without beacons: yesterday's salt goes soon after midnight --
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="anonymous-salts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.rotate, self.today())
            except StoreUnavailable as exc:
                log.warning("past anonymous salts not dropped this round: %s", exc)
            except Exception:
                log.exception("dropping past anonymous salts failed")
            await asyncio.sleep(self._every_s)


def viewer_key(salt: bytes, tenant_id: str, ip: str, user_agent: str) -> str:
    """The viewer's key for one day: the same client (address and browser) gets the same
    key all day, and an unrelated one the next day."""
    mac = hmac.new(salt, f"{tenant_id}\n{ip}\n{user_agent}".encode("utf-8", "surrogatepass"), hashlib.sha256)
    return KEY_PREFIX + mac.hexdigest()[:32]


def coarse(geo: GeoInfo, agent: UAInfo) -> tuple[str, str]:
    """What an anonymous row keeps of where and on what: (country, device class)."""
    return geo.country, agent.device

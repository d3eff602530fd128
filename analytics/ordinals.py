"""Dense viewer ordinals: one small number per viewer and tenant, for the dashboard cube.

Why: the cube (analytics/cube.py) counts unique viewers exactly by merging Roaring
bitmaps, which is fast only when the numbers are dense (bench/RESULTS.md, "Dashboard
queries": the same answers took 5x longer over random 32-bit hashes of the ids). Owner of
`viewer_ordinals` and of the ordinal on each `views` row (`viewer_ord`).

Numbering without coordination between edges (they share the store and all fold every
touched view): each edge process draws, once, a random 32-bit block that no stored
ordinal uses, and numbers the new viewers of each tenant from there, `block << 32 | n`.
Two edges thus never give one number to two viewers. They can both number the same new
viewer when their passes overlap; a viewer's ordinal is then the smallest of its claims,
which every reader agrees on once both are stored. A view folded meanwhile with the
other claim is mended by the next passes: `repair` finds the viewers with two claims
(the claims' index reads the last day's parts only), writes every view of theirs that
has another number again with the smallest, and hands the days to the cube to take out;
the losing claims go once they are older than RACE_WINDOW_S (no pass can still be writing
them). Views folded before their viewer was numbered, or before ordinals existed (0),
are numbered the same way (those by the first pass of an edge).

A row stays while its viewer has a view within the tenant's retention (the enforcer
keeps it: retention/registry.py), and its TTL is a day past `last_seen`, which a pass
renews at most once a day while the viewer keeps watching.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time

from core import cluster
from core.store import Store

log = logging.getLogger(__name__)

BLOCK = 1 << 32
# A view folded with a losing claim is looked for while the viewer has two claims, one of
# them this recent; the losing claims are deleted once all are older (a race's writes land
# within seconds, so a few minutes leave room for a slow edge).
RACE_WINDOW_S = 300.0
# A pass looks for two claims of a viewer among those made since its cursor, less the
# window (so that it sees a race until its losing claim is deleted) and this margin
# (claims made while the last pass ran); a day back at start.
RACED_MARGIN_S = 60.0
RENEW_AFTER_S = 86400  # `last_seen` renewed once a day at most

# The smallest claim of each viewer of `{viewers}` (a query of tenant_id, viewer_id, ...).
EFFECTIVE = ("SELECT tenant_id, viewer_id, min(ordinal) AS viewer_ord FROM viewer_ordinals"
             " WHERE (tenant_id, viewer_id) IN (SELECT tenant_id, viewer_id FROM ({viewers}))"
             " GROUP BY tenant_id, viewer_id")
_CLAIMS = ("SELECT tenant_id, viewer_id, ordinal, claimed_at, toUnixTimestamp64Milli(last_seen) / 1000, retention_days"
           " FROM viewer_ordinals FINAL WHERE (tenant_id, viewer_id) IN (SELECT tenant_id, viewer_id FROM ({viewers}))")
_COLUMNS = ("tenant_id", "viewer_id", "ordinal", "claimed_at", "last_seen", "retention_days")


def effective_sql(viewers: str) -> str:
    """Per viewer of `viewers` (a query with tenant_id and viewer_id): `viewer_ord`."""
    return EFFECTIVE.replace("{viewers}", viewers)


class Numbering:
    """This process's block and, per tenant, the next number in it."""

    def __init__(self) -> None:
        self._block = 0
        self._next: dict[str, int] = {}

    def _draw_block(self, store: Store) -> int:
        while True:
            block = 1 + secrets.randbelow((1 << 31) - 1)
            if not int(store.command("SELECT count() FROM viewer_ordinals WHERE intDiv(ordinal, {b:UInt64}) = {k:UInt64}",
                                     {"b": BLOCK, "k": block})):
                return block

    def reserve(self, store: Store, tenant_id: str, count: int) -> int:
        """The first of `count` fresh ordinals for `tenant_id`."""
        if not self._block:
            self._block = self._draw_block(store)
        first = self._next.get(tenant_id, 0)
        if first + count >= BLOCK:  # a block holds 4 billion viewers per tenant; then another
            self._block, first = self._draw_block(store), 0
            self._next.clear()
        self._next[tenant_id] = first + count
        return self._block * BLOCK + first

    def claim(self, store: Store, viewers: str, params: dict) -> int:
        """Number every viewer of `viewers` (a query of tenant_id, viewer_id, retention_days)
        that has no ordinal yet, and renew `last_seen` of those last renewed over a day ago,
        in one insert; returns how many were numbered."""
        seen = store.rows(f"SELECT tenant_id, viewer_id, max(retention_days) FROM ({viewers})"
                          " GROUP BY tenant_id, viewer_id ORDER BY tenant_id, viewer_id", params)
        if not seen:
            return 0
        claims: dict[tuple[str, str], list] = {}
        for row in store.rows(_CLAIMS.replace("{viewers}", viewers), params):
            claims.setdefault((row[0], row[1]), []).append(row)
        now = dt.datetime.now(dt.timezone.utc)
        rows, fresh = [], {}
        for tenant_id, viewer_id, retention in seen:
            for _, _, ordinal, claimed_at, last_seen, kept in claims.get((tenant_id, viewer_id), ()):
                if float(last_seen) < now.timestamp() - RENEW_AFTER_S or int(retention) > int(kept):
                    rows.append((tenant_id, viewer_id, ordinal, claimed_at, now, max(int(retention), int(kept))))
            if (tenant_id, viewer_id) not in claims:
                fresh.setdefault(tenant_id, []).append((viewer_id, int(retention)))
        for tenant_id, new in fresh.items():
            first = self.reserve(store, tenant_id, len(new))
            rows += [(tenant_id, viewer_id, first + k, now, now, retention) for k, (viewer_id, retention) in enumerate(new)]
        if rows:
            store.insert_rows("viewer_ordinals", rows, _COLUMNS)
        return sum(len(new) for new in fresh.values())


PROCESS = Numbering()  # this edge process's


def repair(store: Store, numbering: Numbering, folded_since: float | None) -> list[tuple[str, object]]:
    """Give each view its viewer's ordinal where it has another (a race between edges)
    or none (0: folded before its viewer was numbered). Looked at: the views of viewers
    with two claims made since `folded_since` (ClickHouse epoch seconds, the pass's
    cursor) less the window, and the views folded since then with 0; None: a day's claims and every view
    with 0 (rows from before the ordinals existed), as an edge does once at start. Returns the
    (tenant, day) of the views written again, for the cube; deletes losing claims once
    they are all older than RACE_WINDOW_S."""
    now = time.time()
    raced_since = now - 86400.0 if folded_since is None else folded_since - RACE_WINDOW_S - RACED_MARGIN_S
    params = {"recent": float(folded_since or 0.0), "raced": raced_since}
    unnumbered = "viewer_ord = 0" + ("" if folded_since is None else " AND folded_at >= {recent:DateTime64(3)}")
    numbering.claim(store, f"SELECT tenant_id, viewer_id, retention_days FROM views WHERE {unnumbered}", params)
    # A race makes two claims within seconds: grouping the recent ones finds it (the claimed_at
    # index reads those parts only); each such viewer's claims, all ages, decide the rest.
    raced = store.rows("SELECT tenant_id, viewer_id FROM viewer_ordinals WHERE claimed_at >= {raced:DateTime64(3)}"
                       " GROUP BY tenant_id, viewer_id HAVING count() > 1", params)
    if folded_since is None:
        suspects = f"SELECT tenant_id, viewer_id FROM views WHERE {unnumbered}"
        if raced:
            suspects += " UNION ALL SELECT tupleElement(k, 1) AS tenant_id, tupleElement(k, 2) AS viewer_id FROM (SELECT arrayJoin({keys:Array(Tuple(String, String))}) AS k)"
    else:  # a pass: usually nothing to look at, and then no query more
        unfolded = store.rows(f"SELECT DISTINCT tenant_id, viewer_id FROM views WHERE {unnumbered}", params)
        raced = sorted(set(raced) | set(unfolded))
        if not raced:
            return []
        suspects = "SELECT tupleElement(k, 1) AS tenant_id, tupleElement(k, 2) AS viewer_id FROM (SELECT arrayJoin({keys:Array(Tuple(String, String))}) AS k)"
    params["keys"] = raced
    # Each suspect view's newest version, and its viewer's ordinal now.
    mine = ("SELECT tenant_id, view_id, newest.1 AS viewer_id, newest.2 AS ord, newest.3 AS day FROM ("
            " SELECT tenant_id, view_id, argMax((viewer_id, viewer_ord, day), folded_at) AS newest FROM views"
            f" WHERE (tenant_id, viewer_id) IN ({suspects}) GROUP BY tenant_id, view_id)")
    wrong = (f"SELECT m.tenant_id AS tenant_id, m.view_id AS view_id, m.viewer_id AS viewer_id, m.day AS day,"
             f" e.viewer_ord AS right_ord FROM ({mine}) AS m INNER JOIN ({effective_sql(suspects)}) AS e"
             " USING (tenant_id, viewer_id) WHERE m.ord != e.viewer_ord")
    days = store.rows(f"SELECT DISTINCT tenant_id, day FROM ({wrong})", params)
    if days:
        columns = [name for (name,) in store.rows(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'views' ORDER BY position")]
        picked = ", ".join("w.right_ord" if c == "viewer_ord" else "now64(3)" if c == "folded_at" else f"v.{c}"
                           for c in columns)
        store.command(
            f"INSERT INTO views ({', '.join(columns)}) SELECT {picked} FROM views AS v FINAL"
            f" INNER JOIN ({wrong}) AS w ON v.tenant_id = w.tenant_id AND v.view_id = w.view_id"
            f" WHERE (v.tenant_id, v.view_id) IN (SELECT tenant_id, view_id FROM ({wrong}))", params)
        log.info("viewer ordinals: views of %d tenant-days written again with their viewer's ordinal", len(days))
    if raced:
        _drop_losing_claims(store, raced, now)
    return sorted(set(days))


def _drop_losing_claims(store: Store, viewers: list[tuple[str, str]], now: float) -> None:
    """Of `viewers`, delete every claim but the smallest where all their claims are older
    than the window (their views were mended; no pass can still be writing the loser).
    The claims are named in the statement: a mutation with a subquery is refused on a
    replicated table."""
    claims: dict[tuple[str, str], list] = {}
    for tenant_id, viewer_id, ordinal, claimed in store.rows(
            "SELECT tenant_id, viewer_id, ordinal, toUnixTimestamp64Milli(claimed_at) / 1000 FROM viewer_ordinals"
            " WHERE (tenant_id, viewer_id) IN {keys:Array(Tuple(String, String))}", {"keys": viewers}):
        claims.setdefault((tenant_id, viewer_id), []).append((int(ordinal), float(claimed)))
    losers = [(t, v, ordinal) for (t, v), found in claims.items()
              if len(found) > 1 and max(c for _, c in found) < now - RACE_WINDOW_S
              for ordinal, _ in sorted(found)[1:]]
    if losers:
        store.command(cluster.delete_from("viewer_ordinals", "(tenant_id, viewer_id, ordinal) IN"
                                          " {losers:Array(Tuple(String, String, UInt64))}"), {"losers": losers})

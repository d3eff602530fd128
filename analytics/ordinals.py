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
other claim is mended by the next passes: `repair` re-reads every view folded in the
last hour whose ordinal is not its viewer's, writes it again with the right one, drops
the losing claims, and returns the days to rebuild in the cube. Rows from before the
ordinals existed (0) are numbered the same way, by the first pass of an edge.

A row lives a day past the retention of its viewer's newest view: `last_seen` is renewed
(a new version of the row) at most once a day while the viewer keeps watching.
"""

from __future__ import annotations

import logging
import secrets

from core import cluster
from core.store import Store

log = logging.getLogger(__name__)

BLOCK = 1 << 32
REPAIR_WINDOW_S = 3600.0  # folds re-checked by each pass: a race's losing write lands within seconds
RENEW_AFTER_S = 86400  # `last_seen` renewed once a day at most

# The smallest claim of each viewer of `{viewers}` (a query of tenant_id, viewer_id, ...).
EFFECTIVE = ("SELECT tenant_id, viewer_id, min(ordinal) AS viewer_ord, max(last_seen) AS seen FROM viewer_ordinals"
             " WHERE (tenant_id, viewer_id) IN (SELECT tenant_id, viewer_id FROM ({viewers}))"
             " GROUP BY tenant_id, viewer_id")
_NEW = ("SELECT tenant_id, viewer_id, max(retention_days) AS retention_days FROM ({viewers})"
        " WHERE (tenant_id, viewer_id) NOT IN (SELECT tenant_id, viewer_id FROM viewer_ordinals"
        "  WHERE (tenant_id, viewer_id) IN (SELECT tenant_id, viewer_id FROM ({viewers})))"
        " GROUP BY tenant_id, viewer_id")


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
        """Number every viewer of `viewers` (tenant_id, viewer_id, retention_days) that has
        no ordinal yet; returns how many were numbered."""
        new = _NEW.replace("{viewers}", viewers)
        counts = store.rows(f"SELECT tenant_id, count() FROM ({new}) GROUP BY tenant_id", params)
        if not counts:
            return 0
        tenants = [tenant_id for tenant_id, _ in counts]
        limits = [int(n) for _, n in counts]
        firsts = [self.reserve(store, tenant_id, n) for tenant_id, n in zip(tenants, limits)]
        # The same query again: a viewer stored in between ranks past the reserved count and
        # waits for the next pass, so no number is handed out twice.
        store.command(
            "INSERT INTO viewer_ordinals (tenant_id, viewer_id, ordinal, last_seen, retention_days)"
            " SELECT tenant_id, viewer_id, {firsts:Array(UInt64)}[indexOf({tenants:Array(String)}, tenant_id)] + rn - 1,"
            " now64(3), retention_days"
            f" FROM (SELECT *, row_number() OVER (PARTITION BY tenant_id ORDER BY viewer_id) AS rn FROM ({new}))"
            " WHERE rn <= {limits:Array(UInt64)}[indexOf({tenants:Array(String)}, tenant_id)]",
            {**params, "tenants": tenants, "firsts": firsts, "limits": limits})
        return sum(limits)

    def renew(self, store: Store, viewers: str, params: dict) -> None:
        """Renew `last_seen` of the viewers of `viewers` last renewed over a day ago."""
        store.command(
            "INSERT INTO viewer_ordinals (tenant_id, viewer_id, ordinal, claimed_at, last_seen, retention_days)"
            " SELECT o.tenant_id, o.viewer_id, o.ordinal, o.claimed_at, now64(3), greatest(o.retention_days, v.r)"
            " FROM viewer_ordinals AS o FINAL"
            f" INNER JOIN (SELECT tenant_id, viewer_id, max(retention_days) AS r FROM ({viewers})"
            "  GROUP BY tenant_id, viewer_id) AS v USING (tenant_id, viewer_id)"
            f" WHERE (o.tenant_id, o.viewer_id) IN (SELECT tenant_id, viewer_id FROM ({viewers}))"
            f"  AND o.last_seen < now64(3) - {RENEW_AFTER_S}",
            params)


PROCESS = Numbering()  # this edge process's


def repair(store: Store, numbering: Numbering, folded_since: float | None) -> list[tuple[str, object]]:
    """Give every view folded since `folded_since` (ClickHouse epoch seconds) its viewer's
    ordinal where it has another (a race between edges) or none (0: folded before its
    viewer was numbered). None: every view still without one (rows from before the
    ordinals existed). Returns the (tenant, day) of the views written again, for the cube."""
    if folded_since is None:
        where, params = "viewer_ord = 0", {}
    else:  # the minmax index on folded_at finds the recent parts; no FINAL, which would not use it
        where, params = "folded_at >= {recent:DateTime64(3)}", {"recent": folded_since}
    # Each view's newest version among those rows (a newer one than a recent one is recent too).
    mine = ("SELECT tenant_id, view_id, argMax(viewer_id, folded_at) AS viewer_id, argMax(viewer_ord, folded_at) AS ord,"
            f" argMax(day, folded_at) AS day, max(retention_days) AS retention_days FROM views WHERE {where}"
            " GROUP BY tenant_id, view_id")
    numbering.claim(store, f"SELECT tenant_id, viewer_id, retention_days FROM ({mine}) WHERE ord = 0", params)
    wrong = (f"SELECT m.tenant_id AS tenant_id, m.view_id AS view_id, m.viewer_id AS viewer_id, m.day AS day,"
             f" e.viewer_ord AS right_ord FROM ({mine}) AS m INNER JOIN ({effective_sql(mine)}) AS e"
             " USING (tenant_id, viewer_id) WHERE m.ord != e.viewer_ord")
    days = store.rows(f"SELECT DISTINCT tenant_id, day FROM ({wrong})", params)
    if not days:
        return []
    # First the losing claims of those viewers (every one but the smallest), so that the
    # rewrite below, which finds the views again, gives each the one left.
    store.command(cluster.delete_from(
        "viewer_ordinals",
        f"(tenant_id, viewer_id, ordinal) IN (SELECT o.tenant_id, o.viewer_id, o.ordinal FROM viewer_ordinals AS o"
        f" INNER JOIN ({wrong}) AS w ON o.tenant_id = w.tenant_id AND o.viewer_id = w.viewer_id"
        " WHERE o.ordinal != w.right_ord)"), params)
    columns = [name for (name,) in store.rows(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'views' ORDER BY position")]
    picked = ", ".join("w.right_ord" if c == "viewer_ord" else "now64(3)" if c == "folded_at" else f"v.{c}"
                       for c in columns)
    store.command(
        f"INSERT INTO views ({', '.join(columns)}) SELECT {picked} FROM views AS v FINAL"
        f" INNER JOIN ({wrong}) AS w ON v.tenant_id = w.tenant_id AND v.view_id = w.view_id"
        f" WHERE (v.tenant_id, v.view_id) IN (SELECT tenant_id, view_id FROM ({wrong}))", params)
    log.info("viewer ordinals: views of %d tenant-days written again with their viewer's ordinal", len(days))
    return sorted(set(days))

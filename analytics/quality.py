"""Video quality figures: average bitrate and upscale %, from the raw beacons.

Both bill playing time (DESIGN.md §4's, as the per-view fold bills it: `views.spans_sql`)
to the rendition in effect, which the player reports with `rendition_change` (size and
BANDWIDTH of the rendition hls.js switched to, and again right after each `viewstart`):

- **average bitrate** (kbps): the rendition's bitrate, weighted by the playing time spent
  on it. A viewer stuck on 360p for a minute and on 1080p for a second averages ~730, not
  the mean of the two renditions.
- **upscale %** (Mux's definition): how far the player's size exceeds the rendition's, as
  the picture is fitted into the player (`object-fit: contain`): max(0, min(player_w /
  rendition_w, player_h / rendition_h) - 1) x 100, weighted by playing time. A 640x360
  rendition in a 1280x720 player is 100 % upscaled; one in a smaller player 0 %. The
  player's size is its CSS size, sampled with every beacon.

Playing time before a view's first `rendition_change`, or without a player size, counts
for neither figure (None when there is none). Computed at query time over the beacons of
views that reported a rendition (the `views` rollup has no columns for them), scoped like
the rest: tenant first, the day partitions, then time. The range is the beacons' own time
(a view's spans inside [from, to)), not the views' start as for the rollup's figures.
"""

from __future__ import annotations

from analytics.queries import Scope
from analytics.views import spans_sql
from core.store import Store

_CARRY = """
        anyLast(rendition_w) OVER w AS rendition_w_now,
        anyLast(rendition_h) OVER w AS rendition_h_now,
        anyLast(bitrate_kbps) OVER w AS bitrate_now,
        anyLast(player_w) OVER w AS player_w_now,
        anyLast(player_h) OVER w AS player_h_now,"""

_WHERE = (
    "tenant_id = {tenant:String} AND toDate(ts) >= toDate({start:DateTime64(3)})"
    " AND toDate(ts) <= toDate({end:DateTime64(3)}) AND ts >= {start:DateTime64(3)} AND ts < {end:DateTime64(3)}"
)


def _where(scope: Scope) -> str:
    where = _WHERE + (" AND video_id = {video:String}" if scope.video_id else "")
    # Only views that reported a rendition: the window runs over a few, not every beacon.
    return f"{where} AND view_id IN (SELECT view_id FROM viewer_events WHERE {where} AND type = 'rendition_change')"


def quality(store: Store, scope: Scope) -> dict:
    """`average_bitrate_kbps` and `upscale_pct` over the scope's playing time (None: none)."""
    sql = f"""
        SELECT
            sumIf(span * bitrate_now, bitrate_now > 0) AS bits,
            sumIf(span, bitrate_now > 0) AS bit_ms,
            sumIf(span * greatest(0, least(player_w_now / rendition_w_now, player_h_now / rendition_h_now) - 1),
                  rendition_w_now > 0 AND rendition_h_now > 0 AND player_w_now > 0 AND player_h_now > 0) AS up,
            sumIf(span, rendition_w_now > 0 AND rendition_h_now > 0 AND player_w_now > 0 AND player_h_now > 0) AS up_ms
        FROM ({spans_sql(_where(scope), _CARRY)})
        WHERE state = 'playing'
    """
    bits, bit_ms, up, up_ms = store.rows(sql, scope.parameters())[0]
    return {
        "average_bitrate_kbps": round(float(bits) / bit_ms, 1) if bit_ms else None,
        "upscale_pct": round(100.0 * float(up) / up_ms, 2) if up_ms else None,
    }

"""Which region an id belongs to, read from the id itself.

A tenant belongs to one region for life and its data never leaves it, so every edge must
be able to tell, without a global database, where a request belongs. The region is
therefore written into the ids a request carries:

    tenant    tn_<region>_<16 hex>        admin key  wk_<region>_<secret>
    stream    st_<region>_<16 hex>        video      vd_<region>_<16 hex>

Ids made before regions existed (`tn_<16 hex>`, `st_<16 hex>`, `vd_<16 hex>`, `wk_<secret>`)
stay valid and belong to the edge that holds them (`region_of` answers None).
"""

from __future__ import annotations

import re

REGION_PATTERN = r"[a-z0-9][a-z0-9-]{1,31}"  # no '_': it separates the id's parts
REGION = re.compile(rf"^{REGION_PATTERN}$")
DEFAULT_REGION = "eu"

# An id of a tenant or of media, with its region (group 1) or without (legacy).
_TAGGED_ID = re.compile(rf"^(?:tn|st|vd)_(?:({REGION_PATTERN})_)?[0-9a-f]{{16}}$")
# An admin key: the region is the part before the second '_'. A legacy key whose random
# part happens to begin with a known region's name and '_' would be routed there; such a
# key is one in about 2**18 and only for deployments of several regions (reissue it).
_KEY = re.compile(rf"^wk_({REGION_PATTERN})_[A-Za-z0-9_-]{{20,}}$")


def region_of(identifier: str) -> str | None:
    """The region a tenant, stream, video id or admin key names, None when it names none."""
    m = _TAGGED_ID.match(identifier)
    if m is not None:
        return m.group(1)
    m = _KEY.match(identifier)
    return m.group(1) if m is not None else None


def tagged(prefix: str, region: str | None, rest: str) -> str:
    """`tn_` + `eu` + `ab12...` -> `tn_eu_ab12...` (no region: the legacy form)."""
    return f"{prefix}{region}_{rest}" if region else f"{prefix}{rest}"

"""The dashboards' dimensions: how each breakdown names a view's value (one place for the
rollup's queries and the cube's builds, so both group views the same way)."""

from __future__ import annotations

_SCREEN = (
    "multiIf(greatest(screen_w, screen_h) = 0, 'unknown',"
    " greatest(screen_w, screen_h) < 1024, '<1024',"
    " greatest(screen_w, screen_h) < 1366, '1024-1365',"
    " greatest(screen_w, screen_h) < 1920, '1366-1919',"
    " greatest(screen_w, screen_h) < 2560, '1920-2559',"
    " greatest(screen_w, screen_h) < 3840, '2560-3839', '3840+')"
)
DIMENSIONS = {
    "country": "if(country = '', 'unknown', country)",
    "region": "if(region = '', 'unknown', concat(country, ': ', region))",
    "city": "if(city = '', 'unknown', concat(country, ': ', city))",
    "os": "if(os = '', 'unknown', os)",
    "browser": "if(browser = '', 'unknown', browser)",
    "device": "if(device = '', 'unknown', device)",
    "screen": _SCREEN,
    "video": "video_id",
}

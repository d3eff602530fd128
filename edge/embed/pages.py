"""The HTML the edge itself serves: the iframe embed page and the welcome page.

Small templates as functions; every value that reaches HTML goes through `escape`.
"""

from __future__ import annotations

import re
from html import escape

# The player injects its own <style>; hls.js runs its demuxer in a blob: worker and feeds
# MSE through blob: URLs. Any site may frame the embed page (that is its purpose), unless
# the tenant lists the origins its media may be used from (`embed_csp`).
EMBED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors *; base-uri 'none'; form-action 'none'"
)
HOME_CSP = EMBED_CSP.replace("frame-ancestors *", "frame-ancestors 'self'")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")


def embed_csp(allowed_origins: list[str] | tuple[str, ...]) -> str:
    """The embed page's policy: a tenant that lists its origins is framed by those only.
    Otherwise a site the tenant does not know could frame the player transparent or
    covered, over a button of its own, and collect the viewer's click on "Accept"."""
    origins = [o for o in allowed_origins if _ORIGIN.match(o)]
    if not origins:
        return EMBED_CSP
    return EMBED_CSP.replace("frame-ancestors *", "frame-ancestors 'self' " + " ".join(origins))

# What the embed page's URL may set: presentation only. The viewer's consent, id, e-mail
# and identity token are the host page's to give, from its own code (script embed
# attributes, or postMessage from an allowed origin), never from a URL any site can write.
EMBED_QUERY = ("token", "transport", "autoplay", "muted")

GEO_ATTRIBUTION = (
    'IP geolocation by <a href="https://db-ip.com">DB-IP</a> (City Lite, '
    '<a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>).'
)


def _player(media_id: str, attributes: dict[str, str], embedded: bool = False) -> str:
    attrs = "".join(f' {name}="{escape(value)}"' for name, value in attributes.items() if name in EMBED_QUERY)
    # `embedded`: this player is the iframe embed; it takes the host's answers only by
    # postMessage from the tenant's allowed origins (player/src/host.js).
    return f'<wave-player video-id="{escape(media_id)}"{attrs}{" embedded" if embedded else ""}></wave-player>'


def embed_page(media_id: str, title: str, attributes: dict[str, str]) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title or "Video")}</title>
<style>html, body {{ margin: 0; height: 100%; background: #000; }}
wave-player, wave-player .wave-root {{ height: 100%; aspect-ratio: auto; }}</style>
<script src="/player/wave-player.js" defer></script>
</head>
<body>
{_player(media_id, attributes, embedded=True)}
</body>
</html>
"""


def home_page(demo_video_id: str | None, demo_title: str, preparing: bool = False) -> str:
    if demo_video_id:
        watch = f"""<h2>{escape(demo_title)}</h2>
{_player(demo_video_id, {})}
<p>Accept the consent prompt and play: each view becomes rows in ClickHouse, which the
<a href="/admin">analytics dashboard</a> reads (sign in with the demo tenant's admin key from
<code>var/demo.json</code>). Decline, and nothing about you is stored.</p>
<p>Embed it elsewhere: <code>&lt;iframe src="/embed/{escape(demo_video_id)}" allow="autoplay; fullscreen"&gt;&lt;/iframe&gt;</code>
or <code>&lt;script src="/player/wave-player.js"&gt;&lt;/script&gt;&lt;wave-player video-id="{escape(demo_video_id)}"&gt;&lt;/wave-player&gt;</code>.</p>"""
    elif preparing:
        watch = "<p>The demo video is being made: reload in a few seconds.</p>"
    else:
        watch = "<p>No demo video here (start with <code>WAVE_DEMO=1</code>, as <code>make run</code> does).</p>"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wave-edge</title>
<style>body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 960px; margin: 0 auto; padding: 16px; }}
code {{ background: #f3f3f3; padding: 0 3px; word-break: break-all; }} footer {{ color: #666; font-size: 13px; }}</style>
<script src="/player/wave-player.js" defer></script>
</head>
<body>
<h1>wave-edge</h1>
<p>A privacy-first streaming edge: live over WHIP in, HLS and WHEP out; recordings and
uploads as HLS; viewer analytics only with consent. <a href="/admin">Dashboard</a> ·
<a href="/schema">API</a> · <a href="/healthz">health</a></p>
{watch}
<footer><p>{GEO_ATTRIBUTION}</p></footer>
</body>
</html>
"""

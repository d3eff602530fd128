"""User-Agent -> OS, browser, device class, bot flag.

`user-agents` classifies devices well but parses through ua-parser's legacy pure-Python
path (about 0.5 ms a new string). We keep its classification rules and feed them from
ua-parser 1.0's Rust-backed resolver instead (about 15 us), and cache the final answer,
so a seen UA costs a dict lookup.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec
import ua_parser
from ua_parser import Domain
from user_agents.parsers import (
    UserAgent,
    parse_browser,
    parse_device,
    parse_operating_system,
)

try:  # the Rust resolver; falls back to the pure-Python one if the wheel is missing
    from ua_parser.regex import Resolver as _FastResolver

    _parser = ua_parser.Parser(_FastResolver(ua_parser.load_builtins()))
except ImportError:  # pragma: no cover - only without ua-parser-rs
    _parser = ua_parser.parser

_TV_MARKERS = (
    "SmartTV", "SMART-TV", "Smart-TV", "SmartHub", "HbbTV", "GoogleTV", "Android TV",
    "AppleTV", "Apple TV", "CrKey", "Web0S", "WebOS TV", "Tizen", "BRAVIA", "Roku", "AFTB",
    "AFTS", "AFTM", "AFTT", "PlayStation", "Xbox", "NetCast",
)


class UAInfo(msgspec.Struct, frozen=True):
    os: str = ""
    os_version: str = ""
    browser: str = ""
    browser_version: str = ""
    device: str = "other"  # desktop | mobile | tablet | tv | bot | other
    is_bot: bool = False


class _ParsedUserAgent(UserAgent):
    """user-agents' UserAgent built from an already-parsed ua-parser 1.0 result."""

    def __init__(self, ua: str) -> None:  # noqa: D401 - deliberately skips super().__init__
        result = _parser(ua, Domain.ALL).complete().with_defaults()
        self.ua_string = ua
        b, o, d = result.user_agent, result.os, result.device
        self.browser = parse_browser(b.family, b.major, b.minor, b.patch)
        self.os = parse_operating_system(o.family, o.major, o.minor, o.patch)
        self.device = parse_device(d.family, d.brand, d.model)


def _device_class(agent: UserAgent) -> str:
    if agent.is_bot:
        return "bot"
    if any(marker in agent.ua_string for marker in _TV_MARKERS):
        return "tv"
    if agent.is_tablet:
        return "tablet"
    if agent.is_mobile:
        return "mobile"
    if agent.is_pc:
        return "desktop"
    return "other"


@lru_cache(maxsize=16_384)
def parse_user_agent(ua: str) -> UAInfo:
    if not ua:
        return UAInfo()
    agent = _ParsedUserAgent(ua[:1024])
    device = _device_class(agent)
    browser = "" if agent.browser.family == "Other" else agent.browser.family
    os_name = "" if agent.os.family == "Other" else agent.os.family
    return UAInfo(
        os=os_name,
        os_version=agent.os.version_string,
        browser=browser,
        browser_version=agent.browser.version_string,
        device=device,
        is_bot=device == "bot",
    )

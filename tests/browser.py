"""Headless Debian Chromium driven by Playwright: never a downloaded browser.

Flags: `--no-sandbox` (CI runs as root); the background-networking ones keep Chromium from
calling Google at start (this machine has no route out); `WebRtcHideLocalIpsWithMdns` off
so its ICE candidates are plain loopback addresses aiortc can reach, not `.local` names.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from playwright.async_api import async_playwright

CHROMIUM = os.environ.get("WAVE_TEST_CHROMIUM", "/usr/bin/chromium")
MDNS_FLAG = "--disable-features=WebRtcHideLocalIpsWithMdns"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    MDNS_FLAG,
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


# A camera and microphone for publishing pages: Chromium's own test pattern and beep,
# granted without a prompt.
FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@contextlib.asynccontextmanager
async def chromium(screen=(1366, 768), viewport=(1000, 700), extra_args=(), mdns=False):
    """A fresh browser and context; yields (context, console_errors). `mdns`: let Chromium
    hide its addresses behind `.local` names in ICE candidates, as real browsers do."""
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: `apt-get install chromium` (make test installs it)")
    args = [a for a in ARGS if not (mdns and a == MDNS_FLAG)] + list(extra_args)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        context = await browser.new_context(
            screen={"width": screen[0], "height": screen[1]},
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        errors: list[str] = []

        def watch(page):
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))

        context.on("page", watch)
        try:
            yield context, errors
        finally:
            await browser.close()


async def played(page, seconds: float, timeout: float = 30.0) -> float:
    """Wait until the player's <video> has played past `seconds`; returns currentTime.

    Polled with `evaluate` (DevTools, not page script): `wait_for_function` would need
    `eval`, which the embed page's Content-Security-Policy rightly forbids.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        t = await page.evaluate("(() => { const v = document.querySelector('wave-player video'); return v ? v.currentTime : -1; })()")
        if t > seconds:
            return t
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the video did not play past {seconds} s (at {t})")
        await asyncio.sleep(0.1)


async def advances(page, by: float, timeout: float = 30.0) -> float:
    """Wait until the player's playhead has moved `by` seconds from where it first moved
    (a live stream starts near its edge, not at 0); returns the distance covered."""
    first = await played(page, 0.0, timeout)
    await played(page, first + by, timeout)
    return by

"""How late the edge's event loop runs: the signal to refuse new WHEP viewers.

Why: one event loop serves HTTP, ICE and DTLS for every WebRTC session, and the
publishers' media. A WHEP viewer costs loop time to connect (ICE checks, DTLS) and then
to serve; past what the loop can do, every callback waits behind the backlog. A step of
1,200 viewers on the per-viewer path (bench/RESULTS.md, "Overload", session 12) held
the edge's loop at one full core for ten minutes: each new viewer took longer to connect
than the last, and viewers already watching lost ICE consent (their checks went
unanswered for 30 s). Admitting more viewers then only takes the picture from those who
have it. So while the loop is late, a new viewer is answered 503 with Retry-After
(RFC 9110 §15.6.4; RFC 9725 §4.5 names it for an overloaded WHIP/WHEP endpoint), and it
is admitted once the loop has caught up.

Measured by a timer, not by guessing from counts: every `interval_s` a task notes how
much later than asked it woke. `lag_s()` is the mean over the last `window_s`, with the
tick that is overdue right now counted too (a loop that is behind has not run it yet).
A mean over seconds, not the last sample, so a short pause (a collection, a slow
callback) does not turn viewers away; a loop that stays behind, or stops for seconds, does.
"""

from __future__ import annotations

import asyncio
from collections import deque


class LoopLag:
    def __init__(self, interval_s: float = 0.1, window_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()  # (woke at, lag), loop time
        self._due: float | None = None  # when the pending tick should run
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._due = None

    async def _run(self) -> None:
        loop = self._loop
        while True:
            self._due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            self._samples.append((now, max(0.0, now - self._due)))
            while self._samples and self._samples[0][0] < now - self.window_s:
                self._samples.popleft()

    def lag_s(self) -> float:
        """Mean lateness of the loop over the last window, in seconds (0 before any tick).
        Safe from another thread (the metrics page may be rendered in one)."""
        if self._loop is None:
            return 0.0
        now = self._loop.time()
        lags = [lag for woke, lag in list(self._samples) if woke >= now - self.window_s]
        due = self._due
        if due is not None and now > due:
            lags.append(now - due)
        return sum(lags) / len(lags) if lags else 0.0

"""Stopping the edge's background tasks (followers, flushers, summarisers)."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task | None) -> None:
    """Cancel `task` and wait until it has really stopped, so the last flush or summary a
    caller runs next never races a round of the loop it just cancelled."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass

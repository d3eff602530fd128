"""The event loop's lateness: near zero while it keeps up, high while it is blocked, and
back down once it has caught up (edge/loop_lag.py)."""

import asyncio
import time

from edge.loop_lag import LoopLag


def test_lag_rises_while_the_loop_is_blocked_and_falls_once_it_catches_up():
    async def scenario():
        lag = LoopLag(interval_s=0.02, window_s=0.5)
        assert lag.lag_s() == 0.0  # not started
        lag.start()
        await asyncio.sleep(0.3)
        assert lag.lag_s() < 0.05
        time.sleep(0.6)  # a callback that holds the loop
        assert lag.lag_s() > 0.5  # the overdue tick counts before it can run
        await asyncio.sleep(0.05)
        assert lag.lag_s() > 0.1  # the late tick is in the window now
        await asyncio.sleep(0.6)  # the window has moved past the stall
        assert lag.lag_s() < 0.05
        time.sleep(0.1)  # a short pause among many punctual ticks
        await asyncio.sleep(0.3)
        assert lag.lag_s() < 0.05
        await lag.stop()

    asyncio.run(scenario())


def test_the_refusal_threshold_comes_from_the_environment_and_zero_turns_it_off():
    from edge.settings import from_env

    assert from_env({}).whep_busy_lag_s == 0.5
    assert from_env({"WAVE_WHEP_BUSY_LAG_MS": "250"}).whep_busy_lag_s == 0.25
    assert from_env({"WAVE_WHEP_BUSY_LAG_MS": "0"}).whep_busy_lag_s == 0.0

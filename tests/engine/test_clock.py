"""LoopClock: pinned to the loop's monotonic clock, following a step of the wall clock only
when told to (the daemon's watch), timers keeping their elapsed time."""

from __future__ import annotations

import asyncio

import pytest

from pbx_agent import clock as clock_module
from pbx_agent.clock import LoopClock


async def test_a_step_of_the_wall_clock_is_followed_and_timers_keep_their_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The host clock is stepped back an hour (NTP fixing a clock that was fast at start):
    follow_wall returns the step and now() reads the corrected time; a timer set for 50 ms
    before still fires 50 ms on, not an hour later."""
    clock = LoopClock()
    fired = asyncio.Event()
    clock.call_at(clock.now() + 0.05, fired.set)
    wall = clock_module.time.time
    monkeypatch.setattr(clock_module.time, "time", lambda: wall() - 3600)
    step = clock.follow_wall()
    assert -3601 < step < -3599
    assert abs(clock.now() - (wall() - 3600)) < 0.5
    await asyncio.wait_for(fired.wait(), 2)


async def test_a_small_drift_is_not_a_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within the tolerance nothing moves: the wall clock's slewing is not followed."""
    clock = LoopClock()
    before = clock.now()
    wall = clock_module.time.time
    monkeypatch.setattr(clock_module.time, "time", lambda: wall() + 0.5)
    assert clock.follow_wall() == 0.0
    assert abs(clock.now() - before) < 0.5

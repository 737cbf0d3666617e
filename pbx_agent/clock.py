"""Clocks: the one place the daemon asks what time it is and schedules a callback.

Everything that depends on time (policies, the engine's timers, the callback scheduler)
takes a ``Clock``, so tests drive time with ``ManualClock`` and never sleep.

Time is UNIX epoch seconds (float). Policies need wall time anyway (night windows, quiet
hours, the 48 h callback window, store timestamps), and one time base avoids converting
between a monotonic and a wall clock in every module.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` (synchronously, on the event loop) at epoch time ``when``."""
        ...


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


# How far the wall clock may drift from the pinned epoch before the daemon follows it.
WALL_TOLERANCE_S = 2.0


class LoopClock:
    """Epoch time read from the running asyncio loop's clock; timers on that loop.

    The loop's monotonic clock is pinned to the epoch at construction, so a wall-clock step
    (NTP) never makes a timer fire early or late, and a loop whose clock runs faster (the
    lab's time-lapse loop) speeds up every timer of the daemon alike. The daemon calls
    ``follow_wall`` now and then, so a step of the host's clock is followed (and logged)
    instead of keeping every wall time off by it for the daemon's life.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, *, start_epoch: float | None = None
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        start = time.time() if start_epoch is None else start_epoch
        self._offset = start - self._loop.time()

    def now(self) -> float:
        return self._loop.time() + self._offset

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return self._loop.call_at(when - self._offset, callback)

    def follow_wall(self, *, tolerance_s: float = WALL_TOLERANCE_S) -> float:
        """Pin the epoch again when the wall clock has moved away from it by more than
        ``tolerance_s`` (NTP stepping a host clock that was wrong at start, a suspend):
        quiet hours, the night window and stored times then follow the corrected clock.
        Timers already set keep their elapsed time (a prompt due in 2.5 s still comes
        2.5 s on). Returns the step taken (0.0: none)."""
        step = time.time() - self.now()
        if abs(step) <= tolerance_s:
            return 0.0
        self._offset += step
        return step


class _ManualHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when told to. ``advance`` fires due callbacks in time order.

    Callbacks scheduled by a callback for a time already passed run within the same
    ``advance`` call, so chains of timers behave as they would in real time.
    """

    def __init__(self, start: float = 1_795_339_200.0) -> None:
        self._now = start
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, _ManualHandle, Callable[[], None]]] = []

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = _ManualHandle()
        heapq.heappush(self._heap, (when, next(self._seq), handle, callback))
        return handle

    def advance(self, seconds: float) -> None:
        self.advance_to(self._now + seconds)

    def advance_to(self, target: float) -> None:
        while self._heap and self._heap[0][0] <= target:
            when, _, handle, callback = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            self._now = max(self._now, when)
            callback()
        self._now = max(self._now, target)

    @property
    def pending(self) -> int:
        return sum(1 for _, _, handle, _ in self._heap if not handle.cancelled)

    def next_due(self) -> float | None:
        live = [when for when, _, handle, _ in self._heap if not handle.cancelled]
        return min(live) if live else None

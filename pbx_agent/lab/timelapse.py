"""An asyncio event loop whose clock runs faster than real time.

The lab runs the daemon unchanged against a fake PBX; a 3-minute hold should not take 3
minutes to watch. Every timer in the process (the daemon's policies, deadlines, the fake's
scripted delays) reads ``loop.time()``, so speeding up that one clock speeds everything up
alike. The selector's waits are divided by the same factor, so a timer due in 60 virtual
seconds wakes the loop after 60 / speed real seconds. Socket I/O itself is real: one real
millisecond of loopback latency is ``speed`` virtual milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from typing import Any


def check_speed(speed: float) -> float:
    """``speed`` itself if it is a usable time-lapse factor: a positive, finite number."""
    if not (math.isfinite(speed) and speed > 0):
        msg = f"speed must be a positive finite number, got {speed}"
        raise ValueError(msg)
    return speed


class _ScaledSelector(selectors.BaseSelector):
    def __init__(self, inner: selectors.BaseSelector, speed: float) -> None:
        self._inner = inner
        self.speed = speed

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._inner.select(None if timeout is None else timeout / self.speed)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class TimeLapseLoop(asyncio.SelectorEventLoop):
    """``loop.time()`` advances ``speed`` times faster than ``time.monotonic()``."""

    def __init__(self, speed: float) -> None:
        # The base loop is built first, at speed 1, and closed again if ``speed`` is refused:
        # raising before ``super().__init__`` would leave a half-built loop whose
        # ``BaseEventLoop.__del__`` fails on the attributes it never got.
        self._scaled = _ScaledSelector(selectors.DefaultSelector(), 1.0)
        super().__init__(selector=self._scaled)
        self.speed = 1.0
        self._real0 = time.monotonic()
        self._virtual0 = self._real0
        try:
            self.set_speed(speed)
        except ValueError:
            self.close()
            raise

    def time(self) -> float:
        return self._virtual0 + (time.monotonic() - self._real0) * self.speed

    def set_speed(self, speed: float) -> None:
        """Change the speed from now on; virtual time stays continuous (never jumps)."""
        check_speed(speed)
        now = time.monotonic()
        self._virtual0 = self._virtual0 + (now - self._real0) * self.speed
        self._real0 = now
        self.speed = speed
        self._scaled.speed = speed


def run(coro: Any, speed: float = 1.0) -> Any:
    """``asyncio.run`` on a time-lapse loop.

    Runs through :class:`asyncio.Runner`, so an interrupt ends the run as ``asyncio.run``
    would: Ctrl-C cancels the main task (its ``finally`` blocks and ``async with`` exits run),
    every task still pending is then cancelled and awaited on the live loop, async
    generators and the default executor are shut down, and only then is the loop closed;
    ``KeyboardInterrupt`` is raised to the caller at the end.
    """
    try:
        check_speed(speed)
    except ValueError:
        if asyncio.iscoroutine(coro):
            coro.close()  # never started: no "coroutine was never awaited" warning
        raise

    def new_loop() -> asyncio.AbstractEventLoop:
        loop = TimeLapseLoop(speed) if speed != 1.0 else asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        return loop

    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            return runner.run(coro)
    finally:
        asyncio.set_event_loop(None)

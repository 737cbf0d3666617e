"""The time-lapse loop and its runner: a refused speed leaves nothing half-built, and an
interrupted run ends as ``asyncio.run`` would end it: what was still running is cancelled
and awaited on a live loop before the loop closes."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import math
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from pbx_agent.lab import timelapse
from tests.lab.interrupt import interrupt_when


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan, math.inf])
def test_a_refused_speed_leaves_no_half_built_loop(
    speed: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TimeLapseLoop(0)``: ValueError, and the loop's ``__del__`` has nothing to complain
    about (it used to fail on ``_closed``, an attribute the half-built loop never got)."""
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(ValueError, match="speed must be"):
        timelapse.TimeLapseLoop(speed)
    gc.collect()
    assert unraisable == []


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan])
def test_run_refuses_a_bad_speed_and_closes_the_coroutine(speed: float) -> None:
    """No loop, and the coroutine is closed: no "coroutine ... was never awaited"."""

    async def main() -> None:  # pragma: no cover - never started
        pass

    coro = main()
    with pytest.raises(ValueError, match="speed must be"):
        timelapse.run(coro, speed=speed)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_set_speed_refuses_a_bad_speed_and_keeps_the_old_one() -> None:
    loop = timelapse.TimeLapseLoop(5)
    try:
        for bad in (0.0, -2.0, math.nan, math.inf):
            with pytest.raises(ValueError):
                loop.set_speed(bad)
        assert loop.speed == 5
    finally:
        loop.close()


def test_a_result_comes_back_and_virtual_time_runs_fast() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(5)
        return loop.time() - t0

    assert 5 <= timelapse.run(main(), speed=100) < 30


def test_an_interrupt_cancels_and_awaits_the_pending_tasks_on_a_live_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KeyboardInterrupt inside the main coroutine: a task still pending is cancelled and its
    ``finally`` runs (and can await) before the loop closes; nothing is left to be destroyed
    pending, and the interrupt reaches the caller."""
    seen: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            await asyncio.sleep(1)  # a shutdown step that needs the loop
            seen.append("closed" if asyncio.get_running_loop().is_closed() else "live")

    async def main() -> None:
        task = asyncio.create_task(background(), name="background")
        await asyncio.sleep(1)
        assert not task.done()
        raise KeyboardInterrupt

    caplog.set_level(logging.ERROR, logger="asyncio")
    with pytest.raises(KeyboardInterrupt):
        timelapse.run(main(), speed=50)
    gc.collect()
    assert seen == ["cancelled", "live"]
    assert "Task was destroyed" not in caplog.text
    assert "Event loop is closed" not in caplog.text


SIGINT_CHILD = textwrap.dedent(
    """
    import asyncio, signal, sys
    from pbx_agent.lab import timelapse

    # a shell's background job starts with SIGINT ignored, and Python keeps it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)

    async def background():
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(1)
            print("background finally", flush=True)

    async def main():
        asyncio.create_task(background())
        try:
            print("ready", flush=True)
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(1)
            print("main finally", flush=True)

    try:
        timelapse.run(main(), speed=20)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_ends_a_time_lapse_run_without_a_traceback() -> None:
    """A real SIGINT, as Ctrl-C sends it: the main task and the background task both finish
    their ``finally`` on the live loop, KeyboardInterrupt reaches the caller, stderr is
    empty (no traceback, no "Task was destroyed", no "Event loop is closed")."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines, out, err = interrupt_when(proc, lambda line: line == "ready\n", 30)
    assert lines == ["ready\n"]
    assert proc.returncode == 130, err
    assert sorted(out.split("\n")[:-1]) == ["background finally", "interrupted", "main finally"]
    assert err == ""

"""The daemon's life: its stop (SIGTERM: queued commands still reach the switch, the whole
stop keeps within its budget, a callback the store never took is logged lost) and its clock
following a step of the host's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent import clock as clock_module
from pbx_agent import daemon as daemon_module
from pbx_agent.daemon import Daemon
from pbx_agent.model import commands as cmd
from pbx_agent.model.events import CallId
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from tests.services.test_callbacks_daemon import NUMBER, config_for


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def connected(pbx: FakeAsterisk, daemon: Daemon) -> Any:
    caller = await pbx.inbound_call(NUMBER)
    await caller.answer()
    await caller.connect_agent("agent-1001", queue="support")
    call_id = CallId(caller.linkedid)
    await until(
        lambda: (
            call_id in daemon.engine.model.calls
            and daemon.engine.model.calls[call_id].agent is not None
        )
    )
    return caller


async def test_a_hang_up_queued_at_the_stop_reaches_the_switch(tmp_path: Path) -> None:
    """A farewell's prompt and hang-up are queued on the call as SIGTERM comes: the engine
    drains before the AMI link closes, so the switch hangs the caller up (the link was
    closed first: 'not connected', the caller left on the line)."""
    async with FakeAsterisk() as pbx:
        daemon = Daemon(config_for(pbx, tmp_path))
        await daemon.start()
        caller = await connected(pbx, daemon)
        engine = daemon.engine
        call = engine.model.calls[CallId(caller.linkedid)]
        # What R3's policy issues at the end of its script, in the tick SIGTERM comes.
        policy = next(p for p in engine.policies if p.name == "silent_caller")
        for command in (
            cmd.PlayPrompt(leg=call.caller, prompt="silent_caller_farewell", reason="R3"),
            cmd.HangupLeg(leg=call.caller, cause=16, reason="R3 silent caller"),
        ):
            engine._issue(engine._calls[call.id], call, policy, command, engine.clock.now())
        with capture_logs() as logs:
            await daemon.stop()
        assert not caller.alive
        assert [a for a in pbx.actions if a.name == "Hangup"]
        assert not [e for e in logs if e["event"] == "command_failed"]


async def test_a_stop_step_that_hangs_is_cut_at_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that never ends (a store that does not answer, a peer that never lets go) is
    cut when the stop's budget is spent: the rest still runs, the store is closed and the
    daemon says it stopped (a supervisor would otherwise kill it mid-way)."""
    monkeypatch.setattr(daemon_module, "_STOP_BUDGET_S", 0.3)
    async with FakeAsterisk() as pbx:
        daemon = Daemon(config_for(pbx, tmp_path))
        await daemon.start()

        async def never_ends() -> None:
            await asyncio.Event().wait()

        daemon._closers.append(never_ends)
        with capture_logs() as logs:
            async with asyncio.timeout(5):
                await daemon.stop()
    events = [e["event"] for e in logs]
    [cut] = [e for e in logs if e["event"] == "shutdown_step_timed_out"]
    assert "never_ends" in cut["step"]
    assert events[-1] == "daemon_stopped"
    assert "ami_disconnected" in events  # the link still closed after the cut step


async def test_a_callback_the_store_is_still_taking_at_the_budget_is_logged_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drop's callback is being written when SIGTERM comes and the store does not answer:
    the stop cuts the write at its budget and logs the customer's callback lost (before,
    nothing said it: the supervisor killed the daemon mid-wait)."""
    monkeypatch.setattr(daemon_module, "_STOP_BUDGET_S", 0.5)
    async with FakeAsterisk() as pbx:
        daemon = Daemon(config_for(pbx, tmp_path))
        await daemon.start()
        assert daemon.store is not None
        writing = asyncio.Event()

        async def hangs(*_args: Any, **_kwargs: Any) -> Any:
            writing.set()
            await asyncio.Event().wait()

        monkeypatch.setattr(daemon.store.callbacks, "create_unless_pending", hangs)
        caller = await connected(pbx, daemon)
        with capture_logs() as logs:
            await caller.hangup(cause=44)
            async with asyncio.timeout(5):
                await writing.wait()
                await daemon.stop()
    [lost] = [e for e in logs if e["event"] == "callback.lost"]
    assert lost["number"].endswith(NUMBER[-10:])
    assert "stopped" in lost["reason"]


async def test_the_daemon_follows_a_step_of_the_hosts_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's clock is stepped back an hour while the daemon runs: its own clock
    follows (quiet hours and the night window are wall times) and says so (clock_stepped);
    it kept the wrong time for its whole life before."""
    monkeypatch.setattr(daemon_module, "_WALL_CHECK_S", 0.05)
    async with FakeAsterisk() as pbx:
        daemon = Daemon(config_for(pbx, tmp_path))
        with capture_logs() as logs:
            await daemon.start()
            try:
                wall = clock_module.time.time
                monkeypatch.setattr(clock_module.time, "time", lambda: wall() - 3600)
                await until(lambda: any(e["event"] == "clock_stepped" for e in logs))
                assert daemon.clock is not None
                assert abs(daemon.clock.now() - (wall() - 3600)) < 1
            finally:
                monkeypatch.undo()
                await daemon.stop()
    [stepped] = [e for e in logs if e["event"] == "clock_stepped"]
    assert -3601 < stepped["step_s"] < -3599

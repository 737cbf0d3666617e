"""The built-in simulated PBX of ``pbx-agent run``: the daemon, built by the composition root
with no switch configured, attaches to the simulator's fake Asterisk, whose traffic
generator plays lab scenarios as live calls. Run on the lab's time-lapse loop."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog
from structlog.testing import capture_logs

from pbx_agent.config import Config
from pbx_agent.daemon import Daemon
from pbx_agent.lab import simulator, timelapse
from pbx_agent.lab.drivers import AsteriskLabPbx, AsteriskLeg
from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.lab.scenarios import all_scenarios
from pbx_agent.lab.scenarios.hold import HELPER_CONTEXTS, short_hold
from pbx_agent.logging import configure_logging

SPEED = 20.0


class _Traffic(simulator.Simulator):
    """The simulator the daemon starts, with a quick traffic shape: one call at a time."""

    made: ClassVar[list[_Traffic]] = []
    at_once: ClassVar[int] = 1

    def __init__(self, **_kwargs: Any) -> None:
        super().__init__(concurrency=self.at_once, mean_gap_s=0.2, seed=7)
        self.deadline_s = 30.0
        _Traffic.made.append(self)


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> list[Scenario]:
    """The scenarios the simulator may draw from (the test fills the list)."""
    scenarios: list[Scenario] = []
    _Traffic.made = []
    monkeypatch.setattr(simulator, "all_scenarios", lambda: list(scenarios))
    monkeypatch.setattr(simulator, "Simulator", _Traffic)
    return scenarios


def _run(
    tmp_path: Path, body: Callable[[Daemon, _Traffic], Awaitable[None]]
) -> list[dict[str, Any]]:
    """Start the simulated daemon, run ``body``, stop it; the log events."""
    config = Config.model_validate(
        {
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'daemon.sqlite3'}"},
            "metrics": {"enabled": False},
            "prompts": {"sounds_dir": str(tmp_path)},
        },
        context={},
    )
    assert config.pbx.kind == "simulated"

    async def main() -> None:
        daemon = Daemon(config)
        await daemon.start()
        try:
            await body(daemon, _Traffic.made[-1])
        finally:
            await daemon.stop()

    with capture_logs() as events:
        timelapse.run(main(), speed=SPEED)
    return events


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} virtual s waiting for {what}")


def _scenario(name: str, run: Callable[[LabContext], Awaitable[None]], **kw: Any) -> Scenario:
    return Scenario(name=name, title=name, rule="R1", run=run, **kw)


def _once(run: Callable[[LabContext], Awaitable[None]]) -> Callable[[LabContext], Awaitable[None]]:
    """``run`` the first time the simulator draws the scenario; nothing after."""
    played: list[bool] = []

    async def wrapper(ctx: LabContext) -> None:
        if played:
            return
        played.append(True)
        await run(ctx)

    return wrapper


async def _held_call(ctx: LabContext) -> AsteriskLeg:
    """A customer connected to an agent and put on hold: the daemon starts the hold
    program (a Local pair spying on the customer) and announces."""
    assert isinstance(ctx.pbx, AsteriskLabPbx)
    for (context, exten), steps in HELPER_CONTEXTS.items():
        ctx.pbx.fake.dialplan.add(context, exten, steps)
    caller = await ctx.pbx.inbound_call("79161234567", "Иван")
    await caller.answer()
    agent = await caller.connect_agent("agent-1001", queue="support", member_name="Alice")
    await ctx.until(lambda: bool(ctx.daemon.engine.model.calls), what="the call")
    await caller.hold(by=agent)
    switch = ctx.pbx.fake.switch
    await ctx.until(
        lambda: any(name.startswith("Local/hold@") for name in switch.channels),
        what="the hold program",
    )
    return caller


def _on_hold_for_ever(held: list[bool]) -> Callable[[LabContext], Awaitable[None]]:
    """A script that puts its customer on hold, notes it in ``held`` and never ends."""

    async def run(ctx: LabContext) -> None:
        await _held_call(ctx)
        held.append(True)
        await asyncio.Event().wait()

    return run


def _nothing_left_up(daemon: Daemon, sim: _Traffic) -> bool:
    return not sim.fake.switch.channels and not daemon.engine.model.calls


def test_a_scenario_waiting_for_a_log_event_sees_it(pool: list[Scenario], tmp_path: Path) -> None:
    """hold_short waits for the daemon's hold_cue log event (the announcement): the
    simulator hands its scenarios the daemon's log as the lab does, so it plays through."""
    outcome: list[str] = []

    async def hold_short(ctx: LabContext) -> None:
        try:
            await short_hold(ctx)
        except AssertionError as exc:
            outcome.append(f"failed: {exc}")
            raise
        outcome.append("passed")

    pool.append(_scenario("hold_short", _once(hold_short)))

    async def body(daemon: Daemon, sim: _Traffic) -> None:
        await _until(lambda: bool(outcome), 60, "hold_short to end")
        assert outcome == ["passed"]
        await _until(lambda: _nothing_left_up(daemon, sim), 10, "the call to end")
        assert sim.log_feed.subscribers == 0

    events = _run(tmp_path, body)
    assert not [e for e in events if e["event"] == "simulated_call_failed"]


def test_a_failing_scenario_leaves_no_call_up(pool: list[Scenario], tmp_path: Path) -> None:
    """A script that fails with the customer on hold: the simulator hangs up every channel
    of its call (the customer, the agent, the daemon's hold program), the daemon's model
    has no call left, and the failure is a warning naming the scenario and the reason."""
    failed: list[bool] = []

    async def fails_on_hold(ctx: LabContext) -> None:
        await _held_call(ctx)
        failed.append(True)
        msg = "the scripted failure"
        raise AssertionError(msg)

    pool.append(_scenario("fails_on_hold", _once(fails_on_hold)))

    async def body(daemon: Daemon, sim: _Traffic) -> None:
        await _until(lambda: bool(failed), 30, "the scenario to fail")
        await _until(lambda: _nothing_left_up(daemon, sim), 60, "every channel to be hung up")

    events = _run(tmp_path, body)
    [warning] = [e for e in events if e["event"] == "simulated_call_failed"]
    assert warning["log_level"] == "warning"
    assert warning["scenario"] == "fails_on_hold"
    assert warning["reason"] == "the scripted failure"
    assert any(name.startswith("PJSIP/trunk-") for name in warning["hung_up"])


def test_a_scenario_past_its_deadline_leaves_no_call_up(
    pool: list[Scenario], tmp_path: Path
) -> None:
    """A script stuck for ever (here: on hold) is abandoned at its deadline and its call
    hung up like a failed one's."""
    held: list[bool] = []
    pool.append(_scenario("stuck_on_hold", _once(_on_hold_for_ever(held))))

    async def body(daemon: Daemon, sim: _Traffic) -> None:
        await _until(lambda: bool(held), 30, "the customer to be on hold")
        # The deadline (30 s from the scenario's start), then the hang-ups (a few seconds).
        await _until(lambda: _nothing_left_up(daemon, sim), 90, "every channel to be hung up")

    events = _run(tmp_path, body)
    [warning] = [e for e in events if e["event"] == "simulated_call_failed"]
    assert warning["scenario"] == "stuck_on_hold"
    assert "deadline" in warning["reason"]


def test_scenarios_played_at_once_each_see_only_their_own_call(
    pool: list[Scenario], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two customers on hold at the same time, each the call of one scenario: each scenario
    sees the decisions and log events (hold announcements) of its own call and none of the
    other's, so a script waiting for "the hold record" cannot take the other call's."""
    monkeypatch.setattr(_Traffic, "at_once", 2)
    seen: dict[str, tuple[set[str | None], set[str]]] = {}
    on_hold: set[str] = set()

    async def held_and_watched(ctx: LabContext) -> None:
        if len(on_hold) >= 2:
            return
        caller = await _held_call(ctx)
        on_hold.add(caller.id)
        await ctx.until(lambda: len(on_hold) >= 2, what="both customers on hold")
        await ctx.until(
            lambda: any(e["event"] == "hold_cue" for e in ctx.log_events),
            what="this call's hold announcement",
        )
        await ctx.sleep(2)
        legs = {e["leg"] for e in ctx.log_events if e.get("leg")}
        seen[caller.id] = ({d.call_id for d in ctx.decisions}, legs)
        await caller.hangup()

    pool.append(_scenario("held_and_watched", held_and_watched))

    async def body(_daemon: Daemon, _sim: _Traffic) -> None:
        await _until(lambda: len(seen) >= 2, 60, "both scenarios to look")

    events = _run(tmp_path, body)
    assert {e["leg"] for e in events if e["event"] == "hold_cue"} == on_hold
    first, second = on_hold
    for mine, other in ((first, second), (second, first)):
        call_ids, legs = seen[mine]
        assert mine in call_ids
        assert mine in legs
        assert other not in call_ids
        assert other not in legs


def test_the_simulated_asterisk_plays_no_scenario_of_another_pbx(
    pool: list[Scenario], tmp_path: Path
) -> None:
    """A FreeSWITCH-only scenario is never drawn by the simulated Asterisk."""
    played: list[str] = []

    def record(name: str) -> Callable[[LabContext], Awaitable[None]]:
        async def run(_ctx: LabContext) -> None:
            played.append(name)

        return run

    pool.append(_scenario("on_asterisk", record("on_asterisk"), pbx=frozenset({"asterisk"})))
    pool.append(_scenario("on_freeswitch", record("on_freeswitch"), pbx=frozenset({"freeswitch"})))

    async def body(_daemon: Daemon, _sim: _Traffic) -> None:
        await _until(lambda: len(played) >= 12, 60, "a dozen simulated calls")

    _run(tmp_path, body)
    assert set(played) == {"on_asterisk"}


def test_the_pool_is_the_asterisk_scenarios_of_the_default_configuration() -> None:
    """The real pool: Asterisk scenarios with no configuration of their own and no local
    time, not the foundation's; the FreeSWITCH variant of the click is not in it."""
    names = {s.name for s in simulator.Simulator().scenarios}
    assert "silent_caller_click_is_speech_on_freeswitch" not in names
    assert {"hold_short", "hold_hangup", "silent_caller_noise_burst"} <= names
    assert all(
        "asterisk" in s.pbx and not s.config and s.at_local_time is None
        for s in all_scenarios()
        if s.name in names
    )


def test_the_log_feed_keeps_only_what_running_scenarios_need() -> None:
    """Events logged while no scenario runs are kept by nobody; a running scenario's list
    is bounded; once it ends the feed holds nothing."""
    feed = simulator.LogFeed(limit=3)
    logger = structlog.get_logger("test")
    with capture_logs():
        feed.install()
        logger.info("before")
        with feed.subscribe() as events:
            for n in range(5):
                logger.info("during", n=n)
        logger.info("after")
        assert feed.subscribers == 0
        feed.uninstall()
        assert all(p is not feed for p in structlog.get_config()["processors"])
    assert [(e["event"], e["n"]) for e in events] == [("during", 2), ("during", 3), ("during", 4)]


def test_the_simulated_switch_keeps_bounded_records() -> None:
    """The fake switch behind `pbx-agent run` runs for days: its records are bounded."""
    assert simulator.Simulator().fake.history_limit == simulator.SIM_HISTORY


def test_the_log_feed_sees_info_events_when_the_daemon_prints_only_warnings() -> None:
    """`run` with the simulator at logging.level = warning captures info events: the feed
    goes before the level gate, so a scenario waiting for a hold announcement sees it,
    while the log written holds only the warnings."""
    saved = structlog.get_config()
    out = io.StringIO()
    try:
        configure_logging("json", "warning", stream=out, capture_level="info")
        feed = simulator.LogFeed()
        logger = structlog.get_logger("test")
        with feed.subscribe() as events:
            logger.info("hold_cue", prompt="hold.announce")
            logger.warning("simulated_call_failed")
        feed.uninstall()
    finally:
        structlog.configure(**saved)
    assert [e["event"] for e in events] == ["hold_cue", "simulated_call_failed"]
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "simulated_call_failed"
    ]


def test_stopping_the_daemon_mid_call_is_a_clean_stop(pool: list[Scenario], tmp_path: Path) -> None:
    """The daemon stops while a simulated customer is on hold: the switch outlives it, as a
    real one would, so nothing says the switch was lost (no warning-level disconnect, no
    hold program's FastAGI connection lost, no call told it went unheard)."""
    held: list[bool] = []
    pool.append(_scenario("stays_on_hold", _once(_on_hold_for_ever(held))))

    async def body(_daemon: Daemon, _sim: _Traffic) -> None:
        await _until(lambda: bool(held), 30, "the customer to be on hold")

    events = _run(tmp_path, body)
    assert [e["event"] for e in events if e["event"] == "hold_program_started"]
    noisy = [
        e
        for e in events
        if e["event"] in ("hook_connection_lost", "silent_caller_unheard")
        or (e["event"] == "ami_disconnected" and e["log_level"] != "info")
        or e.get("action") == "silent_caller_unheard"
    ]
    assert noisy == []

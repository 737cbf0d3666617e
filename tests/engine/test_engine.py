"""The engine: dispatch to policies, timers on an injected clock, command execution and logging."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from pbx_agent.clock import ManualClock
from pbx_agent.engine import Decision, Engine
from pbx_agent.errors import PbxActionFailed
from pbx_agent.logging import configure_logging
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId
from tests.engine.builders import bridged_call_events, created


class RecordingExecutor:
    def __init__(self, fail_on: type | None = None, delay: float = 0.0) -> None:
        self.executed: list[cmd.PbxCommand] = []
        self.fail_on = fail_on
        self.delay = delay

    async def execute(self, command: cmd.PbxCommand, call: cm.Call) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_on is not None and isinstance(command, self.fail_on):
            raise PbxActionFailed("Hangup", "No such channel")
        self.executed.append(command)
        return "sent"


@dataclass
class Script:
    """A test policy: answers PartiesConnected with a prompt and a timer, the timer with a hangup."""

    name: str = "script"
    rule: str = "R0"
    delay: float = 2.5
    raise_on: type | None = None

    def start(self, call: cm.Call, now: float) -> Any:
        return {"events": []}

    def step(
        self, state: Any, event: cm.CallEvent, call: cm.Call, now: float
    ) -> tuple[Any, list[cmd.Command]]:
        if self.raise_on is not None and isinstance(event, self.raise_on):
            msg = "boom"
            raise RuntimeError(msg)
        state = {"events": [*state["events"], (type(event).__name__, now)]}
        if isinstance(event, cm.PartiesConnected):
            return state, [
                cmd.PlayPrompt(event.caller, "silent.prompt", reason="caller silent"),
                cmd.StartTimer("drop", now + self.delay),
            ]
        if isinstance(event, cm.TimerFired) and event.key == "drop":
            return state, [cmd.HangupCall(event.call, reason="caller still silent")]
        if isinstance(event, cm.SpeechStarted):
            return state, [cmd.CancelTimer("drop"), cmd.Note("silence_cancelled", "caller spoke")]
        return state, []


def make_engine(
    policy: Any = None, executor: Any = None, **kwargs: Any
) -> tuple[Engine, ManualClock, RecordingExecutor]:
    clock = ManualClock()
    executor = executor or RecordingExecutor()
    engine = Engine(clock=clock, policies=[policy or Script()], executor=executor, **kwargs)
    return engine, clock, executor


async def test_policy_commands_are_executed_in_order() -> None:
    """Commands a policy returns reach the adapter, one call's in the order issued."""
    engine, clock, executor = make_engine()
    for event in bridged_call_events():
        engine.handle(event)
    clock.advance(2.5)
    await engine.drain()
    assert [type(c) for c in executor.executed] == [cmd.PlayPrompt, cmd.HangupCall]


async def test_timer_fires_at_the_exact_instant() -> None:
    """A policy timer is delivered at the requested time on the injected clock, not before."""
    engine, clock, _ = make_engine()
    for event in bridged_call_events():
        engine.handle(event)
    start = clock.now()
    clock.advance(2.499)
    state = engine.policy_state(cm.CallId("c.1"), "script")
    assert ("TimerFired", start + 2.5) not in state["events"]
    clock.advance(0.001)
    state = engine.policy_state(cm.CallId("c.1"), "script")
    assert state["events"][-1] == ("TimerFired", start + 2.5)
    await engine.drain()


async def test_cancelled_timer_never_fires() -> None:
    """CancelTimer stops a pending timer."""
    engine, clock, executor = make_engine()
    for event in bridged_call_events():
        engine.handle(event)
    engine.handle(ev.TalkingStarted(LegId("c.1")))
    clock.advance(10)
    await engine.drain()
    assert [type(c) for c in executor.executed] == [cmd.PlayPrompt]


async def test_every_decision_is_logged_once_with_rule_and_reason() -> None:
    """Each command a policy returns is one `decision` log event naming call, rule, action, reason."""
    engine, clock, _ = make_engine()
    with capture_logs() as logs:
        for event in bridged_call_events():
            engine.handle(event)
        await engine.drain()
    decisions = [entry for entry in logs if entry["event"] == "decision"]
    assert decisions == [
        {
            "event": "decision",
            "log_level": "info",
            "call_id": "c.1",
            "rule": "R0",
            "policy": "script",
            "action": "play_prompt",
            "reason": "caller silent",
            "shadow": False,
            "leg": "c.1",
            "prompt": "silent.prompt",
            "audience": cmd.Audience.LEG,
            "answerable": False,
        }
    ]


async def test_command_for_an_ended_call_is_dropped_not_sent() -> None:
    """A command still queued when its call ends is logged as dropped and never reaches the PBX."""
    slow = RecordingExecutor(delay=0.05)
    engine, clock, executor = make_engine(executor=slow)
    for event in bridged_call_events():
        engine.handle(event)
    await asyncio.sleep(0.01)  # the PlayPrompt is now being sent
    clock.advance(2.5)  # queues HangupCall behind it
    engine.handle(ev.LegHungUp(LegId("c.2"), 16))
    engine.handle(ev.LegHungUp(LegId("c.1"), 16))
    with capture_logs() as logs:
        await engine.drain()
    assert [type(c) for c in executor.executed] == [cmd.PlayPrompt]
    dropped = [entry for entry in logs if entry["event"] == "command_dropped"]
    assert dropped[0]["action"] == "hangup_call"
    assert dropped[0]["reason"] == "the call has ended"


async def test_command_for_a_hung_up_leg_is_dropped() -> None:
    """A prompt for a leg that has gone is not sent even though the call goes on."""
    slow = RecordingExecutor(delay=0.05)
    engine, _, executor = make_engine(executor=slow)
    for event in bridged_call_events()[:-1]:
        engine.handle(event)
    engine.handle(ev.LegJoinedBridge(LegId("c.1"), "b1"))
    engine.handle(ev.LegHungUp(LegId("c.1"), 16))
    with capture_logs() as logs:
        await engine.drain()
    assert executor.executed == []
    assert any(
        e["event"] == "command_dropped" and e["reason"] == "the leg has hung up" for e in logs
    )


async def test_a_failing_command_is_logged_and_the_queue_goes_on() -> None:
    """A PBX error on one command is logged; later commands of the call still run."""
    executor = RecordingExecutor(fail_on=cmd.PlayPrompt)
    engine, clock, _ = make_engine(executor=executor)
    with capture_logs() as logs:
        for event in bridged_call_events():
            engine.handle(event)
        await engine.drain()
        clock.advance(2.5)
        await engine.drain()
    assert [type(c) for c in executor.executed] == [cmd.HangupCall]
    failed = [e for e in logs if e["event"] == "command_failed"]
    assert failed[0]["action"] == "play_prompt"
    assert "No such channel" in failed[0]["error"]


async def test_a_raising_policy_is_retired_for_that_call_only() -> None:
    """A policy bug is logged and that policy stops for the call; the engine keeps serving."""
    engine, clock, executor = make_engine(policy=Script(raise_on=cm.PartiesConnected))
    with capture_logs() as logs:
        for event in bridged_call_events():
            engine.handle(event)
        for event in bridged_call_events("x.1", "x.2", "x.1"):
            engine.handle(event)
    assert any(e["event"] == "policy_failed" and e["policy"] == "script" for e in logs)
    assert engine.policy_state(cm.CallId("c.1"), "script") is None
    await engine.drain()
    assert executor.executed == []


async def test_decision_listeners_see_number_and_agent() -> None:
    """Listeners (metrics, store) receive each decision with the caller's number and agent."""
    engine, _, _ = make_engine()
    seen: list[Decision] = []
    engine.on_decision(seen.append)
    for event in bridged_call_events():
        engine.handle(event)
    await engine.drain()
    assert [(d.action, d.number, d.agent) for d in seen] == [
        ("play_prompt", "79161234567", "agent-1001")
    ]


@dataclass
class RecordsFacts:
    """A rule recording, for each call event of a kind in ``kinds``, the fact so named."""

    kinds: dict[type, str]
    name: str = "facts"
    rule: str = "R8"

    def start(self, call: cm.Call, now: float) -> Any:
        return 0

    def step(
        self, state: Any, event: cm.CallEvent, call: cm.Call, now: float
    ) -> tuple[Any, list[cmd.Command]]:
        kind = self.kinds.get(type(event))
        if kind is None:
            return state, []
        return state, [cmd.RecordFact(kind, {"call_id": event.call})]


async def test_service_commands_reach_their_service() -> None:
    """RecordFact and friends go to the service registered for their type."""

    engine, _, _ = make_engine(policy=RecordsFacts({cm.CallEnded: "call"}))
    got: list[tuple[cmd.RecordFact, str | None]] = []

    async def store(command: cmd.RecordFact, call: cm.Call | None) -> None:
        got.append((command, call.id if call else None))

    engine.register_service(cmd.RecordFact, store)
    for event in bridged_call_events():
        engine.handle(event)
    engine.handle(ev.LegHungUp(LegId("c.1"), 16))
    engine.handle(ev.LegHungUp(LegId("c.2"), 16))
    await engine.drain()
    assert got == [(cmd.RecordFact("call", {"call_id": "c.1"}), "c.1")]


async def test_a_calls_service_commands_take_effect_in_the_order_issued() -> None:
    """The cancellation a call's connection issues and the callback its drop requests are
    store writes in tasks of their own: the second waits for the first (else a slow
    cancellation cancels the callback the drop has just requested). Another call's
    service commands do not wait for them."""

    engine, _, _ = make_engine(
        policy=RecordsFacts({cm.PartiesConnected: "connected", cm.CallEnded: "ended"})
    )
    done: list[tuple[str, str]] = []
    release = asyncio.Event()

    async def store(command: cmd.RecordFact, call: cm.Call | None) -> None:
        if command.kind == "connected" and command.fields["call_id"] == "c.1":
            await release.wait()  # a slow write
        done.append((command.kind, str(command.fields["call_id"])))

    engine.register_service(cmd.RecordFact, store)
    for event in bridged_call_events():
        engine.handle(event)
    engine.handle(ev.LegHungUp(LegId("c.1"), 38))
    engine.handle(ev.LegHungUp(LegId("c.2"), 16))
    for event in bridged_call_events("d.1", "d.2", "d.1"):
        engine.handle(event)
    for _ in range(20):
        await asyncio.sleep(0)
    assert done == [("connected", "d.1")]
    release.set()
    await engine.drain()
    assert done == [("connected", "d.1"), ("connected", "c.1"), ("ended", "c.1")]
    assert engine._service_tails == {}


async def test_standards_are_resolved_for_the_calls_queue() -> None:
    """The call's standards are re-resolved once its queue is known."""
    asked: list[tuple[str | None, str | None]] = []

    def resolve(queue: str | None, dialed: str | None) -> str:
        asked.append((queue, dialed))
        return f"standards for {queue}"

    engine, _, _ = make_engine(standards=resolve)
    for event in bridged_call_events():
        engine.handle(event)
    engine.handle(ev.AgentConnected(LegId("c.1"), LegId("c.2"), "Alice", "vip"))
    call = engine.model.calls[cm.CallId("c.1")]
    assert call.standards == "standards for vip"
    assert asked[0] == (None, "100")
    await engine.drain()


@pytest.mark.parametrize("shadow", [True, False])
async def test_decisions_say_whether_the_daemon_is_in_shadow_mode(shadow: bool) -> None:
    """In shadow mode every decision is logged exactly the same, flagged shadow."""
    engine, _, _ = make_engine(shadow=shadow)
    with capture_logs() as logs:
        for event in bridged_call_events():
            engine.handle(event)
        await engine.drain()
    assert [e["shadow"] for e in logs if e["event"] == "decision"] == [shadow]


# -- failures never go unseen, logging never stops a decision ---------------------------------

CALLER_TEXT = "Иван\r\nevent: forged\u202e" + b"\xff".decode("utf-8", "surrogateescape")
CALLER_TEXT_SHOWN = "Иван\\r\\nevent: forged\\u202e\\xff"


@dataclass
class Alerter:
    """A test policy: alerts the agent with the caller's name as soon as the parties connect."""

    name: str = "alerter"
    rule: str = "R1"

    def start(self, call: cm.Call, now: float) -> Any:
        return 0

    def step(
        self, state: Any, event: cm.CallEvent, call: cm.Call, now: float
    ) -> tuple[Any, list[cmd.Command]]:
        if isinstance(event, cm.PartiesConnected):
            alert = cmd.AlertAgent(event.agent, "hold_limit", fields=(("name", CALLER_TEXT),))
            return state, [alert]
        return state, []


@pytest.fixture
def restore_logging() -> Any:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


async def test_a_decision_is_executed_when_the_log_stream_is_strict_utf8(
    restore_logging: None,
) -> None:
    """A raw caller byte in a decision's fields is logged escaped; the alert is still sent."""
    raw = io.BytesIO()
    configure_logging("json", stream=io.TextIOWrapper(raw, encoding="utf-8", write_through=True))
    engine, _, executor = make_engine(policy=Alerter())
    for event in bridged_call_events():
        engine.handle(event)
    await engine.drain()
    assert [type(c) for c in executor.executed] == [cmd.AlertAgent]
    lines = [json.loads(line) for line in raw.getvalue().decode("utf-8").splitlines()]
    [decision] = [line for line in lines if line["event"] == "decision"]
    assert decision["fields"] == {"name": CALLER_TEXT_SHOWN}


async def test_a_decision_is_executed_when_the_logger_raises(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A logger that fails (a closed stdout) loses its line, reported on stderr; the alert is sent."""

    def closed_stdout(_logger: Any, _name: str, _event: Any) -> Any:
        msg = "I/O operation on closed file"
        raise ValueError(msg)

    structlog.configure(processors=[closed_stdout])
    engine, _, executor = make_engine(policy=Alerter())
    for event in bridged_call_events():
        engine.handle(event)
    await engine.drain()
    assert [type(c) for c in executor.executed] == [cmd.AlertAgent]
    lost = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert {"event": "log_failed", "lost_event": "decision"} in [
        {"event": e["event"], "lost_event": e["lost_event"]} for e in lost
    ]


def test_decision_fields_reach_the_listeners_escaped() -> None:
    """Listeners (the store) get the caller's text inside a command's fields escaped too."""
    engine, _, _ = make_engine(policy=Alerter())
    seen: list[Decision] = []
    engine.on_decision(seen.append)
    engine.record_decision(
        cmd.AlertAgent(LegId("c.2"), "hold_limit", fields=(("name", CALLER_TEXT),)),
        call=None,
        rule="R1",
        policy="alerter",
    )
    assert seen[0].fields["fields"] == {"name": CALLER_TEXT_SHOWN}


async def test_a_failing_engine_task_is_logged_with_its_traceback() -> None:
    """An exception escaping one of the engine's tasks is `task_failed` with the exception."""
    engine, _, _ = make_engine()

    async def broken() -> None:
        msg = "no such key"
        raise KeyError(msg)

    with capture_logs() as logs:
        engine._spawn(broken(), "broken")
        await engine.drain()
    [failed] = [e for e in logs if e["event"] == "task_failed"]
    assert failed["task"] == "broken"
    assert isinstance(failed["exc_info"], KeyError)


async def test_a_service_bug_is_logged_with_its_traceback() -> None:
    """A service raising something not the project's own is `command_failed` with its traceback."""

    async def broken_store(command: cmd.RecordFact, call: cm.Call | None) -> None:
        msg = "call_id"
        raise KeyError(msg)

    engine, _, _ = make_engine(policy=RecordsFacts({cm.PartiesConnected: "call"}))
    engine.register_service(cmd.RecordFact, broken_store)
    with capture_logs() as logs:
        for event in bridged_call_events():
            engine.handle(event)
        await engine.drain()
    [failed] = [e for e in logs if e["event"] == "command_failed"]
    assert (failed["action"], failed["exc_info"]) == ("record_fact", True)


async def test_a_call_absorbed_by_a_transfer_leaves_no_state_behind() -> None:
    """A transfer target placed as its own PBX call is merged into the caller's call
    without a CallEnded of its own: its rules' state and last view stayed in the engine
    for ever, one per transfer."""
    engine, clock, _ = make_engine()
    for n in range(3):
        engine.handle(created(f"c{n}.1", f"c{n}.1"))
        engine.handle(
            created(
                f"c{n}.2",
                f"c{n}.1",
                endpoint="PJSIP/agent-1001",
                number="100",
                direction=Direction.OUTBOUND,
            )
        )
        for leg in (f"c{n}.2", f"c{n}.1"):
            engine.handle(ev.LegAnswered(LegId(leg)))
            engine.handle(ev.LegJoinedBridge(LegId(leg), f"b{n}"))
        engine.handle(ev.LegLeftBridge(LegId(f"c{n}.2"), f"b{n}"))
        engine.handle(ev.LegHungUp(LegId(f"c{n}.2"), 16))
        engine.handle(
            created(
                f"d{n}.1",
                f"d{n}.1",
                endpoint="PJSIP/agent-1002",
                number="101",
                direction=Direction.OUTBOUND,
            )
        )
        engine.handle(ev.LegJoinedBridge(LegId(f"d{n}.1"), f"b{n}"))
        assert CallId(f"d{n}.1") not in engine._calls
        engine.handle(ev.LegHungUp(LegId(f"d{n}.1"), 16))
        engine.handle(ev.LegHungUp(LegId(f"c{n}.1"), 16))
    clock.advance(3600)
    await engine.drain()
    assert engine.live_calls == 0
    assert engine._calls == {}
    assert engine._last_view == {}

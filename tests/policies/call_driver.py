"""A synchronous stand-in for the engine, for policy tests with no event loop.

Neutral events go through the real ``CallModel``; the policy is stepped with the call events
exactly as the engine would; its timers fire at their exact instants when the driver's time
moves on. Every other command is kept with the time it was issued, so a test can assert both
what a policy asked for and when.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pbx_agent.config.settings import resolve_standards
from pbx_agent.config.standards import Standards
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId
from pbx_agent.policies.base import Policy
from tests.engine.builders import created

C = TypeVar("C")

T0 = 1_795_339_200.0
CALLER = LegId("c.1")
AGENT = LegId("c.2")
CALL = CallId("c.1")


def standards(profile: str = "ru", **overrides: Any) -> Standards:
    company = "МТС" if profile == "ru" else "中国移动"
    return resolve_standards(profile, company, overrides)


@dataclass
class Issued:
    at: float
    command: cmd.Command


@dataclass
class CallDriver:
    policy: Policy
    standards: Standards | None = field(default_factory=standards)
    now: float = T0
    model: cm.CallModel = field(default_factory=cm.CallModel)
    state: Any = None
    started: bool = False
    timers: dict[str, float] = field(default_factory=dict)
    issued: list[Issued] = field(default_factory=list)
    call: cm.Call | None = None

    # -- time -------------------------------------------------------------------------------

    def run_until(self, at: float) -> None:
        """Move time to ``at``, firing due timers in order at their own instants."""
        while self.timers:
            key, when = min(self.timers.items(), key=lambda item: item[1])
            if when > at:
                break
            del self.timers[key]
            self.now = max(self.now, when)
            self._step(cm.TimerFired(CALL, key))
        self.now = max(self.now, at)

    def after(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def until_prompt(self, limit_s: float = 60.0) -> float:
        """Fire timers one by one until the policy issues another prompt; its time."""
        count = len(self.prompts())
        end = self.now + limit_s
        while len(self.prompts()) == count:
            due = [when for when in self.timers.values() if when <= end]
            assert due, "no timer left that could issue a prompt"
            self.run_until(min(due))
        return self.prompts()[-1][0]

    # -- input ------------------------------------------------------------------------------

    def handle(self, event: ev.PbxEvent, *, at: float | None = None) -> None:
        if at is not None:
            self.run_until(at)
        for call_event in self.model.apply(event, self.now):
            call = self.model.calls.get(call_event.call) or self.call
            if isinstance(call_event, cm.CallStarted) and call is not None:
                call.standards = self.standards
                self.call = call
                self.state = self.policy.start(call, self.now)
                self.started = self.state is not None
                continue
            if self.started:
                self._step(call_event)

    def handle_all(self, events: Iterable[ev.PbxEvent]) -> None:
        for event in events:
            self.handle(event)

    def _step(self, event: cm.CallEvent) -> None:
        assert self.call is not None
        self.state, commands = self.policy.step(self.state, event, self.call, self.now)
        for command in commands:
            if isinstance(command, cmd.StartTimer):
                self.timers[command.key] = command.at
            elif isinstance(command, cmd.CancelTimer):
                self.timers.pop(command.key, None)
            else:
                self.issued.append(Issued(self.now, command))

    # -- the call, as a script ----------------------------------------------------------------

    def connect(self, *, at: float | None = None) -> None:
        """The caller dials in and is bridged with an agent (trace 02b, neutral form)."""
        if at is not None:
            self.run_until(at)
        self.handle_all(
            [
                created(CALLER, CALL),
                created(
                    AGENT,
                    CALL,
                    endpoint="PJSIP/agent-1001",
                    number="100",
                    name="",
                    direction=Direction.OUTBOUND,
                ),
                ev.LegAnswered(AGENT),
                ev.LegAnswered(CALLER),
                ev.LegJoinedBridge(AGENT, "b1"),
                ev.LegJoinedBridge(CALLER, "b1"),
            ]
        )

    def speech(self, leg: LegId, start: float, end: float, *, report_delay_s: float = 0.3) -> None:
        """``leg`` speaks from ``start`` to ``end`` (epoch seconds), reported like Asterisk:
        the start ~20 ms late, the end ``report_delay_s`` (the TALK_DETECT threshold) late,
        with the speech's own length as ``speech_ms``."""
        self.handle(ev.TalkingStarted(leg), at=start + 0.02)
        self.handle(
            ev.TalkingStopped(leg, round(report_delay_s * 1000), round((end - start) * 1000)),
            at=end + report_delay_s,
        )

    def lose_link(self, *, at: float) -> None:
        """The daemon's link to the switch drops (AMI or Event Socket): nothing is heard."""
        self.handle(ev.PbxConnectionChanged("asterisk", connected=False, reason="test"), at=at)

    def restore_link(self, *, at: float, bridges: Mapping[LegId, str | None] | None = None) -> None:
        """The link is back: the switch lists every leg the model knows alive, answered, in
        the bridge ``bridges`` gives it or else in the one it was in (what happened on the
        switch meanwhile)."""
        moved = bridges or {}
        listing = tuple(
            ev.LiveLeg(
                ev.LegCreated(
                    leg.id,
                    leg.call,
                    leg.channel,
                    leg.endpoint,
                    leg.caller_number,
                    leg.caller_name,
                    leg.dialed,
                    leg.direction,
                    origin=leg.origin,
                ),
                answered=True,
                bridge=moved.get(leg.id, leg.bridge),
            )
            for leg in self.model.legs.values()
            if leg.alive
        )
        self.handle(ev.PbxResynced("asterisk", listing), at=at)

    def prompt_finished(self, prompt: str, *, after_s: float, ok: bool = True) -> None:
        """The prompt issued last ends ``after_s`` after it was issued."""
        issued = [i for i in self.issued if isinstance(i.command, cmd.PlayPrompt)]
        assert issued, "no prompt was issued"
        last = issued[-1]
        assert isinstance(last.command, cmd.PlayPrompt)
        assert last.command.prompt == prompt, f"the last prompt is {last.command.prompt}"
        at = last.at + after_s
        assert at >= self.now, f"the prompt would end {self.now - at:.3f} s in the past"
        self.handle(ev.PromptFinished(last.command.leg, prompt, ok), at=at)

    # -- what came out ------------------------------------------------------------------------

    def of_type(self, kind: type[C]) -> list[tuple[float, C]]:
        return [(i.at, i.command) for i in self.issued if isinstance(i.command, kind)]

    def prompts(self) -> list[tuple[float, str]]:
        return [(at, c.prompt) for at, c in self.of_type(cmd.PlayPrompt)]

    def notes(self, action: str) -> list[cmd.Note]:
        return [c for _, c in self.of_type(cmd.Note) if c.action == action]

    def actions(self) -> list[str]:
        return [cmd.action_name(i.command) for i in self.issued]

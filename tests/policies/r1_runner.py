"""Drive one policy through the real call model with explicit times and no event loop.

``R1Runner.at(t, event)`` applies a neutral PBX event at ``T0 + t`` (firing any policy timer
due before it first, as the engine would), steps the policy with every call event the model
produces and returns the commands the policy issued for that event. ``advance(t)`` fires the
timers due up to ``T0 + t``. Timers and their replacement/cancellation follow the engine's
rules (``StartTimer`` with a pending key replaces it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pbx_agent.config.settings import resolve_standards
from pbx_agent.config.standards import Standards
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId
from tests.engine.builders import created

T0 = 1_795_339_200.0
CALL = CallId("c.1")
CALLER = LegId("c.1")
AGENT = LegId("c.2")


@dataclass
class R1Runner:
    policy: Any
    profile: str = "ru"
    overrides: Sequence[Mapping[str, Any]] = ()
    tiers: Mapping[str, str] = field(default_factory=dict)
    standards: Standards | None = None
    now: float = T0
    use_standards: bool = True

    def __post_init__(self) -> None:
        self.model = cm.CallModel(
            cm.RoleRules(agent_endpoint_patterns=("PJSIP/agent-*",), tiers=dict(self.tiers))
        )
        if self.use_standards and self.standards is None:
            self.standards = resolve_standards(self.profile, "", *self.overrides)
        self.states: dict[CallId, Any] = {}
        self.timers: dict[tuple[CallId, str], float] = {}
        self.issued: list[tuple[float, cmd.Command]] = []
        self.last_call: dict[CallId, cm.Call] = {}

    # -- time -------------------------------------------------------------------------------

    def advance(self, t: float) -> list[cmd.Command]:
        """Fire every timer due at or before ``T0 + t``, in time order; move the clock there."""
        target = T0 + t
        out: list[cmd.Command] = []
        while True:
            due = sorted((at, key) for key, at in self.timers.items() if at <= target)
            if not due:
                break
            at, (call_id, key) = due[0]
            del self.timers[(call_id, key)]
            self.now = max(self.now, at)
            call = self.model.calls.get(call_id)
            if call is None or call_id not in self.states:
                continue
            out.extend(self._step(call, cm.TimerFired(call_id, key)))
        self.now = max(self.now, target)
        return out

    def at(self, t: float, event: ev.PbxEvent) -> list[cmd.Command]:
        """Apply ``event`` at ``T0 + t``; return what the policy issued for it (and timers
        that fell due before it)."""
        out = self.advance(t)
        for call_event in self.model.apply(event, self.now):
            call = self.model.calls.get(call_event.call) or self.last_call.get(call_event.call)
            if call is None:
                continue
            if isinstance(call_event, cm.CallStarted):
                call.standards = self.standards
                self.last_call[call.id] = call
                state = self.policy.start(call, self.now)
                if state is None:
                    continue
                self.states[call.id] = state
            if call.id not in self.states:
                continue
            out.extend(self._step(call, call_event))
            if isinstance(call_event, cm.CallEnded):
                del self.states[call.id]
                for key in [k for k in self.timers if k[0] == call.id]:
                    del self.timers[key]
        return out

    def _step(self, call: cm.Call, event: cm.CallEvent) -> list[cmd.Command]:
        state, commands = self.policy.step(self.states[call.id], event, call, self.now)
        self.states[call.id] = state
        out: list[cmd.Command] = []
        for command in commands:
            if isinstance(command, cmd.StartTimer):
                self.timers[(call.id, command.key)] = command.at
            elif isinstance(command, cmd.CancelTimer):
                self.timers.pop((call.id, command.key), None)
            self.issued.append((self.now, command))
            out.append(command)
        return out

    # -- scripted calls -----------------------------------------------------------------------

    def connect(
        self, t: float = 0.0, *, number: str = "79161234567", agent: str = "agent-1001"
    ) -> None:
        """The customer dials in and an agent is bridged with them (trace 02b, neutral form)."""
        self.at(t, created(str(CALLER), str(CALL), number=number))
        self.at(
            t,
            created(
                str(AGENT),
                str(CALL),
                endpoint=f"PJSIP/{agent}",
                number="100",
                name="",
                direction=Direction.OUTBOUND,
            ),
        )
        self.at(t, ev.LegAnswered(AGENT))
        self.at(t, ev.LegAnswered(CALLER))
        self.at(t, ev.LegJoinedBridge(AGENT, "b1"))
        self.at(t, ev.LegJoinedBridge(CALLER, "b1"))

    def agent_holds(self, t: float) -> list[cmd.Command]:
        """The agent's phone puts the customer on hold (trace 04c: Hold on the presser, music
        on the held leg in the same millisecond)."""
        out = self.at(t, ev.HoldPressed(AGENT))
        out += self.at(t, ev.MusicOnHoldStarted(CALLER, "default"))
        return out

    def agent_resumes(self, t: float) -> list[cmd.Command]:
        out = self.at(t, ev.HoldReleased(AGENT))
        out += self.at(t, ev.MusicOnHoldStopped(CALLER))
        return out

    def call(self) -> cm.Call:
        return self.model.calls.get(CALL) or self.last_call[CALL]


def of(commands: Sequence[cmd.Command], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]


def pbx_and_service(commands: Sequence[cmd.Command]) -> list[cmd.Command]:
    """The commands that reach the PBX or a service (no timers, no notes)."""
    return [c for c in commands if not isinstance(c, cmd.StartTimer | cmd.CancelTimer | cmd.Note)]

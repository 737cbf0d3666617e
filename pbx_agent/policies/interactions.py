"""The facts night routing and the manager's figures are built from: one ``interaction`` per
agent-handled part of a customer's call (R5), one ``call`` record per call (R8).

Theory of operation
-------------------
``InteractionHistory`` follows the *agent's part* of a call: it begins when the caller and
an agent are connected (``PartiesConnected``) and ends at the first of: the two are
separated, either hangs up, another agent is connected instead (a transfer), the call
ends. Each part that ends is one ``RecordFact("interaction", ...)``; a transfer makes two
interactions, one per agent. A caller separated from an agent and then re-joined with the
same agent makes no second interaction (the call model reports no new connection for it):
the first ended at the separation. Transitions::

    event                             state         commands / next state
    --------------------------------  ------------  -----------------------------------------
    PartiesConnected(agent A)         no part       part(A, started now)
    PartiesConnected(agent A)         part(A)       -
    PartiesConnected(agent B)         part(A)       RecordFact(interaction A); part(B)
    PartiesSeparated(A)               part(A)       RecordFact(interaction A); no part
    LegEnded(caller or A)             part(A)       RecordFact(interaction A, ended then); -
    CallEnded                         part(A)       RecordFact(interaction A); no part

Only a customer's own inbound call counts: a callback the daemon placed (origin
``callback``) is not the customer asking again, so it makes no interaction. The fact
carries the caller's number as received (the facts sink normalises it), the call id, the
part's start and end (epoch seconds), the agent's id, the queue and the call's topic at
the end of the part. The topic is the call's ``topic``: the value of the configured topic
channel variable (``agents.topic_variable``), set by the dialplan or by the agent's
desktop (AMI ``Setvar`` on either party's channel) before the part ends.

``CallFacts`` writes one ``RecordFact("call", ...)`` when a customer call ends (a call with
no customer leg, agent to agent, writes none: it is no service): when it started
and ended, the caller's number, the last agent and queue, whether the customer was put on
hold, and how it ended (``end_reason``): ``abandoned`` (the caller hung up before any
agent), ``not_connected`` (it ended otherwise before any agent, or it was a callback attempt
that never reached an agent: the customer hung up on nobody), else by the first party
leg to end: ``media_timeout`` (its media died), ``caller_hangup``, ``agent_hangup`` or
``other_hangup``. A call gone while the daemon's link to the PBX was down is ``link_lost``
when an agent had taken it, else ``unknown`` (it may have been answered meanwhile): nobody
is said to have hung up first, and nobody to have abandoned it.

Invariants: pure (no I/O, no clock, no logging); at most one open part per call; every
part that began is recorded exactly once; exactly one call fact per customer call that ends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model.events import Direction, LegId, Role

if TYPE_CHECKING:
    from pbx_agent.config import Config
    from pbx_agent.policies.base import Step


# ------------------------------------------------------------------------------ interactions


@dataclass(frozen=True, slots=True)
class AgentPart:
    """The part of the call an agent is handling."""

    caller_leg: LegId
    agent_leg: LegId
    started_at: float


@dataclass(frozen=True, slots=True)
class InteractionState:
    part: AgentPart | None = None
    recorded: int = 0  # interactions recorded for this call so far


class InteractionHistory:
    """Records every agent-handled interaction of a customer's inbound call."""

    name = "interactions"
    rule = "R5"

    def start(self, call: cm.Call, now: float) -> InteractionState:  # noqa: ARG002
        return InteractionState()

    def step(self, state: InteractionState, event: cm.CallEvent, call: cm.Call, now: float) -> Step:
        part = state.part
        match event:
            case cm.PartiesConnected(caller=caller, agent=agent):
                return self._connected(state, caller, agent, call, now)
            case cm.PartiesSeparated(agent=agent) if part is not None and part.agent_leg == agent:
                return self._close(state, part, call, now)
            case cm.LegEnded(end=end) if part is not None and end.leg in (
                part.agent_leg,
                part.caller_leg,
            ):
                return self._close(state, part, call, end.ended_at)
            case cm.CallEnded(ended_at=ended_at) if part is not None:
                return self._close(state, part, call, ended_at)
        return state, []

    def _connected(
        self, state: InteractionState, caller: LegId, agent: LegId, call: cm.Call, now: float
    ) -> Step:
        part = state.part
        if part is not None and part.agent_leg == agent:
            return state, []
        # A new agent (a transfer) ends the previous agent's part.
        commands = [] if part is None else [_interaction(part, call, now)]
        recorded = state.recorded + len(commands)
        if not _customer_inbound(call, caller):
            return InteractionState(None, recorded), commands
        return InteractionState(AgentPart(caller, agent, now), recorded), commands

    def _close(
        self, state: InteractionState, part: AgentPart, call: cm.Call, ended_at: float
    ) -> Step:
        return replace(state, part=None, recorded=state.recorded + 1), [
            _interaction(part, call, ended_at)
        ]


def _customer_inbound(call: cm.Call, caller: LegId) -> bool:
    leg = call.legs.get(caller)
    return leg is not None and leg.direction is Direction.INBOUND and leg.origin is None


def _interaction(part: AgentPart, call: cm.Call, ended_at: float) -> cmd.RecordFact:
    agent_leg = call.legs.get(part.agent_leg)
    caller_leg = call.legs.get(part.caller_leg)
    queue = (agent_leg.queue if agent_leg is not None else None) or call.queue
    return cmd.RecordFact(
        "interaction",
        {
            "number": caller_leg.caller_number if caller_leg is not None else "",
            "call_id": str(call.id),
            "started_at": part.started_at,
            "ended_at": max(ended_at, part.started_at),
            "agent": agent_leg.agent if agent_leg is not None else None,
            "agent_leg": str(part.agent_leg),
            "queue": queue,
            "topic": call.topic or None,
        },
    )


# ------------------------------------------------------------------------------ calls


@dataclass(frozen=True, slots=True)
class CallFactsState:
    connected_at: float | None = None
    had_hold: bool = False


class CallFacts:
    """Records one ``call`` fact per customer call, when it ends."""

    name = "call_facts"
    rule = "R8"

    def start(self, call: cm.Call, now: float) -> CallFactsState:  # noqa: ARG002
        return CallFactsState()

    def step(
        self,
        state: CallFactsState,
        event: cm.CallEvent,
        call: cm.Call,
        now: float,
    ) -> Step:
        match event:
            case cm.PartiesConnected() if state.connected_at is None:
                return replace(state, connected_at=now), []
            case cm.HoldStarted(held=held) if held == call.caller and not state.had_hold:
                return replace(state, had_hold=True), []
            case cm.CallEnded(legs=legs, ended_at=ended_at) if call.caller is not None:
                return state, [_call_fact(state, call, legs, ended_at)]
        return state, []


def _call_fact(
    state: CallFactsState, call: cm.Call, legs: tuple[cm.LegEnd, ...], ended_at: float
) -> cmd.RecordFact:
    caller = call.caller_leg
    agent = call.agent_leg
    return cmd.RecordFact(
        "call",
        {
            "call_id": str(call.id),
            "started_at": call.started_at,
            "ended_at": ended_at,
            "caller_number": call.caller_number,
            "agent": agent.agent if agent is not None else None,
            "queue": call.queue or (agent.queue if agent is not None else None),
            "had_hold": state.had_hold,
            "connected_at": state.connected_at,
            "origin": caller.origin if caller is not None else None,
            "end_reason": end_reason(
                legs,
                connected=state.connected_at is not None,
                callback=caller is not None and caller.origin == "callback",
            ),
        },
    )


def end_reason(  # noqa: PLR0911 (one return per end reason)
    legs: tuple[cm.LegEnd, ...], *, connected: bool, callback: bool = False
) -> str:
    """How a call ended, from the legs in the order they ended (see the module docstring)."""
    first = next((leg for leg in legs if leg.role is not Role.HELPER), None)
    if first is not None and not first.seen:
        # Gone while the link was down: who hung up, and whether an agent took a call still
        # waiting then, are unknown.
        return "link_lost" if connected else "unknown"
    if not connected:
        abandoned = not callback and first is not None and first.role is Role.CALLER
        return "abandoned" if abandoned else "not_connected"
    if first is None:
        return "other_hangup"
    if first.media_timeout:
        return "media_timeout"
    if first.role is Role.CALLER:
        return "caller_hangup"
    if first.role is Role.AGENT:
        return "agent_hangup"
    return "other_hangup"


# ------------------------------------------------------------------------------ factories


def interactions_policy(config: Config) -> InteractionHistory:  # noqa: ARG001
    """The composition root's factory: interactions are always recorded (night routing and
    the figures read them even where the night rule is off)."""
    return InteractionHistory()


def call_facts_policy(config: Config) -> CallFacts:  # noqa: ARG001
    return CallFacts()

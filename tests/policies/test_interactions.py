"""Interaction history (R5) and call records (R8): the facts the policies ask to persist."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId
from pbx_agent.policies.base import Policy
from pbx_agent.policies.interactions import CallFacts, InteractionHistory, end_reason
from tests.engine.builders import created

T0 = 1_795_339_200.0
CALLER = LegId("c.1")
AGENT = LegId("c.2")
AGENT_B = LegId("c.3")


@dataclass
class Driver:
    """Steps one policy through the real call model, with no event loop."""

    policy: Policy
    now: float = T0
    model: cm.CallModel = field(default_factory=cm.CallModel)
    states: dict[CallId, Any] = field(default_factory=dict)
    calls: dict[CallId, cm.Call] = field(default_factory=dict)
    commands: list[tuple[float, cmd.Command]] = field(default_factory=list)

    def feed(self, *events: ev.PbxEvent, at: float | None = None) -> None:
        if at is not None:
            self.now = at
        for event in events:
            for call_event in self.model.apply(event, self.now):
                call = self.model.calls.get(call_event.call) or self.calls[call_event.call]
                if isinstance(call_event, cm.CallStarted):
                    self.calls[call.id] = call
                    self.states[call.id] = self.policy.start(call, self.now)
                state, issued = self.policy.step(self.states[call.id], call_event, call, self.now)
                self.states[call.id] = state
                self.commands.extend((self.now, c) for c in issued)

    def facts(self, kind: str) -> list[dict[str, Any]]:
        return [
            dict(c.fields)
            for _, c in self.commands
            if isinstance(c, cmd.RecordFact) and c.kind == kind
        ]


def agent_leg(leg: LegId, call: str = "c.1", endpoint: str = "PJSIP/agent-1001") -> ev.LegCreated:
    return created(
        leg, call, endpoint=endpoint, number="100", name="", direction=Direction.OUTBOUND
    )


def connected_call(d: Driver, *, number: str = "89161234567", origin: str | None = None) -> None:
    """The caller dials in at T0; the queue connects agent-1001 at T0 + 20."""
    direction = Direction.OUTBOUND if origin else Direction.INBOUND
    d.feed(created(CALLER, "c.1", number=number, direction=direction, origin=origin), at=T0)
    d.feed(
        agent_leg(AGENT),
        ev.LegAnswered(AGENT),
        ev.LegJoinedBridge(AGENT, "b1"),
        ev.LegJoinedBridge(CALLER, "b1"),
        ev.AgentConnected(CALLER, AGENT, "alice", "support"),
        at=T0 + 20,
    )


def hang_up(d: Driver, *legs: LegId, at: float) -> None:
    d.feed(*(ev.LegHungUp(leg, 16, "Normal Clearing") for leg in legs), at=at)


# ------------------------------------------------------------------------------ interactions


def test_an_agent_handled_call_is_one_interaction_from_connect_to_hang_up() -> None:
    """The interaction starts when the parties are connected and ends when the caller leaves."""
    d = Driver(InteractionHistory())
    connected_call(d)
    hang_up(d, CALLER, AGENT, at=T0 + 200)
    assert d.facts("interaction") == [
        {
            "number": "89161234567",
            "call_id": "c.1",
            "started_at": T0 + 20,
            "ended_at": T0 + 200,
            "agent": "alice",
            "agent_leg": "c.2",
            "queue": "support",
            "topic": None,
        }
    ]


def test_the_interaction_is_recorded_when_the_agent_part_ends_not_at_call_end() -> None:
    """The agent hanging up ends the interaction even though the caller is still there."""
    d = Driver(InteractionHistory())
    connected_call(d)
    hang_up(d, AGENT, at=T0 + 90)
    assert [f["ended_at"] for f in d.facts("interaction")] == [T0 + 90]


def test_the_topic_variable_is_recorded_with_the_interaction() -> None:
    """PBXAGENT_TOPIC set on the agent's channel during the call becomes the topic."""
    d = Driver(InteractionHistory())
    connected_call(d)
    d.feed(ev.LegVariable(AGENT, "PBXAGENT_TOPIC", "tariff"), at=T0 + 60)
    hang_up(d, CALLER, AGENT, at=T0 + 100)
    assert d.facts("interaction")[0]["topic"] == "tariff"


def test_a_transfer_makes_one_interaction_per_agent() -> None:
    """Agent A leaves, agent B is connected: two interactions with their own agents and times."""
    d = Driver(InteractionHistory())
    connected_call(d)
    d.feed(ev.LegLeftBridge(AGENT, "b1"), ev.LegHungUp(AGENT, 16), at=T0 + 60)
    d.feed(
        agent_leg(AGENT_B, endpoint="PJSIP/agent-1002"),
        ev.LegJoinedBridge(AGENT_B, "b1"),
        ev.AgentConnected(CALLER, AGENT_B, "bob", "seniors"),
        at=T0 + 70,
    )
    hang_up(d, CALLER, AGENT_B, at=T0 + 130)
    facts = d.facts("interaction")
    assert [(f["agent"], f["started_at"], f["ended_at"]) for f in facts] == [
        ("alice", T0 + 20, T0 + 60),
        ("bob", T0 + 70, T0 + 130),
    ]
    assert facts[1]["queue"] == "seniors"


def test_a_call_no_agent_answered_is_no_interaction() -> None:
    """A caller who hangs up in the queue was not handled by an agent."""
    d = Driver(InteractionHistory())
    d.feed(created(CALLER, "c.1"), at=T0)
    hang_up(d, CALLER, at=T0 + 30)
    assert d.facts("interaction") == []


def test_a_callback_the_daemon_placed_is_no_interaction() -> None:
    """Our own callback is not the customer asking again: it is not counted."""
    d = Driver(InteractionHistory())
    connected_call(d, origin="callback")
    hang_up(d, CALLER, AGENT, at=T0 + 100)
    assert d.facts("interaction") == []


def test_each_interaction_is_recorded_once() -> None:
    """Separation, then both hang-ups, then the call's end: still one interaction."""
    d = Driver(InteractionHistory())
    connected_call(d)
    d.feed(ev.LegLeftBridge(CALLER, "b1"), at=T0 + 50)
    hang_up(d, CALLER, AGENT, at=T0 + 55)
    assert len(d.facts("interaction")) == 1
    assert d.facts("interaction")[0]["ended_at"] == T0 + 50


# ------------------------------------------------------------------------------ calls


def test_each_call_is_recorded_once_when_it_ends() -> None:
    """One call fact with its times, number, agent, queue and end reason."""
    d = Driver(CallFacts())
    connected_call(d)
    hang_up(d, CALLER, AGENT, at=T0 + 200)
    assert d.facts("call") == [
        {
            "call_id": "c.1",
            "started_at": T0,
            "ended_at": T0 + 200,
            "caller_number": "89161234567",
            "agent": "alice",
            "queue": "support",
            "had_hold": False,
            "connected_at": T0 + 20,
            "origin": None,
            "end_reason": "caller_hangup",
        }
    ]


def test_a_hold_of_the_customer_marks_the_call() -> None:
    """had_hold: the agent put the customer on hold at least once."""
    d = Driver(CallFacts())
    connected_call(d)
    d.feed(ev.HoldPressed(AGENT), at=T0 + 40)
    d.feed(ev.HoldReleased(AGENT), at=T0 + 50)
    hang_up(d, AGENT, CALLER, at=T0 + 90)
    [fact] = d.facts("call")
    assert fact["had_hold"] is True
    assert fact["end_reason"] == "agent_hangup"


def test_a_caller_who_gives_up_in_the_queue_is_an_abandoned_call() -> None:
    """No agent ever connected and the caller hung up: abandoned."""
    d = Driver(CallFacts())
    d.feed(created(CALLER, "c.1"), at=T0)
    hang_up(d, CALLER, at=T0 + 30)
    [fact] = d.facts("call")
    assert fact["end_reason"] == "abandoned"
    assert fact["agent"] is None


def test_a_dead_media_leg_ending_first_is_a_media_timeout() -> None:
    """The first leg to end had its media time out: the call ended abnormally."""
    d = Driver(CallFacts())
    connected_call(d)
    d.feed(ev.LegHungUp(CALLER, 44, media_timeout=True), ev.LegHungUp(AGENT, 16), at=T0 + 80)
    assert d.facts("call")[0]["end_reason"] == "media_timeout"


def test_a_call_gone_during_a_link_outage_has_no_invented_end() -> None:
    """A connected call and a caller still in the queue both end while the PBX link is down
    (gone at the resync): the first is link_lost, the second unknown (an agent may have
    taken it meanwhile), neither "caller_hangup" nor "abandoned"; both end when the link
    was lost, not five minutes later at the resync."""
    d = Driver(CallFacts())
    connected_call(d)
    waiting = LegId("w.1")
    d.feed(created(waiting, "w.1", number="89160000000"), at=T0 + 25)
    d.feed(ev.PbxConnectionChanged("asterisk", connected=False, reason="closed"), at=T0 + 30)
    d.feed(ev.PbxResynced("asterisk", ()), at=T0 + 330)
    facts = {f["call_id"]: f for f in d.facts("call")}
    assert (facts["c.1"]["end_reason"], facts["c.1"]["ended_at"]) == ("link_lost", T0 + 30)
    assert (facts["w.1"]["end_reason"], facts["w.1"]["ended_at"]) == ("unknown", T0 + 30)


def test_a_call_heard_again_before_the_resync_does_not_end_before_it_was_heard() -> None:
    """The link goes while a member's phone rings for the waiting caller; after the
    re-login, while the channel list is awaited, another agent takes the call and both hang
    up. The resync ends the ringing member (gone meanwhile): the call ends then, as last
    heard, not at the loss, before its own connection."""
    d = Driver(CallFacts())
    d.feed(created(CALLER, "c.1"), ev.LegAnswered(CALLER), at=T0)
    d.feed(agent_leg(AGENT), at=T0 + 5)
    d.feed(ev.PbxConnectionChanged("asterisk", connected=False, reason="closed"), at=T0 + 10)
    d.feed(
        agent_leg(AGENT_B),
        ev.LegAnswered(AGENT_B),
        ev.LegJoinedBridge(AGENT_B, "b1"),
        ev.LegJoinedBridge(CALLER, "b1"),
        ev.AgentConnected(CALLER, AGENT_B, "bob", "support"),
        at=T0 + 300,
    )
    hang_up(d, CALLER, AGENT_B, at=T0 + 340)
    d.feed(ev.PbxResynced("asterisk", ()), at=T0 + 341)
    [fact] = d.facts("call")
    assert (fact["connected_at"], fact["ended_at"]) == (T0 + 300, T0 + 340)
    assert fact["end_reason"] == "caller_hangup"


def test_end_reason_of_a_call_that_ended_before_anyone_else_joined() -> None:
    """Not connected and not ended by the caller first: not_connected."""
    assert end_reason((), connected=False) == "not_connected"


def test_a_call_between_two_agents_is_no_customer_call() -> None:
    """Agent 1001 calls agent 1002: no customer leg, so no call fact (it would be counted in
    the calls the hold share is measured on)."""
    rules = cm.RoleRules(agent_endpoint_patterns=("PJSIP/agent-*",))
    d = Driver(CallFacts(), model=cm.CallModel(rules))
    d.feed(created("c.1", "c.1", endpoint="PJSIP/agent-1001"), at=T0)
    d.feed(created("c.2", "c.1", endpoint="PJSIP/agent-1002", direction=Direction.OUTBOUND))
    d.feed(ev.LegAnswered(LegId("c.2")), ev.LegJoinedBridge(LegId("c.1"), "b1"))
    d.feed(ev.LegJoinedBridge(LegId("c.2"), "b1"))
    d.feed(ev.LegHungUp(LegId("c.1"), 16), ev.LegHungUp(LegId("c.2"), 16), at=T0 + 60)
    assert d.facts("call") == []


def test_an_unanswered_callback_is_not_connected_not_abandoned() -> None:
    """A callback attempt nobody answered: the customer hung up on nobody."""
    d = Driver(CallFacts())
    d.feed(created("c.1", "c.1", direction=Direction.OUTBOUND, origin="callback"), at=T0)
    hang_up(d, CALLER, at=T0 + 35)
    [fact] = d.facts("call")
    assert fact["end_reason"] == "not_connected"

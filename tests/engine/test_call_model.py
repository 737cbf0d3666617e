"""The neutral call model: roles, bridges, hold, talking, hang-ups, resync."""

from __future__ import annotations

import pytest

from pbx_agent.model import calls as cm
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId, Role
from tests.engine.builders import bridged_call_events, created

T0 = 1_000.0


def feed(model: cm.CallModel, events: list[ev.PbxEvent], now: float = T0) -> list[cm.CallEvent]:
    out: list[cm.CallEvent] = []
    for event in events:
        out.extend(model.apply(event, now))
    return out


def test_first_inbound_leg_is_the_caller_and_bridged_peer_the_agent() -> None:
    """With no agent patterns, the party bridged with the caller is taken as the agent."""
    model = cm.CallModel()
    out = feed(model, bridged_call_events())
    call = model.calls[CallId("c.1")]
    assert call.caller == "c.1"
    assert call.agent == "c.2"
    assert call.agent_leg is not None and call.agent_leg.agent == "agent-1001"
    assert [type(e) for e in out] == [cm.CallStarted, cm.PartiesConnected]


def test_endpoint_pattern_marks_agents_with_their_tier() -> None:
    """An endpoint matching a configured pattern is an agent; its tier comes from config."""
    rules = cm.RoleRules(
        agent_endpoint_patterns=("PJSIP/agent-*",),
        tiers={"agent-1001": "senior"},
        bridged_peer_is_agent=False,
    )
    model = cm.CallModel(rules)
    feed(model, bridged_call_events())
    leg = model.legs[LegId("c.2")]
    assert leg.role is Role.AGENT
    assert leg.tier == "senior"


def test_non_agent_peer_is_not_an_agent_when_guessing_is_off() -> None:
    """Without patterns and with guessing off, a bridged peer stays an unknown party."""
    model = cm.CallModel(cm.RoleRules(bridged_peer_is_agent=False))
    out = feed(model, bridged_call_events())
    assert not any(isinstance(e, cm.PartiesConnected) for e in out)


def test_role_variable_overrides_guessing() -> None:
    """The dialplan's PBXAGENT_ROLE variable makes a leg an agent."""
    model = cm.CallModel(cm.RoleRules(bridged_peer_is_agent=False))
    events = bridged_call_events()
    events.append(ev.LegVariable(LegId("c.2"), "PBXAGENT_ROLE", "agent"))
    events.append(ev.LegVariable(LegId("c.2"), "PBXAGENT_TIER", "senior"))
    out = feed(model, events)
    assert any(isinstance(e, cm.PartiesConnected) for e in out)
    assert model.legs[LegId("c.2")].tier == "senior"


def test_agent_connected_sets_agent_and_queue() -> None:
    """A queue's AgentConnect names the agent and the queue of the call."""
    model = cm.CallModel(cm.RoleRules(bridged_peer_is_agent=False))
    events = bridged_call_events()
    events.append(ev.AgentConnected(LegId("c.1"), LegId("c.2"), "Alice", "support"))
    out = feed(model, events)
    call = model.calls[CallId("c.1")]
    assert call.queue == "support"
    assert call.agent_leg is not None and call.agent_leg.agent == "Alice"
    assert isinstance(out[-1], cm.PartiesConnected)


def test_hold_pressed_by_agent_holds_the_caller() -> None:
    """Hold fires on the presser; the held party is the other leg in its bridge."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    out = model.apply(ev.HoldPressed(LegId("c.2")), T0 + 5)
    assert out == [cm.HoldStarted(CallId("c.1"), LegId("c.1"), LegId("c.2"), T0 + 5)]
    out = model.apply(ev.MusicOnHoldStarted(LegId("c.1"), "default"), T0 + 5)
    assert out == []
    out = model.apply(ev.HoldReleased(LegId("c.2")), T0 + 30)
    assert out == [
        cm.HoldEnded(CallId("c.1"), LegId("c.1"), LegId("c.2"), T0 + 5, T0 + 30, "released")
    ]


def test_music_stopping_under_a_whisper_does_not_end_a_pressed_hold() -> None:
    """A spy attaching stops the held party's music (trace 04a): the hold goes on."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    feed(model, [ev.HoldPressed(LegId("c.2")), ev.MusicOnHoldStarted(LegId("c.1"), "default")])
    out = model.apply(ev.MusicOnHoldStopped(LegId("c.1")), T0 + 1)
    assert out == []
    assert model.calls[CallId("c.1")].hold_on(LegId("c.1")) is not None


def test_music_alone_starts_and_ends_a_hold() -> None:
    """A PBX that reports only music on the bridged party still gives a hold."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    out = model.apply(ev.MusicOnHoldStarted(LegId("c.1"), "default"), T0 + 2)
    assert out == [cm.HoldStarted(CallId("c.1"), LegId("c.1"), LegId("c.2"), T0 + 2)]
    out = model.apply(ev.MusicOnHoldStopped(LegId("c.1")), T0 + 9)
    assert isinstance(out[0], cm.HoldEnded)


def test_both_parties_holding_each_other_are_two_holds() -> None:
    """When the caller also presses hold, the agent's hold of the caller is unaffected."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    feed(model, [ev.HoldPressed(LegId("c.2")), ev.HoldPressed(LegId("c.1"))])
    call = model.calls[CallId("c.1")]
    assert len(call.holds) == 2
    out = model.apply(ev.HoldReleased(LegId("c.2")), T0 + 10)
    assert [type(e) for e in out] == [cm.HoldEnded]
    assert out[0].held == "c.1"  # type: ignore[union-attr]
    assert call.hold_on(LegId("c.2")) is not None


def test_holder_leaving_the_bridge_ends_the_hold() -> None:
    """A transfer while on hold (the agent leaves the bridge) ends the hold."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    model.apply(ev.HoldPressed(LegId("c.2")), T0)
    out = model.apply(ev.LegLeftBridge(LegId("c.2"), "b1"), T0 + 3)
    assert isinstance(out[0], cm.HoldEnded) and out[0].how == "holder_left"
    assert isinstance(out[1], cm.PartiesSeparated)


def test_transfer_target_from_another_call_joins_the_callers_call() -> None:
    """A second agent placed as a separate PBX call is re-homed into the caller's call."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    feed(model, [ev.LegLeftBridge(LegId("c.2"), "b1"), ev.LegHungUp(LegId("c.2"), 16)])
    out = feed(
        model,
        [
            created(
                "d.1",
                "d.1",
                endpoint="PJSIP/agent-1002",
                number="101",
                direction=Direction.OUTBOUND,
            ),
            ev.LegJoinedBridge(LegId("d.1"), "b1"),
        ],
    )
    call = model.calls[CallId("c.1")]
    assert call.agent == "d.1"
    assert CallId("d.1") not in model.calls
    assert isinstance(out[-1], cm.PartiesConnected)


def test_talking_stop_reports_the_real_end_of_speech() -> None:
    """The detector reports the end late; the event carries when speech really ended."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    model.apply(ev.TalkingStarted(LegId("c.1")), T0 + 1)
    out = model.apply(ev.TalkingStopped(LegId("c.1"), silence_ms=300, speech_ms=2000), T0 + 3.3)
    assert out == [cm.SpeechEnded(CallId("c.1"), LegId("c.1"), Role.CALLER, T0 + 3.0, 2000)]


def test_hangups_are_reported_in_the_order_they_happened() -> None:
    """CallEnded lists every leg's end, first to go first (08b: the dead leg, then the survivor)."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    model.apply(
        ev.LegHungUp(LegId("c.2"), 44, "Requested channel not available", media_timeout=True),
        T0 + 11,
    )
    out = model.apply(ev.LegHungUp(LegId("c.1"), 16, "Normal Clearing"), T0 + 11.01)
    ended = out[-1]
    assert isinstance(ended, cm.CallEnded)
    assert [(e.leg, e.cause, e.order, e.was_bridged) for e in ended.legs] == [
        ("c.2", 44, 0, True),
        ("c.1", 16, 1, False),
    ]
    assert CallId("c.1") not in model.calls


def test_helper_legs_are_not_parties() -> None:
    """The daemon's own whisper channels never count as a party nor end a call."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    out = feed(
        model,
        [
            created("h.1", "c.1", endpoint="Local/whisper@pbx-agent", origin="helper"),
            ev.LegHungUp(LegId("h.1"), 16),
        ],
    )
    assert out == []
    assert LegId("h.1") not in model.legs


def test_resync_keeps_known_calls_adds_new_and_ends_vanished() -> None:
    """After a reconnect nothing is duplicated, nothing alive is forgotten, the gone are ended."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    feed(model, [created("e.1", "e.1", number="79990000000")])
    snapshot = ev.PbxResynced(
        "asterisk",
        (
            ev.LiveLeg(created("c.1", "c.1"), answered=True, bridge="b1"),
            ev.LiveLeg(
                created("c.2", "c.1", endpoint="PJSIP/agent-1001"), answered=True, bridge="b1"
            ),
            ev.LiveLeg(created("f.1", "f.1", number="78880000000"), answered=True),
        ),
    )
    out = model.apply(snapshot, T0 + 60)
    assert set(model.calls) == {"c.1", "f.1"}
    assert len(model.calls[CallId("c.1")].legs) == 2
    ended = [e for e in out if isinstance(e, cm.CallEnded)]
    assert [e.call for e in ended] == ["e.1"]
    assert [type(e) for e in out if not isinstance(e, cm.LegEnded | cm.CallEnded)] == [
        cm.CallStarted
    ]


def test_events_for_unknown_legs_are_ignored() -> None:
    """An event for a leg the model never saw changes nothing."""
    model = cm.CallModel()
    assert model.apply(ev.HoldPressed(LegId("nope")), T0) == []
    assert model.apply(ev.LegHungUp(LegId("nope"), 16), T0) == []


def bridged_listing() -> ev.PbxResynced:
    """The switch's list after a reconnect: the caller c.1 and agent c.2 still bridged."""
    return ev.PbxResynced(
        "asterisk",
        (
            ev.LiveLeg(created("c.1", "c.1"), answered=True, bridge="b1"),
            ev.LiveLeg(
                created("c.2", "c.1", endpoint="PJSIP/agent-1001"), answered=True, bridge="b1"
            ),
        ),
    )


def test_resync_ends_holds_whose_unhold_may_have_been_lost() -> None:
    """After a reconnect a hold known before the cut ends as link_lost (the switch lists no holds)."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    model.apply(ev.HoldPressed(LegId("c.2")), T0)
    snapshot = bridged_listing()
    out = model.apply(snapshot, T0 + 30)
    assert out == [
        cm.HoldEnded(CallId("c.1"), LegId("c.1"), LegId("c.2"), T0, T0 + 30, "link_lost")
    ]
    assert model.calls[CallId("c.1")].holds == {}


def test_a_hold_known_before_a_lost_link_ends_when_the_link_was_lost() -> None:
    """The outage is not hold time: a hold the resync ends (link_lost) lasted what was seen
    of it, until the link went, not until the switch was heard again."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    model.apply(ev.HoldPressed(LegId("c.2")), T0)
    model.apply(ev.PbxConnectionChanged("asterisk", connected=False), T0 + 20)
    listing = bridged_listing()
    out = model.apply(listing, T0 + 320)
    assert out[0] == cm.HoldEnded(
        CallId("c.1"), LegId("c.1"), LegId("c.2"), T0, T0 + 20, "link_lost"
    )


def test_losing_the_pbx_link_tells_every_live_call() -> None:
    """On a disconnect every live customer call gets LinkLost (nothing of it is heard until
    the resync), the daemon's own helper call none; losing it again before a resync tells
    nobody twice."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    feed(model, [created("e.1", "e.1", number="79990000000")])
    helper = created("h.1", "h.1", endpoint="Local/barge@pbxagent-whisper", origin="helper")
    feed(model, [helper])
    lost = ev.PbxConnectionChanged("asterisk", connected=False, reason="closed")
    assert model.apply(lost, T0 + 5) == [
        cm.LinkLost(CallId("c.1"), T0 + 5, "closed"),
        cm.LinkLost(CallId("e.1"), T0 + 5, "closed"),
    ]
    assert model.apply(lost, T0 + 6) == []
    assert model.apply(ev.PbxConnectionChanged("asterisk", connected=True), T0 + 7) == []


def test_the_resync_after_a_lost_link_restores_each_surviving_call_last() -> None:
    """After the resync's own events (a call gone meanwhile ended, a hold ended as link_lost)
    each call still live gets LinkRestored with the time of the loss; a later resync none."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    feed(model, [created("e.1", "e.1", number="79990000000")])
    model.apply(ev.HoldPressed(LegId("c.2")), T0)
    model.apply(ev.PbxConnectionChanged("asterisk", connected=False), T0 + 5)
    listing = bridged_listing()
    out = model.apply(listing, T0 + 30)
    assert [type(e) for e in out] == [cm.HoldEnded, cm.LegEnded, cm.CallEnded, cm.LinkRestored]
    assert out[-1] == cm.LinkRestored(CallId("c.1"), T0 + 30, T0 + 5)
    assert model.apply(listing, T0 + 31) == []


def test_a_helper_on_a_call_id_of_its_own_leaves_no_call_behind() -> None:
    """A whisper channel originated with its own id is forgotten entirely when it hangs up."""
    model = cm.CallModel()
    feed(
        model,
        [
            created(
                "pbxagent-prompt-1",
                "pbxagent-prompt-1",
                endpoint="Local/barge@pbxagent-whisper",
                origin="helper",
            )
        ],
    )
    assert CallId("pbxagent-prompt-1") in model.calls
    model.apply(ev.LegHungUp(LegId("pbxagent-prompt-1"), 0), T0)
    assert model.calls == {}
    assert model.legs == {}


def test_a_talk_end_whose_start_was_missed_is_still_speech() -> None:
    """Asterisk sends ChannelTalkingStart once: one that came while the AMI link was down is
    never seen. The end that follows says how long the caller spoke; it was dropped, and
    the silent-caller rule hung up on a caller who had just spoken for 1.2 s."""
    model = cm.CallModel()
    feed(model, bridged_call_events())
    out = model.apply(ev.TalkingStopped(LegId("c.1"), silence_ms=300, speech_ms=1200), T0 + 10)
    assert out == [
        cm.SpeechStarted(CallId("c.1"), LegId("c.1"), Role.CALLER),
        cm.SpeechEnded(CallId("c.1"), LegId("c.1"), Role.CALLER, T0 + 9.7, 1200),
    ]
    leg = model.legs[LegId("c.1")]
    assert not leg.talking
    assert leg.talking_since == pytest.approx(T0 + 8.5)
    # An end with no length (FreeSWITCH's NOTALK) and no start seen says nothing.
    assert model.apply(ev.TalkingStopped(LegId("c.1"), silence_ms=300), T0 + 11) == []


def test_a_resync_connects_a_caller_bridged_to_an_agent_while_the_link_was_down() -> None:
    """Known legs were kept as they were: a queued caller bridged to an agent during the
    cut was never seen as connected (no hold program, no silent-caller rule). The bridges
    the switch lists for known legs are applied."""
    model = cm.CallModel()
    agent = created("c.2", "c.1", endpoint="PJSIP/agent-1001", number="100")
    feed(model, [created("c.1", "c.1"), agent, ev.LegAnswered(LegId("c.1"))])
    assert model.calls[CallId("c.1")].agent is None
    listing = ev.PbxResynced(
        "asterisk",
        (
            ev.LiveLeg(created("c.1", "c.1"), answered=True, bridge="b1"),
            ev.LiveLeg(agent, answered=True, bridge="b1"),
        ),
    )
    out = model.apply(listing, T0 + 5)
    assert [type(e) for e in out] == [cm.PartiesConnected]
    call = model.calls[CallId("c.1")]
    assert call.agent == "c.2"
    assert model.legs[LegId("c.2")].answered
    assert model.apply(listing, T0 + 6) == []  # the same listing again changes nothing

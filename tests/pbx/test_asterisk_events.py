"""AMI → neutral events, checked on the real Asterisk 22 transcripts."""

from __future__ import annotations

from pathlib import Path

from pbx_agent.model import events as ev
from pbx_agent.model.events import Direction, LegId
from pbx_agent.pbx.asterisk_events import (
    AsteriskTranslator,
    agents_from_queue_status,
    endpoint_of,
)
from pbx_agent.wire.ami import AmiDecoder, AmiMessage
from tests.engine.builders import created

TRACES = Path(__file__).resolve().parents[1] / "traces" / "asterisk-22"


def trace_messages(name: str) -> list[AmiMessage]:
    raw = (TRACES / f"{name}.recv.txt").read_bytes().split(b"#=== BEGIN RAW ===\n", 1)[1]
    decoder = AmiDecoder()
    decoder.feed(raw)
    decoder.feed(b"")
    out: list[AmiMessage] = []
    while (message := decoder.next_message()) is not None:
        if isinstance(message, AmiMessage):
            out.append(message)
    return out


def with_channel_id(messages: list[AmiMessage]) -> list[AmiMessage]:
    """The trace as if the Originate had carried a ChannelId (07f: it becomes the Uniqueid)."""
    first = next((m["Uniqueid"] for m in messages if m.name == "Newchannel"), None)
    if first is None:
        return messages
    return [
        AmiMessage(
            tuple((k, first if k == "Uniqueid" and v == "<unknown>" else v) for k, v in m.fields)
        )
        for m in messages
    ]


def translate(
    name: str, translator: AsteriskTranslator | None = None, *, channel_id: bool = False
) -> list[ev.PbxEvent]:
    translator = translator or AsteriskTranslator()
    out: list[ev.PbxEvent] = []
    messages = trace_messages(name)
    if channel_id:
        messages = with_channel_id(messages)
    for message in messages:
        if message.kind == "event":
            out.extend(translator.feed(message))
    return out


def test_endpoint_strips_the_channel_sequence() -> None:
    """Channel names map to the device behind them."""
    assert endpoint_of("PJSIP/bob-00000020") == "PJSIP/bob"
    assert endpoint_of("Local/whisper@lab-spy-0000000a;2") == "Local/whisper@lab-spy"


def test_bridged_call_gives_caller_agent_bridge_and_hangups() -> None:
    """02b: inbound caller, dialled leg on the caller's Linkedid, bridge, both hang up with 16."""
    events = translate("02b-call-dial-bridge-caller-hangup")
    created = [e for e in events if isinstance(e, ev.LegCreated)]
    assert [(c.endpoint, c.direction, c.call == created[0].leg) for c in created] == [
        ("PJSIP/alice", Direction.INBOUND, True),
        ("PJSIP/bob", Direction.OUTBOUND, True),
    ]
    kinds = [type(e).__name__ for e in events if not isinstance(e, ev.LegCreated)]
    assert kinds == [
        "LegAnswered",
        "LegAnswered",
        "LegJoinedBridge",
        "LegJoinedBridge",
        "LegLeftBridge",
        "LegHungUp",
        "LegLeftBridge",
        "LegHungUp",
    ]
    hangups = [e for e in events if isinstance(e, ev.LegHungUp)]
    assert [(h.cause, h.media_timeout) for h in hangups] == [(16, False), (16, False)]


def test_hold_is_on_the_presser_and_music_on_the_held_leg() -> None:
    """04c: Hold/Unhold on alice (who pressed), MusicOnHoldStart/Stop on bob."""
    events = translate("04c-hold-unhold-default-moh")
    created = {e.leg: e.endpoint for e in events if isinstance(e, ev.LegCreated)}
    holds = [
        (type(e).__name__, created[e.leg])
        for e in events
        if isinstance(
            e, ev.HoldPressed | ev.HoldReleased | ev.MusicOnHoldStarted | ev.MusicOnHoldStopped
        )
    ]
    assert sorted(holds) == [
        ("HoldPressed", "PJSIP/alice"),
        ("HoldReleased", "PJSIP/alice"),
        ("MusicOnHoldStarted", "PJSIP/bob"),
        ("MusicOnHoldStopped", "PJSIP/bob"),
    ]
    assert holds.index(("HoldPressed", "PJSIP/alice")) < holds.index(
        ("HoldReleased", "PJSIP/alice")
    )


def test_talking_stop_reports_the_configured_silence_and_duration() -> None:
    """03a: ChannelTalkingStop carries the speech length; the event says the silence already waited."""
    events = translate("03a-talkdetect-dialplan", AsteriskTranslator(talk_detect_silence_ms=2500))
    stops = [e for e in events if isinstance(e, ev.TalkingStopped)]
    assert [(s.silence_ms, s.speech_ms) for s in stops] == [(2500, 4040), (2500, 2159)]
    assert sum(isinstance(e, ev.TalkingStarted) for e in events) == 2


def test_dead_leg_after_rtp_timeout_is_marked_media_timeout() -> None:
    """08b: the killed leg ends first with 44 after SoftHangupRequest DEV; the survivor with 16."""
    events = translate("08b-drop-callee-killed-rtp-timeout")
    created = {e.leg: e.endpoint for e in events if isinstance(e, ev.LegCreated)}
    hangups = [
        (created[e.leg], e.cause, e.media_timeout) for e in events if isinstance(e, ev.LegHungUp)
    ]
    assert hangups == [("PJSIP/erin", 44, True), ("PJSIP/alice", 16, False)]


def _originate(name: str, channel_id: str) -> list[ev.OriginateOutcome]:
    translator = AsteriskTranslator()
    translator.expect_origination("req-1", channel_id, "callback")
    return [
        e
        for e in translate(name, translator, channel_id=True)
        if isinstance(e, ev.OriginateOutcome)
    ]


def _uniqueid_of_first_channel(name: str) -> str:
    for message in trace_messages(name):
        if message.name == "Newchannel":
            return message["Uniqueid"]
    return "<none>"


def test_busy_and_declined_are_told_apart_by_the_hangup_cause() -> None:
    """07b/07c: both answer Reason 0; cause 17 is busy, 21 rejected."""
    busy = _originate(
        "07b-originate-busy-486", _uniqueid_of_first_channel("07b-originate-busy-486")
    )
    declined = _originate(
        "07c-originate-declined-603", _uniqueid_of_first_channel("07c-originate-declined-603")
    )
    assert [(o.outcome, o.cause) for o in busy] == [("busy", 17)]
    assert [(o.outcome, o.cause) for o in declined] == [("rejected", 21)]


def test_no_answer_is_reason_3() -> None:
    """07d: Reason 3 after the timeout is no answer, cause 19."""
    outcomes = _originate(
        "07d-originate-noanswer-timeout",
        _uniqueid_of_first_channel("07d-originate-noanswer-timeout"),
    )
    assert [(o.outcome, o.cause) for o in outcomes] == [("no_answer", 19)]


def test_channel_id_correlates_a_busy_originate() -> None:
    """07f: with a ChannelId the failure carries our id and the busy cause."""
    translator = AsteriskTranslator()
    translator.expect_origination("req-1", "lab-orig-0001", "callback")
    translator.expect_origination("req-2", "lab-orig-0002", "callback")
    outcomes = [
        e
        for e in translate("07f-originate-channelid-correlation", translator)
        if isinstance(e, ev.OriginateOutcome)
    ]
    assert [(o.request, o.outcome, o.cause) for o in outcomes] == [
        ("req-1", "busy", 17),
        ("req-2", "answered", None),
    ]


def test_answered_originate() -> None:
    """07a: Success, Reason 4 is answered."""
    outcomes = _originate(
        "07a-originate-answered", _uniqueid_of_first_channel("07a-originate-answered")
    )
    assert [o.outcome for o in outcomes] == ["answered"]


def test_no_such_endpoint_fails_without_a_channel() -> None:
    """07e: Reason 0 and no channel ever created is a failure, reported at once."""
    translator = AsteriskTranslator()
    for message in trace_messages("07e-originate-no-such-endpoint"):
        if message.name == "OriginateResponse":
            translator.expect_origination("req-9", message["Uniqueid"], "callback")
    outcomes = [
        e
        for e in translate("07e-originate-no-such-endpoint", translator)
        if isinstance(e, ev.OriginateOutcome)
    ]
    assert [(o.outcome, o.leg) for o in outcomes] == [("failed", None)]


def test_amd_verdict_is_the_varset_pair() -> None:
    """06a: AMDSTATUS then AMDCAUSE become one machine verdict."""
    events = translate("06a-amd-machine-long-greeting")
    verdicts = [e for e in events if isinstance(e, ev.MachineDetected)]
    assert [(v.verdict, v.cause) for v in verdicts] == [("machine", "LONGGREETING-1500-1500")]


def test_watched_variables_only() -> None:
    """Only the variables the daemon watches are passed on (VarSet is the noisiest event)."""
    translator = AsteriskTranslator(watched_variables=frozenset({"DIALSTATUS"}))
    events = translate("02b-call-dial-bridge-caller-hangup", translator)
    variables = {(e.name, e.value) for e in events if isinstance(e, ev.LegVariable)}
    assert ("DIALSTATUS", "ANSWER") in variables
    assert all(name == "DIALSTATUS" for name, _ in variables)


def test_feature_code_user_event() -> None:
    """A PbxAgentFeature UserEvent is the agent asking for a script step."""
    message = AmiMessage(
        (
            ("Event", "UserEvent"),
            ("Channel", "PJSIP/agent-1001-00000002"),
            ("Uniqueid", "1795339557.32"),
            ("UserEvent", "PbxAgentFeature"),
            ("Feature", "abuse"),
        )
    )
    assert AsteriskTranslator().feed(message) == [
        ev.FeatureRequested(LegId("1795339557.32"), "abuse")
    ]


def test_a_callback_legs_caller_number_is_the_customer_dialled() -> None:
    """The originated channel's CallerIDNum is <unknown> (07a) or the caller ID the daemon
    presents: an abnormal drop of a connected callback then asked for a callback to that,
    not to the customer. The number dialled is the leg's caller number."""
    name = "07a-originate-answered"
    channel_id = _uniqueid_of_first_channel(name)
    assert channel_id != "<none>"
    translator = AsteriskTranslator()
    translator.expect_origination("req-1", channel_id, "callback", callee="+79161234567")
    created = [e for e in translate(name, translator) if isinstance(e, ev.LegCreated)]
    assert [e.caller_number for e in created if e.leg == channel_id] == ["+79161234567"]
    plain = [e for e in translate(name) if isinstance(e, ev.LegCreated)]
    assert [e.caller_number for e in plain if e.leg == channel_id] == ["<unknown>"]


def test_after_a_resync_an_origination_listed_up_is_answered_and_an_unlisted_one_forgotten() -> (
    None
):
    """resynced(): the attempt listed Up was answered while the link was down; the one not
    listed ended meanwhile (no outcome: what became of it is unknown) and is forgotten with
    its channel; one originated after the list was asked for waits for its events."""
    translator = AsteriskTranslator()
    for request in ("up", "ringing", "gone"):
        translator.expect_origination(f"req-{request}", f"chan-{request}", "callback")
    before = translator.known_ids()
    translator.expect_origination("req-late", "chan-late", "callback")
    events = translator.resynced({"chan-up": True, "chan-ringing": False}, before)
    assert events == [
        ev.OriginateOutcome(
            "req-up",
            "answered",
            LegId("chan-up"),
            cause_text="listed Up after the AMI link came back "
            "(its OriginateResponse was lost with the link)",
        )
    ]
    assert set(translator.originations) == {"chan-ringing", "chan-late"}
    assert "chan-gone" not in translator.origins
    assert "chan-late" in translator.origins


def _member(queue: str, name: str, location: str, *, in_call: bool) -> AmiMessage:
    return AmiMessage(
        (
            ("Event", "QueueMember"),
            ("Queue", queue),
            ("Name", name),
            ("Location", location),
            ("StateInterface", location),
            ("InCall", "1" if in_call else "0"),
        )
    )


def _bridged(caller: str, agent: str, endpoint: str, bridge: str) -> list[ev.LiveLeg]:
    return [
        ev.LiveLeg(created(caller, caller, number="79161234567"), True, bridge),
        ev.LiveLeg(
            created(agent, caller, endpoint=endpoint, direction=Direction.OUTBOUND), True, bridge
        ),
    ]


def test_queue_status_names_the_agents_a_resync_found() -> None:
    """A bridged agent the resync found (its AgentConnect never seen) is the queue member
    on its device, in the queue where it is in a call; a leg already known, a device two
    members share and a device no member has are left as they are."""
    legs = [
        *_bridged("c1", "a1", "PJSIP/agent-1001", "b1"),
        *_bridged("c2", "a2", "PJSIP/agent-1002", "b2"),
        *_bridged("c3", "a3", "PJSIP/agent-1003", "b3"),
        *_bridged("c4", "a4", "PJSIP/desk-7", "b4"),
    ]
    items = [
        _member("sales", "Alice", "PJSIP/agent-1001", in_call=False),
        _member("support", "Alice", "PJSIP/agent-1001", in_call=True),
        _member("support", "Bob", "PJSIP/agent-1002", in_call=True),
        _member("support", "Carol", "PJSIP/agent-1003", in_call=True),
        _member("support", "Dan", "PJSIP/agent-1003", in_call=True),
        AmiMessage((("Event", "QueueStatusComplete"),)),
    ]
    unseen = {"c1", "a1", "c3", "a3", "c4", "a4"}  # a2's AgentConnect was seen
    assert agents_from_queue_status(legs, items, unseen) == [
        ev.AgentConnected(LegId("c1"), LegId("a1"), "Alice", "support")
    ]


def test_queue_status_items_missing_fields_name_nobody() -> None:
    """A QueueMember without a name, without a device, with a name full of control
    characters, or an unrelated item in the list: nothing is invented, nothing raises; the
    name is passed on as the switch gave it (the log escapes it)."""
    legs = [
        *_bridged("c1", "a1", "PJSIP/agent-1001", "b1"),
        *_bridged("c2", "a2", "PJSIP/agent-1002", "b2"),
    ]
    items = [
        AmiMessage(
            (("Event", "QueueMember"), ("Queue", "support"), ("Location", "PJSIP/agent-1001"))
        ),
        AmiMessage((("Event", "QueueMember"), ("Queue", "support"), ("Name", "Ghost"))),
        _member("support", "Eve\r\nEvent: Forged", "PJSIP/agent-1002", in_call=True),
        AmiMessage((("Event", "QueueParams"), ("Queue", "support"))),
    ]
    assert agents_from_queue_status(legs, items, {"c1", "a1", "c2", "a2"}) == [
        ev.AgentConnected(LegId("c2"), LegId("a2"), "Eve\r\nEvent: Forged", "support")
    ]

"""Scripted calls on the fake Asterisk: the events, their fields and their order, against
the transcripts (02b, 02c, 03a, 04a, 04c, 05b, 08a, 08b, 08c)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from pbx_agent.clock import ManualClock
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from pbx_agent.wire.ami import AmiMessage
from tests.testing.ami_client import AmiTestClient
from tests.testing.asterisk_traces import NOISE, event_signatures, messages

GREETING = frozenset({"FullyBooted", "SuccessfulAuth"})
KEYS = ("Channel", "Variable", "Cause", "DialStatus", "ChannelStateDesc", "Class", "MusicClass")


def _trace(prefix: str) -> list[AmiMessage]:
    return [m for m in messages(prefix) if m.kind == "event" and m.name not in NOISE | GREETING]


def _events(pbx: FakeAsterisk) -> list[AmiMessage]:
    return [m for m in pbx.events if m.name not in NOISE | GREETING]


def _key_values(events: list[AmiMessage]) -> list[tuple[str, ...]]:
    """Event name plus the values that tell what happened, channel numbers blanked."""
    out = []
    for event in events:
        values = [re.sub(r"-[0-9a-f]{8}(;\d)?$", r"-*\1", event.get(key) or "") for key in KEYS]
        out.append((event.name, *values))
    return out


def _from_local(events: list[AmiMessage]) -> list[AmiMessage]:
    """From the first Local channel's Newchannel to the Unhold."""
    start = next(i for i, e in enumerate(events) if (e.get("Channel") or "").startswith("Local/"))
    end = next(i for i, e in enumerate(events) if e.name == "Unhold")
    return events[start : end + 1]


def _between(events: list[AmiMessage], first: str, last: str) -> list[AmiMessage]:
    start = next(i for i, e in enumerate(events) if e.name == first)
    end = max(i for i, e in enumerate(events) if e.name == last)
    return events[start : end + 1]


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.001) as fake:
        yield fake


async def test_answered_dial_and_caller_hangup_match_02b(pbx: FakeAsterisk) -> None:
    """alice -> Dial(PJSIP/bob) -> answer -> alice hangs up: 02b event for event."""
    call = await pbx.inbound_call("alice", exten="603", context="from-ua", endpoint="alice")
    await call.connect_agent("bob")
    await call.hangup()
    assert event_signatures(_events(pbx)) == event_signatures(_trace("02b"))
    assert _key_values(_events(pbx)) == _key_values(_trace("02b"))


async def test_callee_hangup_matches_08a(pbx: FakeAsterisk) -> None:
    """The dialled leg sends BYE: both legs end with cause 16, in 08a's order."""
    call = await pbx.inbound_call("alice", exten="605", context="from-ua", endpoint="alice")
    erin = await call.connect_agent("erin", music_class=None)
    await erin.hangup()
    assert event_signatures(_events(pbx)) == event_signatures(_trace("08a"))
    assert _key_values(_events(pbx)) == _key_values(_trace("08a"))


async def test_rtp_timeout_on_the_callee_matches_08b(pbx: FakeAsterisk) -> None:
    """The callee vanishes and rtp_timeout fires: cause 44 on it, 16 on the caller (08b)."""
    call = await pbx.inbound_call("alice", exten="605", context="from-ua", endpoint="alice")
    erin = await call.connect_agent("erin", music_class=None)
    await erin.die(rtp_timeout=True, after_s=0.0)
    assert event_signatures(_events(pbx)) == event_signatures(_trace("08b"))
    assert _key_values(_events(pbx)) == _key_values(_trace("08b"))


async def test_dead_caller_without_rtp_timeout_stays_up_until_ami_hangup(
    pbx: FakeAsterisk,
) -> None:
    """08c: nothing happens; CoreShowChannels lists both legs; AMI Hangup ends both."""
    call = await pbx.inbound_call("alice", exten="603", context="from-ua", endpoint="alice")
    await call.connect_agent("bob")
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    before = len(pbx.events)
    await call.die(rtp_timeout=False)
    client.send("CoreShowChannels", action_id="s8c-2")
    listing = await client.until(lambda m: m.name == "CoreShowChannelsComplete")
    assert len(pbx.events) == before
    assert [m["ChannelStateDesc"] for m in listing if m.name == "CoreShowChannel"] == ["Up", "Up"]
    client.send("Hangup", [("Channel", call.name)], action_id="s8c-3")
    await client.until(lambda m: m.name == "Hangup" and m["Channel"] == call.name)
    hangup_part = pbx.events[before:]
    expected = _trace("08c")
    expected = expected[
        next(
            i
            for i, m in enumerate(expected)
            if m.name == "VarSet" and m["Variable"] == "BRIDGEPEER" and not m["Value"]
        ) :
    ]
    assert event_signatures(hangup_part) == event_signatures(expected)
    assert _key_values(hangup_part) == _key_values(expected)
    await client.close()


async def test_caller_cancelling_while_the_agent_rings_matches_02c(pbx: FakeAsterisk) -> None:
    """02c: DialState RINGING, then CANCEL: cause 127 with 487 / 500."""
    call = await pbx.inbound_call("alice", exten="605", context="from-ua", endpoint="alice")
    ringing = asyncio.create_task(call.connect_agent("erin", ring_s=5.0, music_class=None))
    await pbx.switch.wait_until(lambda: any(e.name == "DialState" for e in pbx.events), 2.0)
    await call.hangup()
    erin = await asyncio.wait_for(ringing, 2.0)
    assert not erin.alive
    assert event_signatures(_events(pbx)) == event_signatures(_trace("02c"))
    assert _key_values(_events(pbx)) == _key_values(_trace("02c"))


async def test_hold_and_unhold_match_04c(pbx: FakeAsterisk) -> None:
    """Hold on the presser, MOH on the other leg with its music class, and back (04c)."""
    alice = await pbx.inbound_call("alice", exten="603", context="from-ua", endpoint="alice")
    bob = await alice.connect_agent("bob")
    await bob.hold(by=alice)
    assert bob.on_hold
    await bob.unhold(by=alice)
    ours = _between(_events(pbx), "Hold", "MusicOnHoldStop")
    theirs = _between(_trace("04c"), "Hold", "MusicOnHoldStop")
    assert event_signatures(ours) == event_signatures(theirs)
    assert _key_values(ours) == _key_values(theirs)


async def test_moh_class_is_the_held_channels_music_class(pbx: FakeAsterisk) -> None:
    """04a: MusicOnHoldStart's Class is the held leg's CHANNEL(musicclass), not Hold's."""
    alice = await pbx.inbound_call("alice", exten="613", context="from-ua", endpoint="alice")
    bob = await alice.connect_agent("bob", music_class="quiet")
    await bob.hold(by=alice)
    (hold,) = pbx.events_named("Hold")
    (moh,) = pbx.events_named("MusicOnHoldStart")
    assert (hold["MusicClass"], moh["Class"], moh["Channel"]) == ("default", "quiet", bob.name)


async def test_whisper_chanspy_on_the_held_leg_matches_04a(pbx: FakeAsterisk) -> None:
    """Local/whisper@lab-spy/n Originate: ChanSpy stops the held leg's MOH for good (04a)."""
    alice = await pbx.inbound_call("alice", exten="613", context="from-ua", endpoint="alice")
    bob = await alice.connect_agent("bob", music_class="quiet")
    await bob.hold(by=alice)
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    sent = next(m for m in messages("04a", sent=True) if m.name == "Originate")
    fields = [(k, f"SPYTARGET={bob.name}" if k == "Variable" else v) for k, v in sent.fields[1:]]
    client.send("Originate", [f for f in fields if f[0] != "ActionID"], action_id="s4a-2")
    await client.until(lambda m: m.name == "ChanSpyStop")
    await bob.unhold(by=alice)
    ours = _from_local(_events(pbx))
    theirs = _from_local(_trace("04a"))
    assert event_signatures(ours) == event_signatures(theirs)
    assert _key_values(ours) == _key_values(theirs)
    assert pbx.events_named("MusicOnHoldStop")[0]["Channel"] == bob.name
    await client.close()


async def test_talk_detection_reports_start_and_stop_like_03a() -> None:
    """ChannelTalkingStart 20 ms after onset, Stop 2.5 s after the end, Duration 4040 ms
    for a 4.06 s burst (03a's first burst), on an injected clock."""
    clock = ManualClock()
    async with FakeAsterisk(clock=clock) as pbx:
        carol = await pbx.inbound_call("carol", exten="601", context="from-ua", endpoint="carol")
        await _settle()
        clock.advance(0.01)  # Answer, Set(TALK_DETECT(set)=), Wait(25)
        await _settle()
        assert carol.talk_detection
        talking = asyncio.create_task(carol.talk(4.06))
        await _settle()
        clock.advance(0.019)
        await _settle()
        assert pbx.events_named("ChannelTalkingStart") == []
        clock.advance(0.001)
        await _settle()
        assert len(pbx.events_named("ChannelTalkingStart")) == 1
        clock.advance(4.04 + 2.5 - 0.001)
        await _settle()
        assert pbx.events_named("ChannelTalkingStop") == []
        clock.advance(0.002)
        await _settle()
        (stop,) = pbx.events_named("ChannelTalkingStop")
        assert stop["Duration"] == "4040"
        await talking
        talk = [m for m in _events(pbx) if m.name.startswith("ChannelTalking")]
        assert event_signatures(talk) == event_signatures(
            [m for m in _trace("03a") if m.name.startswith("ChannelTalking")][:2]
        )


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_talk_without_talk_detect_sends_nothing(pbx: FakeAsterisk) -> None:
    """Speech is only reported on a channel with TALK_DETECT set."""
    call = await pbx.inbound_call("carol")
    await call.talk(0.01)
    assert [e for e in pbx.events if e.name.startswith("ChannelTalking")] == []


async def test_talk_silence_threshold_can_be_overridden() -> None:
    """A test may shorten the silence threshold; Duration still excludes it."""
    clock = ManualClock()
    async with FakeAsterisk(clock=clock) as pbx:
        call = await pbx.inbound_call("carol")
        pbx.switch.set_variable(call.channel, "TALK_DETECT(set)", "1200")
        talking = asyncio.create_task(call.talk(0.05, silence_threshold_ms=10))
        await _advance(clock, 0.02, 0.03)
        await talking
        await _advance(clock, 0.009)
        assert pbx.events_named("ChannelTalkingStop") == []
        await _advance(clock, 0.001)
        (stop,) = pbx.events_named("ChannelTalkingStop")
        assert stop["Duration"] == "30"


async def test_a_gap_shorter_than_the_threshold_does_not_split_a_burst() -> None:
    """03a: 1.02-2.46 s and 2.94-5.08 s of speech are one burst, Duration 4040 ms."""
    clock = ManualClock()
    async with FakeAsterisk(clock=clock) as pbx:
        call = await pbx.inbound_call("carol")
        pbx.switch.set_variable(call.channel, "TALK_DETECT(set)", "")
        first = asyncio.create_task(call.talk(1.44))
        await _advance(clock, 0.02, 1.42)
        await first
        await _advance(clock, 0.48)
        second = asyncio.create_task(call.talk(2.14))
        await _advance(clock, 2.14)
        await second
        await _advance(clock, 2.5)
        assert len(pbx.events_named("ChannelTalkingStart")) == 1
        (stop,) = pbx.events_named("ChannelTalkingStop")
        assert stop["Duration"] == "4040"


async def _advance(clock: ManualClock, *steps: float) -> None:
    """Move the injected clock step by step, letting the fake's tasks run in between."""
    await _settle()
    for step in steps:
        clock.advance(step)
        await _settle()


async def test_dtmf_matches_05b(pbx: FakeAsterisk) -> None:
    """DTMFBegin then DTMFEnd with DurationMs and Direction Received (05b)."""
    call = await pbx.inbound_call("carol")
    await call.dtmf("5", duration_ms=10)
    ours = [e for e in pbx.events if e.name.startswith("DTMF")]
    theirs = [e for e in messages("05b") if e.name.startswith("DTMF")]
    assert event_signatures(ours) == event_signatures(theirs)
    assert [(e["Digit"], e["Direction"]) for e in ours] == [("5", "Received"), ("5", "Received")]


async def test_queue_call_adds_agent_events_around_the_bridge(pbx: FakeAsterisk) -> None:
    """Queue(): AgentCalled after DialBegin, AgentConnect before the bridge, AgentComplete
    after it; the agent's leg runs AppQueue."""
    call = await pbx.inbound_call("79161234567", "Иван")
    agent = await call.connect_agent("agent-1001", queue="support", member_name="Alice")
    await call.hangup()
    order = [e.name for e in pbx.events if e.name.startswith(("Agent", "Dial", "Bridge"))]
    assert order == [
        "DialBegin",
        "AgentCalled",
        "DialEnd",
        "AgentConnect",
        "BridgeCreate",
        "BridgeEnter",
        "BridgeEnter",
        "BridgeLeave",
        "BridgeLeave",
        "BridgeDestroy",
        "AgentComplete",
    ]
    (connect,) = pbx.events_named("AgentConnect")
    assert (connect["Queue"], connect["MemberName"], connect["DestChannel"]) == (
        "support",
        "Alice",
        agent.name,
    )
    (complete,) = pbx.events_named("AgentComplete")
    assert complete["Reason"] == "caller"


async def test_feature_code_emits_dtmf_then_a_channel_user_event(pbx: FakeAsterisk) -> None:
    """A feature code: the digits, then UserEvent with the channel snapshot and fields."""
    call = await pbx.inbound_call("alice")
    agent = await call.connect_agent("agent-1001")
    await pbx.feature(agent, "Farewell", {"Script": "farewell"}, digits="*5")
    (event,) = pbx.events_named("UserEvent")
    assert event["Channel"] == agent.name
    assert event.fields[-2:] == (("UserEvent", "Farewell"), ("Script", "farewell"))
    assert [e["Digit"] for e in pbx.events_named("DTMFEnd")] == ["*", "5"]


async def test_hangup_of_an_unbridged_channel_has_no_cause_like_05b(pbx: FakeAsterisk) -> None:
    """BYE on a channel in the dialplan: HangupRequest without Cause, Hangup cause 0."""
    call = await pbx.inbound_call("carol")
    await call.answer()
    await call.hangup()
    ends = [e for e in pbx.events if "Hangup" in e.name]
    assert [(e.name, e.get("Cause")) for e in ends] == [
        ("HangupRequest", None),
        ("SoftHangupRequest", "16"),
        ("Hangup", "0"),
    ]


async def test_uniqueids_are_epoch_style_and_linked_to_the_caller(pbx: FakeAsterisk) -> None:
    """Uniqueid <epoch>.<n>; the dialled leg's Linkedid is the caller's Uniqueid."""
    call = await pbx.inbound_call("alice", endpoint="alice")
    agent = await call.connect_agent("bob")
    assert re.fullmatch(r"\d{10}\.\d+", call.uniqueid)
    assert agent.linkedid == call.uniqueid
    assert re.fullmatch(r"PJSIP/bob-[0-9a-f]{8}", agent.name)


async def test_rtcp_noise_is_sent_only_when_asked_for() -> None:
    """RTCPReceived for an answered channel every rtcp_interval_s; none by default."""
    clock = ManualClock()
    async with FakeAsterisk(clock=clock) as pbx:
        call = await pbx.inbound_call("alice", endpoint="alice")
        await call.answer()
        await _advance(clock, 5.0)
        assert pbx.events_named("RTCPReceived") == []
        pbx.rtcp_interval_s = 5.0
        await _advance(clock, 1.0, 5.0)
        (report,) = pbx.events_named("RTCPReceived")
        assert (report["Channel"], report["PT"]) == (call.name, "201(RR)")

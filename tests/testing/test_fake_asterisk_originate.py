"""Originate on the fake Asterisk: the transcripts' actions replayed, outcomes compared
event for event with 06a and 07a-07f."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pbx_agent.testing.fake_asterisk import (
    AmdVerdict,
    DialOutcome,
    DialScript,
    FakeAsterisk,
)
from pbx_agent.wire.ami import AmiMessage
from tests.testing.ami_client import AmiTestClient
from tests.testing.asterisk_traces import NOISE, event_signatures, messages

GREETING = frozenset({"FullyBooted", "SuccessfulAuth"})


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.001) as fake:
        yield fake


def _trace_events(prefix: str) -> list[AmiMessage]:
    return [m for m in messages(prefix) if m.kind == "event" and m.name not in NOISE | GREETING]


async def _replay(pbx: FakeAsterisk, prefix: str) -> tuple[AmiTestClient, list[AmiMessage]]:
    """Send the transcript's Originate actions; wait until every one has ended."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    originates = [m for m in messages(prefix, sent=True) if m.name == "Originate"]
    for count, action in enumerate(originates, start=1):
        client.send("Originate", action.fields[2:], action_id=action.action_id)
        record = await pbx.wait_originated(count)
        if record.channel is not None and record.channel.alive:
            await pbx.leg(record.channel).wait_hangup(2.0)
    return client, pbx.events


def _projection(events: list[AmiMessage]) -> list[tuple[str | None, ...]]:
    keys = ("Response", "Reason", "Cause", "TechCause", "DialStatus", "Variable", "Value")
    return [(e.name, *(e.get(k) for k in keys)) for e in events if e.name != "VarSet"]


async def test_answered_originate_into_a_context_matches_07a(pbx: FakeAsterisk) -> None:
    """200 OK: Success, Reason 4, the real channel name; the context's dialplan runs."""
    client, events = await _replay(pbx, "07a")
    ours = [e for e in events if e.name != "DeviceStateChange"]
    theirs = [e for e in _trace_events("07a") if e.name != "DeviceStateChange"]
    assert event_signatures(ours) == event_signatures(theirs)
    (response,) = pbx.events_named("OriginateResponse")
    assert response["Channel"].startswith("PJSIP/bob-")
    assert [e["Value"] for e in pbx.events_named("VarSet")][:1] == ["a"]
    await client.close()


async def test_busy_endpoint_fails_with_reason_0_and_cause_17(pbx: FakeAsterisk) -> None:
    """486: Failure, Reason 0, Channel = the dial string, Hangup 17 / 486 (07b)."""
    pbx.script_dial("dave", DialScript(DialOutcome.BUSY))
    client, events = await _replay(pbx, "07b")
    assert sorted(event_signatures(events)) == sorted(event_signatures(_trace_events("07b")))
    assert sorted(_projection(events), key=str) == sorted(
        _projection(_trace_events("07b")), key=str
    )
    await client.close()


async def test_declined_endpoint_matches_07c(pbx: FakeAsterisk) -> None:
    """603: DialEnd NOANSWER, Failure Reason 0, Hangup 21 Call Rejected / 603."""
    pbx.script_dial("PJSIP/carol", DialScript(DialOutcome.DECLINE))
    client, events = await _replay(pbx, "07c")
    assert event_signatures(events) == event_signatures(_trace_events("07c"))
    assert _projection(events) == _projection(_trace_events("07c"))
    await client.close()


async def test_unanswered_endpoint_times_out_like_07d(pbx: FakeAsterisk) -> None:
    """180 then nothing: Failure Reason 3 at the Timeout, Hangup 19 / 480."""
    pbx.script_dial("erin", DialScript(DialOutcome.NO_ANSWER))
    client, events = await _replay(pbx, "07d")
    assert event_signatures(events) == event_signatures(_trace_events("07d"))
    assert _projection(events) == _projection(_trace_events("07d"))
    await client.close()


async def test_unknown_endpoint_gives_only_a_failed_originate_response(pbx: FakeAsterisk) -> None:
    """PJSIP/nobody: Failure, Reason 0, Uniqueid <unknown>, no channel at all (07e)."""
    client, events = await _replay(pbx, "07e")
    assert [e.fields for e in events] == [
        tuple(f if f[0] != "ActionID" else ("ActionID", "s7e-2") for f in e.fields)
        for e in _trace_events("07e")
    ]
    await client.close()


async def test_channel_id_becomes_the_uniqueid_even_on_failure(pbx: FakeAsterisk) -> None:
    """07f: ChannelId is the channel's Uniqueid and the failed response's Uniqueid; an
    Application originate ends with Hangup cause 0 and no SoftHangupRequest."""
    pbx.script_dial("dave", DialScript(DialOutcome.BUSY))
    client, events = await _replay(pbx, "07f")
    assert event_signatures(events) == event_signatures(_trace_events("07f"))
    assert _projection(events) == _projection(_trace_events("07f"))
    responses = pbx.events_named("OriginateResponse")
    assert [r["Uniqueid"] for r in responses] == ["lab-orig-0001", "lab-orig-0002"]
    assert {e["Uniqueid"] for e in pbx.events_named("Newchannel")} == {
        "lab-orig-0001",
        "lab-orig-0002",
    }
    await client.close()


async def test_amd_verdict_arrives_as_two_varsets_like_06a(pbx: FakeAsterisk) -> None:
    """A scripted machine answer: AMDSTATUS then AMDCAUSE from the AMD() step (06a)."""
    pbx.script_dial("carol", DialScript(amd=AmdVerdict.machine_long_greeting(after_s=0.01)))
    client, events = await _replay(pbx, "06a")
    ours = [e for e in events if e.name != "DeviceStateChange"]
    theirs = [e for e in _trace_events("06a") if e.name != "DeviceStateChange"]
    assert event_signatures(ours) == event_signatures(theirs)
    verdict = [
        (e["Variable"], e["Value"])
        for e in pbx.events_named("VarSet")
        if e["Variable"].startswith("AMD")
    ]
    assert verdict == [("AMDSTATUS", "MACHINE"), ("AMDCAUSE", "LONGGREETING-1500-1500")]
    await client.close()


async def test_amd_verdict_without_a_known_context_still_runs_amd(pbx: FakeAsterisk) -> None:
    """An endpoint scripted with a verdict runs AMD() in a context the fake does not know."""
    pbx.script_dial("79161234567", DialScript(amd=AmdVerdict.human(after_s=0.01)))
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    fields = [
        ("Channel", "PJSIP/79161234567@trunk"),
        ("Context", "callback"),
        ("Exten", "s"),
        ("Async", "true"),
    ]
    client.send("Originate", fields, action_id="o")
    await client.until(lambda m: m.get("Variable") == "AMDCAUSE")
    record = await pbx.wait_originated()
    assert record.channel is not None
    assert record.channel.name.startswith("PJSIP/trunk-")
    assert pbx.leg(record.channel).variable("AMDSTATUS") == "HUMAN"
    await client.close()


async def test_synchronous_originate_answers_after_the_outcome(pbx: FakeAsterisk) -> None:
    """Without Async the response waits: Error 'Originate failed' for a busy line."""
    pbx.script_dial("dave", DialScript(DialOutcome.BUSY))
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    client.send("Originate", [("Channel", "PJSIP/dave"), ("Application", "Wait")], "o")
    seen = await client.until(lambda m: m.action_id == "o" and m.kind == "response")
    assert seen[-1]["Message"] == "Originate failed"
    assert "OriginateResponse" in [m.name for m in seen]
    await client.close()


async def test_originate_without_channel_is_refused(pbx: FakeAsterisk) -> None:
    """01c: 'Channel not specified'."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    client.send("Originate", action_id="o")
    assert (await client.response("o"))["Message"] == "Channel not specified"
    await client.close()


async def test_variables_are_split_like_asterisk_splits_them(pbx: FakeAsterisk) -> None:
    """Variable: A=1,B=x\\,y sets two variables; the escaped comma stays in B."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    fields = [
        ("Channel", "PJSIP/bob"),
        ("Application", "Wait"),
        ("Data", "1"),
        ("Variable", "A=1,B=x\\,y"),
        ("Async", "true"),
    ]
    client.send("Originate", fields, action_id="o")
    record = await pbx.wait_originated()
    assert record.channel is not None
    leg = pbx.leg(record.channel)
    assert (leg.variable("A"), leg.variable("B")) == ("1", "x,y")
    await client.close()

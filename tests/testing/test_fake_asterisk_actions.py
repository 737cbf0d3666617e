"""Actions the daemon sends that the transcripts show only in part: Redirect, PlayDTMF,
MixMonitor, QueueStatus, Status and Hangup on channels in various states."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pbx_agent.testing.fake_asterisk import FakeAsterisk
from tests.testing.ami_client import AmiTestClient


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.001) as fake:
        yield fake


@pytest.fixture
async def client(pbx: FakeAsterisk) -> AsyncIterator[AmiTestClient]:
    ami = await AmiTestClient.connect(pbx.ami_address)
    await ami.login()
    yield ami
    await ami.close()


async def test_redirect_of_a_bridged_caller_ends_the_agent_leg_and_runs_the_extension(
    pbx: FakeAsterisk, client: AmiTestClient
) -> None:
    """The caller leaves the bridge for another extension; the dialled agent is hung up."""
    pbx.dialplan.add("night-ivr", "s", [("Answer", ""), ("Playback", "custom/ivr"), ("Wait", "60")])
    call = await pbx.inbound_call("79161234567")
    agent = await call.connect_agent("agent-1001")
    fields = [("Channel", call.name), ("Context", "night-ivr"), ("Exten", "s"), ("Priority", "1")]
    client.send("Redirect", fields, action_id="r")
    assert (await client.response("r"))["Message"] == "Redirect successful"
    await client.until(lambda m: m.name == "Newexten" and m["Context"] == "night-ivr")
    assert not agent.alive
    assert call.alive
    assert [e["Channel"] for e in pbx.events_named("Hangup")] == [agent.name]
    assert call.channel.bridge is None


async def test_redirect_of_a_missing_channel_is_refused(client: AmiTestClient) -> None:
    """An unknown channel: Error 'No such channel'."""
    client.send("Redirect", [("Channel", "PJSIP/x-00000000"), ("Exten", "s")], action_id="r")
    response = await client.response("r")
    assert (response.name, response["Message"]) == ("Error", "No such channel")


async def test_play_dtmf_sends_digits_towards_the_channel(
    pbx: FakeAsterisk, client: AmiTestClient
) -> None:
    """PlayDTMF: queued, then DTMFBegin/End with Direction Sent."""
    call = await pbx.inbound_call("alice")
    client.send("PlayDTMF", [("Channel", call.name), ("Digit", "7"), ("Duration", "5")], "d")
    assert (await client.response("d"))["Message"] == "DTMF successfully queued"
    end = await client.event("DTMFEnd")
    assert (end["Digit"], end["Direction"], end["DurationMs"]) == ("7", "Sent", "5")


async def test_mix_monitor_start_and_stop_are_reported(
    pbx: FakeAsterisk, client: AmiTestClient
) -> None:
    """MixMonitor / StopMixMonitor answer Success and raise the matching events."""
    call = await pbx.inbound_call("alice")
    client.send("MixMonitor", [("Channel", call.name), ("File", "/tmp/x.wav")], "m")
    assert (await client.response("m")).name == "Success"
    assert (await client.event("MixMonitorStart"))["Channel"] == call.name
    client.send("StopMixMonitor", [("Channel", call.name)], "s")
    assert (await client.event("MixMonitorStop"))["Channel"] == call.name


async def test_queue_status_lists_params_members_and_waiting_callers(
    pbx: FakeAsterisk, client: AmiTestClient
) -> None:
    """QueueStatus: list ack, QueueParams, QueueMember per member, Complete with the count."""
    pbx.add_queue_member("support", "agent-1001", "Alice")
    pbx.add_queue_member("support", "agent-1002", "Bob")
    client.send("QueueStatus", [("Queue", "support")], "q")
    items = await client.until(lambda m: m.name == "QueueStatusComplete")
    listed = [(m.name, m.get("Name")) for m in items if m.name.startswith("Queue")]
    assert listed == [
        ("QueueParams", None),
        ("QueueMember", "Alice"),
        ("QueueMember", "Bob"),
        ("QueueStatusComplete", None),
    ]
    assert items[-1]["ListItems"] == "3"


async def test_queue_application_connects_the_first_member(pbx: FakeAsterisk) -> None:
    """A dialplan Queue() step dials the queue's member and bridges the caller."""
    pbx.add_queue_member("support", "agent-1001", "Alice")
    pbx.dialplan.add("from-pstn", "100", [("Answer", ""), ("Queue", "support")])
    call = await pbx.inbound_call("79161234567", exten="100", context="from-pstn")
    await pbx.switch.wait_until(lambda: bool(pbx.events_named("AgentConnect")), 2.0)
    peer = call.peer()
    assert peer is not None
    assert peer.endpoint == "agent-1001"
    steps = [(e["Application"], e["Priority"]) for e in pbx.events_named("Newexten")]
    assert [s for s in steps if s[0] in ("Answer", "Queue")] == [("Answer", "1"), ("Queue", "2")]


async def test_status_of_a_missing_channel_is_refused(client: AmiTestClient) -> None:
    """Status with an unknown Channel: Error 'No such channel'."""
    client.send("Status", [("Channel", "PJSIP/x-00000000")], "s")
    assert (await client.response("s"))["Message"] == "No such channel"


async def test_hangup_with_a_cause_sets_the_hangup_cause(
    pbx: FakeAsterisk, client: AmiTestClient
) -> None:
    """01c: AMI Hangup Cause 16 on an answered channel: SoftHangupRequest, Hangup 16;
    without a cause (03b) the cause is 0."""
    first = await pbx.inbound_call("alice")
    second = await pbx.inbound_call("bob")
    await first.answer()
    await second.answer()
    client.send("Hangup", [("Channel", first.name), ("Cause", "16")], "h1")
    client.send("Hangup", [("Channel", second.name)], "h2")
    await client.until(lambda m: m.name == "Hangup" and m["Channel"] == second.name)
    causes = {e["Channel"]: e["Cause"] for e in pbx.events_named("Hangup")}
    assert causes == {first.name: "16", second.name: "0"}


async def test_hangup_of_a_whisper_channel_ends_both_local_halves(
    pbx: FakeAsterisk, client: AmiTestClient
) -> None:
    """The daemon hangs its whisper channel up at unhold (04e): both halves end and the
    spy stops."""
    pbx.switch.sound_lengths["custom/announcement"] = 1000.0
    alice = await pbx.inbound_call("alice", endpoint="alice")
    bob = await alice.connect_agent("bob", music_class="quiet")
    await bob.hold(by=alice)
    fields = [
        ("Channel", "Local/whisper@lab-spy/n"),
        ("Application", "Playback"),
        ("Data", "custom/announcement"),
        ("Variable", f"SPYTARGET={bob.name}"),
        ("Async", "true"),
    ]
    client.send("Originate", fields, "o")
    await client.event("ChanSpyStart")
    record = await pbx.wait_originated()
    assert record.channel is not None
    client.send("Hangup", [("Channel", record.channel.name)], "h")
    await client.event("ChanSpyStop")
    local = [e["Channel"] for e in pbx.events_named("Hangup")]
    assert [name.rsplit(";", 1)[1] for name in local] == ["1", "2"]
    assert bob.alive


async def test_a_history_limit_keeps_the_newest_records_only(
    pbx: FakeAsterisk, client: AmiTestClient
) -> None:
    """The built-in simulator runs for days: with history_limit set, the fake's records of
    events and actions keep a bounded tail, the newest last; without it, everything."""
    pbx.history_limit = 10
    for n in range(60):
        pbx.user_event("Tick", {"N": str(n)})
        client.send("Ping", action_id=f"p{n}")
        await client.response(f"p{n}")
    assert len(pbx.events) <= 20
    assert len(pbx.received) <= 20
    assert pbx.events[-1]["N"] == "59"
    assert pbx.received[-1].message["ActionID"] == "p59"
    pbx.history_limit = None
    for n in range(30):
        pbx.user_event("Tock", {"N": str(n)})
    assert sum(1 for e in pbx.events if e.get("UserEvent") == "Tock") == 30

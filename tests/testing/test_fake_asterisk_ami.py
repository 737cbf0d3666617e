"""The fake Asterisk's AMI server, seen by a raw socket client, against transcripts 01a-01c."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from pbx_agent.clock import ManualClock
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from pbx_agent.wire.ami import AmiBanner, AmiDecoder, AmiMessage, encode_message
from tests.testing.ami_client import AmiTestClient, normalized
from tests.testing.asterisk_traces import NOISE, messages, raw


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk() as fake:
        yield fake


async def test_banner_is_one_line_without_a_blank_line() -> None:
    """The first bytes are exactly the 01c banner line."""
    async with FakeAsterisk() as pbx:
        client = await AmiTestClient.connect(pbx.ami_address)
        await client.login()
        assert bytes(client.received).startswith(b"Asterisk Call Manager/11.0.0\r\nResponse: ")
        await client.close()


async def test_wrong_secret_is_refused_after_the_delay_then_the_connection_closes() -> None:
    """01a: nothing until the refusal delay has passed, then the exact bytes, then EOF."""
    clock = ManualClock()
    async with FakeAsterisk(clock=clock, auth_failure_delay_s=1.0) as pbx:
        client = await AmiTestClient.connect(pbx.ami_address)
        client.send_raw(raw("01a", "sent.txt").split(b"Action: Ping")[0])
        await pbx.wait_for_action("Login")
        await asyncio.sleep(0.05)
        assert bytes(client.received) in (b"", b"Asterisk Call Manager/11.0.0\r\n")
        clock.advance(1.0)
        await client.read_to_eof()
        assert bytes(client.received) == raw("01a")
        await client.close()


async def test_events_off_session_answers_byte_for_byte_as_01b(pbx: FakeAsterisk) -> None:
    """01b replayed: Login with Events: off, Ping, Events x3, Logoff; only the Ping time differs."""
    client = await AmiTestClient.connect(pbx.ami_address)
    client.send_raw(raw("01b", "sent.txt"))
    await client.read_to_eof()
    timestamp = re.compile(rb"Timestamp: \d+\.\d{6}\r\n")
    assert timestamp.sub(b"Timestamp: *\r\n", bytes(client.received)) == timestamp.sub(
        b"Timestamp: *\r\n", raw("01b")
    )
    await client.close()


async def test_basics_session_replays_01c_message_for_message(pbx: FakeAsterisk) -> None:
    """01c replayed (actions, then a call to 602, then more actions): same messages, same
    fields in the same order, same values except times, ids and ports."""
    sent = messages("01c", sent=True)
    before_call = [m for m in sent if int(m["ActionID"].split("-")[1]) <= 11]
    after_call = [m for m in sent if int(m["ActionID"].split("-")[1]) > 11]
    client = await AmiTestClient.connect(pbx.ami_address)
    for action in before_call:
        client.send_raw(_encode(action))
    await client.response("c-11")
    # alice calls 602: Answer, Wait(30) (the lab dialplan of the transcripts).
    await pbx.inbound_call("alice", exten="602", context="from-ua", endpoint="alice")
    await client.until(lambda m: m.name == "Newexten" and m.get("Application") == "Wait")
    for action in after_call:
        client.send_raw(_encode(action))
    await client.read_to_eof()
    received = [m for m in _all(client) if m.name not in NOISE]
    expected = [m for m in messages("01c") if m.name not in NOISE]
    assert len(expected) == 42
    assert [normalized(m) for m in received] == [normalized(m) for m in expected]
    await client.close()


def _all(client: AmiTestClient) -> list[AmiMessage]:
    decoder = AmiDecoder()
    decoder.feed(bytes(client.received))
    out = []
    while (message := decoder.next_message()) is not None:
        if not isinstance(message, AmiBanner):
            out.append(message)
    return out


def _encode(message: AmiMessage) -> bytes:
    return encode_message(message.fields)


async def test_action_before_login_is_refused(pbx: FakeAsterisk) -> None:
    """An unauthenticated Ping gets Permission denied, not a Pong."""
    client = await AmiTestClient.connect(pbx.ami_address)
    client.send("Ping", action_id="p")
    response = await client.response("p")
    assert (response.name, response["Message"]) == ("Error", "Permission denied")
    await client.close()


async def test_every_logged_in_client_receives_the_events(pbx: FakeAsterisk) -> None:
    """Two AMI sessions at once both see a new call."""
    first = await AmiTestClient.connect(pbx.ami_address)
    second = await AmiTestClient.connect(pbx.ami_address)
    await first.login()
    await second.login()
    call = await pbx.inbound_call("79161234567", "Иван")
    for client in (first, second):
        event = await client.event("Newchannel")
        assert (event["Channel"], event["CallerIDName"]) == (call.name, "Иван")
        await client.close()


async def test_event_mask_keeps_only_the_named_classes(pbx: FakeAsterisk) -> None:
    """EventMask: system leaves out call events; the next Ping reply still arrives."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login(Events="system")
    await pbx.inbound_call("alice")
    client.send("Ping", action_id="after")
    seen = await client.until(lambda m: m.action_id == "after")
    assert [m.name for m in seen if m.kind == "event"] == ["FullyBooted"]
    await client.close()


async def test_actions_are_recorded_in_order_with_their_arrival_time(pbx: FakeAsterisk) -> None:
    """Every action is in ``received`` with the fake's clock time and its connection."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    client.send("Getvar", [("Variable", "FOO")], action_id="g")
    message = await pbx.wait_for_action("getvar")
    assert message["Variable"] == "FOO"
    assert [r.name for r in pbx.received] == ["Login", "Getvar"]
    assert pbx.received[1].connection == pbx.received[0].connection
    assert pbx.received[0].at <= pbx.received[1].at
    await client.close()


async def test_wait_for_action_times_out_when_the_action_never_comes(pbx: FakeAsterisk) -> None:
    """wait_for_action raises TimeoutError instead of hanging."""
    with pytest.raises(TimeoutError):
        await pbx.wait_for_action("Originate", timeout_s=0.05)


async def test_global_variable_set_without_channel_reads_back(pbx: FakeAsterisk) -> None:
    """Setvar without Channel sets a global (VarSet Channel: none) that Getvar returns."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    client.send("Setvar", [("Variable", "NIGHT"), ("Value", "1")], action_id="s")
    varset = await client.event("VarSet")
    assert (varset["Channel"], varset["Uniqueid"], varset["Value"]) == ("none", "none", "1")
    client.send("Getvar", [("Variable", "NIGHT")], action_id="g")
    assert (await client.response("g"))["Value"] == "1"
    await client.close()


async def test_setvar_talk_detect_sends_no_varset_and_enables_detection(pbx: FakeAsterisk) -> None:
    """03b: Setvar TALK_DETECT(set) answers Variable Set, emits nothing, arms detection."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    call = await pbx.inbound_call("carol")
    client.send(
        "Setvar",
        [("Channel", call.name), ("Variable", "TALK_DETECT(set)"), ("Value", "")],
        action_id="t",
    )
    seen = await client.until(lambda m: m.action_id == "t")
    assert seen[-1]["Message"] == "Variable Set"
    assert [m.get("Variable") for m in seen if m.name == "VarSet"] == ["SIPDOMAIN"]
    assert call.talk_detection
    await client.close()


async def test_core_status_counts_the_live_channels(pbx: FakeAsterisk) -> None:
    """CoreStatus reports the channels that are up."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    await pbx.inbound_call("alice")
    client.send("CoreStatus", action_id="s")
    assert (await client.response("s"))["CoreCurrentCalls"] == "1"
    await client.close()


async def test_user_event_action_is_broadcast_with_its_headers(pbx: FakeAsterisk) -> None:
    """UserEvent: the event carries every header but Action and UserEvent's own line."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    client.send("UserEvent", [("UserEvent", "Farewell"), ("Agent", "1001")], action_id="u")
    event = await client.event("UserEvent")
    assert event.fields[1:] == (
        ("Privilege", "user,all"),
        ("UserEvent", "Farewell"),
        ("ActionID", "u"),
        ("Agent", "1001"),
    )
    await client.close()


async def test_garbage_block_gets_an_error_and_the_session_goes_on(pbx: FakeAsterisk) -> None:
    """A block without an Action header is answered with an error; Ping still works."""
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    client.send_raw(b"Foo: bar\r\n\r\n")
    error = (await client.until(lambda m: m.kind == "response"))[-1]
    assert (error.name, error["Message"]) == ("Error", "Missing action in request")
    client.send("Ping", action_id="p")
    assert (await client.response("p"))["Ping"] == "Pong"
    await client.close()


async def test_a_failing_action_handler_answers_an_error_and_is_recorded(
    pbx: FakeAsterisk,
) -> None:
    """A bug in the fake shows up as an Error reply and in ``errors``, not as a hang."""

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    pbx.switch.get_variable = broken  # type: ignore[method-assign]
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    client.send("Getvar", [("Variable", "X")], action_id="s")
    response = await client.response("s")
    assert response.name == "Error"
    assert [type(e) for e in pbx.errors] == [RuntimeError]
    client.send("Ping", action_id="p")
    assert (await client.response("p"))["Ping"] == "Pong"
    await client.close()

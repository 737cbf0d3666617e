"""Fault injection on the fake Asterisk, seen from a raw AMI client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pbx_agent.testing.fake_asterisk import FakeAsterisk
from pbx_agent.wire.ami import AmiProtocolError, encode_message
from tests.testing.ami_client import AmiTestClient


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.001) as fake:
        yield fake


async def _logged_in(pbx: FakeAsterisk) -> AmiTestClient:
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.login()
    await client.event("SuccessfulAuth")
    return client


async def test_drop_connections_closes_every_client_socket(pbx: FakeAsterisk) -> None:
    """Both clients see end of stream; a new client can connect and log in."""
    first = await _logged_in(pbx)
    second = await _logged_in(pbx)
    pbx.drop_connections()
    assert await first.read_to_eof() == []
    assert await second.read_to_eof() == []
    third = await _logged_in(pbx)
    await third.close()
    await first.close()
    await second.close()


async def test_frozen_fake_answers_nothing_until_thawed(pbx: FakeAsterisk) -> None:
    """Half-open: Ping goes unanswered and events are not sent, but the action is recorded;
    after thaw the next Ping is answered."""
    client = await _logged_in(pbx)
    pbx.freeze()
    client.send("Ping", action_id="frozen")
    await pbx.wait_for_action("Ping")
    await pbx.inbound_call("alice")
    with pytest.raises(TimeoutError):
        await client.next(timeout_s=0.1)
    pbx.thaw()
    client.send("Ping", action_id="thawed")
    response = await client.response("thawed")
    assert response["Ping"] == "Pong"
    await client.close()


async def test_send_raw_writes_the_bytes_as_they_are(pbx: FakeAsterisk) -> None:
    """Whatever is injected arrives unchanged, even garbage."""
    client = await _logged_in(pbx)
    before = len(client.received)
    pbx.send_raw(b"Event: Bogus\r\nNot a header\r\n\r\n")
    with pytest.raises(AmiProtocolError, match="Not a header"):
        await client.next()
    assert b"Event: Bogus\r\nNot a header\r\n\r\n" in bytes(client.received[before:])
    await client.close()


@pytest.mark.parametrize("chunking", [1, 3, [5, 1, 2]])
async def test_chunked_writes_split_inside_utf8_characters_decode_intact(
    pbx: FakeAsterisk, chunking: int | list[int]
) -> None:
    """Messages written in small chunks (cutting 'Иван' in the middle of a character)
    reach the client byte for byte."""
    client = await _logged_in(pbx)
    pbx.chunking = chunking
    call = await pbx.inbound_call("79161234567", "Иван")
    event = await client.event("Newchannel")
    assert event["CallerIDName"] == "Иван"
    assert encode_message(event.fields) == encode_message(pbx.events_named("Newchannel")[0].fields)
    assert call.name == event["Channel"]
    await client.close()


async def test_ignored_action_is_recorded_and_never_answered(pbx: FakeAsterisk) -> None:
    """ignore_actions: Getvar gets no reply; other actions still do."""
    pbx.ignore_actions = {"Getvar"}
    client = await _logged_in(pbx)
    client.send("Getvar", [("Variable", "X")], action_id="g")
    client.send("Ping", action_id="p")
    seen = await client.until(lambda m: m.action_id == "p")
    assert [m.action_id for m in seen if m.kind == "response"] == ["p"]
    assert (await pbx.wait_for_action("Getvar"))["Variable"] == "X"
    await client.close()


async def test_restart_drops_clients_and_keeps_live_channels(pbx: FakeAsterisk) -> None:
    """After restart a new session on the same port lists the calls still up, not the
    ones that ended."""
    client = await _logged_in(pbx)
    kept = await pbx.inbound_call("alice")
    gone = await pbx.inbound_call("bob")
    await gone.hangup()
    address = pbx.ami_address
    await pbx.restart()
    assert await client.read_to_eof(timeout_s=2.0) is not None
    assert pbx.ami_address == address
    again = await _logged_in(pbx)
    again.send("CoreShowChannels", action_id="c")
    listing = await again.until(lambda m: m.name == "CoreShowChannelsComplete")
    assert [m["Channel"] for m in listing if m.name == "CoreShowChannel"] == [kept.name]
    await again.close()
    await client.close()


async def test_client_that_never_logs_in_is_disconnected(pbx: FakeAsterisk) -> None:
    """Asterisk's authtimeout: no Login within the limit closes the socket."""
    pbx.auth_timeout_s = 0.05
    client = await AmiTestClient.connect(pbx.ami_address)
    await client.read_to_eof(timeout_s=2.0)
    assert bytes(client.received) == b"Asterisk Call Manager/11.0.0\r\n"
    await client.close()


async def test_logoff_says_goodbye_and_closes(pbx: FakeAsterisk) -> None:
    """01b: Goodbye, 'Thanks for all the fish.', then end of stream."""
    client = await _logged_in(pbx)
    client.send("Logoff", action_id="bye")
    rest = await client.read_to_eof()
    assert [(m.name, m.get("Message")) for m in rest] == [("Goodbye", "Thanks for all the fish.")]
    await client.close()

"""The daemon's AMI client against the fake Asterisk over loopback TCP.

Each panoramisk 1.4 defect named in the foundation issue has a test here showing the
project's client handles it (and, where it is cheap to show, that panoramisk does not).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from pbx_agent.errors import PbxActionTimeout, PbxAuthenticationFailed, PbxConnectionLost
from pbx_agent.pbx.ami_client import AmiClient, AmiSettings
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from pbx_agent.wire.ami import AmiMessage


def settings(pbx: FakeAsterisk, **overrides: object) -> AmiSettings:
    host, port = pbx.ami_address
    values: dict[str, object] = {
        "host": host,
        "port": port,
        "username": "lab",
        "secret": "not-a-real-secret",
        "connect_timeout_s": 2.0,
        "action_timeout_s": 1.0,
        "ping_interval_s": 30.0,
        "ping_timeout_s": 0.3,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    values.update(overrides)
    return AmiSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk() as fake:
        yield fake


@contextlib.asynccontextmanager
async def client(
    pbx: FakeAsterisk, events: list[AmiMessage] | None = None, **overrides: object
) -> AsyncIterator[AmiClient]:
    ami = AmiClient(
        settings(pbx, **overrides), on_event=(events.append if events is not None else None)
    )
    await ami.start()
    try:
        yield ami
    finally:
        await ami.close()


async def wait_for(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_login_and_ping(pbx: FakeAsterisk) -> None:
    """The client logs in and an action gets its response."""
    async with client(pbx) as ami:
        reply = await ami.send_action("Ping")
        assert reply.get("Ping") == "Pong"
        assert ami.banner is not None and ami.banner.version == "11.0.0"


async def test_wrong_secret_is_fatal_at_start(pbx: FakeAsterisk) -> None:
    """A refused login raises at start-up with a message naming the fix, and is not retried."""
    ami = AmiClient(settings(pbx, secret="wrong"))
    with pytest.raises(PbxAuthenticationFailed, match="username/secret"):
        await ami.start()
    await ami.close()
    logins = [a for a in pbx.actions if a.name == "Login"]
    assert len(logins) == 1


async def test_cyrillic_caller_name_split_inside_a_character_arrives_exact(
    pbx: FakeAsterisk,
) -> None:
    """panoramisk decodes each chunk as ASCII and loses 'Иван'; our client gets it byte-exact."""
    events: list[AmiMessage] = []
    async with client(pbx, events) as ami:
        pbx.chunking = 1  # every byte in its own TCP write: every UTF-8 character is split
        await pbx.inbound_call(caller="79161234567", caller_name="Иван")
        await wait_for(lambda: any(e.name == "Newchannel" for e in events))
        assert ami.connected
    newchannel = next(e for e in events if e.name == "Newchannel")
    assert newchannel["CallerIDName"] == "Иван"


async def test_panoramisk_loses_a_split_cyrillic_name(pbx: FakeAsterisk) -> None:
    """Documents the defect the project's codec exists for: panoramisk 1.4's protocol layer."""
    from panoramisk.ami_protocol import AMIProtocol  # noqa: PLC0415 - only this test needs it

    protocol = AMIProtocol()
    seen: list[object] = []

    class Factory:
        save_stream = None

        def dispatch(self, message: object) -> None:
            seen.append(message)

    protocol.connection_made(transport=None)
    protocol.factory = Factory()
    protocol.encoding = "utf8"
    data = "Event: Newchannel\r\nCallerIDName: Иван\r\n\r\n".encode()
    for i in range(len(data)):
        protocol.data_received(data[i : i + 1])
    assert seen, "panoramisk produced no event at all"
    assert seen[0].get("CallerIDName") != "Иван"  # type: ignore[attr-defined]


async def test_action_without_reply_times_out_and_others_go_on(pbx: FakeAsterisk) -> None:
    """An action the PBX never answers fails after its deadline; the connection keeps serving."""
    pbx.ignore_actions = {"Getvar"}
    async with client(pbx) as ami:
        with pytest.raises(PbxActionTimeout, match="Getvar"):
            await ami.send_action("Getvar", [("Variable", "X")], timeout=0.2)
        reply = await ami.send_action("Ping")
        assert reply.get("Ping") == "Pong"


async def test_half_open_connection_is_noticed_by_the_watchdog(pbx: FakeAsterisk) -> None:
    """A PBX that stops answering (Ping included) is disconnected and reconnected."""
    with capture_logs() as logs:
        async with client(pbx, ping_interval_s=0.1, ping_timeout_s=0.2) as ami:
            pbx.freeze()
            await wait_for(lambda: any(e["event"] == "ami_watchdog" for e in logs))
            pbx.thaw()
            await wait_for(lambda: ami.connections >= 2 and ami.connected)
    assert any(e["event"] == "ami_disconnected" for e in logs)


async def test_a_clean_stop_is_no_lost_link(pbx: FakeAsterisk) -> None:
    """Closing the client (the daemon stops) is not a disconnect: on_disconnected is not
    called (the calls would be told they went unheard) and no warning is logged; a drop by
    the switch still is both."""
    lost: list[str] = []
    ami = AmiClient(settings(pbx), on_disconnected=lost.append)
    await ami.start()
    pbx.drop_connections()
    await wait_for(lambda: bool(lost) and ami.connected)
    assert len(lost) == 1
    with capture_logs() as logs:
        await ami.close()
    assert len(lost) == 1
    [closed] = [e for e in logs if e["event"] == "ami_disconnected"]
    assert (closed["log_level"], closed["reason"]) == ("info", "the daemon is stopping")


async def test_event_handler_exception_is_logged_not_lost(pbx: FakeAsterisk) -> None:
    """An exception in the event handler is logged and the client keeps delivering events."""
    seen: list[str] = []

    def handler(message: AmiMessage) -> None:
        seen.append(message.name)
        if message.name == "Newchannel":
            msg = "handler bug"
            raise RuntimeError(msg)

    ami = AmiClient(settings(pbx), on_event=handler)
    with capture_logs() as logs:
        await ami.start()
        call = await pbx.inbound_call(caller="100")
        await call.answer()
        await wait_for(lambda: "Newstate" in seen)
        await ami.close()
    failures = [e for e in logs if e["event"] == "ami_event_handler_failed"]
    assert failures[0]["ami_event"] == "Newchannel"
    assert "Newstate" in seen


async def test_reconnects_after_the_pbx_drops_the_connection(pbx: FakeAsterisk) -> None:
    """A dropped connection is re-established with backoff and the resync hook runs again."""
    resyncs: list[int] = []
    ami: AmiClient

    async def on_connected() -> None:
        resyncs.append(ami.connections)
        await ami.send_list("CoreShowChannels")

    ami = AmiClient(settings(pbx), on_connected=on_connected)
    await ami.start()
    pbx.drop_connections()
    await wait_for(lambda: len(resyncs) >= 2 and ami.connected)
    await ami.close()
    assert resyncs == [1, 2]


async def test_action_in_flight_at_a_drop_fails_and_is_never_resent(pbx: FakeAsterisk) -> None:
    """An Originate pending when the link drops raises; after reconnect it is not sent again."""
    pbx.ignore_actions = {"Originate"}
    async with client(pbx) as ami:
        pending = asyncio.create_task(
            ami.send_action(
                "Originate",
                [("Channel", "PJSIP/dave"), ("Application", "Wait"), ("Async", "true")],
                timeout=5,
            )
        )
        await pbx.wait_for_action("Originate")
        pbx.drop_connections()
        with pytest.raises(PbxConnectionLost):
            await pending
        await wait_for(lambda: ami.connections >= 2 and ami.connected)
        await ami.send_action("Ping")
    assert sum(1 for a in pbx.actions if a.name == "Originate") == 1


async def test_action_when_disconnected_fails_at_once(pbx: FakeAsterisk) -> None:
    """No action is queued for later while there is no connection."""
    ami = AmiClient(settings(pbx))
    with pytest.raises(PbxConnectionLost, match="not connected"):
        await ami.send_action("Ping")


async def test_list_action_collects_items_until_complete(pbx: FakeAsterisk) -> None:
    """CoreShowChannels returns its items, in order, with the closing event consumed."""
    call = await pbx.inbound_call(caller="100")
    await call.answer()
    async with client(pbx) as ami:
        response, items = await ami.send_list("CoreShowChannels")
    assert response.get("EventList") == "start"
    assert [item.name for item in items] == ["CoreShowChannel"]
    assert items[0]["Uniqueid"] == call.uniqueid


async def test_unreachable_pbx_keeps_retrying_without_failing_start() -> None:
    """A PBX that is down at start-up is retried in the background; start() does not raise."""
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ami = AmiClient(
        AmiSettings(
            host="127.0.0.1",
            port=port,
            username="lab",
            secret="x",
            connect_timeout_s=0.2,
            reconnect_initial_s=0.05,
            reconnect_max_s=0.1,
        )
    )
    with capture_logs() as logs:
        await ami.start()
        await wait_for(lambda: sum(e["event"] == "ami_connect_failed" for e in logs) >= 2)
        await ami.close()
    assert not ami.connected


def test_backoff_grows_and_is_capped() -> None:
    """Reconnect delays double from the initial value and never exceed the maximum (+jitter)."""
    ami = AmiClient(
        AmiSettings(
            host="h",
            port=1,
            username="u",
            secret="s",
            reconnect_initial_s=0.5,
            reconnect_max_s=30.0,
        )
    )
    delays = [ami._backoff(n) for n in range(12)]
    assert 0.4 <= delays[0] <= 0.6
    assert 0.8 <= delays[1] <= 1.2
    assert all(d <= 36.0 for d in delays)
    assert delays[-1] >= 24.0


async def test_malformed_frame_is_logged_and_the_stream_goes_on(pbx: FakeAsterisk) -> None:
    """A frame without a colon is reported by name and later events still arrive."""
    events: list[AmiMessage] = []
    with capture_logs() as logs:
        async with client(pbx, events):
            pbx.send_raw(b"Event: Broken\r\nthis line has no colon\r\n\r\n")
            pbx.user_event("After", {"X": "1"})
            await wait_for(lambda: any(e.name == "UserEvent" for e in events))
    assert any(e["event"] == "ami_protocol_error" for e in logs)


async def test_a_flood_of_malformed_frames_writes_a_bounded_log(pbx: FakeAsterisk) -> None:
    """500 malformed frames: the first 20 are logged, the rest counted in one
    log_lines_suppressed line when the link ends (one line per frame could fill the disk
    under the store); the events after them still arrive."""
    events: list[AmiMessage] = []
    with capture_logs() as logs:
        async with client(pbx, events):
            pbx.send_raw(b"Event: Broken\r\nthis line has no colon\r\n\r\n" * 500)
            pbx.user_event("After", {"X": "1"})
            await wait_for(lambda: any(e.name == "UserEvent" for e in events))
    assert len([e for e in logs if e["event"] == "ami_protocol_error"]) == 20
    [summary] = [e for e in logs if e["event"] == "log_lines_suppressed"]
    assert (summary["suppressed_event"], summary["count"]) == ("ami_protocol_error", 480)


async def test_a_busy_link_that_is_slow_to_answer_ping_is_kept(pbx: FakeAsterisk) -> None:
    """While the PBX keeps sending, an unanswered Ping does not close the link; silence does."""
    pbx.ignore_actions = {"Ping"}
    with capture_logs() as logs:
        async with client(pbx, ping_interval_s=0.1, ping_timeout_s=0.15) as ami:
            for i in range(40):  # events flow for ~0.4 s: two unanswered Pings
                pbx.user_event("Burst", {"N": str(i)})
                await asyncio.sleep(0.01)
            assert ami.connections == 1
            assert any(e["event"] == "ami_watchdog_busy" for e in logs)
            assert not any(e["event"] == "ami_watchdog" for e in logs)
            await wait_for(lambda: any(e["event"] == "ami_watchdog" for e in logs))


async def test_a_login_nobody_answers_is_retried_and_start_returns(pbx: FakeAsterisk) -> None:
    """An AMI that sends its banner and never answers Login (overloaded, or a manager
    stuck in a module) used to end the connection loop for good: start() waited for ever
    and the daemon never reconnected. Now the attempt fails, start() returns, the link
    keeps trying and logs in once the switch answers again."""
    pbx.ignore_actions = {"Login"}
    ami = AmiClient(settings(pbx, connect_timeout_s=0.2))
    with capture_logs() as logs:
        try:
            await asyncio.wait_for(ami.start(), 5)
            assert not ami.connected
            for _ in range(200):
                failed = [e for e in logs if e["event"] == "ami_connect_failed"]
                if len(failed) >= 2:
                    break
                await asyncio.sleep(0.02)
            assert len(failed) >= 2
            assert "PbxActionTimeout" in failed[0]["error"]
            # Operations staff see which switch it is without parsing the error text.
            assert (failed[0]["host"], failed[0]["port"]) == pbx.ami_address
            pbx.ignore_actions = set()
            await ami.wait_connected(5)
            assert ami.connections == 1
        finally:
            await ami.close()

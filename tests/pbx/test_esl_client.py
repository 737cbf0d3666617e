"""The daemon's inbound ESL client against the fake FreeSWITCH over loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs

from pbx_agent.errors import (
    ConfigError,
    PbxActionFailed,
    PbxActionTimeout,
    PbxAuthenticationFailed,
    PbxConnectionLost,
    UnsafeValueError,
)
from pbx_agent.pbx.esl_client import EslClient, EslSettings
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch, OriginateOutcome
from pbx_agent.wire.esl import EslEvent, quote_api_arg


def settings(fs: FakeFreeSwitch, **overrides: object) -> EslSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": fs.port,
        "password": "ClueCon",
        "connect_timeout_s": 2.0,
        "command_timeout_s": 1.0,
        "idle_probe_s": 30.0,
        "probe_timeout_s": 0.3,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    values.update(overrides)
    return EslSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def fs() -> AsyncIterator[FakeFreeSwitch]:
    async with FakeFreeSwitch(time_scale=0.01) as fake:
        yield fake


@contextlib.asynccontextmanager
async def client(
    fs: FakeFreeSwitch,
    events: list[EslEvent] | None = None,
    **kwargs: object,
) -> AsyncIterator[EslClient]:
    on_connected = kwargs.pop("on_connected", None)
    on_disconnected = kwargs.pop("on_disconnected", None)
    esl = EslClient(
        settings(fs, **kwargs),
        on_event=events.append if events is not None else None,
        on_connected=on_connected,  # type: ignore[arg-type]
        on_disconnected=on_disconnected,  # type: ignore[arg-type]
    )
    await esl.start()
    try:
        yield esl
    finally:
        await esl.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def named(events: list[EslEvent], name: str) -> list[EslEvent]:
    return [e for e in events if e.name == name]


# -- connecting -----------------------------------------------------------------------------


async def test_connects_authenticates_and_subscribes(fs: FakeFreeSwitch) -> None:
    """start() authenticates and subscribes; the fake saw auth then the event command."""
    async with client(fs) as esl:
        assert esl.connected
        assert esl.connections == 1
        verbs = [c.command.verb for c in fs.commands]
        assert verbs[:2] == ["auth", "event"]
        assert fs.commands[1].command.line == "event plain ALL"


async def test_required_events_come_before_custom_subclasses() -> None:
    """BACKGROUND_JOB and HEARTBEAT are subscribed first: after CUSTOM all words are subclasses."""
    s = EslSettings(events=("CHANNEL_ANSWER", "CUSTOM", "avmd::beep"))
    assert (
        s.subscription() == "event plain BACKGROUND_JOB HEARTBEAT CHANNEL_ANSWER CUSTOM avmd::beep"
    )


@pytest.mark.parametrize(
    "overrides",
    [{"event_format": "xml"}, {"events": ("A B",)}, {"command_timeout_s": 0}, {"events": ("",)}],
)
def test_invalid_settings_are_config_errors(overrides: dict[str, object]) -> None:
    """Unsupported formats, odd event names and non-positive timeouts are refused."""
    with pytest.raises(ConfigError):
        EslSettings(**overrides)  # type: ignore[arg-type]


async def test_bad_password_is_fatal_at_the_first_connection(fs: FakeFreeSwitch) -> None:
    """A refused password raises at start() and is not retried."""
    esl = EslClient(settings(fs, password="wrong-password"))
    with pytest.raises(PbxAuthenticationFailed, match="refused"):
        await esl.start()
    await asyncio.sleep(0.2)
    assert fs.connections_accepted == 1
    await esl.close()


async def test_acl_rejection_is_an_authentication_failure() -> None:
    """text/rude-rejection (the switch's ACL refused us) is fatal like a bad password."""

    async def reject(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = b"Access Denied, go away.\n"
        writer.write(
            b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reject, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    esl = EslClient(EslSettings(port=port, connect_timeout_s=1.0))
    try:
        with pytest.raises(PbxAuthenticationFailed, match="Access Denied"):
            await esl.start()
    finally:
        await esl.close()
        server.close()
        await server.wait_closed()


async def test_unreachable_switch_is_retried_in_the_background() -> None:
    """start() returns while nothing listens; wait_connected then times out."""
    probe = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    esl = EslClient(EslSettings(port=port, reconnect_initial_s=0.05, reconnect_max_s=0.1))
    await esl.start()
    try:
        with pytest.raises(PbxConnectionLost):
            await esl.wait_connected(0.2)
    finally:
        await esl.close()


# -- api and bgapi ---------------------------------------------------------------------------


async def test_api_returns_the_response_body(fs: FakeFreeSwitch) -> None:
    """api status answers the status text."""
    async with client(fs) as esl:
        status = await esl.api("status")
        assert status.startswith("UP 0 years")
        assert "is ready" in status


async def test_api_error_output_is_an_action_failure(fs: FakeFreeSwitch) -> None:
    """-ERR inside the api/response body becomes PbxActionFailed with FreeSWITCH's text."""
    async with client(fs) as esl:
        with pytest.raises(PbxActionFailed, match="No such channel"):
            await esl.api("uuid_kill 00000000-0000-0000-0000-000000000000")
        with pytest.raises(PbxActionFailed, match="Command not found"):
            await esl.api("bogus_command arg1")


async def test_bgapi_sends_our_job_uuid_and_returns_the_job_output(fs: FakeFreeSwitch) -> None:
    """bgapi carries a Job-UUID header and returns the BACKGROUND_JOB body."""
    async with client(fs) as esl:
        output = await esl.bgapi("version", job_uuid="11111111-2222-3333-4444-555555555555")
        assert output.startswith("FreeSWITCH Version 1.10.12")
        sent = fs.commands_for("bgapi")[-1]
        assert sent.get("Job-UUID") == "11111111-2222-3333-4444-555555555555"


async def test_bgapi_results_match_their_jobs_when_they_finish_out_of_order(
    fs: FakeFreeSwitch,
) -> None:
    """A slow unanswered originate and a fast answered one each get their own result."""
    fs.set_originate_outcome("ned", OriginateOutcome.NO_ANSWER)
    finished: list[str] = []

    async def originate(user: str, uuid: str, extra: str = "") -> str:
        try:
            return await esl.bgapi(
                f"originate {{origination_uuid={uuid}{extra}}}sofia/internal/{user}@127.0.0.1 &park()",
                timeout=3.0,
            )
        finally:
            finished.append(user)

    async with client(fs) as esl:
        slow = asyncio.create_task(originate("ned", "slow-1", ",originate_timeout=20"))
        await asyncio.sleep(0.02)
        fast = asyncio.create_task(originate("kate", "fast-1"))
        assert await fast == "+OK fast-1\n"
        with pytest.raises(PbxActionFailed, match="NO_ANSWER"):
            await slow
        assert finished == ["kate", "ned"]


@pytest.mark.parametrize(
    ("outcome", "cause"),
    [
        (OriginateOutcome.BUSY, "USER_BUSY"),
        (OriginateOutcome.REJECT, "CALL_REJECTED"),
        (OriginateOutcome.UNREACHABLE, "NORMAL_TEMPORARY_FAILURE"),
    ],
)
async def test_failed_originate_names_the_hangup_cause(
    fs: FakeFreeSwitch, outcome: OriginateOutcome, cause: str
) -> None:
    """A failed bgapi originate fails with the cause FreeSWITCH reports (trace 07a)."""
    fs.set_originate_outcome("leo", outcome)
    async with client(fs) as esl:
        with pytest.raises(PbxActionFailed) as raised:
            await esl.bgapi("originate sofia/internal/leo@127.0.0.1 &park()")
        assert raised.value.message == cause


async def test_command_deadline_raises_and_the_late_reply_is_discarded(fs: FakeFreeSwitch) -> None:
    """A command past its deadline raises; its late reply does not answer the next command."""
    async with client(fs) as esl:
        with pytest.raises(PbxActionTimeout):
            await esl.api("msleep 30000", timeout=0.05)
        status = await esl.api("status", timeout=2.0)
        assert status.startswith("UP")


async def test_bgapi_deadline_covers_the_job(fs: FakeFreeSwitch) -> None:
    """A job whose BACKGROUND_JOB never comes in time raises PbxActionTimeout."""
    fs.set_originate_outcome("ned", OriginateOutcome.NO_ANSWER)
    async with client(fs) as esl:
        with pytest.raises(PbxActionTimeout, match="Job-UUID"):
            await esl.bgapi(
                "originate {originate_timeout=100}sofia/internal/ned@127.0.0.1 &park()",
                timeout=0.1,
            )


async def test_unsafe_values_are_refused_before_sending(fs: FakeFreeSwitch) -> None:
    """A command with a newline is refused; nothing reaches the switch."""
    async with client(fs) as esl:
        before = len(fs.commands)
        with pytest.raises(UnsafeValueError):
            await esl.api("uuid_kill x\nexit")
        assert len(fs.commands) == before


async def test_quoted_caller_name_reaches_the_channel_intact(fs: FakeFreeSwitch) -> None:
    """uuid_setvar with a hostile caller name stores exactly that name."""
    name = "O'Brien, {Jr} | x; 'y'  "
    async with client(fs) as esl:
        ch = fs.inbound_call("79001234567")
        await esl.api(f"uuid_setvar {ch.uuid} caller_label {quote_api_arg(name)}")
        assert ch.variables["caller_label"] == name
        assert await esl.api(f"uuid_getvar {ch.uuid} caller_label") == name


# -- events ---------------------------------------------------------------------------------------


async def test_events_are_delivered_in_order(fs: FakeFreeSwitch) -> None:
    """A scripted call's events reach on_event in FreeSWITCH's order."""
    events: list[EslEvent] = []
    async with client(fs, events) as esl:
        ch = fs.inbound_call("79001234567", "Ivan")
        fs.hangup(ch)
        await esl.api("status")
        names = [e.name for e in events if e.unique_id == ch.uuid]
        assert names.index("CHANNEL_CREATE") < names.index("CHANNEL_ANSWER")
        assert names.index("CHANNEL_HANGUP") < names.index("CHANNEL_HANGUP_COMPLETE")


async def test_json_events_decode_like_plain_ones(fs: FakeFreeSwitch) -> None:
    """With event_format json the same events arrive with the same headers."""
    events: list[EslEvent] = []
    async with client(fs, events, event_format="json") as esl:
        ch = fs.inbound_call("79001234567", "Иван")
        await esl.api("status")
        create = named(events, "CHANNEL_CREATE")[0]
        assert create["Caller-Caller-ID-Name"] == "Иван"
        assert create.unique_id == ch.uuid


async def test_failing_event_handler_is_logged_and_later_events_still_arrive(
    fs: FakeFreeSwitch,
) -> None:
    """An exception in on_event is logged (esl_event_handler_failed) and not fatal."""
    seen: list[str] = []

    def handler(event: EslEvent) -> None:
        seen.append(event.name)
        if event.name == "CHANNEL_CREATE":
            raise RuntimeError("adapter bug")

    esl = EslClient(settings(fs), on_event=handler)
    with capture_logs() as logs:
        await esl.start()
        try:
            fs.inbound_call("79001234567")
            await esl.api("status")
        finally:
            await esl.close()
    assert "CHANNEL_ANSWER" in seen
    assert any(entry["event"] == "esl_event_handler_failed" for entry in logs)


async def test_execute_returns_the_tag_of_its_completion_event(fs: FakeFreeSwitch) -> None:
    """execute() tags the sendmsg; CHANNEL_EXECUTE_COMPLETE carries that Application-UUID."""
    events: list[EslEvent] = []
    async with client(fs, events) as esl:
        ch = fs.inbound_call("79001234567")
        tag = await esl.execute(ch.uuid, "set", "tier=senior")
        await esl.api("status")
        completes = named(events, "CHANNEL_EXECUTE_COMPLETE")
        assert any(e.get("Application-UUID") == tag for e in completes)
        assert ch.variables["tier"] == "senior"


async def test_sendmsg_to_an_unknown_channel_fails(fs: FakeFreeSwitch) -> None:
    """sendmsg naming no live session is refused."""
    async with client(fs) as esl:
        with pytest.raises(PbxActionFailed, match="invalid session id"):
            await esl.sendmsg("nope", [("call-command", "hangup")])


async def test_list_channels_parses_the_rows(fs: FakeFreeSwitch) -> None:
    """list_channels gives one dict per live channel, and [] when there are none."""
    async with client(fs) as esl:
        assert await esl.list_channels() == []
        ch = fs.inbound_call("79001234567", "Ivan")
        rows = await esl.list_channels()
        assert [row["uuid"] for row in rows] == [ch.uuid]
        assert rows[0]["cid_num"] == "79001234567"
        assert rows[0]["callstate"] == "ACTIVE"


# -- watchdog and reconnect -------------------------------------------------------------------


async def test_heartbeats_keep_an_idle_connection_without_probes() -> None:
    """HEARTBEAT events count as life: no api status probe is sent."""
    async with FakeFreeSwitch(heartbeat_interval_s=0.05) as fs, client(fs, idle_probe_s=0.2):
        await asyncio.sleep(0.6)
        assert fs.commands_for("api") == []


async def test_silent_connection_is_probed_then_closed_and_reopened(fs: FakeFreeSwitch) -> None:
    """A frozen switch gets an api status probe, then the connection is dropped and redone."""
    reasons: list[str] = []
    with capture_logs() as logs:
        async with client(
            fs, idle_probe_s=0.1, probe_timeout_s=0.1, on_disconnected=reasons.append
        ) as esl:
            fs.freeze()
            await wait_for(lambda: bool(reasons))
            assert "watchdog" in reasons[0]
            assert any(c.line == "api status" for c in fs.commands_for("api"))
            fs.thaw()
            await wait_for(lambda: esl.connected and esl.connections == 2)
    assert any(entry["event"] == "esl_watchdog" for entry in logs)


async def test_reconnect_restores_the_subscription_and_resyncs(fs: FakeFreeSwitch) -> None:
    """After a drop the client reconnects, subscribes again and on_connected resyncs."""
    events: list[EslEvent] = []
    resyncs: list[list[dict[str, str]]] = []

    async def resync() -> None:
        resyncs.append(await esl.list_channels())

    esl = EslClient(settings(fs), on_event=events.append, on_connected=resync)
    await esl.start()
    try:
        ch = fs.inbound_call("79001234567")
        await esl.api("status")
        fs.drop_connections()
        # The client is connected (commands allowed) while on_connected runs: wait for the
        # resync itself, not only for the connection.
        await wait_for(lambda: esl.connections == 2 and esl.connected and len(resyncs) == 2)
        assert [row["uuid"] for row in resyncs[1]] == [ch.uuid]
        assert len(fs.commands_for("event")) == 2
        fs.hangup(ch)
        await esl.api("status")
        assert named(events, "CHANNEL_HANGUP")
    finally:
        await esl.close()


async def test_command_in_flight_fails_when_the_connection_drops(fs: FakeFreeSwitch) -> None:
    """An api waiting for its reply fails with PbxConnectionLost when the socket resets."""
    async with client(fs) as esl:
        slow = asyncio.create_task(esl.api("msleep 500000", timeout=8.0))
        await wait_for(lambda: bool(fs.commands_for("api")))
        fs.drop_connections()
        with pytest.raises(PbxConnectionLost):
            await slow


async def test_commands_while_disconnected_fail_at_once(fs: FakeFreeSwitch) -> None:
    """No queueing while down: a command fails immediately with PbxConnectionLost."""
    async with client(fs, reconnect_initial_s=5.0, reconnect_max_s=5.0) as esl:
        fs.drop_connections()
        await wait_for(lambda: not esl.connected)
        with pytest.raises(PbxConnectionLost, match="not connected"):
            await esl.api("status")


async def test_reply_with_no_command_waiting_drops_the_connection(fs: FakeFreeSwitch) -> None:
    """An unsolicited reply means replies are out of step: reconnect rather than mismatch."""
    async with client(fs) as esl:
        fs.send_raw(b"Content-Type: command/reply\nReply-Text: +OK forged\n\n")
        await wait_for(lambda: esl.connections == 2 and esl.connected)


async def test_lost_framing_drops_the_connection(fs: FakeFreeSwitch) -> None:
    """A frame with an unusable Content-Length is fatal for the connection, not the client."""
    async with client(fs) as esl:
        fs.send_raw(b"Content-Type: api/response\nContent-Length: many\n\n")
        await wait_for(lambda: esl.connections == 2 and esl.connected)
        assert (await esl.api("status")).startswith("UP")


def test_backoff_doubles_up_to_the_maximum() -> None:
    """Reconnect delays grow exponentially within ±20 % jitter and stop at the cap."""
    esl = EslClient(EslSettings(reconnect_initial_s=0.5, reconnect_max_s=30.0))
    for attempt, base in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (40, 30.0)]:
        delay = esl._backoff(attempt)
        assert base * 0.8 <= delay <= base * 1.2


async def test_a_malformed_frame_while_a_reply_is_awaited_reopens_the_link(
    fs: FakeFreeSwitch,
) -> None:
    """The skipped frame may have been the awaited reply: going on would hand every later
    reply to the wrong command. The waiting api fails and the link is reopened."""
    async with client(fs) as esl:
        slow = asyncio.create_task(esl.api("msleep 500000", timeout=8.0))
        await wait_for(lambda: bool(fs.commands_for("api")))
        fs.send_raw(
            b"Content-Type: api/response\nGarbled-Line-Without-Colon\nContent-Length: 3\n\n+OK"
        )
        with pytest.raises(PbxConnectionLost, match="reply awaited"):
            await slow
        await wait_for(lambda: esl.connections == 2 and esl.connected)
        assert (await esl.api("status")).startswith("UP")


async def test_a_malformed_frame_with_no_reply_awaited_is_skipped(fs: FakeFreeSwitch) -> None:
    """Nothing waits for a reply: the frame can only have been an event; it is skipped."""
    async with client(fs) as esl:
        with capture_logs() as logs:
            fs.send_raw(
                b"Content-Type: text/event-plain\nGarbled-Line-Without-Colon\n"
                b"Content-Length: 3\n\nabc"
            )
            await wait_for(lambda: any(e["event"] == "esl_protocol_error" for e in logs))
        assert (await esl.api("status")).startswith("UP")
        assert esl.connections == 1


async def test_a_flood_of_malformed_frames_writes_a_bounded_log(fs: FakeFreeSwitch) -> None:
    """300 malformed event frames: 20 logged, the rest counted in one log_lines_suppressed
    line when the link ends; the link stays up and answers."""
    frame = b"Content-Type: text/event-plain\nGarbled-Line-Without-Colon\nContent-Length: 3\n\nabc"
    with capture_logs() as logs:
        async with client(fs) as esl:
            fs.send_raw(frame * 300)
            await wait_for(lambda: esl._protocol_errors._suppressed == 280)
            assert (await esl.api("status")).startswith("UP")
            assert esl.connections == 1
    assert len([e for e in logs if e["event"] == "esl_protocol_error"]) == 20
    [summary] = [e for e in logs if e["event"] == "log_lines_suppressed"]
    assert (summary["suppressed_event"], summary["count"]) == ("esl_protocol_error", 280)

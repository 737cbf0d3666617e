"""The outbound-socket server against the fake FreeSWITCH connecting as the real one does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from pbx_agent.errors import ChannelHungUp, PbxConnectionLost
from pbx_agent.model.hooks import HookRegistry, HookSession, HookSpec, PlayResult
from pbx_agent.pbx.esl_outbound import EslOutboundServer
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch, OutboundCall

Handler = Callable[[HookSession], Awaitable[None]]


@pytest.fixture
async def fs() -> AsyncIterator[FakeFreeSwitch]:
    async with FakeFreeSwitch(time_scale=0.01) as fake:
        yield fake


@contextlib.asynccontextmanager
async def serving(
    handler: Handler,
    *,
    name: str = "route",
    deadline_s: float = 2.0,
    on_timeout: Handler | None = None,
    **options: object,
) -> AsyncIterator[EslOutboundServer]:
    registry = HookRegistry()
    registry.register(HookSpec(name, handler, deadline_s, on_timeout))
    values: dict[str, object] = {
        "port": 0,
        "handshake_timeout_s": 1.0,
        "command_timeout_s": 1.0,
        "default_deadline_s": 0.5,
    }
    values.update(options)
    server = EslOutboundServer(registry, **values)  # type: ignore[arg-type]
    async with server:
        yield server


async def call(
    fs: FakeFreeSwitch, server: EslOutboundServer, hook: str | None = "route", **kwargs: object
) -> OutboundCall:
    variables = dict(kwargs.pop("variables", {}) or {})  # type: ignore[call-overload]
    if hook is not None:
        variables["pbx_agent_hook"] = hook
    return await fs.outbound_call(
        "127.0.0.1",
        server.port,
        variables=variables,
        **kwargs,  # type: ignore[arg-type]
    )


def log_events(logs: list[dict[str, object]]) -> list[object]:
    return [entry["event"] for entry in logs]


# -- sessions -----------------------------------------------------------------------------------


async def test_a_session_per_call_sees_the_channel_data(fs: FakeFreeSwitch) -> None:
    """The hook sees leg, call, channel, caller, dialed number and variables of its call."""
    seen: list[HookSession] = []

    async def handler(session: HookSession) -> None:
        seen.append(session)

    async with serving(handler) as server:
        outbound = await call(fs, server, caller_number="79001234567", caller_name="Иван")
        await outbound.wait_finished()
    session = seen[0]
    assert session.hook == "route"
    assert session.leg == outbound.channel.uuid
    assert session.call == outbound.channel.uuid
    assert session.channel == "sofia/internal/79001234567@127.0.0.1"
    assert session.caller_number == "79001234567"
    assert session.caller_name == "Иван"
    assert session.dialed == "9000"
    assert session.variables["current_application"] == "socket"


async def test_handshake_is_connect_myevents_resume_linger(fs: FakeFreeSwitch) -> None:
    """The server opens with connect, myevents and linger, as in trace 05a, and `resume`:
    without it (and without socket_resume=true in the dialplan) an async socket's channel
    stays parked when the daemon closes the socket, instead of going on with the dialplan."""

    async def handler(_session: HookSession) -> None:
        return None

    async with serving(handler, linger_s=5) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert [c.line for c in outbound.commands[:4]] == [
        "connect",
        "myevents",
        "resume",
        "linger 5",
    ]
    assert outbound.dialplan_continued.is_set()


async def test_hook_name_falls_back_to_the_destination_and_params_come_from_variables(
    fs: FakeFreeSwitch,
) -> None:
    """Without pbx_agent_hook the destination names the hook; pbx_agent_* are its params."""
    seen: list[HookSession] = []

    async def handler(session: HookSession) -> None:
        seen.append(session)

    async with serving(handler, name="night") as server:
        outbound = await call(
            fs, server, hook=None, destination="night", variables={"pbx_agent_queue": "sales"}
        )
        await outbound.wait_finished()
    assert seen[0].hook == "night"
    assert dict(seen[0].params) == {"queue": "sales"}


async def test_closing_the_session_lets_the_dialplan_continue(fs: FakeFreeSwitch) -> None:
    """After the hook the daemon closes the socket and the socket application returns."""

    async def handler(session: HookSession) -> None:
        await session.answer()

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert outbound.channel.answered
    assert outbound.dialplan_continued.is_set()
    assert outbound.channel.alive


async def test_variables_round_trip_with_hostile_values(fs: FakeFreeSwitch) -> None:
    """set_variable stores caller text exactly (no ${} expansion, no splitting); get reads it."""
    value = "O'Brien, ${system(id)} {x} | ; 'q'  "
    read: list[str | None] = []

    async def handler(session: HookSession) -> None:
        await session.set_variable("caller_label", value)
        read.append(await session.get_variable("caller_label"))
        read.append(await session.get_variable("no_such_variable"))

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert outbound.channel.variables["caller_label"] == value
    assert read == [value, None]


async def test_answer_and_play_wait_for_execute_complete(fs: FakeFreeSwitch) -> None:
    """play returns once CHANNEL_EXECUTE_COMPLETE with our tag arrives."""
    results: list[PlayResult] = []

    async def handler(session: HookSession) -> None:
        await session.answer()
        results.append(await session.play("ivr/welcome"))

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert results == [PlayResult(digit=None, offset_samples=8000)]
    tags = [c.get("Event-UUID") for c in outbound.commands if c.verb == "sendmsg"]
    assert len(tags) == 2
    assert all(tags)


async def test_play_reports_the_escape_digit(fs: FakeFreeSwitch) -> None:
    """A digit of the escape set ends the playback and is reported."""
    fs.playback_s = 100.0
    results: list[PlayResult] = []
    outbound: OutboundCall | None = None

    async def handler(session: HookSession) -> None:
        assert outbound is not None
        task = asyncio.create_task(session.play("ivr/menu", escape_digits="12"))
        while fs.running_app(outbound.channel) != "playback":
            await asyncio.sleep(0.005)
        outbound.press("5")  # not an escape digit: ignored
        outbound.press("2")
        results.append(await task)

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert results[0].digit == "2"
    assert outbound.channel.variables["playback_terminators"] == "12"


async def test_play_resumes_at_an_offset_and_reports_missing_files(fs: FakeFreeSwitch) -> None:
    """offset_samples plays file@@offset; a missing file gives failed=True."""
    fs.missing_sounds.add("ivr/missing")
    results: list[PlayResult] = []

    async def handler(session: HookSession) -> None:
        results.append(await session.play("ivr/hold", offset_samples=16000))
        results.append(await session.play("ivr/missing"))

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    args = [c.get("execute-app-arg") for c in outbound.commands if c.verb == "sendmsg"]
    assert args == ["ivr/hold@@16000", "ivr/missing"]
    assert results[1].failed


async def test_wait_for_digit_returns_the_key_or_none(fs: FakeFreeSwitch) -> None:
    """A DTMF during the wait is returned; silence gives None."""
    digits: list[str | None] = []
    outbound: OutboundCall | None = None

    async def handler(session: HookSession) -> None:
        assert outbound is not None
        asyncio.get_running_loop().call_later(0.05, outbound.press, "7")
        digits.append(await session.wait_for_digit(1.0))
        digits.append(await session.wait_for_digit(0.05))

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert digits == ["7", None]


async def test_hangup_ends_the_call(fs: FakeFreeSwitch) -> None:
    """hangup() sends sendmsg hangup; the channel ends and a second hangup is a no-op."""

    async def handler(session: HookSession) -> None:
        await session.hangup()
        while not session.hung_up:
            await asyncio.sleep(0.005)
        await session.hangup()

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert not outbound.channel.alive
    assert outbound.channel.hangup_cause == "NORMAL_CLEARING"


# -- trouble -----------------------------------------------------------------------------------


async def test_caller_hanging_up_mid_playback_ends_the_hook_without_hanging(
    fs: FakeFreeSwitch,
) -> None:
    """The caller hangs up during play: it returns failed, then commands raise ChannelHungUp."""
    fs.playback_s = 100.0
    results: list[PlayResult] = []
    errors: list[Exception] = []

    async def handler(session: HookSession) -> None:
        results.append(await session.play("ivr/long"))
        try:
            await session.set_variable("after", "x")
        except ChannelHungUp as exc:
            errors.append(exc)
            raise

    with capture_logs() as logs:
        async with serving(handler, deadline_s=5.0) as server:
            outbound = await call(fs, server)
            outbound.hang_up_during_next_execute = True
            await outbound.wait_finished(timeout_s=2.0)
    assert results[0].failed
    assert isinstance(errors[0], ChannelHungUp)
    assert "hook_hung_up" in log_events(logs)
    assert "hook_deadline" not in log_events(logs)


async def test_deadline_runs_the_safe_default(fs: FakeFreeSwitch) -> None:
    """A handler past its deadline is cut off and on_timeout sets the dialplan's default."""

    async def stuck(_session: HookSession) -> None:
        await asyncio.sleep(60)

    async def default(session: HookSession) -> None:
        await session.set_variable("pbx_agent_route", "queue")

    with capture_logs() as logs:
        async with serving(stuck, deadline_s=0.1, on_timeout=default) as server:
            outbound = await call(fs, server)
            await outbound.wait_finished()
    assert outbound.channel.variables["pbx_agent_route"] == "queue"
    assert outbound.dialplan_continued.is_set()
    assert "hook_deadline" in log_events(logs)
    assert "hook_default_applied" in log_events(logs)


async def test_deadline_during_playback_stops_the_media(fs: FakeFreeSwitch) -> None:
    """A playback still running at the deadline is broken off with uuid_break."""
    fs.playback_s = 100.0

    async def long_play(session: HookSession) -> None:
        await session.play("ivr/long")

    async with serving(long_play, deadline_s=0.1) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    api_lines = [c.line for c in outbound.commands if c.verb == "api"]
    assert f"api uuid_break {outbound.channel.uuid} all" in api_lines


async def test_failing_handler_runs_the_safe_default(fs: FakeFreeSwitch) -> None:
    """An exception in the handler is logged and the default applies."""

    async def broken(_session: HookSession) -> None:
        raise RuntimeError("policy bug")

    async def default(session: HookSession) -> None:
        await session.set_variable("pbx_agent_route", "queue")

    with capture_logs() as logs:
        async with serving(broken, on_timeout=default) as server:
            outbound = await call(fs, server)
            await outbound.wait_finished()
    assert outbound.channel.variables["pbx_agent_route"] == "queue"
    assert "hook_failed" in log_events(logs)


async def test_unknown_hook_is_logged_and_the_dialplan_continues(fs: FakeFreeSwitch) -> None:
    """A hook name nobody registered ends the session at once; the call goes on."""

    async def handler(_session: HookSession) -> None:
        return None

    with capture_logs() as logs:
        async with serving(handler) as server:
            outbound = await call(fs, server, hook="nonesuch")
            await outbound.wait_finished()
    assert "hook_unknown" in log_events(logs)
    assert outbound.dialplan_continued.is_set()


async def test_switch_closing_the_socket_mid_command_ends_the_session(fs: FakeFreeSwitch) -> None:
    """FreeSWITCH dropping the socket during play gives PbxConnectionLost, no hang."""
    fs.playback_s = 100.0
    errors: list[Exception] = []
    outbound: OutboundCall | None = None

    async def handler(session: HookSession) -> None:
        assert outbound is not None
        asyncio.get_running_loop().call_later(0.05, outbound.close)
        try:
            await session.play("ivr/long")
        except PbxConnectionLost as exc:
            errors.append(exc)
            raise

    with capture_logs() as logs:
        async with serving(handler, deadline_s=5.0) as server:
            outbound = await call(fs, server)
            await outbound.wait_finished(timeout_s=2.0)
            await asyncio.sleep(0.05)
            assert server.active_sessions == 0
    assert errors
    assert "hook_connection_lost" in log_events(logs)


async def test_peer_that_never_answers_connect_is_dropped_after_the_handshake_deadline() -> None:
    """A connection that stays silent after 'connect' is closed; no session is left."""

    async def handler(_session: HookSession) -> None:
        return None

    with capture_logs() as logs:
        async with serving(handler, handshake_timeout_s=0.1) as server:
            _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await asyncio.sleep(0.3)
            assert server.active_sessions == 0
            writer.close()
    assert "esl_outbound_handshake_timeout" in log_events(logs)


async def test_garbage_instead_of_channel_data_is_refused() -> None:
    """A peer answering connect with something else ends the session with a warning."""

    async def handler(_session: HookSession) -> None:
        return None

    with capture_logs() as logs:
        async with serving(handler) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await reader.readuntil(b"\n\n")
            writer.write(b"Content-Type: command/reply\nReply-Text: -ERR nope\n\n")
            await writer.drain()
            assert await reader.read() == b""
            writer.close()
    assert "esl_outbound_handshake_invalid" in log_events(logs)


async def test_sync_mode_still_works_and_is_warned_about(fs: FakeFreeSwitch) -> None:
    """socket ... full without async: replies wait for the application, the hook still runs."""
    results: list[PlayResult] = []

    async def handler(session: HookSession) -> None:
        await session.answer()
        results.append(await session.play("ivr/welcome"))

    with capture_logs() as logs:
        async with serving(handler) as server:
            outbound = await call(fs, server, mode="sync")
            await outbound.wait_finished()
    assert results and not results[0].failed
    assert "esl_outbound_sync_mode" in log_events(logs)


async def test_one_stuck_call_does_not_delay_another(fs: FakeFreeSwitch) -> None:
    """Two calls at once: one handler stalls until its deadline, the other finishes at once."""

    async def handler(session: HookSession) -> None:
        if session.caller_number == "slow":
            await asyncio.sleep(60)
        await session.set_variable("served", "yes")

    async with serving(handler, deadline_s=1.0) as server:
        slow = await call(fs, server, caller_number="slow")
        fast = await call(fs, server, caller_number="fast")
        await fast.wait_finished(timeout_s=0.5)
        assert not slow.finished.is_set()
        await slow.wait_finished(timeout_s=2.0)
    assert fast.channel.variables["served"] == "yes"


async def test_a_malformed_frame_while_a_reply_is_awaited_ends_the_session_at_once(
    fs: FakeFreeSwitch,
) -> None:
    """The skipped frame may have been the awaited reply: before, every later reply went
    to the command before it, each command timed out and the safe default's own reply was
    swallowed. Now the session stops trusting the socket at once."""
    errors: list[BaseException] = []
    outbound: OutboundCall | None = None

    async def handler(session: HookSession) -> None:
        assert outbound is not None
        outbound.send_raw(
            b"Content-Type: api/response\nGarbled-Line-Without-Colon\nContent-Length: 3\n\n+OK"
        )
        try:
            await session.get_variable("pbx_agent_tier")
        except PbxConnectionLost as exc:
            errors.append(exc)
            raise

    with capture_logs() as logs:
        async with serving(handler) as server:
            outbound = await call(fs, server)
            await outbound.wait_finished()
    assert len(errors) == 1
    assert "reply awaited" in str(errors[0])
    assert "hook_default_deadline" not in log_events(logs)


@pytest.mark.parametrize("socket_resume", [None, "true"])
async def test_the_fake_switch_parks_a_closed_async_socket_unless_told_to_resume(
    fs: FakeFreeSwitch, socket_resume: str | None
) -> None:
    """The fake follows mod_event_socket.c: a peer that closes an async session without
    `resume` leaves the channel parked; the dialplan's socket_resume=true resumes it."""

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for command in (b"connect\n\n", b"myevents\n\n"):
            writer.write(command)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        variables = {"socket_resume": socket_resume} if socket_resume else {}
        outbound = await fs.outbound_call("127.0.0.1", port, variables=variables)
        await outbound.wait_finished()
        assert outbound.dialplan_continued.is_set() is (socket_resume is not None)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_refused_resume_is_a_named_setup_failure_and_the_dialplan_goes_on(
    fs: FakeFreeSwitch,
) -> None:
    """A switch answering `resume` with -ERR: the hook does not run, the log names the command
    and the switch's text, the socket is closed, and the dialplan's socket_resume=true lets
    the call go on (it is not left parked)."""
    ran: list[HookSession] = []

    async def handler(session: HookSession) -> None:
        ran.append(session)

    fs.refuse_outbound["resume"] = "not controlling a session"
    with capture_logs() as logs:
        async with serving(handler, linger_s=5) as server:
            outbound = await call(fs, server, variables={"socket_resume": "true"})
            await outbound.wait_finished()
    assert ran == []
    failed = [entry for entry in logs if entry["event"] == "esl_outbound_setup_failed"]
    assert len(failed) == 1
    assert "resume" in str(failed[0]["error"])
    assert "not controlling a session" in str(failed[0]["error"])
    assert outbound.dialplan_continued.is_set()
    assert "linger" not in [c.verb for c in outbound.commands]

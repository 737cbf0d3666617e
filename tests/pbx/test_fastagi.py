"""The FastAGI server over real loopback TCP, against a small Asterisk-side client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pbx_agent.errors import ChannelHungUp, PbxActionFailed, UnsafeValueError
from pbx_agent.model.hooks import HookRegistry, HookSession, HookSpec, PlayResult
from pbx_agent.pbx.fastagi import AgiSession, FastAgiServer
from pbx_agent.wire.agi import (
    AgiCommand,
    AgiCommandDecoder,
    AgiReply,
    encode_environment,
    encode_hangup,
    encode_reply,
)

TRACES = Path(__file__).resolve().parents[1] / "traces" / "asterisk-22"
RAW_MARK = b"#=== BEGIN RAW ===\n"
TIMEOUT = 5.0

Responder = Callable[[AgiCommand], Awaitable[list[bytes]]]


def environment(hook: str = "route?x=1", **extra: str) -> dict[str, str]:
    env = {
        "agi_network": "yes",
        "agi_network_script": hook,
        "agi_request": f"agi://127.0.0.1:4573/{hook}",
        "agi_channel": "PJSIP/carol-00000010",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1795339422.20",
        "agi_version": "22.0.0",
        "agi_callerid": "carol",
        "agi_calleridname": "unknown",
        # Every key res_agi.c writes, in its order (trace 05a): the decoder relies on it.
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "604",
        "agi_rdnis": "unknown",
        "agi_context": "from-ua",
        "agi_extension": "604",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "139675393078976",
    }
    env.update(extra)
    return env


class FakeChannel:
    """Asterisk's side of one FastAGI session: sends the environment, answers commands."""

    def __init__(self, port: int, env: dict[str, str], responder: Responder | None = None) -> None:
        self.port = port
        self.env = env
        self.responder = responder or self.default_responder
        self.commands: list[AgiCommand] = []
        self.variables: dict[str, str] = {"CHANNEL(linkedid)": "1795339422.19"}
        self.closed_by_server = False

    async def default_responder(self, command: AgiCommand) -> list[bytes]:
        if command.verb == "GET VARIABLE":
            value = self.variables.get(command.args[0])
            if value is None:
                return [encode_reply(result=0)]
            return [encode_reply(result=1, data=value)]
        if command.verb == "SET VARIABLE":
            self.variables[command.args[0]] = command.args[1]
            return [encode_reply(result=1)]
        if command.verb == "ANSWER":
            return [encode_reply(result=0)]
        if command.verb == "STREAM FILE":
            return [encode_reply(result=0, endpos=8000)]
        if command.verb == "WAIT FOR DIGIT":
            return [encode_reply(result=ord("5"))]
        if command.verb == "HANGUP":
            return [encode_reply(result=1)]
        return [encode_reply(510, extra="Invalid or unknown command")]

    async def run(self) -> list[AgiCommand]:
        """Run the session until the server closes it; return the commands received."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(encode_environment(self.env))
            await writer.drain()
            decoder = AgiCommandDecoder()
            while True:
                data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
                decoder.feed(data)
                while (command := decoder.next_message()) is not None:
                    self.commands.append(command)
                    for piece in await self.responder(command):
                        writer.write(piece)
                        await writer.drain()
                if not data:
                    self.closed_by_server = True
                    return self.commands
        finally:
            writer.close()


@pytest.fixture
async def registry() -> HookRegistry:
    return HookRegistry()


@pytest.fixture
async def server(registry: HookRegistry) -> AsyncIterator[FastAgiServer]:
    async with FastAgiServer(
        registry, port=0, header_timeout_s=0.5, command_timeout_s=1.0, default_deadline_s=1.0
    ) as running:
        yield running


async def set_default_result(session: HookSession) -> None:
    await session.set_variable("PBXAGENT_RESULT", "default")


def hook(
    name: str,
    handler: Callable[[HookSession], Awaitable[None]],
    deadline_s: float = 2.0,
    on_timeout: Callable[[HookSession], Awaitable[None]] | None = set_default_result,
) -> HookSpec:
    return HookSpec(name=name, handler=handler, deadline_s=deadline_s, on_timeout=on_timeout)


def events(logs: list[dict[str, object]], name: str) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == name]


async def wait_until_idle(server: FastAgiServer) -> None:
    async with asyncio.timeout(TIMEOUT):
        while server.active_sessions:
            await asyncio.sleep(0.01)


# --- the transcript ---------------------------------------------------------------------


def trace_reply_groups() -> list[bytes]:
    """05a's replies, one byte string per command (a HANGUP line rides with its reply)."""
    raw = (TRACES / "05a-fastagi-session.recv.txt").read_bytes().split(RAW_MARK, 1)[1]
    lines = raw.split(b"\n\n", 1)[1].splitlines(keepends=True)
    groups: list[bytes] = []
    in_usage = False
    for line in lines:
        if line == b"HANGUP\n":
            groups[-1] += line
        elif in_usage:
            groups[-1] += line
            in_usage = not line.startswith(b"520 ")
        else:
            groups.append(line)
            in_usage = line.startswith(b"520-")
    return groups


async def test_trace_05a_session_replays_through_the_server(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """The 05a command sequence, answered with 05a's recorded bytes, reads back right."""
    sent = (TRACES / "05a-fastagi-session.sent.txt").read_bytes().split(RAW_MARK, 1)[1]
    decoder = AgiCommandDecoder()
    decoder.feed(sent)
    script = []
    while (command := decoder.next_message()) is not None:
        script.append(command)
    recorded = iter(trace_reply_groups())
    replies: list[AgiReply] = []
    seen: dict[str, object] = {}

    async def replay(command: AgiCommand) -> list[bytes]:
        if command.args == ("CHANNEL(linkedid)",):
            return [encode_reply(result=1, data="1795339422.19")]
        group = next(recorded)
        if group.startswith(b"520-"):
            # Asterisk's usage block arrived in two TCP segments 44 ms apart.
            await asyncio.sleep(0.02)
            return [group[:60], group[60:]]
        return [group]

    async def run_script(session: HookSession) -> None:
        assert isinstance(session, AgiSession)
        seen["call"] = session.call
        for command in script:
            if command.argv == ("WAIT", "FOR", "DIGIT", "20000"):
                seen["hung_up_before"] = session.hung_up
            replies.append(await session.command(command.verb or command.argv[0], *command.args))
        seen["hung_up_after"] = session.hung_up

    registry.register(hook("route", run_script))
    channel = FakeChannel(server.port, environment(), replay)
    received = await channel.run()

    assert [c.argv for c in received[1:]] == [c.argv for c in script]
    assert seen == {"call": "1795339422.19", "hung_up_before": False, "hung_up_after": True}
    assert replies[0] == AgiReply(200, "1", "PJSIP/carol-00000010")
    assert replies[7] == AgiReply(200, "0", endpos=3404)
    assert replies[10] == AgiReply(200, "53")
    assert replies[14] == AgiReply(510, extra="Invalid or unknown command")
    assert replies[15].code == 520
    assert len(replies[15].usage) == 5
    assert replies[20] == AgiReply(200, "-1")
    assert replies[21] == AgiReply(200, "1", "PJSIP/carol-00000010")
    assert replies[22].dead_channel
    assert replies[23].dead_channel
    assert channel.closed_by_server


# --- the neutral session ----------------------------------------------------------------


async def test_session_exposes_the_call_as_the_dialplan_handed_it_over(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """Hook name, params, leg, linkedid call, caller fields and variables come through."""
    seen: dict[str, object] = {}

    async def inspect(session: HookSession) -> None:
        seen.update(
            hook=session.hook,
            params=dict(session.params),
            leg=session.leg,
            call=session.call,
            channel=session.channel,
            number=session.caller_number,
            name=session.caller_name,
            dialed=session.dialed,
            context=session.variables["context"],
        )

    registry.register(hook("route", inspect))
    await FakeChannel(server.port, environment("route?x=1&queue=sales")).run()
    assert seen == {
        "hook": "route",
        "params": {"x": "1", "queue": "sales"},
        "leg": "1795339422.20",
        "call": "1795339422.19",
        "channel": "PJSIP/carol-00000010",
        "number": "carol",
        "name": "",  # Asterisk's "unknown" means no name
        "dialed": "604",
        "context": "from-ua",
    }


async def test_session_commands_map_to_agi_and_back(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """answer, play, wait_for_digit, variables and hangup speak AGI and read the replies."""
    results: dict[str, object] = {}

    async def conversation(session: HookSession) -> None:
        await session.answer()
        results["play"] = await session.play("pbx-agent/ru/hold", escape_digits="12")
        results["digit"] = await session.wait_for_digit(1.5)
        await session.set_variable("PBXAGENT_RESULT", 'Иван "the caller", (1)')
        results["var"] = await session.get_variable("PBXAGENT_RESULT")
        results["missing"] = await session.get_variable("NOPE")
        await session.hangup()

    registry.register(hook("route", conversation))
    channel = FakeChannel(server.port, environment())
    received = await channel.run()
    assert [c.verb for c in received] == [
        "GET VARIABLE",
        "ANSWER",
        "STREAM FILE",
        "WAIT FOR DIGIT",
        "SET VARIABLE",
        "GET VARIABLE",
        "GET VARIABLE",
        "HANGUP",
    ]
    assert received[2].args == ("pbx-agent/ru/hold", "12")
    assert received[3].args == ("1500",)
    assert received[4].args == ("PBXAGENT_RESULT", 'Иван "the caller", (1)')
    assert results == {
        "play": PlayResult(digit=None, offset_samples=8000),
        "digit": "5",
        "var": 'Иван "the caller", (1)',
        "missing": None,
    }


async def test_play_reports_a_pressed_digit_and_a_missing_file(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """STREAM FILE's result is the digit's code, or -1 when the file cannot play."""
    outcomes = iter([encode_reply(result=ord("#"), endpos=1200), encode_reply(result=-1, endpos=0)])
    results: list[PlayResult] = []

    async def responder(command: AgiCommand) -> list[bytes]:
        if command.verb == "STREAM FILE":
            return [next(outcomes)]
        return [encode_reply(result=1, data="L")]

    async def play_twice(session: HookSession) -> None:
        results.append(await session.play("a", escape_digits="#", offset_samples=400))
        results.append(await session.play("missing"))

    registry.register(hook("route", play_twice))
    channel = FakeChannel(server.port, environment(), responder)
    received = await channel.run()
    assert received[1].args == ("a", "#", "400")
    assert results == [
        PlayResult(digit="#", offset_samples=1200),
        PlayResult(digit=None, offset_samples=0, failed=True),
    ]


async def test_unsafe_variable_value_fails_the_hook_and_the_default_runs(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A value with a line break is refused before it reaches Asterisk."""

    async def inject(session: HookSession) -> None:
        await session.set_variable("X", "a\nEXEC Hangup")

    registry.register(hook("route", inject))
    channel = FakeChannel(server.port, environment())
    with capture_logs() as logs:
        received = await channel.run()
    assert [c.verb for c in received] == ["GET VARIABLE", "SET VARIABLE"]
    assert received[1].args == ("PBXAGENT_RESULT", "default")
    failed = events(logs, "hook_failed")
    assert failed
    assert UnsafeValueError.__name__ in str(failed[0]["error"])


# --- deadlines, failures and unknown hooks ---------------------------------------------


async def test_hook_overrunning_its_deadline_gets_the_safe_default(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A slow hook is abandoned at its deadline and the safe default sets its variable."""

    async def slow(session: HookSession) -> None:
        await asyncio.sleep(30)

    registry.register(hook("route", slow, deadline_s=0.1))
    channel = FakeChannel(server.port, environment())
    with capture_logs() as logs:
        received = await channel.run()
    assert channel.variables["PBXAGENT_RESULT"] == "default"
    assert [c.verb for c in received] == ["GET VARIABLE", "SET VARIABLE"]
    deadline = events(logs, "hook_deadline")
    assert len(deadline) == 1
    assert deadline[0]["hook"] == "route"
    assert deadline[0]["call_id"] == "1795339422.19"
    assert deadline[0]["channel"] == "PJSIP/carol-00000010"
    assert events(logs, "hook_default_applied")


async def test_a_live_deadline_is_read_at_each_request(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A hook whose deadline follows the configuration is cut at the deadline of the moment,
    not the one it was registered with; a live reading that fails falls back to that one."""

    async def slow(session: HookSession) -> None:
        await asyncio.sleep(30)

    readings: list[float | Exception] = [0.1, RuntimeError("broken")]

    def live() -> float:
        value = readings.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    spec = HookSpec(
        name="route",
        handler=slow,
        deadline_s=0.2,
        on_timeout=set_default_result,
        live_deadline_s=live,
    )
    registry.register(spec)
    for expected in (0.1, 0.2):
        with capture_logs() as logs:
            await FakeChannel(server.port, environment()).run()
        assert [e["deadline_s"] for e in events(logs, "hook_deadline")] == [expected]


async def test_default_after_a_deadline_skips_the_abandoned_reply(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A reply that arrives after the deadline is not taken as the default's answer."""

    async def responder(command: AgiCommand) -> list[bytes]:
        if command.verb == "WAIT FOR DIGIT":
            await asyncio.sleep(0.3)  # still waiting when the hook's deadline passes
            return [encode_reply(result=ord("7"))]
        if command.verb == "SET VARIABLE":
            return [encode_reply(result=1)]
        return [encode_reply(result=1, data="L")]

    async def waits(session: HookSession) -> None:
        await session.wait_for_digit(5)

    registry.register(hook("route", waits, deadline_s=0.1))
    channel = FakeChannel(server.port, environment(), responder)
    with capture_logs() as logs:
        received = await channel.run()
    assert [c.verb for c in received] == ["GET VARIABLE", "WAIT FOR DIGIT", "SET VARIABLE"]
    assert events(logs, "hook_deadline")
    assert events(logs, "hook_default_applied")


async def test_hook_that_raises_gets_the_safe_default(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """An exception in the handler is logged and the safe default runs."""

    async def broken(session: HookSession) -> None:
        msg = "policy store unreachable"
        raise RuntimeError(msg)

    registry.register(hook("route", broken))
    channel = FakeChannel(server.port, environment())
    with capture_logs() as logs:
        await channel.run()
    assert channel.variables["PBXAGENT_RESULT"] == "default"
    failed = events(logs, "hook_failed")
    assert len(failed) == 1
    assert "policy store unreachable" in str(failed[0]["error"])
    assert failed[0]["call_id"] == "1795339422.19"


async def test_safe_default_overrunning_its_own_deadline_is_cut(
    registry: HookRegistry,
) -> None:
    """The safe default has its own short deadline; the session still ends."""

    async def slow_default(session: HookSession) -> None:
        await asyncio.sleep(30)

    async def broken(session: HookSession) -> None:
        raise RuntimeError

    registry.register(hook("route", broken, on_timeout=slow_default))
    async with FastAgiServer(registry, port=0, default_deadline_s=0.1) as server:
        channel = FakeChannel(server.port, environment())
        with capture_logs() as logs:
            await channel.run()
    assert channel.closed_by_server
    assert events(logs, "hook_default_deadline")


async def test_unknown_hook_ends_the_session_so_the_dialplan_goes_on(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A request for a hook nobody registered is logged and closed at once."""
    registry.register(hook("route", set_default_result))
    channel = FakeChannel(server.port, environment("no-such-hook?x=1"))
    with capture_logs() as logs:
        received = await channel.run()
    assert [c.args for c in received] == [("CHANNEL(linkedid)",)]
    assert channel.closed_by_server
    unknown = events(logs, "hook_unknown")
    assert len(unknown) == 1
    assert unknown[0]["hook"] == "no-such-hook"
    assert unknown[0]["call_id"] == "1795339422.19"
    assert unknown[0]["channel"] == "PJSIP/carol-00000010"


async def test_unknown_hook_gets_the_servers_safe_default(registry: HookRegistry) -> None:
    """With an unknown_hook_default configured, it runs for requests nobody handles."""
    async with FastAgiServer(registry, port=0, unknown_hook_default=set_default_result) as server:
        channel = FakeChannel(server.port, environment("typo-hook"))
        with capture_logs() as logs:
            await channel.run()
    assert channel.variables["PBXAGENT_RESULT"] == "default"
    assert events(logs, "hook_unknown")
    assert events(logs, "hook_default_applied")[0]["hook"] == "typo-hook"


# --- hang-ups, dead channels, usage errors ---------------------------------------------


async def test_hangup_mid_command_marks_the_session_and_variables_still_work(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """result=-1 then HANGUP: the wait raises ChannelHungUp, get_variable still answers."""
    seen: dict[str, object] = {}

    async def responder(command: AgiCommand) -> list[bytes]:
        if command.verb == "WAIT FOR DIGIT":
            return [encode_reply(result=-1) + encode_hangup()]
        if command.verb == "GET VARIABLE":
            return [encode_reply(result=1, data="PJSIP/carol-00000010")]
        return [
            encode_reply(511, extra="Command Not Permitted on a dead channel or intercept routine")
        ]

    async def waits(session: HookSession) -> None:
        try:
            await session.wait_for_digit(20)
        except ChannelHungUp:
            seen["raised"] = True
        seen["hung_up"] = session.hung_up
        seen["name"] = await session.get_variable("CHANNEL(name)")
        try:
            await session.answer()
        except ChannelHungUp as exc:
            seen["answer"] = exc.action

    registry.register(hook("route", waits))
    await FakeChannel(server.port, environment(), responder).run()
    assert seen == {
        "raised": True,
        "hung_up": True,
        "name": "PJSIP/carol-00000010",
        "answer": "ANSWER",
    }


async def test_dead_channel_511_raises_channel_hung_up_for_channel_commands(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """511 for STREAM FILE and SET VARIABLE raises ChannelHungUp; HANGUP is a no-op."""
    raised: list[str] = []
    dead = encode_reply(511, extra="Command Not Permitted on a dead channel or intercept routine")

    async def responder(command: AgiCommand) -> list[bytes]:
        if command.verb == "GET VARIABLE":
            return [encode_reply(result=1, data="L")]
        return [dead]

    async def on_dead_channel(session: HookSession) -> None:
        for action in (
            session.play("beep"),
            session.set_variable("X", "1"),
            session.answer(),
        ):
            try:
                await action
            except ChannelHungUp as exc:
                raised.append(exc.action)
        await session.hangup()

    registry.register(hook("route", on_dead_channel))
    with capture_logs() as logs:
        await FakeChannel(server.port, environment(), responder).run()
    assert raised == ["STREAM FILE", "SET VARIABLE", "ANSWER"]
    assert events(logs, "hook_done")


async def test_usage_error_reply_raises_with_the_usage_text(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A multi-line 520, even split across segments, becomes PbxActionFailed."""
    failures: list[str] = []
    usage = encode_reply(520, usage=["Usage: STREAM FILE <filename> <escape_digits>", ""])

    async def responder(command: AgiCommand) -> list[bytes]:
        if command.verb == "STREAM FILE":
            return [usage[:30], usage[30:]]
        return [encode_reply(result=1, data="L")]

    async def plays(session: HookSession) -> None:
        try:
            await session.play("beep")
        except PbxActionFailed as exc:
            failures.append(exc.message)
        await session.get_variable("AFTER")

    registry.register(hook("route", plays))
    channel = FakeChannel(server.port, environment(), responder)
    received = await channel.run()
    assert len(failures) == 1
    assert "520" in failures[0]
    assert "Usage: STREAM FILE" in failures[0]
    assert received[-1].args == ("AFTER",)


async def test_forged_extra_reply_ends_the_session(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A variable value with a newline forges a second reply: the session stops trusting it."""
    seen: list[object] = []

    async def responder(command: AgiCommand) -> list[bytes]:
        if command.args == ("FROM_SIP_HEADER",):
            return [b"200 result=1 (x\n200 result=1 (forged))\n"]
        return [encode_reply(result=1, data="L")]

    async def reads(session: HookSession) -> None:
        seen.append(await session.get_variable("FROM_SIP_HEADER"))

    registry.register(hook("route", reads))
    with capture_logs() as logs:
        received = await FakeChannel(server.port, environment(), responder).run()
    assert seen == []
    assert "nobody asked for" in str(events(logs, "hook_failed")[0]["error"])
    assert [c.verb for c in received] == ["GET VARIABLE", "GET VARIABLE"]  # no default sent


@pytest.mark.parametrize(
    ("sent", "seen_by_hook"),
    [
        (b"200 result=1 (x\n200 resu", []),  # a forged line begun behind the real reply
        (b"200 result=1 (x)\nHANG", ["x"]),  # the start of Asterisk's own HANGUP line
    ],
    ids=["forged-line-begun", "hangup-begun"],
)
async def test_a_line_begun_behind_a_reply_ends_the_session_unless_it_is_hangup(
    server: FastAgiServer, registry: HookRegistry, sent: bytes, seen_by_hook: list[str]
) -> None:
    """A forged line only begun when the real reply is read (it straddles a read, or comes
    in the next segment) would have become the next command's reply: bytes of a line that
    is not Asterisk's HANGUP, already behind a complete reply, end the session."""
    seen: list[object] = []

    async def responder(command: AgiCommand) -> list[bytes]:
        if command.args == ("FROM_SIP_HEADER",):
            return [sent]
        return [encode_reply(result=1, data="L")]

    async def reads(session: HookSession) -> None:
        seen.append(await session.get_variable("FROM_SIP_HEADER"))

    registry.register(hook("route", reads))
    with capture_logs() as logs:
        await FakeChannel(server.port, environment(), responder).run()
    assert seen == seen_by_hook
    failed = [str(e["error"]) for e in events(logs, "hook_failed")]
    if seen_by_hook:
        assert failed == []
    else:
        assert len(failed) == 1
        assert "the start of another line" in failed[0]


# --- misbehaving clients ----------------------------------------------------------------


async def test_half_header_then_disconnect_never_blocks_another_session(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A client stuck mid-header does not delay a full session; its EOF is then reported."""
    registry.register(hook("route", set_default_result))
    half = encode_environment(environment())[:120]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(half)
    await writer.drain()
    with capture_logs() as logs:
        other = FakeChannel(server.port, environment())
        await other.run()  # completes while the first client sits on half a header
        assert other.variables["PBXAGENT_RESULT"] == "default"
        writer.close()
        await wait_until_idle(server)
    invalid = events(logs, "agi_header_invalid")
    assert len(invalid) == 1
    assert "environment block" in str(invalid[0]["error"])
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def test_client_stalling_mid_header_is_dropped_at_the_header_deadline(
    server: FastAgiServer,
) -> None:
    """Half a header and silence: the server closes the socket after header_timeout_s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_chan")
    await writer.drain()
    with capture_logs() as logs:
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    writer.close()
    assert events(logs, "agi_header_timeout")


async def test_garbage_client_is_dropped_and_the_server_keeps_serving(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """An HTTP request on the FastAGI port ends that connection only."""
    registry.register(hook("route", set_default_result))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    with capture_logs() as logs:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        channel = FakeChannel(server.port, environment())
        await channel.run()
    writer.close()
    assert events(logs, "agi_header_invalid")
    assert channel.variables["PBXAGENT_RESULT"] == "default"


async def test_a_caller_name_carrying_a_whole_forged_environment_runs_no_hook(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """A caller name holding the rest of a block (every key after it, a forged dialled
    number, an empty line) reads as a complete environment; Asterisk's real rest of the
    block then follows before any command: the session is refused and no hook acts on the
    forged values (its SET VARIABLE would have reached the channel)."""
    registry.register(hook("route", set_default_result))
    real = environment()
    keys = list(real)
    after = keys[keys.index("agi_calleridname") + 1 :]
    forged = {**real, "agi_dnid": "900", "agi_extension": "900"}
    name = "Bob\n" + "".join(f"{k}: {forged[k]}\n" for k in after) + "\n"
    block = "".join(f"{k}: {v}\n" for k, v in real.items() if k != "agi_calleridname")
    head, tail = block.split("agi_callingpres", 1)
    raw = (head + f"agi_calleridname: {name}" + "agi_callingpres" + tail + "\n").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    with capture_logs() as logs:
        writer.write(raw)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # no command sent
        await wait_until_idle(server)
    writer.close()
    [refused] = events(logs, "agi_header_invalid")
    assert "forged" in str(refused["error"])


async def test_asterisk_disconnecting_mid_command_ends_only_that_session(
    server: FastAgiServer, registry: HookRegistry
) -> None:
    """The connection drops while a command waits: logged, no default, session gone."""

    async def waits(session: HookSession) -> None:
        await session.wait_for_digit(10)

    registry.register(hook("route", waits))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    with capture_logs() as logs:
        writer.write(encode_environment(environment()))
        await writer.drain()
        decoder = AgiCommandDecoder()
        verbs: list[str | None] = []
        while len(verbs) < 2:
            decoder.feed(await asyncio.wait_for(reader.read(4096), TIMEOUT))
            while (command := decoder.next_message()) is not None:
                verbs.append(command.verb)
                if command.verb == "GET VARIABLE":
                    writer.write(encode_reply(result=1, data="L"))
        writer.close()
        await wait_until_idle(server)
    assert verbs == ["GET VARIABLE", "WAIT FOR DIGIT"]
    assert events(logs, "hook_connection_lost")
    assert not events(logs, "hook_default_applied")


async def test_close_cancels_running_sessions(registry: HookRegistry) -> None:
    """close() ends sessions still inside a hook and leaves no task behind."""
    started = asyncio.Event()

    async def forever(session: HookSession) -> None:
        started.set()
        await asyncio.sleep(3600)

    registry.register(hook("route", forever, deadline_s=3600))
    server = FastAgiServer(registry, port=0)
    await server.start()
    channel_task = asyncio.create_task(FakeChannel(server.port, environment()).run())
    await asyncio.wait_for(started.wait(), TIMEOUT)
    assert server.active_sessions == 1
    await asyncio.wait_for(server.close(), TIMEOUT)
    assert server.active_sessions == 0
    await asyncio.wait_for(channel_task, TIMEOUT)


async def test_binding_beyond_loopback_logs_a_warning(registry: HookRegistry) -> None:
    """Listening on all interfaces is allowed but warned about."""
    with capture_logs() as logs:
        async with FastAgiServer(registry, host="0.0.0.0", port=0):
            pass
    assert events(logs, "fastagi_not_loopback")


async def test_binding_to_loopback_logs_no_warning(registry: HookRegistry) -> None:
    """The default loopback address needs no warning."""
    with capture_logs() as logs:
        async with FastAgiServer(registry, port=0):
            pass
    assert not events(logs, "fastagi_not_loopback")
    assert events(logs, "fastagi_listening")


async def test_hook_connections_past_the_limit_are_refused(registry: HookRegistry) -> None:
    """A peer holding connections open cannot take every socket and all memory: past
    max_sessions a new connection is closed at once (Asterisk then goes on with
    AGISTATUS=FAILURE), and the config's hooks.max_sessions is what the daemon uses."""
    from pbx_agent.config import load_config  # noqa: PLC0415

    assert load_config(None, env={}).hooks.max_sessions == 2000
    async with FastAgiServer(registry, port=0, header_timeout_s=5.0, max_sessions=1) as server:
        _held_reader, held = await asyncio.open_connection("127.0.0.1", server.port)
        held.write(b"agi_network: yes\n")  # never finishes its environment
        await held.drain()
        for _ in range(50):
            if server.active_sessions == 1:
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 2.0) == b""
        assert server.active_sessions == 1
        writer.close()
        held.close()

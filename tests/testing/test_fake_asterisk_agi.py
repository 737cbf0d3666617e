"""The fake Asterisk's FastAGI side against transcripts 05a (the socket) and 05b (AMI)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Self

import pytest

from pbx_agent.testing.fake_asterisk import AmdVerdict, FakeAsterisk, Leg
from pbx_agent.testing.fastagi_driver import AgiEnd
from tests.testing.ami_client import AmiTestClient
from tests.testing.asterisk_traces import NOISE, agi_lines, event_signatures, messages


class ScriptedAgiServer:
    """A FastAGI server that sends a fixed list of commands, one per reply, then closes.

    ``before`` maps a command index to a coroutine factory run just before that command
    is sent (e.g. to hang the caller up during it)."""

    def __init__(self, commands: list[str], before: dict[int, Callable[[], object]] | None = None):
        self.commands = commands
        self.before = before or {}
        self.env_lines: list[str] = []
        self.reply_lines: list[str] = []
        self.done = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"agi://127.0.0.1:{port}/route?x=1"

    async def _line(self, reader: asyncio.StreamReader, timeout_s: float = 2.0) -> str:
        data = await asyncio.wait_for(reader.readline(), timeout_s)
        if not data:
            raise ConnectionError
        return data.decode().rstrip("\n")

    async def _reply(self, reader: asyncio.StreamReader) -> None:
        """One reply: a line, or a 520 usage block; HANGUP lines are kept in place."""
        while True:
            line = await self._line(reader)
            self.reply_lines.append(line)
            if line == "HANGUP":
                continue
            if line.startswith("520-"):
                while not (line := await self._line(reader)).startswith("520 "):
                    self.reply_lines.append(line)
                self.reply_lines.append(line)
            return

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (line := await self._line(reader)) != "":
                self.env_lines.append(line)
            for index, command in enumerate(self.commands):
                hook = self.before.get(index)
                if hook is not None:
                    await hook()  # type: ignore[misc]
                writer.write(command.encode() + b"\n")
                await writer.drain()
                await self._reply(reader)
            # 05a: Asterisk never closes; the server reads what is left, then closes.
            with contextlib.suppress(TimeoutError, ConnectionError):
                while True:
                    self.reply_lines.append(await self._line(reader, timeout_s=0.1))
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            self.done.set()


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.01) as fake:
        yield fake


async def _carol(pbx: FakeAsterisk) -> Leg:
    carol = await pbx.inbound_call("carol", exten="604", context="from-ua", endpoint="carol")
    await carol.answer()
    carol.set_amd(AmdVerdict.initial_silence(after_s=0.01))
    return carol


def _blank_channel(line: str) -> str:
    return re.sub(r"carol-[0-9a-f]{8}", "carol-*", line)


async def _replay_05a(pbx: FakeAsterisk) -> tuple[ScriptedAgiServer, Leg]:
    carol = await _carol(pbx)

    async def hang_up_while_waiting() -> None:
        async def later() -> None:
            await pbx.switch.wait_until(
                lambda: any(
                    e.name == "AGIExecStart" and e["Command"] == "WAIT FOR DIGIT 20000"
                    for e in pbx.events
                ),
                2.0,
            )
            await carol.hangup()

        pbx.switch.spawn(later(), name="hang up during WAIT FOR DIGIT")

    commands = agi_lines("05a", sent=True)
    server = ScriptedAgiServer(
        commands, {commands.index("WAIT FOR DIGIT 20000"): hang_up_while_waiting}
    )
    async with server:
        result = await pbx.agi(carol, server.url, digits=[None, "5"], idle_timeout_s=0.3)
        await asyncio.wait_for(server.done.wait(), 2.0)
    assert result.ended is AgiEnd.SERVER_CLOSED
    return server, carol


async def test_environment_block_has_05a_keys_in_order_with_the_legs_values(
    pbx: FakeAsterisk,
) -> None:
    """agi_* lines: same keys, same order, same values but the per-run ones."""
    server, carol = await _replay_05a(pbx)
    captured = agi_lines("05a")[: len(server.env_lines)]
    volatile = {"agi_channel", "agi_uniqueid", "agi_threadid", "agi_request"}
    assert [line.split(":")[0] for line in server.env_lines] == [
        line.split(":")[0] for line in captured
    ]
    assert [line for line in server.env_lines if line.split(":")[0] not in volatile] == [
        line for line in captured if line.split(":")[0] not in volatile
    ]
    assert f"agi_channel: {carol.name}" in server.env_lines
    assert f"agi_uniqueid: {carol.uniqueid}" in server.env_lines


async def test_replies_match_05a_line_for_line(pbx: FakeAsterisk) -> None:
    """Every reply of 05a, the 520 usage block and the HANGUP line in their places."""
    server, _ = await _replay_05a(pbx)
    expected = agi_lines("05a")[len(server.env_lines) + 1 :]
    assert [_blank_channel(line) for line in server.reply_lines] == [
        _blank_channel(line) for line in expected
    ]


async def test_ami_side_matches_05b(pbx: FakeAsterisk) -> None:
    """AGIExecStart/End per command with 05b's ResultCode and Result, then the hang-up
    events once the server has closed the socket."""
    start = len(pbx.events)
    await _replay_05a(pbx)
    ours = [e for e in pbx.events[start:] if e.name not in NOISE]
    theirs = [e for e in messages("05b") if e.kind == "event" and e.name not in NOISE]
    theirs = theirs[next(i for i, e in enumerate(theirs) if e.name == "AGIExecStart") :]
    ours = ours[next(i for i, e in enumerate(ours) if e.name == "AGIExecStart") :]
    assert event_signatures(ours) == event_signatures(theirs)

    def results(events: list) -> list[tuple[str, str, str]]:
        return [
            (e["Command"], e["ResultCode"], e["Result"]) for e in events if e.name == "AGIExecEnd"
        ]

    assert results(ours) == results(theirs)
    ends = [
        (e.name, e.get("Cause"), e.get("Value"))
        for e in ours
        if "Hangup" in e.name or e.get("Variable") == "AGISTATUS"
    ]
    assert ends == [
        ("HangupRequest", None, None),
        ("VarSet", None, "FAILURE"),
        ("SoftHangupRequest", "16", None),
        ("Hangup", "0", None),
    ]


async def test_set_variable_is_stored_and_reported(pbx: FakeAsterisk) -> None:
    """SET VARIABLE reaches the channel (VarSet) and the result lists it."""
    carol = await _carol(pbx)
    async with ScriptedAgiServer(
        ['SET VARIABLE ROUTE "night ivr"', "GET VARIABLE ROUTE"]
    ) as server:
        result = await pbx.agi(carol, server.url, idle_timeout_s=0.2)
    assert result.variables_set == (("ROUTE", "night ivr"),)
    assert carol.variable("ROUTE") == "night ivr"
    assert server.reply_lines == ["200 result=1", "200 result=1 (night ivr)"]
    assert result.status == "SUCCESS"


async def test_channel_functions_answer_get_variable(pbx: FakeAsterisk) -> None:
    """GET VARIABLE CHANNEL(linkedid) gives the call id the daemon asks for."""
    carol = await _carol(pbx)
    async with ScriptedAgiServer(["GET VARIABLE CHANNEL(linkedid)"]) as server:
        await pbx.agi(carol, server.url, idle_timeout_s=0.2)
    assert server.reply_lines == [f"200 result=1 ({carol.linkedid})"]


async def test_live_dtmf_interrupts_stream_file_with_an_escape_digit(pbx: FakeAsterisk) -> None:
    """A digit in the escape set ends STREAM FILE with its ASCII code and the position."""
    pbx.switch.sound_lengths["long"] = 100.0
    carol = await _carol(pbx)

    async def press() -> None:
        async def later() -> None:
            await asyncio.sleep(0.02)
            await carol.dtmf("1", duration_ms=1)

        pbx.switch.spawn(later(), name="press 1")

    async with ScriptedAgiServer(['STREAM FILE long "12"'], {0: press}) as server:
        await pbx.agi(carol, server.url, idle_timeout_s=0.2)
    (reply,) = server.reply_lines
    assert re.fullmatch(r"200 result=49 endpos=\d+", reply)


async def test_get_data_collects_scripted_digits(pbx: FakeAsterisk) -> None:
    """GET DATA with digits scripted for its waits returns them."""
    carol = await _carol(pbx)
    async with ScriptedAgiServer(["GET DATA beep 3000 2"]) as server:
        await pbx.agi(carol, server.url, digits=["4", "2"], idle_timeout_s=0.2)
    assert server.reply_lines == ["200 result=42"]


async def test_idle_server_is_left_after_the_idle_timeout(pbx: FakeAsterisk) -> None:
    """A server that never sends a command: the session ends with IDLE_TIMEOUT."""
    carol = await _carol(pbx)
    async with ScriptedAgiServer([]) as server:
        server.before = {}

        async def hold_open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(1.0)
            writer.close()

        idle = await asyncio.start_server(hold_open, "127.0.0.1", 0)
        port = idle.sockets[0].getsockname()[1]
        result = await pbx.agi(carol, f"agi://127.0.0.1:{port}/x", idle_timeout_s=0.05)
        idle.close()
        await idle.wait_closed()
    assert result.ended is AgiEnd.IDLE_TIMEOUT


async def test_nothing_listening_fails_the_agi(pbx: FakeAsterisk) -> None:
    """No FastAGI server: AGISTATUS FAILURE, the leg stays up."""
    carol = await _carol(pbx)
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    result = await pbx.agi(carol, f"agi://127.0.0.1:{port}/x")
    assert (result.ended, result.status, carol.alive) == (AgiEnd.CONNECT_FAILED, "FAILURE", True)
    assert carol.variable("AGISTATUS") == "FAILURE"


async def test_originate_into_agi_application_runs_a_session(pbx: FakeAsterisk) -> None:
    """Originate Application: AGI connects to the daemon once the callee answers."""
    async with ScriptedAgiServer(["GET VARIABLE CHANNEL(name)"]) as server:
        client = await AmiTestClient.connect(pbx.ami_address)
        await client.login()
        fields = [
            ("Channel", "PJSIP/79161234567@trunk"),
            ("Application", "AGI"),
            ("Data", server.url),
            ("Async", "true"),
        ]
        client.send("Originate", fields, action_id="o")
        await asyncio.wait_for(server.done.wait(), 2.0)
        await client.close()
    (reply,) = server.reply_lines
    assert reply.startswith("200 result=1 (PJSIP/trunk-")
    assert not any(line.startswith("agi_arg_") for line in server.env_lines)


async def test_raw_mode_sends_half_an_environment_and_disconnects(pbx: FakeAsterisk) -> None:
    """agi_raw delivers exactly the bytes given, then closes."""
    received = bytearray()
    closed = asyncio.Event()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.read())
        writer.close()
        closed.set()

    server = await asyncio.start_server(record, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    carol = await _carol(pbx)
    env = pbx.agi_environment(carol, f"agi://127.0.0.1:{port}/route")
    half = "".join(f"{k}: {v}\n" for k, v in env[:5]).encode()
    await pbx.agi_raw(f"agi://127.0.0.1:{port}/route", half)
    await asyncio.wait_for(closed.wait(), 2.0)
    server.close()
    await server.wait_closed()
    assert bytes(received) == half


async def test_stream_file_with_a_sample_offset_plays_the_rest_of_the_file(
    pbx: FakeAsterisk,
) -> None:
    """STREAM FILE's sample offset starts playback inside the file; endpos is the file position."""
    pbx.switch.sound_lengths["music"] = 0.05  # 400 samples
    carol = await _carol(pbx)
    async with ScriptedAgiServer(
        ['STREAM FILE music "" 300', 'STREAM FILE music "" 1000']
    ) as server:
        await pbx.agi(carol, server.url, idle_timeout_s=0.5)
    assert server.reply_lines == ["200 result=0 endpos=400", "200 result=0 endpos=400"]


async def test_hanging_up_a_local_channel_interrupts_its_agi_command(pbx: FakeAsterisk) -> None:
    """AMI Hangup of a Local half running AGI ends the running STREAM FILE at once (-1, HANGUP)."""
    pbx.switch.sound_lengths["long"] = 60.0
    async with ScriptedAgiServer(['STREAM FILE long ""']) as server:
        client = await AmiTestClient.connect(pbx.ami_address)
        await client.login()
        client.send(
            "Originate",
            [
                ("Channel", "Local/602@from-ua/n"),
                ("Application", "AGI"),
                ("Data", server.url),
                ("Async", "true"),
                ("ChannelId", "loc-1"),
                ("OtherChannelId", "loc-2"),
            ],
            "o1",
        )
        await client.response("o1")

        async def streaming() -> None:
            while True:
                ch = pbx.switch.find("loc-1")
                if ch is not None and pbx.switch.agi_link(ch) is not None and server.env_lines:
                    return
                await asyncio.sleep(0.01)

        await asyncio.wait_for(streaming(), 3)
        await asyncio.sleep(0.05)  # STREAM FILE is now playing its 60 s
        client.send("Hangup", [("Channel", "loc-1")], "h1")
        await client.response("h1")
        await asyncio.wait_for(server.done.wait(), 3)
        await client.close()
    assert server.reply_lines[0].startswith("200 result=-1")

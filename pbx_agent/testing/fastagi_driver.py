"""The Asterisk side of FastAGI: connect to the daemon's FastAGI server for one channel,
send the environment, answer the daemon's commands the way Asterisk 22 does.

Everything here follows transcripts 05a (the FastAGI socket) and 05b (the AMI events at the
same time): the ``agi_*`` block with the channel's values, ``200 result=1 (value)`` for a
set variable and ``200 result=0`` for an unset one, ``STREAM FILE`` -> ``200 result=0
endpos=N`` (``result=-1 endpos=0`` for a missing file), ``WAIT FOR DIGIT`` -> the digit's
ASCII code, ``0`` on timeout, ``-1`` on hang-up, ``EXEC`` -> the application's return
(``-2`` for no such application), ``510`` for an unknown command, the multi-line ``520``
usage block, and after the caller hangs up the unsolicited ``HANGUP`` line, then ``511`` for
channel commands while variable commands still work. Asterisk never closes the socket by
itself: the session ends when the daemon closes it (or after ``idle_timeout_s``, a guard
for tests that the real switch does not have). Each command is reported on AMI as
``AGIExecStart`` / ``AGIExecEnd``.

Media durations (sound lengths, ``WAIT FOR DIGIT`` timeouts) are the switch's and follow its
``time_scale``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from pbx_agent.errors import ProtocolError
from pbx_agent.testing import ami_templates as tpl
from pbx_agent.testing.ami_templates import STATE_UP
from pbx_agent.testing.asterisk_model import Channel, substitute
from pbx_agent.testing.asterisk_switch import Switch
from pbx_agent.wire.agi import (
    AgiCommand,
    encode_environment,
    encode_hangup,
    encode_reply,
    parse_command,
)

DEAD_CHANNEL_TEXT = "Command Not Permitted on a dead channel or intercept routine"
UNKNOWN_COMMAND_TEXT = "Invalid or unknown command"
# Commands res_agi.c runs on a dead channel (its "dead" flag); every other one gets 511.
DEAD_SAFE = frozenset(
    {
        "GET VARIABLE",
        "GET FULL VARIABLE",
        "SET VARIABLE",
        "VERBOSE",
        "NOOP",
        "DATABASE GET",
        "DATABASE PUT",
        "DATABASE DEL",
        "DATABASE DELTREE",
        "ASYNCAGI BREAK",
    }
)
# The usage body of STREAM FILE, exactly as captured (05a). Other commands' bodies were not
# captured; the fake sends their one-line syntax instead.
STREAM_FILE_USAGE = (
    (
        "Send the given file, allowing playback to be interrupted by the given digits, if any. "
        "Returns <literal>0</literal> if playback completes without a digit being pressed, or "
        "the ASCII numerical value of the digit if one was pressed, or <literal>-1</literal> on "
        "error or if the channel was disconnected. If musiconhold is playing before calling "
        "stream file it will be automatically stopped and will not be restarted after "
        "completion."
    ),
    "It sets the following channel variables upon completion:",
    "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
    "    <value>SUCCESS</value>",
    "    <value>FAILED</value>",
)
SYNTAX: dict[str, tuple[int, str]] = {
    # verb: (minimum number of arguments, syntax)
    "STREAM FILE": (2, "STREAM FILE <filename> <escape_digits> [sample offset]"),
    "WAIT FOR DIGIT": (1, "WAIT FOR DIGIT <timeout>"),
    "GET VARIABLE": (1, "GET VARIABLE <variablename>"),
    "GET FULL VARIABLE": (1, "GET FULL VARIABLE <expression> [channelname]"),
    "SET VARIABLE": (2, "SET VARIABLE <variablename> <value>"),
    "EXEC": (1, "EXEC <application> <options>"),
    "GET DATA": (1, "GET DATA <file to be streamed> [timeout] [maxdigits]"),
    "SAY NUMBER": (2, "SAY NUMBER <number> <escape_digits> [gender]"),
    "SAY DIGITS": (2, "SAY DIGITS <number> <escape_digits>"),
    "SET MUSIC": (1, "SET MUSIC <on|off> <class>"),
    "DATABASE GET": (2, "DATABASE GET <family> <key>"),
    "DATABASE PUT": (3, "DATABASE PUT <family> <key> <value>"),
    "DATABASE DEL": (2, "DATABASE DEL <family> <key>"),
    "SET CONTEXT": (1, "SET CONTEXT <desired context>"),
    "SET EXTENSION": (1, "SET EXTENSION <new extension>"),
    "SET PRIORITY": (1, "SET PRIORITY <priority>"),
}
# Applications EXEC knows (anything else answers result=-2, as EXEC NoSuchApplication did).
KNOWN_APPLICATIONS = frozenset(
    {
        "answer",
        "amd",
        "background",
        "chanspy",
        "dial",
        "echo",
        "gosub",
        "goto",
        "hangup",
        "mixmonitor",
        "musiconhold",
        "noop",
        "playback",
        "playtones",
        "progress",
        "queue",
        "read",
        "ringing",
        "saydigits",
        "saynumber",
        "set",
        "stopmixmonitor",
        "userevent",
        "verbose",
        "wait",
        "waitexten",
    }
)
SAMPLES_PER_SECOND = 8000
SAY_SECONDS_PER_DIGIT = 0.85  # 05a: SAY NUMBER 42 took 1.69 s
MAX_COMMAND_LINE = 8192


class AgiEnd(StrEnum):
    SERVER_CLOSED = "server_closed"  # the daemon closed the socket (the normal end)
    IDLE_TIMEOUT = "idle_timeout"  # the daemon sent nothing for idle_timeout_s
    CONNECT_FAILED = "connect_failed"  # nothing listening, or the connect timed out


@dataclass(frozen=True, slots=True)
class AgiExchange:
    """One command the daemon sent and the reply the fake wrote (without the final LF)."""

    line: str
    verb: str | None
    args: tuple[str, ...]
    reply: str


@dataclass(frozen=True, slots=True)
class AgiResult:
    """What happened in one FastAGI session."""

    channel: str
    commands: tuple[AgiExchange, ...]
    variables_set: tuple[tuple[str, str], ...]
    ended: AgiEnd
    status: str  # AGISTATUS: SUCCESS, or FAILURE after a hang-up or a failed connect
    channel_hung_up: bool
    hangup_line_sent: bool

    @property
    def verbs(self) -> list[str | None]:
        return [exchange.verb for exchange in self.commands]


def environment(ch: Channel, url: str, args: Sequence[str] = ()) -> list[tuple[str, str]]:
    """The ``agi_*`` block Asterisk sends for ``ch`` (05a, same keys and order)."""
    parts = urlsplit(url)
    script = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    env = [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", url),
        ("agi_channel", ch.name),
        ("agi_language", ch.language),
        ("agi_type", ch.tech.value),
        ("agi_uniqueid", ch.uniqueid),
        ("agi_version", tpl.ASTERISK_VERSION),
        ("agi_callerid", ch.caller_num or "unknown"),
        ("agi_calleridname", ch.caller_name or "unknown"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", ch.dnid or "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", ch.context),
        ("agi_extension", ch.exten),
        ("agi_priority", str(ch.priority)),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ch.account_code),
        ("agi_threadid", "139675393078976"),
    ]
    env.extend((f"agi_arg_{index}", arg) for index, arg in enumerate(args, start=1))
    return env


def split_agi_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "agi" or not parts.hostname:
        msg = f"FastAGI URL {url!r} is not agi://host[:port]/script"
        raise ValueError(msg)
    return parts.hostname, parts.port or 4573


@dataclass(slots=True)
class _Reply:
    text: str
    hangup_after: bool = False


@dataclass(slots=True)
class FastAgiSession:
    """One FastAGI connection on behalf of one channel (see the module docstring)."""

    switch: Switch
    channel: Channel
    url: str
    args: tuple[str, ...] = ()
    digits: list[str | None] = field(default_factory=list)
    idle_timeout_s: float = 10.0
    connect_timeout_s: float = 2.0
    write_timeout_s: float = 2.0
    database: dict[tuple[str, str], str] = field(default_factory=dict)
    exchanges: list[AgiExchange] = field(default_factory=list)
    variables_set: list[tuple[str, str]] = field(default_factory=list)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    hangup_line_sent: bool = False
    _writer: asyncio.StreamWriter | None = None
    _busy: bool = False

    # AgiLink
    def channel_hung_up(self) -> None:
        """The channel went away: a running command ends with -1, then ``HANGUP`` is sent;
        an idle session gets ``HANGUP`` at once (res_agi's loop watches the channel)."""
        self.hung_up.set()
        if not self._busy:
            self._send_hangup_line()

    def _send_hangup_line(self) -> None:
        if self.hangup_line_sent or self._writer is None or self._writer.is_closing():
            return
        self.hangup_line_sent = True
        self._writer.write(encode_hangup())

    async def run(self) -> AgiResult:
        ch = self.channel
        if ch.hangup_requested or not ch.alive:
            self.hung_up.set()
        try:
            host, port = split_agi_url(self.url)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.connect_timeout_s
            )
        except (OSError, TimeoutError, ValueError):
            # res_agi could not reach the server: AGISTATUS=FAILURE, the dialplan goes on.
            status = "FAILURE"
            if ch.alive:
                self.switch.varset(ch, "AGISTATUS", status)
            return self._result(AgiEnd.CONNECT_FAILED, status)
        self._writer = writer
        self.switch.agi_started(ch, self)
        ended = AgiEnd.SERVER_CLOSED
        try:
            writer.write(encode_environment(environment(ch, self.url, self.args)))
            await asyncio.wait_for(writer.drain(), self.write_timeout_s)
            if self.hung_up.is_set():
                self._send_hangup_line()
            ended = await self._serve(reader, writer)
        except (ConnectionError, TimeoutError):
            ended = AgiEnd.SERVER_CLOSED
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.write_timeout_s)
            status = self.switch.agi_finished(ch)
        return self._result(ended, status)

    def _result(self, ended: AgiEnd, status: str) -> AgiResult:
        return AgiResult(
            channel=self.channel.name,
            commands=tuple(self.exchanges),
            variables_set=tuple(self.variables_set),
            ended=ended,
            status=status,
            channel_hung_up=self.hung_up.is_set(),
            hangup_line_sent=self.hangup_line_sent,
        )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> AgiEnd:
        buffer = bytearray()
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) > MAX_COMMAND_LINE:
                    return AgiEnd.SERVER_CLOSED
                try:
                    data = await asyncio.wait_for(reader.read(4096), self.idle_timeout_s)
                except TimeoutError:
                    return AgiEnd.IDLE_TIMEOUT
                if not data:
                    return AgiEnd.SERVER_CLOSED
                buffer += data
                continue
            raw = bytes(buffer[:newline]).decode("utf-8", "surrogateescape").rstrip("\r")
            del buffer[: newline + 1]
            if not raw.strip(" \t"):
                continue
            await self._one_command(raw, writer)

    async def _one_command(self, line: str, writer: asyncio.StreamWriter) -> None:
        try:
            command = parse_command(line)
        except ProtocolError:
            command = AgiCommand(argv=(), verb=None, args=())
        command_id = str(random.randint(1, 2**31 - 1))  # noqa: S311 - an id, not a secret
        ch = self.channel
        self.switch.ev("AGIExecStart", ch, CommandId=command_id, Command=line)
        self._busy = True
        try:
            reply = await self._execute(command)
        finally:
            self._busy = False
        writer.write(reply.text.encode("utf-8", "surrogateescape"))
        code, result = _ami_result(reply.text)
        self.switch.ev(
            "AGIExecEnd", ch, CommandId=command_id, Command=line, ResultCode=code, Result=result
        )
        self.exchanges.append(
            AgiExchange(line, command.verb, command.args, reply.text.rstrip("\n"))
        )
        if reply.hangup_after or (self.hung_up.is_set() and not self.hangup_line_sent):
            self._send_hangup_line()
        await asyncio.wait_for(writer.drain(), self.write_timeout_s)

    async def _execute(self, command: AgiCommand) -> _Reply:
        verb = command.verb
        if verb is None:
            return _Reply(encode_reply(510, extra=UNKNOWN_COMMAND_TEXT).decode())
        minimum, syntax = SYNTAX.get(verb, (0, verb))
        if len(command.args) < minimum:
            usage = STREAM_FILE_USAGE if verb == "STREAM FILE" else (f"Usage: {syntax}",)
            return _Reply(encode_reply(520, usage=usage).decode())
        if self.hung_up.is_set() and verb not in DEAD_SAFE:
            return _Reply(encode_reply(511, extra=DEAD_CHANNEL_TEXT).decode())
        handler = self._handlers().get(verb)
        if handler is None:
            # A command res_agi knows but the fake does not model: it succeeds quietly.
            return _ok(0)
        return await handler(command.args)

    def _handlers(self) -> dict[str, Callable[[tuple[str, ...]], Awaitable[_Reply]]]:
        return {
            "ANSWER": self._answer,
            "HANGUP": self._hangup,
            "CHANNEL STATUS": self._channel_status,
            "GET VARIABLE": self._get_variable,
            "GET FULL VARIABLE": self._get_full_variable,
            "SET VARIABLE": self._set_variable,
            "VERBOSE": self._verbose,
            "NOOP": self._noop,
            "STREAM FILE": self._stream_file,
            "WAIT FOR DIGIT": self._wait_for_digit,
            "GET DATA": self._get_data,
            "EXEC": self._exec,
            "SAY NUMBER": self._say,
            "SAY DIGITS": self._say,
            "SET MUSIC": self._set_music,
            "DATABASE GET": self._database_get,
            "DATABASE PUT": self._database_put,
            "DATABASE DEL": self._database_del,
            "SET CONTEXT": self._set_context,
            "SET EXTENSION": self._set_extension,
            "SET PRIORITY": self._set_priority,
        }

    # --------------------------------------------------------------------- commands

    async def _answer(self, _args: tuple[str, ...]) -> _Reply:
        ch = self.channel
        if not ch.is_up:
            self.switch.newstate(ch, STATE_UP)
            self.switch.device_state(ch, "INUSE")
        return _ok(0)

    async def _hangup(self, _args: tuple[str, ...]) -> _Reply:
        # Not captured: HANGUP hangs the channel up like the dialplan's Hangup() once the
        # session ends; the session sees its own hang-up (HANGUP line, 511 afterwards).
        ch = self.channel
        ch.hangup_requested = True
        self.hung_up.set()
        self.switch.soft_hangup_request(ch, tpl.SOFTHANGUP_EXPLICIT)
        self.switch.defer_until_agi_end(ch, lambda: self.switch.finish(ch, 16))
        return _Reply(encode_reply(result=1).decode(), hangup_after=True)

    async def _channel_status(self, _args: tuple[str, ...]) -> _Reply:
        return _ok(self.channel.state)

    async def _get_variable(self, args: tuple[str, ...]) -> _Reply:
        value = self.switch.get_variable(self.channel, args[0])
        if value is None:
            return _ok(0)
        return _Reply(encode_reply(result=1, data=value).decode())

    async def _get_full_variable(self, args: tuple[str, ...]) -> _Reply:
        value = substitute(args[0], None, self.channel)
        return _Reply(encode_reply(result=1, data=value).decode())

    async def _set_variable(self, args: tuple[str, ...]) -> _Reply:
        self.switch.set_variable(self.channel, args[0], args[1])
        self.variables_set.append((args[0], args[1]))
        return _ok(1)

    async def _verbose(self, _args: tuple[str, ...]) -> _Reply:
        return _ok(1)

    async def _noop(self, _args: tuple[str, ...]) -> _Reply:
        return _ok(0)

    async def _stream_file(self, args: tuple[str, ...]) -> _Reply:
        """STREAM FILE <file> <escape digits> [sample offset]: playback starts ``offset``
        samples into the file; ``endpos`` is the position in the file where it stopped."""
        name, escape = args[0], args[1]
        offset = int(args[2]) if len(args) > 2 and args[2].lstrip("-").isdigit() else 0
        offset = max(offset, 0)
        length = self.switch.sound_length(name)
        if length is None:
            return _Reply(encode_reply(result=-1, endpos=0).decode())
        remaining = max(0.0, length - offset / SAMPLES_PER_SECOND)
        digit, played = await self._play(remaining, escape)
        endpos = min(offset, int(length * SAMPLES_PER_SECOND)) + int(played * SAMPLES_PER_SECOND)
        if digit == "hangup":
            return _Reply(encode_reply(result=-1, endpos=endpos).decode())
        self.switch.varset(self.channel, "PLAYBACKSTATUS", "SUCCESS")
        result = ord(digit) if digit else 0
        return _Reply(encode_reply(result=result, endpos=endpos).decode())

    async def _play(self, length_s: float, escape: str) -> tuple[str | None, float]:
        """Play ``length_s`` of sound (scaled); a digit in ``escape`` or a hang-up cuts it.
        Returns (digit or "hangup" or None, seconds played before scaling)."""
        clock = self.switch.clock
        started = clock.now()
        deadline = started + self.switch.scaled(length_s)
        queue = self.switch.digit_queue(self.channel)
        while True:
            remaining = deadline - clock.now()
            if remaining <= 0:
                return None, length_s
            outcome = await self._next_digit_or_hangup(queue, remaining)
            if outcome == "hangup":
                return "hangup", _unscale(clock.now() - started, self.switch)
            if outcome is not None and outcome in escape:
                return outcome, _unscale(clock.now() - started, self.switch)

    async def _next_digit_or_hangup(
        self, queue: asyncio.Queue[str], timeout_s: float
    ) -> str | None:
        """A digit, ``"hangup"``, or None after ``timeout_s`` on the switch's clock."""
        if self.hung_up.is_set():
            return "hangup"
        if not queue.empty():
            return queue.get_nowait()
        getter = asyncio.ensure_future(queue.get())
        hangup = asyncio.ensure_future(self.hung_up.wait())
        timer = asyncio.ensure_future(self.switch.sleep(timeout_s))
        try:
            done, _ = await asyncio.wait(
                {getter, hangup, timer}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in (getter, hangup, timer):
                waiter.cancel()
        if getter in done and not getter.cancelled():
            return getter.result()
        if hangup in done:
            return "hangup"
        return None

    async def _wait_for_digit(self, args: tuple[str, ...]) -> _Reply:
        timeout_ms = int(args[0])
        queue = self.switch.digit_queue(self.channel)
        if self.digits:
            scripted = self.digits.pop(0)
            if scripted is not None:
                await self.switch.dtmf(self.channel, scripted, 100, "Received")
        timeout_s = 24 * 3600.0 if timeout_ms < 0 else self.switch.scaled(timeout_ms / 1000)
        outcome = await self._next_digit_or_hangup(queue, timeout_s)
        if outcome == "hangup":
            return _ok(-1)
        return _ok(ord(outcome) if outcome else 0)

    async def _get_data(self, args: tuple[str, ...]) -> _Reply:
        """GET DATA <file> [timeout ms] [maxdigits]: digits until # or maxdigits or timeout."""
        timeout_ms = int(args[1]) if len(args) > 1 and args[1] else 5000
        max_digits = int(args[2]) if len(args) > 2 and args[2] else 1024
        queue = self.switch.digit_queue(self.channel)
        collected = ""
        length = self.switch.sound_length(args[0])
        if length is not None:
            digit, _ = await self._play(length, "0123456789*#")
            if digit == "hangup":
                return _ok(-1)
            if digit:
                collected = digit
        while len(collected) < max_digits and not collected.endswith("#"):
            if self.digits:
                scripted = self.digits.pop(0)
                if scripted is not None:
                    await self.switch.dtmf(self.channel, scripted, 100, "Received")
            outcome = await self._next_digit_or_hangup(queue, self.switch.scaled(timeout_ms / 1000))
            if outcome == "hangup":
                return _ok(-1)
            if outcome is None:
                return _Reply(encode_reply(result=collected, extra="(timeout)").decode())
            collected += outcome
        return _Reply(encode_reply(result=collected.rstrip("#")).decode())

    async def _exec(self, args: tuple[str, ...]) -> _Reply:
        application = args[0]
        data = " ".join(args[1:])
        if application.lower() not in KNOWN_APPLICATIONS:
            return _ok(-2)
        await self.switch.run_application(self.channel, application, data)
        if not self.channel.alive or self.channel.hangup_requested:
            return _ok(-1)
        return _ok(0)

    async def _say(self, args: tuple[str, ...]) -> _Reply:
        digit, _ = await self._play(len(args[0]) * SAY_SECONDS_PER_DIGIT, args[1])
        if digit == "hangup":
            return _ok(-1)
        return _ok(ord(digit) if digit else 0)

    async def _set_music(self, args: tuple[str, ...]) -> _Reply:
        ch = self.channel
        if args[0].lower() == "on":
            music_class = args[1] if len(args) > 1 and args[1] else ch.music_class
            ch.moh_class_playing = music_class
            self.switch.ev("MusicOnHoldStart", ch, Class=music_class)
        elif ch.moh_class_playing is not None:
            ch.moh_class_playing = None
            self.switch.ev("MusicOnHoldStop", ch)
        return _ok(0)

    async def _database_get(self, args: tuple[str, ...]) -> _Reply:
        value = self.database.get((args[0], args[1]))
        if value is None:
            return _ok(0)
        return _Reply(encode_reply(result=1, data=value).decode())

    async def _database_put(self, args: tuple[str, ...]) -> _Reply:
        self.database[(args[0], args[1])] = args[2]
        return _ok(1)

    async def _database_del(self, args: tuple[str, ...]) -> _Reply:
        return _ok(1 if self.database.pop((args[0], args[1]), None) is not None else 0)

    async def _set_context(self, args: tuple[str, ...]) -> _Reply:
        self.channel.context = args[0]
        return _ok(0)

    async def _set_extension(self, args: tuple[str, ...]) -> _Reply:
        self.channel.exten = args[0]
        return _ok(0)

    async def _set_priority(self, args: tuple[str, ...]) -> _Reply:
        if args[0].isdigit():
            self.channel.priority = int(args[0])
        return _ok(0)


def _ok(result: int) -> _Reply:
    return _Reply(encode_reply(result=result).decode())


def _unscale(seconds: float, switch: Switch) -> float:
    return seconds / switch.time_scale if switch.time_scale > 0 else seconds


def _ami_result(reply: str) -> tuple[str, str]:
    """AGIExecEnd's ResultCode / Result for a reply (05b)."""
    first = reply.split("\n", 1)[0]
    code = first[:3]
    if code == "200":
        result = first[len("200 result=") :].split(" ", 1)[0]
        if result == "-1":
            return "-1", "Failure"
        if result == "-2":
            return "200", "Unknown Result"
        return "200", "Success"
    texts = {"510": UNKNOWN_COMMAND_TEXT, "511": DEAD_CHANNEL_TEXT, "520": "Usage"}
    return code, texts.get(code, "Failure")

"""The FastAGI server: Asterisk's dialplan calls ``AGI(agi://host:4573/<hook>?k=v)`` and
the daemon answers through a PBX-neutral hook (``pbx_agent.model.hooks``).

Theory of operation. Each TCP connection is one session, served by one task that the
server tracks and cancels on ``close()``. The session reads the ``agi_*`` environment
under ``header_timeout_s``, looks the hook up by the request path, and runs its handler
under the hook's deadline; the call id (``CHANNEL(linkedid)``) is fetched with one GET
VARIABLE inside that deadline. Then the socket is closed, which makes ``AGI()`` return
and the dialplan continue.

Invariants:
- The call is never dropped or held up by the daemon: a handler that raises or overruns
  its deadline ends the session after the spec's safe default has run under
  ``default_deadline_s``; a request for an unknown hook gets the server's
  ``unknown_hook_default`` (if any) the same way. Every read and write has a deadline.
- AGI runs one command at a time: a hook abandoned in the middle of a long ``STREAM FILE``
  leaves Asterisk playing until the file ends, and the safe default waits behind it (up
  to its own deadline). Hooks should keep prompts short next to their deadline.
- One session's trouble never touches another: a client that sends half a header and
  disconnects, stalls, or sends garbage ends only its own session.
- Replies are matched to commands by order. A command abandoned by a deadline leaves
  its reply outstanding; the next command first discards it. A reply nobody asked for
  (a variable value with a newline in it can forge one) ends the session as a protocol
  error instead of shifting every later answer by one.
- ``HANGUP`` lines mark the session hung up. After that Asterisk answers channel
  commands with 511, which raise ``ChannelHungUp``; ``get_variable`` still works.
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, NoReturn

import structlog

from pbx_agent.errors import (
    ChannelHungUp,
    PbxActionFailed,
    PbxActionTimeout,
    PbxConnectionLost,
    ProtocolError,
)
from pbx_agent.model.events import CallId, LegId
from pbx_agent.model.hooks import PlayResult
from pbx_agent.pbx.listener import SessionListener
from pbx_agent.wire.agi import (
    AgiDecoder,
    AgiEnvironment,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    encode_command,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from pbx_agent.model.hooks import HookRegistry, HookSession, HookSpec

    SafeDefault = Callable[[HookSession], Awaitable[None]]

log = structlog.get_logger()

_READ_CHUNK = 65536
# How long the server listens after the environment for lines Asterisk would never send
# then (``_stray_after_environment``): the rest of its block arrives with it.
_STRAY_WAIT_S = 0.01
_CLOSE_TIMEOUT_S = 1.0
_DIGITS = frozenset("0123456789*#ABCDabcd")


class _Default(Enum):
    """Marks an argument left to the server's setting."""

    TOKEN = 0


_DEFAULT = _Default.TOKEN


def _unknown_as_empty(value: str) -> str:
    # Asterisk writes "unknown" in the environment when a caller id, name or DNID is absent.
    return "" if value == "unknown" else value


class AgiSession:
    """One FastAGI connection seen as a ``HookSession``."""

    def __init__(
        self,
        env: AgiEnvironment,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: AgiDecoder,
        *,
        command_timeout_s: float,
    ) -> None:
        self.env = env
        self.hook = env.script_path.strip("/")
        self.params: Mapping[str, str] = env.query
        self.leg = LegId(env.uniqueid)
        self.call = CallId(env.uniqueid)  # until CHANNEL(linkedid) is known
        self.channel = env.channel
        self.caller_number = _unknown_as_empty(env.callerid)
        self.caller_name = _unknown_as_empty(env.calleridname)
        self.dialed = _unknown_as_empty(env.dnid) or env.extension
        self.variables: Mapping[str, str] = MappingProxyType(
            {key.removeprefix("agi_"): value for key, value in env.items()}
        )
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._command_timeout_s = command_timeout_s
        self._hung_up = False
        self._outstanding = 0  # commands written whose reply has not been read
        self._broken: str | None = None  # why no further command can be sent

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    @property
    def broken(self) -> bool:
        return self._broken is not None

    async def resolve_call(self) -> None:
        """Fetch the call id (``CHANNEL(linkedid)``); keep the leg id if there is none."""
        linkedid = await self.get_variable("CHANNEL(linkedid)")
        if linkedid:
            self.call = CallId(linkedid)

    # --- HookSession --------------------------------------------------------------------

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command("GET VARIABLE", name)
        self._expect_ok("GET VARIABLE", reply, dead_ok=True)
        if reply.result == "1":
            return reply.data if reply.data is not None else ""
        return None

    async def set_variable(self, name: str, value: str) -> None:
        reply = await self.command("SET VARIABLE", name, value)
        self._expect_ok("SET VARIABLE", reply)

    async def answer(self) -> None:
        reply = await self.command("ANSWER")
        self._expect_ok("ANSWER", reply)
        if reply.result_int == -1:
            raise PbxActionFailed("ANSWER", "the channel could not be answered (result=-1)")

    async def play(
        self, sound: str, *, escape_digits: str = "", offset_samples: int = 0
    ) -> PlayResult:
        if not _DIGITS.issuperset(escape_digits):
            msg = f"escape digits {escape_digits!r} are not DTMF digits (0-9 * # A-D)"
            raise ValueError(msg)
        args = [sound, escape_digits]
        if offset_samples > 0:
            args.append(str(offset_samples))
        # Playback lasts as long as the file: only the hook's deadline bounds it.
        reply = await self.command("STREAM FILE", *args, timeout_s=None)
        self._expect_ok("STREAM FILE", reply)
        result = reply.result_int
        endpos = reply.endpos if reply.endpos is not None else offset_samples
        if result is None or result < 0:
            return PlayResult(digit=None, offset_samples=endpos, failed=True)
        return PlayResult(digit=chr(result) if result > 0 else None, offset_samples=endpos)

    async def wait_for_digit(self, timeout_s: float) -> str | None:
        timeout_ms = max(0, round(timeout_s * 1000))
        reply = await self.command(
            "WAIT FOR DIGIT", str(timeout_ms), timeout_s=timeout_s + self._command_timeout_s
        )
        self._expect_ok("WAIT FOR DIGIT", reply)
        result = reply.result_int
        if result is None or result < 0:
            # Asterisk answers -1 when the channel hangs up during the wait (trace 05a).
            raise ChannelHungUp("WAIT FOR DIGIT", f"the channel went away (result={reply.result})")
        return chr(result) if result > 0 else None

    async def hangup(self) -> None:
        reply = await self.command("HANGUP")
        if reply.dead_channel:
            return  # already gone: nothing left to hang up
        self._expect_ok("HANGUP", reply)

    # --- command machinery --------------------------------------------------------------

    def _expect_ok(self, verb: str, reply: AgiReply, *, dead_ok: bool = False) -> None:
        if reply.code == 200:
            return
        if reply.dead_channel and not dead_ok:
            raise ChannelHungUp(verb, reply.extra or "511 dead channel")
        if reply.code == 520:
            usage = " ".join(reply.usage)[:200]
            raise PbxActionFailed(verb, f"520 invalid command syntax: {usage}")
        raise PbxActionFailed(verb, f"{reply.code} {reply.extra or ''}".strip())

    async def command(
        self, verb: str, *args: str, timeout_s: float | _Default | None = _DEFAULT
    ) -> AgiReply:
        """Send one AGI command and return Asterisk's reply, whatever its code.

        For Asterisk-only hooks (``EXEC AMD``, ...); neutral hooks use the methods above.
        ``timeout_s``: the command's own deadline (default: the server's command timeout;
        ``None``: none but the hook's). Raises ``PbxActionTimeout``, ``PbxConnectionLost``,
        ``AgiProtocolError``, or ``UnsafeValueError`` for an argument that cannot be sent.
        """
        if self._broken is not None:
            raise PbxConnectionLost(f"FastAGI session unusable: {self._broken}")
        line = encode_command(verb, *args)
        if isinstance(timeout_s, _Default):
            timeout_s = self._command_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                while self._outstanding:
                    await self._read_reply()  # the reply to a command a deadline abandoned
                self._writer.write(line)
                self._outstanding += 1
                await self._writer.drain()
                reply = await self._read_reply()
        except TimeoutError:
            # Only this command's own deadline lands here; the hook's deadline cancels.
            msg = f"not answered within {timeout_s} s"
            raise PbxActionTimeout(f"{verb} {msg}") from None
        except (ConnectionError, OSError) as exc:
            self._broken = f"connection error: {exc}"
            raise PbxConnectionLost(f"FastAGI connection lost during {verb}: {exc}") from exc
        self._check_nothing_unsolicited(verb)
        return reply

    async def _read_reply(self) -> AgiReply:
        while True:
            message = self._next_message()
            if message is None:
                if self._decoder.at_eof:
                    self._broken = "Asterisk closed the connection"
                    raise PbxConnectionLost("FastAGI connection closed by Asterisk")
                self._decoder.feed(await self._reader.read(_READ_CHUNK))
                continue
            if isinstance(message, AgiHangup):
                self._hung_up = True
                continue
            if not isinstance(message, AgiReply):
                self._broken = "unexpected environment block"
                msg = "FastAGI peer sent a second environment block"
                raise AgiProtocolError(msg)
            self._outstanding -= 1
            return message

    def _next_message(self) -> AgiEnvironment | AgiReply | AgiHangup | None:
        try:
            return self._decoder.next_message()
        except AgiProtocolError as exc:
            self._broken = f"protocol error: {exc}"
            raise

    def _check_nothing_unsolicited(self, verb: str) -> None:
        """Replies come one per command; a second one already buffered, whole or begun, is
        forged (a value with a newline in it) or lost."""
        while (message := self._next_message()) is not None:
            if isinstance(message, AgiHangup):
                self._hung_up = True
                continue
            self._unsolicited(verb, repr(message))
        if self._decoder.unsolicited_partial:
            self._unsolicited(verb, "the start of another line")

    def _unsolicited(self, verb: str, what: str) -> NoReturn:
        self._broken = "unsolicited reply"
        msg = (
            f"FastAGI peer sent a reply nobody asked for after {verb} ({what}); "
            "replies would no longer match commands"
        )
        raise AgiProtocolError(msg)

    async def close(self) -> None:
        self._broken = self._broken or "closed"
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()


class FastAgiServer(SessionListener):
    """Listens for Asterisk's FastAGI connections and serves the registered hooks.

    Use as ``async with FastAgiServer(registry) as server:``, or ``start()``/``close()``.
    """

    def __init__(
        self,
        registry: HookRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        header_timeout_s: float = 5.0,
        command_timeout_s: float = 5.0,
        default_deadline_s: float = 1.0,
        unknown_hook_default: SafeDefault | None = None,
        max_sessions: int | None = 2000,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            event="fastagi",
            serves="FastAGI connections",
            setting="asterisk.fastagi_bind (and the address in the dialplan's AGI() calls)",
            exposure="drive calls",
            max_sessions=max_sessions,
        )
        self._registry = registry
        self._unknown_hook_default = unknown_hook_default
        self._header_timeout_s = header_timeout_s
        self._command_timeout_s = command_timeout_s
        self._default_deadline_s = default_deadline_s

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        decoder = AgiDecoder()
        try:
            async with asyncio.timeout(self._header_timeout_s):
                env = await _read_environment(reader, decoder)
        except TimeoutError:
            log.warning("agi_header_timeout", peer=peer, timeout_s=self._header_timeout_s)
            return
        except ProtocolError as exc:
            log.warning("agi_header_invalid", peer=peer, error=str(exc))
            return
        except (ConnectionError, OSError) as exc:
            log.info("agi_client_gone", peer=peer, error=str(exc))
            return
        if env is None:
            log.info("agi_client_gone", peer=peer, error="closed before sending anything")
            return
        if await _stray_after_environment(reader, decoder):
            log.warning(
                "agi_header_invalid",
                peer=peer,
                error="lines came after the environment before any command: a value in it "
                "(a caller name) carried a whole forged environment; no hook runs",
            )
            return
        session = AgiSession(
            env, reader, writer, decoder, command_timeout_s=self._command_timeout_s
        )
        try:
            spec = self._registry.get(session.hook)
            if spec is None:
                await self._on_unknown_hook(session)
                return
            await self._run_hook(spec, session)
        finally:
            await session.close()

    async def _run_hook(self, spec: HookSpec, session: AgiSession) -> None:
        fields = {"hook": spec.name, "channel": session.channel}
        deadline_s = spec.deadline()
        deadline = asyncio.timeout(deadline_s)
        try:
            async with deadline:
                await session.resolve_call()
                await spec.handler(session)
        except TimeoutError as exc:
            if deadline.expired():
                log.warning("hook_deadline", call_id=session.call, deadline_s=deadline_s, **fields)
            else:
                log.warning("hook_failed", call_id=session.call, error=repr(exc), **fields)
        except ChannelHungUp as exc:
            log.info("hook_hung_up", call_id=session.call, error=str(exc), **fields)
        except PbxConnectionLost as exc:
            log.warning("hook_connection_lost", call_id=session.call, error=str(exc), **fields)
            return
        except Exception as exc:  # any handler failure takes the safe default
            log.warning(
                "hook_failed", call_id=session.call, error=repr(exc), exc_info=True, **fields
            )
        else:
            log.debug("hook_done", call_id=session.call, **fields)
            return
        await self._run_default(spec.name, spec.on_timeout, session)

    async def _on_unknown_hook(self, session: AgiSession) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._default_deadline_s):
                await session.resolve_call()  # only so the log names the call
        log.warning(
            "hook_unknown",
            hook=session.hook,
            call_id=session.call,
            channel=session.channel,
            request=session.env.request,
            known=self._registry.names(),
        )
        await self._run_default(session.hook, self._unknown_hook_default, session)

    async def _run_default(
        self, hook: str, on_timeout: SafeDefault | None, session: AgiSession
    ) -> None:
        if on_timeout is None or session.broken:
            return
        fields = {"hook": hook, "channel": session.channel, "call_id": session.call}
        deadline = asyncio.timeout(self._default_deadline_s)
        failure: Exception | None = None
        try:
            async with deadline:
                await on_timeout(session)
        except Exception as exc:  # noqa: BLE001 - reported below, whatever it is
            failure = exc
        if failure is None:
            log.info("hook_default_applied", **fields)
        elif deadline.expired():
            log.error("hook_default_deadline", deadline_s=self._default_deadline_s, **fields)
        else:
            log.error("hook_default_failed", error=repr(failure), **fields)


async def _stray_after_environment(reader: asyncio.StreamReader, decoder: AgiDecoder) -> bool:
    """Whether Asterisk sent more after the environment before any command (what a forged
    block inside a caller's value leaves behind: the real rest of the block). It writes the
    whole block at once, so that rest is already here or right behind it: a short wait."""
    if decoder.stray_after_environment:
        return True
    try:
        async with asyncio.timeout(_STRAY_WAIT_S):
            data = await reader.read(_READ_CHUNK)
    except TimeoutError:
        return False
    except (ConnectionError, OSError):
        return False  # gone: the session finds out and says so
    decoder.feed(data)
    return decoder.stray_after_environment


async def _read_environment(
    reader: asyncio.StreamReader, decoder: AgiDecoder
) -> AgiEnvironment | None:
    """The ``agi_*`` block; ``None`` if the client closed without sending a byte."""
    while True:
        message = decoder.next_message()
        if isinstance(message, AgiEnvironment):
            return message
        if message is not None:
            msg = f"FastAGI client sent {message!r} before its environment"
            raise AgiProtocolError(msg)
        if decoder.at_eof:
            return None
        decoder.feed(await reader.read(_READ_CHUNK))

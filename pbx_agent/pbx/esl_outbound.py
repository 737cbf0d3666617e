"""The outbound-socket server: FreeSWITCH's dialplan runs ``socket 127.0.0.1:8084 async full``
and the daemon answers through a PBX-neutral hook (``pbx_agent.model.hooks``), the
FreeSWITCH analogue of the FastAGI server (``pbx_agent.pbx.fastagi``).

Theory of operation. FreeSWITCH connects once per call. The session sends ``connect`` and
reads the channel data block (a CHANNEL_DATA event serialized as the reply, trace 05a),
then ``myevents`` (this channel's events on this socket) and ``linger`` (so the events that
follow a hangup still arrive), all under ``handshake_timeout_s``. The hook is named by the
channel variable ``pbx_agent_hook`` (``<action application="set" data="pbx_agent_hook=route"/>``
before ``socket``), else by the destination number; the other ``pbx_agent_*`` variables are
its parameters. The handler runs under the hook's deadline. Then the socket is closed,
which ends the ``socket`` application and lets the dialplan continue.

How the ``HookSession`` operations map to ESL:
- ``answer``/``play`` send ``sendmsg`` ``execute`` with our own ``Event-UUID``; in async mode
  the ``+OK`` comes at once and the application's end is the CHANNEL_EXECUTE_COMPLETE whose
  ``Application-UUID`` is that tag. ``play`` sets ``playback_terminators`` first and plays
  ``file@@<offset>`` to resume; the escape digit is the first DTMF of the set pressed
  during playback, the end position ``playback_last_offset_pos``.
- ``get_variable``/``set_variable`` use ``api uuid_getvar``/``uuid_setvar`` (the socket is
  ``full``): the value travels in a length-framed body, so a caller-controlled value with a
  newline cannot forge ESL frames as it could in ``getvar``'s one-line reply, and
  ``uuid_setvar`` does not expand ``${...}`` as the ``set`` application would.
- ``wait_for_digit`` waits for a DTMF event; ``hangup`` sends ``sendmsg`` ``hangup``.

Invariants:
- The call is never dropped or held up by the daemon: a handler that raises, overruns its
  deadline, or names an unknown hook ends the session; the spec's safe default runs first
  under ``default_deadline_s`` (a playback still running is stopped with ``uuid_break``).
  Every read and write has a deadline; the session's reader task is owned and cancelled.
- One session's trouble never touches another. Replies are matched to commands in order;
  an abandoned command keeps its slot, a reply nobody asked for ends the session.
- CHANNEL_HANGUP marks the session hung up; then ``answer``, ``play``, ``set_variable`` and
  ``wait_for_digit`` raise ``ChannelHungUp``, a ``play`` interrupted by the hangup returns
  ``failed=True``, ``get_variable`` keeps working while the channel exists.
- Binding failure is a ``ConfigError`` naming the address, never an exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections import deque
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog

from pbx_agent.errors import (
    ChannelHungUp,
    PbxActionFailed,
    PbxActionTimeout,
    PbxConnectionLost,
    ProtocolError,
)
from pbx_agent.model.events import CallId, LegId
from pbx_agent.model.hooks import HookRegistry, HookSession, HookSpec, PlayResult
from pbx_agent.pbx.listener import SessionListener
from pbx_agent.wire.digits import parse_decimal
from pbx_agent.wire.escaping import printable
from pbx_agent.wire.esl import (
    ContentType,
    EslDecoder,
    EslEvent,
    EslMessage,
    EslProtocolError,
    encode_api,
    encode_command,
    encode_execute,
    encode_hangup,
    quote_api_arg,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

log = structlog.get_logger("pbx_agent.esl_outbound")

_MAX_BODY_BYTES = 1024 * 1024

_READ_CHUNK = 65536
_CLOSE_TIMEOUT_S = 1.0
_BREAK_TIMEOUT_S = 0.5
_DIGITS = frozenset("0123456789*#ABCDabcd")


class _Pending:
    __slots__ = ("future", "what")

    def __init__(self, what: str, future: asyncio.Future[EslMessage] | None) -> None:
        self.what = what
        self.future = future  # None: abandoned, its reply is discarded


class EslOutboundSession:
    """One outbound-socket connection (one call) seen as a ``HookSession``."""

    def __init__(
        self,
        data: EslEvent,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: EslDecoder,
        *,
        command_timeout_s: float,
        hook_variable: str = "pbx_agent_hook",
        param_prefix: str = "pbx_agent_",
    ) -> None:
        variables = data.variables
        self.data = data
        self.leg = LegId(data.unique_id or data.get("Channel-Unique-ID") or "")
        self.call = CallId(variables.get("call_uuid") or data.get("Channel-Call-UUID") or self.leg)
        self.channel = data.get("Channel-Name") or ""
        self.caller_number = data.get("Caller-Caller-ID-Number") or ""
        self.caller_name = data.get("Caller-Caller-ID-Name") or ""
        self.dialed = data.get("Caller-Destination-Number") or ""
        self.variables: Mapping[str, str] = MappingProxyType(variables)
        self.hook = variables.get(hook_variable) or self.dialed
        self.params: Mapping[str, str] = MappingProxyType(
            {
                name.removeprefix(param_prefix): value
                for name, value in variables.items()
                if name.startswith(param_prefix) and name != hook_variable
            }
        )
        self.async_mode = data.get("Socket-Mode") != "static"
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._command_timeout_s = command_timeout_s
        self._pending: deque[_Pending] = deque()
        self._apps: dict[str, asyncio.Future[EslEvent]] = {}
        # Applications whose wait was abandoned (deadline) and that may still be running.
        self._abandoned: set[str] = set()
        self._digits: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._hung_up = False
        self._broken: str | None = None
        self._reader_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader that routes replies and events (owned; stopped by close())."""
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"esl-out:{self.leg}")

    async def setup(self, linger_s: int | None) -> None:
        """``myevents``, ``resume`` and ``linger`` (the caller bounds this with the handshake
        deadline). Without ``resume`` an async session's channel stays parked when the
        socket closes instead of going on with its dialplan (mod_event_socket.c)."""
        reply = await self._send("myevents", encode_command("myevents"), None)
        if not reply.ok:
            raise PbxActionFailed("myevents", reply.reply_text or "no reply text")
        reply = await self._send("resume", encode_command("resume"), None)
        if not reply.ok:
            raise PbxActionFailed("resume", reply.reply_text or "no reply text")
        if linger_s is not None:
            reply = await self._send("linger", encode_command(f"linger {linger_s}"), None)
            if not reply.ok:
                raise PbxActionFailed("linger", reply.reply_text or "no reply text")

    @property
    def hung_up(self) -> bool:
        return self._hung_up

    @property
    def broken(self) -> bool:
        return self._broken is not None

    @property
    def app_in_flight(self) -> bool:
        return bool(self._abandoned) or any(not f.done() for f in self._apps.values())

    async def close(self) -> None:
        self._broken = self._broken or "closed"
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_all("the session is closed")
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()

    # -- HookSession --------------------------------------------------------------------------

    async def get_variable(self, name: str) -> str | None:
        try:
            value = await self.api(f"uuid_getvar {self.leg} {quote_api_arg(name)}")
        except PbxActionFailed as exc:
            if "No such channel" in exc.message:
                return None  # the channel is already destroyed
            raise
        return None if value == "_undef_" else value

    async def set_variable(self, name: str, value: str) -> None:
        self._check_alive("set_variable")
        try:
            await self.api(f"uuid_setvar {self.leg} {quote_api_arg(name)} {quote_api_arg(value)}")
        except PbxActionFailed as exc:
            if "No such channel" in exc.message:
                raise ChannelHungUp("set_variable", exc.message) from exc
            raise

    async def answer(self) -> None:
        self._check_alive("answer")
        try:
            await self.execute("answer")
        except PbxConnectionLost as exc:
            if self._hung_up:
                raise ChannelHungUp("answer", "the caller hung up") from exc
            raise

    async def play(
        self, sound: str, *, escape_digits: str = "", offset_samples: int = 0
    ) -> PlayResult:
        if not _DIGITS.issuperset(escape_digits):
            msg = f"escape digits {escape_digits!r} are not DTMF digits (0-9 * # A-D)"
            raise ValueError(msg)
        self._check_alive("play")
        terminators = escape_digits or "none"
        await self.api(f"uuid_setvar {self.leg} playback_terminators {terminators}")
        target = f"{sound}@@{offset_samples}" if offset_samples > 0 else sound
        self._digits.clear()
        try:
            done = await self.execute("playback", target)
        except (ChannelHungUp, PbxConnectionLost):
            if self._hung_up:
                return PlayResult(digit=None, offset_samples=offset_samples, failed=True)
            raise
        position = done.variable("playback_last_offset_pos")
        end = parse_decimal(position)
        if end is None:
            end = offset_samples
        digit = next((d for d in self._digits if escape_digits and d in escape_digits), None)
        response = done.get("Application-Response") or ""
        failed = response != "FILE PLAYED" or (self._hung_up and digit is None)
        return PlayResult(digit=digit, offset_samples=end, failed=failed)

    async def wait_for_digit(self, timeout_s: float) -> str | None:
        self._check_alive("wait_for_digit")
        self._digits.clear()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if self._digits:
                        return self._digits.popleft()
                    if self._hung_up:
                        raise ChannelHungUp("wait_for_digit", "the caller hung up")
                    if self._broken is not None:
                        raise PbxConnectionLost(f"wait_for_digit: {self._broken}")
                    self._wakeup.clear()
                    await self._wakeup.wait()
        except TimeoutError:
            return None

    async def hangup(self) -> None:
        if self._hung_up:
            return  # already gone: nothing left to hang up
        reply = await self._send(
            "hangup", encode_hangup("NORMAL_CLEARING"), self._command_timeout_s
        )
        if not reply.ok and not self._hung_up:
            raise PbxActionFailed("hangup", reply.reply_text or "no reply text")

    # -- commands -------------------------------------------------------------------------------

    async def api(self, command: str, *, timeout_s: float | None = None) -> str:
        """``api`` over this socket; ``-ERR`` output is ``PbxActionFailed``."""
        what = f"api {command.split(' ', 1)[0]}"
        deadline = self._command_timeout_s if timeout_s is None else timeout_s
        reply = await self._send(what, encode_api(command), deadline)
        body = reply.body_text
        if reply.content_type != ContentType.API_RESPONSE or body.startswith(("-ERR", "-USAGE")):
            raise PbxActionFailed(what, (body or reply.reply_text or "").strip())
        return body

    async def execute(self, app: str, arg: str | None = None) -> EslEvent:
        """Run a dialplan application and wait for its CHANNEL_EXECUTE_COMPLETE.

        Only the hook's deadline bounds the application itself (a playback lasts as long as
        its file); the acknowledgement has ``command_timeout_s`` in async mode.
        """
        tag = str(uuidlib.uuid4())
        done: asyncio.Future[EslEvent] = asyncio.get_running_loop().create_future()
        self._apps[tag] = done
        running = False
        try:
            ack_deadline = self._command_timeout_s if self.async_mode else None
            reply = await self._send(
                f"execute {app}", encode_execute(app, arg, event_uuid=tag), ack_deadline
            )
            if not reply.ok:
                if self._hung_up:
                    raise ChannelHungUp(app, reply.reply_text or "the caller hung up")
                raise PbxActionFailed(app, reply.reply_text or "no reply text")
            running = True
            return await done
        finally:
            self._apps.pop(tag, None)
            # Awaiting a future directly means a cancellation cancels it too.
            if not done.done() or done.cancelled():
                done.cancel()
                if running:
                    self._abandoned.add(tag)

    async def _send(self, what: str, data: bytes, deadline: float | None) -> EslMessage:
        if self._broken is not None:
            raise PbxConnectionLost(f"{what}: outbound session unusable ({self._broken})")
        future: asyncio.Future[EslMessage] = asyncio.get_running_loop().create_future()
        pending = _Pending(what, future)
        try:
            self._writer.write(data)
            self._pending.append(pending)
            async with asyncio.timeout(deadline):
                await self._writer.drain()
                return await future
        except TimeoutError as exc:
            msg = f"{what}: not answered within {deadline} s"
            raise PbxActionTimeout(msg) from exc
        except (ConnectionError, OSError) as exc:
            self._broken = f"connection error: {exc}"
            msg = f"outbound socket lost during {what}: {exc}"
            raise PbxConnectionLost(msg) from exc
        finally:
            if not future.done():
                pending.future = None
                future.cancel()

    def _check_alive(self, verb: str) -> None:
        if self._hung_up:
            raise ChannelHungUp(verb, "the caller has hung up")

    # -- reading --------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "FreeSWITCH closed the socket"
        try:
            while self._broken is None:
                if not self._drain():
                    reason = self._broken or reason
                    break
                if self._decoder.at_eof:
                    break
                try:
                    data = await self._reader.read(_READ_CHUNK)
                except (ConnectionError, OSError) as exc:
                    reason = f"connection error: {exc}"
                    break
                self._decoder.feed(data)
        finally:
            self._broken = self._broken or reason
            self._fail_all(self._broken)

    def _drain(self) -> bool:
        """Route every complete message; False once the session cannot go on."""
        while True:
            try:
                message = self._decoder.next_message()
            except EslProtocolError as exc:
                if self._decoder.broken or self._decoder.at_eof:
                    self._broken = f"protocol error: {exc}"
                    return False
                if self._pending:
                    # The skipped frame may have been a waiting command's reply: every
                    # later reply would answer the wrong command.
                    self._broken = f"protocol error with a reply awaited: {exc}"
                    log.warning("esl_outbound_protocol_error", leg=self.leg, error=str(exc))
                    return False
                log.warning("esl_outbound_protocol_error", leg=self.leg, error=str(exc))
                continue
            if message is None:
                return True
            if not self._route(message):
                return False

    def _route(self, message: EslMessage) -> bool:
        content_type = message.content_type
        if content_type in (ContentType.COMMAND_REPLY, ContentType.API_RESPONSE):
            if not self._pending:
                self._broken = "unsolicited reply"
                log.warning(
                    "esl_outbound_unsolicited_reply",
                    leg=self.leg,
                    reply=printable(str(message.headers)[:200]),
                )
                return False
            pending = self._pending.popleft()
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(message)
        elif message.is_event:
            try:
                self._on_event(message.event())
            except EslProtocolError as exc:
                log.warning("esl_outbound_protocol_error", leg=self.leg, error=str(exc))
        elif content_type == ContentType.DISCONNECT_NOTICE:
            # Linger: the channel is gone, its last events came before this notice.
            self._hung_up = True
            self._fail_apps(ChannelHungUp("execute", "the caller hung up"))
            self._wakeup.set()
        return True

    def _on_event(self, event: EslEvent) -> None:
        name = event.name
        if name == "CHANNEL_EXECUTE_COMPLETE":
            tag = event.get("Application-UUID") or ""
            self._abandoned.discard(tag)
            waiter = self._apps.get(tag)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        elif name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE") and event.unique_id in (
            self.leg,
            None,
        ):
            self._hung_up = True
            self._wakeup.set()
        elif name == "DTMF":
            digit = event.get("DTMF-Digit")
            if digit:
                self._digits.append(digit)
                self._wakeup.set()

    def _fail_apps(self, error: Exception) -> None:
        for waiter in self._apps.values():
            if not waiter.done():
                waiter.set_exception(error)

    def _fail_all(self, why: str) -> None:
        while self._pending:
            pending = self._pending.popleft()
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(PbxConnectionLost(f"{pending.what}: {why}"))
        if self._hung_up:
            self._fail_apps(ChannelHungUp("execute", "the caller hung up"))
        else:
            self._fail_apps(PbxConnectionLost(f"execute: {why}"))
        self._wakeup.set()


class EslOutboundServer(SessionListener):
    """Listens for FreeSWITCH's outbound-socket connections and serves registered hooks.

    Use as ``async with EslOutboundServer(registry) as server:``, or ``start()``/``close()``.
    """

    def __init__(
        self,
        registry: HookRegistry,
        *,
        host: str = "127.0.0.1",
        port: int = 8084,
        handshake_timeout_s: float = 5.0,
        command_timeout_s: float = 5.0,
        default_deadline_s: float = 1.0,
        linger_s: int | None = 10,
        hook_variable: str = "pbx_agent_hook",
        param_prefix: str = "pbx_agent_",
        max_sessions: int | None = 2000,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            event="esl_outbound",
            serves="FreeSWITCH outbound sockets",
            setting="freeswitch.outbound_bind (and the dialplan's socket address)",
            exposure="drive calls",
            max_sessions=max_sessions,
        )
        self._registry = registry
        self._handshake_timeout_s = handshake_timeout_s
        self._command_timeout_s = command_timeout_s
        self._default_deadline_s = default_deadline_s
        self._linger_s = linger_s
        self._hook_variable = hook_variable
        self._param_prefix = param_prefix

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        # A session's messages are its channel's data, events and command replies: far
        # under a megabyte (the inbound link's 16 MiB is for whole-switch listings).
        decoder = EslDecoder(max_body_bytes=_MAX_BODY_BYTES)
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                writer.write(encode_command("connect"))
                await writer.drain()
                data = await _read_channel_data(reader, decoder)
        except TimeoutError:
            log.warning("esl_outbound_handshake_timeout", peer=peer)
            return
        except (ProtocolError, PbxConnectionLost) as exc:
            log.warning("esl_outbound_handshake_invalid", peer=peer, error=str(exc))
            return
        except (ConnectionError, OSError) as exc:
            log.info("esl_outbound_peer_gone", peer=peer, error=str(exc))
            return
        session = EslOutboundSession(
            data,
            reader,
            writer,
            decoder,
            command_timeout_s=self._command_timeout_s,
            hook_variable=self._hook_variable,
            param_prefix=self._param_prefix,
        )
        session.start()
        try:
            try:
                async with asyncio.timeout(self._handshake_timeout_s):
                    await session.setup(self._linger_s)
            except (TimeoutError, PbxActionFailed, PbxConnectionLost, PbxActionTimeout) as exc:
                log.warning("esl_outbound_setup_failed", channel=session.channel, error=repr(exc))
                return
            if not session.async_mode:
                log.warning(
                    "esl_outbound_sync_mode",
                    channel=session.channel,
                    advice="use 'socket <host:port> async full': in sync mode every "
                    "application blocks the socket until it ends",
                )
            spec = self._registry.get(session.hook)
            if spec is None:
                log.warning(
                    "hook_unknown",
                    hook=session.hook,
                    call_id=session.call,
                    channel=session.channel,
                    known=self._registry.names(),
                )
                return
            await self._run_hook(spec, session)
        finally:
            await session.close()

    async def _run_hook(self, spec: HookSpec, session: EslOutboundSession) -> None:
        fields = {"hook": spec.name, "channel": session.channel, "call_id": session.call}
        deadline_s = spec.deadline()
        deadline = asyncio.timeout(deadline_s)
        try:
            async with deadline:
                await spec.handler(session)
        except TimeoutError as exc:
            if deadline.expired():
                log.warning("hook_deadline", deadline_s=deadline_s, **fields)
            else:
                log.warning("hook_failed", error=repr(exc), **fields)
        except ChannelHungUp as exc:
            log.info("hook_hung_up", error=str(exc), **fields)
        except PbxConnectionLost as exc:
            log.warning("hook_connection_lost", error=str(exc), **fields)
            return
        except Exception as exc:  # any handler failure takes the safe default
            log.warning("hook_failed", error=repr(exc), exc_info=True, **fields)
        else:
            log.debug("hook_done", **fields)
            return
        await self._stop_media(session)
        await self._run_default(spec, session)

    async def _stop_media(self, session: EslOutboundSession) -> None:
        """A playback the handler left running must not outlive it."""
        if session.broken or session.hung_up or not session.app_in_flight:
            return
        with contextlib.suppress(PbxActionFailed, PbxActionTimeout, PbxConnectionLost):
            await session.api(f"uuid_break {session.leg} all", timeout_s=_BREAK_TIMEOUT_S)

    async def _run_default(self, spec: HookSpec, session: HookSession) -> None:
        if spec.on_timeout is None or (isinstance(session, EslOutboundSession) and session.broken):
            return
        fields = {"hook": spec.name, "channel": session.channel, "call_id": session.call}
        deadline = asyncio.timeout(self._default_deadline_s)
        failure: Exception | None = None
        try:
            async with deadline:
                await spec.on_timeout(session)
        except Exception as exc:  # noqa: BLE001 - reported below, whatever it is
            failure = exc
        if failure is None:
            log.info("hook_default_applied", **fields)
        elif deadline.expired():
            log.error("hook_default_deadline", deadline_s=self._default_deadline_s, **fields)
        else:
            log.error("hook_default_failed", error=repr(failure), **fields)


async def _read_channel_data(reader: asyncio.StreamReader, decoder: EslDecoder) -> EslEvent:
    """The ``connect`` reply: the channel data block (the caller bounds the wait)."""
    while True:
        message = decoder.next_message()
        if message is not None:
            if not message.is_channel_data or not message.ok:
                msg = (
                    "FreeSWITCH answered connect with something other than channel data: "
                    f"{printable(str(message.headers))[:200]}"
                )
                raise EslProtocolError(msg)
            return message.channel_data()
        if decoder.at_eof:
            msg = "FreeSWITCH closed the outbound socket before answering connect"
            raise PbxConnectionLost(msg)
        decoder.feed(await reader.read(_READ_CHUNK))

"""The daemon's inbound Event Socket connection to FreeSWITCH: auth, subscriptions,
``api``/``bgapi`` with deadlines, a silence watchdog, reconnect with resync.

It pumps bytes between one TCP connection and the sans-IO codec in ``pbx_agent.wire.esl``
(see ``docs/freeswitch.md`` for why this replaces greenswitch).

Invariants:
- FreeSWITCH answers commands strictly in order, one ``command/reply`` or ``api/response``
  each, so replies are matched to a FIFO of commands. A command abandoned by its deadline
  keeps its place in the FIFO and its late reply is discarded; a reply with no command
  waiting means the stream is out of step and the connection is dropped.
- Every command has a deadline (``PbxActionTimeout``); a command in flight when the
  connection drops fails with ``PbxConnectionLost``. Commands are **never re-sent** after a
  reconnect: a re-sent originate would ring a customer twice.
- ``bgapi`` sends its own ``Job-UUID`` (FreeSWITCH honours it, trace 01b) and waits for the
  BACKGROUND_JOB carrying it, so results match their commands whatever order jobs finish in.
  BACKGROUND_JOB and HEARTBEAT are always subscribed, before the configured names (after
  ``CUSTOM`` every word is a subclass).
- Watchdog: FreeSWITCH sends a HEARTBEAT every 20 s. After ``idle_probe_s`` of silence the
  client sends ``api status``; if nothing at all arrives within ``probe_timeout_s`` more,
  the connection is half-open: it is closed and re-opened.
- Reconnects (``pbx_agent.pbx.link.SwitchLink``'s loop) back off exponentially with
  jitter up to ``reconnect_max_s``, reset after a successful auth, and restore the
  subscription. A refused password (``-ERR invalid``) or an
  ACL refusal is ``PbxAuthenticationFailed``: fatal on the first connection (``start()``
  raises), logged and retried at the maximum backoff afterwards.
- After every auth and subscription ``on_connected`` runs (the adapter resyncs live calls
  there with ``list_channels()``) before ``connected`` is reported.
- Events go to ``on_event`` synchronously, in arrival order; an exception there is logged
  (``esl_event_handler_failed``) and never lost or fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid as uuidlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import structlog

from pbx_agent.errors import (
    ConfigError,
    PbxActionFailed,
    PbxActionTimeout,
    PbxAuthenticationFailed,
    PbxConnectionLost,
)
from pbx_agent.pbx.link import SwitchLink
from pbx_agent.pbx.throttle import LogThrottle
from pbx_agent.wire.escaping import printable
from pbx_agent.wire.esl import (
    ContentType,
    EslDecoder,
    EslEvent,
    EslMessage,
    EslProtocolError,
    encode_api,
    encode_auth,
    encode_bgapi,
    encode_command,
    encode_execute,
    encode_sendmsg,
)

log = structlog.get_logger("pbx_agent.esl")

EventHandler = Callable[[EslEvent], None]

_READ_CHUNK = 65536
_REQUIRED_EVENTS = ("BACKGROUND_JOB", "HEARTBEAT")
_ERROR_PREFIXES = ("-ERR", "-USAGE")


@dataclass(frozen=True, slots=True)
class EslSettings:
    """How to reach FreeSWITCH's event socket and how patient to be with it."""

    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"  # noqa: S105 - FreeSWITCH's documented default
    events: tuple[str, ...] = ("ALL",)
    event_format: str = "plain"  # plain | json
    connect_timeout_s: float = 5.0
    command_timeout_s: float = 5.0
    idle_probe_s: float = 30.0
    probe_timeout_s: float = 5.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.event_format not in ("plain", "json"):
            msg = (
                f"freeswitch.event_format={self.event_format!r} is not supported; "
                "accepted: 'plain' or 'json'"
            )
            raise ConfigError(msg)
        for name in self.events:
            if not name or any(ch in name for ch in " \t\r\n\0"):
                msg = (
                    f"freeswitch.events entry {printable(name)!r} is not an event name; "
                    "accepted: names such as CHANNEL_CREATE, ALL, or CUSTOM then subclasses"
                )
                raise ConfigError(msg)
        for key in (
            "connect_timeout_s",
            "command_timeout_s",
            "idle_probe_s",
            "probe_timeout_s",
            "reconnect_initial_s",
            "reconnect_max_s",
        ):
            if not getattr(self, key) > 0:
                msg = f"freeswitch.{key}={getattr(self, key)} must be positive"
                raise ConfigError(msg)

    def subscription(self) -> str:
        """The ``event`` command: required names first, then the configured ones."""
        names = list(self.events)
        if "ALL" not in names:
            names = [n for n in _REQUIRED_EVENTS if n not in names] + names
        return f"event {self.event_format} {' '.join(names)}"


@dataclass(slots=True)
class _Pending:
    what: str  # for messages and logs: "api uuid_kill", "bgapi originate", ...
    future: asyncio.Future[EslMessage] | None  # None: abandoned, the reply is discarded


def _now() -> float:
    return asyncio.get_running_loop().time()


def _command_name(command: str) -> str:
    return command.split(" ", 1)[0]


def _failed(body: str) -> bool:
    return body.startswith(_ERROR_PREFIXES)


class EslClient(SwitchLink):
    """One inbound ESL connection, kept alive. ``start()``, commands, ``close()``."""

    def __init__(
        self,
        settings: EslSettings,
        *,
        on_event: EventHandler | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
        name: str = "freeswitch",
    ) -> None:
        super().__init__(
            settings,
            name=name,
            event="esl",
            protocol="ESL",
            on_connected=on_connected,
            on_disconnected=on_disconnected,
        )
        self.settings = settings
        self.on_event = on_event
        self._pending: deque[_Pending] = deque()
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._protocol_errors = LogThrottle("esl_protocol_error")

    # -- public API -------------------------------------------------------------------------

    async def command(
        self,
        line: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | str | None = None,
        *,
        timeout: float | None = None,
    ) -> EslMessage:
        """Send one command and return its reply as it is (``-ERR`` replies included)."""
        data = encode_command(line, headers, body)  # refuses unsafe values
        deadline = self.settings.command_timeout_s if timeout is None else timeout
        return await self._send(_command_name(line), data, deadline)

    async def api(self, command: str, *, timeout: float | None = None) -> str:
        """``api <command>``: its output. ``-ERR``/``-USAGE`` output is ``PbxActionFailed``."""
        deadline = self.settings.command_timeout_s if timeout is None else timeout
        what = f"api {_command_name(command)}"
        reply = await self._send(what, encode_api(command), deadline)
        if reply.content_type != ContentType.API_RESPONSE:
            # A command/reply here means FreeSWITCH refused the api verb itself.
            raise PbxActionFailed(what, reply.reply_text or reply.content_type)
        body = reply.body_text
        if _failed(body):
            raise PbxActionFailed(what, body.strip())
        return body

    async def bgapi(
        self, command: str, *, timeout: float | None = None, job_uuid: str | None = None
    ) -> str:
        """``bgapi <command>``: waits for its BACKGROUND_JOB and returns the job's output.

        The deadline covers the acknowledgement and the job. ``-ERR`` output (an originate
        that was busy, rejected, unanswered ...) is ``PbxActionFailed`` with the text after
        ``-ERR`` as its message.
        """
        deadline = self.settings.command_timeout_s if timeout is None else timeout
        what = f"bgapi {_command_name(command)}"
        job = job_uuid or str(uuidlib.uuid4())
        data = encode_bgapi(command, job)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._jobs[job] = future
        try:
            async with asyncio.timeout(deadline):
                reply = await self._send(what, data, None)
                if not reply.ok:
                    raise PbxActionFailed(what, reply.reply_text or "no reply text")
                acknowledged = reply.job_uuid
                if acknowledged and acknowledged != job:
                    # A switch that ignores our Job-UUID names its own.
                    self._jobs[acknowledged] = self._jobs.pop(job)
                    job = acknowledged
                body = await future
        except TimeoutError as exc:
            msg = f"{what} (Job-UUID {job}): no result within {deadline} s"
            raise PbxActionTimeout(msg) from exc
        finally:
            self._jobs.pop(job, None)
        if _failed(body):
            raise PbxActionFailed(what, body.strip().removeprefix("-ERR").strip())
        return body

    async def sendmsg(
        self,
        uuid: str,
        headers: Iterable[tuple[str, str]],
        *,
        timeout: float | None = None,
    ) -> EslMessage:
        """``sendmsg <uuid>``: a message to a channel's session. ``-ERR`` is ``PbxActionFailed``."""
        deadline = self.settings.command_timeout_s if timeout is None else timeout
        reply = await self._send("sendmsg", encode_sendmsg(uuid, headers), deadline)
        if not reply.ok:
            raise PbxActionFailed("sendmsg", reply.reply_text or "no reply text")
        return reply

    async def execute(
        self,
        uuid: str,
        app: str,
        arg: str | None = None,
        *,
        event_uuid: str | None = None,
        event_lock: bool = False,
        timeout: float | None = None,
    ) -> str:
        """Queue a dialplan application on a channel; returns the ``Event-UUID`` used.

        The application's CHANNEL_EXECUTE_COMPLETE carries it as ``Application-UUID``.
        """
        tag = event_uuid or str(uuidlib.uuid4())
        deadline = self.settings.command_timeout_s if timeout is None else timeout
        data = encode_execute(app, arg, uuid=uuid, event_uuid=tag, event_lock=event_lock)
        reply = await self._send(f"sendmsg execute {app}", data, deadline)
        if not reply.ok:
            raise PbxActionFailed(f"execute {app}", reply.reply_text or "no reply text")
        return tag

    async def list_channels(self, *, timeout: float | None = None) -> list[dict[str, str]]:
        """The live channels (``show channels as json``), one dict per channel row."""
        body = await self.api("show channels as json", timeout=timeout)
        try:
            document = json.loads(body)
        except ValueError as exc:
            msg = f"show channels as json answered something that is not JSON: {exc}"
            raise EslProtocolError(msg) from None
        rows = document.get("rows", []) if isinstance(document, dict) else None
        if not isinstance(rows, list):
            msg = f"show channels as json has no list of rows: {printable(body[:200])!r}"
            raise EslProtocolError(msg)
        return [
            {str(k): "" if v is None else str(v) for k, v in row.items()}
            for row in rows
            if isinstance(row, dict)
        ]

    # -- sending ----------------------------------------------------------------------------

    async def _send(
        self,
        what: str,
        data: bytes,
        deadline: float | None,
        *,
        writer: asyncio.StreamWriter | None = None,
    ) -> EslMessage:
        """Write one command and wait for its reply (``deadline`` None: the caller's own)."""
        writer = writer or (self._writer if self.connected else None)
        if writer is None:
            msg = f"{what} not sent: not connected to the ESL of {self.name}"
            raise PbxConnectionLost(msg)
        future: asyncio.Future[EslMessage] = asyncio.get_running_loop().create_future()
        pending = _Pending(what, future)
        writer.write(data)
        self._pending.append(pending)
        try:
            async with asyncio.timeout(deadline):
                await writer.drain()
                return await future
        except TimeoutError as exc:
            msg = f"{what}: no reply from {self.name} within {deadline} s"
            raise PbxActionTimeout(msg) from exc
        except (ConnectionError, OSError) as exc:
            msg = f"{what} not sent: {type(exc).__name__}: {exc}"
            raise PbxConnectionLost(msg) from exc
        finally:
            if not future.done():
                # Abandoned (deadline or cancellation): keep the FIFO slot, drop the reply.
                pending.future = None
                future.cancel()

    # -- the connection loop ------------------------------------------------------------------

    def _goodbye(self) -> bytes:
        return encode_command("exit")

    async def _connect_once(self) -> None:
        s = self.settings
        async with asyncio.timeout(s.connect_timeout_s):
            reader, writer = await asyncio.open_connection(s.host, s.port)
        self._writer = writer
        decoder = EslDecoder()
        async with asyncio.timeout(s.connect_timeout_s):
            greeting = await _read_one(reader, decoder)
            if greeting.content_type == ContentType.RUDE_REJECTION:
                msg = (
                    f"FreeSWITCH at {s.host}:{s.port} refused this address: "
                    f"{greeting.body_text.strip()!r} (check apply-inbound-acl in "
                    "event_socket.conf.xml)"
                )
                raise PbxAuthenticationFailed(msg)
            if greeting.content_type != ContentType.AUTH_REQUEST:
                msg = f"{s.host}:{s.port} did not greet with auth/request: {greeting.headers!r}"
                raise PbxConnectionLost(msg)
            writer.write(encode_auth(s.password))
            await writer.drain()
            reply = await _read_one(reader, decoder)
        if not reply.ok:
            msg = (
                f"ESL auth to {s.host}:{s.port} refused: {reply.reply_text!r} "
                "(check [freeswitch] password against event_socket.conf.xml)"
            )
            raise PbxAuthenticationFailed(msg)
        # Bytes already buffered in the decoder belong to the read loop from here on.
        self._reader_task = asyncio.create_task(
            self._read_loop(reader, decoder), name=f"esl-read:{self.name}"
        )
        subscribed = await self._send(
            "event", encode_command(s.subscription()), s.connect_timeout_s, writer=writer
        )
        if not subscribed.ok:
            msg = f"{s.subscription()!r} refused: {subscribed.reply_text}"
            raise PbxActionFailed("event", msg)
        self.connections += 1
        log.info(
            "esl_connected",
            pbx=self.name,
            host=s.host,
            port=s.port,
            connections=self.connections,
            subscription=s.subscription(),
        )
        await self._logged_in()

    async def _serve(self) -> str:
        """Wait for the read loop to end; say why."""
        assert self._reader_task is not None
        return await asyncio.shield(self._reader_task)

    async def _read_loop(self, reader: asyncio.StreamReader, decoder: EslDecoder) -> str:
        try:
            return await self._read_frames(reader, decoder)
        finally:
            self._protocol_errors.flush(pbx=self.name)

    async def _read_frames(self, reader: asyncio.StreamReader, decoder: EslDecoder) -> str:
        s = self.settings
        probing = False
        reason = self._drain(decoder)  # anything that arrived with the auth reply
        while reason is None:
            try:
                async with asyncio.timeout(s.probe_timeout_s if probing else s.idle_probe_s):
                    data = await reader.read(_READ_CHUNK)
            except TimeoutError:
                if probing:
                    silence = s.idle_probe_s + s.probe_timeout_s
                    log.warning(
                        "esl_watchdog",
                        pbx=self.name,
                        reason=f"nothing from FreeSWITCH for {silence} s, not even an answer "
                        "to api status: closing",
                    )
                    return f"silent for {silence} s (watchdog)"
                probing = True
                self._probe()
                continue
            except (ConnectionError, OSError) as exc:
                return f"{type(exc).__name__}: {exc}"
            probing = False
            decoder.feed(data)
            reason = self._drain(decoder)
            if reason is None and not data:
                return "connection closed by FreeSWITCH"
        return reason

    def _probe(self) -> None:
        writer = self._writer
        if writer is None:
            return
        with contextlib.suppress(Exception):
            writer.write(encode_api("status"))
            self._pending.append(_Pending("api status (watchdog)", None))

    def _drain(self, decoder: EslDecoder) -> str | None:
        """Route every complete message; a reason to drop the connection, or None."""
        while True:
            try:
                message = decoder.next_message()
            except EslProtocolError as exc:
                if decoder.broken:
                    return f"protocol error, framing lost: {exc}"
                if decoder.at_eof:
                    return f"connection closed mid-frame ({exc})"
                self._protocol_errors.warning(_now(), pbx=self.name, error=str(exc))
                if self._pending:
                    # The skipped frame may have been a waiting command's reply: every
                    # later reply would answer the wrong command. Reopen the link.
                    return f"protocol error with a reply awaited: {exc}"
                continue
            if message is None:
                return None
            reason = self._route(message)
            if reason is not None:
                return reason

    def _route(self, message: EslMessage) -> str | None:
        content_type = message.content_type
        if content_type in (ContentType.COMMAND_REPLY, ContentType.API_RESPONSE):
            if not self._pending:
                log.warning(
                    "esl_unsolicited_reply", pbx=self.name, reply=printable(str(message.headers))
                )
                return "a reply arrived with no command waiting: replies out of step"
            pending = self._pending.popleft()
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(message)
            return None
        if message.is_event:
            try:
                event = message.event()
            except EslProtocolError as exc:
                self._protocol_errors.warning(_now(), pbx=self.name, error=str(exc))
                return None
            self._dispatch(event)
            return None
        if content_type == ContentType.DISCONNECT_NOTICE:
            log.info("esl_disconnect_notice", pbx=self.name, text=printable(message.body_text))
        elif content_type == ContentType.RUDE_REJECTION:
            return f"FreeSWITCH refused the connection: {message.body_text.strip()}"
        elif content_type != ContentType.LOG_DATA:
            log.debug("esl_unexpected_message", pbx=self.name, content_type=content_type)
        return None

    def _dispatch(self, event: EslEvent) -> None:
        if event.name == "BACKGROUND_JOB":
            job = self._jobs.get(event.job_uuid or "")
            if job is not None and not job.done():
                job.set_result(event.body or "")
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            log.exception("esl_event_handler_failed", pbx=self.name, esl_event=event.name)

    # -- teardown -----------------------------------------------------------------------------

    def _fail_pending(self, why: str) -> None:
        while self._pending:
            pending = self._pending.popleft()
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(PbxConnectionLost(f"{pending.what}: {why}"))
        for job, future in list(self._jobs.items()):
            if not future.done():
                future.set_exception(PbxConnectionLost(f"bgapi job {job}: {why}"))


async def _read_one(reader: asyncio.StreamReader, decoder: EslDecoder) -> EslMessage:
    """The next message during the handshake (the caller bounds it with a timeout)."""
    while True:
        message = decoder.next_message()
        if message is not None:
            return message
        if decoder.at_eof:
            msg = "FreeSWITCH closed the connection during the handshake"
            raise PbxConnectionLost(msg)
        decoder.feed(await reader.read(_READ_CHUNK))

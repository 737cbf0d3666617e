"""The daemon's AMI connection: login, actions with deadlines, a Ping watchdog, reconnect.

It pumps bytes between one TCP connection and the sans-IO codec in ``pbx_agent.wire.ami``
(see README "Dependency notes" for why this replaces panoramisk's protocol layer and manager).

Invariants:
- Every action has a deadline (``PbxActionTimeout``); an action in flight when the connection
  drops fails with ``PbxConnectionLost``. Actions are **never re-sent** after a reconnect: a
  re-sent ``Originate`` would ring a customer twice.
- A Ping is sent every ``ping_interval`` and must be answered within ``ping_timeout``;
  otherwise the connection is treated as half-open, closed and re-opened.
- The connect/login/reconnect loop is ``pbx_agent.pbx.link.SwitchLink``'s: any failed
  attempt (a Login nobody answers included) is retried with exponential backoff, for ever;
  a refused login is ``PbxAuthenticationFailed``: fatal on the first connection (``start()``
  raises), logged and retried at the maximum backoff afterwards.
- After every login ``on_connected`` runs (the adapter resyncs live calls there) before
  ``connected`` is reported.
- Events go to ``on_event`` synchronously, in arrival order; an exception there is logged
  (``ami_event_handler_failed``) and never lost or fatal. Responses and the events of list
  actions (``EventList: start`` ... ``Complete``) are routed to the waiting action.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import structlog

from pbx_agent.errors import (
    PbxActionTimeout,
    PbxAuthenticationFailed,
    PbxConnectionLost,
    ProtocolError,
)
from pbx_agent.pbx.link import SwitchLink
from pbx_agent.pbx.tasks import cancel_and_wait
from pbx_agent.pbx.throttle import LogThrottle
from pbx_agent.wire.ami import AmiBanner, AmiDecoder, AmiMessage, encode_action

log = structlog.get_logger("pbx_agent.ami")

EventHandler = Callable[[AmiMessage], None]


@dataclass(slots=True)
class _Pending:
    action: str
    future: asyncio.Future[tuple[AmiMessage, list[AmiMessage]]]
    is_list: bool
    response: AmiMessage | None = None
    items: list[AmiMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 5.0
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 5.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    events: str = "on"


class AmiClient(SwitchLink):
    def __init__(
        self,
        settings: AmiSettings,
        *,
        on_event: EventHandler | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        on_disconnected: Callable[[str], None] | None = None,
        name: str = "asterisk",
    ) -> None:
        super().__init__(
            settings,
            name=name,
            event="ami",
            protocol="AMI",
            on_connected=on_connected,
            on_disconnected=on_disconnected,
        )
        self.settings = settings
        self.on_event = on_event
        self._prefix = f"pa{secrets.token_hex(3)}"
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self.banner: AmiBanner | None = None
        self._banner_seen = asyncio.Event()
        self._last_rx = 0.0  # loop time of the last bytes read from the PBX
        self._protocol_errors = LogThrottle("ami_protocol_error")

    # -- public API -------------------------------------------------------------------------

    async def send_action(
        self,
        action: str,
        fields: Iterable[tuple[str, str]] = (),
        *,
        timeout: float | None = None,
    ) -> AmiMessage:
        """Send one action and return its response (``Response: Error`` included)."""
        response, _ = await self._send(action, fields, timeout=timeout, is_list=False)
        return response

    async def send_list(
        self,
        action: str,
        fields: Iterable[tuple[str, str]] = (),
        *,
        timeout: float | None = None,
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        """Send a list action; return its response and the item events up to ``…Complete``."""
        return await self._send(action, fields, timeout=timeout, is_list=True)

    # -- sending ----------------------------------------------------------------------------

    def _next_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def _send(
        self,
        action: str,
        fields: Iterable[tuple[str, str]],
        *,
        timeout: float | None,
        is_list: bool,
        writer: asyncio.StreamWriter | None = None,
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        writer = writer or (self._writer if self.connected else None)
        if writer is None:
            msg = f"{action} not sent: not connected to the AMI of {self.name}"
            raise PbxConnectionLost(msg)
        action_id = self._next_id()
        data = encode_action(action, fields, action_id=action_id)  # refuses unsafe values
        future: asyncio.Future[tuple[AmiMessage, list[AmiMessage]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[action_id] = _Pending(action, future, is_list)
        deadline = self.settings.action_timeout_s if timeout is None else timeout
        try:
            writer.write(data)
            async with asyncio.timeout(deadline):
                await writer.drain()
                return await future
        except TimeoutError as exc:
            msg = f"{action} (ActionID {action_id}): no answer from {self.name} within {deadline} s"
            raise PbxActionTimeout(msg) from exc
        except (ConnectionError, OSError) as exc:
            msg = f"{action} not sent: {type(exc).__name__}: {exc}"
            raise PbxConnectionLost(msg) from exc
        finally:
            self._pending.pop(action_id, None)
            if future.done() and not future.cancelled():
                # A drop can fail the future (``_fail_pending``) while this send was still
                # raising from ``drain()``: mark its exception seen so asyncio does not
                # report it as lost.
                future.exception()

    # -- the connection loop --------------------------------------------------------------

    def _goodbye(self) -> bytes:
        return encode_action("Logoff", action_id=self._next_id())

    async def _connect_once(self) -> None:
        s = self.settings
        async with asyncio.timeout(s.connect_timeout_s):
            reader, writer = await asyncio.open_connection(s.host, s.port)
        self._writer = writer
        self._banner_seen = asyncio.Event()
        # The banner and the login reply are read by the same loop that serves later traffic.
        self._reader_task = asyncio.create_task(
            self._read_loop(reader, AmiDecoder(expect_banner=True)), name=f"ami-read:{self.name}"
        )
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                await self._banner_seen.wait()
        except TimeoutError as exc:
            msg = f"{s.host}:{s.port} sent no AMI banner within {s.connect_timeout_s} s"
            raise PbxConnectionLost(msg) from exc
        response, _ = await self._send(
            "Login",
            [("Username", s.username), ("Secret", s.secret), ("Events", s.events)],
            timeout=s.connect_timeout_s,
            is_list=False,
            writer=writer,
        )
        if response.name.lower() != "success":
            msg = (
                f"AMI login to {s.host}:{s.port} as {s.username!r} refused: "
                f"{response.get('Message', '')} (check [asterisk] username/secret and manager.conf)"
            )
            raise PbxAuthenticationFailed(msg)
        self.connections += 1
        log.info(
            "ami_connected",
            pbx=self.name,
            host=s.host,
            port=s.port,
            banner=self.banner.text if self.banner else None,
            connections=self.connections,
        )
        await self._logged_in()

    async def _serve(self) -> str:
        """Run the watchdog beside the read loop until the connection ends; say why."""
        ping = asyncio.create_task(self._watchdog(), name=f"ami-ping:{self.name}")
        assert self._reader_task is not None
        try:
            return await asyncio.shield(self._reader_task)
        finally:
            await cancel_and_wait(ping)

    async def _watchdog(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(s.ping_interval_s)
            sent_at = loop.time()
            try:
                reply = await self.send_action("Ping", timeout=s.ping_timeout_s)
            except PbxActionTimeout:
                if self._last_rx > sent_at:
                    # Bytes kept arriving: the link is alive, the reply is queued behind a
                    # burst (thousands of hang-ups at once). Only silence means half-open.
                    log.info(
                        "ami_watchdog_busy",
                        pbx=self.name,
                        reason=f"Ping unanswered within {s.ping_timeout_s} s but the PBX is "
                        "still sending: keeping the connection",
                    )
                    continue
                log.warning(
                    "ami_watchdog",
                    pbx=self.name,
                    reason=f"no reply to Ping within {s.ping_timeout_s} s: closing",
                )
                self._abort()
                return
            except PbxConnectionLost:
                return
            if reply.name.lower() != "success":
                log.warning("ami_watchdog", pbx=self.name, reason=f"Ping answered {reply.name}")

    async def _read_loop(self, reader: asyncio.StreamReader, decoder: AmiDecoder) -> str:
        try:
            return await self._read_frames(reader, decoder)
        finally:
            self._protocol_errors.flush(pbx=self.name)

    async def _read_frames(self, reader: asyncio.StreamReader, decoder: AmiDecoder) -> str:
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError) as exc:
                return f"{type(exc).__name__}: {exc}"
            self._last_rx = asyncio.get_running_loop().time()
            decoder.feed(data)
            while True:
                try:
                    message = decoder.next_message()
                except ProtocolError as exc:
                    if decoder.at_eof:
                        return f"connection closed mid-frame ({exc})"
                    self._protocol_errors.warning(self._last_rx, pbx=self.name, error=str(exc))
                    continue
                if message is None:
                    break
                if isinstance(message, AmiBanner):
                    self.banner = message
                    self._banner_seen.set()
                    continue
                self._route(message)
            if not data:
                return "connection closed by the PBX"

    def _route(self, message: AmiMessage) -> None:
        # Most messages are events and usually no action is waiting: only then is it worth
        # looking the ActionID up (it builds the message's header index).
        action_id = message.action_id if self._pending or message.kind != "event" else None
        pending = self._pending.get(action_id) if action_id else None
        if pending is not None and not pending.future.done():
            if message.kind == "response":
                pending.response = message
                listing = (message.get("EventList") or "").lower() == "start"
                if not (pending.is_list and listing and message.name.lower() == "success"):
                    pending.future.set_result((message, pending.items))
                return
            if pending.is_list and pending.response is not None:
                if (message.get("EventList") or "").lower() == "complete":
                    pending.future.set_result((pending.response, pending.items))
                else:
                    pending.items.append(message)
                return
        if message.kind != "event":
            log.debug("ami_unmatched_response", pbx=self.name, action_id=action_id)
            return
        if self.on_event is None:
            return
        try:
            self.on_event(message)
        except Exception:
            log.exception("ami_event_handler_failed", pbx=self.name, ami_event=message.name)

    # -- teardown -----------------------------------------------------------------------------

    def _fail_pending(self, why: str) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(PbxConnectionLost(f"{pending.action}: {why}"))
        self._pending.clear()

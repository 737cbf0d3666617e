"""The daemon's long-lived link to a switch (AMI on Asterisk, the inbound Event Socket on
FreeSWITCH): connect, log in, serve, and reconnect for as long as the daemon runs.

A subclass gives the protocol: ``_connect_once`` (TCP, handshake, login; it ends with
``_logged_in()``, which resyncs), ``_serve`` (until the connection ends; returns why),
``_goodbye`` (the bytes that log off) and ``_fail_pending`` (fail what waits for a reply).
This class keeps the loop around them.

Invariants:
- ``start()`` returns once the first attempt has logged in or failed for a reason worth
  retrying (the link then keeps trying in the background); it raises only
  ``PbxAuthenticationFailed``, a refused login on the first attempt. It never waits past
  the first attempt, whatever the switch does or does not answer.
- Any failure of one attempt (the network, a malformed frame, a login or resync that is
  not answered in time or fails) ends that attempt and schedules the next; nothing but
  ``close()`` ends the loop. A refused login later on is logged and retried at the
  longest backoff (the credentials may be fixed on the switch).
- Reconnects back off exponentially with jitter from ``reconnect_initial_s`` up to
  ``reconnect_max_s``, for ever: the delay is bounded however long the switch stays away.
- When a connection that had logged in ends, ``on_disconnected(reason)`` runs once (an
  exception there is logged, never fatal) and everything waiting for a reply fails with
  ``PbxConnectionLost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Protocol, Self

import structlog

from pbx_agent.errors import (
    PbxActionFailed,
    PbxActionTimeout,
    PbxAuthenticationFailed,
    PbxConnectionLost,
    ProtocolError,
)

__all__ = ["LinkSettings", "SwitchLink"]

log = structlog.get_logger("pbx_agent.link")

# Past this many doublings every delay is reconnect_max_s anyway; the cap keeps 2**n finite.
_MAX_DOUBLINGS = 30

# What ends one attempt and schedules the next.
_RETRYABLE = (
    OSError,
    PbxConnectionLost,
    ProtocolError,
    PbxActionFailed,
    PbxActionTimeout,
    TimeoutError,
)


class LinkSettings(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def reconnect_initial_s(self) -> float: ...
    @property
    def reconnect_max_s(self) -> float: ...


class SwitchLink(ABC):
    """One connection to a switch, kept alive. ``start()``, traffic, ``close()``.

    ``event`` prefixes the log events (``<event>_connect_failed``, ``<event>_auth_failed``,
    ``<event>_disconnected``, ``<event>_reconnect_scheduled``, ``<event>_resync_failed``,
    ``<event>_event_handler_failed``);
    ``protocol`` names the link in messages ("AMI", "ESL").
    """

    def __init__(
        self,
        settings: LinkSettings,
        *,
        name: str,
        event: str,
        protocol: str,
        on_connected: Callable[[], Awaitable[None]] | None,
        on_disconnected: Callable[[str], None] | None,
    ) -> None:
        self._link_settings = settings
        self.name = name
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self._protocol = protocol
        self._ev_connect_failed = event + "_connect_failed"
        self._ev_auth_failed = event + "_auth_failed"
        self._ev_disconnected = event + "_disconnected"
        self._ev_reconnect = event + "_reconnect_scheduled"
        self._ev_handler_failed = event + "_event_handler_failed"
        self._ev_resync_failed = event + "_resync_failed"
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[str] | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._closing = False
        self.connections = 0  # successful logins so far (tests and metrics read it)

    # -- public API -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect and log in once. Raises ``PbxAuthenticationFailed`` on a refused login.

        If the switch cannot be reached (or does not complete the login) the link keeps
        trying in the background and ``start`` returns; ``wait_connected`` waits for it.
        """
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._runner = asyncio.create_task(self._run(), name=f"{self._protocol}:{self.name}")
        await asyncio.shield(self._first)

    async def wait_connected(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError as exc:
            s = self._link_settings
            msg = f"no {self._protocol} connection to {s.host}:{s.port} after {timeout} s"
            raise PbxConnectionLost(msg) from exc

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.write(self._goodbye())
            self._abort()
        runner = self._runner
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await self._stop_reader()
        self._fail_pending("the daemon is shutting down")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- what a protocol gives --------------------------------------------------------------

    @abstractmethod
    async def _connect_once(self) -> None:
        """Open the connection and log in; end with ``await self._logged_in()``."""

    @abstractmethod
    async def _serve(self) -> str:
        """Serve the connection until it ends; say why it ended."""

    @abstractmethod
    def _goodbye(self) -> bytes:
        """What to send to log off before closing."""

    @abstractmethod
    def _fail_pending(self, why: str) -> None:
        """Fail everything waiting for a reply with ``PbxConnectionLost``."""

    # -- the connection loop ----------------------------------------------------------------

    async def _logged_in(self) -> None:
        """The login succeeded: run ``on_connected`` (the adapter resyncs live calls there;
        traffic is allowed on this connection while it runs), then report ``connected`` and
        let ``start()`` return. A failing resync ends the attempt."""
        if self.on_connected is not None:
            self._connected.set()
            try:
                await self.on_connected()
            except Exception as exc:
                self._connected.clear()
                log.exception(self._ev_resync_failed, pbx=self.name)
                msg = f"resync after login failed: {exc}"
                raise PbxConnectionLost(msg) from exc
        self._connected.set()
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            reason = "closed"
            try:
                await self._connect_once()
                attempt = 0
                reason = await self._serve()
            except PbxAuthenticationFailed as exc:
                if self._first is not None and not self._first.done():
                    self._first.set_exception(exc)
                    return
                log.error(self._ev_auth_failed, pbx=self.name, error=str(exc))
                attempt = max(attempt, _MAX_DOUBLINGS)
                reason = "login refused"
            except _RETRYABLE as exc:
                reason = f"{type(exc).__name__}: {exc}"
                s = self._link_settings
                log.warning(
                    self._ev_connect_failed,
                    pbx=self.name,
                    host=s.host,
                    port=s.port,
                    error=reason,
                    attempt=attempt + 1,
                )
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)  # keep trying in the background
            finally:
                await self._connection_ended(reason)
            if self._closing:
                return
            delay = self._backoff(attempt)
            attempt += 1
            log.info(self._ev_reconnect, pbx=self.name, delay_s=round(delay, 3))
            await asyncio.sleep(delay)

    async def _connection_ended(self, reason: str) -> None:
        was_connected = self.connected
        self._connected.clear()
        self._abort()
        self._writer = None
        await self._stop_reader()
        self._fail_pending(f"connection to {self.name} lost ({reason})")
        if was_connected and self._closing:
            # The daemon is stopping: nothing was lost, and the calls are not told they went
            # unheard (their rules would log an outage, and record it, at every restart).
            log.info(self._ev_disconnected, pbx=self.name, reason="the daemon is stopping")
            return
        if was_connected:
            log.warning(self._ev_disconnected, pbx=self.name, reason=reason)
            if self.on_disconnected is not None:
                try:
                    self.on_disconnected(reason)
                except Exception:
                    log.exception(self._ev_handler_failed, handler="on_disconnected")

    def _backoff(self, attempt: int) -> float:
        s = self._link_settings
        doublings = min(attempt, _MAX_DOUBLINGS)
        base = min(s.reconnect_max_s, s.reconnect_initial_s * (2.0**doublings))
        return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security

    # -- teardown ---------------------------------------------------------------------------

    async def _stop_reader(self) -> None:
        task, self._reader_task = self._reader_task, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _abort(self) -> None:
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.transport.abort()

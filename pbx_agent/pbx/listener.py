"""The TCP listener under the daemon's per-call servers (FastAGI, the FreeSWITCH outbound
socket, AudioSocket): one task per connection, tracked so that ``close()`` can end them.

A subclass gives ``_serve`` (one connection, from first byte to last) and says what it
listens for; this class binds, warns when the address is reachable from other hosts, turns a
port it cannot bind into a ``ConfigError`` that names the setting, refuses connections past
``max_sessions``, keeps a crashing session from taking the server down and closes every
connection it accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from abc import ABC, abstractmethod
from typing import Self

import structlog

from pbx_agent.errors import ConfigError

__all__ = ["SessionListener", "is_loopback"]

log = structlog.get_logger(__name__)

_CLOSE_TIMEOUT_S = 1.0


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address literal or ``localhost``) is reachable only locally."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SessionListener(ABC):
    """Listens on ``host:port`` and runs ``_serve`` for every connection.

    ``event`` prefixes the log events (``<event>_listening``, ``<event>_not_loopback``,
    ``<event>_session_crashed``, ``<event>_too_many_sessions``); ``serves`` says what the
    connections are, ``setting`` which configuration setting moves the address, and
    ``exposure`` what a stranger reaching the port could do. Use as ``async with``, or
    ``start()``/``close()``.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        event: str,
        serves: str,
        setting: str,
        exposure: str,
        max_sessions: int | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._listening = event + "_listening"
        self._not_loopback = event + "_not_loopback"
        self._crashed = event + "_session_crashed"
        self._too_many = event + "_too_many_sessions"
        self._serves = serves
        self._setting = setting
        self._exposure = exposure
        self._max_sessions = max_sessions
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port really bound (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        """Bind and listen; ``ConfigError`` naming the setting when the address is unusable."""
        if self._server is not None:
            return
        try:
            self._server = await asyncio.start_server(self._on_connection, self._host, self._port)
        except OSError as exc:
            msg = (
                f"cannot listen for {self._serves} on {self._host}:{self._port} "
                f"({exc.strerror or exc}); set {self._setting} to a free local address, "
                "or stop what holds this one"
            )
            raise ConfigError(msg) from exc
        if not is_loopback(self._host):
            log.warning(
                self._not_loopback,
                host=self._host,
                port=self.port,
                advice=f"anyone who can reach this port can {self._exposure}; bind to "
                "127.0.0.1 or firewall it",
            )
        log.info(self._listening, host=self._host, port=self.port)

    async def close(self) -> None:
        """Stop listening, cancel every session and wait for them to finish."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = list(self._sessions)
        for task in sessions:
            task.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=_CLOSE_TIMEOUT_S * 2)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @abstractmethod
    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        """One connection. Exceptions are logged here; the writer is closed after it."""

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = str(writer.get_extra_info("peername"))
        if self._max_sessions is not None and len(self._sessions) >= self._max_sessions:
            log.warning(self._too_many, peer=peer, limit=self._max_sessions)
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        try:
            await self._serve(reader, writer, peer)
        except asyncio.CancelledError:
            # close() cancels sessions on purpose. Ending the callback task normally keeps
            # asyncio's stream machinery (Python 3.11) from reporting it as an error.
            pass
        except Exception as exc:  # a session must never take the server down
            log.exception(self._crashed, peer=peer, error=repr(exc))
        finally:
            if task is not None:
                self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await writer.wait_closed()

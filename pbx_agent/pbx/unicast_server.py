"""The unicast audio receiver: FreeSWITCH streams an answered callback leg's audio to the
daemon (core ``unicast``, see ``pbx_agent.wire.unicast``), which runs the same
answering-machine detector on it as on Asterisk's AudioSocket stream.

Theory of operation. ``open(leg, ...)`` binds one UDP socket for that leg, on the
configured host and the first free port of the configured range (``(0, 0)``: any free
port), and returns the port; the adapter then tells the switch to send there. One socket
per leg means a datagram's destination says whose audio it is: nothing in the stream
names the leg. Datagrams must come from ``source_host`` (the switch's address, when
known); the first accepted one fixes the source port, and datagrams from anywhere else
are dropped and counted, so nobody who learns the port can feed the detector. Samples
are stamped with the audio's own time: where the stream started after the answer (the
first datagram's arrival, less one frame), plus the samples received since.

Invariants:
- ``on_verdict(leg, verdict)`` is called exactly once per opened leg: the detector's
  verdict; the configured default (``DetectorParams.on_deadline``) with reason
  ``no-audio`` when nothing arrives within ``first_audio_timeout_s`` of ``open``, or
  ``deadline`` when ``deadline_ms`` after the answer passes undecided; the detector's
  ``finish`` verdict (reason ``peer-hangup:...``) when the adapter says the leg ended;
  the default with reason ``closed`` when the server closes. Then the socket is closed.
- A malformed datagram is dropped and counted (logged once per leg, with the count at
  the end); it never ends the session nor touches another leg.
- A failing ``on_verdict`` is logged and contained; delivery is bounded by
  ``callback_timeout_s``. Past ``max_sessions`` (or with no free port) ``open`` raises
  ``UnicastUnavailableError`` and nothing is bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

import structlog

from pbx_agent.amd.audio import FRAME_MS, SAMPLE_RATE
from pbx_agent.amd.detector import AmdDetector, Verdict
from pbx_agent.amd.params import DetectorParams
from pbx_agent.errors import PbxAgentError
from pbx_agent.pbx.verdicts import deliver_verdict
from pbx_agent.wire.unicast import UnicastAudioDecoder, UnicastProtocolError

__all__ = ["UnicastAudioServer", "UnicastUnavailableError", "UnicastVerdictCallback"]

log = structlog.get_logger()
# A port freed less than this long ago is handed out only when no other is free.
PORT_QUARANTINE_S = 30.0

UnicastVerdictCallback = Callable[[str, Verdict], Awaitable[None] | None]


class UnicastUnavailableError(PbxAgentError):
    """No socket could be opened for a leg (too many sessions, no free port)."""


@dataclass(slots=True)
class _Counts:
    datagrams: int = 0
    malformed: int = 0
    foreign: int = 0
    first_problem: str = ""


@dataclass(slots=True)
class _Session:
    leg: str
    detector: AmdDetector
    decoder: UnicastAudioDecoder
    answered_at: float
    opened_at: float
    source_host: str | None
    transport: asyncio.DatagramTransport | None = None
    source: tuple[str, int] | None = None
    start_ms: int = 0
    counts: _Counts = field(default_factory=_Counts)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    settled: bool = False

    @property
    def audio_ms(self) -> int:
        return self.start_ms + self.decoder.samples_in * 1000 // self.decoder.rate


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: UnicastAudioServer, session: _Session) -> None:
        self._server = server
        self._session = session

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._server._received(self._session, data, (str(addr[0]), int(addr[1])))  # noqa: SLF001

    def error_received(self, exc: Exception) -> None:
        log.info("unicast_socket_error", leg=self._session.leg, error=repr(exc))


class UnicastAudioServer:
    """One UDP socket per callback leg being judged; one verdict per leg.

    Use as ``async with UnicastAudioServer(on_verdict) as server:`` or ``close()`` it.
    ``now`` is the clock the adapter stamps answers with (the event loop's by default).
    """

    def __init__(
        self,
        on_verdict: UnicastVerdictCallback,
        *,
        params: DetectorParams | None = None,
        host: str = "127.0.0.1",
        ports: tuple[int, int] = (0, 0),
        first_audio_timeout_s: float = 1.5,
        callback_timeout_s: float = 1.0,
        max_sessions: int = 200,
        max_datagram_bytes: int = 8192,
        now: Callable[[], float] | None = None,
    ) -> None:
        low, high = ports
        if not (0 <= low <= high <= 65535) or (low == 0 and high != 0):
            msg = f"unicast port range {low}-{high} refused; accepted: 0-0 or 1..65535, low ≤ high"
            raise ValueError(msg)
        self._on_verdict = on_verdict
        self.params = params or DetectorParams()
        self.host = host
        self._ports = ports
        self._first_audio_timeout_s = first_audio_timeout_s
        self._callback_timeout_s = callback_timeout_s
        self._max_sessions = max_sessions
        self._max_datagram_bytes = max_datagram_bytes
        self._now = now
        self._sessions: dict[str, _Session] = {}
        self._ports_in_use: dict[str, int] = {}
        # Ports are handed out in turn, not lowest-first: the switch goes on streaming a
        # judged leg until the hang-up or transfer reaches it, and a port given straight to
        # the next leg would feed it that audio (its first datagram fixes its source).
        self._next_port = ports[0]
        self._freed_at: dict[int, float] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def active_sessions(self) -> int:
        return len(self._sessions)

    def port_of(self, leg: str) -> int | None:
        return self._ports_in_use.get(leg)

    def _time(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- sessions ---------------------------------------------------------------------------

    async def open(
        self,
        leg: str,
        *,
        answered_at: float,
        rate: int = SAMPLE_RATE,
        source_host: str | None = None,
    ) -> int:
        """Bind a socket for ``leg``'s stream and start its deadlines; returns the port."""
        if self._closed:
            msg = f"unicast audio for {leg} refused: the receiver is closed"
            raise UnicastUnavailableError(msg)
        if leg in self._sessions:
            msg = f"unicast audio for {leg} refused: that leg already has a stream"
            raise UnicastUnavailableError(msg)
        if len(self._sessions) >= self._max_sessions:
            msg = f"unicast audio for {leg} refused: {self._max_sessions} streams already open"
            raise UnicastUnavailableError(msg)
        now = self._time()
        session = _Session(
            leg=leg,
            detector=AmdDetector(self.params),
            decoder=UnicastAudioDecoder(rate, max_datagram_bytes=self._max_datagram_bytes),
            answered_at=answered_at,
            opened_at=now,
            source_host=source_host,
        )
        transport, port = await self._bind(session)
        session.transport = transport
        self._sessions[leg] = session
        self._ports_in_use[leg] = port
        loop = asyncio.get_running_loop()
        deadline_at = answered_at + self.params.deadline_ms / 1000
        session.timers = [
            loop.call_later(self._first_audio_timeout_s, self._no_audio, session),
            loop.call_later(max(0.0, deadline_at - now), self._deadline, session),
        ]
        log.info(
            "unicast_stream_opened",
            leg=leg,
            host=self.host,
            port=port,
            rate=rate,
            source_host=source_host,
        )
        return port

    async def _bind(self, session: _Session) -> tuple[asyncio.DatagramTransport, int]:
        loop = asyncio.get_running_loop()
        low, high = self._ports
        used = set(self._ports_in_use.values())
        if low == 0:
            candidates = [0]
        else:
            start = min(max(self._next_port, low), high)
            turn = [*range(start, high + 1), *range(low, start)]
            now = self._time()
            free = [p for p in turn if p not in used]
            freed_at = self._freed_at

            def order(port: int) -> tuple[bool, float]:
                # A port freed a moment ago last (its old stream may still be arriving), and
                # of those, the one freed longest ago first.
                freed = freed_at.get(port)
                if freed is None or now - freed >= PORT_QUARANTINE_S:
                    return (False, 0.0)
                return (True, freed)

            candidates = sorted(free, key=order)
        last_error: OSError | None = None
        for port in candidates:
            try:
                transport, _protocol = await loop.create_datagram_endpoint(
                    lambda: _Protocol(self, session), local_addr=(self.host, port)
                )
            except OSError as exc:
                last_error = exc
                continue
            bound = int(transport.get_extra_info("sockname")[1])
            if low:
                self._next_port = low if bound >= high else bound + 1
            return transport, bound
        where = f"{self.host}:{low}-{high}" if low else f"{self.host} (any port)"
        msg = f"unicast audio for {session.leg}: no port free on {where}: {last_error}"
        raise UnicastUnavailableError(msg)

    def ended(self, leg: str) -> None:
        """The leg hung up or left the park: judge what was heard."""
        session = self._sessions.get(leg)
        if session is None or session.settled:
            return
        verdict = session.detector.finish(session.audio_ms)
        self._settle(
            session,
            Verdict(verdict.kind, f"peer-hangup:{verdict.reason}", verdict.decided_at_ms),
        )

    def cancel(self, leg: str, reason: str) -> None:
        """The stream cannot start (the switch refused the command): the default now."""
        session = self._sessions.get(leg)
        if session is not None and not session.settled:
            self._settle(session, Verdict(self.params.on_deadline, reason, session.audio_ms))

    async def close(self) -> None:
        """Every open leg gets the default (reason ``closed``); deliveries are awaited."""
        self._closed = True
        for session in list(self._sessions.values()):
            if not session.settled:
                self._settle(session, Verdict(self.params.on_deadline, "closed", session.audio_ms))
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=self._callback_timeout_s + 0.5)
        for task in list(self._deliveries):
            task.cancel()

    # -- datagrams --------------------------------------------------------------------------

    def _received(self, session: _Session, data: bytes, addr: tuple[str, int]) -> None:
        if session.settled:
            return
        counts = session.counts
        if session.source is None:
            if session.source_host is not None and addr[0] != session.source_host:
                self._foreign(session, addr)
                return
            session.source = addr
            arrived_ms = round((self._time() - session.answered_at) * 1000)
            session.start_ms = max(0, arrived_ms - FRAME_MS)
            log.info(
                "unicast_stream_started",
                leg=session.leg,
                source=f"{addr[0]}:{addr[1]}",
                start_ms=session.start_ms,
            )
        elif addr != session.source:
            self._foreign(session, addr)
            return
        at_ms = session.audio_ms
        try:
            pcm = session.decoder.decode(data)
        except UnicastProtocolError as exc:
            counts.malformed += 1
            if counts.malformed == 1:
                counts.first_problem = str(exc)
                log.warning("unicast_datagram_refused", leg=session.leg, error=str(exc))
            return
        counts.datagrams += 1
        verdict = session.detector.feed_pcm(pcm, at_ms)
        if verdict is not None:
            self._settle(session, verdict)

    def _foreign(self, session: _Session, addr: tuple[str, int]) -> None:
        counts = session.counts
        counts.foreign += 1
        if counts.foreign == 1:
            expected = (
                f"{session.source[0]}:{session.source[1]}"
                if session.source is not None
                else session.source_host
            )
            log.warning(
                "unicast_foreign_datagram",
                leg=session.leg,
                source=f"{addr[0]}:{addr[1]}",
                expected=expected,
                action="dropped",
            )

    # -- deadlines and the verdict ----------------------------------------------------------

    def _no_audio(self, session: _Session) -> None:
        if session.settled or session.source is not None:
            return
        log.warning(
            "unicast_no_audio",
            leg=session.leg,
            waited_s=self._first_audio_timeout_s,
            port=self._ports_in_use.get(session.leg),
            default=self.params.on_deadline.value,
            advice="check that FreeSWITCH reaches this address (freeswitch.unicast_address, "
            "firewall) and that the callback extension parks the leg",
        )
        self._settle(session, Verdict(self.params.on_deadline, "no-audio", 0))

    def _deadline(self, session: _Session) -> None:
        if session.settled:
            return
        log.warning(
            "amd_deadline",
            leg=session.leg,
            deadline_ms=self.params.deadline_ms,
            audio_ms=session.audio_ms,
            default=self.params.on_deadline.value,
        )
        self._settle(session, Verdict(self.params.on_deadline, "deadline", self.params.deadline_ms))

    def _settle(self, session: _Session, verdict: Verdict) -> None:
        session.settled = True
        for timer in session.timers:
            timer.cancel()
        if session.transport is not None:
            session.transport.close()
        self._sessions.pop(session.leg, None)
        port = self._ports_in_use.pop(session.leg, None)
        if port is not None:
            self._freed_at[port] = self._time()
        counts = session.counts
        log.info(
            "unicast_stream_closed",
            leg=session.leg,
            verdict=verdict.kind.value,
            reason=verdict.reason,
            decided_at_ms=verdict.decided_at_ms,
            audio_ms=session.audio_ms,
            datagrams=counts.datagrams,
            malformed=counts.malformed,
            foreign=counts.foreign,
        )
        task = asyncio.get_running_loop().create_task(
            self._deliver(session.leg, verdict), name=f"unicast-verdict:{session.leg}"
        )
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, leg: str, verdict: Verdict) -> None:
        await deliver_verdict(
            self._on_verdict, leg, verdict, timeout_s=self._callback_timeout_s, leg=leg
        )

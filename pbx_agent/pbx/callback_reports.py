"""What happened to a callback attempt, from the switch to the callback service, in order.

Both dialers (Asterisk, FreeSWITCH) hear of an attempt's fate as engine events
(``OriginateOutcome``, ``MachineDetected``) or, on Asterisk, from the AudioSocket server.
The engine's listener must never block, the service writes to the store: so reports go on
a queue that one worker delivers in arrival order. A report the store cannot take at the
moment is kept by the service and recorded by a later cycle (``callback.outcome_not_recorded``).
Any other failure is logged (``callback.report_failed``) and the next one goes on: the
scheduler's own timeouts then settle that attempt (unknown, or the NOTSURE choice), so
nothing waits for ever.
``close()`` delivers what is queued, bounded by ``close_timeout_s``.

Only attempts are reported: their request ids are UUIDs, the switch's own call ids
(Asterisk's ``1795339557.35``, a prompt's ``pbxagent-prompt-…``) are not.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from pbx_agent.model import events as ev

__all__ = ["OutcomeSink", "ReportQueue", "VerdictReport", "is_attempt_id"]

log = structlog.get_logger("pbx_agent.callbacks")


class OutcomeSink(Protocol):
    """Where attempt outcomes go (``CallbackService``)."""

    async def on_originate_outcome(
        self,
        request_id: str,
        outcome: str,
        *,
        cause: int | None = None,
        cause_text: str = "",
        tech_cause: str = "",
    ) -> object: ...

    async def on_machine_verdict(
        self, request_id: str, verdict: str, *, cause: str = ""
    ) -> object: ...


def is_attempt_id(value: str) -> bool:
    """Callback request ids are UUIDs; the switch's own call ids are not."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class VerdictReport:
    request_id: str
    verdict: str  # human | machine | notsure (as detected; the service applies notsure_as)
    cause: str


@dataclass(frozen=True, slots=True)
class _OutcomeReport:
    event: ev.OriginateOutcome


_Report = _OutcomeReport | VerdictReport

VerdictHook = Callable[[VerdictReport], Awaitable[None]]


class ReportQueue:
    """The queue and its worker. ``on_verdict``, when given, runs before a verdict from an
    engine event is recorded (FreeSWITCH acts on the leg there); its failure is logged
    like a failed report, and the verdict is still recorded."""

    def __init__(self, *, close_timeout_s: float, on_verdict: VerdictHook | None = None) -> None:
        self._close_timeout_s = close_timeout_s
        self._on_verdict = on_verdict
        self._sink: OutcomeSink | None = None
        self._queue: asyncio.Queue[tuple[_Report, bool]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def report_to(self, sink: OutcomeSink) -> None:
        self._sink = sink

    def empty(self) -> bool:
        return self._queue.empty()

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._deliver_all(), name="callback-reports")

    async def close(self) -> None:
        """Deliver the reports already queued (bounded by ``close_timeout_s``), then stop."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._close_timeout_s):
                await self._queue.join()
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    def on_event(self, event: ev.PbxEvent, _now: float) -> None:
        """Engine listener for ``OriginateOutcome`` and ``MachineDetected`` (never blocks)."""
        if isinstance(event, ev.OriginateOutcome):
            if is_attempt_id(event.request):
                self._queue.put_nowait((_OutcomeReport(event), False))
        elif isinstance(event, ev.MachineDetected) and is_attempt_id(event.leg):
            report = VerdictReport(event.leg, event.verdict.lower(), event.cause)
            self._queue.put_nowait((report, True))

    def put_verdict(self, report: VerdictReport) -> None:
        """A verdict already acted on (the AudioSocket server's): recorded only."""
        self._queue.put_nowait((report, False))

    async def _deliver_all(self) -> None:
        while True:
            report, act = await self._queue.get()
            try:
                if act and self._on_verdict is not None and isinstance(report, VerdictReport):
                    try:
                        await self._on_verdict(report)
                    except Exception:
                        log.exception("callback.report_failed", report=repr(report))
                await self._deliver(report)
            except Exception:
                log.exception("callback.report_failed", report=repr(report))
            finally:
                self._queue.task_done()

    async def _deliver(self, report: _Report) -> None:
        sink = self._sink
        if sink is None:
            log.warning("callback.report_dropped", report=repr(report), reason="no service")
            return
        if isinstance(report, _OutcomeReport):
            event = report.event
            await sink.on_originate_outcome(
                event.request,
                event.outcome,
                cause=event.cause,
                cause_text=event.cause_text,
                tech_cause=event.tech_cause,
            )
            return
        await sink.on_machine_verdict(report.request_id, report.verdict, cause=report.cause)

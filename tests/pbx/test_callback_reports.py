"""The queue both dialers report attempt outcomes through (pbx_agent.pbx.callback_reports)."""

from __future__ import annotations

import asyncio
import uuid

from structlog.testing import capture_logs

from pbx_agent.model import events as ev
from pbx_agent.pbx.callback_reports import ReportQueue, VerdictReport, is_attempt_id
from tests.pbx.test_freeswitch_dialer import Sink


def _ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


async def test_reports_reach_the_service_in_arrival_order_and_close_delivers_the_rest() -> None:
    a, b, c = _ids(3)
    sink = Sink()
    queue = ReportQueue(close_timeout_s=2.0)
    queue.report_to(sink)
    await queue.start()
    queue.on_event(ev.OriginateOutcome(a, "answered"), 0.0)
    queue.on_event(ev.MachineDetected(ev.LegId(b), "MACHINE", "long-greeting"), 0.0)
    queue.put_verdict(VerdictReport(c, "human", "answer-then-silence at 1500 ms"))
    await queue.close()
    assert sink.seen == [
        ("outcome", a, "answered"),
        ("verdict", b, "machine/long-greeting"),
        ("verdict", c, "human/answer-then-silence at 1500 ms"),
    ]


async def test_a_report_that_fails_is_logged_and_the_next_is_delivered() -> None:
    a, b = _ids(2)
    sink = Sink(failing={a})
    queue = ReportQueue(close_timeout_s=2.0)
    queue.report_to(sink)
    await queue.start()
    with capture_logs() as logs:
        queue.on_event(ev.OriginateOutcome(a, "answered"), 0.0)
        queue.on_event(ev.OriginateOutcome(b, "busy"), 0.0)
        await queue.close()
    assert sink.seen == [("outcome", b, "busy")]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["callback.report_failed"]


async def test_the_verdict_hook_runs_first_and_its_failure_still_records_the_verdict() -> None:
    """FreeSWITCH hangs up or connects the leg in the hook; if that raises, the service
    still learns the verdict (before, the report was lost with it)."""
    a, b = _ids(2)
    sink = Sink()

    async def hook(report: VerdictReport) -> None:
        sink.seen.append(("apply", report.request_id, ""))
        if report.request_id == a:
            msg = "the adapter broke"
            raise RuntimeError(msg)

    queue = ReportQueue(close_timeout_s=2.0, on_verdict=hook)
    queue.report_to(sink)
    await queue.start()
    with capture_logs() as logs:
        queue.on_event(ev.MachineDetected(ev.LegId(a), "machine", "tone-1000hz"), 0.0)
        queue.on_event(ev.MachineDetected(ev.LegId(b), "human", "answer-then-silence"), 0.0)
        queue.put_verdict(VerdictReport(b, "human", "already applied"))  # no hook for it
        await queue.close()
    assert sink.seen == [
        ("apply", a, ""),
        ("verdict", a, "machine/tone-1000hz"),
        ("apply", b, ""),
        ("verdict", b, "human/answer-then-silence"),
        ("verdict", b, "human/already applied"),
    ]
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["callback.report_failed"]


async def test_only_attempts_are_reported_and_nothing_without_a_service_is_lost_silently() -> None:
    queue = ReportQueue(close_timeout_s=1.0)
    queue.on_event(ev.MachineDetected(ev.LegId("1795339557.35"), "machine"), 0.0)
    queue.on_event(ev.OriginateOutcome("pbxagent-prompt-0a1b", "failed"), 0.0)
    assert queue.empty()
    (a,) = _ids(1)
    await queue.start()
    with capture_logs() as logs:
        queue.on_event(ev.OriginateOutcome(a, "answered"), 0.0)
        await queue.close()
    assert [e["event"] for e in logs] == ["callback.report_dropped"]


def test_is_attempt_id() -> None:
    assert is_attempt_id(str(uuid.uuid4()))
    assert not is_attempt_id("1795339557.35")
    assert not is_attempt_id("")


async def test_close_is_bounded_when_the_service_hangs() -> None:
    (a,) = _ids(1)

    class Stuck(Sink):
        async def on_originate_outcome(self, request_id: str, outcome: str, **_: object) -> object:
            await asyncio.Event().wait()
            return None

    queue = ReportQueue(close_timeout_s=0.05)
    queue.report_to(Stuck())
    await queue.start()
    queue.on_event(ev.OriginateOutcome(a, "answered"), 0.0)
    await asyncio.wait_for(queue.close(), 5)

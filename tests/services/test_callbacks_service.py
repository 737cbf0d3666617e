"""The callback scheduler with a fake dialer and a manual clock, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import ManualClock
from pbx_agent.errors import PbxActionFailed, PbxConnectionLost, StoreUnavailable
from pbx_agent.model import events as ev
from pbx_agent.model.calls import Call
from pbx_agent.model.commands import CancelCallbacks, RequestCallback
from pbx_agent.model.events import CallId
from pbx_agent.pbx.callback_reports import ReportQueue, VerdictReport
from pbx_agent.policies.callbacks import (
    AttemptOutcome,
    CallbackRules,
    DropRules,
    JobKind,
    JobStatus,
)
from pbx_agent.services.callbacks import (
    PROMISE_HOOK,
    CallbackDial,
    CallbackNotPlacedError,
    CallbackService,
    NumberUnusableError,
    SchedulerSettings,
    promise_hook,
)
from pbx_agent.store import Store
from tests.store.databases import db_url, store

__all__ = ["db_url", "store"]

# 2026-06-10 12:00 Moscow time: far from quiet hours.
T0 = datetime(2026, 6, 10, 9, 0, tzinfo=UTC).timestamp()
MOSCOW = ZoneInfo("Europe/Moscow")
NUMBER = "8 916 123-45-67"
E164 = "+79161234567"


class RecordingDialer:
    """Records each request, and what the store said about the attempt at that moment."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.requests: list[CallbackDial] = []
        self.outcome_in_store_when_dialled: list[AttemptOutcome | None] = []
        self.fail_with: BaseException | None = None
        self.hang = False
        self.abandoned: list[str] = []

    async def place_callback(self, request: CallbackDial) -> None:
        attempt = await self.store.callbacks.attempt_by_request(request.request_id)
        self.outcome_in_store_when_dialled.append(attempt.outcome if attempt else None)
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail_with is not None:
            raise self.fail_with
        self.requests.append(request)

    async def abandon(self, request_id: str) -> None:
        self.abandoned.append(request_id)


def service_for(
    store: Store,
    clock: ManualClock,
    dialer: RecordingDialer,
    *,
    rules: CallbackRules | None = None,
    owner: str = "d1",
    on_call: Callable[[str], bool] | None = None,
    **settings: Any,
) -> CallbackService:
    return CallbackService(
        store,
        dialer,
        rules or CallbackRules(timezone=MOSCOW),
        clock=clock,
        default_region="RU",
        owner=owner,
        settings=SchedulerSettings(**settings),
        on_call=on_call,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def dialer(store: Store) -> RecordingDialer:
    return RecordingDialer(store)


@pytest.fixture
def service(store: Store, clock: ManualClock, dialer: RecordingDialer) -> CallbackService:
    return service_for(store, clock, dialer)


async def drop(service: CallbackService, number: str = NUMBER) -> int:
    job = await service.schedule_after_drop(
        number, reason="caller_leg_failed on the caller leg cause 44", call_id="c1", cause="44"
    )
    assert job is not None
    return job.id


async def test_drop_schedules_a_callback_thirty_seconds_later(
    service: CallbackService, store: Store, clock: ManualClock
) -> None:
    """The job is stored with the E.164 number, due 30 s after the drop, window 48 h."""
    job_id = await drop(service)
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.number == E164
    assert job.status is JobStatus.SCHEDULED
    assert job.next_attempt_at == datetime.fromtimestamp(T0 + 30, UTC)
    assert job.window_ends_at == datetime.fromtimestamp(T0 + 48 * 3600, UTC)
    assert job.trigger_call_id == "c1"


async def test_nothing_is_dialled_before_the_attempt_is_due(
    service: CallbackService, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """29 s after the drop the scheduler places no call."""
    await drop(service)
    clock.advance(29)
    assert await service.run_once() == 0
    assert dialer.requests == []


async def test_attempt_is_committed_as_dialling_before_the_dialer_is_called(
    service: CallbackService, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """When place_callback runs, the attempt already exists in the store as dialling."""
    job_id = await drop(service)
    clock.advance(30)
    assert await service.run_once() == 1
    [request] = dialer.requests
    assert dialer.outcome_in_store_when_dialled == [AttemptOutcome.DIALLING]
    assert request.job_id == job_id
    assert request.attempt_no == 1
    assert request.number == E164
    assert request.ring_time_s == 40
    assert request.detect_machine is True
    assert str(uuid.UUID(request.request_id)) == request.request_id


async def test_anonymous_caller_gets_no_callback_and_the_log_says_why(
    service: CallbackService, store: Store
) -> None:
    """A withheld number is never called back; the reason is logged and recorded."""
    with capture_logs() as logs:
        job = await service.schedule_after_drop(
            "anonymous", reason="caller_leg_failed cause 44", call_id="c9"
        )
    assert job is None
    [entry] = [e for e in logs if e["event"] == "callback.number_unusable"]
    assert entry["number_reason"] == "anonymous"
    assert entry["call_id"] == "c9"
    [decision] = await store.decisions.between(
        datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 1, UTC)
    )
    assert decision.action == "no_callback"
    assert "anonymous" in decision.reason


async def test_second_drop_of_the_same_customer_reuses_the_pending_job(
    service: CallbackService,
) -> None:
    """+79161234567 and 8 916 123-45-67 are one customer: one pending callback."""
    first = await drop(service, "+79161234567")
    second = await drop(service, "8 916 123-45-67")
    assert first == second


async def test_disabled_callbacks_schedule_nothing(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """standards.callbacks.enabled false: drops are logged, no job is created."""
    service = service_for(store, clock, dialer, rules=CallbackRules(timezone=MOSCOW, enabled=False))
    assert await service.schedule_after_drop(NUMBER, reason="x", call_id="c1") is None
    assert await store.callbacks.list_jobs() == []


async def test_busy_attempt_is_retried_at_the_next_offset(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """Busy (17/486): attempt 2 is placed 4 h after the drop, as attempt number 2."""
    job_id = await drop(service)
    clock.advance(30)
    await service.run_once()
    await service.on_originate_outcome(
        dialer.requests[0].request_id, "busy", cause=17, cause_text="User busy", tech_cause="486"
    )
    clock.advance(4 * 3600 - 31)
    assert await service.run_once() == 0
    clock.advance(1)
    assert await service.run_once() == 1
    assert [r.attempt_no for r in dialer.requests] == [1, 2]
    attempts = await store.callbacks.attempts(job_id)
    assert [a.outcome for a in attempts] == [AttemptOutcome.BUSY, AttemptOutcome.DIALLING]
    assert attempts[0].cause == 17


async def test_three_unanswered_attempts_exhaust_the_job(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """No answer three times within 48 h: the job is exhausted and the report records it."""
    job_id = await drop(service)
    for offset in (30, 4 * 3600, 24 * 3600):
        clock.advance_to(T0 + offset)
        assert await service.run_once() == 1
        await service.on_originate_outcome(dialer.requests[-1].request_id, "no_answer", cause=19)
    clock.advance(48 * 3600)
    assert await service.run_once() == 0
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.status is JobStatus.EXHAUSTED
    assert job.attempts_made == 3
    actions = [
        d.action
        for d in await store.decisions.between(
            datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 49 * 3600, UTC)
        )
    ]
    assert actions == ["callback_scheduled", "callback_exhausted"]


async def test_human_answer_finishes_the_job(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """Answered, then AMD says human: the customer is connected and the job is done."""
    job_id = await drop(service)
    clock.advance(30)
    await service.run_once()
    request_id = dialer.requests[0].request_id
    await service.on_originate_outcome(request_id, "answered")
    assert service.in_flight == 1
    clock.advance(2)
    finished = await service.on_machine_verdict(request_id, "HUMAN", cause="HUMAN-800-800")
    assert finished is not None
    assert finished.job.status is JobStatus.DONE
    assert service.in_flight == 0
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.CONNECTED
    assert attempt.amd_result == "HUMAN"
    assert attempt.answered_at == datetime.fromtimestamp(T0 + 30, UTC)


async def test_machine_answer_counts_as_an_attempt(
    service: CallbackService, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """A machine answer ends the attempt and the job is rescheduled like a no-answer."""
    await drop(service)
    clock.advance(30)
    await service.run_once()
    request_id = dialer.requests[0].request_id
    await service.on_originate_outcome(request_id, "answered")
    finished = await service.on_machine_verdict(request_id, "MACHINE", cause="LONGGREETING")
    assert finished is not None
    assert finished.job.status is JobStatus.SCHEDULED
    assert finished.job.attempts_made == 1


async def test_missing_machine_verdict_follows_the_notsure_choice(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """Answered but no verdict in time: notsure, which counts as a machine when so configured."""
    service = service_for(
        store,
        clock,
        dialer,
        rules=CallbackRules(timezone=MOSCOW, notsure_as="machine"),
        verdict_timeout_s=10,
    )
    job_id = await drop(service)
    clock.advance(30)
    await service.run_once()
    await service.on_originate_outcome(dialer.requests[0].request_id, "answered")
    clock.advance(11)
    await service.run_once()
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.MACHINE
    assert attempt.amd_result == "timeout"


async def test_attempt_without_any_outcome_becomes_unknown(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """No report within ring time + grace: the attempt is unknown, counted, not redialled."""
    service = service_for(store, clock, dialer, outcome_grace_s=20)
    job_id = await drop(service)
    clock.advance(30)
    await service.run_once()
    clock.advance(40 + 21)
    assert await service.run_once() == 0
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.UNKNOWN
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.attempts_made == 1
    assert len(dialer.requests) == 1


async def test_concurrency_cap_limits_calls_in_flight(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """Cap 2 with 5 customers due: two calls, the next only after one ends."""
    service = service_for(
        store, clock, dialer, rules=CallbackRules(timezone=MOSCOW, max_concurrent=2)
    )
    for i in range(5):
        await drop(service, f"+7916123456{i}")
    clock.advance(30)
    assert await service.run_once() == 2
    assert await service.run_once() == 0
    await service.on_originate_outcome(dialer.requests[0].request_id, "busy")
    assert await service.run_once() == 1


async def test_customer_calling_in_cancels_the_pending_callback(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The customer's inbound call (once it reaches an agent) cancels the callback;
    nothing is dialled later."""
    job_id = await drop(service)
    with capture_logs() as logs:
        cancelled = await service.cancel_for_inbound("+7 916 123 45 67", call_id="c2")
    assert [job.id for job in cancelled] == [job_id]
    assert any(e["event"] == "callback.cancelled" for e in logs)
    clock.advance(60)
    assert await service.run_once() == 0
    assert dialer.requests == []


async def test_an_attempt_ringing_when_the_customer_gets_through_is_hung_up(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The callback rings the customer's phone while they talk to an agent on their own
    call: the job is cancelled and the ringing attempt abandoned (hung up)."""
    job_id = await drop(service)
    clock.advance(30)
    assert await service.run_once() == 1
    [request] = dialer.requests
    cancelled = await service.cancel_for_inbound("+7 916 123 45 67", call_id="c2")
    assert [job.id for job in cancelled] == [job_id]
    assert dialer.abandoned == [request.request_id]
    # The scheduler's next cycle sees the job cancelled: the attempt is not hung up twice.
    clock.advance(1)
    await service.run_once()
    assert dialer.abandoned == [request.request_id]


async def test_an_attempt_ringing_when_an_admin_cancels_its_job_elsewhere_is_hung_up(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """`pbx-agent callbacks cancel` runs in another process (its own service on the same
    store): the daemon that placed the ringing attempt hangs it up at its next cycle; an
    attempt already answered is left to its person."""
    job_id = await drop(service)
    other = await drop(service, "+7 916 765 43 21")
    clock.advance(30)
    assert await service.run_once() == 2
    first, second = dialer.requests
    assert await service.on_originate_outcome(second.request_id, "answered") is None
    admin = service_for(store, clock, RecordingDialer(store), owner="cli")
    assert await admin.cancel(job_id, "customer asked not to be called") is not None
    assert await admin.cancel(other, "customer asked not to be called") is not None
    clock.advance(1)
    with capture_logs() as logs:
        await service.run_once()
    assert dialer.abandoned == [first.request_id]
    assert [e["request_id"] for e in logs if e["event"] == "callback.attempt_abandoned"] == [
        first.request_id
    ]
    clock.advance(1)
    await service.run_once()
    assert dialer.abandoned == [first.request_id]


async def test_promise_is_kept_by_the_scheduler_and_reported_overdue_if_not(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """A 72 h promise is dialled from 24 h before its deadline; unreached, it is overdue."""
    job = await service.register_promise(NUMBER, T0 + 72 * 3600, "tariff question")
    assert job.kind is JobKind.PROMISED
    assert job.note == "tariff question"
    clock.advance(47 * 3600)
    assert await service.run_once() == 0
    for offset in (48 * 3600 + 30, 52 * 3600, 72 * 3600):
        clock.advance_to(T0 + offset)
        assert await service.run_once() == 1
        with capture_logs() as logs:
            await service.on_originate_outcome(dialer.requests[-1].request_id, "no_answer")
    assert [e["event"] for e in logs if e["event"].startswith("callback.o")] == ["callback.overdue"]
    final = await store.callbacks.get(job.id)
    assert final is not None
    assert final.status is JobStatus.OVERDUE
    assert [j.id for j in await service.overdue_promises()] == [job.id]


async def test_promise_nobody_could_dial_is_reported_overdue(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The daemon was down past the deadline: the promise is marked overdue with a warning."""
    job = await service.register_promise(NUMBER, T0 + 3600, "")
    clock.advance(2 * 3600)
    with capture_logs() as logs:
        await service.run_once()
    assert dialer.requests == []
    [entry] = [e for e in logs if e["event"] == "callback.overdue"]
    assert entry["log_level"] == "warning"
    assert entry["job_id"] == job.id


async def test_promise_for_a_withheld_number_is_refused(service: CallbackService) -> None:
    """A promise that cannot be kept is refused at once, not silently stored."""
    with pytest.raises(NumberUnusableError, match="withheld"):
        await service.register_promise("restricted", T0 + 3600, "")


async def test_inbound_call_does_not_cancel_a_promise(
    service: CallbackService, store: Store
) -> None:
    """The customer calling in does not give them what they were promised."""
    await service.register_promise(NUMBER, T0 + 72 * 3600, "")
    assert await service.cancel_for_inbound(NUMBER) == []


async def test_restart_with_an_attempt_left_dialling_does_not_redial_it(
    store: Store, clock: ManualClock
) -> None:
    """Daemon A dials then dies; daemon B recovers after A's lease and places attempt 2 only."""
    dialer_a = RecordingDialer(store)
    daemon_a = service_for(store, clock, dialer_a, owner="a", lease_s=60)
    job_id = await drop(daemon_a)
    clock.advance(30)
    assert await daemon_a.run_once() == 1
    del daemon_a  # kill -9: no outcome, no clean-up

    dialer_b = RecordingDialer(store)
    daemon_b = service_for(store, clock, dialer_b, owner="b", lease_s=60)
    clock.advance(30)
    assert await daemon_b.run_once() == 0  # A's lease still holds
    clock.advance(31)
    with capture_logs() as logs:
        assert await daemon_b.run_once() == 0
    assert any(e["event"] == "callback.attempt_recovered" for e in logs)
    clock.advance_to(T0 + 4 * 3600)
    assert await daemon_b.run_once() == 1
    assert [r.attempt_no for r in dialer_b.requests] == [2]
    attempts = await store.callbacks.attempts(job_id)
    assert [(a.attempt_no, a.outcome, a.placed_by) for a in attempts] == [
        (1, AttemptOutcome.UNKNOWN, "a"),
        (2, AttemptOutcome.DIALLING, "b"),
    ]


async def test_live_daemon_keeps_its_lease_while_the_call_rings(
    store: Store, clock: ManualClock
) -> None:
    """A renews its lease every cycle; B never takes over an attempt A is still tracking."""
    dialer_a = RecordingDialer(store)
    daemon_a = service_for(store, clock, dialer_a, owner="a", lease_s=30, outcome_grace_s=600)
    daemon_b = service_for(store, clock, RecordingDialer(store), owner="b", lease_s=30)
    job_id = await drop(daemon_a)
    clock.advance(30)
    await daemon_a.run_once()
    for _ in range(10):
        clock.advance(10)
        await daemon_a.run_once()
        await daemon_b.run_once()
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.DIALLING
    await daemon_a.on_originate_outcome(dialer_a.requests[0].request_id, "no_answer")
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.NO_ANSWER


async def test_dialer_that_could_not_send_does_not_use_up_an_attempt(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """PBX not connected: the attempt is not_placed, uncounted, and retried a minute later."""
    job_id = await drop(service)
    dialer.fail_with = CallbackNotPlacedError("AMI not connected")
    clock.advance(30)
    await service.run_once()
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.attempts_made == 0
    assert job.next_attempt_at == datetime.fromtimestamp(T0 + 90, UTC)
    dialer.fail_with = None
    clock.advance(60)
    assert await service.run_once() == 1
    assert dialer.requests[0].attempt_no == 2
    attempts = await store.callbacks.attempts(job_id)
    assert attempts[0].outcome is AttemptOutcome.NOT_PLACED
    assert attempts[0].cause_text == "AMI not connected"


async def test_a_call_the_switch_refused_does_not_use_up_an_attempt(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """AMI Response: Error to the Originate (here: permission denied): nothing rang, so it
    is refused, uncounted, logged, and retried 10 minutes later; once the switch takes it,
    that is the customer's first attempt."""
    job_id = await drop(service)
    dialer.fail_with = PbxActionFailed("Originate", "Permission denied")
    clock.advance(30)
    with capture_logs() as logs:
        await service.run_once()
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.attempts_made == 0
    assert job.next_attempt_at == datetime.fromtimestamp(T0 + 30 + 600, UTC)
    assert [e["event"] for e in logs if e["event"] == "callback.refused"] == ["callback.refused"]
    dialer.fail_with = None
    clock.advance(600)
    assert await service.run_once() == 1
    attempts = await store.callbacks.attempts(job_id)
    assert [a.outcome for a in attempts] == [AttemptOutcome.REFUSED, AttemptOutcome.DIALLING]


async def test_no_attempt_is_placed_while_the_customer_is_on_a_call_with_us(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The customer redialled and waits in the queue when the callback falls due: ringing
    their busy line would spend one of the three attempts; it is not placed, not counted,
    and tried a minute later, when the customer is free."""
    busy = {"+79161234567"}
    service = service_for(store, clock, dialer, on_call=busy.__contains__)
    job_id = await drop(service)
    clock.advance(30)
    await service.run_once()
    assert dialer.requests == []
    job = await store.callbacks.get(job_id)
    assert job is not None and job.attempts_made == 0
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.NOT_PLACED
    assert "on a call with us" in attempt.cause_text
    busy.clear()
    clock.advance(60)
    assert await service.run_once() == 1
    assert len(dialer.requests) == 1


async def test_dialer_failure_counts_as_an_attempt(
    service: CallbackService, store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The connection dropped while sending: the call may have gone out, so it counts, as
    UNKNOWN (a report that still arrives is applied); any other dialer error is FAILED."""
    job_id = await drop(service)
    dialer.fail_with = PbxConnectionLost("reset by peer")
    clock.advance(30)
    await service.run_once()
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.UNKNOWN
    assert "PbxConnectionLost" in attempt.cause_text
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.attempts_made == 1
    assert job.next_attempt_at is not None
    dialer.fail_with = RuntimeError("a bug in the adapter")
    clock.advance((job.next_attempt_at.timestamp() - clock.now()) + 1)
    await service.run_once()
    second = (await store.callbacks.attempts(job_id))[-1]
    assert second.attempt_no == 2
    assert second.outcome is AttemptOutcome.FAILED


async def test_dialer_that_hangs_is_timed_out(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """A dialer call is bounded by dial_timeout_s. The Originate may still ring the
    customer, so the attempt is UNKNOWN (it counts), and an answer that arrives after it
    finishes the job: the customer reached is not called again (it was FAILED, and the
    late answer was dropped as a duplicate)."""
    service = service_for(store, clock, dialer, dial_timeout_s=0.05)
    job_id = await drop(service)
    dialer.hang = True
    clock.advance(30)
    await service.run_once()
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.UNKNOWN
    assert "no answer within" in attempt.cause_text
    await service.on_originate_outcome(attempt.request_id, "answered")
    await service.on_machine_verdict(attempt.request_id, "HUMAN", cause="answer-then-silence")
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.status is JobStatus.DONE
    dialer.hang = False
    clock.advance(5 * 3600)
    assert await service.run_once() == 0
    assert dialer.requests == []


async def test_a_store_error_recording_an_attempt_does_not_stop_the_scheduler(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """Recording an attempt runs inside the batch's TaskGroup: a StoreUnavailable there came
    out as an ExceptionGroup that ended run() for good (nothing dialled until a restart).
    Now the outcome is kept and recorded by a later cycle, and dialling goes on."""
    service = service_for(store, clock, dialer, poll_interval_s=0.01, store_retry_s=0.01)
    first = await drop(service)
    clock.advance(30)
    dialer.fail_with = CallbackNotPlacedError("not connected to Asterisk's AMI")
    real = store.callbacks.finish_attempt
    failures = [StoreUnavailable("database is locked")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    store.callbacks.finish_attempt = flaky  # type: ignore[method-assign]
    with capture_logs() as logs:
        runner = asyncio.create_task(service.run())
        try:
            for _ in range(500):  # a generous bound: a loaded machine is slow, not wrong
                await asyncio.sleep(0.02)
                attempts = await store.callbacks.attempts(first)  # none until the claim
                if attempts and attempts[0].outcome is AttemptOutcome.NOT_PLACED:
                    break
            [attempt] = attempts
            assert attempt.outcome is AttemptOutcome.NOT_PLACED
            dialer.fail_with = None
            second = await drop(service, "+7 903 000 11 22")
            for _ in range(500):
                clock.advance(60)
                await asyncio.sleep(0.02)
                if {r.job_id for r in dialer.requests} >= {first, second}:
                    break
            assert {r.job_id for r in dialer.requests} >= {first, second}
            assert not runner.done()
        finally:
            service.stop()
            await asyncio.wait_for(runner, 5)
    assert [e["event"] for e in logs if e["event"].startswith("callback.outcome_not")] == [
        "callback.outcome_not_recorded"
    ]


async def test_a_drop_met_by_a_store_outage_is_saved_when_the_store_is_back(
    store: Store, clock: ManualClock, dialer: RecordingDialer, service: CallbackService
) -> None:
    """The callback request of a drop that happens while the store is away is kept and
    saved by the next cycle that reaches the store (it was dropped with command_failed)."""
    real = store.callbacks.create_unless_pending
    failures = [StoreUnavailable("database is locked"), StoreUnavailable("database is locked")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    store.callbacks.create_unless_pending = flaky  # type: ignore[method-assign]
    with capture_logs() as logs:
        job = await service.schedule_after_drop(NUMBER, reason="caller_leg_failed", call_id="c1")
        assert job is None
        with pytest.raises(StoreUnavailable):
            await service.run_once()  # still away: kept for the next cycle
        assert await store.callbacks.list_jobs() == []
        assert await service.run_once() == 0
    [saved] = await store.callbacks.list_jobs()
    assert saved.number == E164
    assert saved.trigger_call_id == "c1"
    assert [e["event"] for e in logs if e["event"].startswith("callback.")][:2] == [
        "callback.not_saved_yet",
        "callback.scheduled",
    ]
    clock.advance(30)
    assert await service.run_once() == 1
    assert [r.number for r in dialer.requests] == [E164]


async def test_an_answer_and_verdict_met_by_a_store_outage_are_recorded_when_it_is_back(
    store: Store, clock: ManualClock, dialer: RecordingDialer, service: CallbackService
) -> None:
    """The switch reports "answered", then AMD "human", while the store is away: the
    reports are kept, in order, and recorded by the first cycle that reaches the store,
    before it gives the attempt up (they were dropped with ``callback.report_failed``, the
    attempt became ``unknown`` and the reached customer was called again)."""
    job_id = await drop(service)
    clock.advance(30)
    assert await service.run_once() == 1
    request_id = dialer.requests[0].request_id
    real_answer, real_finish = store.callbacks.record_answer, store.callbacks.finish_attempt
    calls: list[str] = []

    async def away(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("database is locked")

    async def answer(*args: Any, **kwargs: Any) -> Any:
        calls.append("answer")
        return await real_answer(*args, **kwargs)

    async def finish(*args: Any, **kwargs: Any) -> Any:
        calls.append("finish")
        return await real_finish(*args, **kwargs)

    store.callbacks.record_answer = away  # type: ignore[method-assign]
    store.callbacks.finish_attempt = away  # type: ignore[method-assign]
    reports = ReportQueue(close_timeout_s=5)
    reports.report_to(service)
    await reports.start()
    with capture_logs() as logs:
        clock.advance(5)
        reports.on_event(ev.OriginateOutcome(request=request_id, outcome="answered"), T0 + 35)
        await asyncio.sleep(0.05)  # the worker delivers it (and the store refuses it)
        clock.advance(2)
        reports.put_verdict(VerdictReport(request_id, "human", "HUMAN-800-800"))
        await reports.close()
        with pytest.raises(StoreUnavailable):
            await service.run_once()  # still away: kept for the next cycle
        store.callbacks.record_answer = answer  # type: ignore[method-assign]
        store.callbacks.finish_attempt = finish  # type: ignore[method-assign]
        clock.advance(120)  # past ring time + grace and the verdict timeout
        assert await service.run_once() == 0
    assert "callback.report_failed" not in [e["event"] for e in logs]
    assert calls == ["answer", "finish"]
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.CONNECTED
    assert attempt.answered_at == datetime.fromtimestamp(T0 + 35, UTC)
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.status is JobStatus.DONE
    clock.advance(5 * 3600)
    assert await service.run_once() == 0
    assert len(dialer.requests) == 1


async def test_an_answered_attempt_of_a_dead_daemon_is_not_called_again(
    store: Store, clock: ManualClock
) -> None:
    """Daemon A's attempt is answered, then A dies before the verdict: B's recovery applies
    the notsure choice (default human: done) as A's verdict timeout would have, instead of
    ``unknown`` and a second call to a customer who picked up."""
    dialer_a = RecordingDialer(store)
    daemon_a = service_for(store, clock, dialer_a, owner="a", lease_s=60)
    job_id = await drop(daemon_a)
    clock.advance(30)
    assert await daemon_a.run_once() == 1
    clock.advance(8)
    await daemon_a.on_originate_outcome(dialer_a.requests[0].request_id, "answered")
    del daemon_a  # kill -9 before the verdict

    dialer_b = RecordingDialer(store)
    daemon_b = service_for(store, clock, dialer_b, owner="b", lease_s=60)
    clock.advance(120)
    assert await daemon_b.run_once() == 0
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.outcome is AttemptOutcome.CONNECTED
    assert attempt.answered_at == datetime.fromtimestamp(T0 + 38, UTC)
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.status is JobStatus.DONE
    clock.advance_to(T0 + 5 * 3600)
    assert await daemon_b.run_once() == 0
    assert dialer_b.requests == []


async def test_a_job_saved_before_its_decision_failed_is_not_created_again(
    store: Store, clock: ManualClock, dialer: RecordingDialer, service: CallbackService
) -> None:
    """The job commits, then the store fails on its decision row: the job stands (it was
    kept as unsaved and created a second time, dialled even after the customer called in
    and reported lost at stop); so does a promise (the CLI exited 1 and a rerun doubled it)."""
    real = store.decisions.record
    failures = [StoreUnavailable("database is locked")]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    store.decisions.record = flaky  # type: ignore[method-assign]
    with capture_logs() as logs:
        job = await service.schedule_after_drop(NUMBER, reason="caller_leg_failed", call_id="c1")
        assert job is not None
        clock.advance(2)
        cancelled = await service.cancel_for_inbound(E164, call_id="c2")
        assert [j.id for j in cancelled] == [job.id]
        clock.advance(1)
        assert await service.run_once() == 0
        clock.advance(40)
        assert await service.run_once() == 0
        failures.append(StoreUnavailable("database is locked"))
        promise = await service.register_promise(NUMBER, T0 + 72 * 3600, "tariff question")
        service.stop()
    assert dialer.requests == []
    jobs = await store.callbacks.list_jobs()
    assert [(j.id, j.kind, j.status) for j in jobs] == [
        (promise.id, JobKind.PROMISED, JobStatus.SCHEDULED),
        (job.id, JobKind.ABNORMAL_DROP, JobStatus.CANCELLED),
    ]
    events = [e["event"] for e in logs]
    assert events.count("callback.decision_not_recorded") == 2
    assert "callback.lost" not in events
    assert "callback.not_saved_yet" not in events


async def test_a_drop_never_saved_within_its_window_is_reported_lost(
    store: Store, clock: ManualClock, service: CallbackService
) -> None:
    async def away(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("database is locked")

    real = store.callbacks.create_unless_pending
    store.callbacks.create_unless_pending = away  # type: ignore[method-assign]
    with capture_logs() as logs:
        assert (
            await service.schedule_after_drop(NUMBER, reason="caller_leg_failed", call_id="c1")
            is None
        )
        clock.advance(49 * 3600)
        store.callbacks.create_unless_pending = real  # type: ignore[method-assign]
        await service.run_once()
    assert await store.callbacks.list_jobs() == []
    [lost] = [e for e in logs if e["event"] == "callback.lost"]
    assert lost["call_id"] == "c1"
    assert "whole callback window" in lost["reason"]


async def test_engine_commands_reach_the_service(service: CallbackService, store: Store) -> None:
    """RequestCallback and CancelCallbacks from the engine create and cancel jobs."""
    call = Call(id=CallId("c1"), started_at=T0, queue="support")
    await service.on_request_callback(
        RequestCallback(
            number=NUMBER,
            reason="agent_device_dropped on the agent leg cause 44",
            trigger_call=CallId("c1"),
            cause="44",
        ),
        call,
    )
    [job] = await store.callbacks.list_jobs()
    assert job.kind is JobKind.ABNORMAL_DROP
    assert job.target == "support"
    assert job.trigger_cause == "44"
    await service.on_cancel_callbacks(
        CancelCallbacks(number=NUMBER, reason="the customer called in", trigger_call=CallId("c2")),
        None,
    )
    cancelled = await store.callbacks.get(job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED


async def offer_taken(service: CallbackService) -> None:
    """The RequestCallback the hold policy sends when the customer presses the offer digit."""
    await service.on_request_callback(
        RequestCallback(
            number=NUMBER,
            reason="the customer on hold took the callback offer",
            trigger_call=CallId("c3"),
            cause="hold_callback_offer",
        ),
        None,
    )


async def test_hold_callback_offer_becomes_a_requested_callback(
    service: CallbackService, store: Store
) -> None:
    """The hold policy's RequestCallback (the customer pressed the offer digit) is the
    customer's own request: dialled like a drop's callback, 30 s later, not days later."""
    await offer_taken(service)
    [job] = await store.callbacks.list_jobs()
    assert job.kind is JobKind.REQUESTED
    assert job.next_attempt_at is not None
    assert (job.next_attempt_at - job.created_at).total_seconds() == 30


async def test_the_agent_coming_back_cancels_only_the_callback_asked_for(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """CancelCallbacks(requested_only) from the hold: the customer's own request goes, even
    where callbacks.cancel_on_inbound is off; a drop's callback to another number stays."""
    rules = CallbackRules(timezone=MOSCOW, cancel_on_inbound=False)
    service = service_for(store, clock, dialer, rules=rules)
    await offer_taken(service)
    other = "+7 903 000 11 22"
    await drop(service, other)
    for number in (NUMBER, other):
        await service.on_cancel_callbacks(
            CancelCallbacks(
                number=number,
                reason="the agent came back to the customer who had asked for a callback",
                trigger_call=CallId("c3"),
                requested_only=True,
            ),
            None,
        )
    statuses = {(j.kind, j.status) for j in await store.callbacks.list_jobs()}
    assert statuses == {
        (JobKind.REQUESTED, JobStatus.CANCELLED),
        (JobKind.ABNORMAL_DROP, JobStatus.SCHEDULED),
    }


async def test_run_loop_dials_and_stops(store: Store, dialer: RecordingDialer) -> None:
    """run() places due calls on its own and returns promptly after stop()."""
    clock = ManualClock(T0)
    service = service_for(store, clock, dialer, poll_interval_s=0.01)
    await drop(service)
    clock.advance(30)
    runner = asyncio.create_task(service.run())
    try:
        for _ in range(500):
            if dialer.requests:
                break
            await asyncio.sleep(0.01)
        assert len(dialer.requests) == 1
    finally:
        service.stop()
        await asyncio.wait_for(runner, 5)


async def test_one_way_audio_request_is_ignored_where_it_does_not_count(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The ru-style setting (one_way_audio false): the R2 drop asks for no callback."""
    rules = CallbackRules(timezone=MOSCOW, drop=DropRules(one_way_audio=False))
    service = service_for(store, clock, dialer, rules=rules)
    await service.on_request_callback(
        RequestCallback(number=NUMBER, reason="one_way_audio", trigger_call=CallId("c4")), None
    )
    assert await store.callbacks.list_jobs() == []


class FakeHookSession:
    """A leaf stand-in for one dialplan visit to a hook (no PBX behind it)."""

    def __init__(self, params: dict[str, str], caller_number: str = NUMBER) -> None:
        self.hook = PROMISE_HOOK
        self.params = params
        self.call = CallId("1795339509.30")
        self.caller_number = caller_number
        self.variables: dict[str, str] = {}

    async def set_variable(self, name: str, value: str) -> None:
        self.variables[name] = value


async def test_promise_hook_registers_a_promise_for_the_caller(
    service: CallbackService, store: Store
) -> None:
    """AGI(.../callback_promise?within_h=24&note=...) stores the promise, returns its id."""
    spec = promise_hook(service, default_within_h=72)
    session = FakeHookSession({"within_h": "24", "note": "tariff"})
    await spec.handler(session)  # type: ignore[arg-type]
    [job] = await store.callbacks.list_jobs()
    assert session.variables == {"PBXAGENT_PROMISE": str(job.id)}
    assert job.kind is JobKind.PROMISED
    assert job.number == E164
    assert job.deadline_at == datetime.fromtimestamp(T0 + 24 * 3600, UTC)
    assert job.trigger_call_id == "1795339509.30"


async def test_promise_hook_refuses_an_anonymous_caller(service: CallbackService) -> None:
    """A withheld caller cannot be promised a callback; the dialplan learns it."""
    spec = promise_hook(service, default_within_h=72)
    session = FakeHookSession({}, caller_number="anonymous")
    await spec.handler(session)  # type: ignore[arg-type]
    assert session.variables == {"PBXAGENT_PROMISE": "refused"}


async def test_promise_hook_safe_default_lets_the_dialplan_go_on(
    service: CallbackService,
) -> None:
    """If the daemon is too slow, the hook's default says the promise is unavailable."""
    spec = promise_hook(service, default_within_h=72)
    session = FakeHookSession({})
    assert spec.on_timeout is not None
    await spec.on_timeout(session)  # type: ignore[arg-type]
    assert session.variables == {"PBXAGENT_PROMISE": "unavailable"}


async def test_a_job_due_before_quiet_hours_is_not_dialled_inside_them(
    store: Store, dialer: RecordingDialer
) -> None:
    """Dropped at 20:50 Moscow time; the scheduler (down until then) first runs at 21:30:
    nothing rings, the job moves to 09:00 the next morning and is dialled then."""
    dropped = datetime(2026, 6, 10, 20, 50, tzinfo=MOSCOW).timestamp()
    clock = ManualClock(dropped)
    service = service_for(store, clock, dialer)
    job_id = await drop(service)
    clock.advance_to(datetime(2026, 6, 10, 21, 30, tzinfo=MOSCOW).timestamp())
    with capture_logs() as logs:
        assert await service.run_once() == 0
    assert dialer.requests == []
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.status is JobStatus.SCHEDULED
    assert job.attempts_made == 0
    morning = datetime(2026, 6, 11, 9, 0, tzinfo=MOSCOW)
    assert job.next_attempt_at == morning
    deferred = [e for e in logs if e["event"] == "callback.deferred_quiet_hours"]
    assert [e["job_id"] for e in deferred] == [job_id]
    assert deferred[0]["next_attempt_at"] == morning.astimezone(UTC).isoformat()
    decisions = await store.decisions.between(
        datetime.fromtimestamp(dropped, UTC), morning.astimezone(UTC)
    )
    assert "callback_deferred" in [d.action for d in decisions]
    clock.advance_to(morning.timestamp() - 1)
    assert await service.run_once() == 0
    clock.advance_to(morning.timestamp())
    assert await service.run_once() == 1
    assert [r.job_id for r in dialer.requests] == [job_id]


def store_away(store: Store, *names: str) -> dict[str, Any]:
    """Make the named store calls raise StoreUnavailable until ``state["away"]`` is False."""
    state: dict[str, Any] = {"away": True}
    for name in names:
        real = getattr(store.callbacks, name)

        async def flaky(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if state["away"]:
                raise StoreUnavailable("database is locked")
            return await _real(*args, **kwargs)

        setattr(store.callbacks, name, flaky)
    return state


async def test_a_drop_waiting_for_the_store_is_cancelled_when_the_customer_is_served(
    store: Store, clock: ManualClock, dialer: RecordingDialer, service: CallbackService
) -> None:
    """The drop's callback waits in memory for the store; the customer calls in and reaches
    an agent once the store is back: the waiting callback is cancelled, never saved and
    dialled to a customer served meanwhile."""
    state = store_away(store, "create_unless_pending")
    assert (
        await service.schedule_after_drop(NUMBER, reason="caller_leg_failed", call_id="c1") is None
    )
    state["away"] = False
    with capture_logs() as logs:
        await service.cancel_for_inbound(NUMBER, call_id="c2")
        for _ in range(3):
            clock.advance(60)
            await service.run_once()
    assert await store.callbacks.list_jobs() == []
    assert dialer.requests == []
    [cancelled] = [e for e in logs if e["event"] == "callback.cancelled"]
    assert cancelled["call_id"] == "c2"


async def test_a_cancellation_met_by_a_store_outage_is_made_when_the_store_is_back(
    store: Store, clock: ManualClock, dialer: RecordingDialer, service: CallbackService
) -> None:
    """The customer is served while the store is away: the cancellation waits and is made
    by the first cycle that reaches the store (it was dropped with command_failed and the
    served customer called back); a drop after it is a new callback and stays."""
    job_id = await drop(service)
    state = store_away(store, "cancel_pending")
    with capture_logs() as logs:
        assert await service.cancel_for_inbound(NUMBER, call_id="c2") == []
        state["away"] = False
        clock.advance(5)
        later = await service.schedule_after_drop(NUMBER, reason="caller_leg_failed", call_id="c3")
        assert later is not None and later.id == job_id  # still pending: reused
        await service.run_once()
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.status is JobStatus.CANCELLED
    events = [e["event"] for e in logs if e["event"].startswith("callback.")]
    assert events.index("callback.cancel_not_saved_yet") < events.index("callback.cancelled")
    clock.advance(3600)
    await service.run_once()
    assert dialer.requests == []


async def test_a_cancellation_spares_a_drop_that_came_after_it(
    store: Store, clock: ManualClock, dialer: RecordingDialer, service: CallbackService
) -> None:
    """A held cancellation cancels only the jobs that existed when it was asked for: the
    customer's next abnormal drop, saved before the store took the cancellation, stays."""
    state = store_away(store, "cancel_pending")
    await service.cancel_for_inbound(NUMBER, call_id="c2")
    clock.advance(5)
    job_id = await drop(service)
    state["away"] = False
    await service.run_once()
    job = await store.callbacks.get(job_id)
    assert job is not None
    assert job.status is JobStatus.SCHEDULED


async def test_what_never_reached_the_store_is_logged_lost_when_the_scheduler_stops(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The store stays away through the stop: the held drop, cancellation and attempt report
    are each logged lost (callback.lost / cancel_lost / outcome_lost); a report held before
    said nothing at stop, and the restarted daemon dialled the reached customer again."""
    service = service_for(store, clock, dialer, poll_interval_s=0.01)
    await drop(service, number="+79161110000")
    clock.advance(30)
    assert await service.run_once() == 1
    request_id = dialer.requests[0].request_id
    store_away(store, "create_unless_pending", "cancel_pending", "record_answer", "finish_attempt")
    with capture_logs() as logs:
        await service.schedule_after_drop(NUMBER, reason="caller_leg_failed", call_id="c1")
        await service.cancel_for_inbound("+79162220000", call_id="c2")
        await service.on_originate_outcome(request_id, "answered")
        runner = asyncio.create_task(service.run())
        await asyncio.sleep(0.05)
        service.stop()
        await asyncio.wait_for(runner, 5)
        # After the scheduler ended nothing would retry a write: lost at once, said so.
        await service.schedule_after_drop("+79163330000", reason="caller_leg_failed", call_id="c4")
    lost = {
        e["event"]: e for e in logs if e["event"].endswith("_lost") or e["event"] == "callback.lost"
    }
    assert set(lost) == {"callback.lost", "callback.cancel_lost", "callback.outcome_lost"}
    assert lost["callback.outcome_lost"]["request_id"] == request_id
    assert [e["number"] for e in logs if e["event"] == "callback.lost"] == [E164, "+79163330000"]


async def test_what_waits_for_the_store_is_written_at_stop_when_it_is_back(
    store: Store, clock: ManualClock, dialer: RecordingDialer
) -> None:
    """The store comes back between two cycles and the daemon stops: the held report is
    written by the scheduler's last writes, nothing is lost."""
    service = service_for(store, clock, dialer, poll_interval_s=3600)
    job_id = await drop(service)
    clock.advance(30)
    assert await service.run_once() == 1
    request_id = dialer.requests[0].request_id
    state = store_away(store, "record_answer")
    with capture_logs() as logs:
        await service.on_originate_outcome(request_id, "answered")
        runner = asyncio.create_task(service.run())
        await asyncio.sleep(0.05)  # its cycle met the outage; it waits an hour for the next
        state["away"] = False
        service.stop()
        await asyncio.wait_for(runner, 5)
    assert not [e for e in logs if e["event"].endswith("lost")]
    [attempt] = await store.callbacks.attempts(job_id)
    assert attempt.answered_at is not None


async def test_a_customer_served_while_their_held_callback_is_written_is_not_called_back(
    store: Store, clock: ManualClock, dialer: RecordingDialer, service: CallbackService
) -> None:
    """Two drops wait for the store; it comes back and is slow writing the first one when
    that customer reaches an agent: the job just written is cancelled, and the other
    customer's callback is still saved (it was removed in the first one's place, unlogged,
    and the served customer was dialled)."""
    other = "+79167654321"
    real = store.callbacks.create_unless_pending
    state: dict[str, Any] = {"away": True, "gate": None}

    async def create(*args: Any, **kwargs: Any) -> Any:
        if state["away"]:
            raise StoreUnavailable("database is locked")
        if state["gate"] is not None:
            await state["gate"].wait()
        return await real(*args, **kwargs)

    store.callbacks.create_unless_pending = create  # type: ignore[method-assign]
    await service.schedule_after_drop(NUMBER, reason="caller_leg_failed", call_id="c1")
    await service.schedule_after_drop(other, reason="caller_leg_failed", call_id="c2")
    state["away"], state["gate"] = False, asyncio.Event()
    cycle = asyncio.create_task(service.run_once())
    await asyncio.sleep(0.05)  # the cycle is writing the first drop
    await service.cancel_for_inbound(NUMBER, call_id="c3")
    state["gate"].set()
    await cycle
    for _ in range(3):
        clock.advance(60)
        await service.run_once()
    jobs = {job.number: job.status for job in await store.callbacks.list_jobs()}
    assert jobs[E164] is JobStatus.CANCELLED
    assert other in jobs
    assert [r.number for r in dialer.requests] == [other]

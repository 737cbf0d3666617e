"""Callback jobs and attempts in the store: claims, leases, outcomes, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pbx_agent.errors import StoreUnavailable
from pbx_agent.policies.callbacks import (
    AttemptOutcome,
    CallbackJob,
    CallbackRules,
    JobKind,
    JobStatus,
    after_attempt,
    cancels_on_inbound,
    expiry,
)
from pbx_agent.store import AttemptResult, NewJob, Store
from pbx_agent.store.schema import callback_attempts

T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
RULES = CallbackRules()


def new_job(number: str = "+79161234567", *, due: datetime = T0, **changes: object) -> NewJob:
    values: dict[str, object] = {
        "number": number,
        "kind": JobKind.ABNORMAL_DROP,
        "reason": "caller_leg_failed cause 44",
        "created_at": T0,
        "anchor_at": T0,
        "window_ends_at": T0 + timedelta(hours=48),
        "next_attempt_at": due,
        "trigger_call_id": "1700000000.1",
        "trigger_cause": "44",
    }
    values.update(changes)
    return NewJob(**values)  # type: ignore[arg-type]


def decide(now: datetime):
    return lambda job, outcome: after_attempt(job, outcome, now, RULES)


async def claim(store: Store, owner: str = "d1", now: datetime = T0, cap: int = 10):
    return await store.callbacks.claim_due(
        owner=owner,
        now=now,
        lease=LEASE,
        limit=50,
        max_in_flight=cap,
        request_id_for=lambda job_id, attempt_no: f"cb-{job_id}-{attempt_no}-{owner}",
    )


async def test_claim_records_the_attempt_as_dialling_and_leases_the_job(store: Store) -> None:
    """After a claim the attempt row exists (dialling) and the job is leased to the claimer."""
    job = await store.callbacks.create(new_job())
    [(claimed, attempt)] = await claim(store)
    assert claimed.id == job.id
    assert claimed.status is JobStatus.DIALLING
    assert claimed.lease_owner == "d1"
    assert claimed.lease_expires_at == T0 + LEASE
    [stored] = await store.callbacks.attempts(job.id)
    assert stored == attempt
    assert stored.outcome is AttemptOutcome.DIALLING
    assert stored.attempt_no == 1


async def test_jobs_not_yet_due_are_not_claimed(store: Store) -> None:
    """A job due in a minute stays scheduled."""
    await store.callbacks.create(new_job(due=T0 + timedelta(minutes=1)))
    assert await claim(store) == []


async def test_claimed_job_is_not_claimed_again(store: Store) -> None:
    """A second daemon finds nothing to claim while the first one dials."""
    await store.callbacks.create(new_job())
    assert len(await claim(store, "d1")) == 1
    assert await claim(store, "d2") == []


async def test_claim_respects_the_concurrency_cap_across_daemons(store: Store) -> None:
    """Cap 2: two daemons together never have more than 2 attempts in flight."""
    for i in range(5):
        await store.callbacks.create(new_job(f"+7916123456{i}"))
    first = await claim(store, "d1", cap=2)
    second = await claim(store, "d2", cap=2)
    assert len(first) == 2
    assert second == []
    assert await store.callbacks.in_flight(T0) == 2


async def test_outcome_moves_the_job_to_its_next_attempt(store: Store) -> None:
    """Busy on attempt 1: the attempt is closed with its cause, the job rescheduled."""
    await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store)
    now = T0 + timedelta(seconds=10)
    finished = await store.callbacks.finish_attempt(
        attempt.request_id,
        AttemptResult(AttemptOutcome.BUSY, now, cause=17, cause_text="User busy", tech_cause="486"),
        decide(now),
    )
    assert finished is not None
    assert finished.applied
    assert finished.attempt.cause == 17
    assert finished.attempt.tech_cause == "486"
    assert finished.job.status is JobStatus.SCHEDULED
    assert finished.job.attempts_made == 1
    assert finished.job.lease_owner is None
    assert finished.job.next_attempt_at == T0 + timedelta(hours=4)


async def test_work_order_is_the_job_with_its_attempts(store: Store) -> None:
    """``work_order``: the job and every attempt in order; None for a job that is not there."""
    job = await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store)
    order = await store.callbacks.work_order(job.id)
    assert order is not None
    read_job, attempts = order
    assert read_job.status is JobStatus.DIALLING
    assert attempts == [attempt]
    assert await store.callbacks.work_order(job.id + 1000) is None


async def test_a_snapshot_read_does_not_see_a_commit_made_while_it_runs(store: Store) -> None:
    """The job and its attempts come from one state: an outcome committed between the two
    statements (job exhausted, attempt closed together) is seen by neither or by both."""
    job = await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store)
    result = AttemptResult(AttemptOutcome.NO_ANSWER, T0, cause=19)
    async with store.db.read("test snapshot", snapshot=True) as conn:
        query = sa.select(callback_attempts.c.outcome).where(
            callback_attempts.c.request_id == attempt.request_id
        )
        before = (await conn.execute(query)).scalar_one()
        await store.callbacks.finish_attempt(attempt.request_id, result, decide(T0))
        during = (await conn.execute(query)).scalar_one()
    after = await read_one(store, query)
    assert before == during == str(AttemptOutcome.DIALLING)
    assert after == str(AttemptOutcome.NO_ANSWER)
    order = await store.callbacks.work_order(job.id)
    assert order is not None
    assert order[0].attempts_made == 1
    assert order[1][0].outcome is AttemptOutcome.NO_ANSWER


async def read_one(store: Store, query: sa.Select[tuple[str]]) -> object:
    """One statement in a read transaction of its own."""
    async with store.db.read("test read") as conn:
        return (await conn.execute(query)).scalar_one()


async def test_outcome_is_applied_only_once(store: Store) -> None:
    """A duplicate report (two daemons both saw it) does not move the job twice."""
    await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store)
    result = AttemptResult(AttemptOutcome.NO_ANSWER, T0, cause=19)
    first = await store.callbacks.finish_attempt(attempt.request_id, result, decide(T0))
    second = await store.callbacks.finish_attempt(attempt.request_id, result, decide(T0))
    assert first is not None
    assert second is not None
    assert first.applied
    assert not second.applied
    assert second.job.attempts_made == 1


async def test_answer_then_machine_verdict_records_both(store: Store) -> None:
    """Answered, then AMD says machine: answer time and the verdict are in the work order."""
    await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store)
    answered = T0 + timedelta(seconds=5)
    assert await store.callbacks.record_answer(attempt.request_id, answered)
    result = AttemptResult(
        AttemptOutcome.MACHINE,
        T0 + timedelta(seconds=8),
        amd_result="MACHINE",
        amd_cause="LONGGREETING-1500-1500",
    )
    finished = await store.callbacks.finish_attempt(attempt.request_id, result, decide(T0))
    assert finished is not None
    assert finished.attempt.answered_at == answered
    assert finished.attempt.amd_cause == "LONGGREETING-1500-1500"
    assert finished.job.attempts_made == 1


async def test_unknown_request_id_is_ignored(store: Store) -> None:
    """An outcome for a request this store never issued returns None."""
    result = AttemptResult(AttemptOutcome.BUSY, T0)
    assert await store.callbacks.finish_attempt("cb-nothing", result, decide(T0)) is None


async def test_expired_lease_recovers_the_job_without_redialling_the_attempt(
    store: Store,
) -> None:
    """The dialling daemon died: after its lease the attempt is unknown, the job moves on."""
    job = await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store, "dead")
    assert (
        await store.callbacks.recover_expired(
            now=T0 + LEASE, limit=10, decide=decide(T0), answered_as=AttemptOutcome.CONNECTED
        )
        == []
    )
    later = T0 + LEASE + timedelta(seconds=1)
    [(recovered, lost)] = await store.callbacks.recover_expired(
        now=later, limit=10, decide=decide(later), answered_as=AttemptOutcome.CONNECTED
    )
    assert lost.request_id == attempt.request_id
    assert lost.outcome is AttemptOutcome.UNKNOWN
    assert recovered.status is JobStatus.SCHEDULED
    assert recovered.attempts_made == 1
    assert recovered.next_attempt_at == T0 + timedelta(hours=4)
    # When attempt 2 is due it gets a new number; attempt 1 is never placed again.
    [(_, second)] = await claim(store, "alive", now=T0 + timedelta(hours=4))
    assert second.attempt_no == 2
    assert [a.attempt_no for a in await store.callbacks.attempts(job.id)] == [1, 2]


async def test_expired_lease_of_an_answered_attempt_applies_the_notsure_outcome(
    store: Store,
) -> None:
    """The customer answered, then the daemon died before the machine verdict: recovery
    settles the attempt as the live daemon's verdict timeout would (``answered_as``), so a
    customer who picked up is not called again (it was ``unknown``: attempt 2 scheduled)."""
    job = await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store, "dead")
    answered = T0 + timedelta(seconds=8)
    assert await store.callbacks.record_answer(attempt.request_id, answered)
    later = T0 + LEASE + timedelta(seconds=1)
    [(recovered, settled)] = await store.callbacks.recover_expired(
        now=later, limit=10, decide=decide(later), answered_as=AttemptOutcome.CONNECTED
    )
    assert settled.outcome is AttemptOutcome.CONNECTED
    assert settled.answered_at == answered
    assert settled.amd_result == "timeout"
    assert recovered.status is JobStatus.DONE
    assert recovered.next_attempt_at is None
    assert [a.attempt_no for a in await store.callbacks.attempts(job.id)] == [1]


async def test_renewed_lease_keeps_the_job(store: Store) -> None:
    """A live daemon renewing its lease is never recovered by another."""
    job = await store.callbacks.create(new_job())
    await claim(store, "d1")
    renewal = T0 + timedelta(seconds=40)
    held = await store.callbacks.renew_leases(
        owner="d1", job_ids=[job.id], now=renewal, lease=LEASE
    )
    assert held == {job.id}
    later = T0 + LEASE + timedelta(seconds=1)
    assert (
        await store.callbacks.recover_expired(
            now=later, limit=10, decide=decide(later), answered_as=AttemptOutcome.CONNECTED
        )
        == []
    )


async def test_renewal_reports_a_job_taken_over(store: Store) -> None:
    """After recovery by another daemon the old owner's renewal does not hold the job."""
    job = await store.callbacks.create(new_job())
    await claim(store, "slow")
    later = T0 + LEASE + timedelta(seconds=1)
    await store.callbacks.recover_expired(
        now=later, limit=10, decide=decide(later), answered_as=AttemptOutcome.CONNECTED
    )
    held = await store.callbacks.renew_leases(
        owner="slow", job_ids=[job.id], now=later, lease=LEASE
    )
    assert held == set()


async def test_late_connected_report_finishes_a_recovered_job(store: Store) -> None:
    """The customer was reached but the report came after recovery: stop calling them."""
    await store.callbacks.create(new_job())
    [(_, attempt)] = await claim(store, "slow")
    later = T0 + LEASE + timedelta(seconds=1)
    await store.callbacks.recover_expired(
        now=later, limit=10, decide=decide(later), answered_as=AttemptOutcome.CONNECTED
    )
    result = AttemptResult(AttemptOutcome.CONNECTED, later, amd_result="HUMAN")
    finished = await store.callbacks.finish_attempt(attempt.request_id, result, decide(later))
    assert finished is not None
    assert finished.job.status is JobStatus.DONE
    assert finished.attempt.outcome is AttemptOutcome.CONNECTED


async def test_attempt_numbers_are_unique_per_job_in_the_schema(store: Store) -> None:
    """The database itself refuses a second row for the same (job, attempt)."""
    job = await store.callbacks.create(new_job())
    await claim(store)
    with pytest.raises(StoreUnavailable, match="IntegrityError"):
        async with store.db.write("duplicate attempt") as conn:
            await conn.execute(
                sa.insert(callback_attempts).values(
                    job_id=job.id,
                    attempt_no=1,
                    request_id="another",
                    outcome="dialling",
                    dialled_at=T0,
                )
            )


async def test_inbound_call_cancels_pending_callbacks_but_not_promises(store: Store) -> None:
    """cancel_pending applies the rule it is given, job by job."""
    drop = await store.callbacks.create(new_job())
    promise = await store.callbacks.create(new_job(kind=JobKind.PROMISED))
    cancelled = await store.callbacks.cancel_pending(
        "+79161234567",
        reason="the customer called in",
        now=T0,
        should_cancel=lambda job: cancels_on_inbound(job, RULES),
    )
    assert [job.id for job in cancelled] == [drop.id]
    assert cancelled[0].status is JobStatus.CANCELLED
    assert cancelled[0].finish_reason == "the customer called in"
    still = await store.callbacks.get(promise.id)
    assert still is not None
    assert still.status is JobStatus.SCHEDULED


async def test_outcome_of_a_cancelled_job_is_recorded_but_changes_nothing(store: Store) -> None:
    """The customer called in while we rang them: the attempt keeps its outcome, job stays."""
    await store.callbacks.create(new_job())
    [(job, attempt)] = await claim(store)
    await store.callbacks.cancel(job.id, reason="admin", now=T0)
    result = AttemptResult(AttemptOutcome.NO_ANSWER, T0 + timedelta(seconds=40), cause=19)
    finished = await store.callbacks.finish_attempt(attempt.request_id, result, decide(T0))
    assert finished is not None
    assert not finished.applied
    assert finished.attempt.outcome is AttemptOutcome.NO_ANSWER
    assert finished.job.status is JobStatus.CANCELLED


async def test_finished_job_cannot_be_cancelled(store: Store) -> None:
    """Cancelling a finished job changes nothing and says so (None)."""
    job = await store.callbacks.create(new_job())
    assert await store.callbacks.cancel(job.id, reason="x", now=T0) is not None
    assert await store.callbacks.cancel(job.id, reason="again", now=T0) is None
    assert await store.callbacks.cancel(999_999, reason="x", now=T0) is None


async def test_scheduled_jobs_past_their_window_are_finished(store: Store) -> None:
    """A job nobody could dial in its window is finished by the rule it is given."""
    job = await store.callbacks.create(new_job())
    after = T0 + timedelta(hours=48, seconds=1)

    def exhaust(j: CallbackJob):
        return expiry(j, after)

    [expired] = await store.callbacks.expire_scheduled(now=after, limit=10, decide=exhaust)
    assert expired.id == job.id
    assert expired.status is JobStatus.EXHAUSTED
    assert expired.finished_at == after
    assert await claim(store, now=after) == []


async def test_overdue_promises_are_listed(store: Store) -> None:
    """A promise pending past its deadline is reported; one not yet due is not."""
    late = await store.callbacks.create(
        new_job(kind=JobKind.PROMISED, deadline_at=T0 + timedelta(hours=1))
    )
    await store.callbacks.create(
        new_job("+79990000000", kind=JobKind.PROMISED, deadline_at=T0 + timedelta(hours=3))
    )
    overdue = await store.callbacks.overdue_promises(T0 + timedelta(hours=2))
    assert [job.id for job in overdue] == [late.id]


async def test_a_promise_kept_after_its_deadline_stays_overdue(store: Store) -> None:
    """`callbacks done` on a promise past its deadline records the late keeping but does not
    erase the violation: it stays overdue and listed; kept in time, it is done."""
    late = await store.callbacks.create(
        new_job(kind=JobKind.PROMISED, deadline_at=T0 + timedelta(hours=1))
    )
    in_time = await store.callbacks.create(
        new_job("+79990000000", kind=JobKind.PROMISED, deadline_at=T0 + timedelta(hours=3))
    )
    now = T0 + timedelta(hours=2)
    kept_late = await store.callbacks.mark_done(late.id, reason="called from the desk", now=now)
    assert kept_late is not None
    assert kept_late.status is JobStatus.OVERDUE
    assert "called from the desk" in kept_late.finish_reason
    again = await store.callbacks.mark_done(late.id, reason="once more", now=now)
    assert again is not None and again.status is JobStatus.OVERDUE
    kept = await store.callbacks.mark_done(in_time.id, reason="called", now=now)
    assert kept is not None and kept.status is JobStatus.DONE
    assert [j.id for j in await store.callbacks.overdue_promises(now)] == [late.id]


async def test_job_created_with_no_possible_attempt_is_finished_at_once(store: Store) -> None:
    """No attempt fits (next_attempt_at None): exhausted, or overdue for a promise."""
    job = await store.callbacks.create(new_job(next_attempt_at=None))
    promise = await store.callbacks.create(new_job(kind=JobKind.PROMISED, next_attempt_at=None))
    assert job.status is JobStatus.EXHAUSTED
    assert promise.status is JobStatus.OVERDUE


async def test_jobs_are_listed_newest_first_and_filtered(store: Store) -> None:
    """The admin list filters by status and number."""
    first = await store.callbacks.create(new_job())
    second = await store.callbacks.create(new_job("+79990000000"))
    await store.callbacks.cancel(first.id, reason="x", now=T0)
    assert [j.id for j in await store.callbacks.list_jobs()] == [second.id, first.id]
    cancelled = await store.callbacks.list_jobs(statuses=[JobStatus.CANCELLED])
    assert [j.id for j in cancelled] == [first.id]
    by_number = await store.callbacks.list_jobs(number="+79990000000")
    assert [j.id for j in by_number] == [second.id]
    assert await store.callbacks.count_by_status() == {
        JobStatus.SCHEDULED: 1,
        JobStatus.CANCELLED: 1,
    }


async def test_two_drops_at_once_make_one_job_even_from_two_daemons(db_url: str) -> None:
    """The pending check and the insert are one serialised transaction: before, two drops
    handled at once on PostgreSQL both found nothing pending and made two jobs (two calls
    at T+30 s, up to six attempts)."""
    stores = [Store.open(db_url), Store.open(db_url)]
    try:
        await stores[0].upgrade()
        for _round in range(5):
            number = f"+7916123450{_round}"
            results = await asyncio.gather(
                *(s.callbacks.create_unless_pending(new_job(number)) for s in stores * 2)
            )
            assert sorted(created for _job, created in results) == [False, False, False, True]
            assert len({job.id for job, _created in results}) == 1
            assert len(await stores[0].callbacks.pending_for_number(number)) == 1
    finally:
        for s in stores:
            await s.close()


async def test_a_promise_or_a_finished_job_does_not_stop_a_new_drop_job(store: Store) -> None:
    promise = await store.callbacks.create(
        new_job(kind=JobKind.PROMISED, deadline_at=T0 + timedelta(hours=4))
    )
    job, created = await store.callbacks.create_unless_pending(new_job())
    assert created
    assert job.id != promise.id
    assert await store.callbacks.cancel(job.id, reason="test", now=T0) is not None
    again, created = await store.callbacks.create_unless_pending(new_job())
    assert created
    assert again.id not in (job.id, promise.id)
    same, created = await store.callbacks.create_unless_pending(new_job())
    assert not created
    assert same.id == again.id

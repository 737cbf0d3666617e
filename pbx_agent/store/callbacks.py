"""Callback jobs and their attempts: the durable half of the callback scheduler.

The repository knows how to keep jobs consistent under several daemons and crashes; it
knows no rule. Where a rule decides (what an outcome does to a job, whether an inbound call
cancels it), the caller passes the pure function from ``pbx_agent.policies.callbacks`` and
the repository applies it inside the transaction that holds the job's row.

Exactly-once, the way it is built:
- ``claim_due`` takes the claim lock row, counts the attempts in flight against the cap,
  selects due jobs ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
  serialises writers instead), and in the same transaction inserts each attempt as
  ``dialling`` and leases the job to the claiming daemon. Only after that commit does the
  daemon place the call. ``(job_id, attempt_no)`` is unique in the schema.
- A job whose lease expired while ``dialling`` (its daemon died) is recovered by
  ``recover_expired``: the open attempt becomes ``unknown`` (answered with no verdict: the
  rules' ``notsure`` outcome) and the job moves on by the rules. The attempt number is
  never reused, so the same attempt is never dialled twice.
- An outcome is applied once: the attempt row moves from an open state to a final one by
  a conditional update, and only that transaction changes the job, and only if the job is
  still waiting for that very attempt.

Text written to a job or an attempt (reason, note, causes, ...) goes through
``pbx_agent.wire.escaping.storable`` and is then cut to its column's length: a byte that
was not UTF-8 in a promise's note (an AGI query, a SIP header) is stored as the visible
escape ``\\xff`` instead of making the database refuse the promise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_agent.policies.callbacks import (
    OPEN_OUTCOMES,
    PENDING_STATUSES,
    TERMINAL_STATUSES,
    AttemptOutcome,
    CallbackAttempt,
    CallbackJob,
    JobKind,
    JobStatus,
    JobTransition,
)
from pbx_agent.store.engine import Database
from pbx_agent.store.schema import (
    CALLBACK_CLAIM_LOCK,
    callback_attempts,
    callback_jobs,
    claim_locks,
    fit_row,
)
from pbx_agent.wire.escaping import storable

Decide = Callable[[CallbackJob, AttemptOutcome], JobTransition]
RequestIdFor = Callable[[int, int], str]


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create."""

    number: str
    kind: JobKind
    reason: str
    created_at: datetime
    anchor_at: datetime
    window_ends_at: datetime
    next_attempt_at: datetime | None
    deadline_at: datetime | None = None
    trigger_call_id: str | None = None
    trigger_cause: str = ""
    target: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What became of an attempt, as reported by the PBX side."""

    outcome: AttemptOutcome
    at: datetime
    cause: int | None = None
    cause_text: str = ""
    tech_cause: str = ""
    amd_result: str = ""
    amd_cause: str = ""


@dataclass(frozen=True, slots=True)
class Finished:
    """The result of reporting an outcome."""

    attempt: CallbackAttempt
    job: CallbackJob
    applied: bool  # the outcome moved the job (False: late, duplicate, or job cancelled)


class CallbackRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ reading

    async def get(self, job_id: int) -> CallbackJob | None:
        async with self._db.read("read callback job") as conn:
            return await _job_by_id(conn, job_id)

    async def statuses(self, job_ids: Sequence[int]) -> dict[int, JobStatus]:
        """The status of each of ``job_ids`` that exists."""
        if not job_ids:
            return {}
        c = callback_jobs.c
        query = sa.select(c.id, c.status).where(c.id.in_(list(job_ids)))
        async with self._db.read("read callback job statuses") as conn:
            rows = (await conn.execute(query)).all()
        return {int(job_id): JobStatus(status) for job_id, status in rows}

    async def attempts(self, job_id: int) -> list[CallbackAttempt]:
        async with self._db.read("read callback attempts") as conn:
            return await _attempts_of(conn, job_id)

    async def work_order(self, job_id: int) -> tuple[CallbackJob, list[CallbackAttempt]] | None:
        """A job with its attempts, read from one snapshot.

        An attempt's outcome and the job's move are committed together; two separate reads
        can fall on either side of that commit and show, say, an exhausted job whose last
        attempt is still dialling.
        """
        async with self._db.read("read callback work order", snapshot=True) as conn:
            job = await _job_by_id(conn, job_id)
            if job is None:
                return None
            return job, await _attempts_of(conn, job_id)

    async def attempt_by_request(self, request_id: str) -> CallbackAttempt | None:
        query = sa.select(callback_attempts).where(callback_attempts.c.request_id == request_id)
        async with self._db.read("read callback attempt") as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _attempt(row)

    async def list_jobs(
        self,
        *,
        statuses: Sequence[JobStatus] = (),
        number: str | None = None,
        limit: int = 100,
    ) -> list[CallbackJob]:
        """Jobs, newest first."""
        query = sa.select(callback_jobs).order_by(callback_jobs.c.id.desc()).limit(limit)
        if statuses:
            query = query.where(callback_jobs.c.status.in_([str(s) for s in statuses]))
        if number is not None:
            query = query.where(callback_jobs.c.number == number)
        async with self._db.read("list callback jobs") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_job(row) for row in rows]

    async def pending_for_number(self, number: str) -> list[CallbackJob]:
        return await self.list_jobs(statuses=sorted(PENDING_STATUSES), number=number)

    async def count_by_status(self) -> dict[JobStatus, int]:
        query = sa.select(callback_jobs.c.status, sa.func.count()).group_by(callback_jobs.c.status)
        async with self._db.read("count callback jobs") as conn:
            rows = (await conn.execute(query)).all()
        return {JobStatus(status): int(count) for status, count in rows}

    async def overdue_promises(self, now: datetime) -> list[CallbackJob]:
        """Promises not kept: marked overdue, or still pending past their deadline."""
        c = callback_jobs.c
        query = (
            sa.select(callback_jobs)
            .where(c.kind == str(JobKind.PROMISED))
            .where(
                sa.or_(
                    c.status == str(JobStatus.OVERDUE),
                    sa.and_(c.status.in_([str(s) for s in PENDING_STATUSES]), c.deadline_at < now),
                )
            )
            .order_by(c.deadline_at)
        )
        async with self._db.read("list overdue promises") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_job(row) for row in rows]

    async def attempts_between(self, since: datetime, until: datetime) -> list[CallbackAttempt]:
        """Attempts dialled in [since, until), in dialling order (the manager's report)."""
        c = callback_attempts.c
        query = (
            sa.select(callback_attempts)
            .where(c.dialled_at >= since)
            .where(c.dialled_at < until)
            .order_by(c.dialled_at, c.id)
        )
        async with self._db.read("list callback attempts") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_attempt(row) for row in rows]

    async def jobs_between(self, since: datetime, until: datetime) -> list[CallbackJob]:
        """Jobs created or finished in [since, until) (the manager's report)."""
        c = callback_jobs.c
        query = (
            sa.select(callback_jobs)
            .where(
                sa.or_(
                    sa.and_(c.created_at >= since, c.created_at < until),
                    sa.and_(c.finished_at >= since, c.finished_at < until),
                )
            )
            .order_by(c.id)
        )
        async with self._db.read("list callback jobs in a period") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_job(row) for row in rows]

    # ------------------------------------------------------------------ creating

    async def create(self, new: NewJob) -> CallbackJob:
        async with self._db.write("create callback job") as conn:
            return await _insert_job(conn, new)

    async def create_unless_pending(self, new: NewJob) -> tuple[CallbackJob, bool]:
        """Create ``new`` unless a job for its number is pending already (promises aside:
        they are kept whatever else happens); ``(job, True)`` when created, ``(the pending
        job, False)`` when not. The check and the insert are one transaction, serialised per
        number (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock
        on the number), so two drops handled at once, by one daemon or two, make one job."""
        c = callback_jobs.c
        async with self._db.write("create callback job") as conn:
            if self._db.dialect == "postgresql":
                await conn.execute(
                    sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(new.number)))
                )
            pending = (
                (
                    await conn.execute(
                        sa.select(callback_jobs)
                        .where(c.number == new.number)
                        .where(c.status.in_([str(st) for st in PENDING_STATUSES]))
                        .where(c.kind != str(JobKind.PROMISED))
                        .order_by(c.id.desc())
                        .limit(1)
                    )
                )
                .mappings()
                .first()
            )
            if pending is not None:
                return _job(pending), False
            return await _insert_job(conn, new), True

    # ------------------------------------------------------------------ claiming

    async def claim_due(
        self,
        *,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        max_in_flight: int,
        request_id_for: RequestIdFor,
    ) -> list[tuple[CallbackJob, CallbackAttempt]]:
        """Claim due jobs and record their next attempt as dialling, in one transaction.
        The caller places the calls after this returns (the commit happened)."""
        c = callback_jobs.c
        due_now = (
            sa.select(c.id)
            .where(c.status == str(JobStatus.SCHEDULED))
            .where(c.next_attempt_at <= now)
            .where(c.window_ends_at >= now)
            .limit(1)
        )
        # A cheap look first, so an idle scheduler never takes the write lock (SQLite) or
        # the claim lock (PostgreSQL) just to find nothing.
        async with self._db.read("look for due callbacks") as conn:
            if (await conn.execute(due_now)).first() is None:
                return []
        async with self._db.write("claim due callbacks") as conn:
            await conn.execute(
                sa.select(claim_locks.c.name)
                .where(claim_locks.c.name == CALLBACK_CLAIM_LOCK)
                .with_for_update()
            )
            in_flight = await _in_flight(conn, now)
            room = min(limit, max_in_flight - in_flight)
            if room <= 0:
                return []
            due = (
                sa.select(callback_jobs)
                .where(c.status == str(JobStatus.SCHEDULED))
                .where(c.next_attempt_at <= now)
                .where(c.window_ends_at >= now)
                .order_by(c.next_attempt_at, c.id)
                .limit(room)
                .with_for_update(skip_locked=True)
            )
            jobs = [_job(row) for row in (await conn.execute(due)).mappings().all()]
            if not jobs:
                return []
            claimed: list[tuple[CallbackJob, CallbackAttempt]] = []
            attempt_rows: list[dict[str, Any]] = []
            for job in jobs:
                attempt_no = job.attempt_seq + 1
                attempt = CallbackAttempt(
                    job_id=job.id,
                    attempt_no=attempt_no,
                    request_id=request_id_for(job.id, attempt_no),
                    outcome=AttemptOutcome.DIALLING,
                    dialled_at=now,
                    placed_by=owner,
                )
                attempt_rows.append(
                    {
                        "job_id": job.id,
                        "attempt_no": attempt_no,
                        "request_id": attempt.request_id,
                        "outcome": str(AttemptOutcome.DIALLING),
                        "placed_by": owner,
                        "dialled_at": now,
                    }
                )
                await conn.execute(
                    sa.update(callback_jobs)
                    .where(c.id == job.id)
                    .values(
                        status=str(JobStatus.DIALLING),
                        attempt_seq=attempt_no,
                        last_attempt_at=now,
                        next_attempt_at=None,
                        current_request_id=attempt.request_id,
                        lease_owner=owner,
                        lease_expires_at=now + lease,
                    )
                )
                claimed_job = replace(
                    job,
                    status=JobStatus.DIALLING,
                    attempt_seq=attempt_no,
                    last_attempt_at=now,
                    next_attempt_at=None,
                    current_request_id=attempt.request_id,
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                )
                claimed.append((claimed_job, attempt))
            await conn.execute(sa.insert(callback_attempts), attempt_rows)
            return claimed

    async def renew_leases(
        self, *, owner: str, job_ids: Sequence[int], now: datetime, lease: timedelta
    ) -> set[int]:
        """Extend the lease of ``owner``'s dialling jobs; return the ids still held."""
        if not job_ids:
            return set()
        c = callback_jobs.c
        async with self._db.write("renew callback leases") as conn:
            await conn.execute(
                sa.update(callback_jobs)
                .where(c.id.in_(list(job_ids)))
                .where(c.lease_owner == owner)
                .where(c.status == str(JobStatus.DIALLING))
                .values(lease_expires_at=now + lease)
            )
            held = await conn.execute(
                sa.select(c.id)
                .where(c.id.in_(list(job_ids)))
                .where(c.lease_owner == owner)
                .where(c.status == str(JobStatus.DIALLING))
            )
            return {int(row[0]) for row in held}

    async def in_flight(self, now: datetime) -> int:
        async with self._db.read("count callbacks in flight") as conn:
            return await _in_flight(conn, now)

    # ------------------------------------------------------------------ outcomes

    async def record_answer(self, request_id: str, at: datetime) -> bool:
        """The attempt was answered; its final outcome waits for machine detection."""
        a = callback_attempts.c
        async with self._db.write("record callback answer") as conn:
            result = await conn.execute(
                sa.update(callback_attempts)
                .where(a.request_id == request_id)
                .where(a.outcome == str(AttemptOutcome.DIALLING))
                .values(outcome=str(AttemptOutcome.ANSWERED), answered_at=at)
            )
            return bool(result.rowcount)

    async def finish_attempt(
        self, request_id: str, result: AttemptResult, decide: Decide
    ) -> Finished | None:
        """Record an attempt's final outcome and, if its job is still waiting for it, apply
        ``decide``'s transition. None when no attempt has this request id."""
        async with self._db.write("record callback outcome") as conn:
            found = await _maybe_attempt_by_request(conn, request_id)
            if found is None:
                return None
            # Lock order everywhere: the job row, then its attempt rows.
            job = await _job_by_id(conn, found.job_id, lock=True)
            if job is None:  # pragma: no cover - attempts cascade with their job
                return None
            attempt = await _attempt_by_request(conn, request_id, lock=True)
            if attempt.outcome is AttemptOutcome.UNKNOWN:
                return await _late_report(conn, attempt, job, result)
            if attempt.outcome not in OPEN_OUTCOMES:
                return Finished(attempt, job, applied=False)  # a duplicate report
            attempt = await _closed(conn, attempt, result, open_only=True)
            applied = job.status is JobStatus.DIALLING and job.current_request_id == request_id
            if applied:
                job = await _apply(conn, job, decide(job, result.outcome), result.at)
            return Finished(attempt, job, applied=applied)

    async def recover_expired(
        self, *, now: datetime, limit: int, decide: Decide, answered_as: AttemptOutcome
    ) -> list[tuple[CallbackJob, CallbackAttempt]]:
        """Jobs left ``dialling`` past their lease (their daemon died or stalled): mark the
        open attempt ``unknown`` (never redial it), or ``answered_as`` when it was answered
        and no machine verdict came (the rules' ``notsure``, as the live daemon's verdict
        timeout: a customer who picked up is not called again), and move the job on by
        ``decide``."""
        c = callback_jobs.c
        async with self._db.write("recover expired callback leases") as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(callback_jobs)
                        .where(c.status == str(JobStatus.DIALLING))
                        .where(c.lease_expires_at < now)
                        .order_by(c.lease_expires_at)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .all()
            )
            recovered: list[tuple[CallbackJob, CallbackAttempt]] = []
            for row in rows:
                job = _job(row)
                request_id = job.current_request_id or ""
                attempt = await _maybe_attempt_by_request(conn, request_id)
                if attempt is not None and attempt.outcome in OPEN_OUTCOMES:
                    if attempt.outcome is AttemptOutcome.ANSWERED and attempt.answered_at:
                        lost = AttemptResult(
                            answered_as,
                            now,
                            cause_text="answered; no verdict before its daemon's lease expired",
                            amd_result="timeout",
                        )
                    else:
                        lost = AttemptResult(
                            AttemptOutcome.UNKNOWN,
                            now,
                            cause_text="no outcome before the lease of its daemon expired",
                        )
                    attempt = await _closed(conn, attempt, lost, open_only=True)
                    outcome = lost.outcome
                elif attempt is not None:
                    outcome = attempt.outcome
                else:  # pragma: no cover - a dialling job always has its attempt row
                    continue
                job = await _apply(conn, job, decide(job, outcome), now)
                recovered.append((job, attempt))
            return recovered

    async def expire_scheduled(
        self,
        *,
        now: datetime,
        limit: int,
        decide: Callable[[CallbackJob], JobTransition | None],
    ) -> list[CallbackJob]:
        """Scheduled jobs whose window ended before anyone could dial them."""
        c = callback_jobs.c
        return await self._transition_scheduled(
            "expire callback jobs",
            c.window_ends_at < now,
            now=now,
            limit=limit,
            decide=decide,
        )

    async def reschedule_due(
        self,
        *,
        now: datetime,
        limit: int,
        decide: Callable[[CallbackJob], JobTransition | None],
    ) -> list[CallbackJob]:
        """Apply ``decide`` to scheduled jobs that are due now (jobs it returns None for
        are left alone); the jobs it changed."""
        c = callback_jobs.c
        return await self._transition_scheduled(
            "reschedule due callback jobs",
            c.next_attempt_at <= now,
            now=now,
            limit=limit,
            decide=decide,
        )

    async def _transition_scheduled(
        self,
        what: str,
        condition: sa.ColumnElement[bool],
        *,
        now: datetime,
        limit: int,
        decide: Callable[[CallbackJob], JobTransition | None],
    ) -> list[CallbackJob]:
        """Up to ``limit`` scheduled jobs matching ``condition``, earliest due first (rows
        another daemon holds are skipped), through ``decide``; the jobs it changed."""
        c = callback_jobs.c
        async with self._db.write(what) as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(callback_jobs)
                        .where(c.status == str(JobStatus.SCHEDULED))
                        .where(condition)
                        .order_by(c.next_attempt_at, c.id)
                        .limit(limit)
                        .with_for_update(skip_locked=True)
                    )
                )
                .mappings()
                .all()
            )
            changed: list[CallbackJob] = []
            for row in rows:
                job = _job(row)
                transition = decide(job)
                if transition is not None:
                    changed.append(await _apply(conn, job, transition, now))
            return changed

    # ------------------------------------------------------------------ admin / inbound

    async def cancel(self, job_id: int, *, reason: str, now: datetime) -> CallbackJob | None:
        """Cancel a job that is not finished; None when it does not exist or is finished."""
        async with self._db.write("cancel callback job") as conn:
            job = await _job_by_id(conn, job_id, lock=True)
            if job is None or job.status in TERMINAL_STATUSES:
                return None
            cancelled = JobTransition(JobStatus.CANCELLED, None, job.attempts_made, reason)
            return await _apply(conn, job, cancelled, now)

    async def mark_done(self, job_id: int, *, reason: str, now: datetime) -> CallbackJob | None:
        """Record a job as done by hand (a promise an agent kept by phone). A promise kept
        after its deadline stays ``overdue``: the violation is reported, the late keeping is
        added to its finish reason."""
        async with self._db.write("mark callback job done") as conn:
            job = await _job_by_id(conn, job_id, lock=True)
            if job is None or job.status in TERMINAL_STATUSES - {JobStatus.OVERDUE}:
                return None
            late = job.status is JobStatus.OVERDUE or (
                job.kind is JobKind.PROMISED
                and job.deadline_at is not None
                and now > job.deadline_at
            )
            if not late:
                done = JobTransition(JobStatus.DONE, None, job.attempts_made, reason)
                return await _apply(conn, job, done, now)
            if job.status is JobStatus.OVERDUE:
                result = await conn.execute(
                    sa.update(callback_jobs)
                    .where(callback_jobs.c.id == job.id)
                    .values(finish_reason=storable(f"{job.finish_reason}; kept late: {reason}"))
                    .returning(*callback_jobs.c)
                )
                return _job(result.mappings().one())
            overdue = JobTransition(
                JobStatus.OVERDUE,
                None,
                job.attempts_made,
                f"kept late, after the deadline: {reason}",
            )
            return await _apply(conn, job, overdue, now)

    async def cancel_pending(
        self,
        number: str,
        *,
        reason: str,
        now: datetime,
        should_cancel: Callable[[CallbackJob], bool],
    ) -> list[CallbackJob]:
        """Cancel the pending jobs of ``number`` that ``should_cancel`` picks."""
        c = callback_jobs.c
        async with self._db.write("cancel callbacks for a number") as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(callback_jobs)
                        .where(c.number == number)
                        .where(c.status.in_([str(s) for s in PENDING_STATUSES]))
                        .with_for_update()
                    )
                )
                .mappings()
                .all()
            )
            cancelled: list[CallbackJob] = []
            for row in rows:
                job = _job(row)
                if should_cancel(job):
                    transition = JobTransition(JobStatus.CANCELLED, None, job.attempts_made, reason)
                    cancelled.append(await _apply(conn, job, transition, now))
            return cancelled


# ---------------------------------------------------------------------- helpers


async def _in_flight(conn: AsyncConnection, now: datetime) -> int:
    c = callback_jobs.c
    query = (
        sa.select(sa.func.count())
        .select_from(callback_jobs)
        .where(c.status == str(JobStatus.DIALLING))
        .where(c.lease_expires_at >= now)
    )
    return int((await conn.execute(query)).scalar_one())


async def _attempts_of(conn: AsyncConnection, job_id: int) -> list[CallbackAttempt]:
    query = (
        sa.select(callback_attempts)
        .where(callback_attempts.c.job_id == job_id)
        .order_by(callback_attempts.c.attempt_no)
    )
    rows = (await conn.execute(query)).mappings().all()
    return [_attempt(row) for row in rows]


async def _job_by_id(
    conn: AsyncConnection, job_id: int, *, lock: bool = False
) -> CallbackJob | None:
    query = sa.select(callback_jobs).where(callback_jobs.c.id == job_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else _job(row)


async def _maybe_attempt_by_request(
    conn: AsyncConnection, request_id: str, *, lock: bool = False
) -> CallbackAttempt | None:
    query = sa.select(callback_attempts).where(callback_attempts.c.request_id == request_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else _attempt(row)


async def _attempt_by_request(
    conn: AsyncConnection, request_id: str, *, lock: bool = False
) -> CallbackAttempt:
    attempt = await _maybe_attempt_by_request(conn, request_id, lock=lock)
    if attempt is None:  # pragma: no cover - called only for rows read in the same transaction
        msg = f"callback attempt {request_id!r} vanished"
        raise RuntimeError(msg)
    return attempt


async def _close_attempt(
    conn: AsyncConnection, attempt: CallbackAttempt, result: AttemptResult, *, open_only: bool
) -> CallbackAttempt | None:
    """Write the attempt's outcome; the updated attempt, or None when ``open_only`` and it
    was already closed."""
    a = callback_attempts.c
    values: dict[str, Any] = {
        "outcome": str(result.outcome),
        "ended_at": result.at,
        "cause": result.cause,
        "cause_text": result.cause_text,
        "tech_cause": result.tech_cause,
    }
    if result.amd_result:
        values["amd_result"] = result.amd_result
        values["amd_cause"] = result.amd_cause
    if result.outcome in {AttemptOutcome.CONNECTED, AttemptOutcome.MACHINE} and (
        attempt.answered_at is None
    ):
        values["answered_at"] = result.at
    query = sa.update(callback_attempts).where(a.request_id == attempt.request_id)
    if open_only:
        query = query.where(a.outcome.in_([str(o) for o in OPEN_OUTCOMES]))
    updated = await conn.execute(
        query.values(fit_row(callback_attempts, values)).returning(*callback_attempts.c)
    )
    row = updated.mappings().first()
    return None if row is None else _attempt(row)


async def _closed(
    conn: AsyncConnection, attempt: CallbackAttempt, result: AttemptResult, *, open_only: bool
) -> CallbackAttempt:
    closed = await _close_attempt(conn, attempt, result, open_only=open_only)
    if closed is None:  # pragma: no cover - callers hold the job's row lock
        msg = f"callback attempt {attempt.request_id!r} was closed concurrently"
        raise RuntimeError(msg)
    return closed


async def _late_report(
    conn: AsyncConnection, attempt: CallbackAttempt, job: CallbackJob, result: AttemptResult
) -> Finished:
    """The report came after the attempt was given up on (``unknown``): keep it for the work
    order, and if it reached the customer, stop calling them."""
    attempt = await _closed(conn, attempt, result, open_only=False)
    if result.outcome is AttemptOutcome.CONNECTED and job.status is JobStatus.SCHEDULED:
        done = JobTransition(
            JobStatus.DONE,
            None,
            job.attempts_made,
            f"customer reached by attempt {attempt.attempt_no} (reported late)",
        )
        return Finished(attempt, await _apply(conn, job, done, result.at), applied=True)
    return Finished(attempt, job, applied=False)


async def _apply(
    conn: AsyncConnection, job: CallbackJob, transition: JobTransition, now: datetime
) -> CallbackJob:
    finished = transition.status in TERMINAL_STATUSES
    values = {
        "status": str(transition.status),
        "next_attempt_at": transition.next_attempt_at,
        "attempts_made": transition.attempts_made,
        "current_request_id": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": now if finished else None,
        "finish_reason": transition.reason if finished else "",
    }
    result = await conn.execute(
        sa.update(callback_jobs)
        .where(callback_jobs.c.id == job.id)
        .values(fit_row(callback_jobs, values))
        .returning(*callback_jobs.c)
    )
    return _job(result.mappings().one())


def _job(row: Any) -> CallbackJob:
    return CallbackJob(
        id=int(row["id"]),
        number=row["number"],
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        reason=row["reason"],
        created_at=row["created_at"],
        anchor_at=row["anchor_at"],
        window_ends_at=row["window_ends_at"],
        next_attempt_at=row["next_attempt_at"],
        attempts_made=int(row["attempts_made"]),
        attempt_seq=int(row["attempt_seq"]),
        last_attempt_at=row["last_attempt_at"],
        deadline_at=row["deadline_at"],
        trigger_call_id=row["trigger_call_id"],
        trigger_cause=row["trigger_cause"],
        target=row["target"],
        current_request_id=row["current_request_id"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        finished_at=row["finished_at"],
        finish_reason=row["finish_reason"],
        note=row["note"],
    )


def _attempt(row: Any) -> CallbackAttempt:
    return CallbackAttempt(
        job_id=int(row["job_id"]),
        attempt_no=int(row["attempt_no"]),
        request_id=row["request_id"],
        outcome=AttemptOutcome(row["outcome"]),
        dialled_at=row["dialled_at"],
        placed_by=row["placed_by"],
        answered_at=row["answered_at"],
        ended_at=row["ended_at"],
        cause=row["cause"],
        cause_text=row["cause_text"],
        tech_cause=row["tech_cause"],
        amd_result=row["amd_result"],
        amd_cause=row["amd_cause"],
    )


async def _insert_job(conn: AsyncConnection, new: NewJob) -> CallbackJob:
    values = {
        "number": new.number,
        "kind": str(new.kind),
        "status": str(JobStatus.SCHEDULED),
        "reason": new.reason,
        "trigger_call_id": new.trigger_call_id,
        "trigger_cause": new.trigger_cause,
        "target": new.target,
        "created_at": new.created_at,
        "anchor_at": new.anchor_at,
        "window_ends_at": new.window_ends_at,
        "deadline_at": new.deadline_at,
        "next_attempt_at": new.next_attempt_at,
        "note": new.note,
    }
    if new.next_attempt_at is None:
        values["status"] = str(
            JobStatus.OVERDUE if new.kind is JobKind.PROMISED else JobStatus.EXHAUSTED
        )
        values["finished_at"] = new.created_at
        values["finish_reason"] = "no attempt fits in the window"
    result = await conn.execute(
        sa.insert(callback_jobs).values(fit_row(callback_jobs, values)).returning(*callback_jobs.c)
    )
    return _job(result.mappings().one())

"""The callback scheduler (R7): claims due callback jobs, places the calls through a
``Dialer``, and applies the outcomes the PBX side reports.

Theory of operation
-------------------
Each cycle (``run_once``; ``run`` loops it every ``poll_interval_s`` or sooner when a job is
added):

1. (every ``sweep_interval_s``) finish scheduled jobs whose window (or promise deadline)
   passed undialled, and
2. recover jobs left ``dialling`` by a daemon whose lease expired (crashed, ``kill -9``):
   their open attempt becomes ``unknown`` and is **never redialled**; the job moves on to its
   next attempt by the rules (the unknown attempt counts: it may have rung the customer);
3. give up on this daemon's own attempts that got no outcome in time (ring time plus a
   grace period: ``unknown``; answered but no machine verdict: the configured ``notsure``);
4. renew the leases of this daemon's attempts in flight;
5. inside quiet hours, move due jobs to the end of the quiet period (they were planned
   outside it, but the daemon may have been down at their slot); otherwise claim due jobs
   up to the global concurrency cap. The claim records each attempt as
   ``dialling`` and commits **before** ``Dialer.place_callback`` is called, so a crash
   after dialling can only lose an outcome, never call the same attempt twice.

Outcomes come back asynchronously by request id (the PBX adapter uses it as the Originate's
channel id): ``on_originate_outcome`` (answered / busy / no_answer / rejected / failed) and
``on_machine_verdict`` (human / machine / notsure). Any daemon may apply an outcome for any
attempt; the store applies it once.

Every decision is logged (``callback.*`` events, with the reason and the cause behind it)
and recorded in the ``decisions`` table for the manager's report.

Invariants: every task is owned (a ``TaskGroup`` per dialling batch); every store call is
bounded by the store's own timeouts and every dialer call by ``dial_timeout_s``; time comes
only from the injected clock.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from pbx_agent.clock import Clock, to_datetime
from pbx_agent.errors import (
    PbxActionFailed,
    PbxActionTimeout,
    PbxAgentError,
    PbxConnectionLost,
    StoreUnavailable,
)
from pbx_agent.model.calls import Call
from pbx_agent.model.commands import CancelCallbacks, RequestCallback
from pbx_agent.model.hooks import HookSession, HookSpec
from pbx_agent.numbers import NormalizedNumber, Unusable, normalize
from pbx_agent.policies.callbacks import (
    TERMINAL_STATUSES,
    AttemptOutcome,
    CallbackAttempt,
    CallbackJob,
    CallbackRules,
    DropReason,
    JobKind,
    JobStatus,
    after_attempt,
    cancelled_when_served,
    cancels_on_inbound,
    expiry,
    is_quiet,
    new_drop_job_times,
    new_promise_times,
    outcome_for_originate,
    outcome_for_verdict,
    quiet_deferral,
)
from pbx_agent.store import AttemptResult, Decision, Finished, NewJob, Store

log = structlog.get_logger("pbx_agent.callbacks")

RULE = "R7"


# ---------------------------------------------------------------------- the dialer side


@dataclass(frozen=True, slots=True)
class CallbackDial:
    """One callback attempt to place."""

    request_id: str  # a UUID, unique per attempt; the adapter's Originate channel id
    job_id: int
    attempt_no: int
    number: str  # E.164
    ring_time_s: int  # ring this long before giving up (> 30 s, R7)
    target: str  # where an answered customer is connected (queue / context)
    detect_machine: bool  # run answering-machine detection (R6) before connecting
    kind: JobKind = JobKind.ABNORMAL_DROP


class Dialer(Protocol):
    """Places callback calls on the PBX. Returns once the PBX has accepted the request;
    the outcome is reported later through ``CallbackService.on_originate_outcome``."""

    async def place_callback(self, request: CallbackDial) -> None: ...

    async def abandon(self, request_id: str) -> None:
        """Hang up the attempt ``request_id`` if it still rings: its job was cancelled (the
        customer called in and reached an agent). Nothing when it is gone or unknown."""
        ...


class CallbackNotPlacedError(PbxAgentError):
    """Raised by a ``Dialer`` when it is certain nothing reached the PBX (not connected,
    refused locally). The attempt is recorded ``not_placed``, does not count, and the job
    is retried shortly. Any other failure counts: ``unknown`` when the Originate may have
    gone out (no answer in ``dial_timeout_s``, the link lost while sending; an outcome
    that still arrives is applied), ``failed`` otherwise."""


class NumberUnusableError(PbxAgentError):
    """The number given for a callback cannot be called (anonymous, withheld, unparsable)."""

    def __init__(self, unusable: Unusable) -> None:
        super().__init__(f"cannot call back {unusable.raw!r}: number is {unusable.reason}")
        self.unusable = unusable


# ---------------------------------------------------------------------- the service


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """How the scheduler runs (not rules: those are ``CallbackRules``)."""

    poll_interval_s: float = 1.0
    lease_s: float = 60.0  # renewed every third of it while an attempt is in flight
    claim_batch: int = 50
    dial_timeout_s: float = 10.0
    outcome_grace_s: float = 60.0  # after the ring time, wait this long for an outcome
    verdict_timeout_s: float = 30.0  # after an answer, wait this long for the AMD verdict
    store_retry_s: float = 5.0  # pause after the store failed
    # How often to look for expired windows and leases (both are minutes-scale events).
    sweep_interval_s: float = 5.0


@dataclass(slots=True)
class _InFlight:
    job_id: int
    attempt_no: int
    placed_at: datetime
    answered_at: datetime | None = None
    abandoned: bool = False  # hung up because its job was cancelled while it rang


@dataclass(frozen=True, slots=True)
class _Unsaved:
    """A drop's callback the store could not take when it happened: retried every cycle."""

    new: NewJob
    call_id: str | None
    cause: str


@dataclass(frozen=True, slots=True)
class _Uncancelled:
    """A cancellation (the customer is being served) the store could not take: retried
    every cycle, for the jobs that existed when it was asked for."""

    number: str  # E.164
    reason: str
    requested_only: bool
    at: datetime
    call_id: str | None


# How many unsaved drops are held in memory while the store is away (oldest kept).
_MAX_UNSAVED = 10_000
# How many attempts' unrecorded reports are held likewise.
_MAX_UNRECORDED = 10_000


def default_owner() -> str:
    """A name for this daemon instance, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class CallbackService:
    """Schedules, places and tracks callbacks. One per daemon; several daemons may share a
    PostgreSQL store."""

    def __init__(
        self,
        store: Store,
        dialer: Dialer,
        rules: CallbackRules,
        *,
        clock: Clock,
        default_region: str,
        owner: str | None = None,
        settings: SchedulerSettings | None = None,
        on_call: Callable[[str], bool] | None = None,
    ) -> None:
        # ``on_call(e164)``: the customer is on a live call with us right now (waiting in
        # the queue, talking to an agent): an attempt due then is not placed (it would ring
        # a busy line and use up one of the three), and is tried again a minute later.
        self._on_call = on_call
        self._store = store
        self._dialer = dialer
        self._rules = rules
        self._clock = clock
        self._region = default_region
        self.owner = owner or default_owner()
        self._settings = settings or SchedulerSettings()
        self._in_flight: dict[str, _InFlight] = {}
        self._unsaved: list[_Unsaved] = []
        # Reports the store could not take, per attempt in arrival order (an answer is an
        # ANSWERED result): recorded again every cycle, before any cycle gives up on them.
        self._unrecorded: dict[str, list[AttemptResult]] = {}
        self._uncancelled: list[_Uncancelled] = []
        # The held drop being written now, and the cancellations for its number meanwhile.
        self._saving: _Unsaved | None = None
        self._recancel: list[_Uncancelled] = []
        # ``run`` has returned: nothing held from now on would ever be retried.
        self._ended = False
        self._running = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_renewal: datetime | None = None
        self._last_sweep: datetime | None = None

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """Run cycles until ``stop()``. A store outage is logged and retried, never fatal."""
        settings = self._settings
        self._running = True
        try:
            await self._cycles(settings)
            await self._last_writes()
        finally:
            self._running = False
            self._ended = True
            self._report_lost()

    async def _last_writes(self) -> None:
        """At stop, one more try at what waits for the store (it may be back since the last
        cycle): a drop's callback, a cancellation, an attempt's report written now is not
        lost, nor dialled again after a restart."""
        now = self._now()
        steps: tuple[Callable[[], Awaitable[None]], ...] = (
            functools.partial(self._save_unsaved, now),
            self._cancel_uncancelled,
            self._record_unrecorded,
        )
        for step in steps:
            try:
                await step()
            except StoreUnavailable as exc:
                log.error("callback.store_unavailable", error=str(exc), when="stopping")
                return

    async def _cycles(self, settings: SchedulerSettings) -> None:
        while not self._stopping.is_set():
            pause = settings.poll_interval_s
            try:
                await self.run_once()
            except StoreUnavailable as exc:
                log.error("callback.store_unavailable", error=str(exc))
                pause = settings.store_retry_s
            except Exception as exc:
                # A bug in one cycle must not end the scheduling of every callback for the
                # rest of the daemon's life: logged with its traceback, the next cycle runs.
                log.exception("callback.cycle_failed", error=f"{type(exc).__name__}: {exc}")
                pause = settings.store_retry_s
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def stop(self) -> None:
        """Make ``run`` return after the cycle in progress; what the store never took is
        then logged as lost (``_report_lost``)."""
        self._stopping.set()
        self._wake.set()
        if not self._running and not self._ended:
            self._ended = True  # never run (or not yet): nothing held would be retried
            self._report_lost()

    def _report_lost(self) -> None:
        """What is held for a store that never took it, as the scheduler ends: each drop's
        callback (``callback.lost``), each cancellation (``callback.cancel_lost``: the
        customer may be called back although served) and each attempt's report
        (``callback.outcome_lost``: after a restart the attempt is recovered as
        ``unknown``). Nothing held later is retried: ``_keep_*`` log those at once."""
        why = "the store never took it before the daemon stopped"
        for item in self._unsaved:
            self._lost_drop(item, why)
        for held in self._uncancelled:
            self._lost_cancel(held, why)
        for request_id, results in self._unrecorded.items():
            for result in results:
                self._lost_outcome(request_id, result, why)
        self._unsaved.clear()
        self._uncancelled.clear()
        self._unrecorded.clear()

    @staticmethod
    def _lost_drop(item: _Unsaved, reason: str) -> None:
        log.error("callback.lost", number=item.new.number, call_id=item.call_id, reason=reason)

    @staticmethod
    def _lost_cancel(held: _Uncancelled, reason: str) -> None:
        log.error(
            "callback.cancel_lost",
            number=held.number,
            call_id=held.call_id,
            cancel_reason=held.reason,
            reason=reason,
            note="the customer's pending callback stays; check it (callbacks list)",
        )

    @staticmethod
    def _lost_outcome(request_id: str, result: AttemptResult, reason: str) -> None:
        log.error(
            "callback.outcome_lost",
            request_id=request_id,
            outcome=str(result.outcome),
            reason=reason,
        )

    @property
    def in_flight(self) -> int:
        """Attempts this daemon placed that have no final outcome yet."""
        return len(self._in_flight)

    async def run_once(self) -> int:
        """One scheduling cycle (see the module docstring); returns how many calls it placed."""
        now = self._now()
        await self._save_unsaved(now)
        await self._cancel_uncancelled()
        await self._record_unrecorded()
        sweep_every = timedelta(seconds=self._settings.sweep_interval_s)
        if self._last_sweep is None or now - self._last_sweep >= sweep_every:
            self._last_sweep = now
            await self._expire(now)
            await self._recover(now)
        await self._give_up_stale(now)
        await self._abandon_cancelled()
        await self._renew(now)
        return await self._claim_and_dial(now)

    # ------------------------------------------------------------------ scheduling

    async def schedule_after_drop(
        self,
        number: str,
        *,
        reason: str,
        call_id: str | None,
        cause: str = "",
        kind: JobKind = JobKind.ABNORMAL_DROP,
        dropped_at: float | None = None,
        queue: str | None = None,
    ) -> CallbackJob | None:
        """Create a callback job for a call that ended abnormally (or that the customer
        asked to be called back on). None when callbacks are disabled, the number cannot be
        called or a callback to it is already pending; the log says which. ``queue``: the
        dropped call's queue, where the customer goes back to unless the rules name a target."""
        now = self._now()
        trigger_at = now if dropped_at is None else to_datetime(dropped_at)
        if not self._rules.enabled:
            log.info("callback.disabled", call_id=call_id, reason=reason)
            return None
        if kind is JobKind.ONE_WAY_AUDIO and not self._rules.drop.one_way_audio:
            log.info(
                "callback.not_needed",
                call_id=call_id,
                reason=f"{reason}: one-way audio does not call for a callback here",
            )
            return None
        customer = await self._usable(number, call_id=call_id, reason=reason, now=now)
        if customer is None:
            return None
        anchor, window_ends_at, first = new_drop_job_times(trigger_at, now, self._rules)
        return await self._create_drop_job(
            NewJob(
                number=customer.e164,
                kind=kind,
                reason=reason,
                created_at=now,
                anchor_at=anchor,
                window_ends_at=window_ends_at,
                next_attempt_at=first,
                trigger_call_id=call_id,
                trigger_cause=cause,
                target=self._rules.target or queue,
            ),
            call_id=call_id,
            cause=cause,
            now=now,
        )

    async def _create_drop_job(
        self, new: NewJob, *, call_id: str | None, cause: str, now: datetime
    ) -> CallbackJob | None:
        """The job, or None when the store is away: then the request is kept and saved by
        a later cycle (``_save_unsaved``), so a store outage at the moment of the drop does
        not lose the customer's callback."""
        item = _Unsaved(new, call_id, cause)
        try:
            return await self._save(item, now)
        except StoreUnavailable as exc:
            self._keep_unsaved(item, error=str(exc))
            return None
        except asyncio.CancelledError:
            # The daemon's shutdown ran out of time while the store was taking it.
            self._lost_drop(item, "the daemon stopped while the store was taking it")
            raise

    async def _save(self, item: _Unsaved, now: datetime) -> CallbackJob:
        """Write the drop's job unless one is pending for the number; log which."""
        job, created = await self._store.callbacks.create_unless_pending(item.new)
        if created:
            await self._log_created(job, call_id=item.call_id, cause=item.cause, now=now)
        else:
            log.info(
                "callback.already_pending",
                call_id=item.call_id,
                number=item.new.number,
                job_id=job.id,
                reason=item.new.reason,
            )
        return job

    def _keep_unsaved(self, item: _Unsaved, *, error: str) -> None:
        if self._ended:
            self._lost_drop(item, f"the daemon is stopping and the store did not take it: {error}")
            return
        if len(self._unsaved) >= _MAX_UNSAVED:
            log.error(
                "callback.lost",
                number=item.new.number,
                call_id=item.call_id,
                reason=f"the store is away and {_MAX_UNSAVED} callbacks already wait for it",
            )
            return
        self._unsaved.append(item)
        log.error(
            "callback.not_saved_yet",
            number=item.new.number,
            call_id=item.call_id,
            error=error,
            waiting=len(self._unsaved),
            retry="every scheduler cycle until the store takes it or its window ends",
        )

    async def _save_unsaved(self, now: datetime) -> None:
        """Drops' callbacks the store could not take, oldest first; a store still away
        raises ``StoreUnavailable`` and the rest wait for the next cycle."""
        while self._unsaved:
            item = self._unsaved[0]
            if now > item.new.window_ends_at:
                self._unsaved.pop(0)
                log.error(
                    "callback.lost",
                    number=item.new.number,
                    call_id=item.call_id,
                    reason="the store was away for the whole callback window",
                )
                continue
            self._saving, self._recancel = item, []
            try:
                await self._save(item, now)
            finally:
                self._saving = None
                recancel, self._recancel = self._recancel, []
            # By identity: a cancellation meanwhile may have rebuilt the list.
            self._unsaved = [waiting for waiting in self._unsaved if waiting is not item]
            for held in recancel:
                # Cancelled while the store was taking it: the job just saved goes too.
                await self._cancel_or_keep(held)

    async def register_promise(
        self,
        number: str,
        deadline: float,
        note: str,
        *,
        call_id: str | None = None,
        agent: str | None = None,
        queue: str | None = None,
    ) -> CallbackJob:
        """Register "we will contact you by ``deadline``" (epoch seconds). The scheduler
        dials it from ``promised_dial_lead`` before the deadline; a promise not kept by then
        is reported overdue. Raises ``NumberUnusableError`` for a number that cannot be called."""
        now = self._now()
        normalized = normalize(number, self._region)
        if isinstance(normalized, Unusable):
            log.warning(
                "callback.promise_refused",
                call_id=call_id,
                number=normalized.raw,
                reason=str(normalized.reason),
            )
            raise NumberUnusableError(normalized)
        due = to_datetime(deadline)
        anchor, window_ends_at, first = new_promise_times(due, now, self._rules)
        job = await self._store.callbacks.create(
            NewJob(
                number=normalized.e164,
                kind=JobKind.PROMISED,
                reason=f"promised callback by {due:%Y-%m-%d %H:%M} UTC",
                created_at=now,
                anchor_at=anchor,
                window_ends_at=window_ends_at,
                next_attempt_at=first,
                deadline_at=due,
                trigger_call_id=call_id,
                target=self._rules.target or queue,
                note=note,
            )
        )
        await self._log_created(job, call_id=call_id, cause="", now=now, agent=agent)
        return job

    async def cancel_for_inbound(
        self,
        number: str,
        *,
        call_id: str | None = None,
        reason: str = "the customer called in",
        requested_only: bool = False,
    ) -> list[CallbackJob]:
        """The customer is being served (called in and reached an agent, or the agent came
        back to them on hold): cancel their pending callbacks (not promises)."""
        normalized = normalize(number, self._region)
        if isinstance(normalized, Unusable):
            return []
        now = self._now()
        held = _Uncancelled(normalized.e164, reason, requested_only, now, call_id)
        self._cancel_unsaved(held)
        try:
            return await self._cancel(held, now)
        except StoreUnavailable as exc:
            self._keep_uncancelled(held, error=str(exc))
            return []
        except asyncio.CancelledError:
            self._lost_cancel(held, "the daemon stopped while the store was taking it")
            raise

    def _cancel_unsaved(self, held: _Uncancelled) -> None:
        """Drops' callbacks for the number still waiting for the store are cancelled where
        they wait (saved later, they would ring a customer served meanwhile)."""
        keep: list[_Unsaved] = []
        saving = self._saving
        if saving is not None and saving.new.number == held.number:
            self._recancel.append(held)  # being written now: cancelled once it is
        for item in self._unsaved:
            cancels = cancelled_when_served(
                item.new.kind, requested_only=held.requested_only, rules=self._rules
            )
            if item.new.number == held.number and cancels:
                log.info(
                    "callback.cancelled",
                    job_id=None,
                    number=held.number,
                    call_id=held.call_id,
                    reason=held.reason,
                    note="it was still waiting for the store",
                )
            else:
                keep.append(item)
        self._unsaved = keep

    async def _cancel(self, held: _Uncancelled, now: datetime) -> list[CallbackJob]:
        """Cancel the number's pending jobs created by ``held.at`` (a drop after it is a
        new one); each logged and decided."""
        rules = self._rules

        def should_cancel(job: CallbackJob) -> bool:
            if job.created_at > held.at:
                return False
            if held.requested_only:
                return cancelled_when_served(job.kind, requested_only=True, rules=rules)
            return cancels_on_inbound(job, rules)

        cancelled = await self._store.callbacks.cancel_pending(
            held.number, reason=held.reason, now=now, should_cancel=should_cancel
        )
        for job in cancelled:
            log.info(
                "callback.cancelled",
                job_id=job.id,
                number=job.number,
                call_id=held.call_id,
                reason=job.finish_reason,
            )
            await self._decide(
                now, "callback_cancelled", job.finish_reason, job, call_id=held.call_id
            )
            await self._abandon_ringing(job)
        return cancelled

    def _keep_uncancelled(self, held: _Uncancelled, *, error: str) -> None:
        if self._ended or len(self._uncancelled) >= _MAX_UNSAVED:
            self._lost_cancel(held, f"the store did not take it and it cannot wait: {error}")
            return
        self._uncancelled.append(held)
        log.error(
            "callback.cancel_not_saved_yet",
            number=held.number,
            call_id=held.call_id,
            error=error,
            waiting=len(self._uncancelled),
            retry="every scheduler cycle until the store takes it",
        )

    async def _cancel_uncancelled(self) -> None:
        """Cancellations the store could not take, oldest first; ``StoreUnavailable`` while
        it is away."""
        while self._uncancelled:
            held = self._uncancelled[0]
            await self._cancel(held, self._now())
            self._uncancelled = [other for other in self._uncancelled if other is not held]

    async def _cancel_or_keep(self, held: _Uncancelled) -> None:
        try:
            await self._cancel(held, self._now())
        except StoreUnavailable as exc:
            self._keep_uncancelled(held, error=str(exc))

    async def _abandon_ringing(self, job: CallbackJob) -> None:
        """A cancelled job's attempt still ringing the customer (who is on the line with an
        agent now) is hung up; one answered is left to its person."""
        try:
            attempts = await self._store.callbacks.attempts(job.id)
        except PbxAgentError as exc:  # the cancellation stands; the attempt rings out
            log.warning("callback.abandon_failed", job_id=job.id, error=repr(exc))
            return
        for attempt in attempts:
            if attempt.outcome is AttemptOutcome.DIALLING:
                await self._abandon(job.id, attempt.request_id)

    async def cancel(self, job_id: int, reason: str) -> CallbackJob | None:
        """An admin cancelled a job; None when it does not exist or is already finished."""
        now = self._now()
        job = await self._store.callbacks.cancel(job_id, reason=reason, now=now)
        if job is not None:
            log.info("callback.cancelled", job_id=job.id, number=job.number, reason=reason)
            await self._decide(now, "callback_cancelled", reason, job)
        return job

    async def mark_done(self, job_id: int, note: str) -> CallbackJob | None:
        """An agent kept the promise (or reached the customer) by hand."""
        now = self._now()
        job = await self._store.callbacks.mark_done(
            job_id, reason=f"done by hand: {note}" if note else "done by hand", now=now
        )
        if job is not None and job.status is JobStatus.OVERDUE:
            # Kept after its deadline: the violation stands (and was or is now reported).
            log.warning(
                "callback.kept_late",
                job_id=job.id,
                number=job.number,
                reason=job.finish_reason,
                deadline_at=_iso(job.deadline_at),
            )
            await self._decide(now, "promise_kept_late", job.finish_reason, job)
        elif job is not None:
            await self._log_finished(job, now)
        return job

    async def overdue_promises(self) -> list[CallbackJob]:
        """Promises not kept by their deadline (a violation to report)."""
        return await self._store.callbacks.overdue_promises(self._now())

    # ------------------------------------------------------------------ engine commands

    async def on_request_callback(self, command: RequestCallback, call: Call | None) -> None:
        """Service handler for the engine's ``RequestCallback`` command."""
        queue = call.queue if call is not None else None
        if command.promised_deadline is not None:
            try:
                await self.register_promise(
                    command.number,
                    command.promised_deadline,
                    command.reason,
                    call_id=command.trigger_call,
                    agent=call.agent_id if call is not None else None,
                    queue=queue,
                )
            except NumberUnusableError:
                return  # logged by register_promise
            return
        await self.schedule_after_drop(
            command.number,
            reason=command.reason,
            call_id=command.trigger_call,
            cause=command.cause,
            kind=_kind_for_reason(command.reason),
            queue=queue,
        )

    async def on_cancel_callbacks(self, command: CancelCallbacks, call: Call | None) -> None:
        """Service handler for the engine's ``CancelCallbacks`` command."""
        del call
        await self.cancel_for_inbound(
            command.number,
            call_id=command.trigger_call,
            reason=command.reason,
            requested_only=command.requested_only,
        )

    # ------------------------------------------------------------------ outcomes

    async def on_originate_outcome(
        self,
        request_id: str,
        outcome: str,
        *,
        cause: int | None = None,
        cause_text: str = "",
        tech_cause: str = "",
    ) -> Finished | None:
        """What became of a placed attempt: ``answered``, ``busy``, ``no_answer``,
        ``rejected`` or ``failed`` (``OriginateOutcome.outcome``). An answer waits for the
        machine verdict when detection is on."""
        now = self._now()
        mapped = outcome_for_originate(outcome, self._rules)
        result = AttemptResult(
            mapped, now, cause=cause, cause_text=cause_text, tech_cause=tech_cause
        )
        return await self._report(request_id, result)

    async def on_machine_verdict(
        self, request_id: str, verdict: str, *, cause: str = ""
    ) -> Finished | None:
        """The answering-machine verdict for an answered attempt (``human``, ``machine``,
        ``notsure``). A machine counts like no answer; ``notsure`` follows the config."""
        now = self._now()
        mapped = outcome_for_verdict(verdict, self._rules)
        result = AttemptResult(mapped, now, amd_result=verdict, amd_cause=cause)
        return await self._report(request_id, result)

    async def _report(self, request_id: str, result: AttemptResult) -> Finished | None:
        """Record a report on an attempt; when the store is away (or an earlier report of the
        attempt still waits for it) keep it, in order, for the next cycles. Dropped, the
        scheduler would give the attempt up as ``unknown`` and call a reached customer again."""
        if request_id in self._unrecorded:
            error = "an earlier report of this attempt is not recorded yet"
        else:
            try:
                return await self._record(request_id, result)
            except StoreUnavailable as exc:
                error = str(exc)
        self._keep_unrecorded(request_id, result, error=error)
        return None

    async def _record(self, request_id: str, result: AttemptResult) -> Finished | None:
        if result.outcome is not AttemptOutcome.ANSWERED:
            return await self._finish(request_id, result)
        if await self._store.callbacks.record_answer(request_id, result.at):
            tracked = self._in_flight.get(request_id)
            if tracked is not None:
                tracked.answered_at = result.at
            log.info("callback.answered", request_id=request_id)
        return None

    def _keep_unrecorded(self, request_id: str, result: AttemptResult, *, error: str) -> None:
        if self._ended:
            self._lost_outcome(
                request_id, result, f"the daemon is stopping and the store did not take it: {error}"
            )
            return
        if request_id not in self._unrecorded and len(self._unrecorded) >= _MAX_UNRECORDED:
            log.error(
                "callback.outcome_lost",
                request_id=request_id,
                outcome=str(result.outcome),
                reason=f"the store is away and {_MAX_UNRECORDED} attempts' reports already wait",
            )
            return
        self._unrecorded.setdefault(request_id, []).append(result)
        log.error(
            "callback.outcome_not_recorded",
            request_id=request_id,
            outcome=str(result.outcome),
            error=error,
            retry="every scheduler cycle",
        )

    # ------------------------------------------------------------------ the cycle

    async def _expire(self, now: datetime) -> None:
        expired = await self._store.callbacks.expire_scheduled(
            now=now, limit=self._settings.claim_batch, decide=lambda job: expiry(job, now)
        )
        for job in expired:
            await self._log_finished(job, now)

    async def _recover(self, now: datetime) -> None:
        rules = self._rules
        recovered = await self._store.callbacks.recover_expired(
            now=now,
            limit=self._settings.claim_batch,
            decide=lambda job, outcome: after_attempt(job, outcome, now, rules),
            # Answered, no verdict: as the live daemon's verdict timeout (_give_up_stale).
            answered_as=outcome_for_verdict("notsure", rules),
        )
        for job, attempt in recovered:
            self._in_flight.pop(attempt.request_id, None)
            log.warning(
                "callback.attempt_recovered",
                job_id=job.id,
                attempt_no=attempt.attempt_no,
                request_id=attempt.request_id,
                placed_by=attempt.placed_by,
                outcome=str(attempt.outcome),
                reason="its daemon's lease expired with no outcome; not redialled",
                status=str(job.status),
                next_attempt_at=_iso(job.next_attempt_at),
            )
            await self._log_finished(job, now)

    async def _give_up_stale(self, now: datetime) -> None:
        settings = self._settings
        ring = timedelta(seconds=self._rules.ring_time_s + settings.outcome_grace_s)
        verdict_wait = timedelta(seconds=settings.verdict_timeout_s)
        for request_id, tracked in list(self._in_flight.items()):
            if request_id in self._unrecorded:
                continue  # a report on it came in meanwhile and waits for the store
            if tracked.answered_at is not None:
                if now - tracked.answered_at > verdict_wait:
                    log.warning("callback.verdict_timeout", request_id=request_id)
                    mapped = outcome_for_verdict("notsure", self._rules)
                    await self._finish(request_id, AttemptResult(mapped, now, amd_result="timeout"))
            elif now - tracked.placed_at > ring:
                await self._finish(
                    request_id,
                    AttemptResult(
                        AttemptOutcome.UNKNOWN,
                        now,
                        cause_text=f"no outcome reported within {int(ring.total_seconds())} s",
                    ),
                )

    async def _abandon_cancelled(self) -> None:
        """Attempts of ours still ringing whose job was cancelled meanwhile, by anyone (an
        admin's `pbx-agent callbacks cancel` runs in another process): hung up, as an
        inbound call's cancellation hangs them up at once."""
        ringing = {
            tracked.job_id: request_id
            for request_id, tracked in self._in_flight.items()
            if tracked.answered_at is None and not tracked.abandoned
        }
        if not ringing:
            return
        statuses = await self._store.callbacks.statuses(list(ringing))
        for job_id, request_id in ringing.items():
            if statuses.get(job_id) is JobStatus.CANCELLED:
                await self._abandon(job_id, request_id)

    async def _abandon(self, job_id: int, request_id: str) -> None:
        tracked = self._in_flight.get(request_id)
        if tracked is not None:
            tracked.abandoned = True
        log.info(
            "callback.attempt_abandoned",
            job_id=job_id,
            request_id=request_id,
            reason="its job was cancelled while it rang",
        )
        try:
            await self._dialer.abandon(request_id)
        except PbxAgentError as exc:  # the cancellation stands; the attempt rings out
            log.warning("callback.abandon_failed", job_id=job_id, error=repr(exc))

    async def _renew(self, now: datetime) -> None:
        every = timedelta(seconds=self._settings.lease_s / 3)
        if self._last_renewal is not None and now - self._last_renewal < every:
            return
        self._last_renewal = now
        job_ids = {tracked.job_id: request for request, tracked in self._in_flight.items()}
        if not job_ids:
            return
        held = await self._store.callbacks.renew_leases(
            owner=self.owner, job_ids=list(job_ids), now=now, lease=self._lease
        )
        for job_id, request_id in job_ids.items():
            if job_id not in held:
                # Taken over (our lease had expired) or cancelled: an outcome that still
                # arrives is recorded on the attempt, but the job is no longer ours.
                self._in_flight.pop(request_id, None)

    async def _defer_quiet(self, now: datetime) -> None:
        rules = self._rules
        deferred = await self._store.callbacks.reschedule_due(
            now=now,
            limit=self._settings.claim_batch,
            decide=lambda job: quiet_deferral(job, now, rules),
        )
        for job in deferred:
            if job.status in TERMINAL_STATUSES:
                await self._log_finished(job, now)
                continue
            log.info(
                "callback.deferred_quiet_hours",
                job_id=job.id,
                number=job.number,
                kind=str(job.kind),
                attempts_made=job.attempts_made,
                next_attempt_at=_iso(job.next_attempt_at),
                window_ends_at=_iso(job.window_ends_at),
            )
            await self._decide(now, "callback_deferred", "due inside quiet hours", job)

    async def _claim_and_dial(self, now: datetime) -> int:
        if is_quiet(now, self._rules):
            # Jobs are planned outside quiet hours, but one can still come due inside
            # them (the daemon or the store was down at its slot): it waits, never rings.
            await self._defer_quiet(now)
            return 0
        claimed = await self._store.callbacks.claim_due(
            owner=self.owner,
            now=now,
            lease=self._lease,
            limit=self._settings.claim_batch,
            max_in_flight=self._rules.max_concurrent,
            request_id_for=_request_id,
        )
        if not claimed:
            return 0
        for job, attempt in claimed:
            self._in_flight[attempt.request_id] = _InFlight(job.id, attempt.attempt_no, now)
            log.info(
                "callback.dialling",
                job_id=job.id,
                attempt_no=attempt.attempt_no,
                request_id=attempt.request_id,
                number=job.number,
                kind=str(job.kind),
            )
        async with asyncio.TaskGroup() as group:
            for job, attempt in claimed:
                group.create_task(self._place(job, attempt), name=f"callback:{attempt.request_id}")
        return len(claimed)

    def _check_not_on_call(self, number: str) -> None:
        if self._on_call is not None and self._on_call(number):
            msg = "not placed: the customer is on a call with us now"
            raise CallbackNotPlacedError(msg)

    async def _place(self, job: CallbackJob, attempt: CallbackAttempt) -> None:
        request = CallbackDial(
            request_id=attempt.request_id,
            job_id=job.id,
            attempt_no=attempt.attempt_no,
            number=job.number,
            ring_time_s=self._rules.ring_time_s,
            target=job.target or self._rules.target or "",
            detect_machine=self._rules.detect_machine,
            kind=job.kind,
        )
        try:
            self._check_not_on_call(job.number)
            async with asyncio.timeout(self._settings.dial_timeout_s):
                await self._dialer.place_callback(request)
        except CallbackNotPlacedError as exc:
            result = AttemptResult(AttemptOutcome.NOT_PLACED, self._now(), cause_text=str(exc))
        except PbxActionFailed as exc:
            # The switch answered the Originate with an error: nothing rang.
            log.error(
                "callback.refused",
                request_id=request.request_id,
                job_id=job.id,
                number=job.number,
                error=str(exc),
                retry_after_s=self._rules.refused_retry.total_seconds(),
            )
            result = AttemptResult(AttemptOutcome.REFUSED, self._now(), cause_text=str(exc))
        except (TimeoutError, PbxConnectionLost, PbxActionTimeout) as exc:
            # The Originate may have reached the switch and may ring the customer: the
            # attempt counts, and an outcome that still arrives is applied (a late report
            # on an UNKNOWN attempt), so a customer who answers is not called again.
            why = (
                f"dialer gave no answer within {self._settings.dial_timeout_s} s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            result = AttemptResult(AttemptOutcome.UNKNOWN, self._now(), cause_text=why)
        # One attempt's dialer failure must not stop the other attempts of the batch; it is
        # recorded on the attempt and logged with its traceback.
        except Exception as exc:
            log.exception("callback.dialer_error", request_id=request.request_id)
            result = AttemptResult(
                AttemptOutcome.FAILED, self._now(), cause_text=f"{type(exc).__name__}: {exc}"
            )
        else:
            return
        # Inside the batch's TaskGroup: a StoreUnavailable raised here would end the cycle's
        # other attempts mid-Originate and, as an ExceptionGroup, the scheduler itself;
        # ``_report`` keeps the outcome for a later cycle instead.
        await self._report(request.request_id, result)

    async def _record_unrecorded(self) -> None:
        """Reports the store could not take, each attempt's in arrival order (an answer
        before its verdict); ``StoreUnavailable`` while it is away."""
        for request_id, results in list(self._unrecorded.items()):
            while results:
                await self._record(request_id, results[0])
                results.pop(0)
            del self._unrecorded[request_id]

    async def _finish(self, request_id: str, result: AttemptResult) -> Finished | None:
        rules = self._rules
        now = result.at
        finished = await self._store.callbacks.finish_attempt(
            request_id,
            result,
            lambda job, outcome: after_attempt(job, outcome, now, rules),
        )
        self._in_flight.pop(request_id, None)
        if finished is None:
            log.info("callback.unknown_request", request_id=request_id, outcome=str(result.outcome))
            return None
        job, attempt = finished.job, finished.attempt
        log.info(
            "callback.attempt_ended",
            job_id=job.id,
            attempt_no=attempt.attempt_no,
            request_id=request_id,
            outcome=str(result.outcome),
            cause=result.cause,
            cause_text=result.cause_text,
            tech_cause=result.tech_cause,
            amd_result=result.amd_result,
            applied=finished.applied,
            status=str(job.status),
            next_attempt_at=_iso(job.next_attempt_at),
        )
        if finished.applied:
            await self._log_finished(job, now)
        return finished

    # ------------------------------------------------------------------ helpers

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.lease_s)

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    def now_epoch(self) -> float:
        """The service's clock (epoch seconds)."""
        return self._clock.now()

    async def _usable(
        self, number: str, *, call_id: str | None, reason: str, now: datetime
    ) -> NormalizedNumber | None:
        normalized = normalize(number, self._region)
        if isinstance(normalized, NormalizedNumber):
            return normalized
        why = f"number {normalized.reason}: no callback possible ({reason})"
        log.warning(
            "callback.number_unusable",
            call_id=call_id,
            number=normalized.raw,
            number_reason=str(normalized.reason),
            reason=reason,
        )
        await self._store.decisions.record(
            Decision(
                at=now,
                rule=RULE,
                action="no_callback",
                reason=why,
                call_id=call_id,
                number=normalized.raw,
                details={"number_reason": str(normalized.reason)},
            )
        )
        return None

    async def _log_created(
        self,
        job: CallbackJob,
        *,
        call_id: str | None,
        cause: str,
        now: datetime,
        agent: str | None = None,
    ) -> None:
        event = (
            "callback.promise_registered"
            if job.kind is JobKind.PROMISED
            else ("callback.scheduled")
        )
        log.info(
            event,
            job_id=job.id,
            number=job.number,
            kind=str(job.kind),
            call_id=call_id,
            reason=job.reason,
            cause=cause,
            status=str(job.status),
            first_attempt_at=_iso(job.next_attempt_at),
            window_ends_at=_iso(job.window_ends_at),
        )
        action = "promise_registered" if job.kind is JobKind.PROMISED else "callback_scheduled"
        try:
            await self._decide(now, action, job.reason, job, call_id=call_id, agent=agent)
            if job.status in TERMINAL_STATUSES:
                await self._log_finished(job, now)
        except StoreUnavailable as exc:
            # The job is committed; only its report row is missing. Raising would make the
            # caller take the job for unsaved and create it again (a second call).
            log.error(
                "callback.decision_not_recorded",
                job_id=job.id,
                number=job.number,
                action=action,
                error=str(exc),
            )
        self._wake.set()

    async def _log_finished(self, job: CallbackJob, now: datetime) -> None:
        if job.status not in TERMINAL_STATUSES:
            return
        action = {
            JobStatus.DONE: "callback_done",
            JobStatus.EXHAUSTED: "callback_exhausted",
            JobStatus.OVERDUE: "promise_overdue",
            JobStatus.CANCELLED: "callback_cancelled",
        }[job.status]
        level = log.warning if job.status is JobStatus.OVERDUE else log.info
        level(
            f"callback.{job.status}",
            job_id=job.id,
            number=job.number,
            kind=str(job.kind),
            attempts_made=job.attempts_made,
            reason=job.finish_reason,
            deadline_at=_iso(job.deadline_at),
        )
        await self._decide(now, action, job.finish_reason, job)

    async def _decide(
        self,
        now: datetime,
        action: str,
        reason: str,
        job: CallbackJob,
        *,
        call_id: str | None = None,
        agent: str | None = None,
    ) -> None:
        details: dict[str, Any] = {
            "job_id": job.id,
            "kind": str(job.kind),
            "status": str(job.status),
            "attempts_made": job.attempts_made,
        }
        if job.deadline_at is not None:
            details["deadline_at"] = job.deadline_at.isoformat()
        if job.next_attempt_at is not None:
            details["next_attempt_at"] = job.next_attempt_at.isoformat()
        await self._store.decisions.record(
            Decision(
                at=now,
                rule=RULE,
                action=action,
                reason=reason,
                call_id=call_id or job.trigger_call_id,
                number=job.number,
                agent=agent,
                details=details,
            )
        )


def _request_id(job_id: int, attempt_no: int) -> str:
    """A fresh UUID per attempt: unique even if a site recreates its database (job ids
    restart), and usable as is where the PBX wants a UUID (Asterisk ``ChannelId`` and
    ``AudioSocket()``, FreeSWITCH ``origination_uuid``)."""
    del job_id, attempt_no  # the attempt is found by this id; it need not encode them
    return str(uuid.uuid4())


def _kind_for_reason(reason: str) -> JobKind:
    """The ``RequestCallback`` command says why in ``reason``: the drop classifier's reasons
    (``DropVerdict.describe()`` starts with the ``DropReason``) are drops, one-way audio is
    its own kind, anything else is the customer's request (the hold callback offer)."""
    word = reason.split(" ", 1)[0]
    if word == DropReason.ONE_WAY_AUDIO:
        return JobKind.ONE_WAY_AUDIO
    if word in {DropReason.CALLER_LEG_FAILED, DropReason.AGENT_DEVICE_DROPPED}:
        return JobKind.ABNORMAL_DROP
    return JobKind.REQUESTED


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


# ---------------------------------------------------------------------- dialplan hook

PROMISE_HOOK = "callback_promise"
PROMISE_RESULT_VARIABLE = "PBXAGENT_PROMISE"


def promise_hook(
    service: CallbackService, *, default_within_h: float, deadline_s: float = 2.0
) -> HookSpec:
    """The ``callback_promise`` dialplan hook: registers a promised callback for the
    calling customer (or ``number=``), due ``within_h=`` hours from now (default: the
    configured ``promised_default_deadline_h``), with ``note=``::

        same => n,AGI(agi://127.0.0.1:4573/callback_promise?within_h=72&note=tariff)

    Sets ``PBXAGENT_PROMISE`` to the job id, ``refused`` (the number cannot be called back)
    or ``unavailable`` (the daemon could not register it in time: the dialplan goes on)."""

    async def handle(session: HookSession) -> None:
        number = session.params.get("number") or session.caller_number
        try:
            within_h = float(session.params.get("within_h", default_within_h))
        except ValueError:
            within_h = default_within_h
        if not 0 < within_h <= _MAX_PROMISE_H:
            within_h = default_within_h
        deadline = service.now_epoch() + within_h * 3600
        try:
            job = await service.register_promise(
                number,
                deadline,
                session.params.get("note", ""),
                call_id=str(session.call),
            )
        except NumberUnusableError:
            await session.set_variable(PROMISE_RESULT_VARIABLE, "refused")
            return
        await session.set_variable(PROMISE_RESULT_VARIABLE, str(job.id))

    async def unavailable(session: HookSession) -> None:
        await session.set_variable(PROMISE_RESULT_VARIABLE, "unavailable")

    return HookSpec(
        name=PROMISE_HOOK, handler=handle, deadline_s=deadline_s, on_timeout=unavailable
    )


_MAX_PROMISE_H = 30 * 24

"""R7 scheduling rules and job transitions, with explicit times (no event loop)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from pbx_agent.config import load_config
from pbx_agent.errors import ConfigError
from pbx_agent.policies.callbacks import (
    AttemptOutcome,
    CallbackJob,
    CallbackRules,
    JobKind,
    JobStatus,
    JobTransition,
    QuietHours,
    after_attempt,
    cancelled_when_served,
    cancels_on_inbound,
    expiry,
    is_overdue,
    is_quiet,
    new_drop_job_times,
    new_promise_times,
    next_allowed,
    outcome_for_originate,
    outcome_for_verdict,
    plan_attempt,
    quiet_deferral,
)

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
RULES = CallbackRules(timezone=MOSCOW)


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)  # type: ignore[misc]


def job_after_drop(
    dropped: datetime, rules: CallbackRules = RULES, **changes: object
) -> CallbackJob:
    anchor, window_ends_at, first = new_drop_job_times(dropped, dropped, rules)
    job = CallbackJob(
        id=1,
        number="+79161234567",
        kind=JobKind.ABNORMAL_DROP,
        status=JobStatus.DIALLING,
        reason="caller_leg_failed",
        created_at=dropped,
        anchor_at=anchor,
        window_ends_at=window_ends_at,
        next_attempt_at=first,
    )
    return replace(job, **changes)  # type: ignore[arg-type]


NOON = local(MOSCOW, 2026, 6, 10, 12, 0, 0)


def test_first_attempt_is_due_thirty_seconds_after_the_drop() -> None:
    """Default first delay: the customer is called back at once (30 s to clear the line)."""
    _, window_ends_at, first = new_drop_job_times(NOON, NOON, RULES)
    assert first == NOON + timedelta(seconds=30)
    assert window_ends_at == NOON + timedelta(hours=48)


def test_attempt_falling_in_quiet_hours_moves_to_their_end() -> None:
    """A drop at 20:59:50 Moscow time: the 21:00:20 attempt moves to 09:00 next morning."""
    dropped = local(MOSCOW, 2026, 6, 10, 20, 59, 50)
    _, _, first = new_drop_job_times(dropped, dropped, RULES)
    assert first == local(MOSCOW, 2026, 6, 11, 9, 0, 0)


def test_attempt_after_midnight_in_quiet_hours_moves_to_the_same_morning() -> None:
    """03:00 local is quiet; the next allowed time is 09:00 that day, not the next."""
    at = local(MOSCOW, 2026, 6, 11, 3, 0, 0)
    assert next_allowed(at, RULES) == local(MOSCOW, 2026, 6, 11, 9, 0, 0)


def test_quiet_hours_end_is_found_in_local_time_across_spring_dst_change() -> None:
    """Berlin, night of 30-31 March 2024 (clocks go forward): 09:00 CEST is 07:00 UTC."""
    rules = CallbackRules(timezone=BERLIN)
    dropped = local(BERLIN, 2024, 3, 30, 20, 59, 45)
    _, _, first = new_drop_job_times(dropped, dropped, rules)
    assert first == datetime(2024, 3, 31, 7, 0, tzinfo=UTC)


def test_quiet_hours_end_is_found_in_local_time_across_autumn_dst_change() -> None:
    """Berlin, night of 26-27 October 2024 (clocks go back): 09:00 CET is 08:00 UTC."""
    rules = CallbackRules(timezone=BERLIN)
    dropped = local(BERLIN, 2024, 10, 26, 20, 59, 45)
    _, _, first = new_drop_job_times(dropped, dropped, rules)
    assert first == datetime(2024, 10, 27, 8, 0, tzinfo=UTC)


def test_quiet_hours_ending_in_the_repeated_hour_end_the_second_time_round() -> None:
    """Berlin, 27 October 2024, quiet hours 21:00-02:30: 02:00-03:00 comes twice. At the
    second 02:10 the end is the second 02:30 (01:30 UTC); it was the first one (00:30 UTC),
    already past, so a due job was deferred to the past again every cycle."""
    rules = CallbackRules(timezone=BERLIN, quiet_hours=QuietHours(time(21, 0), time(2, 30)))
    second = datetime(2024, 10, 27, 1, 10, tzinfo=UTC)  # 02:10 CET, after the change
    assert is_quiet(second, rules)
    assert next_allowed(second, rules) == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    first = datetime(2024, 10, 27, 0, 10, tzinfo=UTC)  # 02:10 CEST, before it
    assert next_allowed(first, rules) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    for minute in range(0, 180, 5):  # every instant of the night: an end later than it
        at = datetime(2024, 10, 26, 23, 0, tzinfo=UTC) + timedelta(minutes=minute)
        assert next_allowed(at, rules) >= at
        assert not is_quiet(next_allowed(at, rules), rules)


def test_quiet_hours_inside_one_day_are_honoured() -> None:
    """Quiet hours that do not cross midnight (a 13:00-14:00 break)."""
    rules = CallbackRules(timezone=MOSCOW, quiet_hours=QuietHours(time(13, 0), time(14, 0)))
    assert is_quiet(local(MOSCOW, 2026, 6, 10, 13, 30, 0), rules)
    assert not is_quiet(local(MOSCOW, 2026, 6, 10, 14, 0, 0), rules)
    assert not is_quiet(local(MOSCOW, 2026, 6, 10, 23, 0, 0), rules)


def test_equal_quiet_hours_bounds_mean_no_quiet_hours() -> None:
    """start == end: callbacks may be placed at any hour."""
    rules = CallbackRules(timezone=MOSCOW, quiet_hours=QuietHours(time(0, 0), time(0, 0)))
    assert not is_quiet(local(MOSCOW, 2026, 6, 10, 3, 0, 0), rules)


def test_failed_attempt_schedules_the_next_at_its_offset() -> None:
    """Busy on attempt 1: attempt 2 is due 4 h after the drop."""
    job = job_after_drop(NOON, last_attempt_at=NOON + timedelta(seconds=30))
    transition = after_attempt(job, AttemptOutcome.BUSY, NOON + timedelta(seconds=75), RULES)
    assert transition.status is JobStatus.SCHEDULED
    assert transition.attempts_made == 1
    assert transition.next_attempt_at == NOON + timedelta(hours=4)


def test_late_attempt_pushes_the_next_one_by_the_configured_gap() -> None:
    """Attempt 2 placed 6 h late (quiet hours): attempt 3 keeps its 20 h gap after it."""
    late = NOON + timedelta(hours=10)
    job = job_after_drop(NOON, attempts_made=1, last_attempt_at=late)
    transition = after_attempt(job, AttemptOutcome.NO_ANSWER, late + timedelta(minutes=1), RULES)
    assert transition.next_attempt_at == late + timedelta(hours=20)


def test_third_counted_failure_exhausts_the_job() -> None:
    """At most 3 attempts: the third no-answer ends the job."""
    job = job_after_drop(NOON, attempts_made=2, last_attempt_at=NOON + timedelta(hours=24))
    transition = after_attempt(
        job, AttemptOutcome.NO_ANSWER, NOON + timedelta(hours=24, minutes=1), RULES
    )
    assert transition.status is JobStatus.EXHAUSTED
    assert transition.attempts_made == 3
    assert "3 attempts made" in transition.reason


def test_machine_answer_counts_like_no_answer() -> None:
    """R6: a machine answer is an attempt that did not reach the customer."""
    job = job_after_drop(NOON, attempts_made=2, last_attempt_at=NOON + timedelta(hours=24))
    transition = after_attempt(job, AttemptOutcome.MACHINE, NOON + timedelta(hours=24), RULES)
    assert transition.status is JobStatus.EXHAUSTED


def test_connected_attempt_finishes_the_job() -> None:
    """A person answered: the job is done."""
    job = job_after_drop(NOON, last_attempt_at=NOON)
    transition = after_attempt(job, AttemptOutcome.CONNECTED, NOON + timedelta(minutes=1), RULES)
    assert transition.status is JobStatus.DONE
    assert transition.attempts_made == 1


def test_unknown_attempt_counts() -> None:
    """An attempt the daemon lost track of may have rung: it counts and is not redialled."""
    job = job_after_drop(NOON, last_attempt_at=NOON)
    transition = after_attempt(job, AttemptOutcome.UNKNOWN, NOON + timedelta(minutes=5), RULES)
    assert transition.attempts_made == 1
    assert transition.next_attempt_at == NOON + timedelta(hours=4)


def test_not_placed_attempt_does_not_count_and_is_retried_shortly() -> None:
    """Nothing reached the PBX: same attempt count, retried after not_placed_retry."""
    now = NOON + timedelta(seconds=31)
    job = job_after_drop(NOON, last_attempt_at=now)
    transition = after_attempt(job, AttemptOutcome.NOT_PLACED, now, RULES)
    assert transition.attempts_made == 0
    assert transition.next_attempt_at == now + timedelta(seconds=60)


def test_attempt_that_would_leave_the_window_is_not_made() -> None:
    """Drop at 22:00: attempt 3 (offset 47 h, 21:00 two days later) falls in quiet hours and
    the end of those is past the 48 h window, so the job is exhausted instead."""
    rules = CallbackRules(
        timezone=MOSCOW,
        attempt_offsets=(timedelta(seconds=30), timedelta(hours=4), timedelta(hours=47)),
    )
    dropped = local(MOSCOW, 2026, 6, 10, 22, 0, 0)
    job = job_after_drop(dropped, rules, attempts_made=1, last_attempt_at=dropped)
    transition = after_attempt(job, AttemptOutcome.BUSY, dropped + timedelta(hours=9), rules)
    assert transition.status is JobStatus.EXHAUSTED
    assert "48 h window" in transition.reason


def test_attempt_exactly_at_the_window_end_is_allowed() -> None:
    """The window is inclusive: an attempt due at exactly 48 h is still made."""
    rules = CallbackRules(
        timezone=MOSCOW,
        quiet_hours=QuietHours(time(0, 0), time(0, 0)),
        attempt_offsets=(timedelta(seconds=30), timedelta(hours=4), timedelta(hours=48)),
    )
    planned = plan_attempt(
        anchor=NOON,
        window_ends_at=NOON + timedelta(hours=48),
        attempts_made=2,
        last_attempt_at=NOON + timedelta(hours=4),
        now=NOON + timedelta(hours=5),
        rules=rules,
    )
    assert planned == NOON + timedelta(hours=48)


def test_attempt_one_second_past_the_window_is_not_made() -> None:
    """Never beyond the window: the same attempt pushed one second later is dropped."""
    rules = CallbackRules(
        timezone=MOSCOW,
        quiet_hours=QuietHours(time(0, 0), time(0, 0)),
        attempt_offsets=(timedelta(seconds=30), timedelta(hours=4), timedelta(hours=48)),
    )
    planned = plan_attempt(
        anchor=NOON,
        window_ends_at=NOON + timedelta(hours=48),
        attempts_made=2,
        last_attempt_at=NOON + timedelta(hours=4),
        now=NOON + timedelta(hours=48, seconds=1),
        rules=rules,
    )
    assert planned is None


def test_no_fourth_attempt_is_ever_planned() -> None:
    """max_attempts 3: after three counted attempts nothing is planned."""
    planned = plan_attempt(
        anchor=NOON,
        window_ends_at=NOON + timedelta(hours=48),
        attempts_made=3,
        last_attempt_at=NOON,
        now=NOON,
        rules=RULES,
    )
    assert planned is None


@pytest.mark.parametrize("ring", [10, 30])
def test_ring_time_of_thirty_seconds_or_less_is_refused(ring: int) -> None:
    """Each callback must ring for more than 30 s."""
    with pytest.raises(ConfigError, match="ring_time_s"):
        CallbackRules(ring_time_s=ring)


def test_ring_time_defaults_to_forty_seconds() -> None:
    """The default ring time is above the 30 s minimum."""
    assert CallbackRules().ring_time_s == 40
    assert CallbackRules(ring_time_s=31).ring_time_s == 31


def test_offsets_outside_the_window_are_refused() -> None:
    """Every attempt offset must lie inside the window."""
    with pytest.raises(ConfigError, match="attempt_offsets_s"):
        CallbackRules(attempt_offsets=(timedelta(0), timedelta(hours=49)), max_attempts=2)


def test_rules_are_built_from_the_configured_standards() -> None:
    """The ru profile's callbacks block becomes the same rules as the defaults."""
    config = load_config(None)
    rules = CallbackRules.from_standards(config.standards_for(), config.site.zone)
    assert rules.ring_time_s == 40
    assert rules.max_attempts == 3
    assert rules.window == timedelta(hours=48)
    assert rules.attempt_offsets[0] == timedelta(seconds=30)
    assert rules.quiet_hours == QuietHours(time(21, 0), time(9, 0))
    assert 44 in rules.drop.abnormal_causes


def test_notsure_verdict_follows_the_configured_choice() -> None:
    """notsure counts as a person by default, as a machine when configured so."""
    assert outcome_for_verdict("NOTSURE", RULES) is AttemptOutcome.CONNECTED
    machine = CallbackRules(notsure_as="machine")
    assert outcome_for_verdict("notsure", machine) is AttemptOutcome.MACHINE
    assert outcome_for_verdict("MACHINE", RULES) is AttemptOutcome.MACHINE
    assert outcome_for_verdict("human", machine) is AttemptOutcome.CONNECTED


def test_answer_without_machine_detection_is_a_connection() -> None:
    """With AMD off, an answered attempt is final at once."""
    assert outcome_for_originate("answered", RULES) is AttemptOutcome.ANSWERED
    no_amd = CallbackRules(detect_machine=False)
    assert outcome_for_originate("answered", no_amd) is AttemptOutcome.CONNECTED
    assert outcome_for_originate("busy", RULES) is AttemptOutcome.BUSY
    assert outcome_for_originate("weird", RULES) is AttemptOutcome.FAILED


def test_inbound_call_cancels_pending_drop_callbacks_but_not_promises() -> None:
    """A pending drop callback is cancelled; a promise and a finished job are not."""
    job = job_after_drop(NOON, status=JobStatus.SCHEDULED)
    assert cancels_on_inbound(job, RULES)
    assert not cancels_on_inbound(replace(job, kind=JobKind.PROMISED), RULES)
    assert not cancels_on_inbound(replace(job, status=JobStatus.DONE), RULES)
    assert not cancels_on_inbound(job, CallbackRules(cancel_on_inbound=False))


def test_promise_is_dialled_from_a_day_before_its_deadline() -> None:
    """A 72 h promise: dialling starts 24 h before the deadline, window ends at the deadline."""
    deadline = NOON + timedelta(hours=72)
    anchor, window_ends_at, first = new_promise_times(deadline, NOON, RULES)
    assert anchor == deadline - timedelta(hours=24)
    assert window_ends_at == deadline
    assert first == anchor + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("zone", "end", "night", "jump"),
    [
        ("Europe/Berlin", time(2, 30), datetime(2026, 3, 29, 0, 0, tzinfo=UTC), (1, 0)),
        ("America/New_York", time(2, 30), datetime(2026, 3, 8, 6, 0, tzinfo=UTC), (7, 0)),
        ("Australia/Lord_Howe", time(2, 15), datetime(2026, 10, 3, 14, 0, tzinfo=UTC), (15, 30)),
    ],
)
def test_quiet_hours_ending_inside_a_skipped_hour_end_at_the_jump(
    zone: str, end: time, night: datetime, jump: tuple[int, int]
) -> None:
    """Quiet hours 21:00-02:30 on the spring night 02:00 -> 03:00: 02:30 never comes, and
    is_quiet is false from the jump on; next_allowed says the jump too (it said 03:30, half
    an hour of the customer's window lost)."""
    rules = CallbackRules(timezone=ZoneInfo(zone), quiet_hours=QuietHours(time(21, 0), end))
    allowed = next_allowed(night, rules)
    assert (allowed.hour, allowed.minute, allowed.second) == (*jump, 0)
    assert not is_quiet(allowed, rules)
    assert is_quiet(allowed - timedelta(seconds=1), rules)


def test_short_promise_is_dialled_at_once() -> None:
    """A promise due in 2 h starts now."""
    anchor, _, first = new_promise_times(NOON + timedelta(hours=2), NOON, RULES)
    assert anchor == NOON
    assert first == NOON + timedelta(seconds=30)


def promise_job(deadline: datetime, now: datetime, rules: CallbackRules = RULES) -> CallbackJob:
    anchor, window_ends_at, first = new_promise_times(deadline, now, rules)
    return replace(
        job_after_drop(now),
        kind=JobKind.PROMISED,
        anchor_at=anchor,
        window_ends_at=window_ends_at,
        deadline_at=deadline,
        next_attempt_at=first,
        status=JobStatus.SCHEDULED,
    )


def fail_attempts(job: CallbackJob, rules: CallbackRules = RULES) -> list[JobTransition]:
    """Every attempt of ``job`` made when planned, unanswered, until it ends."""
    out: list[JobTransition] = []
    while job.next_attempt_at is not None and job.status is JobStatus.SCHEDULED:
        at = job.next_attempt_at + timedelta(seconds=45)
        job = replace(job, last_attempt_at=job.next_attempt_at)
        transition = after_attempt(job, AttemptOutcome.NO_ANSWER, at, rules)
        out.append(transition)
        job = replace(
            job,
            status=transition.status,
            next_attempt_at=transition.next_attempt_at,
            attempts_made=transition.attempts_made,
        )
    return out


def test_a_short_promise_gets_its_attempts_brought_forward_before_the_deadline() -> None:
    """A 2 h promise: the second attempt's 4 h spacing would miss the deadline, so the
    attempts left share the time left: three attempts, all before the deadline (it was made
    overdue after the first, with nearly 2 h to go)."""
    deadline = NOON + timedelta(hours=2)
    transitions = fail_attempts(promise_job(deadline, NOON))
    planned = [t.next_attempt_at for t in transitions if t.next_attempt_at is not None]
    assert len(planned) == 2
    assert all(NOON < at < deadline for at in planned)
    assert transitions[-1].status is JobStatus.OVERDUE
    assert transitions[-1].attempts_made == 3


def test_a_promise_due_in_the_evening_after_a_night_gets_three_attempts() -> None:
    """A 72 h promise registered at 22:00 in Berlin (quiet 21:00-09:00): dialling from 24 h
    before the deadline starts at 09:00 on its last day, and the third attempt, which the
    24 h spacing puts on the deadline itself, comes that afternoon (the promise was made
    overdue at 13:00 with 9 h to go)."""
    berlin = BERLIN
    rules = CallbackRules(timezone=berlin, quiet_hours=QuietHours(time(21, 0), time(9, 0)))
    now = local(berlin, 2026, 6, 10, 22, 0, 0)
    deadline = now + timedelta(hours=72)
    job = promise_job(deadline, now, rules)
    transitions = fail_attempts(job, rules)
    attempts = [job.next_attempt_at, *(t.next_attempt_at for t in transitions)]
    made = [at for at in attempts if at is not None]
    assert len(made) == 3
    assert all(not is_quiet(at, rules) and at < deadline for at in made)
    assert transitions[-1].status is JobStatus.OVERDUE  # none reached: a violation, at the end


def test_brought_forward_attempts_are_at_least_five_minutes_apart() -> None:
    """The first attempt of a promise due at 12:10 started at 11:59:20 and failed at 12:00:
    the next one shares the 10 min left but comes 5 min after the first at the earliest (it
    came 4 min after it, the third 3:40 after the second)."""
    deadline = NOON + timedelta(minutes=10)
    first = NOON - timedelta(seconds=40)
    job = replace(promise_job(deadline, first), last_attempt_at=first)
    transition = after_attempt(job, AttemptOutcome.NO_ANSWER, NOON, RULES)
    assert transition.next_attempt_at is not None
    assert transition.next_attempt_at - first >= timedelta(minutes=5)
    assert transition.next_attempt_at + timedelta(seconds=RULES.ring_time_s) <= deadline


def test_a_promise_with_no_time_left_for_another_attempt_is_overdue() -> None:
    """30 s before the deadline, after a failed try, no attempt ringing 40 s fits: overdue."""
    deadline = NOON + timedelta(hours=2)
    job = replace(promise_job(deadline, NOON), last_attempt_at=deadline - timedelta(minutes=1))
    now = deadline - timedelta(seconds=30)
    transition = after_attempt(job, AttemptOutcome.NO_ANSWER, now, RULES)
    assert transition.status is JobStatus.OVERDUE
    assert "promised deadline" in transition.reason


def test_promise_whose_last_attempt_fails_is_overdue() -> None:
    """The third failed attempt of a promise makes it overdue, not merely exhausted."""
    deadline = NOON + timedelta(hours=72)
    anchor, window_ends_at, _ = new_promise_times(deadline, NOON, RULES)
    job = replace(
        job_after_drop(NOON),
        kind=JobKind.PROMISED,
        anchor_at=anchor,
        window_ends_at=window_ends_at,
        deadline_at=deadline,
        attempts_made=2,
        last_attempt_at=deadline - timedelta(minutes=1),
    )
    transition = after_attempt(job, AttemptOutcome.BUSY, deadline, RULES)
    assert transition.status is JobStatus.OVERDUE


def test_pending_promise_past_its_deadline_counts_as_overdue() -> None:
    """is_overdue: a scheduled promise whose deadline passed, or one marked overdue."""
    deadline = NOON + timedelta(hours=1)
    job = replace(
        job_after_drop(NOON),
        kind=JobKind.PROMISED,
        status=JobStatus.SCHEDULED,
        deadline_at=deadline,
    )
    assert not is_overdue(job, deadline)
    assert is_overdue(job, deadline + timedelta(seconds=1))
    assert not is_overdue(replace(job, status=JobStatus.DONE), deadline + timedelta(days=1))
    assert not is_overdue(replace(job, kind=JobKind.ABNORMAL_DROP), deadline + timedelta(days=1))


def test_scheduled_job_past_its_window_expires() -> None:
    """Nobody could dial it in time (daemon down): exhausted, or overdue for a promise."""
    job = job_after_drop(NOON, status=JobStatus.SCHEDULED)
    after = job.window_ends_at + timedelta(seconds=1)
    assert expiry(job, job.window_ends_at) is None
    exhausted = expiry(job, after)
    assert exhausted is not None
    assert exhausted.status is JobStatus.EXHAUSTED
    overdue = expiry(replace(job, kind=JobKind.PROMISED), after)
    assert overdue is not None
    assert overdue.status is JobStatus.OVERDUE


def test_a_due_job_found_in_quiet_hours_waits_for_their_end() -> None:
    """Dropped 20:50, due 20:50:30, the scheduler only looks at 21:30: 09:00 next day,
    with its attempt count untouched."""
    dropped = local(MOSCOW, 2026, 6, 10, 20, 50, 0)
    job = job_after_drop(dropped, status=JobStatus.SCHEDULED, attempts_made=1)
    transition = quiet_deferral(job, local(MOSCOW, 2026, 6, 10, 21, 30, 0), RULES)
    assert transition is not None
    assert transition.status is JobStatus.SCHEDULED
    assert transition.next_attempt_at == local(MOSCOW, 2026, 6, 11, 9, 0, 0)
    assert transition.attempts_made == 1


def test_a_due_job_outside_quiet_hours_is_not_deferred() -> None:
    job = job_after_drop(NOON, status=JobStatus.SCHEDULED)
    assert quiet_deferral(job, NOON + timedelta(minutes=5), RULES) is None


def test_quiet_hours_past_the_window_end_exhaust_a_drop_job_and_make_a_promise_overdue() -> None:
    """Window ends 23:00; at 22:00 the quiet period lasts until 09:00: nothing fits."""
    now = local(MOSCOW, 2026, 6, 10, 22, 0, 0)
    ends = local(MOSCOW, 2026, 6, 10, 23, 0, 0)
    job = job_after_drop(NOON, status=JobStatus.SCHEDULED, window_ends_at=ends)
    transition = quiet_deferral(job, now, RULES)
    assert transition is not None and transition.status is JobStatus.EXHAUSTED
    assert transition.next_attempt_at is None
    assert "quiet hours" in transition.reason
    promise = replace(job, kind=JobKind.PROMISED, deadline_at=ends)
    transition = quiet_deferral(promise, now, RULES)
    assert transition is not None and transition.status is JobStatus.OVERDUE


def test_a_served_customer_cancels_the_callbacks_the_rules_say() -> None:
    """Served: any callback but a promise is cancelled (none with cancel_on_inbound off);
    the agent coming back to a held customer cancels only the one they asked for."""
    off = CallbackRules(cancel_on_inbound=False)
    for kind in JobKind:
        assert cancelled_when_served(kind, requested_only=False, rules=RULES) == (
            kind is not JobKind.PROMISED
        )
        assert not cancelled_when_served(kind, requested_only=False, rules=off)
        assert cancelled_when_served(kind, requested_only=True, rules=off) == (
            kind is JobKind.REQUESTED
        )

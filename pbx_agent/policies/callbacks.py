"""Callbacks after an abnormal drop, and promised callbacks (R7): the rules, as pure functions.

Theory of operation
-------------------
A *callback job* is one customer to call back (``CallbackJob``). It is created for one of
three reasons (``JobKind``): a call ended abnormally (``classify_drop`` said so), the
silent-caller procedure ended a call for one-way audio (zh profile), or an agent promised
to call back within a deadline ("we will contact you within 72 hours"). Each try to reach
the customer is an *attempt* (``CallbackAttempt``) with its own outcome.

Job states (``JobStatus``) and who moves them::

    SCHEDULED --claim (attempt recorded as DIALLING, then the call is placed)--> DIALLING
    DIALLING  --outcome: CONNECTED-------------------------------------------> DONE
    DIALLING  --outcome: anything else, another attempt fits------------------> SCHEDULED
    DIALLING  --outcome: anything else, no attempt left / window closed------> EXHAUSTED
                                                  (a promise: OVERDUE)
    SCHEDULED --the customer called in (not promises) / an admin cancelled---> CANCELLED
    SCHEDULED --window or deadline passed while nobody could dial------------> EXHAUSTED/OVERDUE

``after_attempt`` is the whole transition table for outcomes; ``plan_attempt`` is where an
attempt may start. The scheduler (``pbx_agent.services.callbacks``) does the I/O and asks
these functions every question that has a rule in it. ``CallbackDropPolicy`` is the per-call
part in the engine's policy shape: an inbound call cancels the customer's pending callbacks,
and the end of a call is classified (``classify_drop``) into a ``RequestCallback`` or a
``no_callback`` note carrying the cause that drove the decision.

Scheduling rules (``CallbackRules``):
- attempt *k* (0-based) is due ``attempt_offsets[k]`` after the job's anchor (the drop, or
  the start of a promise's dialling), and never sooner after the previous attempt than the
  configured gap between the two offsets: an attempt pushed late (quiet hours, a daemon
  restart) pushes the later ones too instead of bunching them up;
- never in the past, never inside quiet hours (local time in the site's zone; an attempt
  that would fall there moves to the end of the quiet period, DST-safe because the end is
  computed as a local wall time on the right date), never after the window end (48 h after
  the drop; a promise's deadline): an attempt that cannot fit is not made;
- at most ``max_attempts`` attempts count. ``NOT_PLACED`` (the dialer refused before
  anything was sent to the PBX) does not count and is retried after ``not_placed_retry``;
  ``REFUSED`` (the PBX answered the Originate with an error: nothing rang) does not count
  either and is retried after ``refused_retry``.
  ``UNKNOWN`` (the daemon lost track of an attempt: a crash after the attempt was recorded)
  counts: the attempt may have rung the customer, and redialling the same attempt could
  call them twice.
- a machine answer counts like no answer; ``notsure`` follows ``notsure_as``.

Abnormal drops (``classify_drop``): the rule looks at the legs in the order they ended.
Measured on Asterisk 22 (traces 08a-08c): when one side's phone dies and ``rtp_timeout``
clears it, the dead leg hangs up first with cause 44 and the survivor gets 16, so the
survivor alone looks like a normal hang-up. FreeSWITCH says ``MEDIA_TIMEOUT`` on the dead
leg and ``NORMAL_CLEARING`` with ``bridge_hangup_cause=MEDIA_TIMEOUT`` on the survivor.
So the *first* party leg to end decides, by its own cause, or by the cause its peer
recorded when the PBX's events came out of order.

Invariants: pure (no I/O, no logging, no clock); times are timezone-aware ``datetime`` in
UTC; every decision carries a reason string for the log and the work order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pbx_agent.errors import ConfigError
from pbx_agent.model.calls import Call, CallEnded, CallEvent, LegEnd, PartiesConnected
from pbx_agent.model.commands import CancelCallbacks, Command, Note, RequestCallback
from pbx_agent.model.events import Direction, LegId, Role

if TYPE_CHECKING:
    from pbx_agent.config import Config, Standards

# ------------------------------------------------------------------------------ causes

# FreeSWITCH hang-up cause names (``Hangup-Cause``, ``bridge_hangup_cause``) and their
# numbers, from ``switch_call_cause_t`` in ``src/include/switch_types.h`` (1.10). Numbers up
# to 127 are the Q.850 causes; above 127 they are FreeSWITCH's own (it reports them to the
# network as 16 in ``hangup_cause_q850``, which is why the name is the better source).
FREESWITCH_CAUSES: Mapping[str, int] = {
    "NONE": 0,
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6,
    "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23,
    "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28,
    "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30,
    "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42,
    "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44,
    "PRE_EMPTED": 45,
    "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52,
    "INCOMING_CALL_BARRED": 54,
    "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58,
    "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65,
    "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69,
    "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81,
    "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95,
    "MANDATORY_IE_MISSING": 96,
    "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98,
    "IE_NONEXIST": 99,
    "INVALID_IE_CONTENTS": 100,
    "WRONG_CALL_STATE": 101,
    "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103,
    "PROTOCOL_ERROR": 111,
    "INTERWORKING": 127,
    "SUCCESS": 142,
    "ORIGINATOR_CANCEL": 487,
    "CRASH": 500,
    "SYSTEM_SHUTDOWN": 501,
    "LOSE_RACE": 502,
    "MANAGER_REQUEST": 503,
    "BLIND_TRANSFER": 600,
    "ATTENDED_TRANSFER": 601,
    "ALLOTTED_TIMEOUT": 602,
    "USER_CHALLENGE": 603,
    "MEDIA_TIMEOUT": 604,
    "PICKED_OFF": 605,
    "USER_NOT_REGISTERED": 606,
    "PROGRESS_TIMEOUT": 607,
    "INVALID_GATEWAY": 608,
    "GATEWAY_DOWN": 609,
    "INVALID_URL": 610,
    "INVALID_PROFILE": 611,
    "NO_PICKUP": 612,
    "SRTP_READ_ERROR": 613,
    "BOWOUT": 614,
    "BUSY_EVERYWHERE": 615,
    "DECLINE": 616,
    "DOES_NOT_EXIST_ANYWHERE": 617,
    "NOT_ACCEPTABLE": 618,
    "UNWANTED": 619,
    "NO_IDENTITY": 620,
    "BAD_IDENTITY_INFO": 621,
    "UNSUPPORTED_CERTIFICATE": 622,
    "INVALID_IDENTITY": 623,
    "STALE_DATE": 624,
}
MEDIA_TIMEOUT_CAUSE = FREESWITCH_CAUSES["MEDIA_TIMEOUT"]

# Q.850 causes that mean the network or a system failed rather than a party hanging up:
# 27 destination out of order, 34 no circuit/channel available, 38 network out of order,
# 41 temporary failure, 42 switching equipment congestion, 44 requested channel not
# available (what Asterisk gives the leg ``rtp_timeout`` cleared, trace 08b), 47 resource
# unavailable, 102 recovery on timer expiry. Not in the list on purpose: 16/31 (normal),
# 17/19/21 (busy, no answer, rejected: a party's choice), 127 (Asterisk's mapping of a SIP
# CANCEL, i.e. a caller giving up while it rang, trace 02c), 0 (unknown).
DEFAULT_ABNORMAL_CAUSES: frozenset[int] = frozenset({27, 34, 38, 41, 42, 44, 47, 102})


def cause_number(cause: int | None, cause_text: str = "") -> int | None:
    """One number space for both PBXs: a FreeSWITCH cause name wins over the Q.850 number
    it came with (``MEDIA_TIMEOUT`` arrives as q850 16); Asterisk's numbers pass through."""
    name = cause_text.strip().upper()
    if name in FREESWITCH_CAUSES:
        return FREESWITCH_CAUSES[name]
    return cause


# ------------------------------------------------------------------------------ drops


@dataclass(frozen=True, slots=True)
class DropRules:
    """What counts as an abnormal end (``standards.callbacks``)."""

    abnormal_causes: frozenset[int] = DEFAULT_ABNORMAL_CAUSES
    media_timeout_abnormal: bool = True  # a leg whose media timed out (FreeSWITCH, Asterisk hint)
    agent_device_drop: bool = True  # the agent's device failing mid-conversation counts
    one_way_audio: bool = False  # the R2 one-way-audio drop counts (the zh profile: true)
    # Only a drop after the customer talked to an agent counts; a failure in the IVR or the
    # queue is not an interrupted conversation.
    require_agent_conversation: bool = True

    @classmethod
    def from_standards(cls, standards: Standards) -> DropRules:
        cb = standards.callbacks
        return cls(
            abnormal_causes=frozenset(cb.abnormal_causes),
            media_timeout_abnormal=cb.media_timeout_abnormal,
            agent_device_drop=cb.agent_device_drop,
            one_way_audio=cb.one_way_audio,
        )


class DropReason(StrEnum):
    CALLER_LEG_FAILED = "caller_leg_failed"
    AGENT_DEVICE_DROPPED = "agent_device_dropped"
    ONE_WAY_AUDIO = "one_way_audio"
    NORMAL_HANGUP = "normal_hangup"
    CAUSE_UNKNOWN = "cause_unknown"
    AGENT_DROP_NOT_COUNTED = "agent_device_drop_not_counted"
    ONE_WAY_AUDIO_NOT_COUNTED = "one_way_audio_not_counted"
    NO_CUSTOMER_LEG = "no_customer_leg"
    NO_CONVERSATION = "no_conversation"


@dataclass(frozen=True, slots=True)
class DropVerdict:
    """Whether a call ended abnormally, the reason, and the cause that drove the decision."""

    abnormal: bool
    reason: DropReason
    cause: int | None = None
    cause_text: str = ""
    leg: LegId | None = None  # the leg whose end decided
    role: Role | None = None  # that leg's role

    def describe(self) -> str:
        cause = "" if self.cause is None else f" cause {self.cause}"
        text = f" ({self.cause_text})" if self.cause_text else ""
        who = f" on the {self.role} leg" if self.role else ""
        return f"{self.reason}{who}{cause}{text}"


def _leg_failed(leg: LegEnd, rules: DropRules) -> int | None:
    """The cause that says this leg itself failed, or None."""
    number = cause_number(leg.cause, leg.cause_text)
    if leg.media_timeout or number == MEDIA_TIMEOUT_CAUSE:
        return MEDIA_TIMEOUT_CAUSE if rules.media_timeout_abnormal else None
    if number is not None and number in rules.abnormal_causes:
        return number
    return None


def _peer_failed(leg: LegEnd, rules: DropRules) -> int | None:
    """The cause the PBX recorded for this leg's peer (FreeSWITCH bridge_hangup_cause)."""
    if not leg.peer_cause:
        return None
    number = cause_number(None, leg.peer_cause)
    if number == MEDIA_TIMEOUT_CAUSE:
        return number if rules.media_timeout_abnormal else None
    if number is not None and number in rules.abnormal_causes:
        return number
    return None


def classify_drop(
    legs: Sequence[LegEnd], rules: DropRules, *, one_way_audio: bool = False
) -> DropVerdict:
    """Decide whether the call whose legs ended as ``legs`` ended abnormally.

    ``one_way_audio``: the silent-caller procedure ended the call because the customer
    could not be heard (R2, zh §4); whether that calls for a callback is ``rules.one_way_audio``.
    """
    caller = next((leg for leg in legs if leg.role is Role.CALLER), None)
    if one_way_audio:
        reason = (
            DropReason.ONE_WAY_AUDIO
            if rules.one_way_audio
            else (DropReason.ONE_WAY_AUDIO_NOT_COUNTED)
        )
        return DropVerdict(
            abnormal=rules.one_way_audio,
            reason=reason,
            leg=caller.leg if caller else None,
            role=Role.CALLER,
        )
    if caller is None:
        return DropVerdict(abnormal=False, reason=DropReason.NO_CUSTOMER_LEG)
    agents = [leg for leg in legs if leg.role is Role.AGENT and leg.answered]
    if not caller.answered or (rules.require_agent_conversation and not agents):
        return DropVerdict(
            abnormal=False, reason=DropReason.NO_CONVERSATION, leg=caller.leg, role=Role.CALLER
        )
    # The call's end is the end of its last conversation: the customer and the last agent
    # to leave (an agent who transferred the customer on, a ringing member who never
    # answered, an agent whose phone died before the customer was served again by another
    # did not end the call).
    last_agent = max(agents, key=_end_order, default=None)
    parties = sorted((caller,) if last_agent is None else (caller, last_agent), key=_end_order)
    first = parties[0]
    failing = _failing_side(first, rules)
    if failing is None:
        number = cause_number(first.cause, first.cause_text)
        reason = DropReason.CAUSE_UNKNOWN if number in (None, 0) else DropReason.NORMAL_HANGUP
        return DropVerdict(
            abnormal=False,
            reason=reason,
            cause=number,
            cause_text=first.cause_text,
            leg=first.leg,
            role=first.role,
        )
    side, cause, label = failing
    if side is Role.CALLER:
        abnormal, reason = True, DropReason.CALLER_LEG_FAILED
    elif rules.agent_device_drop:
        abnormal, reason = True, DropReason.AGENT_DEVICE_DROPPED
    else:
        abnormal, reason = False, DropReason.AGENT_DROP_NOT_COUNTED
    return DropVerdict(
        abnormal=abnormal, reason=reason, cause=cause, cause_text=label, leg=first.leg, role=side
    )


def _failing_side(first: LegEnd, rules: DropRules) -> tuple[Role, int, str] | None:
    """Which party failed (role, cause, cause label), judged from the first leg to end: its
    own cause, else the cause it recorded for its peer (FreeSWITCH bridge_hangup_cause)."""
    own = _leg_failed(first, rules)
    if own is not None:
        label = "MEDIA_TIMEOUT" if own == MEDIA_TIMEOUT_CAUSE else first.cause_text
        return first.role, own, label
    peer = _peer_failed(first, rules)
    if peer is not None:
        other = Role.AGENT if first.role is Role.CALLER else Role.CALLER
        return other, peer, first.peer_cause
    return None


def _end_order(leg: LegEnd) -> tuple[int, float]:
    return (leg.order, leg.ended_at)


# ------------------------------------------------------------------------------ jobs


class JobKind(StrEnum):
    ABNORMAL_DROP = "abnormal_drop"
    ONE_WAY_AUDIO = "one_way_audio"
    REQUESTED = "requested"  # the customer asked for one (the hold callback offer)
    PROMISED = "promised"  # an agent promised a call within a deadline


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its next attempt
    DIALLING = "dialling"  # an attempt is in flight
    DONE = "done"  # the customer was reached (or an admin recorded the promise kept)
    EXHAUSTED = "exhausted"  # no attempt reached the customer within the rules
    CANCELLED = "cancelled"  # the customer called in, or an admin cancelled it
    OVERDUE = "overdue"  # a promise whose deadline passed without reaching the customer


TERMINAL_STATUSES = frozenset(
    {JobStatus.DONE, JobStatus.EXHAUSTED, JobStatus.CANCELLED, JobStatus.OVERDUE}
)
PENDING_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.DIALLING})


class AttemptOutcome(StrEnum):
    DIALLING = "dialling"  # recorded before the call is placed; no outcome yet
    ANSWERED = "answered"  # answered, machine detection still running (not final)
    CONNECTED = "connected"  # a person answered: connected to the target
    MACHINE = "machine"  # an answering machine answered; ended from our side (R6)
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the daemon lost track of it (crash, lease expiry, no report)
    NOT_PLACED = "not_placed"  # refused before anything reached the PBX
    # The PBX refused the call outright (AMI Response: Error, ESL -ERR): nothing rang, so it
    # is none of the customer's attempts; a configuration problem, retried less often.
    REFUSED = "refused"


OPEN_OUTCOMES = frozenset({AttemptOutcome.DIALLING, AttemptOutcome.ANSWERED})
_ORIGINATE_OUTCOMES: Mapping[str, AttemptOutcome] = {
    "answered": AttemptOutcome.ANSWERED,
    "busy": AttemptOutcome.BUSY,
    "no_answer": AttemptOutcome.NO_ANSWER,
    "rejected": AttemptOutcome.REJECTED,
    "failed": AttemptOutcome.FAILED,
}


@dataclass(frozen=True, slots=True)
class CallbackJob:
    """One customer to call back, with where the job stands."""

    id: int
    number: str  # E.164
    kind: JobKind
    status: JobStatus
    reason: str  # why the job exists (the drop verdict, the promise)
    created_at: datetime
    anchor_at: datetime  # attempt offsets count from here
    window_ends_at: datetime  # no attempt starts after this
    next_attempt_at: datetime | None
    attempts_made: int = 0  # attempts that count toward max_attempts
    attempt_seq: int = 0  # attempts recorded, counted or not (the last attempt_no)
    last_attempt_at: datetime | None = None
    deadline_at: datetime | None = None  # promises: the customer must be reached by then
    trigger_call_id: str | None = None
    trigger_cause: str = ""
    target: str | None = None  # where the answered customer goes (None: the site's default)
    current_request_id: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    finished_at: datetime | None = None
    finish_reason: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class CallbackAttempt:
    """One try to reach the customer: the work order's history line."""

    job_id: int
    attempt_no: int  # 1, 2, ... per job; never reused
    request_id: str  # unique; the PBX adapter's Originate id
    outcome: AttemptOutcome
    dialled_at: datetime  # recorded (committed) before the call was placed
    placed_by: str = ""  # the daemon instance that placed it
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    cause: int | None = None
    cause_text: str = ""
    tech_cause: str = ""
    amd_result: str = ""
    amd_cause: str = ""


@dataclass(frozen=True, slots=True)
class JobTransition:
    """What an attempt's outcome does to its job."""

    status: JobStatus
    next_attempt_at: datetime | None
    attempts_made: int
    reason: str


# ------------------------------------------------------------------------------ rules


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No attempt starts in [start, end) local time; ``start > end`` crosses midnight;
    ``start == end`` means no quiet hours."""

    start: time = time(21, 0)
    end: time = time(9, 0)


_MIN_RING_S = 30  # 003: each callback rings for more than 30 s


@dataclass(frozen=True, slots=True)
class CallbackRules:
    """The callback settings of a site (``standards.callbacks`` and ``site.timezone``);
    ``from_standards`` builds them from the configuration."""

    enabled: bool = True
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    attempt_offsets: tuple[timedelta, ...] = (
        timedelta(seconds=30),
        timedelta(hours=4),
        timedelta(hours=24),
    )
    max_attempts: int = 3
    window: timedelta = timedelta(hours=48)
    ring_time_s: int = 40
    quiet_hours: QuietHours = field(default_factory=QuietHours)
    max_concurrent: int = 2
    cancel_on_inbound: bool = True
    notsure_as: str = "human"  # "human" | "machine": what an AMD ``notsure`` counts as
    detect_machine: bool = True
    promised_default_deadline: timedelta = timedelta(hours=72)
    # A promise is dialled automatically from this long before its deadline (an agent
    # can keep it earlier by hand); enough room for the three attempts' spacing.
    promised_dial_lead: timedelta = timedelta(hours=24)
    not_placed_retry: timedelta = timedelta(seconds=60)
    # A call the switch refused is retried this much later (an administrator has to fix
    # something: the attempts and the log say what the switch answered).
    refused_retry: timedelta = timedelta(minutes=10)
    target: str | None = None  # None: the queue the dropped call was in
    drop: DropRules = field(default_factory=DropRules)

    def __post_init__(self) -> None:
        key = "standards.callbacks"
        if self.ring_time_s <= _MIN_RING_S:
            msg = (
                f"{key}.ring_time_s: {self.ring_time_s} is too short; each callback must "
                f"ring for more than {_MIN_RING_S} s (accepted: {_MIN_RING_S + 1} or more)"
            )
            raise ConfigError(msg)
        if not 1 <= self.max_attempts <= len(self.attempt_offsets):
            msg = (
                f"{key}.max_attempts: {self.max_attempts} needs as many attempt_offsets_s "
                f"(got {len(self.attempt_offsets)}; accepted: 1 to the number of offsets)"
            )
            raise ConfigError(msg)
        offsets = list(self.attempt_offsets)
        if offsets != sorted(offsets) or offsets[0] < timedelta(0):
            msg = f"{key}.attempt_offsets_s: {offsets} must be >= 0 and increasing"
            raise ConfigError(msg)
        if offsets[-1] > self.window:
            msg = (
                f"{key}.attempt_offsets_s: the last offset {offsets[-1]} is outside the "
                f"window of {self.window} (accepted: offsets inside window_h)"
            )
            raise ConfigError(msg)
        if self.max_concurrent < 1:
            msg = f"{key}.max_concurrent: {self.max_concurrent} (accepted: 1 or more)"
            raise ConfigError(msg)
        if self.notsure_as not in {"human", "machine"}:
            msg = f"standards.amd.notsure_action: {self.notsure_as!r} (accepted: human, machine)"
            raise ConfigError(msg)

    @classmethod
    def from_standards(cls, standards: Standards, timezone: ZoneInfo) -> CallbackRules:
        """The rules of ``standards.callbacks`` (and ``standards.amd``) in ``timezone``."""
        cb = standards.callbacks
        quiet = (
            QuietHours(cb.quiet_hours.start, cb.quiet_hours.end)
            if cb.quiet_hours is not None
            else QuietHours(time(0, 0), time(0, 0))
        )
        return cls(
            enabled=cb.enabled,
            timezone=timezone,
            attempt_offsets=tuple(timedelta(seconds=s) for s in cb.used_offsets_s),
            max_attempts=cb.max_attempts,
            window=timedelta(hours=cb.window_h),
            ring_time_s=math.ceil(cb.ring_time_s),
            quiet_hours=quiet,
            max_concurrent=cb.max_concurrent,
            cancel_on_inbound=cb.cancel_on_inbound,
            notsure_as=standards.amd.notsure_action,
            detect_machine=standards.amd.enabled,
            promised_default_deadline=timedelta(hours=cb.promised_default_deadline_h),
            target=cb.target,
            drop=DropRules.from_standards(standards),
        )


# ------------------------------------------------------------------------------ scheduling


def is_quiet(at: datetime, rules: CallbackRules) -> bool:
    """Whether ``at`` falls inside the site's quiet hours (local wall time)."""
    quiet = rules.quiet_hours
    if quiet.start == quiet.end:
        return False
    local = at.astimezone(rules.timezone).time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end


# A promise's attempts brought forward to fit before its deadline are this far apart at least.
_PROMISE_MIN_GAP = timedelta(minutes=5)


def next_allowed(at: datetime, rules: CallbackRules) -> datetime:
    """``at`` itself outside quiet hours, else the end of the quiet period it falls in."""
    if not is_quiet(at, rules):
        return at
    tz = rules.timezone
    local = at.astimezone(tz)
    end = rules.quiet_hours.end
    today = datetime.combine(local.date(), end, tzinfo=tz)
    # The first end after ``at``, compared as instants (two datetimes of one tzinfo
    # compare as wall times, ignoring fold). On the night clocks go back an end inside
    # the repeated hour comes twice: fold=0 the first time, fold=1 the second. A wall
    # time inside a DST gap does not exist: quiet hours end when the clock jumps past it.
    for candidate in (today, today.replace(fold=1)):
        instant = _skipped_end(candidate, rules) or candidate.astimezone(UTC)
        if instant > at:
            return instant
    tomorrow = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz)
    return _skipped_end(tomorrow, rules) or tomorrow.astimezone(UTC)


def _skipped_end(wall: datetime, rules: CallbackRules) -> datetime | None:
    """For an end of quiet hours whose wall time a spring clock change skips: the instant
    of the jump (the first one ``is_quiet`` says is not quiet), found between the two
    readings of that wall time; None for a wall time that exists."""
    late = wall.replace(fold=0).astimezone(UTC)  # read with the offset before the gap
    if late.astimezone(wall.tzinfo).replace(tzinfo=None, fold=0) == wall.replace(
        tzinfo=None, fold=0
    ):
        return None
    early = wall.replace(fold=1).astimezone(UTC)  # the offset after it: before the jump
    while late - early > timedelta(seconds=1):
        middle = early + (late - early) / 2
        if is_quiet(middle, rules):
            early = middle
        else:
            late = middle
    whole = late.replace(microsecond=0)  # clocks jump on a whole second
    return late if is_quiet(whole, rules) else whole


def plan_attempt(
    *,
    anchor: datetime,
    window_ends_at: datetime,
    attempts_made: int,
    last_attempt_at: datetime | None,
    now: datetime,
    rules: CallbackRules,
    promised: bool = False,
) -> datetime | None:
    """When the next counted attempt may start, or None when no attempt is left or none
    fits before the window ends.

    A ``promised`` job's window is the time left to its deadline, often shorter than the
    attempts' spacing (a 2 h promise; the last attempt 24 h after the first lands on the
    deadline itself, and a night in between pushes it past): an attempt the spacing would
    place after the deadline is brought forward, the time left shared between the attempts
    left, so each of them is made before the deadline while one fits (the promise is
    overdue only then, not hours early)."""
    k = attempts_made
    if k >= rules.max_attempts:
        return None
    offsets = rules.attempt_offsets
    at = anchor + offsets[k]
    if k > 0 and last_attempt_at is not None:
        at = max(at, last_attempt_at + (offsets[k] - offsets[k - 1]))
    at = next_allowed(max(at, now), rules)
    if at <= window_ends_at:
        return at
    if not promised:
        return None
    # The time left shared: the next attempt a share of it from now, or (that share falling
    # into quiet hours past the deadline) the next minute outside quiet hours.
    share = (window_ends_at - now) / (rules.max_attempts - k + 1)
    earliest = now if last_attempt_at is None else max(now, last_attempt_at + _PROMISE_MIN_GAP)
    for candidate in (now + share, now + _PROMISE_MIN_GAP):
        at = next_allowed(max(candidate, earliest), rules)
        if at + timedelta(seconds=rules.ring_time_s) <= window_ends_at:
            return at
    return None


def new_drop_job_times(
    dropped_at: datetime, now: datetime, rules: CallbackRules
) -> tuple[datetime, datetime, datetime | None]:
    """(anchor, window end, first attempt) for a job created after a drop at ``dropped_at``."""
    window_ends_at = dropped_at + rules.window
    first = plan_attempt(
        anchor=dropped_at,
        window_ends_at=window_ends_at,
        attempts_made=0,
        last_attempt_at=None,
        now=now,
        rules=rules,
    )
    return dropped_at, window_ends_at, first


def new_promise_times(
    deadline: datetime, now: datetime, rules: CallbackRules
) -> tuple[datetime, datetime, datetime | None]:
    """(anchor, window end, first attempt) for a promise due by ``deadline``: dialling
    starts ``promised_dial_lead`` before the deadline (at once if that is already past)."""
    anchor = max(now, deadline - rules.promised_dial_lead)
    first = plan_attempt(
        anchor=anchor,
        window_ends_at=deadline,
        attempts_made=0,
        last_attempt_at=None,
        now=now,
        rules=rules,
        promised=True,
    )
    return anchor, deadline, first


def counts_as_attempt(outcome: AttemptOutcome) -> bool:
    """Whether the attempt was one of the customer's (it may have rung): not when nothing
    reached the switch, nor when the switch refused the call outright."""
    return outcome not in (AttemptOutcome.NOT_PLACED, AttemptOutcome.REFUSED)


def after_attempt(
    job: CallbackJob, outcome: AttemptOutcome, now: datetime, rules: CallbackRules
) -> JobTransition:
    """The transition table: what ``outcome`` of the job's current attempt does to it."""
    made = job.attempts_made + (1 if counts_as_attempt(outcome) else 0)
    if outcome is AttemptOutcome.CONNECTED:
        return JobTransition(JobStatus.DONE, None, made, "customer reached and connected")
    last = job.last_attempt_at if counts_as_attempt(outcome) else None
    planned = plan_attempt(
        anchor=job.anchor_at,
        window_ends_at=job.window_ends_at,
        attempts_made=made,
        last_attempt_at=last,
        now=now,
        rules=rules,
        promised=job.kind is JobKind.PROMISED,
    )
    if planned is not None and not counts_as_attempt(outcome):
        retry = rules.refused_retry if outcome is AttemptOutcome.REFUSED else rules.not_placed_retry
        planned = next_allowed(max(planned, now + retry), rules)
        if planned > job.window_ends_at:
            planned = None
    if planned is not None:
        return JobTransition(
            JobStatus.SCHEDULED, planned, made, f"attempt {made + 1} after {outcome}"
        )
    give_up = JobStatus.OVERDUE if job.kind is JobKind.PROMISED else JobStatus.EXHAUSTED
    if made >= rules.max_attempts:
        why = f"{made} attempts made, none reached the customer (last: {outcome})"
    elif job.kind is JobKind.PROMISED:
        why = f"no attempt fits before the promised deadline (last: {outcome})"
    else:
        why = f"no attempt fits in the {_hours(rules.window)} h window (last: {outcome})"
    return JobTransition(give_up, None, made, why)


def quiet_deferral(job: CallbackJob, now: datetime, rules: CallbackRules) -> JobTransition | None:
    """A due job found inside quiet hours (the scheduler was down, or the PBX refused, when
    its slot came, or quiet hours were widened since it was planned) waits for the end of
    the quiet period instead of ringing the customer at night; its attempt count is not
    touched. It gives up when the end of the quiet period is past its window (or promise
    deadline). None when ``now`` is not quiet."""
    if not is_quiet(now, rules):
        return None
    at = next_allowed(now, rules)
    if at <= job.window_ends_at:
        return JobTransition(
            JobStatus.SCHEDULED, at, job.attempts_made, "deferred to the end of quiet hours"
        )
    if job.kind is JobKind.PROMISED:
        return JobTransition(
            JobStatus.OVERDUE,
            None,
            job.attempts_made,
            "quiet hours last past the promised deadline",
        )
    return JobTransition(
        JobStatus.EXHAUSTED,
        None,
        job.attempts_made,
        f"quiet hours last past the end of the {_hours(rules.window)} h window",
    )


def expiry(job: CallbackJob, now: datetime) -> JobTransition | None:
    """A scheduled job whose window (or promise deadline) passed before anyone could dial
    it (daemon down, PBX down) is finished here; None while it can still be dialled."""
    if job.status is not JobStatus.SCHEDULED or now <= job.window_ends_at:
        return None
    if job.kind is JobKind.PROMISED:
        return JobTransition(JobStatus.OVERDUE, None, job.attempts_made, "promised deadline passed")
    return JobTransition(
        JobStatus.EXHAUSTED, None, job.attempts_made, "callback window passed before dialling"
    )


def is_overdue(job: CallbackJob, now: datetime) -> bool:
    """A promise not kept by its deadline (reported as a violation)."""
    if job.kind is not JobKind.PROMISED or job.deadline_at is None:
        return False
    if job.status is JobStatus.OVERDUE:
        return True
    return job.status in PENDING_STATUSES and now > job.deadline_at


def cancels_on_inbound(job: CallbackJob, rules: CallbackRules) -> bool:
    """An inbound call from the customer makes a pending callback pointless; a promise
    stays (the customer calling in does not give them the answer they were promised)."""
    return job.status in PENDING_STATUSES and cancelled_when_served(
        job.kind, requested_only=False, rules=rules
    )


def cancelled_when_served(kind: JobKind, *, requested_only: bool, rules: CallbackRules) -> bool:
    """Whether a callback of ``kind`` is cancelled once its customer is served: with
    ``requested_only`` (the agent came back to them on hold) only the one they asked for,
    else any but a promise, when ``cancel_on_inbound``. The same for a job in the store
    and for a drop's callback still waiting in memory for it."""
    if requested_only:
        return kind is JobKind.REQUESTED
    return rules.cancel_on_inbound and kind is not JobKind.PROMISED


def outcome_for_originate(outcome: str, rules: CallbackRules) -> AttemptOutcome:
    """Map the PBX adapter's outcome word (``OriginateOutcome.outcome``) to an attempt outcome.
    Without machine detection an answer is a connection."""
    mapped = _ORIGINATE_OUTCOMES.get(outcome.strip().lower(), AttemptOutcome.FAILED)
    if mapped is AttemptOutcome.ANSWERED and not rules.detect_machine:
        return AttemptOutcome.CONNECTED
    return mapped


def outcome_for_verdict(verdict: str, rules: CallbackRules) -> AttemptOutcome:
    """Map an answering-machine verdict (``human``/``machine``/``notsure``) to an outcome."""
    word = verdict.strip().lower()
    if word not in {"human", "machine"}:
        word = rules.notsure_as
    return AttemptOutcome.CONNECTED if word == "human" else AttemptOutcome.MACHINE


def job_kind_for(verdict: DropVerdict) -> JobKind:
    return (
        JobKind.ONE_WAY_AUDIO
        if verdict.reason is DropReason.ONE_WAY_AUDIO
        else (JobKind.ABNORMAL_DROP)
    )


def _hours(delta: timedelta) -> int:
    return int(delta.total_seconds() // 3600)


# ------------------------------------------------------------------------------ per call


@dataclass(frozen=True, slots=True)
class CallbackCallState:
    inbound_seen: bool = False  # the customer's inbound call reached an agent (cancel done)


class CallbackDropPolicy:
    """R7 on each call, in the engine's policy shape: an inbound call from a customer that
    reaches an agent cancels their pending callbacks (``CancelCallbacks``; one given up in
    the queue does not: they still wait for the call back); when the call ends, the drop is
    classified and either a callback is requested (``RequestCallback``, reason = the
    verdict) or the decision not to call back is noted with the cause that drove it.

    Settings come from ``call.standards.callbacks`` (per queue / dialled number) when the
    engine resolved them, else from the site-wide rules given to the constructor.
    """

    name = "callbacks"
    rule = "R7"

    def __init__(
        self, drop_rules: DropRules | None = None, *, cancel_on_inbound: bool = True
    ) -> None:
        self._drop_rules = drop_rules or DropRules()
        self._cancel_on_inbound = cancel_on_inbound

    def start(self, call: Call, now: float) -> CallbackCallState | None:
        del now
        standards = call.standards
        if standards is not None and not standards.callbacks.enabled:
            return None
        return CallbackCallState()

    def step(
        self, state: CallbackCallState, event: CallEvent, call: Call, now: float
    ) -> tuple[CallbackCallState, Sequence[Command]]:
        del now
        if isinstance(event, PartiesConnected) and not state.inbound_seen:
            return CallbackCallState(inbound_seen=True), self._on_start(call)
        if isinstance(event, CallEnded):
            return state, [self._on_end(call, event)]
        return state, []

    def _on_start(self, call: Call) -> list[Command]:
        leg = call.caller_leg
        cancel = self._cancel_on_inbound
        if call.standards is not None:
            cancel = call.standards.callbacks.cancel_on_inbound
        if (
            not cancel
            or leg is None
            or leg.direction is not Direction.INBOUND
            or leg.origin is not None  # a call the daemon placed (a callback attempt)
            or not call.caller_number
        ):
            return []
        return [
            CancelCallbacks(
                number=call.caller_number,
                reason="the customer called in and reached an agent",
                trigger_call=call.id,
            )
        ]

    def _on_end(self, call: Call, event: CallEnded) -> Command:
        rules = self._drop_rules
        if call.standards is not None:
            rules = DropRules.from_standards(call.standards)
        verdict = classify_drop(event.legs, rules)
        if verdict.abnormal:
            return RequestCallback(
                number=call.caller_number,
                reason=verdict.describe(),
                trigger_call=call.id,
                cause="" if verdict.cause is None else str(verdict.cause),
            )
        return Note(
            action="no_callback",
            reason=verdict.describe(),
            fields={"cause": verdict.cause, "cause_text": verdict.cause_text},
        )


def callbacks_policy_factory(config: Config) -> CallbackDropPolicy:
    """For ``pbx_agent.daemon.POLICY_FACTORIES``. Always on: ``callbacks.enabled`` and the
    drop rules are read per call from ``call.standards``; the site's are the fallback."""
    site = config.standards_for()
    return CallbackDropPolicy(
        DropRules.from_standards(site), cancel_on_inbound=site.callbacks.cancel_on_inbound
    )

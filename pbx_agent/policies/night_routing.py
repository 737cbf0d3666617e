"""Where an inbound call goes before the queue (R5 night repeat callers, R9 flagged callers),
as a pure decision.

Theory of operation
-------------------
The dialplan asks the ``route`` hook (``pbx_agent.hooks.route``) on every inbound call; the
hook reads the caller's flag and recent interactions from the store and asks
``decide_route`` where the call goes. Rows are checked top to bottom; the first that
matches decides::

    when                                   route    reason
    -------------------------------------  -------  ---------------------
    the number is anonymous or unusable    agent    number_<why>
    a flag in force, flags enabled and a   flagged  flagged
      flagged queue configured
    local time outside the night window    agent    day
    night, rule disabled                   agent    night_rule_disabled
    night, history not read                agent    history_unknown
    night, repeat count > threshold        ivr      night_repeat_caller
    night, repeat count <= threshold       agent    night_below_threshold

(A flag that cannot route, flags disabled or no queue, is noted in the fields and the rows
below it decide.)

A flag wins over the night rule: an operator or the abuse script marked the number for the
designated queue, at any hour (R9). ``fallback`` gives the decision when the inputs could
not be had (store down, lookup past its deadline): the agent, with the reason.

The night window is ``window_start``-``window_end`` in local wall-clock time of the site's
zone, and crosses midnight when ``window_end <= window_start``. Each local date has one
night: it begins at the first instant the local clock shows ``window_start`` on that date
and ends at the first instant after that when it shows ``window_end``. That is what makes
it DST-safe: a start or end that falls in the hour the clock skips (spring) happens when
the clock jumps past it (a night starting at 02:30 on that date starts at 03:00), and one
that falls in the hour the clock repeats (autumn) happens at its first occurrence, so the
night never ends and begins again when the clock goes back.

The repeat count covers the trailing ``trailing_hours`` of elapsed time (not wall-clock
time: across a DST change "24 h" is still 24 hours) and includes an interaction that
started exactly ``trailing_hours`` ago. One call is one contact however many agents took
part in it (a transfer, a requeue after R3's farewell). With ``count_mode = "all"`` every
contact counts. With ``"per_topic_when_known"`` contacts are grouped by topic (a call that
touched two topics counts once in each), those without a
topic forming one group of their own, and the count is the largest group: with no topic
known the count is over all interactions; with every topic known it is "the same question"
(000); a mix never counts one interaction twice. The rule needs *more than* ``threshold``
(000: "более 2-х раз").

Invariants: pure (no I/O, no clock, no logging); ``now`` and every time given are
timezone-aware; every decision has a machine-readable reason (it is handed to the dialplan
as a channel variable) and fields naming its inputs, for the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pbx_agent.numbers import NormalizedNumber, Unusable

if TYPE_CHECKING:
    from pbx_agent.config.standards import FlagsRule, NightRoutingRule, Standards


# The longest stretch of local time a zone has ever skipped at once (Pacific/Apia skipped a
# whole day in 2011; DST gaps are one hour, some half an hour).
_MAX_GAP_MINUTES = 24 * 60


class Route(StrEnum):
    """Where the dialplan sends the call (``PBXAGENT_ROUTE``)."""

    AGENT = "agent"  # the normal queue
    IVR = "ivr"  # the notice, then the automatic IVR
    FLAGGED = "flagged"  # the designated queue for flagged callers


@dataclass(frozen=True, slots=True)
class PastInteraction:
    """One earlier agent-handled interaction of the caller."""

    started_at: datetime
    topic: str | None = None
    call_id: str | None = None  # the call it was part of (a transfer: several of one call)


@dataclass(frozen=True, slots=True)
class FlagInfo:
    """The caller's flag (R9)."""

    reason: str
    set_by: str
    set_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class RouteInputs:
    """What is known about the caller when the decision is taken.

    ``interactions`` is meaningful only when ``history_read``: by day the hook does not
    read the history it does not need.
    """

    number: NormalizedNumber | Unusable
    flag: FlagInfo | None = None
    interactions: tuple[PastInteraction, ...] = ()
    history_read: bool = False


@dataclass(frozen=True, slots=True)
class RouteRules:
    """The rules of one call's routing: the resolved standards plus the site's zone and the
    PBX's IVR destination (used when ``night_routing.ivr_target`` is not set)."""

    night: NightRoutingRule
    flags: FlagsRule
    zone: ZoneInfo
    default_ivr_target: str

    @classmethod
    def from_standards(
        cls, standards: Standards, zone: ZoneInfo, default_ivr_target: str
    ) -> RouteRules:
        return cls(standards.night_routing, standards.flags, zone, default_ivr_target)

    @property
    def ivr_target(self) -> str:
        return self.night.ivr_target or self.default_ivr_target

    @property
    def window(self) -> str:
        return f"{self.night.window_start:%H:%M}-{self.night.window_end:%H:%M}"


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The answer to the dialplan, with why (``reason``) and on what (``fields``)."""

    route: Route
    target: str  # the IVR destination or the flagged queue; "" for the normal queue
    reason: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    notice: str | None = None  # prompt key the caller hears before the IVR


# ------------------------------------------------------------------------------ the window


def night_bounds(day: date, rules: RouteRules) -> tuple[datetime, datetime]:
    """The night that begins on local date ``day``: its first and its end instant (UTC)."""
    return _night_bounds(day, rules.night.window_start, rules.night.window_end, rules.zone)


@lru_cache(maxsize=256)
def _night_bounds(day: date, start: time, end: time, zone: ZoneInfo) -> tuple[datetime, datetime]:
    # Every route decision asks for two nights, twice (whether to read the history, then
    # the decision); they change once a day, and finding the first instant of a local time
    # was 12 % of a decision's time (bench/route_profile.py).
    begins = first_instant(day, start, zone)
    end_day = day if end > start else day + timedelta(days=1)
    return begins, first_instant(end_day, end, zone)


def first_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the local clock of ``zone`` shows ``at`` on ``day``,
    or, if the clock skips that time on that day, the instant it jumps past it."""
    wall = datetime.combine(day, at)
    for minute in range(_MAX_GAP_MINUTES + 1):
        candidate = (wall + timedelta(minutes=minute)).replace(tzinfo=zone, fold=0)
        instant = candidate.astimezone(UTC)
        # A wall time that exists survives the round trip; fold=0 picks the first of two.
        if instant.astimezone(zone).replace(tzinfo=None) == candidate.replace(tzinfo=None):
            return instant
    msg = f"no local time {at:%H:%M} or shortly after it on {day} in {zone.key}"
    raise ValueError(msg)


def is_night(now: datetime, rules: RouteRules) -> bool:
    _require_aware(now, "now")
    today = now.astimezone(rules.zone).date()
    for day in (today - timedelta(days=1), today):
        begins, ends = night_bounds(day, rules)
        if begins <= now < ends:
            return True
    return False


def history_since(now: datetime, rules: RouteRules) -> datetime:
    """The start of the trailing window: interactions at or after it count."""
    _require_aware(now, "now")
    return now - timedelta(hours=rules.night.trailing_hours)


def needs_history(now: datetime, rules: RouteRules) -> bool:
    """Whether the decision at ``now`` depends on the caller's interaction history."""
    return rules.night.enabled and is_night(now, rules)


def needs_flag(rules: RouteRules) -> bool:
    """Whether the decision depends on the caller's flag."""
    return rules.flags.enabled and bool(rules.flags.flagged_queue)


def repeat_count(
    interactions: Iterable[PastInteraction], since: datetime, mode: str
) -> tuple[int, str | None]:
    """(count, topic of the largest group) over the interactions at or after ``since``.

    ``mode`` is ``night_routing.count_mode`` (see the module docstring).
    """
    counted = [i for i in interactions if _aware(i.started_at) >= since]
    # One call is one contact however many agents took part (a transfer, a requeue after
    # the farewell): the customer did not call again. Per topic, one per call and topic.
    contacts = {(i.topic or None, i.call_id or f"#{n}") for n, i in enumerate(counted)}
    if mode == "all":
        return len({call for _, call in contacts}), None
    groups = Counter(topic for topic, _ in contacts)
    if not groups:
        return 0, None
    # The largest group; among equals, a known topic names the count better than "unknown".
    topic, count = max(
        groups.items(), key=lambda item: (item[1], item[0] is not None, item[0] or "")
    )
    return count, topic


# ------------------------------------------------------------------------------ the decision


def decide_route(inputs: RouteInputs, now: datetime, rules: RouteRules) -> RouteDecision:
    """Where the call goes (see the transition table in the module docstring)."""
    night = is_night(now, rules)
    fields: dict[str, Any] = {
        "local_time": now.astimezone(rules.zone).isoformat(timespec="seconds"),
        "zone": rules.zone.key,
        "window": rules.window,
        "night": night,
    }
    number = inputs.number
    if isinstance(number, Unusable):
        fields["number"] = number.raw
        return RouteDecision(Route.AGENT, "", f"number_{number.reason}", fields)
    fields["number"] = number.e164
    flag = inputs.flag if inputs.flag is not None and inputs.flag.active(now) else None
    fields["flagged"] = flag is not None
    if flag is not None:
        fields["flag_set_by"] = flag.set_by
        fields["flag_reason"] = flag.reason
        queue = rules.flags.flagged_queue
        if rules.flags.enabled and queue:
            return RouteDecision(Route.FLAGGED, queue, "flagged", fields)
        fields["flag_ignored"] = "flags disabled" if not rules.flags.enabled else "no flagged_queue"
    if not night:
        return RouteDecision(Route.AGENT, "", "day", fields)
    return _at_night(inputs, now, rules, fields)


def _at_night(
    inputs: RouteInputs, now: datetime, rules: RouteRules, fields: dict[str, Any]
) -> RouteDecision:
    if not rules.night.enabled:
        return RouteDecision(Route.AGENT, "", "night_rule_disabled", fields)
    if not inputs.history_read:
        return RouteDecision(Route.AGENT, "", "history_unknown", fields)
    since = history_since(now, rules)
    count, topic = repeat_count(inputs.interactions, since, rules.night.count_mode)
    fields.update(
        count=count,
        count_topic=topic,
        count_mode=rules.night.count_mode,
        threshold=rules.night.threshold,
        trailing_hours=rules.night.trailing_hours,
        since=since.isoformat(),
    )
    if count > rules.night.threshold:
        return RouteDecision(
            Route.IVR,
            rules.ivr_target,
            "night_repeat_caller",
            fields,
            notice=rules.night.notice_prompt,
        )
    return RouteDecision(Route.AGENT, "", "night_below_threshold", fields)


def fallback(reason: str, **fields: Any) -> RouteDecision:
    """The safe answer when the decision's inputs could not be had: the normal queue."""
    return RouteDecision(Route.AGENT, "", reason, fields)


def _aware(at: datetime) -> datetime:
    _require_aware(at, "interaction time")
    return at


def _require_aware(at: datetime, what: str) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        msg = f"{what} {at.isoformat()} is a naive datetime; accepted: a timezone-aware datetime"
        raise ValueError(msg)

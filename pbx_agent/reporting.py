"""The manager's figures (R8) for a period, computed from the store, and their renderings.

``build_report(store, since, until, ...)`` reads what the daemon recorded and returns a
``Report``; ``render_table``, ``render_json`` and ``render_csv`` turn it into text. Nothing
here knows a PBX, and nothing writes.

Where each figure comes from:

- **share of calls with hold**: ``calls`` that started in the period and were **served** (an
  agent took them: every end reason but ``abandoned``, ``not_connected`` and ``unknown``, a
  call gone during a PBX link outage before an agent was seen), and among them
  those marked ``had_hold`` or having a row in ``holds`` (holds of the customer only).
  Compared with the target ``quality.hold_share_target`` (5 % in both profiles: 001 "95 % of
  calls served without hold"); callers who hung up in the queue and unanswered callbacks are
  counted in ``calls`` but are not served, so they cannot make the share look better.
- **holds**, their durations and **holds over the tier limit by agent**: ``holds`` that began
  in the period (``over_limit`` is set when the hold reached the agent's tier limit).
- **silences and talk-over** (R8 from talk detection): the ``record_fact`` decisions of the
  dead-air policy of kind ``dead_air`` (silences longer than ``quality.dead_air_s`` in a
  bridged call not on hold) and ``talk_over`` (longer than ``dead_air.talk_over_s``).
- **silent-caller, lingering and script drops, night IVR and flagged-queue routings**: the
  ``decisions`` log (``silent_caller_drop`` R2, ``lingering_drop`` R3, ``script_drop`` R4,
  ``night_ivr`` R5, ``flagged_queue`` R9).
- **callbacks**: ``callback_attempts`` dialled in the period by outcome (made = every attempt
  that reached the switch; answered = a person answered and was connected; machine = R6),
  ``callback_jobs`` created in the period, those finished in it by status (done, exhausted,
  cancelled, overdue), and the promises still open past their deadline at ``until``.

Times are timezone-aware; the period is ``[since, until)``.

Agent ids, tiers and script names are text the PBX or a caller controlled. The table and
the CSV show them through ``pbx_agent.wire.escaping.printable`` (a terminal escape or a CR
in an agent id cannot reach the terminal or forge a line); the JSON keeps them exact, with
every character that is not printable written as a ``\\uXXXX`` escape.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from pbx_agent.errors import ConfigError
from pbx_agent.policies.callbacks import (
    PENDING_STATUSES,
    AttemptOutcome,
    JobKind,
    JobStatus,
    counts_as_attempt,
)
from pbx_agent.store import Store
from pbx_agent.store.records import Decision
from pbx_agent.wire.escaping import printable

DEFAULT_HOLD_TARGET = 0.05
# End reasons of calls no agent is known to have taken
# (``pbx_agent.policies.interactions.end_reason``; ``unknown``: gone during a PBX link outage
# before any agent was seen).
_NOT_SERVED = frozenset({"abandoned", "not_connected", "unknown"})

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SPAN_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_moment(text: str, *, now: datetime, zone: tzinfo) -> datetime:
    """``24h`` / ``90m`` / ``7d`` / ``2w`` (that long before ``now``), or an ISO date or
    date-time (local to ``zone`` unless it carries its own offset).

    Seconds, minutes and hours are elapsed time (``90m`` is 90 minutes back across a clock
    change too); days and weeks are calendar days (``7d`` is the same wall time a week
    before, 167 or 169 h across a clock change)."""
    match = _SPAN.match(text)
    if match:
        unit = match.group(2)
        seconds = float(match.group(1)) * _SPAN_UNITS[unit]
        try:
            if unit in "smh":
                return (now.astimezone(UTC) - timedelta(seconds=seconds)).astimezone(now.tzinfo)
            return now - timedelta(seconds=seconds)
        except OverflowError:  # before year 1 (or past timedelta's range)
            msg = f"{text!r} reaches back before the calendar starts; accepted: a shorter length"
            raise ConfigError(msg) from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = (
            f"{text!r} is not a period start; accepted: a length back from now such as 24h, "
            "90m, 7d, 2w, or an ISO date/time such as 2025-11-01 or 2025-11-01T08:00"
        )
        raise ConfigError(msg) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


# ---------------------------------------------------------------------- the figures


@dataclass(frozen=True, slots=True)
class AgentHolds:
    """One agent's holds in the period."""

    agent: str
    tier: str
    holds: int
    over_limit: int
    longest_s: float


@dataclass(frozen=True, slots=True)
class CallFigures:
    calls: int
    with_hold: int
    hold_share: float | None  # of the served calls; None when no call was served
    hold_target: float
    target_met: bool | None
    served: int = 0  # taken by an agent: the share's denominator


@dataclass(frozen=True, slots=True)
class HoldFigures:
    holds: int
    median_s: float | None
    p90_s: float | None
    longest_s: float | None
    over_limit: int
    callback_offers_taken: int
    by_agent: tuple[AgentHolds, ...]


@dataclass(frozen=True, slots=True)
class DropFigures:
    silent_caller: int
    silent_caller_before_queue: int
    lingering: int
    scripts: dict[str, int]

    @property
    def script_total(self) -> int:
        return sum(self.scripts.values())


@dataclass(frozen=True, slots=True)
class ConversationFigures:
    """R8 from talk detection (003 §17, "抢话"): silences longer than ``quality.dead_air_s``
    in a bridged call not on hold, and both parties talking at once longer than
    ``dead_air.talk_over_s``."""

    silences: int = 0
    longest_silence_s: float | None = None
    talk_overs: int = 0
    longest_talk_over_s: float | None = None


@dataclass(frozen=True, slots=True)
class RoutingFigures:
    night_ivr: int
    flagged_queue: int


@dataclass(frozen=True, slots=True)
class CallbackFigures:
    jobs_created: dict[str, int]  # by kind
    attempts: dict[str, int]  # by outcome, every attempt dialled in the period
    made: int  # attempts that reached the switch
    answered: int  # a person answered and was connected
    machine: int
    done: int
    exhausted: int
    cancelled: int
    overdue: int  # promises that became overdue in the period
    overdue_open: int  # promises still pending past their deadline at the end of the period


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    timezone: str
    calls: CallFigures
    holds: HoldFigures
    drops: DropFigures
    routing: RoutingFigures
    callbacks: CallbackFigures
    conversation: ConversationFigures = field(default_factory=ConversationFigures)
    notes: tuple[str, ...] = field(default=())


async def build_report(
    store: Store,
    since: datetime,
    until: datetime,
    *,
    hold_target: float = DEFAULT_HOLD_TARGET,
    timezone: str = "UTC",
) -> Report:
    """The figures for ``[since, until)``. Raises ``StoreUnavailable`` if the store is down."""
    if since.tzinfo is None or until.tzinfo is None:
        msg = "report period bounds must be timezone-aware"
        raise ValueError(msg)
    if since.astimezone(UTC) >= until.astimezone(UTC):  # instants, not wall times
        msg = f"the period is empty: since {since.isoformat()} is not before {until.isoformat()}"
        raise ConfigError(msg)
    calls = await store.calls.between(since, until)
    holds = await store.holds.between(since, until)
    counts = await store.decisions.count_by_action(since, until)
    silent = await store.decisions.between(since, until, rule="R2", action="silent_caller_drop")
    scripts = await store.decisions.between(since, until, rule="R4", action="script_drop")
    facts = await store.decisions.between(since, until, rule="R1", action="record_fact")
    attempts = await store.callbacks.attempts_between(since, until)
    jobs = await store.callbacks.jobs_between(since, until)
    open_promises = await store.callbacks.overdue_promises(until)

    held_calls = {h.call_id for h in holds}
    served = [c for c in calls if c.end_reason not in _NOT_SERVED]
    with_hold = sum(1 for c in served if c.had_hold or c.call_id in held_calls)
    share = with_hold / len(served) if served else None
    call_figures = CallFigures(
        calls=len(calls),
        with_hold=with_hold,
        hold_share=share,
        hold_target=hold_target,
        target_met=None if share is None else share <= hold_target,
        served=len(served),
    )

    durations = sorted(
        (h.ended_at - h.started_at).total_seconds() for h in holds if h.ended_at is not None
    )
    hold_figures = HoldFigures(
        holds=len(holds),
        median_s=_percentile(durations, 0.5),
        p90_s=_percentile(durations, 0.9),
        longest_s=durations[-1] if durations else None,
        over_limit=sum(1 for h in holds if h.over_limit),
        callback_offers_taken=sum(1 for h in holds if h.callback_offer_taken),
        by_agent=_by_agent(holds),
    )

    stages = Counter(str(d.details.get("stage") or "call") for d in silent)
    script_drops = Counter(str(d.details.get("script") or "unknown") for d in scripts)
    drop_figures = DropFigures(
        silent_caller=counts.get(("R2", "silent_caller_drop"), 0),
        silent_caller_before_queue=stages.get("entry", 0),
        lingering=counts.get(("R3", "lingering_drop"), 0),
        scripts=dict(sorted(script_drops.items())),
    )
    routing = RoutingFigures(
        night_ivr=counts.get(("R5", "night_ivr"), 0),
        flagged_queue=counts.get(("R9", "flagged_queue"), 0),
    )

    outcomes = Counter(str(a.outcome) for a in attempts)
    finished = Counter(
        str(j.status) for j in jobs if j.finished_at is not None and since <= j.finished_at < until
    )
    created = Counter(str(j.kind) for j in jobs if since <= j.created_at < until)
    callback_figures = CallbackFigures(
        jobs_created={str(k): created.get(str(k), 0) for k in JobKind},
        attempts={str(o): outcomes.get(str(o), 0) for o in AttemptOutcome},
        made=sum(n for o, n in outcomes.items() if counts_as_attempt(AttemptOutcome(o))),
        answered=outcomes.get(str(AttemptOutcome.CONNECTED), 0),
        machine=outcomes.get(str(AttemptOutcome.MACHINE), 0),
        done=finished.get(str(JobStatus.DONE), 0),
        exhausted=finished.get(str(JobStatus.EXHAUSTED), 0),
        cancelled=finished.get(str(JobStatus.CANCELLED), 0),
        overdue=finished.get(str(JobStatus.OVERDUE), 0),
        overdue_open=sum(1 for j in open_promises if j.status in PENDING_STATUSES),
    )
    conversation = _conversation(facts)
    notes: list[str] = []
    if not calls and (holds or attempts or counts):
        notes.append(
            "no call records in the period although other facts exist: the share of calls "
            "with hold needs the call records (R8 call facts)"
        )
    return Report(
        since=since,
        until=until,
        timezone=timezone,
        calls=call_figures,
        holds=hold_figures,
        drops=drop_figures,
        routing=routing,
        callbacks=callback_figures,
        conversation=conversation,
        notes=tuple(notes),
    )


def _conversation(facts: Sequence[Decision]) -> ConversationFigures:
    """The dead-air policy's ``dead_air`` and ``talk_over`` facts (their decisions)."""
    lengths: dict[str, list[float]] = {"dead_air": [], "talk_over": []}
    for fact in facts:
        kind = fact.details.get("kind")
        fields = fact.details.get("fields")
        if kind not in lengths or not isinstance(fields, Mapping):
            continue
        value = fields.get("silent_s" if kind == "dead_air" else "overlap_s")
        lengths[str(kind)].append(float(value) if isinstance(value, int | float) else 0.0)
    silences, overlaps = lengths["dead_air"], lengths["talk_over"]
    return ConversationFigures(
        silences=len(silences),
        longest_silence_s=max(silences, default=None),
        talk_overs=len(overlaps),
        longest_talk_over_s=max(overlaps, default=None),
    )


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _by_agent(holds: Iterable[Any]) -> tuple[AgentHolds, ...]:
    per: dict[str, list[Any]] = {}
    for hold in holds:
        per.setdefault(hold.agent or "(unknown)", []).append(hold)
    rows = []
    for agent, own in per.items():
        tiers = Counter(h.tier or "" for h in own)
        longest = max(
            ((h.ended_at - h.started_at).total_seconds() for h in own if h.ended_at is not None),
            default=0.0,
        )
        rows.append(
            AgentHolds(
                agent=agent,
                tier=tiers.most_common(1)[0][0],
                holds=len(own),
                over_limit=sum(1 for h in own if h.over_limit),
                longest_s=longest,
            )
        )
    rows.sort(key=lambda r: (-r.over_limit, -r.holds, r.agent))
    return tuple(rows)


# ---------------------------------------------------------------------- renderings


def as_dict(report: Report) -> dict[str, Any]:
    data = asdict(report)
    data["since"] = report.since.isoformat()
    data["until"] = report.until.isoformat()
    data["drops"]["script_total"] = report.drops.script_total
    data["holds"]["by_agent"] = [asdict(a) for a in report.holds.by_agent]
    data["notes"] = list(report.notes)
    return data


def render_json(report: Report) -> str:
    # json.dumps escapes C0 controls but writes C1 controls, bidi overrides, line separators
    # and lone surrogates raw; outside strings it writes only spaces and the indent's LF.
    text = json.dumps(as_dict(report), ensure_ascii=False, indent=2)
    return "".join(ch if ch.isprintable() or ch == "\n" else _json_escape(ch) for ch in text) + "\n"


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(section, figure, key, value) rows: the CSV rendering, one figure a line."""
    out: list[tuple[str, str, str, str]] = []

    def add(section: str, figure: str, value: object, key: str = "") -> None:
        out.append((section, figure, key, _plain(value)))

    c = report.calls
    add("period", "since", report.since.isoformat())
    add("period", "until", report.until.isoformat())
    add("calls", "calls", c.calls)
    add("calls", "served", c.served)
    add("calls", "with_hold", c.with_hold)
    add("calls", "hold_share", c.hold_share)
    add("calls", "hold_target", c.hold_target)
    add("calls", "target_met", c.target_met)
    h = report.holds
    add("holds", "holds", h.holds)
    add("holds", "median_s", h.median_s)
    add("holds", "p90_s", h.p90_s)
    add("holds", "longest_s", h.longest_s)
    add("holds", "over_limit", h.over_limit)
    add("holds", "callback_offers_taken", h.callback_offers_taken)
    for agent in h.by_agent:
        add("holds", "agent_holds", agent.holds, printable(agent.agent))
        add("holds", "agent_over_limit", agent.over_limit, printable(agent.agent))
    d = report.drops
    add("drops", "silent_caller", d.silent_caller)
    add("drops", "silent_caller_before_queue", d.silent_caller_before_queue)
    add("drops", "lingering", d.lingering)
    add("drops", "scripts", d.script_total)
    for script, count in d.scripts.items():
        add("drops", "script", count, printable(script))
    v = report.conversation
    add("conversation", "silences", v.silences)
    add("conversation", "longest_silence_s", v.longest_silence_s)
    add("conversation", "talk_overs", v.talk_overs)
    add("conversation", "longest_talk_over_s", v.longest_talk_over_s)
    add("routing", "night_ivr", report.routing.night_ivr)
    add("routing", "flagged_queue", report.routing.flagged_queue)
    cb = report.callbacks
    for kind, count in cb.jobs_created.items():
        add("callbacks", "jobs_created", count, kind)
    add("callbacks", "made", cb.made)
    add("callbacks", "answered", cb.answered)
    add("callbacks", "machine", cb.machine)
    for outcome, count in cb.attempts.items():
        add("callbacks", "attempts", count, outcome)
    add("callbacks", "done", cb.done)
    add("callbacks", "exhausted", cb.exhausted)
    add("callbacks", "cancelled", cb.cancelled)
    add("callbacks", "overdue", cb.overdue)
    add("callbacks", "overdue_open", cb.overdue_open)
    return out


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "figure", "key", "value"))
    writer.writerows(rows(report))
    return buffer.getvalue()


def render_table(report: Report, zone: tzinfo | None = None) -> str:
    """A plain-text table for a terminal."""
    local = zone or report.since.tzinfo

    def when(moment: datetime) -> str:
        return moment.astimezone(local).strftime("%Y-%m-%d %H:%M")

    lines: list[str] = [
        f"pbx-agent report  {when(report.since)} - {when(report.until)} ({report.timezone})",
        "",
    ]
    c = report.calls
    target = f"target <= {c.hold_target:.0%}"
    if c.hold_share is None:
        share = f"- (no calls served; {target})"
    else:
        verdict = "met" if c.target_met else "NOT MET"
        share = f"{c.hold_share:.1%} ({c.with_hold} of {c.served} served; {target}: {verdict})"
    h = report.holds
    d = report.drops
    cb = report.callbacks
    v = report.conversation
    table: list[tuple[str, str]] = [
        ("Calls", f"{c.calls} ({c.served} served by an agent)"),
        ("Calls with hold", share),
        ("Holds", str(h.holds)),
        (
            "Hold duration",
            (
                f"median {_seconds(h.median_s)}, 90 % {_seconds(h.p90_s)}, "
                f"longest {_seconds(h.longest_s)}"
            ),
        ),
        ("Holds over the tier limit", str(h.over_limit)),
        ("Callback offers taken on hold", str(h.callback_offers_taken)),
        (
            "Silences over the limit, not on hold",
            f"{v.silences} (longest {_seconds(v.longest_silence_s)})",
        ),
        (
            "Talk-over (both speaking)",
            f"{v.talk_overs} (longest {_seconds(v.longest_talk_over_s)})",
        ),
        (
            "Silent callers dropped",
            f"{d.silent_caller} ({d.silent_caller_before_queue} before the queue)",
        ),
        ("Lingering callers dropped", str(d.lingering)),
        ("Script drops", _script_text(d)),
        ("Night repeat callers to the IVR", str(report.routing.night_ivr)),
        ("Flagged callers to their queue", str(report.routing.flagged_queue)),
        ("Callbacks requested", str(sum(cb.jobs_created.values()))),
        ("Callback attempts made", str(cb.made)),
        ("  answered by a person", str(cb.answered)),
        ("  answering machine", str(cb.machine)),
        (
            "  busy / no answer / rejected / failed",
            " / ".join(
                str(cb.attempts.get(o, 0)) for o in ("busy", "no_answer", "rejected", "failed")
            ),
        ),
        ("Callbacks the switch refused (not made)", str(cb.attempts.get("refused", 0))),
        ("Callbacks done", str(cb.done)),
        ("Callbacks exhausted", str(cb.exhausted)),
        ("Callbacks cancelled (customer called)", str(cb.cancelled)),
        ("Promised callbacks overdue", f"{cb.overdue} (still open: {cb.overdue_open})"),
    ]
    width = max(len(label) for label, _ in table)
    lines.extend(f"{label:<{width}}  {value}" for label, value in table)
    if h.by_agent:
        lines += ["", "Holds by agent (over the tier limit first)"]
        header = ("agent", "tier", "holds", "over limit", "longest")
        body = [
            (
                printable(a.agent),
                printable(a.tier) or "-",
                str(a.holds),
                str(a.over_limit),
                _seconds(a.longest_s),
            )
            for a in h.by_agent
        ]
        widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
        for row in (header, *body):
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for note in report.notes:
        lines += ["", f"note: {note}"]
    return "\n".join(lines) + "\n"


def _script_text(drops: DropFigures) -> str:
    if not drops.scripts:
        return "0"
    parts = ", ".join(f"{printable(name)} {count}" for name, count in drops.scripts.items())
    return f"{drops.script_total} ({parts})"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes}:{seconds:02d}" if minutes else f"{seconds} s"


def _plain(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    return str(value)

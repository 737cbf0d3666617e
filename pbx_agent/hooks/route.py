"""The ``route`` dialplan hook: before the queue, where does this caller go? (R5 night repeat
callers to the IVR, R9 flagged callers to their queue, everyone else to an agent.)

The dialplan calls it on every inbound call and branches on the answer (see
``dialplan/asterisk/pbx-agent-inbound.conf`` and ``docs/night-routing.md``)::

    same => n,AGI(agi://127.0.0.1:4573/route?queue=support)
    same => n,GotoIf($["${PBXAGENT_ROUTE}" = "ivr"]?ivr)
    same => n,GotoIf($["${PBXAGENT_ROUTE}" = "flagged"]?flagged)
    same => n,Queue(support)

Answer, in channel variables: ``PBXAGENT_ROUTE`` (``agent`` | ``ivr`` | ``flagged``),
``PBXAGENT_ROUTE_TARGET`` (the IVR destination or the flagged queue; not set for
``agent``), ``PBXAGENT_ROUTE_REASON`` (why, a word such as ``night_repeat_caller``), and for
``ivr`` ``PBXAGENT_NOTICE``, the sound the caller hears first (the profile's
``night.notice``). ``PBXAGENT_ROUTE`` is set last, so a dialplan never sees a route whose
target or notice is missing.

Theory of operation. ``RouteDecider`` normalises the caller's number (site region), reads
what the decision needs from the store (the flag when flags can route; the trailing
interaction history only at night) under the *lookup budget*, a share of the hook's
deadline (``night_routing.deadline_ms``, default 50 ms) that leaves time to set the
variables, and asks the pure ``decide_route`` (``pbx_agent.policies.night_routing``). A
store error, a lookup past its budget, an anonymous or unparsable number: the answer is
``agent`` with the reason. If the hook as a whole still overruns its deadline or fails,
the FastAGI server runs the safe default, which sets ``PBXAGENT_ROUTE=agent``.

Invariants: the hook never holds a call past its deadline nor sends anyone to the IVR on a
guess; exactly one ``route_decision`` log event per call, with the decision's inputs
(number, flag, count, window, local time) and how long it took, also recorded as one of the
daemon's decisions (``night_routing``: ``night_ivr`` R5, ``flagged_queue`` R9,
``route_agent``) so the figures count night IVR routings; every value set comes from the
configuration or the decision, never from the caller.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from pbx_agent.clock import Clock, to_datetime
from pbx_agent.config.settings import AsteriskContexts
from pbx_agent.errors import StoreUnavailable
from pbx_agent.model import commands as cmd
from pbx_agent.model.hooks import HookSession, HookSpec
from pbx_agent.numbers import Unusable, normalize
from pbx_agent.policies.night_routing import (
    FlagInfo,
    PastInteraction,
    Route,
    RouteDecision,
    RouteInputs,
    RouteRules,
    decide_route,
    fallback,
    history_since,
    needs_flag,
    needs_history,
)
from pbx_agent.prompts import sound_name

if TYPE_CHECKING:
    from pbx_agent.config import Config, Standards
    from pbx_agent.daemon import Daemon
    from pbx_agent.store import Store

log = structlog.get_logger("pbx_agent.hooks.route")

HOOK_NAME = "route"
ROUTE_VARIABLE = "PBXAGENT_ROUTE"
TARGET_VARIABLE = "PBXAGENT_ROUTE_TARGET"
REASON_VARIABLE = "PBXAGENT_ROUTE_REASON"
NOTICE_VARIABLE = "PBXAGENT_NOTICE"
FALLBACK_REASON = "daemon_fallback"
# Shadow mode: the decision is logged, the call takes the normal route.
SHADOW_REASON = "shadow"
# Share of the hook's deadline the store lookups may take; the rest sets the variables.
LOOKUP_SHARE = 0.6
# A caller's history is read newest first up to this many rows: far above any threshold
# (at most 100), and it bounds the read for a number that calls all night.
MAX_HISTORY_ROWS = 1000


class RouteLookup(Protocol):
    """What the decision reads from the store: the number's flag (when ``with_flag``) and its
    interactions since ``since`` (when given), newest first, in one go."""

    async def read(
        self, number: str, now: datetime, *, with_flag: bool, since: datetime | None
    ) -> tuple[FlagInfo | None, list[PastInteraction]]: ...


class StoreRouteLookup:
    """``RouteLookup`` on the daemon's store: both reads in one go on the store's low-latency
    path (``pbx_agent.store.hot``), each on an index: the flags' primary key and
    ``interactions (number, started_at)``."""

    def __init__(self, store: Store, *, max_rows: int = MAX_HISTORY_ROWS) -> None:
        self._store = store
        self._max_rows = max_rows

    async def read(
        self, number: str, now: datetime, *, with_flag: bool, since: datetime | None
    ) -> tuple[FlagInfo | None, list[PastInteraction]]:
        if not with_flag and since is None:
            return None, []
        hot = self._store.hot
        if hot is None:
            msg = "the store has no low-latency read path (it was not opened with Store.open)"
            raise StoreUnavailable(msg)
        row, rows = await hot.flag_and_history(
            number, with_flag=with_flag, since=since, max_rows=self._max_rows
        )
        flag: FlagInfo | None = None
        if row is not None:
            found = FlagInfo(row.reason, row.set_by, row.set_at, row.expires_at)
            flag = found if found.active(now) else None
        return flag, [
            PastInteraction(started_at, topic, call_id) for started_at, topic, call_id in rows
        ]


def default_ivr_target(config: Config, pbx: str) -> str:
    """Where the PBX's IVR is when ``night_routing.ivr_target`` is not set."""
    if pbx == "freeswitch" and config.freeswitch is not None:
        return config.freeswitch.ivr_extension
    if config.asterisk is not None:
        return config.asterisk.contexts.ivr
    return AsteriskContexts().ivr


class RouteDecider:
    """Reads the decision's inputs under a budget and decides. Used by the hook and by the
    benchmark (``bench/route_bench.py``)."""

    def __init__(
        self,
        config: Config,
        lookup: RouteLookup,
        clock: Clock,
        *,
        pbx: str,
        standards: Callable[[str | None, str | None], Standards] | None = None,
    ) -> None:
        self._standards = standards or config.standards_for
        self._lookup = lookup
        self._clock = clock
        self._zone = config.site.zone
        self._region = config.site.default_region
        self._ivr_target = default_ivr_target(config, pbx)

    def rules_for(self, queue: str | None, dialed: str | None) -> RouteRules:
        standards = self._standards(queue, dialed)
        return RouteRules.from_standards(standards, self._zone, self._ivr_target)

    async def decide(
        self,
        caller_number: str,
        *,
        queue: str | None = None,
        dialed: str | None = None,
        budget_s: float,
    ) -> RouteDecision:
        now = to_datetime(self._clock.now())
        rules = self.rules_for(queue, dialed)
        number = normalize(caller_number, self._region)
        if isinstance(number, Unusable):
            return decide_route(RouteInputs(number), now, rules)
        read_history = needs_history(now, rules)
        try:
            async with asyncio.timeout(budget_s):
                flag, past = await self._lookup.read(
                    number.e164,
                    now,
                    with_flag=needs_flag(rules),
                    since=history_since(now, rules) if read_history else None,
                )
        except TimeoutError:
            return fallback(
                "lookup_deadline", number=number.e164, budget_ms=round(budget_s * 1000, 1)
            )
        except StoreUnavailable as exc:
            return fallback("store_unavailable", number=number.e164, error=str(exc))
        inputs = RouteInputs(number, flag, tuple(past), history_read=read_history)
        return decide_route(inputs, now, rules)


# How each route is recorded among the daemon's decisions: (rule, action).
DECISION_ACTIONS: dict[Route, tuple[str, str]] = {
    Route.AGENT: ("R5", "route_agent"),
    Route.IVR: ("R5", "night_ivr"),
    Route.FLAGGED: ("R9", "flagged_queue"),
}
POLICY = "night_routing"

Decide = Callable[[str, cmd.Note, HookSession], None]


class RouteHook:
    """The ``route`` hook's handler and safe default. See the module docstring."""

    def __init__(
        self,
        decider: RouteDecider,
        *,
        sounds: Callable[[str], str],
        deadline_s: float,
        lookup_share: float = LOOKUP_SHARE,
        decide: Decide | None = None,
        shadow: bool = False,
    ) -> None:
        self._shadow = shadow
        self._decider = decider
        self._sounds = sounds
        self._decide = decide
        self.deadline_s = deadline_s
        self.lookup_budget_s = deadline_s * lookup_share
        # Sessions whose decision has been logged: the safe default does not log another.
        self._logged: weakref.WeakSet[Any] = weakref.WeakSet()

    def spec(self) -> HookSpec:
        return HookSpec(
            name=HOOK_NAME, handler=self, deadline_s=self.deadline_s, on_timeout=self.safe_default
        )

    async def __call__(self, session: HookSession) -> None:
        started = time.perf_counter()
        decision = await self._decider.decide(
            session.caller_number,
            queue=session.params.get("queue") or None,
            dialed=session.dialed or None,
            budget_s=self.lookup_budget_s,
        )
        if self._shadow:
            # Decided and logged as it would be, but the call takes the normal route.
            self._log(session, decision, started, applied=False)
            await session.set_variable(REASON_VARIABLE, SHADOW_REASON)
            await session.set_variable(ROUTE_VARIABLE, Route.AGENT)
            return
        try:
            await self._apply(session, decision)
        except BaseException as exc:  # the deadline cancelled it, or the channel went away
            self._log(session, decision, started, applied=False, apply_error=repr(exc))
            raise
        self._log(session, decision, started, applied=True)

    async def _apply(self, session: HookSession, decision: RouteDecision) -> None:
        if decision.target:
            await session.set_variable(TARGET_VARIABLE, decision.target)
        await session.set_variable(REASON_VARIABLE, decision.reason)
        if decision.route is Route.IVR and decision.notice is not None:
            await session.set_variable(NOTICE_VARIABLE, self._sounds(decision.notice))
        await session.set_variable(ROUTE_VARIABLE, decision.route)

    async def safe_default(self, session: HookSession) -> None:
        """The dialplan goes to the normal queue, as if the daemon were absent."""
        if session not in self._logged:
            self._log(session, fallback(FALLBACK_REASON), None, applied=True)
        await session.set_variable(REASON_VARIABLE, FALLBACK_REASON)
        await session.set_variable(ROUTE_VARIABLE, Route.AGENT)

    def _log(
        self,
        session: HookSession,
        decision: RouteDecision,
        started: float | None,
        *,
        applied: bool,
        apply_error: str | None = None,
    ) -> None:
        self._logged.add(session)
        fields: dict[str, Any] = dict(decision.fields)
        fields.setdefault("number", session.caller_number)
        if apply_error is not None:
            fields["apply_error"] = apply_error
        elapsed_ms = None if started is None else round((time.perf_counter() - started) * 1000, 2)
        log.info(
            "route_decision",
            call_id=session.call,
            channel=session.channel,
            route=str(decision.route),
            target=decision.target,
            reason=decision.reason,
            notice=decision.notice,
            applied=applied,
            elapsed_ms=elapsed_ms,
            **fields,
        )
        if self._decide is not None:
            rule, action = DECISION_ACTIONS[decision.route]
            note = cmd.Note(
                action,
                decision.reason,
                {
                    "route": str(decision.route),
                    "target": decision.target,
                    "notice": decision.notice,
                    "applied": applied,
                    "elapsed_ms": elapsed_ms,
                    **fields,
                },
            )
            self._decide(rule, note, session)


def route_hook(
    config: Config,
    lookup: RouteLookup,
    clock: Clock,
    *,
    pbx: str,
    decide: Decide | None = None,
    standards: Callable[[str | None, str | None], Standards] | None = None,
    shadow: bool = False,
) -> RouteHook:
    """The hook for this configuration (deadline: the site's ``night_routing.deadline_ms``);
    ``standards`` resolves a call's standards (default: ``config``'s, fixed)."""
    deadline_s = config.standards_for().night_routing.deadline_ms / 1000.0
    return RouteHook(
        RouteDecider(config, lookup, clock, pbx=pbx, standards=standards),
        sounds=lambda key: sound_name(config, key, pbx),
        deadline_s=deadline_s,
        decide=decide,
        shadow=shadow,
    )


def route_hook_factory(daemon: Daemon) -> HookSpec | None:
    """For ``pbx_agent.daemon.HOOK_FACTORIES``: the hook on the daemon's store and clock."""
    if daemon.store is None or daemon.clock is None:
        log.warning("route_hook_disabled", reason="the daemon has no store or clock")
        return None
    pbx = "asterisk" if daemon.config.pbx.kind == "simulated" else daemon.config.pbx.kind
    engine = daemon.engine

    def decide(rule: str, note: cmd.Note, session: HookSession) -> None:
        call = engine.model.calls.get(session.call) or engine.model.call_of(session.leg)
        engine.record_decision(note, call=call, rule=rule, policy=POLICY)

    lookup = StoreRouteLookup(daemon.store)
    return route_hook(
        daemon.config,
        lookup,
        daemon.clock,
        pbx=pbx,
        decide=decide,
        # Through the daemon, so a reload (SIGHUP) reaches the hook too.
        standards=daemon.hook_standards,
        shadow=daemon.config.shadow,
    ).spec()

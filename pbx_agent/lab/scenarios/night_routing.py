"""Scenarios for R5 (night repeat callers) and R9 (flagged callers): the dialplan's ``route``
hook, asked over real FastAGI by the fake switch on an inbound call, answers from the
daemon's store.

The caller's history is written into the daemon's store the way the facts sink leaves it
(three agent-handled interactions in the last 24 h: more than the threshold of 2), and the
flag the way ``pbx-agent flags add`` leaves it, so each scenario starts from a known past.
The lab's clock runs faster than real time and the hook's deadline is read on it, so the
scenarios give the decision 5 virtual seconds (``night_routing.deadline_ms = 5000``), which
is a few hundred real milliseconds: the store's real latency must not decide the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pbx_agent.clock import to_datetime
from pbx_agent.hooks.route import (
    NOTICE_VARIABLE,
    POLICY,
    REASON_VARIABLE,
    ROUTE_VARIABLE,
    TARGET_VARIABLE,
)
from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.store import CallerFlag, Interaction, Store

CALLER = "89161234567"  # as the network presents it; the store keys it as +79161234567
E164 = "+79161234567"
LAB_CONFIG: Mapping[str, Any] = {"standards": {"night_routing": {"deadline_ms": 5000}}}


def _store(ctx: LabContext) -> Store:
    store = ctx.daemon.store
    if store is None:
        msg = "the daemon has no store"
        raise AssertionError(msg)
    return store


async def _served_three_times(ctx: LabContext) -> None:
    """Three agent-handled interactions in the last 24 h: yesterday evening and tonight."""
    store = _store(ctx)
    now = to_datetime(ctx.daemon.engine.clock.now())
    for hours_ago, topic in ((20, "tariff"), (3, "tariff"), (1, "tariff")):
        started = now - timedelta(hours=hours_ago)
        await store.interactions.add(
            Interaction(
                number=E164,
                started_at=started,
                ended_at=started + timedelta(minutes=4),
                agent="agent-1001",
                queue="support",
                topic=topic,
            )
        )


async def _route(ctx: LabContext) -> dict[str, str]:
    caller = await ctx.pbx.inbound_call(CALLER, "Иван")
    variables = await caller.run_hook("route", {"queue": "support"})
    ctx.note(
        f"{ROUTE_VARIABLE}={variables.get(ROUTE_VARIABLE)} "
        f"reason={variables.get(REASON_VARIABLE)} target={variables.get(TARGET_VARIABLE)}"
    )
    await caller.hangup()
    return variables


def _require(variables: Mapping[str, str], **expected: str) -> None:
    wrong = {k: variables.get(k) for k, v in expected.items() if variables.get(k) != v}
    if wrong:
        msg = f"the route hook set {dict(variables)}; expected {expected}"
        raise AssertionError(msg)


async def night_repeat_caller(ctx: LabContext) -> None:
    """At 23:30 a caller served three times in 24 h hears the notice and goes to the IVR."""
    await _served_three_times(ctx)
    variables = await _route(ctx)
    # The IVR is a context on Asterisk, an extension on FreeSWITCH (their default names).
    ivr = "pbxagent_ivr" if ctx.pbx.name == "freeswitch" else "pbxagent-ivr"
    _require(
        variables,
        PBXAGENT_ROUTE="ivr",
        PBXAGENT_ROUTE_TARGET=ivr,
        PBXAGENT_ROUTE_REASON="night_repeat_caller",
    )
    notice = variables.get(NOTICE_VARIABLE, "")
    if not notice.removesuffix(".wav").endswith("night-notice"):
        msg = f"the IVR route must carry the notice; {NOTICE_VARIABLE}={notice!r}"
        raise AssertionError(msg)


async def repeat_caller_by_day(ctx: LabContext) -> None:
    """The same history at 13:00: the caller goes to an agent as usual."""
    await _served_three_times(ctx)
    _require(await _route(ctx), PBXAGENT_ROUTE="agent", PBXAGENT_ROUTE_REASON="day")


async def flagged_caller(ctx: LabContext) -> None:
    """A number an operator flagged goes to the flagged queue, by day as by night."""
    now = to_datetime(ctx.daemon.engine.clock.now())
    await _store(ctx).flags.set(
        CallerFlag(E164, "abusive on 3 calls", "operator:ivanova", set_at=now - timedelta(days=1))
    )
    _require(
        await _route(ctx),
        PBXAGENT_ROUTE="flagged",
        PBXAGENT_ROUTE_TARGET="flagged",
        PBXAGENT_ROUTE_REASON="flagged",
    )


async def store_unavailable(ctx: LabContext) -> None:
    """The database answers every read with an error: the call goes to an agent at once."""
    await _served_three_times(ctx)
    store = _store(ctx)
    async with store.db.write("lab: break the flags table") as conn:
        await conn.exec_driver_sql("ALTER TABLE caller_flags RENAME TO caller_flags_away")
    try:
        _require(
            await _route(ctx), PBXAGENT_ROUTE="agent", PBXAGENT_ROUTE_REASON="store_unavailable"
        )
    finally:
        async with store.db.write("lab: mend the flags table") as conn:
            await conn.exec_driver_sql("ALTER TABLE caller_flags_away RENAME TO caller_flags")


SCENARIOS = [
    Scenario(
        name="night_repeat_caller_ivr",
        title="R5: at night a caller served 3 times in 24 h hears the notice, goes to the IVR",
        rule="R5",
        run=night_repeat_caller,
        expect=((POLICY, "night_ivr"),),
        forbid=((POLICY, "route_agent"),),
        expect_events=("route_decision",),
        config=LAB_CONFIG,
        at_local_time="23:30",
    ),
    Scenario(
        name="repeat_caller_by_day_agent",
        title="R5: the same caller by day goes to an agent",
        rule="R5",
        run=repeat_caller_by_day,
        expect=((POLICY, "route_agent"),),
        forbid=((POLICY, "night_ivr"),),
        expect_events=("route_decision",),
        config=LAB_CONFIG,
        at_local_time="13:00",
    ),
    Scenario(
        name="flagged_caller_queue",
        title="R9: a flagged caller goes to the flagged queue",
        rule="R9",
        run=flagged_caller,
        expect=((POLICY, "flagged_queue"),),
        expect_events=("route_decision",),
        config=LAB_CONFIG,
        at_local_time="13:00",
    ),
    Scenario(
        name="route_store_unavailable_agent",
        title="R5: with the store failing, a night repeat caller still reaches an agent",
        rule="R5",
        run=store_unavailable,
        expect=((POLICY, "route_agent"),),
        forbid=((POLICY, "night_ivr"),),
        expect_events=("route_decision",),
        config=LAB_CONFIG,
        at_local_time="23:30",
    ),
]

"""The ``route`` hook over real loopback FastAGI: the fake Asterisk runs AGI(.../route) on an
inbound channel, the daemon answers from a real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import ManualClock
from pbx_agent.config import Config
from pbx_agent.hooks.route import (
    NOTICE_VARIABLE,
    REASON_VARIABLE,
    ROUTE_VARIABLE,
    TARGET_VARIABLE,
    RouteHook,
    StoreRouteLookup,
    route_hook,
)
from pbx_agent.model.commands import Note
from pbx_agent.model.hooks import HookRegistry
from pbx_agent.pbx.fastagi import FastAgiServer
from pbx_agent.policies.night_routing import FlagInfo, PastInteraction
from pbx_agent.store import CallerFlag, Interaction, Store
from pbx_agent.testing.fake_asterisk import AgiResult, FakeAsterisk, Leg

MOSCOW = ZoneInfo("Europe/Moscow")
NIGHT = datetime(2026, 6, 10, 23, 0, tzinfo=MOSCOW)
DAY = datetime(2026, 6, 10, 13, 0, tzinfo=MOSCOW)
E164 = "+79161234567"
# Generous next to the default 50 ms so a busy test machine does not decide the outcome;
# the deadline tests below set their own.
DEADLINE_MS = 2000


def config(**night: Any) -> Config:
    return Config.model_validate(
        {"standards": {"night_routing": {"deadline_ms": DEADLINE_MS, **night}}}
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'pbx-agent.sqlite3'}")
    await opened.upgrade()
    try:
        yield opened
    finally:
        await opened.close()


async def add_interactions(store: Store, now: datetime, *hours_ago: float) -> None:
    for hours in hours_ago:
        await store.interactions.add(
            Interaction(number=E164, started_at=now - timedelta(hours=hours), agent="alice")
        )


@dataclass
class Lab:
    pbx: FakeAsterisk
    server: FastAgiServer
    hook: RouteHook

    async def call(self, caller: str, query: str = "queue=support") -> tuple[Leg, AgiResult]:
        leg = await self.pbx.inbound_call(caller=caller, exten="100")
        result = await self.pbx.agi(leg, f"agi://127.0.0.1:{self.server.port}/route?{query}")
        return leg, result


@contextlib.asynccontextmanager
async def started(hook: RouteHook) -> AsyncIterator[Lab]:
    """The fake Asterisk and the daemon's FastAGI server with the route hook."""
    async with FakeAsterisk() as pbx:
        server = FastAgiServer(HookRegistry({"route": hook.spec()}), port=0)
        async with server:
            yield Lab(pbx, server, hook)


async def run(hook: RouteHook, caller: str, query: str = "queue=support") -> tuple[Leg, AgiResult]:
    async with started(hook) as lab:
        return await lab.call(caller, query)


def variables(result: AgiResult) -> dict[str, str]:
    return dict(result.variables_set)


def hook_at(store: Store, now: datetime, cfg: Config | None = None) -> RouteHook:
    clock = ManualClock(now.timestamp())
    return route_hook(cfg or config(), StoreRouteLookup(store), clock, pbx="asterisk")


def decisions(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "route_decision"]


# ------------------------------------------------------------------------------ routes


async def test_a_night_call_after_three_handled_ones_goes_to_the_ivr_after_the_notice(
    store: Store,
) -> None:
    """Three handled interactions in the last 24 h (more than 2): ivr, target and notice set."""
    await add_interactions(store, NIGHT, 1, 6, 20)
    with capture_logs() as logs:
        _, result = await run(hook_at(store, NIGHT), "89161234567")
    assert variables(result) == {
        TARGET_VARIABLE: "pbxagent-ivr",
        REASON_VARIABLE: "night_repeat_caller",
        NOTICE_VARIABLE: "pbx-agent/ru/night-notice",
        ROUTE_VARIABLE: "ivr",
    }
    assert result.verbs[-1] == "SET VARIABLE"
    assert result.commands[-1].args[0] == ROUTE_VARIABLE  # the route is set last
    [logged] = decisions(logs)
    assert (logged["route"], logged["count"], logged["number"], logged["flagged"]) == (
        "ivr",
        3,
        E164,
        False,
    )
    assert logged["window"] == "22:00-08:00"


async def test_one_call_passed_between_three_agents_is_one_contact(store: Store) -> None:
    """A call transferred alice -> bob -> carol left three interaction rows of one call:
    one contact, so the customer's next night call goes to an agent."""
    now = NIGHT.astimezone(UTC)
    for minutes, agent in ((60, "alice"), (55, "bob"), (50, "carol")):
        started = now - timedelta(minutes=minutes)
        await store.interactions.add(
            Interaction(number=E164, started_at=started, agent=agent, call_id="call-1")
        )
    with capture_logs() as logs:
        _, result = await run(hook_at(store, NIGHT), "89161234567")
    assert variables(result)[ROUTE_VARIABLE] == "agent"
    [logged] = decisions(logs)
    assert logged["count"] == 1


async def test_the_same_caller_by_day_goes_to_an_agent(store: Store) -> None:
    """By day the history is not even read: agent, reason day."""
    await add_interactions(store, DAY, 1, 2, 3)
    _, result = await run(hook_at(store, DAY), "+79161234567")
    assert variables(result) == {REASON_VARIABLE: "day", ROUTE_VARIABLE: "agent"}


async def test_the_8_and_plus7_forms_are_counted_as_one_caller(store: Store) -> None:
    """History stored as +7... is found for a caller id written 8 (916) ..."""
    await add_interactions(store, NIGHT, 1, 2, 3)
    _, result = await run(hook_at(store, NIGHT), "8 (916) 123-45-67")
    assert variables(result)[ROUTE_VARIABLE] == "ivr"


async def test_a_flagged_caller_goes_to_the_flagged_queue(store: Store) -> None:
    """A flag in force routes to flags.flagged_queue at any hour."""
    await store.flags.set(
        CallerFlag(E164, "abuse", "abuse_script", set_at=DAY.astimezone(UTC) - timedelta(days=1))
    )
    with capture_logs() as logs:
        _, result = await run(hook_at(store, DAY), "89161234567")
    assert variables(result) == {
        TARGET_VARIABLE: "flagged",
        REASON_VARIABLE: "flagged",
        ROUTE_VARIABLE: "flagged",
    }
    [logged] = decisions(logs)
    assert logged["flag_set_by"] == "abuse_script"


async def test_an_anonymous_caller_goes_to_an_agent_and_the_log_says_why(store: Store) -> None:
    """No number to look up: agent, reason number_anonymous."""
    with capture_logs() as logs:
        _, result = await run(hook_at(store, NIGHT), "anonymous")
    assert variables(result) == {REASON_VARIABLE: "number_anonymous", ROUTE_VARIABLE: "agent"}
    assert decisions(logs)[0]["reason"] == "number_anonymous"


async def test_a_caller_without_caller_id_goes_to_an_agent(store: Store) -> None:
    """Asterisk sends 'unknown' for no caller id: agent, reason number_empty."""
    _, result = await run(hook_at(store, NIGHT), "")
    assert variables(result)[ROUTE_VARIABLE] == "agent"
    assert variables(result)[REASON_VARIABLE] == "number_empty"


async def test_each_route_is_recorded_among_the_daemons_decisions(store: Store) -> None:
    """night_ivr (R5) with the decision's inputs, for the figures and the evidence."""
    await add_interactions(store, NIGHT, 1, 2, 3)
    recorded: list[tuple[str, Note]] = []
    hook = route_hook(
        config(),
        StoreRouteLookup(store),
        ManualClock(NIGHT.timestamp()),
        pbx="asterisk",
        decide=lambda rule, note, _session: recorded.append((rule, note)),
    )
    await run(hook, "89161234567")
    [(rule, note)] = recorded
    assert (rule, note.action, note.reason) == ("R5", "night_ivr", "night_repeat_caller")
    assert note.fields["count"] == 3
    assert note.fields["applied"] is True


# ------------------------------------------------------------------------------ failures


async def test_a_store_that_fails_sends_the_call_to_an_agent(tmp_path: Path) -> None:
    """A database without its tables raises on every read: agent, reason store_unavailable."""
    broken = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")
    try:
        with capture_logs() as logs:
            _, result = await run(hook_at(broken, NIGHT), "89161234567")
    finally:
        await broken.close()
    assert variables(result) == {REASON_VARIABLE: "store_unavailable", ROUTE_VARIABLE: "agent"}
    [logged] = decisions(logs)
    assert "interactions" in logged["error"] or "caller_flags" in logged["error"]


class SlowLookup:
    """A store that answers after ``delay_s``."""

    def __init__(self, inner: StoreRouteLookup, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    async def read(
        self, number: str, now: datetime, *, with_flag: bool, since: datetime | None
    ) -> tuple[FlagInfo | None, list[PastInteraction]]:
        await asyncio.sleep(self.delay_s)
        return await self.inner.read(number, now, with_flag=with_flag, since=since)


async def test_a_lookup_past_its_budget_sends_the_call_to_an_agent_within_the_deadline(
    store: Store,
) -> None:
    """The store hangs: the hook itself answers agent (reason lookup_deadline) before the
    hook's deadline, so the server's safe default never has to step in."""
    await add_interactions(store, NIGHT, 1, 2, 3)
    clock = ManualClock(NIGHT.timestamp())
    hook = route_hook(
        config(deadline_ms=300), SlowLookup(StoreRouteLookup(store), 30.0), clock, pbx="asterisk"
    )
    with capture_logs() as logs:
        _, result = await run(hook, "89161234567")
    assert variables(result) == {REASON_VARIABLE: "lookup_deadline", ROUTE_VARIABLE: "agent"}
    events = [e["event"] for e in logs]
    assert "hook_deadline" not in events
    assert "hook_default_applied" not in events
    [logged] = decisions(logs)
    assert logged["budget_ms"] == pytest.approx(180.0)


async def test_when_the_whole_hook_overruns_the_safe_default_routes_to_an_agent(
    store: Store,
) -> None:
    """With the lookup budget past the deadline, the server cancels the hook and the safe
    default still leaves PBXAGENT_ROUTE=agent, with one route_decision logged."""
    clock = ManualClock(NIGHT.timestamp())
    hook = route_hook(
        config(deadline_ms=200), SlowLookup(StoreRouteLookup(store), 30.0), clock, pbx="asterisk"
    )
    hook.lookup_budget_s = 10.0  # a misconfiguration: the budget outlives the deadline
    with capture_logs() as logs:
        _, result = await run(hook, "89161234567")
    assert variables(result) == {REASON_VARIABLE: "daemon_fallback", ROUTE_VARIABLE: "agent"}
    assert "hook_deadline" in [e["event"] for e in logs]
    [logged] = decisions(logs)
    assert (logged["route"], logged["reason"]) == ("agent", "daemon_fallback")


async def test_the_default_deadline_is_the_profiles_50_ms(store: Store) -> None:
    """night_routing.deadline_ms = 50 by default; 60 % of it is the lookup budget."""
    hook = route_hook(Config(), StoreRouteLookup(store), ManualClock(), pbx="asterisk")
    assert hook.spec().deadline_s == pytest.approx(0.05)
    assert hook.lookup_budget_s == pytest.approx(0.03)


# ------------------------------------------------------------------------------ the query


async def test_an_expired_flag_is_not_read_as_in_force(store: Store) -> None:
    """A flag past its expiry comes back as no flag."""
    now = NIGHT.astimezone(UTC)
    await store.flags.set(
        CallerFlag(E164, "abuse", "ops", set_at=now - timedelta(days=2), expires_at=now)
    )
    flag, history = await StoreRouteLookup(store).read(E164, now, with_flag=True, since=None)
    assert (flag, history) == (None, [])


async def test_a_flag_in_force_is_read_with_who_set_it(store: Store) -> None:
    """The flag's reason, author and times come back for the decision's log."""
    now = NIGHT.astimezone(UTC)
    set_at = now - timedelta(days=2)
    await store.flags.set(CallerFlag(E164, "abuse", "ops", set_at=set_at))
    flag, _ = await StoreRouteLookup(store).read(E164, now, with_flag=True, since=None)
    assert flag == FlagInfo("abuse", "ops", set_at, None)


async def test_the_history_is_read_newest_first_from_the_trailing_window(store: Store) -> None:
    """Rows before the window's start are not read; the topic comes back with each row."""
    now = NIGHT.astimezone(UTC)
    await add_interactions(store, now, 30)
    await store.interactions.add(
        Interaction(number=E164, started_at=now - timedelta(hours=1), topic="tariff")
    )
    await store.interactions.add(Interaction(number=E164, started_at=now - timedelta(hours=2)))
    flag, got = await StoreRouteLookup(store).read(
        E164, now, with_flag=True, since=now - timedelta(hours=24)
    )
    assert flag is None
    assert got == [
        PastInteraction(now - timedelta(hours=1), "tariff", None),
        PastInteraction(now - timedelta(hours=2), None, None),
    ]


async def test_the_history_read_is_bounded(store: Store) -> None:
    """A number with more rows than max_rows gets only the newest max_rows."""
    now = NIGHT.astimezone(UTC)
    await add_interactions(store, now, *(h / 10 for h in range(1, 8)))
    _, got = await StoreRouteLookup(store, max_rows=5).read(
        E164, now, with_flag=False, since=now - timedelta(hours=24)
    )
    assert len(got) == 5
    assert got[0].started_at == now - timedelta(hours=0.1)


async def test_in_shadow_mode_the_decision_is_logged_and_the_call_goes_to_an_agent(
    store: Store,
) -> None:
    """A night repeat caller in shadow mode: the IVR decision is logged (not applied), and
    the dialplan is told the normal route."""
    await add_interactions(store, NIGHT, 1, 6, 20)
    clock = ManualClock(NIGHT.timestamp())
    hook = route_hook(config(), StoreRouteLookup(store), clock, pbx="asterisk", shadow=True)
    with capture_logs() as logs:
        _, result = await run(hook, "89161234567")
    assert variables(result) == {REASON_VARIABLE: "shadow", ROUTE_VARIABLE: "agent"}
    [logged] = decisions(logs)
    assert (logged["route"], logged["applied"]) == ("ivr", False)

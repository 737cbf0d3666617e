"""The facts sink: facts, flags and decisions reach the store, on both databases, without ever
holding the engine up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from pbx_agent.clock import ManualClock, to_datetime
from pbx_agent.config.settings import resolve_standards
from pbx_agent.engine import Decision, Engine
from pbx_agent.model import calls as cm
from pbx_agent.model import events as ev
from pbx_agent.model.commands import FlagNumber, RecordFact
from pbx_agent.model.events import CallId, LegId
from pbx_agent.policies.interactions import CallFacts, InteractionHistory
from pbx_agent.services.facts import FactsService, FactsSettings
from pbx_agent.store import Store
from pbx_agent.store.schema import decisions as decisions_table
from tests.engine.builders import bridged_call_events
from tests.store.databases import (
    create_pg_database,
    drop_pg_database,
    pg_url,
    sqlite_url,
)

T = TypeVar("T")
T0 = datetime(2026, 6, 10, 20, 0, tzinfo=UTC).timestamp()
E164 = "+79161234567"
FAST = FactsSettings(retry_initial_s=0.01, retry_max_s=0.02, close_timeout_s=2.0)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """One migrated PostgreSQL database for the module (tests empty its tables first).

    Set up on a thread of its own: it may be first asked for inside a running test loop.
    """
    name = _in_thread(create_pg_database)
    url = pg_url(name)

    async def migrate() -> None:
        opened = Store.open(url)
        try:
            await opened.upgrade()
        finally:
            await opened.close()

    try:
        _in_thread(migrate)
        yield url
    finally:
        _in_thread(lambda: drop_pg_database(name))


def _in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated, empty store on each kind of database."""
    if request.param == "sqlite":
        opened = Store.open(sqlite_url(tmp_path))
        await opened.upgrade()
    else:
        opened = Store.open(request.getfixturevalue("pg_database"))
        async with opened.db.write("empty the tables") as conn:
            await conn.exec_driver_sql(
                "TRUNCATE interactions, caller_flags, holds, calls, decisions RESTART IDENTITY"
            )
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def facts(store: Store) -> AsyncIterator[FactsService]:
    service = FactsService(store, clock=ManualClock(T0), default_region="RU", settings=FAST)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def interaction(number: str = "8 916 123-45-67", **extra: Any) -> RecordFact:
    fields: dict[str, Any] = {
        "number": number,
        "call_id": "c.1",
        "started_at": T0,
        "ended_at": T0 + 120,
        "agent": "alice",
        "queue": "support",
        "topic": "tariff",
    }
    fields.update(extra)
    return RecordFact("interaction", fields)


def decision(n: int, **extra: Any) -> Decision:
    values: dict[str, Any] = {
        "at": T0 + n,
        "call_id": "c.1",
        "rule": "R1",
        "policy": "hold",
        "action": "play_prompt",
        "reason": f"step {n}",
        "fields": {"leg": "c.1", "announcements": ({"at_s": 0.0},)},
        "number": "89161234567",
        "agent": "alice",
    }
    values.update(extra)
    return Decision(**values)


def call_with_standards(**overrides: Any) -> cm.Call:
    call = cm.Call(id=CallId("c.1"), started_at=T0)
    call.standards = resolve_standards("ru", "", overrides)
    return call


# ------------------------------------------------------------------------------ facts


async def test_an_interaction_is_stored_under_the_normalised_number(
    store: Store, facts: FactsService
) -> None:
    """'8 916 ...' is stored as +7916...: the key night routing counts by."""
    await facts.record_fact(interaction(), None)
    await facts.flush()
    [row] = await store.interactions.for_number(E164, to_datetime(T0 - 1))
    assert (row.agent, row.queue, row.topic, row.call_id) == ("alice", "support", "tariff", "c.1")
    assert row.started_at == to_datetime(T0)
    assert row.ended_at == to_datetime(T0 + 120)
    assert facts.stats.written["interaction"] == 1


async def test_an_anonymous_callers_interaction_is_not_stored_and_says_why(
    store: Store, facts: FactsService
) -> None:
    """No usable number: nothing to count, logged and counted instead."""
    with capture_logs() as logs:
        await facts.record_fact(interaction("anonymous"), None)
        await facts.flush()
    assert await store.interactions.count_since(E164, to_datetime(0)) == 0
    assert facts.stats.not_recorded["number_anonymous"] == 1
    assert any(
        e["event"] == "fact_not_recorded" and e["reason"] == "number_anonymous" for e in logs
    )


async def test_a_call_fact_becomes_a_call_record(store: Store, facts: FactsService) -> None:
    """The call record carries the E.164 number, the agent, the hold mark and the end reason."""
    fields = {
        "call_id": "c.9",
        "started_at": T0,
        "ended_at": T0 + 300,
        "caller_number": "+7 (916) 123-45-67",
        "agent": "alice",
        "queue": "support",
        "had_hold": True,
        "end_reason": "caller_hangup",
    }
    await facts.record_fact(RecordFact("call", fields), None)
    await facts.flush()
    record = await store.calls.get("c.9")
    assert record is not None
    assert (record.caller_number, record.had_hold, record.end_reason) == (
        E164,
        True,
        "caller_hangup",
    )


async def test_a_hold_of_the_customer_is_stored(store: Store, facts: FactsService) -> None:
    """The hold policy's fact becomes a holds row with its reminders and limit mark."""
    fields = {
        "call_id": "c.1",
        "agent": "alice",
        "tier": "specialist",
        "held_leg": "c.1",
        "held_role": "caller",
        "started_at": T0,
        "ended_at": T0 + 150,
        "reminders": 2,
        "over_limit": True,
        "callback_offer_taken": False,
    }
    await facts.record_fact(RecordFact("hold", fields), None)
    await facts.record_fact(RecordFact("hold", {**fields, "held_role": "agent"}), None)
    await facts.flush()
    [hold] = await store.holds.between(to_datetime(T0 - 1), to_datetime(T0 + 1))
    assert (hold.reminders, hold.over_limit, hold.tier) == (2, True, "specialist")


async def test_kinds_without_a_table_are_left_to_the_decisions(
    store: Store, facts: FactsService
) -> None:
    """dead_air and friends are not written anywhere but the decisions table."""
    await facts.record_fact(RecordFact("dead_air", {"call_id": "c.1"}), None)
    await facts.flush()
    assert sum(facts.stats.written.values()) == 0


# ------------------------------------------------------------------------------ flags


async def test_a_flag_gets_the_default_expiry_of_the_calls_standards(
    store: Store, facts: FactsService
) -> None:
    """flags.default_expiry_days = 30: the flag expires 30 days after it was set."""
    call = call_with_standards(flags={"default_expiry_days": 30})
    await facts.flag_number(FlagNumber("89161234567", "abuse", "abuse_script", call.id), call)
    await facts.flush()
    [flag] = await store.flags.list_flags()
    assert flag.number == E164
    assert (flag.reason, flag.set_by) == ("abuse", "abuse_script")
    assert flag.set_at == to_datetime(T0)
    assert flag.expires_at == to_datetime(T0) + timedelta(days=30)


async def test_a_flag_without_a_default_expiry_never_expires(
    store: Store, facts: FactsService
) -> None:
    """The profiles' default: no expiry."""
    call = call_with_standards()
    await facts.flag_number(FlagNumber("+79161234567", "abuse", "abuse_script"), call)
    await facts.flush()
    [flag] = await store.flags.list_flags()
    assert flag.expires_at is None


async def test_an_unusable_number_is_not_flagged(store: Store, facts: FactsService) -> None:
    """A withheld number cannot be recognised on its next call: nothing is stored."""
    await facts.flag_number(FlagNumber("Restricted", "abuse", "abuse_script"), None)
    await facts.flush()
    assert await store.flags.list_flags() == []
    assert facts.stats.not_recorded["number_withheld"] == 1


# ------------------------------------------------------------------------------ decisions


async def test_decisions_are_written_in_order_with_their_fields(
    store: Store, facts: FactsService
) -> None:
    """Every decision becomes a row with its rule, action, reason, number and details."""
    for n in range(5):
        facts.on_decision(decision(n))
    await facts.flush()
    rows = await store.decisions.between(to_datetime(T0 - 1), to_datetime(T0 + 10))
    assert [r.reason for r in rows] == [f"step {n}" for n in range(5)]
    assert rows[0].number == E164
    assert rows[0].details == {
        "policy": "hold",
        "leg": "c.1",
        "announcements": [{"at_s": 0.0}],
    }
    assert facts.stats.written["decision"] == 5


async def test_consecutive_decisions_share_one_transaction(store: Store) -> None:
    """Decisions queued together are written by one multi-row insert, batch by batch."""
    service = FactsService(
        store,
        clock=ManualClock(T0),
        default_region="RU",
        settings=FactsSettings(batch_size=50),
    )
    statements: list[int] = []

    def count_inserts(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DECISIONS"):
            statements.append(1)

    sa.event.listen(store.db.engine.sync_engine, "before_cursor_execute", count_inserts)
    for n in range(120):
        service.on_decision(decision(n))
    await service.start()
    try:
        await service.flush()
    finally:
        await service.close()
        sa.event.remove(store.db.engine.sync_engine, "before_cursor_execute", count_inserts)
    async with store.db.read("count") as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).select_from(decisions_table))
        ).scalar()
    assert count == 120
    assert len(statements) == 3  # 50 + 50 + 20


async def test_a_burst_of_mixed_facts_costs_one_commit_per_batch(store: Store) -> None:
    """A trunk dropping calls at once: interactions, calls, holds and decisions interleaved,
    queued together, are written batch by batch, one transaction and one statement per table each, every one
    of them: the SQLite write lock is not held across hundreds of round trips."""
    service = FactsService(
        store, clock=ManualClock(T0), default_region="RU", settings=FactsSettings(batch_size=100)
    )
    commits: list[int] = []
    inserts: list[str] = []

    def count(_conn: object) -> None:
        commits.append(1)

    def count_inserts(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement.split()[2])

    for n in range(50):  # 4 items per call: 200 items, two batches
        call_id = f"c.{n}"
        await service.record_fact(interaction(call_id=call_id), None)
        fields = {"call_id": call_id, "started_at": T0, "caller_number": "+79161234567"}
        await service.record_fact(RecordFact("call", fields), None)
        hold = {"call_id": call_id, "started_at": T0, "held_role": "caller", "ended_at": T0 + 5}
        await service.record_fact(RecordFact("hold", hold), None)
        service.on_decision(decision(n, call_id=call_id))
    sa.event.listen(store.db.engine.sync_engine, "commit", count)
    sa.event.listen(store.db.engine.sync_engine, "before_cursor_execute", count_inserts)
    await service.start()
    try:
        await service.flush()
    finally:
        await service.close()
        sa.event.remove(store.db.engine.sync_engine, "commit", count)
        sa.event.remove(store.db.engine.sync_engine, "before_cursor_execute", count_inserts)
    assert len(commits) == 2
    assert len(inserts) == 8  # one statement per table per batch, not one per record
    assert service.stats.written == {"interaction": 50, "call": 50, "hold": 50, "decision": 50}
    assert await store.interactions.count_since(E164, to_datetime(0)) == 50
    assert len(await store.calls.between(to_datetime(T0 - 1), to_datetime(T0 + 1))) == 50
    assert len(await store.holds.between(to_datetime(T0 - 1), to_datetime(T0 + 1))) == 50


async def test_an_item_that_cannot_be_converted_loses_only_itself(store: Store) -> None:
    """A fact the sink cannot convert is logged and counted; the rest of its batch is
    written."""
    service = FactsService(store, clock=ManualClock(T0), default_region="RU", settings=FAST)
    await service.record_fact(interaction(call_id="c.1"), None)
    await service.record_fact(interaction(call_id="c.2", started_at="not a time"), None)
    service.on_decision(decision(0))
    await service.record_fact(interaction(call_id="c.3"), None)
    with capture_logs() as logs:
        await service.start()
        try:
            await service.flush()
        finally:
            await service.close()
    rows = await store.interactions.for_number(E164, to_datetime(0))
    assert sorted(r.call_id or "" for r in rows) == ["c.1", "c.3"]
    assert service.stats.written == {"interaction": 2, "decision": 1}
    assert service.stats.not_recorded["write_failed"] == 1
    failed = [(e["kind"], e["call_id"]) for e in logs if e["event"] == "fact_write_failed"]
    assert failed == [("interaction", "c.2")]


async def test_a_row_the_database_refuses_loses_only_itself(store: Store) -> None:
    """A time without a timezone is refused by the store: not an outage, so not retried
    for ever; its batch is written again row by row and everything else is kept."""
    service = FactsService(store, clock=ManualClock(T0), default_region="RU", settings=FAST)
    naive = datetime(2026, 6, 10, 20, 0)  # noqa: DTZ001 - the point of the test
    await service.record_fact(interaction(call_id="c.1"), None)
    await service.record_fact(interaction(call_id="c.2", started_at=naive), None)
    service.on_decision(decision(0))
    await service.record_fact(interaction(call_id="c.3"), None)
    with capture_logs() as logs:
        await service.start()
        try:
            await service.flush()
        finally:
            await service.close()
    rows = await store.interactions.for_number(E164, to_datetime(0))
    assert sorted(r.call_id or "" for r in rows) == ["c.1", "c.3"]
    assert service.stats.written == {"interaction": 2, "decision": 1}
    assert service.stats.not_recorded["write_failed"] == 1
    assert service.stats.store_failures == 0
    events = [e["event"] for e in logs]
    assert events.count("facts_batch_failed") == 1
    assert events.count("facts_rows_refused") == 2  # the batch, then the row alone


async def test_a_decision_with_long_values_is_clipped_not_refused(
    store: Store, facts: FactsService
) -> None:
    """A 300-character agent id still gets its decision written."""
    facts.on_decision(decision(0, agent="a" * 300, action="x" * 100))
    await facts.flush()
    [row] = await store.decisions.between(to_datetime(T0 - 1), to_datetime(T0 + 1))
    assert row.agent == "a" * 128
    assert row.action == "x" * 64


# ------------------------------------------------------------------------------ failures


@pytest.fixture
async def unmigrated(tmp_path: Path) -> AsyncIterator[Store]:
    """A SQLite store whose tables do not exist yet: every write fails until upgrade()."""
    opened = Store.open(sqlite_url(tmp_path))
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_store_outage_is_logged_counted_and_retried_until_it_ends(
    unmigrated: Store,
) -> None:
    """Writes fail while the tables are missing; once they exist the same items are written."""
    service = FactsService(unmigrated, clock=ManualClock(T0), default_region="RU", settings=FAST)
    await service.start()
    try:
        with capture_logs() as logs:
            service.on_decision(decision(0))
            await service.record_fact(interaction(), None)
            await _until(lambda: service.stats.store_failures >= 2)
            await unmigrated.upgrade()
            await service.flush()
    finally:
        await service.close()
    assert any(e["event"] == "facts_store_unavailable" for e in logs)
    assert service.stats.written == {"decision": 1, "interaction": 1}
    assert await unmigrated.interactions.count_since(E164, to_datetime(0)) == 1


async def test_a_batch_retried_through_an_outage_reports_its_items_once(
    unmigrated: Store,
) -> None:
    """What the sink logs and counts about a batch (an unusable number, a flag) is said when
    the batch commits, not at every attempt."""
    service = FactsService(unmigrated, clock=ManualClock(T0), default_region="RU", settings=FAST)
    await service.start()
    try:
        with capture_logs() as logs:
            await service.record_fact(interaction("anonymous"), None)
            await service.flag_number(
                FlagNumber("89161234567", "abusive", "alice", CallId("c.1")), None
            )
            await _until(lambda: service.stats.store_failures >= 3)
            await unmigrated.upgrade()
            await service.flush()
    finally:
        await service.close()
    assert service.stats.not_recorded == {"number_anonymous": 1}
    events = [e["event"] for e in logs]
    assert events.count("fact_not_recorded") == 1
    assert events.count("number_flagged") == 1


async def test_decisions_do_not_raise_into_the_engine_while_the_store_is_down(
    unmigrated: Store,
) -> None:
    """The listener only queues: the engine's call returns at once whatever the store does."""
    settings = FactsSettings(retry_initial_s=0.01, retry_max_s=0.02, close_timeout_s=0.1)
    service = FactsService(
        unmigrated, clock=ManualClock(T0), default_region="RU", settings=settings
    )
    await service.start()
    try:
        for n in range(3):
            service.on_decision(decision(n))
        await _until(lambda: service.stats.store_failures >= 1)
    finally:
        await service.close()
    assert service.stats.lost_at_close == 3


async def test_a_close_cut_short_still_stops_the_writer_and_says_what_was_lost(
    unmigrated: Store,
) -> None:
    """The daemon's stop budget runs out while close waits for a store that is away: the
    writer is stopped and the items are counted and logged lost (it was left running and
    nothing said them)."""
    settings = FactsSettings(retry_initial_s=0.01, retry_max_s=0.02, close_timeout_s=30.0)
    service = FactsService(
        unmigrated, clock=ManualClock(T0), default_region="RU", settings=settings
    )
    await service.start()
    for n in range(2):
        service.on_decision(decision(n))
    await _until(lambda: service.stats.store_failures >= 1)
    with capture_logs() as logs, pytest.raises(TimeoutError):
        await asyncio.wait_for(service.close(), 0.1)
    assert service.stats.lost_at_close == 2
    assert [e["items"] for e in logs if e["event"] == "facts_lost_at_close"] == [2]
    assert not service._writer


async def test_a_full_queue_drops_the_newest_item_and_says_so(store: Store) -> None:
    """queue_size = 2: the third item is dropped, counted and logged once."""
    service = FactsService(
        store, clock=ManualClock(T0), default_region="RU", settings=FactsSettings(queue_size=2)
    )
    with capture_logs() as logs:
        for n in range(4):
            service.on_decision(decision(n))
        await service.start()
        await service.flush()
        service.on_decision(decision(9))
        await service.flush()
        await service.close()
    assert service.stats.dropped_queue_full == 2
    rows = await store.decisions.between(to_datetime(T0 - 1), to_datetime(T0 + 10))
    assert [r.reason for r in rows] == ["step 0", "step 1", "step 9"]
    events = [e["event"] for e in logs]
    assert events.count("facts_queue_full") == 1
    assert any(e["event"] == "facts_queue_recovered" and e["dropped"] == 2 for e in logs)


async def test_an_item_offered_after_close_is_counted_as_lost(store: Store) -> None:
    """Close the sink after the engine: anything later is not silently swallowed."""
    service = FactsService(store, clock=ManualClock(T0), default_region="RU", settings=FAST)
    await service.start()
    await service.close()
    with capture_logs() as logs:
        service.on_decision(decision(0))
        service.on_decision(decision(1))
    assert service.stats.lost_at_close == 2
    assert [e["event"] for e in logs] == ["facts_after_close"]


# ------------------------------------------------------------------------------ with the engine


async def test_an_engine_call_leaves_its_interaction_call_and_decisions_in_the_store(
    store: Store,
) -> None:
    """Wired as the composition root does: a handled call is counted for night routing."""
    clock = ManualClock(T0)
    engine = Engine(clock=clock, policies=[InteractionHistory(), CallFacts()])
    service = FactsService(store, clock=clock, default_region="RU", settings=FAST)
    service.register(engine)
    await service.start()
    try:
        for event in bridged_call_events():
            engine.handle(event)
        clock.advance(95)
        engine.handle(ev.LegHungUp(LegId("c.1"), 16))
        engine.handle(ev.LegHungUp(LegId("c.2"), 16))
        await engine.drain()
        await service.flush()
    finally:
        await service.close()
    [row] = await store.interactions.for_number(E164, to_datetime(T0 - 1))
    assert row.ended_at == to_datetime(T0 + 95)
    assert (await store.calls.get("c.1")) is not None
    recorded = await store.decisions.between(to_datetime(T0 - 1), to_datetime(T0 + 100))
    assert {r.action for r in recorded} == {"record_fact"}


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


RAW_BYTE = b"\xff".decode("utf-8", "surrogateescape")


def fact(kind: str, **extra: Any) -> RecordFact:
    fields: dict[str, Any] = {"number": E164, "call_id": "c.1", "started_at": T0}
    fields.update(extra)
    return RecordFact(kind, fields)


async def test_an_interaction_with_a_byte_that_was_not_utf8_is_stored_escaped(
    store: Store, facts: FactsService
) -> None:
    """A VarSet topic ``tarif<0xFF>`` is counted for night routing, as ``tarif\\xff``."""
    topic, agent, queue = f"tarif{RAW_BYTE}", f"al{RAW_BYTE}ice", f"q\x00{RAW_BYTE}"
    await facts.record_fact(fact("interaction", topic=topic, agent=agent, queue=queue), None)
    await facts.flush()
    [row] = await store.interactions.for_number(E164, to_datetime(T0 - 1))
    assert (row.topic, row.agent, row.queue) == ("tarif\\xff", "al\\xffice", "q\\x00\\xff")
    assert facts.stats.not_recorded == {}


async def test_a_decision_with_a_byte_that_was_not_utf8_is_stored_escaped(
    store: Store, facts: FactsService
) -> None:
    """Agent, reason and details (keys and values) are escaped; the decision is kept."""
    facts.on_decision(
        Decision(
            at=T0,
            call_id=f"c.{RAW_BYTE}",
            rule="R1",
            policy="hold",
            action="play_prompt",
            reason=f"because {RAW_BYTE}",
            fields={f"k{RAW_BYTE}": [f"v{RAW_BYTE}", "a\x00b"]},
            number=E164,
            agent=f"al{RAW_BYTE}ice",
        )
    )
    await facts.flush()
    [row] = await store.decisions.between(to_datetime(T0 - 1), to_datetime(T0 + 1))
    assert (row.call_id, row.agent, row.reason) == ("c.\\xff", "al\\xffice", "because \\xff")
    assert row.details == {"policy": "hold", "k\\xff": ["v\\xff", "a\\x00b"]}


async def test_a_hold_call_and_flag_with_such_text_are_stored_escaped(
    store: Store, facts: FactsService
) -> None:
    """A tier, an end reason, a flag's reason and setter: escaped, every row written."""
    await facts.record_fact(fact("hold", agent="alice", tier=f"vip{RAW_BYTE}"), None)
    await facts.record_fact(fact("call", caller_number=E164, end_reason=f"x{RAW_BYTE}"), None)
    await facts.flag_number(
        FlagNumber(E164, f"abuse{RAW_BYTE}", f"al{RAW_BYTE}ice", CallId("c.1")), None
    )
    await facts.flush()
    [hold] = await store.holds.between(to_datetime(T0 - 1), to_datetime(T0 + 1))
    call = await store.calls.get("c.1")
    flag = await store.flags.get(E164, to_datetime(T0))
    assert hold.tier == "vip\\xff"
    assert call is not None and call.end_reason == "x\\xff"
    assert flag is not None and (flag.reason, flag.set_by) == ("abuse\\xff", "al\\xffice")
    assert facts.stats.written == {"hold": 1, "call": 1, "flag": 1}


async def test_text_made_longer_by_its_escapes_is_still_clipped_to_the_column(
    store: Store, facts: FactsService
) -> None:
    """128 raw bytes become 512 characters of escapes: cut to 128, not refused."""
    await facts.record_fact(fact("interaction", agent=RAW_BYTE * 128), None)
    await facts.flush()
    [row] = await store.interactions.for_number(E164, to_datetime(T0 - 1))
    assert row.agent == "\\xff" * 32

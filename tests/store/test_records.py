"""Interactions, caller flags, holds, calls and decisions, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pbx_agent.store import CallerFlag, CallRecord, Decision, HoldRecord, Interaction, Store

T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
NUMBER = "+79161234567"


async def test_interactions_are_counted_per_number_since_a_time(store: Store) -> None:
    """Night routing's question: how many interactions did this number have since T."""
    for hours_ago in (30, 20, 5, 1):
        await store.interactions.add(
            Interaction(number=NUMBER, started_at=T0 - timedelta(hours=hours_ago), agent="a1")
        )
    await store.interactions.add(Interaction(number="+79990000000", started_at=T0))
    assert await store.interactions.count_since(NUMBER, T0 - timedelta(hours=24)) == 3
    assert await store.interactions.count_since(NUMBER, T0 - timedelta(hours=5)) == 2


async def test_interaction_count_can_be_limited_to_a_topic(store: Store) -> None:
    """count_mode per topic: only interactions on the same topic count."""
    await store.interactions.add(Interaction(number=NUMBER, started_at=T0, topic="tariff"))
    await store.interactions.add(Interaction(number=NUMBER, started_at=T0, topic="roaming"))
    assert await store.interactions.count_since(NUMBER, T0, topic="tariff") == 1


async def test_interaction_end_is_recorded(store: Store) -> None:
    """An interaction is written when it starts and completed when it ends."""
    interaction_id = await store.interactions.add(Interaction(number=NUMBER, started_at=T0))
    assert await store.interactions.end(interaction_id, T0 + timedelta(minutes=3))
    [read] = await store.interactions.for_number(NUMBER, T0)
    assert read.ended_at == T0 + timedelta(minutes=3)


async def test_interaction_count_is_answered_from_the_number_index(store: Store) -> None:
    """The count reads the (number, started_at) index, so it stays fast at 1,000,000 rows."""
    count = (
        sa.select(sa.func.count())
        .select_from(sa.table("interactions", sa.column("number"), sa.column("started_at")))
        .where(sa.column("number") == NUMBER)
        .where(sa.column("started_at") >= T0)
    )
    async with store.db.read("explain") as conn:
        compiled = count.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
        if store.dialect == "sqlite":
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        else:
            # The planner prefers a scan on a tiny table; forbid that to see the index is usable.
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = await conn.exec_driver_sql(f"EXPLAIN {compiled}")
        plan = " ".join(str(value) for row in rows for value in row)
    assert "ix_interactions_number_started_at" in plan


async def test_flag_is_in_force_until_it_expires(store: Store) -> None:
    """A flag with an expiry protects the queue until then, not after."""
    await store.flags.set(
        CallerFlag(NUMBER, "abuse", "agent7", T0, expires_at=T0 + timedelta(days=30))
    )
    assert (await store.flags.get(NUMBER, T0 + timedelta(days=29))) is not None
    assert (await store.flags.get(NUMBER, T0 + timedelta(days=30))) is None


async def test_flagging_a_number_again_replaces_the_flag(store: Store) -> None:
    """One flag per number: the newest reason and author win."""
    await store.flags.set(CallerFlag(NUMBER, "abuse", "agent7", T0))
    await store.flags.set(CallerFlag(NUMBER, "prank", "supervisor", T0 + timedelta(hours=1)))
    flags = await store.flags.list_flags()
    assert [(f.reason, f.set_by) for f in flags] == [("prank", "supervisor")]


async def test_removed_flag_is_gone(store: Store) -> None:
    """An operator clears a flag; removing it twice says nothing was there."""
    await store.flags.set(CallerFlag(NUMBER, "abuse", "agent7", T0))
    assert await store.flags.remove(NUMBER)
    assert not await store.flags.remove(NUMBER)
    assert await store.flags.get(NUMBER, T0) is None


async def test_flag_list_can_hide_expired_flags(store: Store) -> None:
    """Listing at a time shows only the flags in force then; purge removes the rest."""
    await store.flags.set(CallerFlag(NUMBER, "abuse", "a", T0, expires_at=T0 + timedelta(days=1)))
    await store.flags.set(CallerFlag("+79990000000", "prank", "a", T0))
    later = T0 + timedelta(days=2)
    assert [f.number for f in await store.flags.list_flags(later)] == ["+79990000000"]
    assert await store.flags.purge_expired(later) == 1
    assert len(await store.flags.list_flags()) == 1


async def test_hold_is_recorded_and_finished(store: Store) -> None:
    """A hold is written at its start and completed with its reminders and limit."""
    hold_id = await store.holds.add(
        HoldRecord(call_id="c1", started_at=T0, agent="a1", tier="senior")
    )
    assert await store.holds.finish(
        hold_id,
        ended_at=T0 + timedelta(minutes=4),
        reminders=3,
        over_limit=True,
        callback_offer_taken=False,
    )
    [hold] = await store.holds.between(T0, T0 + timedelta(hours=1))
    assert hold.reminders == 3
    assert hold.over_limit is True
    assert hold.ended_at == T0 + timedelta(minutes=4)


async def test_call_record_is_updated_in_place(store: Store) -> None:
    """Saving a call twice (start, then end) keeps one row with the latest facts."""
    await store.calls.save(CallRecord(call_id="c1", started_at=T0, caller_number=NUMBER))
    await store.calls.save(
        CallRecord(
            call_id="c1",
            started_at=T0,
            caller_number=NUMBER,
            ended_at=T0 + timedelta(minutes=5),
            had_hold=True,
            end_reason="caller_hangup",
        )
    )
    calls = await store.calls.between(T0, T0 + timedelta(hours=1))
    assert len(calls) == 1
    assert calls[0].had_hold is True
    assert await store.calls.get("c1") == calls[0]


async def test_records_are_written_in_bulk(store: Store) -> None:
    """The facts sink's statements: many interactions and holds at once; calls upserted,
    a call already stored and a call twice in one batch ending as their last record."""
    await store.calls.save(CallRecord(call_id="c0", started_at=T0, end_reason="old"))
    await store.interactions.add_many(
        [Interaction(number=NUMBER, started_at=T0, call_id=f"c{n}") for n in range(3)]
    )
    await store.holds.add_many([HoldRecord(call_id=f"c{n}", started_at=T0) for n in range(3)])
    await store.calls.save_many(
        [
            CallRecord(call_id="c0", started_at=T0, end_reason="agent_hangup"),
            CallRecord(call_id="c1", started_at=T0, end_reason="first"),
            CallRecord(call_id="c1", started_at=T0, had_hold=True, end_reason="second"),
        ]
    )
    assert await store.interactions.count_since(NUMBER, T0) == 3
    assert len(await store.holds.between(T0, T0 + timedelta(seconds=1))) == 3
    stored = {c.call_id: c for c in await store.calls.between(T0, T0 + timedelta(seconds=1))}
    assert {k: (c.end_reason, c.had_hold) for k, c in stored.items()} == {
        "c0": ("agent_hangup", False),
        "c1": ("second", True),
    }


async def test_decisions_keep_their_details(store: Store) -> None:
    """The evidence of a decision (rule, action, reason, JSON details) comes back intact."""
    await store.decisions.record(
        Decision(
            at=T0,
            rule="R7",
            action="no_callback",
            reason="normal_hangup on the caller leg cause 16",
            call_id="c1",
            number=NUMBER,
            details={"cause": 16, "legs": ["a", "b"], "note": "Всего доброго"},
        )
    )
    await store.decisions.record(Decision(at=T0, rule="R1", action="hold_reminder", reason=""))
    [decision] = await store.decisions.between(T0, T0 + timedelta(seconds=1), rule="R7")
    assert decision.details == {"cause": 16, "legs": ["a", "b"], "note": "Всего доброго"}
    assert decision.reason == "normal_hangup on the caller leg cause 16"


async def test_an_overlong_caller_id_is_cut_to_its_column_not_refused(store: Store) -> None:
    """A caller ID of 100 characters (unusable, so kept raw) is stored cut to the column on
    PostgreSQL as on SQLite: the decision and the call are not lost to it."""
    raw = "7" * 100
    await store.decisions.record(
        Decision(at=T0, rule="R7", action="no_callback", reason="number too long", number=raw)
    )
    await store.calls.save(CallRecord(call_id="c1", started_at=T0, caller_number=raw))
    [decision] = await store.decisions.between(T0, T0 + timedelta(seconds=1))
    assert decision.number == raw[:64]
    call = await store.calls.get("c1")
    assert call is not None
    assert call.caller_number == raw[:64]


async def test_writes_inside_together_are_one_transaction(store: Store) -> None:
    """Repository writes inside ``together()`` commit once, all of them or none."""
    commits: list[int] = []

    def count(_conn: object) -> None:
        commits.append(1)

    sa.event.listen(store.db.engine.sync_engine, "commit", count)
    try:
        async with store.db.together("two records"):
            await store.interactions.add(Interaction(number=NUMBER, started_at=T0))
            await store.holds.add(HoldRecord(call_id="c.1", started_at=T0))
            assert commits == []
        assert commits == [1]
        with pytest.raises(ZeroDivisionError):
            await _add_then_fail(store)
    finally:
        sa.event.remove(store.db.engine.sync_engine, "commit", count)
    assert await store.interactions.count_since(NUMBER, T0) == 1
    assert len(await store.holds.between(T0, T0 + timedelta(seconds=1))) == 1


async def _add_then_fail(store: Store) -> None:
    async with store.db.together("rolled back"):
        await store.interactions.add(Interaction(number=NUMBER, started_at=T0))
        _ = 1 / 0


async def test_together_cannot_be_nested(store: Store) -> None:
    """A second together() inside the first would hide whose commit it is: refused."""
    async with store.db.together("outer"):
        with pytest.raises(RuntimeError, match="already inside together"):
            async with store.db.together("inner"):
                pass


async def test_a_decision_and_a_flag_written_directly_keep_a_raw_byte_as_its_escape(
    store: Store,
) -> None:
    """The callback service and ``pbx-agent flags`` write decisions and flags straight to
    the repositories: a byte that was not UTF-8 (a lone surrogate) or a NUL is stored as its
    visible escape, the record kept (SQLite refused it, the write failed)."""
    raw = b"\xff".decode("utf-8", "surrogateescape")
    await store.decisions.record(
        Decision(at=T0, rule="R7", action="callback_cancelled", reason=f"agent {raw}\x00")
    )
    await store.flags.set(
        CallerFlag(number=NUMBER, reason=f"abuse {raw}", set_by=f"ops{raw}", set_at=T0)
    )
    [decision] = await store.decisions.between(T0, T0 + timedelta(seconds=1))
    assert decision.reason == "agent \\xff\\x00"
    flag = await store.flags.get(NUMBER, T0)
    assert flag is not None
    assert (flag.reason, flag.set_by) == ("abuse \\xff", "ops\\xff")

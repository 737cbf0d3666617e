"""Interactions, caller flags, holds, calls and decisions: records and their repositories.

These tables feed night routing (interactions per number), flagged-caller routing (flags)
and the manager's report (holds, calls, decisions). Records are frozen dataclasses; times
are timezone-aware UTC datetimes; numbers are E.164 where a usable number exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pbx_agent.store.engine import Database
from pbx_agent.store.schema import caller_flags, calls, decisions, fit_row, holds, interactions

# ---------------------------------------------------------------------- interactions


@dataclass(frozen=True, slots=True)
class Interaction:
    """A customer's call handled by an agent (what night routing counts)."""

    number: str
    started_at: datetime
    ended_at: datetime | None = None
    agent: str | None = None
    queue: str | None = None
    topic: str | None = None
    call_id: str | None = None
    id: int | None = None


class InteractionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, interaction: Interaction) -> int:
        values = _values(interaction, interactions, exclude=("id",))
        async with self._db.write("record interaction") as conn:
            result = await conn.execute(
                sa.insert(interactions).values(values).returning(interactions.c.id)
            )
            return int(result.scalar_one())

    async def add_many(self, records: Sequence[Interaction]) -> None:
        """Insert several interactions with one statement (the facts sink's batches)."""
        if records:
            async with self._db.write("record interactions") as conn:
                await conn.execute(
                    sa.insert(interactions),
                    [_values(r, interactions, exclude=("id",)) for r in records],
                )

    async def end(self, interaction_id: int, ended_at: datetime) -> bool:
        async with self._db.write("end interaction") as conn:
            result = await conn.execute(
                sa.update(interactions)
                .where(interactions.c.id == interaction_id)
                .values(ended_at=ended_at)
            )
            return bool(result.rowcount)

    async def count_since(self, number: str, since: datetime, *, topic: str | None = None) -> int:
        """How many interactions ``number`` had that started at or after ``since``
        (served by the (number, started_at) index)."""
        c = interactions.c
        query = (
            sa.select(sa.func.count())
            .select_from(interactions)
            .where(c.number == number)
            .where(c.started_at >= since)
        )
        if topic is not None:
            query = query.where(c.topic == topic)
        async with self._db.read("count interactions") as conn:
            return int((await conn.execute(query)).scalar_one())

    async def for_number(self, number: str, since: datetime) -> list[Interaction]:
        c = interactions.c
        query = (
            sa.select(interactions)
            .where(c.number == number)
            .where(c.started_at >= since)
            .order_by(c.started_at)
        )
        async with self._db.read("list interactions") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Interaction(**dict(row)) for row in rows]


# ---------------------------------------------------------------------- caller flags


@dataclass(frozen=True, slots=True)
class CallerFlag:
    """A marked number (R9): its calls go to the designated queue until it expires."""

    number: str
    reason: str
    set_by: str
    set_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class FlagRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set(self, flag: CallerFlag) -> None:
        """Flag a number; a number flagged again keeps only the newest flag."""
        async with self._db.write("flag number") as conn:
            await conn.execute(sa.delete(caller_flags).where(caller_flags.c.number == flag.number))
            await conn.execute(sa.insert(caller_flags).values(_values(flag, caller_flags)))

    async def remove(self, number: str) -> bool:
        async with self._db.write("unflag number") as conn:
            result = await conn.execute(
                sa.delete(caller_flags).where(caller_flags.c.number == number)
            )
            return bool(result.rowcount)

    async def get(self, number: str, now: datetime) -> CallerFlag | None:
        """The number's flag if one is in force at ``now``."""
        query = sa.select(caller_flags).where(caller_flags.c.number == number)
        async with self._db.read("read flag") as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        flag = CallerFlag(**dict(row))
        return flag if flag.active(now) else None

    async def list_flags(self, now: datetime | None = None) -> list[CallerFlag]:
        """All flags (only those in force at ``now`` when given), newest first."""
        query = sa.select(caller_flags).order_by(caller_flags.c.set_at.desc())
        if now is not None:
            query = query.where(
                sa.or_(caller_flags.c.expires_at.is_(None), caller_flags.c.expires_at > now)
            )
        async with self._db.read("list flags") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [CallerFlag(**dict(row)) for row in rows]

    async def purge_expired(self, now: datetime) -> int:
        async with self._db.write("purge expired flags") as conn:
            result = await conn.execute(
                sa.delete(caller_flags).where(caller_flags.c.expires_at <= now)
            )
            return int(result.rowcount)


# ---------------------------------------------------------------------- holds


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """One hold of a call (R1, R8)."""

    call_id: str
    started_at: datetime
    agent: str | None = None
    tier: str | None = None
    ended_at: datetime | None = None
    reminders: int = 0
    over_limit: bool = False
    callback_offer_taken: bool = False
    id: int | None = None


class HoldRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, hold: HoldRecord) -> int:
        async with self._db.write("record hold") as conn:
            result = await conn.execute(
                sa.insert(holds).values(_values(hold, holds, exclude=("id",))).returning(holds.c.id)
            )
            return int(result.scalar_one())

    async def add_many(self, records: Sequence[HoldRecord]) -> None:
        """Insert several holds with one statement (the facts sink's batches)."""
        if records:
            async with self._db.write("record holds") as conn:
                await conn.execute(
                    sa.insert(holds), [_values(r, holds, exclude=("id",)) for r in records]
                )

    async def finish(
        self,
        hold_id: int,
        *,
        ended_at: datetime,
        reminders: int,
        over_limit: bool,
        callback_offer_taken: bool,
    ) -> bool:
        async with self._db.write("finish hold") as conn:
            result = await conn.execute(
                sa.update(holds)
                .where(holds.c.id == hold_id)
                .values(
                    ended_at=ended_at,
                    reminders=reminders,
                    over_limit=over_limit,
                    callback_offer_taken=callback_offer_taken,
                )
            )
            return bool(result.rowcount)

    async def between(self, since: datetime, until: datetime) -> list[HoldRecord]:
        c = holds.c
        query = (
            sa.select(holds)
            .where(c.started_at >= since)
            .where(c.started_at < until)
            .order_by(c.started_at)
        )
        async with self._db.read("list holds") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [HoldRecord(**dict(row)) for row in rows]


# ---------------------------------------------------------------------- calls


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One customer call, for the report (share of calls with hold, end reasons)."""

    call_id: str
    started_at: datetime
    ended_at: datetime | None = None
    caller_number: str | None = None
    agent: str | None = None
    queue: str | None = None
    had_hold: bool = False
    end_reason: str = ""


class CallRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, call: CallRecord) -> None:
        """Insert the call, or replace what is known about it (same ``call_id``)."""
        await self.save_many([call])

    async def save_many(self, records: Sequence[CallRecord]) -> None:
        """``save`` for several calls with one statement (an upsert on ``call_id``); of
        two records of one call the later wins, as if saved one after the other."""
        latest = {r.call_id: _values(r, calls) for r in records}
        if not latest:
            return
        dialect = postgresql if self._db.dialect == "postgresql" else sqlite
        insert = dialect.insert(calls)
        upsert = insert.on_conflict_do_update(
            index_elements=[calls.c.call_id],
            set_={c.name: insert.excluded[c.name] for c in calls.c if c.name != "call_id"},
        )
        async with self._db.write("record calls") as conn:
            await conn.execute(upsert, list(latest.values()))

    async def get(self, call_id: str) -> CallRecord | None:
        async with self._db.read("read call") as conn:
            row = (
                (await conn.execute(sa.select(calls).where(calls.c.call_id == call_id)))
                .mappings()
                .first()
            )
        return None if row is None else CallRecord(**dict(row))

    async def between(self, since: datetime, until: datetime) -> list[CallRecord]:
        c = calls.c
        query = (
            sa.select(calls)
            .where(c.started_at >= since)
            .where(c.started_at < until)
            .order_by(c.started_at)
        )
        async with self._db.read("list calls") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [CallRecord(**dict(row)) for row in rows]


# ---------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision the daemon took (or declined to take), with its reason: the evidence."""

    at: datetime
    rule: str  # "R1" .. "R9"
    action: str  # "callback_scheduled", "no_callback", "night_ivr", ...
    reason: str
    call_id: str | None = None
    number: str | None = None
    agent: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None


class DecisionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, decision: Decision) -> int:
        values = _values(decision, decisions, exclude=("id",))
        values["details"] = dict(decision.details)
        async with self._db.write("record decision") as conn:
            result = await conn.execute(
                sa.insert(decisions).values(values).returning(decisions.c.id)
            )
            return int(result.scalar_one())

    async def between(
        self,
        since: datetime,
        until: datetime,
        *,
        rule: str | None = None,
        action: str | None = None,
    ) -> list[Decision]:
        c = decisions.c
        query = sa.select(decisions).where(c.at >= since).where(c.at < until).order_by(c.at, c.id)
        if rule is not None:
            query = query.where(c.rule == rule)
        if action is not None:
            query = query.where(c.action == action)
        async with self._db.read("list decisions") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [Decision(**dict(row)) for row in rows]

    async def count_by_action(self, since: datetime, until: datetime) -> dict[tuple[str, str], int]:
        """How many decisions of each (rule, action) were taken in [since, until)."""
        c = decisions.c
        query = (
            sa.select(c.rule, c.action, sa.func.count())
            .where(c.at >= since)
            .where(c.at < until)
            .group_by(c.rule, c.action)
        )
        async with self._db.read("count decisions") as conn:
            rows = (await conn.execute(query)).all()
        return {(rule, action): int(count) for rule, action, count in rows}


def _values(record: Any, table: sa.Table, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The record's columns as ``fit_row`` makes them storable: one caller's overlong or
    undecodable text must not cost the record, or the decision that says why their call
    was treated as it was."""
    return fit_row(
        table, {name: getattr(record, name) for name in record.__slots__ if name not in exclude}
    )

"""The facts sink: what the policies ask to persist (``RecordFact``, ``FlagNumber``) and every
decision the engine logs, written to the store without ever holding the engine up.

Theory of operation
-------------------
The composition root registers this service with the engine (``register``): the handlers
for ``RecordFact`` and ``FlagNumber`` and a decision listener. None of them does I/O: each
puts one item on a bounded queue and returns. One writer task, owned by the service,
takes the items in order and writes them:

- ``interaction`` facts become ``interactions`` rows (what night routing counts), ``call``
  facts ``calls`` rows, ``hold`` facts ``holds`` rows (holds of the customer only: the
  share of calls with hold is about the customer; every hold is in ``decisions`` anyway).
  Other kinds (``dead_air``, ``talk_over``, ...) have no table of their own: the decision
  the engine logged for them, with every field, is their record.
- ``FlagNumber`` flags the number, with the default expiry of the call's standards
  (``flags.default_expiry_days``; none: no expiry), counted from when the flag was asked.
- decisions go to ``decisions``.

What the writer takes at once (up to ``batch_size`` items) is converted to rows first (no
I/O; an item that cannot be converted is logged, ``fact_write_failed``, and counted as not
recorded), then written in one transaction (``Database.together``) with one statement per
table: a burst of hang-ups costs a commit and a few round trips per batch, not one per
record, which is what lets the sink keep up with a trunk dropping hundreds of calls a
second without holding SQLite's write lock against the callbacks. If that transaction fails
because the database refused a row (a constraint, a value it cannot take: not an outage,
which is retried) or for a bug, its rows are written again one at a time, so a refused row
loses only itself (``facts_rows_refused``, counted as not recorded).

Numbers are normalised here (``pbx_agent.numbers``, the site's ``default_region``), so
``8 916 ...`` and ``+7 916 ...`` are one customer. A fact about a caller without a usable
number (anonymous, withheld, unparsable) is not an interaction anyone can count: it is
logged (``fact_not_recorded``) and counted, not written; the call record keeps no number.

A store outage (``StoreUnavailable``) is logged (``facts_store_unavailable``), counted and
retried with a growing pause (``retry_initial_s`` doubling up to ``retry_max_s``), the
failed item first, so nothing is lost or reordered while the queue has room. It is never
raised into the engine. When the queue is full (``queue_size`` items waiting: a long outage)
the *newest* item is dropped, whatever its kind: facts, flags and decisions alike; the
first drop is logged (``facts_queue_full``) and the count when the queue accepts again
(``facts_queue_recovered``). Text is made storable (``pbx_agent.wire.escaping.storable``:
a byte that was not UTF-8, kept by the codecs as a lone surrogate, is stored as the visible
escape ``\\xff``, a NUL as ``\\x00``), then clipped to its column width, and decision
details are made JSON-safe the same way, so a row is never refused for its content.

Invariants: the engine-facing methods never await I/O and never raise; one writer task,
started by ``start`` and ended by ``close`` (which first lets the queue drain for up to
``close_timeout_s``; close it after the engine has drained, and items offered afterwards
are counted as lost); times in the store are timezone-aware UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from pbx_agent.clock import Clock, to_datetime
from pbx_agent.errors import StoreUnavailable
from pbx_agent.model.commands import FlagNumber, RecordFact
from pbx_agent.numbers import NormalizedNumber, Unusable, normalize
from pbx_agent.store import CallerFlag, CallRecord, HoldRecord, Interaction, Store
from pbx_agent.store.schema import decisions as decisions_table
from pbx_agent.wire.escaping import storable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from pbx_agent.engine import Decision, Engine
    from pbx_agent.model.calls import Call

log = structlog.get_logger("pbx_agent.facts")

# Column widths (``pbx_agent.store.schema``): longer values are clipped, never refused.
_ID_WIDTH = 128
_RULE_WIDTH = 16
_ACTION_WIDTH = 64
_NUMBER_WIDTH = 64
_TIER_WIDTH = 64


@dataclass(frozen=True, slots=True)
class FactsSettings:
    queue_size: int = 10_000
    batch_size: int = 200
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    close_timeout_s: float = 5.0


@dataclass(slots=True)
class FactsStats:
    """What the sink did, for metrics and tests."""

    written: Counter[str] = field(default_factory=Counter)  # by kind ("decision", "flag", ...)
    not_recorded: Counter[str] = field(default_factory=Counter)  # by reason
    dropped_queue_full: int = 0
    store_failures: int = 0
    lost_at_close: int = 0


@dataclass(frozen=True, slots=True)
class _Fact:
    command: RecordFact


@dataclass(frozen=True, slots=True)
class _Flag:
    command: FlagNumber
    set_at: datetime
    expiry_days: int | None


@dataclass(frozen=True, slots=True)
class _Decision:
    decision: Decision


_Item = _Fact | _Flag | _Decision


@dataclass(frozen=True, slots=True)
class _Row:
    """An item converted for the store: a record (a row dict for decisions)."""

    kind: str
    record: Any
    trigger_call: object = None  # a flag's call, for its log line


class FactsService:
    """Writes facts, flags and decisions to the store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        default_region: str,
        default_flag_expiry_days: int | None = None,
        settings: FactsSettings | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._region = default_region
        self._default_expiry_days = default_flag_expiry_days
        self.settings = settings or FactsSettings()
        self.stats = FactsStats()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(self.settings.queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._dropping = 0  # items dropped since the queue last accepted one
        self._unwritten = 0  # items of the batch in hand not written yet
        self._after_close = 0  # items offered after close
        self._converters: dict[str, Callable[[Mapping[str, Any]], _Row | None]] = {
            "interaction": self._interaction,
            "call": self._call,
            "hold": self._hold,
        }

    # ------------------------------------------------------------------ wiring

    def register(self, engine: Engine) -> None:
        """Make this service the engine's sink for facts, flags and decisions."""
        engine.register_service(RecordFact, self.record_fact)
        engine.register_service(FlagNumber, self.flag_number)
        engine.on_decision(self.on_decision)

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run(), name="facts-writer")

    async def close(self) -> None:
        """Let the queue drain (up to ``close_timeout_s``), then stop the writer and say what
        was not written; the same when the close itself is cut short (the daemon's stop
        budget spent: cancelled while draining)."""
        if self._writer is None:
            return
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.close_timeout_s):
                    await self._queue.join()
        finally:
            await self._stop_writer()

    async def _stop_writer(self) -> None:
        writer = self._writer
        if writer is None:
            return
        self._writer = None
        self._closing.set()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        left = self._queue.qsize() + self._unwritten
        self._unwritten = 0
        if left:
            self.stats.lost_at_close += left
            log.error("facts_lost_at_close", items=left, reason="the store did not take them")

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every item queued so far is written (tests, shutdown)."""
        async with asyncio.timeout(timeout_s):
            await self._queue.join()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # ------------------------------------------------------------------ engine side (no I/O)

    async def record_fact(self, command: RecordFact, call: Call | None) -> None:  # noqa: ARG002
        """The engine's service handler for ``RecordFact``."""
        self._offer(_Fact(command))

    async def flag_number(self, command: FlagNumber, call: Call | None) -> None:
        """The engine's service handler for ``FlagNumber``."""
        standards = call.standards if call is not None else None
        days = (
            standards.flags.default_expiry_days
            if standards is not None
            else self._default_expiry_days
        )
        self._offer(_Flag(command, to_datetime(self._clock.now()), days))

    def on_decision(self, decision: Decision) -> None:
        """The engine's decision listener."""
        self._offer(_Decision(decision))

    def _offer(self, item: _Item) -> None:
        if self._closing.is_set():
            # The engine's last commands can come after the sink closed: say so, once.
            if not self._after_close:
                log.error("facts_after_close", item=_kind(item), reason="the sink is closed")
            self._after_close += 1
            self.stats.lost_at_close += 1
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.dropped_queue_full += 1
            if not self._dropping:
                log.warning(
                    "facts_queue_full",
                    queue_size=self.settings.queue_size,
                    dropped="the newest item (facts, flags and decisions alike)",
                    item=_kind(item),
                )
            self._dropping += 1
            return
        if self._dropping:
            log.warning("facts_queue_recovered", dropped=self._dropping)
            self._dropping = 0

    # ------------------------------------------------------------------ the writer

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.settings.batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write_batch(self, batch: list[_Item]) -> None:
        """Convert the batch to rows (no I/O), then write them in one transaction. If that
        fails for any reason but an outage (a row the database refuses), the rows are
        written one at a time, so one bad row loses only itself."""
        self._unwritten = len(batch)
        rows = [row for item in batch if (row := self._row(item)) is not None]
        if rows and not await self._with_retry(_kinds(rows), partial(self._write_rows, rows)):
            log.warning("facts_batch_failed", items=len(rows), then="writing them one by one")
            for done, row in enumerate(rows):
                self._unwritten = len(rows) - done
                if not await self._with_retry(row.kind, partial(self._write_rows, [row])):
                    self.stats.not_recorded["write_failed"] += 1
        self._unwritten = 0

    async def _with_retry(self, kind: str, write: Callable[[], Awaitable[None]]) -> bool:
        """Write, retrying through an outage; False when the write failed otherwise."""
        pause = self.settings.retry_initial_s
        while True:
            try:
                await write()
            except StoreUnavailable as exc:
                if _refused(exc):
                    log.error(
                        "facts_rows_refused", kind=kind, items=self._unwritten, error=str(exc)
                    )
                    return False
                self.stats.store_failures += 1
                log.warning(
                    "facts_store_unavailable",
                    kind=kind,
                    items=self._unwritten,
                    retry_in_s=pause,
                    pending=self._queue.qsize(),
                    error=str(exc),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._closing.wait()
                pause = min(pause * 2, self.settings.retry_max_s)
                continue
            except Exception as exc:  # a bug must not stop the writer
                log.exception("fact_write_failed", kind=kind, error=repr(exc))
                return False
            return True

    async def _write_rows(self, rows: list[_Row]) -> None:
        """One transaction, one statement per table: the SQLite write lock is held for a
        handful of round trips, not one per row, so the callbacks' writes are not starved
        during a burst. Flags keep their order (a number flagged twice keeps the newest)."""
        by_kind: dict[str, list[Any]] = {}
        for row in rows:
            by_kind.setdefault(row.kind, []).append(row.record)
        store = self._store
        async with store.db.together("record facts"):
            await store.interactions.add_many(by_kind.get("interaction", []))
            await store.calls.save_many(by_kind.get("call", []))
            await store.holds.add_many(by_kind.get("hold", []))
            if decision_rows := by_kind.get("decision"):
                async with store.db.write("record decisions") as conn:
                    await conn.execute(sa.insert(decisions_table), decision_rows)
            for flag in by_kind.get("flag", []):
                await store.flags.set(flag)
        for row in rows:
            self.stats.written[row.kind] += 1
            if isinstance(row.record, CallerFlag):
                _log_flag(row.record, row.trigger_call)

    # ------------------------------------------------------------------ conversions

    def _row(self, item: _Item) -> _Row | None:
        """What ``item`` writes, or None (nothing to store, or it cannot be converted:
        logged and counted here, once)."""
        try:
            if isinstance(item, _Decision):
                return _Row("decision", self._decision_row(item.decision))
            if isinstance(item, _Flag):
                return self._flag(item)
            command = item.command
            convert = self._converters.get(command.kind)
            if convert is None:
                log.debug("fact_not_stored", kind=command.kind, reason="kept in decisions only")
                return None
            return convert(command.fields)
        except Exception as exc:  # a bug in one item must not cost the batch
            log.exception(
                "fact_write_failed", kind=_kind(item), call_id=_call_id(item), error=repr(exc)
            )
            self.stats.not_recorded["write_failed"] += 1
            return None

    def _interaction(self, fields: Mapping[str, Any]) -> _Row | None:
        number = self._customer(fields.get("number"), "interaction", fields)
        if number is None:
            return None
        return _Row(
            "interaction",
            Interaction(
                number=number.e164,
                started_at=_time(fields["started_at"]),
                ended_at=_optional_time(fields.get("ended_at")),
                agent=_clip(fields.get("agent"), _ID_WIDTH),
                queue=_clip(fields.get("queue"), _ID_WIDTH),
                topic=_clip(fields.get("topic"), _ID_WIDTH),
                call_id=_clip(fields.get("call_id"), _ID_WIDTH),
            ),
        )

    def _call(self, fields: Mapping[str, Any]) -> _Row:
        number = normalize(str(fields.get("caller_number") or ""), self._region)
        return _Row(
            "call",
            CallRecord(
                call_id=_clip(str(fields["call_id"]), _ID_WIDTH) or "",
                started_at=_time(fields["started_at"]),
                ended_at=_optional_time(fields.get("ended_at")),
                caller_number=number.e164 if isinstance(number, NormalizedNumber) else None,
                agent=_clip(fields.get("agent"), _ID_WIDTH),
                queue=_clip(fields.get("queue"), _ID_WIDTH),
                had_hold=bool(fields.get("had_hold", False)),
                end_reason=_clip(str(fields.get("end_reason") or ""), _ACTION_WIDTH) or "",
            ),
        )

    def _hold(self, fields: Mapping[str, Any]) -> _Row | None:
        held_role = fields.get("held_role")
        if held_role not in (None, "caller"):
            log.debug("fact_not_stored", kind="hold", reason=f"held party is {held_role}")
            return None
        return _Row(
            "hold",
            HoldRecord(
                call_id=_clip(str(fields["call_id"]), _ID_WIDTH) or "",
                started_at=_time(fields["started_at"]),
                agent=_clip(fields.get("agent"), _ID_WIDTH),
                tier=_clip(fields.get("tier"), _TIER_WIDTH),
                ended_at=_optional_time(fields.get("ended_at")),
                reminders=int(fields.get("reminders") or 0),
                over_limit=bool(fields.get("over_limit", False)),
                callback_offer_taken=bool(fields.get("callback_offer_taken", False)),
            ),
        )

    def _flag(self, item: _Flag) -> _Row | None:
        command = item.command
        fields = {"set_by": command.set_by, "call_id": command.trigger_call}
        number = self._customer(command.number, "flag", fields)
        if number is None:
            return None
        expires = (
            item.set_at + timedelta(days=item.expiry_days) if item.expiry_days is not None else None
        )
        flag = CallerFlag(
            number=number.e164,
            reason=_text(command.reason),
            set_by=_clip(command.set_by, _ID_WIDTH) or "",
            set_at=item.set_at,
            expires_at=expires,
        )
        return _Row("flag", flag, command.trigger_call)

    def _decision_row(self, decision: Decision) -> dict[str, Any]:
        number = normalize(decision.number, self._region) if decision.number else None
        return {
            "at": to_datetime(decision.at),
            "rule": _clip(decision.rule, _RULE_WIDTH) or "",
            "action": _clip(decision.action, _ACTION_WIDTH) or "",
            "reason": _text(decision.reason),
            "call_id": _clip(decision.call_id, _ID_WIDTH),
            "number": number.e164 if isinstance(number, NormalizedNumber) else None,
            "agent": _clip(decision.agent, _ID_WIDTH),
            "details": _json_safe({"policy": decision.policy, **decision.fields}),
        }

    def _customer(
        self, raw: object, kind: str, fields: Mapping[str, Any]
    ) -> NormalizedNumber | None:
        number = normalize(str(raw or ""), self._region)
        if isinstance(number, Unusable):
            self.stats.not_recorded[f"number_{number.reason}"] += 1
            log.info(
                "fact_not_recorded",
                kind=kind,
                reason=f"number_{number.reason}",
                number=number.raw,
                call_id=fields.get("call_id"),
            )
            return None
        return number


def _log_flag(flag: CallerFlag, call_id: object) -> None:
    log.info(
        "number_flagged",
        number=flag.number,
        set_by=flag.set_by,
        reason=flag.reason,
        expires_at=flag.expires_at.isoformat() if flag.expires_at is not None else None,
        call_id=call_id,
    )


def _kind(item: _Item) -> str:
    if isinstance(item, _Fact):
        return item.command.kind
    if isinstance(item, _Flag):
        return "flag"
    return "decision"


def _call_id(item: _Item) -> object:
    if isinstance(item, _Fact):
        return item.command.fields.get("call_id")
    if isinstance(item, _Flag):
        return item.command.trigger_call
    return item.decision.call_id


def _refused(exc: StoreUnavailable) -> bool:
    """The database refused the rows themselves (a constraint, a value it cannot take):
    retrying the same rows would refuse them again for ever, unlike an outage."""
    cause = exc.__cause__
    if isinstance(cause, sa.exc.IntegrityError | sa.exc.DataError | UnicodeError):
        return True
    return isinstance(cause, sa.exc.StatementError) and not isinstance(cause, sa.exc.DBAPIError)


def _kinds(rows: list[_Row]) -> str:
    """The kinds in ``rows``, for a log line: ``decision,interaction``."""
    return ",".join(sorted({r.kind for r in rows}))


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return to_datetime(float(value))


def _optional_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _text(value: Any) -> str:
    """``value`` as text the store takes (escaped first, so the escapes are clipped too)."""
    return storable(str(value))


def _clip(value: Any, width: int) -> str | None:
    if value is None:
        return None
    text = _text(value)
    return text if len(text) <= width else text[:width]


def _json_safe(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` as plain JSON values (tuples become lists, anything else its string),
    every string in them, keys included, storable."""
    plain = json.loads(json.dumps(details, default=str, ensure_ascii=False))
    safe: dict[str, Any] = _storable_json(plain)
    return safe


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(key): _storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable_json(item) for item in value]
    return value

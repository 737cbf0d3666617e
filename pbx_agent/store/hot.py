"""Low-latency reads for decisions that sit in a call's path (the ``route`` hook).

The repositories go through SQLAlchemy's asyncio layer, which on SQLite hops to aiosqlite's
thread for every cursor operation (about two dozen hops for two small queries inside a
``BEGIN``/``ROLLBACK``), and on PostgreSQL pings every connection it checks out. That is fine
for the callback scheduler; it is not for a decision with a 50 ms deadline taken on every
inbound call. Measured (``bench/route_bench.py``): 8 ms per decision on a busy machine,
nearly all of it waiting for thread hand-offs.

So these reads take the shortest path each database allows, with the same tables and types:

- SQLite: a synchronous SQLAlchemy engine on the same file, read-only (``query_only``), WAL,
  used from a small thread pool: one thread hop per decision, both queries inside it, no
  explicit transaction (each statement reads a consistent snapshot; WAL never blocks readers).
- PostgreSQL: an asyncpg-backed engine of its own in autocommit mode without a pre-ping: two
  statements, two round trips. A dead pooled connection fails the read (the caller falls back
  to its safe default, ``agent`` for the route hook) and is replaced by the pool.

Errors come out as ``StoreUnavailable``, as everywhere in the store.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pbx_agent.errors import StoreUnavailable
from pbx_agent.store.engine import SQLITE, parse_url
from pbx_agent.store.schema import caller_flags, interactions


@dataclass(frozen=True, slots=True)
class FlagRow:
    reason: str
    set_by: str
    set_at: datetime
    expires_at: datetime | None


History = list[tuple[datetime, str | None, str | None]]  # started_at, topic, call_id

_FLAG = sa.select(
    caller_flags.c.reason, caller_flags.c.set_by, caller_flags.c.set_at, caller_flags.c.expires_at
).where(caller_flags.c.number == sa.bindparam("number"))

_HISTORY = (
    sa.select(interactions.c.started_at, interactions.c.topic, interactions.c.call_id)
    .where(interactions.c.number == sa.bindparam("number"))
    .where(interactions.c.started_at >= sa.bindparam("since", type_=interactions.c.started_at.type))
    .order_by(interactions.c.started_at.desc())
    .limit(sa.bindparam("max_rows", type_=sa.Integer()))
)


# PostgreSQL: the flag and the history in one round trip (a lateral join on a one-row seed;
# the flag's columns repeat on every history row, and are NULL when there is no flag).
_HISTORY_SUB = (
    sa.select(interactions.c.started_at, interactions.c.topic, interactions.c.call_id)
    .where(interactions.c.number == sa.bindparam("number"))
    .where(interactions.c.started_at >= sa.bindparam("since", type_=interactions.c.started_at.type))
    .order_by(interactions.c.started_at.desc())
    .limit(sa.bindparam("max_rows", type_=sa.Integer()))
    .lateral("history")
)
_SEED = sa.select(sa.literal(1).label("one")).subquery("seed")
_FLAG_AND_HISTORY = sa.select(
    caller_flags.c.reason,
    caller_flags.c.set_by,
    caller_flags.c.set_at,
    caller_flags.c.expires_at,
    _HISTORY_SUB.c.started_at,
    _HISTORY_SUB.c.topic,
    _HISTORY_SUB.c.call_id,
).select_from(
    _SEED.outerjoin(caller_flags, caller_flags.c.number == sa.bindparam("number")).outerjoin(
        _HISTORY_SUB, sa.true()
    )
)


def _flag_row(row: Any) -> FlagRow | None:
    if row is None:
        return None
    return FlagRow(row.reason, row.set_by, row.set_at, row.expires_at)


class HotReads:
    """See the module docstring. ``flag_and_history`` is the one read the route hook needs."""

    def __init__(
        self, url: str, *, busy_timeout_s: float = 1.0, statement_timeout_s: float = 5.0
    ) -> None:
        self._url: URL = parse_url(url)
        self._busy_timeout_s = busy_timeout_s
        self._statement_timeout_s = statement_timeout_s
        self._sync: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._async: AsyncEngine | None = None

    # -- SQLite ---------------------------------------------------------------------------

    def _sqlite(self) -> tuple[Engine, ThreadPoolExecutor]:
        if self._sync is None or self._executor is None:
            url = self._url.set(drivername="sqlite")
            engine = sa.create_engine(
                url, connect_args={"timeout": self._busy_timeout_s, "check_same_thread": False}
            )
            busy_ms = int(self._busy_timeout_s * 1000)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # no implicit transactions: each read alone
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
                cursor.execute("PRAGMA query_only=ON")
                cursor.close()

            self._sync = engine
            self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-hot")
        return self._sync, self._executor

    def _read_sync(
        self, number: str, with_flag: bool, since: datetime | None, max_rows: int
    ) -> tuple[FlagRow | None, History]:
        engine, _ = self._sqlite()
        flag: FlagRow | None = None
        history: History = []
        with engine.connect() as conn:
            if with_flag:
                flag = _flag_row(conn.execute(_FLAG, {"number": number}).first())
            if since is not None:
                rows = conn.execute(
                    _HISTORY, {"number": number, "since": since, "max_rows": max_rows}
                )
                history = [(row.started_at, row.topic, row.call_id) for row in rows]
            conn.rollback()
        return flag, history

    # -- PostgreSQL -----------------------------------------------------------------------

    def _postgres(self) -> AsyncEngine:
        if self._async is None:
            self._async = create_async_engine(
                self._url,
                pool_size=4,
                max_overflow=4,
                pool_pre_ping=False,
                isolation_level="AUTOCOMMIT",
                connect_args={
                    "timeout": self._statement_timeout_s,
                    "command_timeout": self._statement_timeout_s,
                },
            )
        return self._async

    async def _read_async(
        self, number: str, with_flag: bool, since: datetime | None, max_rows: int
    ) -> tuple[FlagRow | None, History]:
        flag: FlagRow | None = None
        history: History = []
        async with self._postgres().connect() as conn:
            if since is None:
                if with_flag:
                    flag = _flag_row((await conn.execute(_FLAG, {"number": number})).first())
                return flag, history
            result = await conn.execute(
                _FLAG_AND_HISTORY, {"number": number, "since": since, "max_rows": max_rows}
            )
            for row in result:
                if with_flag and flag is None and row.set_at is not None:
                    flag = _flag_row(row)
                if row.started_at is not None:
                    history.append((row.started_at, row.topic, row.call_id))
        return flag, history

    # -- the read -------------------------------------------------------------------------

    async def flag_and_history(
        self, number: str, *, with_flag: bool, since: datetime | None, max_rows: int
    ) -> tuple[FlagRow | None, History]:
        """The number's flag (if asked) and its interactions since ``since`` (if given),
        newest first, at most ``max_rows``."""
        try:
            if self._url.drivername == SQLITE:
                _, executor = self._sqlite()
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    executor, self._read_sync, number, with_flag, since, max_rows
                )
            return await self._read_async(number, with_flag, since, max_rows)
        except (SQLAlchemyError, OSError) as exc:
            where = self._url.render_as_string(hide_password=True)
            detail = str(exc).splitlines()[0] if str(exc) else ""
            msg = (
                f"database {where}: read caller flag and history failed: "
                f"{type(exc).__name__}: {detail}"
            )
            raise StoreUnavailable(msg) from exc

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._sync is not None:
            self._sync.dispose()
            self._sync = None
        if self._async is not None:
            await self._async.dispose()
            self._async = None

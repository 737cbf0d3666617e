"""The database connection: one async engine for SQLite (default) or PostgreSQL, with the
transaction discipline every repository follows and the one place DB errors are translated.

- SQLite (``sqlite+aiosqlite:///path``): WAL journal (readers never block the writer), a busy
  timeout (a writer waits for another instead of failing at once), foreign keys on. The
  driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself:
  write transactions begin with ``BEGIN IMMEDIATE``, which takes the write lock up front, so
  two daemons claiming jobs from one file are serialised and a transaction never fails half
  way when it upgrades from reading to writing (SQLITE_BUSY that no timeout can cure).
- PostgreSQL (``postgresql+asyncpg://...``): connect and statement timeouts; row locks
  (``FOR UPDATE SKIP LOCKED``) written in the same Core statements, which SQLite ignores.
- ``Database.read()`` / ``Database.write()`` are the only ways in. Every SQLAlchemy, driver,
  OS and timeout error raised inside them, and a ``UnicodeError`` (SQLite's driver raises a
  bare ``UnicodeEncodeError`` for a lone surrogate), comes out as ``StoreUnavailable``
  naming the operation and the database (password hidden), the original as its cause.
  Repositories pass caller text through ``pbx_agent.wire.escaping.storable`` so that it
  does not happen.
- ``Database.together()`` opens one write transaction that every ``write()`` of the same
  task inside it joins (the repositories' methods unchanged): a burst of records costs one
  commit, not one each, and all of them are written or none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from pbx_agent.config.validation import mask_url
from pbx_agent.errors import ConfigError, StoreUnavailable

SQLITE = "sqlite+aiosqlite"
POSTGRES = "postgresql+asyncpg"
SUPPORTED = (SQLITE, POSTGRES)
DEFAULT_URL = "sqlite+aiosqlite:///./var/pbx-agent.sqlite3"

# Execution option read by the SQLite "begin" hook.
_BEGIN_OPTION = "pbx_agent_begin"

# What a statement can raise that ``StoreUnavailable`` stands for (see the docstring).
_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, UnicodeError)


def parse_url(url: str) -> URL:
    """Validate a store URL (``store.url``) and return it parsed."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        shown = mask_url(url)
        msg = f"store.url: {shown!r} is not a database URL (accepted: {', '.join(SUPPORTED)})"
        raise ConfigError(msg) from exc
    if parsed.drivername not in SUPPORTED:
        msg = (
            f"store.url: driver {parsed.drivername!r} is not supported "
            f"(accepted: {', '.join(SUPPORTED)})"
        )
        raise ConfigError(msg)
    return parsed


def create_engine(
    url: str,
    *,
    connect_timeout_s: float = 10.0,
    statement_timeout_s: float = 30.0,
    busy_timeout_s: float = 15.0,
    pool_size: int = 5,
) -> AsyncEngine:
    """An engine for ``url`` with the settings described in the module docstring. No I/O
    happens here except creating the directory of a SQLite file."""
    parsed = parse_url(url)
    if parsed.drivername == SQLITE:
        return _sqlite_engine(parsed, busy_timeout_s)
    return create_async_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=connect_timeout_s,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout_s, "command_timeout": statement_timeout_s},
    )


def _sqlite_engine(parsed: URL, busy_timeout_s: float) -> AsyncEngine:
    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = (
                f"store.url: the SQLite database's folder {str(folder)!r} cannot be created "
                f"({exc.strerror or exc}); choose a writable path"
            )
            raise StoreUnavailable(msg) from exc
    engine = create_async_engine(parsed, connect_args={"timeout": busy_timeout_s})
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins (see docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first, so the other pragmas wait for a busy file too.
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            _use_wal(cursor, busy_timeout_s)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_BEGIN_OPTION) == "immediate"
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _use_wal(cursor: Any, busy_timeout_s: float) -> None:
    """Put the file in WAL mode (it stays so: later connections only read the mode).

    Switching the journal mode needs the file to itself, and SQLite does not always call
    the busy handler for it: a second connection opening while the first writes got
    ``database is locked`` at once. Retried here with backoff, up to the busy timeout."""
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return
    deadline = time.monotonic() + busy_timeout_s
    pause = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.fetchone()
        except Exception as exc:  # the driver's OperationalError, whichever module it is from
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        else:
            return
        # The connect event runs in SQLAlchemy's greenlet on the event loop: wait there
        # without blocking the loop.
        await_only(asyncio.sleep(pause))
        pause = min(pause * 2, 0.25)


class Database:
    """An engine plus the read/write transaction helpers the repositories use."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{_BEGIN_OPTION: "immediate"})
        self.dialect = engine.dialect.name
        # The transaction ``together()`` opened in this task, which ``write()`` joins.
        self._joined: ContextVar[AsyncConnection | None] = ContextVar(
            f"pbx_agent_write_{id(self)}", default=None
        )

    @property
    def where(self) -> str:
        """The database, for messages: URL without the password."""
        return self.engine.url.render_as_string(hide_password=True)

    @asynccontextmanager
    async def read(
        self, operation: str, *, snapshot: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction (rolled back at the end).

        ``snapshot``: every statement in the block sees the same committed state. SQLite's
        transactions always do (WAL readers keep the snapshot of their first read);
        PostgreSQL's default READ COMMITTED gives each statement its own, so the block runs
        at REPEATABLE READ there.
        """
        try:
            async with self.engine.connect() as conn:
                if snapshot and self.dialect == "postgresql":
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                yield conn
        except _DB_ERRORS as exc:
            raise self._unavailable(operation, exc) from exc

    @asynccontextmanager
    async def write(self, operation: str) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block ends without an exception
        (``BEGIN IMMEDIATE`` on SQLite). Inside ``together()`` it is that transaction."""
        joined = self._joined.get()
        if joined is not None:
            try:
                yield joined
            except _DB_ERRORS as exc:
                raise self._unavailable(operation, exc) from exc
            return
        try:
            async with self._writer.begin() as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise self._unavailable(operation, exc) from exc

    @asynccontextmanager
    async def together(self, operation: str) -> AsyncIterator[None]:
        """One write transaction for every ``write()`` this task makes inside the block:
        committed when the block ends without an exception, rolled back (all of it) when
        one escapes. Not reentrant: a ``together()`` inside another is an error."""
        if self._joined.get() is not None:
            msg = f"database {self.where}: {operation}: already inside together()"
            raise RuntimeError(msg)
        async with self.write(operation) as conn:
            token = self._joined.set(conn)
            try:
                yield
            finally:
                self._joined.reset(token)

    async def dispose(self) -> None:
        try:
            await self.engine.dispose()
        except _DB_ERRORS as exc:
            raise self._unavailable("close", exc) from exc

    def _unavailable(self, operation: str, exc: BaseException) -> StoreUnavailable:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        msg = f"database {self.where}: {operation} failed: {type(exc).__name__}: {detail}"
        return StoreUnavailable(msg)

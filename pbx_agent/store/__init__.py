"""The daemon's durable store: SQLite by default, PostgreSQL when several daemons share work.

``Store`` is the facade the rest of the daemon uses::

    store = Store.open("sqlite+aiosqlite:///./var/pbx-agent.sqlite3")
    await store.upgrade()                       # Alembic migrations, shipped in the package
    await store.callbacks.claim_due(...)
    await store.close()

One code path for both databases: SQLAlchemy Core statements, the same migrations, the
same transaction helpers (``pbx_agent.store.engine``). Every database, driver or I/O error
leaves this package as ``pbx_agent.errors.StoreUnavailable``. Times in and out are
timezone-aware UTC datetimes.
"""

from __future__ import annotations

from pbx_agent.store.callbacks import AttemptResult, CallbackRepository, Finished, NewJob
from pbx_agent.store.engine import DEFAULT_URL, Database, create_engine, parse_url
from pbx_agent.store.hot import HotReads
from pbx_agent.store.migrate import current, head_revision, upgrade
from pbx_agent.store.records import (
    CallerFlag,
    CallRecord,
    CallRepository,
    Decision,
    DecisionRepository,
    FlagRepository,
    HoldRecord,
    HoldRepository,
    Interaction,
    InteractionRepository,
)

__all__ = [
    "DEFAULT_URL",
    "AttemptResult",
    "CallRecord",
    "CallbackRepository",
    "CallerFlag",
    "Decision",
    "Finished",
    "HoldRecord",
    "Interaction",
    "NewJob",
    "Store",
    "parse_url",
]


class Store:
    """The database, its migrations and one repository per table group."""

    def __init__(self, db: Database, hot: HotReads | None = None) -> None:
        self.db = db
        # Reads that sit in a call's path (the route hook), on the shortest path per database.
        self.hot = hot
        self.callbacks = CallbackRepository(db)
        self.interactions = InteractionRepository(db)
        self.flags = FlagRepository(db)
        self.holds = HoldRepository(db)
        self.calls = CallRepository(db)
        self.decisions = DecisionRepository(db)

    @classmethod
    def open(
        cls,
        url: str = DEFAULT_URL,
        *,
        connect_timeout_s: float = 10.0,
        statement_timeout_s: float = 30.0,
        busy_timeout_s: float = 15.0,
    ) -> Store:
        """A store for ``url`` (validated; ``ConfigError`` names the bad URL). Connections
        are made on first use."""
        engine = create_engine(
            url,
            connect_timeout_s=connect_timeout_s,
            statement_timeout_s=statement_timeout_s,
            busy_timeout_s=busy_timeout_s,
        )
        return cls(Database(engine), HotReads(url, statement_timeout_s=statement_timeout_s))

    @property
    def dialect(self) -> str:
        return self.db.dialect

    async def upgrade(self, revision: str = "head") -> str | None:
        """Apply the shipped migrations up to ``revision``; return the revision reached."""
        return await upgrade(self.db, revision)

    async def current_revision(self) -> str | None:
        return await current(self.db)

    @staticmethod
    def head_revision() -> str:
        return head_revision()

    async def close(self) -> None:
        if self.hot is not None:
            await self.hot.close()
        await self.db.dispose()

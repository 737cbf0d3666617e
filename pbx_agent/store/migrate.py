"""Applying the shipped Alembic migrations programmatically (no ``alembic.ini``).

``upgrade`` runs inside one write transaction of the store (``BEGIN IMMEDIATE`` on SQLite;
on PostgreSQL the transaction first takes an advisory lock, so daemons starting together
on one database migrate one after the other and the later ones find nothing to do).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from pbx_agent.errors import StoreUnavailable
from pbx_agent.store.engine import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant will do; it only has to be the same for every daemon of the site.
_MIGRATION_LOCK_KEY = 7_226_101


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        msg = f"no migrations found in {MIGRATIONS_DIR}"
        raise RuntimeError(msg)
    return head


def is_known(revision: str | None) -> bool:
    """Whether this software ships ``revision`` (None, never migrated, is known)."""
    if revision is None:
        return True
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def newer_schema_message(where: str, revision: str) -> str:
    return (
        f"{where}: the schema is at revision {revision!r}, which this software does not know "
        f"(its newest is {head_revision()!r}): a newer pbx-agent has migrated this database. "
        "Run that version (or newer), or restore a backup taken before the migration"
    )


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(db: Database, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; return the revision the database is at."""
    async with db.write("schema upgrade") as conn:
        if db.dialect == "postgresql":
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        found = await conn.run_sync(_current)
        if not is_known(found):
            assert found is not None
            raise StoreUnavailable(newer_schema_message(db.where, found))
        await conn.run_sync(_upgrade, revision)
        return await conn.run_sync(_current)


async def current(db: Database) -> str | None:
    """The revision the database is at (None: never migrated)."""
    async with db.read("schema revision") as conn:
        return await conn.run_sync(_current)

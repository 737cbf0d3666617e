"""Migrations, the engine settings, time handling and error translation, on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pbx_agent.errors import ConfigError, StoreUnavailable
from pbx_agent.store import Interaction, Store
from pbx_agent.store.schema import metadata

TABLES = {
    "callback_jobs",
    "callback_attempts",
    "interactions",
    "caller_flags",
    "holds",
    "calls",
    "decisions",
    "claim_locks",
}


async def test_migrations_create_every_table_from_an_empty_database(db_url: str) -> None:
    """An empty database reaches the head revision with every table the product needs."""
    store = Store.open(db_url)
    try:
        assert await store.current_revision() is None
        assert await store.upgrade() == Store.head_revision()
        async with store.db.read("inspect") as conn:
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert names >= TABLES
    finally:
        await store.close()


async def test_upgrading_twice_changes_nothing(db_url: str) -> None:
    """Start-up applies migrations every time; the second run is a no-op."""
    store = Store.open(db_url)
    try:
        first = await store.upgrade()
        second = await store.upgrade()
        assert first == second == Store.head_revision()
    finally:
        await store.close()


async def test_migrated_schema_matches_the_table_definitions(store: Store) -> None:
    """The migration creates exactly what the repositories query (no drift)."""

    def diff(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with store.db.read("compare") as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_daemons_starting_together_migrate_once(db_url: str) -> None:
    """Several daemons upgrading one database at the same moment all succeed."""
    stores = [Store.open(db_url) for _ in range(3)]
    try:
        revisions = await asyncio.gather(*(s.upgrade() for s in stores))
        assert set(revisions) == {Store.head_revision()}
    finally:
        for s in stores:
            await s.close()


async def test_times_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    """A Moscow-time timestamp is stored and read back as the same instant, in UTC."""
    moscow = timezone(timedelta(hours=3))
    started = datetime(2026, 3, 1, 23, 30, 15, 123456, tzinfo=moscow)
    await store.interactions.add(Interaction(number="+79161234567", started_at=started))
    [read] = await store.interactions.for_number("+79161234567", started - timedelta(hours=1))
    assert read.started_at == started
    assert read.started_at.tzinfo is UTC


async def test_naive_times_are_refused(store: Store) -> None:
    """A time without a zone would be ambiguous: the store refuses it."""
    with pytest.raises(StoreUnavailable, match="naive datetime"):
        await store.interactions.add(
            Interaction(number="+79161234567", started_at=datetime(2026, 3, 1, 12, 0))  # noqa: DTZ001
        )


async def test_sqlite_uses_write_ahead_logging(tmp_path: object) -> None:
    """SQLite runs in WAL mode with a busy timeout so a reader never blocks a writer."""
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path}/wal.sqlite3")
    try:
        async with store.db.read("pragma") as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        assert mode == "wal"
        assert busy == 15000
    finally:
        await store.close()


@pytest.mark.postgres
async def test_unreachable_database_is_reported_as_store_unavailable() -> None:
    """A refused connection comes out as StoreUnavailable naming the operation, no password."""
    store = Store.open(
        "postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/nothing", connect_timeout_s=2
    )
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.upgrade()
        assert "schema upgrade failed" in str(caught.value)
        assert "s3cret" not in str(caught.value)
    finally:
        await store.close()


def test_unsupported_database_url_is_a_config_error() -> None:
    """Only sqlite+aiosqlite and postgresql+asyncpg are accepted, and the message says so."""
    with pytest.raises(ConfigError, match=r"store\.url.*mysql.*accepted"):
        Store.open("mysql+aiomysql://localhost/x")


def test_a_url_that_does_not_parse_is_named_without_its_password() -> None:
    """The error for a mistyped URL shows it, its password hidden."""
    with pytest.raises(ConfigError, match="not a database URL") as raised:
        Store.open("postgresql:/pbx:hunter2@db/pbx")
    assert "hunter2" not in str(raised.value)
    assert "pbx:***@db/pbx" in str(raised.value)

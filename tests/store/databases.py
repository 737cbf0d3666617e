"""Test databases: a SQLite file per test, or a PostgreSQL database per test (created on the
server at 127.0.0.1:5432 and dropped afterwards; skipped when the server is unreachable).

Import the fixtures into a test module (``from tests.store.databases import db_url, store``)
to run its tests on both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pbx_agent.store import Store

PG_ADMIN_DSN = os.environ.get("PBX_AGENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_PART = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]


async def create_pg_database() -> str:
    """Create a uniquely named database; return its name (skips the test when unreachable)."""
    name = f"pbx_agent_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL at {PG_HOST_PART} is not reachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_pg_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def pg_url(name: str) -> str:
    return f"postgresql+asyncpg://{PG_HOST_PART}/{name}"


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'pbx-agent.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind, removed after the test."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    name = await create_pg_database()
    try:
        yield pg_url(name)
    finally:
        await drop_pg_database(name)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated store on each kind of database."""
    opened = Store.open(db_url)
    await opened.upgrade()
    try:
        yield opened
    finally:
        await opened.close()

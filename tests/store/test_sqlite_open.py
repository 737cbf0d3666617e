"""Opening a SQLite store while another process holds the file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from pbx_agent.store import Store


async def test_a_store_opened_while_the_file_is_locked_waits_and_turns_on_wal(
    tmp_path: Path,
) -> None:
    """A new file (not yet WAL) with another writer's transaction open: SQLite fails
    ``PRAGMA journal_mode=WAL`` at once with ``database is locked`` here, without calling
    the busy handler (two daemons, or the daemon and ``pbx-agent db upgrade``, opening a
    fresh file together). The store now waits for the writer (within its busy timeout)
    and the file ends up in WAL mode."""
    path = tmp_path / "agent.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    store = Store.open(f"sqlite+aiosqlite:///{path}", busy_timeout_s=10)
    try:
        opening = asyncio.create_task(store.upgrade())
        await asyncio.sleep(0.3)
        assert not opening.done(), "the store went on while the file was locked"
        holder.execute("COMMIT")
        assert await asyncio.wait_for(opening, 10) == Store.head_revision()
    finally:
        holder.close()
        await store.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        check.close()


async def test_a_file_already_in_wal_is_opened_without_switching_again(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    first = Store.open(f"sqlite+aiosqlite:///{path}")
    await first.upgrade()
    await first.close()
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a shared lock
    second = Store.open(f"sqlite+aiosqlite:///{path}", busy_timeout_s=1)
    try:
        assert await second.current_revision() == Store.head_revision()
    finally:
        reader.close()
        await second.close()

"""The report tests run on SQLite and on PostgreSQL, like the store's (tests/store)."""

from __future__ import annotations

from tests.store.databases import db_url, store

__all__ = ["db_url", "store"]

"""Every store test runs on SQLite and on PostgreSQL (see ``databases.py``)."""

from __future__ import annotations

from tests.store.databases import db_url, store

__all__ = ["db_url", "store"]

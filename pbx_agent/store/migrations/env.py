"""Alembic environment for the daemon's store.

Migrations run only on a connection the store hands over (``config.attributes["connection"]``),
inside the store's own transaction: the same code path, engine settings and error translation
as everything else, for SQLite and PostgreSQL alike. There is no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pbx_agent.store.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    msg = "migrations run through pbx_agent.store (Store.upgrade or `pbx-agent db upgrade`)"
    raise TypeError(msg)

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

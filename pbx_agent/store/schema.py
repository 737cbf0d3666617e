"""The database schema as SQLAlchemy Core tables: one definition for SQLite and PostgreSQL.

The migrations in ``pbx_agent/store/migrations/versions`` create exactly these tables (a test
compares them); the repositories query them. Nothing here opens a connection.

Invariants:
- Every timestamp column is ``UtcDateTime``: it accepts only timezone-aware datetimes, stores
  UTC (``timestamptz`` on PostgreSQL, an ISO text in UTC on SQLite, which sorts and compares
  correctly because every value has the same format) and gives back aware UTC datetimes.
- Numbers are stored in E.164 (``pbx_agent.numbers``) so one customer is one key.
- ``callback_attempts (job_id, attempt_no)`` is unique: the database itself refuses a second
  row for the same attempt, whatever the daemons do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from pbx_agent.wire.escaping import storable

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware timestamp, always UTC on the way in and out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = f"naive datetime {value.isoformat()} refused: store times must carry a timezone"
            raise ValueError(msg)
        utc = value.astimezone(UTC)
        # SQLite has no timestamp type: store the UTC wall time, same format for every row.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            msg = f"expected a timestamp from the database, got {type(value).__name__}"
            raise TypeError(msg)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Integer primary keys: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

callback_jobs = sa.Table(
    "callback_jobs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("number", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    sa.Column("trigger_call_id", sa.String(128), nullable=True),
    sa.Column("trigger_cause", sa.String(128), nullable=False, server_default=""),
    sa.Column("target", sa.String(128), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("anchor_at", UtcDateTime(), nullable=False),
    sa.Column("window_ends_at", UtcDateTime(), nullable=False),
    sa.Column("deadline_at", UtcDateTime(), nullable=True),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
    sa.Column("attempts_made", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("attempt_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_attempt_at", UtcDateTime(), nullable=True),
    sa.Column("current_request_id", sa.String(160), nullable=True),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("finish_reason", sa.Text(), nullable=False, server_default=""),
    sa.Column("note", sa.Text(), nullable=False, server_default=""),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "status", "lease_expires_at"),
    sa.Index(None, "number", "status"),
)

callback_attempts = sa.Table(
    "callback_attempts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column(
        "job_id",
        Id,
        sa.ForeignKey("callback_jobs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("attempt_no", sa.Integer(), nullable=False),
    sa.Column("request_id", sa.String(160), nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("placed_by", sa.String(128), nullable=False, server_default=""),
    sa.Column("dialled_at", UtcDateTime(), nullable=False),
    sa.Column("answered_at", UtcDateTime(), nullable=True),
    sa.Column("ended_at", UtcDateTime(), nullable=True),
    sa.Column("cause", sa.Integer(), nullable=True),
    sa.Column("cause_text", sa.String(128), nullable=False, server_default=""),
    sa.Column("tech_cause", sa.String(128), nullable=False, server_default=""),
    sa.Column("amd_result", sa.String(32), nullable=False, server_default=""),
    sa.Column("amd_cause", sa.String(128), nullable=False, server_default=""),
    sa.UniqueConstraint("job_id", "attempt_no"),
    sa.UniqueConstraint("request_id"),
)

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("number", sa.String(32), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("ended_at", UtcDateTime(), nullable=True),
    sa.Column("agent", sa.String(128), nullable=True),
    sa.Column("queue", sa.String(128), nullable=True),
    sa.Column("topic", sa.String(128), nullable=True),
    sa.Column("call_id", sa.String(128), nullable=True),
    # "Which interactions did this number have since T" (night routing) finds its rows by
    # this index.
    sa.Index(None, "number", "started_at"),
)

caller_flags = sa.Table(
    "caller_flags",
    metadata,
    sa.Column("number", sa.String(32), primary_key=True),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    sa.Column("set_by", sa.String(128), nullable=False, server_default=""),
    sa.Column("set_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=True),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(128), nullable=False),
    sa.Column("agent", sa.String(128), nullable=True),
    sa.Column("tier", sa.String(64), nullable=True),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("ended_at", UtcDateTime(), nullable=True),
    sa.Column("reminders", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("over_limit", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("callback_offer_taken", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Index(None, "started_at"),
    sa.Index(None, "call_id"),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("call_id", sa.String(128), primary_key=True),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("ended_at", UtcDateTime(), nullable=True),
    sa.Column("caller_number", sa.String(64), nullable=True),
    sa.Column("agent", sa.String(128), nullable=True),
    sa.Column("queue", sa.String(128), nullable=True),
    sa.Column("had_hold", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("end_reason", sa.String(64), nullable=False, server_default=""),
    sa.Index(None, "started_at"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("call_id", sa.String(128), nullable=True),
    sa.Column("rule", sa.String(16), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    sa.Column("number", sa.String(64), nullable=True),
    sa.Column("agent", sa.String(128), nullable=True),
    sa.Column("details", sa.JSON(), nullable=False),
    sa.Index(None, "at"),
    sa.Index(None, "rule", "at"),
)

# One row per named lock; a claim takes its row first so that the concurrency cap is
# counted and applied by one daemon at a time.
claim_locks = sa.Table(
    "claim_locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
)

CALLBACK_CLAIM_LOCK = "callbacks"


def fit_row(table: sa.Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each text made storable (``storable``: a byte that was not UTF-8, a
    NUL, as their visible escapes), then cut to its column's length: PostgreSQL refuses a
    longer value (SQLite keeps it), and one caller's overlong text must not cost the row."""
    out = dict(values)
    for name, value in values.items():
        if isinstance(value, str):
            text = storable(value)
            length = getattr(table.c[name].type, "length", None)
            out[name] = text if length is None else text[:length]
    return out

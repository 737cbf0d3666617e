"""Every table the daemon needs: callback jobs and attempts, interactions, caller flags,
holds, calls, decisions, and the claim lock.

Revision ID: 0001_initial
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pbx_agent.store.schema import UtcDateTime

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "callback_jobs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
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
        sa.PrimaryKeyConstraint("id", name="pk_callback_jobs"),
    )
    op.create_index(
        "ix_callback_jobs_status_next_attempt_at", "callback_jobs", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_callback_jobs_status_lease_expires_at", "callback_jobs", ["status", "lease_expires_at"]
    )
    op.create_index("ix_callback_jobs_number_status", "callback_jobs", ["number", "status"])

    op.create_table(
        "callback_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("job_id", _ID, nullable=False),
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
        sa.PrimaryKeyConstraint("id", name="pk_callback_attempts"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["callback_jobs.id"],
            name="fk_callback_attempts_job_id_callback_jobs",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("job_id", "attempt_no", name="uq_callback_attempts_job_id_attempt_no"),
        sa.UniqueConstraint("request_id", name="uq_callback_attempts_request_id"),
    )

    op.create_table(
        "interactions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("queue", sa.String(128), nullable=True),
        sa.Column("topic", sa.String(128), nullable=True),
        sa.Column("call_id", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_interactions"),
    )
    op.create_index("ix_interactions_number_started_at", "interactions", ["number", "started_at"])

    op.create_table(
        "caller_flags",
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("set_by", sa.String(128), nullable=False, server_default=""),
        sa.Column("set_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("number", name="pk_caller_flags"),
    )

    op.create_table(
        "holds",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("tier", sa.String(64), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("over_limit", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("callback_offer_taken", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_holds"),
    )
    op.create_index("ix_holds_started_at", "holds", ["started_at"])
    op.create_index("ix_holds_call_id", "holds", ["call_id"])

    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(128), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("caller_number", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("queue", sa.String(128), nullable=True),
        sa.Column("had_hold", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("end_reason", sa.String(64), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("call_id", name="pk_calls"),
    )
    op.create_index("ix_calls_started_at", "calls", ["started_at"])

    op.create_table(
        "decisions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("call_id", sa.String(128), nullable=True),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("number", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_decisions"),
    )
    op.create_index("ix_decisions_at", "decisions", ["at"])
    op.create_index("ix_decisions_rule_at", "decisions", ["rule", "at"])

    claim_locks = op.create_table(
        "claim_locks",
        sa.Column("name", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_claim_locks"),
    )
    op.bulk_insert(claim_locks, [{"name": "callbacks"}])


def downgrade() -> None:
    for table in (
        "claim_locks",
        "decisions",
        "calls",
        "holds",
        "caller_flags",
        "interactions",
        "callback_attempts",
        "callback_jobs",
    ):
        op.drop_table(table)

"""Text a database refuses (a byte that was not UTF-8, kept as a lone surrogate; a NUL) is
stored as visible escapes in callback jobs, and otherwise comes out as StoreUnavailable."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from pbx_agent.errors import StoreUnavailable
from pbx_agent.policies.callbacks import JobKind
from pbx_agent.store import NewJob, Store
from pbx_agent.store.schema import decisions

NOW = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
RAW_BYTE = b"\xff".decode("utf-8", "surrogateescape")


PROMISE = NewJob(
    number="+79161234567",
    kind=JobKind.PROMISED,
    reason="promised by the agent",
    created_at=NOW,
    anchor_at=NOW,
    window_ends_at=NOW + timedelta(hours=1),
    next_attempt_at=NOW,
    deadline_at=NOW + timedelta(hours=2),
)


async def test_a_promise_note_with_a_byte_that_was_not_utf8_is_stored_escaped(
    store: Store,
) -> None:
    """``callback_promise?note=Bob%FF``: the promise is kept, its note reads ``Bob\\xff``."""
    job = await store.callbacks.create(replace(PROMISE, note=f"Bob{RAW_BYTE}\x00"))
    stored = await store.callbacks.get(job.id)
    assert stored is not None
    assert stored.note == "Bob\\xff\\x00"


async def test_every_text_of_a_new_job_is_stored_escaped(store: Store) -> None:
    """Reason, trigger call and cause, target: escaped, then cut to the column's length."""
    job = await store.callbacks.create(
        replace(
            PROMISE,
            reason=f"r{RAW_BYTE}",
            trigger_call_id="c" * 127 + RAW_BYTE,
            trigger_cause=f'SIP;cause=486;text="x{RAW_BYTE}"',
            target=f"Local/100{RAW_BYTE}",
        )
    )
    stored = await store.callbacks.get(job.id)
    assert stored is not None
    assert (stored.reason, stored.trigger_cause, stored.target) == (
        "r\\xff",
        'SIP;cause=486;text="x\\xff"',
        "Local/100\\xff",
    )
    assert stored.trigger_call_id == "c" * 127 + "\\"


async def test_a_cancel_reason_with_a_byte_that_was_not_utf8_is_stored_escaped(
    store: Store,
) -> None:
    """The finish reason of a job cancelled with such a reason reads ``\\xff``."""
    job = await store.callbacks.create(PROMISE)
    cancelled = await store.callbacks.cancel(job.id, reason=f"admin {RAW_BYTE}", now=NOW)
    assert cancelled is not None
    assert cancelled.finish_reason == "admin \\xff"


async def test_text_the_driver_cannot_encode_comes_out_as_store_unavailable(
    store: Store,
) -> None:
    """A lone surrogate a statement carries unescaped (the repositories escape it) raises
    StoreUnavailable naming the operation, not a bare UnicodeEncodeError."""
    with pytest.raises(StoreUnavailable, match="test write failed"):
        async with store.db.write("test write") as conn:
            await conn.execute(
                sa.insert(decisions).values(
                    at=NOW, rule="R1", action="a", reason=f"r{RAW_BYTE}", details={}
                )
            )

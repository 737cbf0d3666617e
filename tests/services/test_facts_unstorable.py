"""The facts sink: text holding a byte that was not UTF-8 (a lone surrogate) or a NUL is
stored as visible escapes, never refused, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from pbx_agent.clock import ManualClock, to_datetime
from pbx_agent.engine import Decision
from pbx_agent.model.commands import FlagNumber, RecordFact
from pbx_agent.model.events import CallId
from pbx_agent.services.facts import FactsService, FactsSettings
from pbx_agent.store import Store
from tests.store.databases import db_url, store

__all__ = ["db_url", "store"]

T0 = 1781121600.0
E164 = "+79161234567"
RAW_BYTE = b"\xff".decode("utf-8", "surrogateescape")
FAST = FactsSettings(retry_initial_s=0.01, retry_max_s=0.02, close_timeout_s=2.0)


@pytest.fixture
async def facts(store: Store) -> AsyncIterator[FactsService]:
    service = FactsService(store, clock=ManualClock(T0), default_region="RU", settings=FAST)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def fact(kind: str, **extra: Any) -> RecordFact:
    fields: dict[str, Any] = {"number": E164, "call_id": "c.1", "started_at": T0}
    fields.update(extra)
    return RecordFact(kind, fields)


async def test_an_interaction_with_a_byte_that_was_not_utf8_is_stored_escaped(
    store: Store, facts: FactsService
) -> None:
    """A VarSet topic ``tarif<0xFF>`` is counted for night routing, as ``tarif\\xff``."""
    topic, agent, queue = f"tarif{RAW_BYTE}", f"al{RAW_BYTE}ice", f"q\x00{RAW_BYTE}"
    await facts.record_fact(fact("interaction", topic=topic, agent=agent, queue=queue), None)
    await facts.flush()
    [row] = await store.interactions.for_number(E164, to_datetime(T0 - 1))
    assert (row.topic, row.agent, row.queue) == ("tarif\\xff", "al\\xffice", "q\\x00\\xff")
    assert facts.stats.not_recorded == {}


async def test_a_decision_with_a_byte_that_was_not_utf8_is_stored_escaped(
    store: Store, facts: FactsService
) -> None:
    """Agent, reason and details (keys and values) are escaped; the decision is kept."""
    facts.on_decision(
        Decision(
            at=T0,
            call_id=f"c.{RAW_BYTE}",
            rule="R1",
            policy="hold",
            action="play_prompt",
            reason=f"because {RAW_BYTE}",
            fields={f"k{RAW_BYTE}": [f"v{RAW_BYTE}", "a\x00b"]},
            number=E164,
            agent=f"al{RAW_BYTE}ice",
        )
    )
    await facts.flush()
    [row] = await store.decisions.between(to_datetime(T0 - 1), to_datetime(T0 + 1))
    assert (row.call_id, row.agent, row.reason) == ("c.\\xff", "al\\xffice", "because \\xff")
    assert row.details == {"policy": "hold", "k\\xff": ["v\\xff", "a\\x00b"]}


async def test_a_hold_call_and_flag_with_such_text_are_stored_escaped(
    store: Store, facts: FactsService
) -> None:
    """A tier, an end reason, a flag's reason and setter: escaped, every row written."""
    await facts.record_fact(fact("hold", agent="alice", tier=f"vip{RAW_BYTE}"), None)
    await facts.record_fact(fact("call", caller_number=E164, end_reason=f"x{RAW_BYTE}"), None)
    await facts.flag_number(
        FlagNumber(E164, f"abuse{RAW_BYTE}", f"al{RAW_BYTE}ice", CallId("c.1")), None
    )
    await facts.flush()
    [hold] = await store.holds.between(to_datetime(T0 - 1), to_datetime(T0 + 1))
    call = await store.calls.get("c.1")
    flag = await store.flags.get(E164, to_datetime(T0))
    assert hold.tier == "vip\\xff"
    assert call is not None and call.end_reason == "x\\xff"
    assert flag is not None and (flag.reason, flag.set_by) == ("abuse\\xff", "al\\xffice")
    assert facts.stats.written == {"hold": 1, "call": 1, "flag": 1}


async def test_text_made_longer_by_its_escapes_is_still_clipped_to_the_column(
    store: Store, facts: FactsService
) -> None:
    """128 raw bytes become 512 characters of escapes: cut to 128, not refused."""
    await facts.record_fact(fact("interaction", agent=RAW_BYTE * 128), None)
    await facts.flush()
    [row] = await store.interactions.for_number(E164, to_datetime(T0 - 1))
    assert row.agent == "\\xff" * 32

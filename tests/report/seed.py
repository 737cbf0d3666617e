"""A store seeded with one day of known facts: what the report must find in it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from pbx_agent.store import CallRecord, Decision, HoldRecord, Store
from pbx_agent.store.schema import callback_attempts, callback_jobs

UNTIL = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=24)
IN = SINCE + timedelta(hours=2)  # a moment inside the period
BEFORE = SINCE - timedelta(hours=1)  # a moment before it


def at(minutes: float) -> datetime:
    return IN + timedelta(minutes=minutes)


async def seed(store: Store) -> None:
    # 20 calls in the period; c01 and c02 have customer holds, c03 is marked had_hold.
    for n in range(1, 21):
        await store.calls.save(
            CallRecord(call_id=f"c{n:02d}", started_at=at(n), had_hold=n == 3, agent="1001")
        )
    # 5 more that no agent is known to have taken: two callers hung up in the queue (one of
    # them had heard hold-like music: had_hold must not count), an unanswered callback, a
    # failed call, a caller gone from the queue during a PBX link outage.
    for n, reason, held in ((21, "abandoned", False), (22, "abandoned", True),
                            (23, "not_connected", False), (24, "not_connected", False),
                            (25, "unknown", True)):  # fmt: skip
        await store.calls.save(
            CallRecord(call_id=f"c{n:02d}", started_at=at(n), had_hold=held, end_reason=reason)
        )
    await store.calls.save(CallRecord(call_id="old", started_at=BEFORE, had_hold=True))
    holds = [
        ("c01", "1001", "specialist", 30, False),
        ("c01", "1001", "specialist", 150, True),
        ("c01", "1001", "specialist", 200, True),
        ("c02", "1002", "senior", 40, False),
    ]
    for call_id, agent, tier, seconds, over in holds:
        start = at(1)
        await store.holds.add(
            HoldRecord(
                call_id=call_id,
                agent=agent,
                tier=tier,
                started_at=start,
                ended_at=start + timedelta(seconds=seconds),
                over_limit=over,
                reminders=seconds // 60,
                callback_offer_taken=seconds == 200,
            )
        )
    await store.holds.add(HoldRecord(call_id="old", started_at=BEFORE, over_limit=True))

    decisions = [
        ("R2", "silent_caller_drop", {}),
        ("R2", "silent_caller_drop", {"stage": "entry"}),
        ("R3", "lingering_drop", {}),
        ("R4", "script_drop", {"script": "abuse"}),
        ("R4", "script_drop", {"script": "prank"}),
        ("R4", "script_step_played", {"script": "abuse"}),
        ("R5", "night_ivr", {}),
        ("R5", "night_ivr", {}),
        ("R5", "night_ivr", {}),
        ("R9", "flagged_queue", {}),
        *[("R5", "route_agent", {}) for _ in range(5)],
        # The dead-air policy's facts, as the facts service stores their decisions.
        ("R1", "record_fact", {"policy": "dead_air", "kind": "dead_air",
                               "fields": {"silent_s": 4.2}}),
        ("R1", "record_fact", {"policy": "dead_air", "kind": "dead_air",
                               "fields": {"silent_s": 12.5}}),
        ("R1", "record_fact", {"policy": "dead_air", "kind": "talk_over",
                               "fields": {"overlap_s": 5.7}}),
        ("R1", "record_fact", {"policy": "hold", "kind": "hold", "fields": {"duration_s": 30}}),
    ]  # fmt: skip
    for i, (rule, action, details) in enumerate(decisions):
        await store.decisions.record(
            Decision(at=at(i), rule=rule, action=action, reason="seed", details=details)
        )
    await store.decisions.record(
        Decision(at=BEFORE, rule="R2", action="silent_caller_drop", reason="before the period")
    )

    jobs = [
        # id, kind, status, created_at, finished_at, deadline_at
        (1, "abnormal_drop", "done", at(0), at(90), None),
        (2, "abnormal_drop", "exhausted", at(0), at(600), None),
        (3, "promised", "overdue", at(5), at(700), at(690)),
        (4, "promised", "scheduled", at(6), None, at(60)),
        (5, "requested", "cancelled", at(7), at(8), None),
        (6, "abnormal_drop", "done", BEFORE, BEFORE, None),
    ]
    async with store.db.write("seed jobs") as conn:
        for job_id, kind, status, created, finished, deadline in jobs:
            await conn.execute(
                sa.insert(callback_jobs).values(
                    _job(job_id, kind, status, created, finished, deadline)
                )
            )
        attempts = [
            # job, attempt_no, outcome, dialled_at
            (1, 1, "no_answer", at(10)),
            (1, 2, "connected", at(80)),
            (2, 1, "busy", at(10)),
            (2, 2, "machine", at(200)),
            (2, 3, "no_answer", at(500)),
            (2, 4, "not_placed", at(510)),
            (6, 1, "connected", BEFORE),
        ]
        for job_id, number, outcome, dialled in attempts:
            await conn.execute(
                sa.insert(callback_attempts).values(
                    job_id=job_id,
                    attempt_no=number,
                    request_id=f"r{job_id}-{number}",
                    outcome=outcome,
                    dialled_at=dialled,
                )
            )


def _job(
    job_id: int,
    kind: str,
    status: str,
    created: datetime,
    finished: datetime | None,
    deadline: datetime | None,
) -> dict[str, Any]:
    return {
        "id": job_id,
        "number": f"+7916000000{job_id}",
        "kind": kind,
        "status": status,
        "created_at": created,
        "anchor_at": created,
        "window_ends_at": created + timedelta(hours=48),
        "deadline_at": deadline,
        "next_attempt_at": None if finished else created + timedelta(minutes=1),
        "finished_at": finished,
    }

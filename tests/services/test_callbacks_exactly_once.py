"""Exactly-once across real daemon processes: 4 schedulers on one PostgreSQL with 1,000 due
jobs, and a scheduler killed with SIGKILL in the middle of an attempt.

Each worker process (this file run as a script) runs the real ``CallbackService`` against
the real store with a dialer that writes every request it is asked to place into a
``placed_calls`` table, then reports an outcome chosen from the job id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time as wall
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pbx_agent.clock import LoopClock, ManualClock
from pbx_agent.policies.callbacks import CallbackRules, JobKind, JobStatus, QuietHours
from pbx_agent.services.callbacks import CallbackDial, CallbackService, SchedulerSettings
from pbx_agent.store import Store
from pbx_agent.store.schema import callback_attempts, callback_jobs

JOBS = 1_000
WORKERS = 4

placed_calls = sa.Table(
    "placed_calls",
    sa.MetaData(),
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(160), nullable=False),
    sa.Column("job_id", sa.Integer(), nullable=False),
    sa.Column("attempt_no", sa.Integer(), nullable=False),
    sa.Column("worker", sa.String(64), nullable=False),
)


def fast_rules() -> CallbackRules:
    """Attempts 0, 1 and 2 s after the drop, no quiet hours, no machine detection."""
    return CallbackRules(
        timezone=UTC,
        attempt_offsets=(timedelta(0), timedelta(seconds=1), timedelta(seconds=2)),
        window=timedelta(hours=1),
        quiet_hours=QuietHours(time(0, 0), time(0, 0)),
        max_concurrent=200,
        detect_machine=False,
    )


def scripted_outcome(job_id: int, attempt_no: int) -> str:
    """Thirds of the jobs: reached at once; busy then reached; never answers."""
    if job_id % 3 == 0:
        return "answered"
    if job_id % 3 == 1:
        return "busy" if attempt_no == 1 else "answered"
    return "no_answer"


def expected_placements(job_ids: list[int]) -> int:
    return sum({0: 1, 1: 2, 2: 3}[job_id % 3] for job_id in job_ids)


class TableDialer:
    """Records each placed request in ``placed_calls``; queues its scripted outcome."""

    def __init__(self, store: Store, worker: str, report: bool) -> None:
        self.store = store
        self.worker = worker
        self.report = report
        self.outcomes: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def abandon(self, request_id: str) -> None:
        del request_id

    async def place_callback(self, request: CallbackDial) -> None:
        async with self.store.db.write("record placed call") as conn:
            await conn.execute(
                sa.insert(placed_calls).values(
                    request_id=request.request_id,
                    job_id=request.job_id,
                    attempt_no=request.attempt_no,
                    worker=self.worker,
                )
            )
        if self.report:
            outcome = scripted_outcome(request.job_id, request.attempt_no)
            self.outcomes.put_nowait((request.request_id, outcome))


async def worker_main(url: str, name: str, mode: str) -> None:
    """One daemon: schedule until no job is pending (or 150 s), then exit."""
    store = Store.open(url)
    await store.upgrade()
    dialer = TableDialer(store, name, report=mode == "report")
    service = CallbackService(
        store,
        dialer,
        fast_rules(),
        clock=LoopClock(),
        default_region="RU",
        owner=name,
        settings=SchedulerSettings(poll_interval_s=0.05, claim_batch=25, lease_s=30),
    )

    async def report() -> None:
        while True:
            request_id, outcome = await dialer.outcomes.get()
            await service.on_originate_outcome(request_id, outcome)

    async def until_done() -> None:
        give_up = wall.monotonic() + 150
        while wall.monotonic() < give_up:
            counts = await store.callbacks.count_by_status()
            if not counts.get(JobStatus.SCHEDULED) and not counts.get(JobStatus.DIALLING):
                break
            await asyncio.sleep(0.2)
        service.stop()

    async with asyncio.TaskGroup() as group:
        reporter = group.create_task(report())
        group.create_task(until_done())
        await service.run()
        reporter.cancel()
    await store.close()


async def start_worker(url: str, name: str, mode: str, log_dir: Path) -> asyncio.subprocess.Process:
    log = (log_dir / f"{name}.log").open("wb")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, __file__, url, name, mode, stdout=log, stderr=log
        )
    finally:
        log.close()


async def add_due_jobs(store: Store, count: int, now: datetime) -> list[int]:
    rows = [
        {
            "number": f"+7916{i:07d}",
            "kind": str(JobKind.ABNORMAL_DROP),
            "status": str(JobStatus.SCHEDULED),
            "reason": "caller_leg_failed cause 44",
            "created_at": now,
            "anchor_at": now,
            "window_ends_at": now + timedelta(hours=1),
            "next_attempt_at": now,
        }
        for i in range(count)
    ]
    async with store.db.write("add jobs") as conn:
        await conn.execute(sa.insert(callback_jobs), rows)
        ids = await conn.execute(sa.select(callback_jobs.c.id).order_by(callback_jobs.c.id))
        return [int(row[0]) for row in ids]


@pytest.fixture
async def pg_store() -> AsyncIterator[Store]:
    # Imported here: this file also runs as a worker script, where ``tests`` is not a package.
    from tests.store.databases import (  # noqa: PLC0415
        create_pg_database,
        drop_pg_database,
        pg_url,
    )

    name = await create_pg_database()
    store = Store.open(pg_url(name))
    try:
        await store.upgrade()
        async with store.db.write("placed calls table") as conn:
            await conn.run_sync(placed_calls.create)
        yield store
    finally:
        await store.close()
        await drop_pg_database(name)


def worker_logs(log_dir: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
        for path in sorted(log_dir.glob("*.log"))
    )


@pytest.mark.postgres
@pytest.mark.slow
async def test_four_daemons_place_every_attempt_of_a_thousand_jobs_exactly_once(
    pg_store: Store, tmp_path: Path
) -> None:
    """4 real scheduler processes, 1,000 due jobs: every (job, attempt) placed once, none lost."""
    job_ids = await add_due_jobs(pg_store, JOBS, datetime.now(UTC))
    url = pg_store.db.engine.url.render_as_string(hide_password=False)
    workers = [await start_worker(url, f"w{i}", "report", tmp_path) for i in range(WORKERS)]
    codes = await asyncio.wait_for(asyncio.gather(*(w.wait() for w in workers)), 240)
    assert codes == [0] * WORKERS, worker_logs(tmp_path)

    async with pg_store.db.read("check") as conn:
        duplicates = (
            await conn.execute(
                sa.select(placed_calls.c.job_id, placed_calls.c.attempt_no, sa.func.count())
                .group_by(placed_calls.c.job_id, placed_calls.c.attempt_no)
                .having(sa.func.count() > 1)
            )
        ).all()
        placed = (await conn.execute(sa.select(sa.func.count()).select_from(placed_calls))).scalar()
        by_worker = dict(
            (
                await conn.execute(
                    sa.select(placed_calls.c.worker, sa.func.count()).group_by(
                        placed_calls.c.worker
                    )
                )
            ).all()
        )
        attempts = (
            await conn.execute(
                sa.select(callback_attempts.c.outcome, sa.func.count()).group_by(
                    callback_attempts.c.outcome
                )
            )
        ).all()
        unplaced_attempts = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(callback_attempts)
                .where(
                    ~sa.exists().where(placed_calls.c.request_id == callback_attempts.c.request_id)
                )
            )
        ).scalar()
    assert duplicates == []
    assert placed == expected_placements(job_ids)
    assert unplaced_attempts == 0
    assert dict(attempts) == {
        "connected": sum(1 for j in job_ids if j % 3 in (0, 1)),
        "busy": sum(1 for j in job_ids if j % 3 == 1),
        "no_answer": 3 * sum(1 for j in job_ids if j % 3 == 2),
    }
    assert len(by_worker) > 1, by_worker
    counts = await pg_store.callbacks.count_by_status()
    assert counts == {
        JobStatus.DONE: sum(1 for j in job_ids if j % 3 in (0, 1)),
        JobStatus.EXHAUSTED: sum(1 for j in job_ids if j % 3 == 2),
    }


async def test_daemon_killed_mid_attempt_is_not_redialled(tmp_path: Path) -> None:
    """SIGKILL after the attempt was placed: the job survives, attempt 1 is never placed again."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    store = Store.open(url)
    try:
        await store.upgrade()
        async with store.db.write("placed calls table") as conn:
            await conn.run_sync(placed_calls.create)
        [job_id] = await add_due_jobs(store, 1, datetime.now(UTC))
        victim = await start_worker(url, "victim", "silent", tmp_path)
        try:
            for _ in range(300):
                async with store.db.read("poll") as conn:
                    placed = (
                        await conn.execute(sa.select(sa.func.count()).select_from(placed_calls))
                    ).scalar()
                if placed:
                    break
                await asyncio.sleep(0.05)
            assert placed == 1, worker_logs(tmp_path)
        finally:
            os.kill(victim.pid, signal.SIGKILL)
            await victim.wait()
        assert victim.returncode == -signal.SIGKILL

        # The survivor's clock is past the victim's 30 s lease; no real waiting needed.
        clock = ManualClock(wall.time() + 31)
        survivor_dialer = TableDialer(store, "survivor", report=False)
        survivor = CallbackService(
            store,
            survivor_dialer,
            fast_rules(),
            clock=clock,
            default_region="RU",
            owner="survivor",
            settings=SchedulerSettings(lease_s=30),
        )
        assert await survivor.run_once() == 1
        async with store.db.read("check") as conn:
            rows = (
                await conn.execute(
                    sa.select(placed_calls.c.attempt_no, placed_calls.c.worker).order_by(
                        placed_calls.c.id
                    )
                )
            ).all()
        assert [tuple(row) for row in rows] == [(1, "victim"), (2, "survivor")]
        attempts = await store.callbacks.attempts(job_id)
        assert [(a.attempt_no, str(a.outcome)) for a in attempts] == [
            (1, "unknown"),
            (2, "dialling"),
        ]
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(worker_main(*sys.argv[1:4]))

"""Callback claims: 4 daemons on one PostgreSQL with 1,000,000 pending callback jobs.

Each run creates its own database on the server (dropped afterwards), migrates it with the
shipped migrations and loads the pending jobs with COPY: every job due (its next attempt in
the last hour) and inside its 48 h window. Then 4 daemon processes (this script with
``--worker``) each run the real ``CallbackService`` scheduling cycle (``run_once``: sweeps,
lease renewal, claim, dial) back to back for the measured time, with a dialer that accepts
every call at once and reports it answered a moment later, as a switch would. Every claim
therefore commits an attempt, and every answer finishes its job (a customer reached is not
called again), so a job claimed twice is a duplicate.

Measured: claims (attempts claimed) per second over all daemons, the latency of each claim
transaction (``CallbackRepository.claim_due``, p50/p99), and duplicates counted two ways: job
ids the dialers were asked to call more than once, and jobs with more than one attempt row.

    .venv/bin/python bench/claims_bench.py               # 1,000,000 jobs, 30 s
    .venv/bin/python bench/claims_bench.py --quick       # 100,000 jobs, 5 s

PostgreSQL: ``--pg`` (default ``$PBX_AGENT_TEST_PG`` or postgresql://postgres@127.0.0.1:5432/
postgres), an account allowed to create databases; skipped with a note when unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from common import (
    BENCH,
    ROOT,
    at_least,
    null_stream,
    quantiles_ms,
    raise_priority,
    write_json,
)

from pbx_agent.clock import LoopClock
from pbx_agent.config import Config
from pbx_agent.logging import configure_logging
from pbx_agent.policies.callbacks import CallbackRules, QuietHours
from pbx_agent.services.callbacks import CallbackDial, CallbackService, SchedulerSettings
from pbx_agent.store import Store

DEFAULT_PG = os.environ.get("PBX_AGENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DAEMONS = 4


@dataclass(frozen=True, slots=True)
class Workload:
    jobs: int
    seconds: float
    daemons: int = DAEMONS
    claim_batch: int = 50  # SchedulerSettings' default
    max_concurrent: int = 200  # a site with 200 trunk channels for callbacks

    @classmethod
    def full(cls) -> Workload:
        return cls(jobs=1_000_000, seconds=30)

    @classmethod
    def quick(cls) -> Workload:
        return cls(jobs=100_000, seconds=5)


# ------------------------------------------------------------------------------ worker


class AnsweringDialer:
    """Accepts every callback at once; the customer answers a moment later."""

    def __init__(self) -> None:
        self.service: CallbackService | None = None
        self.placed: list[int] = []
        self.outcome_s: list[float] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def place_callback(self, request: CallbackDial) -> None:
        self.placed.append(request.job_id)
        task = asyncio.create_task(self._answer(request.request_id), name="answer")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, request_id: str) -> None:
        await asyncio.sleep(0)
        assert self.service is not None
        started = time.perf_counter()
        await self.service.on_originate_outcome(request_id, "answered")
        self.outcome_s.append(time.perf_counter() - started)


def rules(work: Workload) -> CallbackRules:
    """The site's rules, with no quiet hours (the benchmark runs at any hour), no machine
    detection (the answer is final) and the site's callback capacity."""
    site = CallbackRules.from_standards(Config().standards_for(), ZoneInfo("UTC"))
    return replace(
        site,
        quiet_hours=QuietHours(clock_time(0, 0), clock_time(0, 0)),
        detect_machine=False,
        max_concurrent=work.max_concurrent,
    )


async def worker(
    url: str, name: str, work: Workload, start_at: float, *, profile: bool = False
) -> dict[str, Any]:
    configure_logging(fmt="json", level="info", stream=null_stream())
    store = Store.open(url)
    dialer = AnsweringDialer()
    service = CallbackService(
        store,
        dialer,
        rules(work),
        clock=LoopClock(),
        default_region="RU",
        owner=name,
        settings=SchedulerSettings(claim_batch=work.claim_batch, lease_s=60),
    )
    dialer.service = service
    claim_times: list[float] = []
    claimed = 0
    original = store.callbacks.claim_due

    async def timed_claim(**kwargs: Any) -> Any:
        nonlocal claimed
        started = time.perf_counter()
        result = await original(**kwargs)
        claim_times.append(time.perf_counter() - started)
        claimed += len(result)
        return result

    store.callbacks.claim_due = timed_claim  # type: ignore[method-assign]
    await store.callbacks.in_flight(datetime.now(UTC))  # connect before the start line
    await asyncio.sleep(max(0.0, start_at - time.time()))
    profiler = cProfile.Profile() if profile else None
    started = time.monotonic()
    cpu_before = time.process_time()
    if profiler is not None:
        profiler.enable()
    cycles = 0
    while time.monotonic() - started < work.seconds:
        await service.run_once()
        cycles += 1
    elapsed = time.monotonic() - started
    await asyncio.gather(*dialer.tasks, return_exceptions=True)
    cpu = time.process_time() - cpu_before
    top = ""
    if profiler is not None:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        top = out.getvalue()
    await store.close()
    return {
        "name": name,
        "claimed": claimed,
        "seconds": elapsed,
        "cycles": cycles,
        "cpu_share": round(cpu / elapsed, 3),
        "profile": top,
        "claim_s": claim_times,
        "outcome_s": dialer.outcome_s,
        "placed_jobs": dialer.placed,
    }


# ------------------------------------------------------------------------------ parent


async def load_jobs(dsn: str, work: Workload) -> float:
    now = datetime.now(UTC)
    records = [
        (
            f"+7916{i:07d}",
            "abnormal_drop",
            "scheduled",
            "caller_leg_failed cause 44",
            now - timedelta(hours=1),
            now - timedelta(hours=1),
            now + timedelta(hours=47),
            now - timedelta(seconds=3600 * i / work.jobs),
        )
        for i in range(work.jobs)
    ]
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.copy_records_to_table(
            "callback_jobs",
            records=records,
            columns=[
                "number",
                "kind",
                "status",
                "reason",
                "created_at",
                "anchor_at",
                "window_ends_at",
                "next_attempt_at",
            ],
        )
        await conn.execute("ANALYZE callback_jobs")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def duplicates_in_db(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        twice = await conn.fetchval(
            "SELECT count(*) FROM (SELECT job_id FROM callback_attempts "
            "GROUP BY job_id HAVING count(*) > 1) AS t"
        )
        attempts = await conn.fetchval("SELECT count(*) FROM callback_attempts")
        done = await conn.fetchval("SELECT count(*) FROM callback_jobs WHERE status = 'done'")
    finally:
        await conn.close()
    return {"jobs_with_two_attempts": int(twice), "attempts": int(attempts), "jobs_done": int(done)}


async def solo_claims(url: str, work: Workload, rounds: int = 5) -> dict[str, float]:
    """One claim of a batch at a time from one daemon, nothing else running: the cost of the
    claim transaction itself, beside the figures under contention."""
    store = Store.open(url)
    times: list[float] = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            await store.callbacks.claim_due(
                owner="solo",
                now=datetime.now(UTC),
                lease=timedelta(seconds=60),
                limit=work.claim_batch,
                max_in_flight=1 << 30,
                request_id_for=lambda _job, _attempt: str(uuid.uuid4()),
            )
            times.append(time.perf_counter() - started)
    finally:
        await store.close()
    return quantiles_ms(times[1:])  # the first one opens the connection


async def run_workers(url: str, work: Workload, *, profile: bool) -> list[dict[str, Any]]:
    start_at = time.time() + 3.0  # every worker connected and waiting by then
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            url,
            f"daemon-{i + 1}",
            json.dumps(asdict(work)),
            str(start_at),
            *(["--profile"] if profile and i == 0 else []),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for i in range(work.daemons)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in procs)), work.seconds + 120
    )
    results = []
    for proc, (out, _) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            msg = f"a claims worker failed (exit {proc.returncode})"
            raise RuntimeError(msg)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


async def bench(
    work: Workload, admin_dsn: str, *, profile: bool = False, niceness: int = -10
) -> dict[str, Any]:
    nice = raise_priority(niceness)  # inherited by the daemon processes
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return {"skipped": f"PostgreSQL not reachable at {admin_dsn.rsplit('@', 1)[-1]}: {exc}"}
    name = f"pbx_agent_bench_{uuid.uuid4().hex[:10]}"
    host_part = admin_dsn.split("://", 1)[1].rsplit("/", 1)[0]
    dsn = f"postgresql://{host_part}/{name}"
    url = f"postgresql+asyncpg://{host_part}/{name}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        store = Store.open(url)
        try:
            await store.upgrade()
        finally:
            await store.close()
        load_s = await load_jobs(dsn, work)
        workers = await run_workers(url, work, profile=profile)
        checked = await duplicates_in_db(dsn)
        solo = await solo_claims(url, work)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    claimed = sum(w["claimed"] for w in workers)
    seconds = max(w["seconds"] for w in workers)
    placed: dict[int, int] = {}
    for w in workers:
        for job_id in w["placed_jobs"]:
            placed[job_id] = placed.get(job_id, 0) + 1
    latencies = [s for w in workers for s in w["claim_s"]]
    return {
        "workload": asdict(work),
        "nice": nice,
        "load_avg_at_end": round(os.getloadavg()[0], 2),
        "load_s": round(load_s, 1),
        "claims": claimed,
        "seconds": round(seconds, 2),
        "claims_per_s": round(claimed / seconds, 1),
        "claim_transaction": quantiles_ms(latencies),
        "outcome_recording": quantiles_ms([s for w in workers for s in w["outcome_s"]]),
        "per_daemon": {w["name"]: w["claimed"] for w in workers},
        "cycles": sum(w["cycles"] for w in workers),
        "daemon_cpu_share": [w["cpu_share"] for w in workers],
        "daemon_profile": workers[0]["profile"],
        "duplicates": sum(1 for n in placed.values() if n > 1),
        "solo_claim_transaction": solo,
        **checked,
    }


def report(result: dict[str, Any]) -> None:
    if "skipped" in result:
        print(f"callback claims: skipped: {result['skipped']}")
        return
    work, c = result["workload"], result["claim_transaction"]
    print(
        f"callback claims: {work['jobs']:,} pending jobs (loaded in {result['load_s']} s), "
        f"{work['daemons']} daemons on PostgreSQL, {result['seconds']} s"
    )
    print(
        f"   {result['claims_per_s']:,.0f} claims/s ({result['claims']:,} claimed, "
        f"{result['per_daemon']}), claim transaction p50 {c.get('p50_ms')} ms "
        f"p99 {c.get('p99_ms')} ms (n={c['n']})"
    )
    solo, o = result["solo_claim_transaction"], result["outcome_recording"]
    print(
        f"   one claim of {work['claim_batch']} alone: p50 {solo.get('p50_ms')} ms; "
        f"recording an answer under load: p50 {o.get('p50_ms')} ms p99 {o.get('p99_ms')} ms"
    )
    print(
        f"   duplicates: {result['duplicates']} dialled twice, "
        f"{result['jobs_with_two_attempts']} jobs with two attempts (must be 0)"
    )


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--worker":
        url, name, work_json, start_at = argv[1:5]
        work = Workload(**json.loads(work_json))
        out = asyncio.run(worker(url, name, work, float(start_at), profile="--profile" in argv))
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=at_least(1))
    parser.add_argument("--seconds", type=at_least(0.1, float))
    parser.add_argument("--daemons", type=at_least(1))
    parser.add_argument("--profile", action="store_true", help="cProfile the first daemon")
    parser.add_argument("--pg", default=DEFAULT_PG, help="admin DSN of the PostgreSQL server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Workload.quick() if args.quick else Workload.full()
    if args.jobs is not None:
        work = replace(work, jobs=args.jobs)
    if args.seconds is not None:
        work = replace(work, seconds=args.seconds)
    if args.daemons is not None:
        work = replace(work, daemons=args.daemons)
    result = asyncio.run(bench(work, args.pg, profile=args.profile))
    report(result)
    if args.profile:
        print(result.get("daemon_profile", ""))
    if args.json:
        write_json(args.json, result)
    return 0 if result.get("duplicates", 0) == 0 and not result.get("jobs_with_two_attempts") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

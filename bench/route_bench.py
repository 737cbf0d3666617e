"""Route decisions per second and their latency (p50/p99) with 1,000,000 interaction rows,
on SQLite and on PostgreSQL.

Each run builds its own database (a SQLite file in a temporary directory; a PostgreSQL
database created on the server and dropped afterwards), migrates it with the shipped
migrations, loads the interaction history and a few flags, checks that the history query
uses the ``(number, started_at)`` index, and then times ``RouteDecider.decide``: the whole
decision the ``route`` hook takes (normalise the number, read the flag and the trailing 24 h
history, decide), at a night-time instant so the history is always read. It runs the
decisions one at a time (latency) and then from several concurrent callers (throughput).

    .venv/bin/python bench/route_bench.py                 # 1,000,000 rows, both databases
    .venv/bin/python bench/route_bench.py --quick         # 50,000 rows, well under 30 s
    .venv/bin/python bench/route_bench.py --only sqlite --json var/route-bench.json

PostgreSQL: ``--pg`` (default ``$PBX_AGENT_TEST_PG`` or postgresql://postgres@127.0.0.1:5432/
postgres), an account allowed to create databases; skipped with a note when unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from common import at_least

from pbx_agent.clock import ManualClock
from pbx_agent.config import Config
from pbx_agent.hooks.route import RouteDecider, StoreRouteLookup
from pbx_agent.store import Store
from pbx_agent.store.schema import caller_flags, interactions

DEFAULT_PG = os.environ.get("PBX_AGENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# 23:30 Moscow: inside the default night window, so every decision reads the history.
NOW = datetime(2026, 6, 10, 20, 30, tzinfo=UTC)
TOPICS = ("tariff", "roaming", "balance", "services", None, None)
LOAD_CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class Workload:
    rows: int
    numbers: int  # distinct callers in the history
    repeat_callers: int  # callers with many interactions (the ones night routing is for)
    flagged: int
    decisions: int
    concurrency: int
    seed: int = 2026

    @classmethod
    def full(cls) -> Workload:
        return cls(
            rows=1_000_000,
            numbers=200_000,
            repeat_callers=2_000,
            flagged=1_000,
            decisions=5_000,
            concurrency=16,
        )

    @classmethod
    def quick(cls) -> Workload:
        return cls(
            rows=50_000,
            numbers=10_000,
            repeat_callers=200,
            flagged=100,
            decisions=500,
            concurrency=8,
        )


@dataclass
class Result:
    database: str
    rows: int
    load_s: float
    plan: str
    index_used: bool
    sequential: dict[str, float] = field(default_factory=dict)
    concurrent: dict[str, float] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)
    over_budget: int = 0


def number(i: int) -> str:
    return f"+7916{i:07d}"


def history_rows(work: Workload) -> list[tuple[str, datetime, str | None]]:
    """``rows`` interactions over the last 7 days: a fifth of them from the repeat callers."""
    rng = random.Random(work.seed)
    week_s = 7 * 24 * 3600
    heavy = work.rows // 5
    out: list[tuple[str, datetime, str | None]] = []
    for i in range(work.rows):
        who = rng.randrange(work.repeat_callers) if i < heavy else rng.randrange(work.numbers)
        at = NOW - timedelta(seconds=rng.uniform(0, week_s))
        out.append((number(who), at, rng.choice(TOPICS)))
    return out


def callers(work: Workload) -> list[str]:
    """Who calls during the benchmark: repeat callers, ordinary ones, new numbers, written
    in the two national forms and a few anonymous."""
    rng = random.Random(work.seed + 1)
    out: list[str] = []
    for _ in range(work.decisions):
        roll = rng.random()
        if roll < 0.3:
            who = number(rng.randrange(work.repeat_callers))
        elif roll < 0.9:
            who = number(rng.randrange(work.numbers))
        elif roll < 0.98:
            who = number(work.numbers + rng.randrange(1_000_000))
        else:
            out.append("anonymous")
            continue
        out.append(who if rng.random() < 0.5 else "8" + who[2:])
    return out


# ------------------------------------------------------------------------------ loading


async def load_sqlite(store: Store, rows: list[tuple[str, datetime, str | None]]) -> None:
    async with store.db.write("bench load") as conn:
        for start in range(0, len(rows), LOAD_CHUNK):
            chunk = rows[start : start + LOAD_CHUNK]
            await conn.execute(
                sa.insert(interactions),
                [
                    {"number": n, "started_at": at, "topic": t, "agent": "bench"}
                    for n, at, t in chunk
                ],
            )
        await conn.exec_driver_sql("ANALYZE")


async def load_postgres(dsn: str, rows: list[tuple[str, datetime, str | None]]) -> None:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.copy_records_to_table(
            "interactions",
            records=[(n, at, t, "bench") for n, at, t in rows],
            columns=["number", "started_at", "topic", "agent"],
        )
        await conn.execute("ANALYZE interactions")
    finally:
        await conn.close()


async def add_flags(store: Store, work: Workload) -> None:
    rng = random.Random(work.seed + 2)
    flagged = rng.sample(range(work.numbers), work.flagged)
    async with store.db.write("bench flags") as conn:
        await conn.execute(
            sa.insert(caller_flags),
            [
                {"number": number(i), "reason": "abuse", "set_by": "bench", "set_at": NOW}
                for i in flagged
            ],
        )


async def history_plan(store: Store) -> tuple[str, bool]:
    """The query plan of the history read, and whether it uses the number index."""
    c = interactions.c
    query = (
        sa.select(c.started_at, c.topic)
        .where(c.number == number(1))
        .where(c.started_at >= NOW - timedelta(hours=24))
        .order_by(c.started_at.desc())
        .limit(1000)
    )
    async with store.db.read("explain") as conn:
        compiled = query.compile(conn.sync_connection, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN" if store.dialect == "sqlite" else "EXPLAIN"
        rows = await conn.exec_driver_sql(f"{prefix} {compiled}")
        plan = " | ".join(" ".join(str(v) for v in row) for row in rows)
    return plan, "ix_interactions_number_started_at" in plan


# ------------------------------------------------------------------------------ timing


def figures(latencies_s: list[float], wall_s: float) -> dict[str, float]:
    ordered = sorted(latencies_s)
    quantiles = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "decisions": len(ordered),
        "decisions_per_s": round(len(ordered) / wall_s, 1),
        "p50_ms": round(quantiles[49] * 1000, 3),
        "p99_ms": round(quantiles[98] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


async def time_decisions(
    decider: RouteDecider, who: list[str], concurrency: int
) -> tuple[dict[str, float], Counter[str], list[float]]:
    latencies: list[float] = []
    routes: Counter[str] = Counter()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for caller in who:
        queue.put_nowait(caller)

    async def worker() -> None:
        while not queue.empty():
            caller = queue.get_nowait()
            started = time.perf_counter()
            decision = await decider.decide(caller, queue="support", budget_s=5.0)
            latencies.append(time.perf_counter() - started)
            routes[f"{decision.route}:{decision.reason}"] += 1

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return figures(latencies, time.perf_counter() - started), routes, latencies


async def bench(store: Store, database: str, work: Workload, load: Any) -> Result:
    rows = history_rows(work)
    started = time.perf_counter()
    await load(rows)
    await add_flags(store, work)
    load_s = time.perf_counter() - started
    del rows
    plan, index_used = await history_plan(store)
    config = Config()
    clock = ManualClock(NOW.timestamp())
    decider = RouteDecider(config, StoreRouteLookup(store), clock, pbx="asterisk")
    who = callers(work)
    await time_decisions(decider, who[: max(50, len(who) // 20)], 1)  # warm the pool and caches
    sequential, routes, latencies = await time_decisions(decider, who, 1)
    concurrent, _, _ = await time_decisions(decider, who, work.concurrency)
    budget_s = config.standards_for().night_routing.deadline_ms / 1000 * 0.6
    return Result(
        database=database,
        rows=work.rows,
        load_s=round(load_s, 1),
        plan=plan,
        index_used=index_used,
        sequential=sequential,
        concurrent={**concurrent, "concurrency": work.concurrency},
        routes=dict(sorted(routes.items())),
        over_budget=sum(1 for s in latencies if s > budget_s),
    )


async def run_sqlite(work: Workload) -> Result:
    with tempfile.TemporaryDirectory(prefix="pbx-agent-bench-") as tmp:
        store = Store.open(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}")
        try:
            await store.upgrade()

            async def load(rows: list[tuple[str, datetime, str | None]]) -> None:
                await load_sqlite(store, rows)

            return await bench(store, "sqlite", work, load)
        finally:
            await store.close()


async def run_postgres(work: Workload, admin_dsn: str) -> Result | str:
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL not reachable at {admin_dsn.rsplit('@', 1)[-1]}: {exc}"
    name = f"pbx_agent_bench_{uuid.uuid4().hex[:10]}"
    host_part = admin_dsn.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        store = Store.open(f"postgresql+asyncpg://{host_part}/{name}")
        try:
            await store.upgrade()

            async def load(rows: list[tuple[str, datetime, str | None]]) -> None:
                await load_postgres(f"postgresql://{host_part}/{name}", rows)

            return await bench(store, "postgresql", work, load)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def report(result: Result) -> None:
    s, c = result.sequential, result.concurrent
    print(f"\n== {result.database}: {result.rows:,} interaction rows (loaded in {result.load_s} s)")
    print(f"   history query plan: {result.plan}")
    print(f"   uses ix_interactions_number_started_at: {'yes' if result.index_used else 'NO'}")
    print(
        f"   one at a time:  {s['decisions_per_s']:>8,.0f} decisions/s  "
        f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  max {s['max_ms']:.2f} ms"
    )
    print(
        f"   {c['concurrency']:.0f} concurrent:  {c['decisions_per_s']:>8,.0f} decisions/s  "
        f"p50 {c['p50_ms']:.2f} ms  p99 {c['p99_ms']:.2f} ms  max {c['max_ms']:.2f} ms"
    )
    print(f"   over the 30 ms lookup budget (one at a time): {result.over_budget}")
    print(f"   decisions: {', '.join(f'{k} {v}' for k, v in result.routes.items())}")


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 rows, 500 decisions")
    parser.add_argument("--rows", type=at_least(0), help="interaction rows (default 1,000,000)")
    parser.add_argument("--decisions", type=at_least(2), help="decisions to time (at least 2)")
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    parser.add_argument("--pg", default=DEFAULT_PG, help="admin DSN of the PostgreSQL server")
    parser.add_argument("--json", type=Path, default=Path("var/route-bench.json"))
    args = parser.parse_args(argv)
    work = Workload.quick() if args.quick else Workload.full()
    if args.rows is not None:
        work = Workload(**{**asdict(work), "rows": args.rows})
    if args.decisions is not None:
        work = Workload(**{**asdict(work), "decisions": args.decisions})
    print(
        f"route decisions: {work.rows:,} rows, {work.numbers:,} callers in the history, "
        f"{work.decisions:,} decisions, at {NOW.isoformat()} (night in Europe/Moscow)"
    )
    results: list[Result] = []
    notes: list[str] = []
    if args.only in (None, "sqlite"):
        results.append(await run_sqlite(work))
        report(results[-1])
    if args.only in (None, "postgres"):
        outcome = await run_postgres(work, args.pg)
        if isinstance(outcome, str):
            notes.append(outcome)
            print(f"\n== postgresql: skipped: {outcome}")
        else:
            results.append(outcome)
            report(outcome)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "workload": asdict(work),
                "at": NOW.isoformat(),
                "python": sys.version.split()[0],
                "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
                "results": [asdict(r) for r in results],
                "notes": notes,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {args.json}")
    return 0 if all(r.index_used for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

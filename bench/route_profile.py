"""Where a route decision's time goes: ``route_bench.py``'s own workload and code, with the
one-at-a-time decision phase (and only it) under cProfile, on SQLite and on PostgreSQL.

The decisions run on the event loop's thread; SQLite's statements run in aiosqlite's worker
thread, which cProfile does not see: their time shows as the loop waiting (``epoll.poll``).

    .venv/bin/python bench/route_profile.py [--rows 50000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import route_bench
from common import write_json

DEFAULT_PG = route_bench.DEFAULT_PG


def top_functions(profiler: cProfile.Profile, sort: str, count: int = 25) -> str:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(count)
    return out.getvalue()


async def profile(database: str, work: route_bench.Workload, pg: str) -> dict[str, Any]:
    profiler = cProfile.Profile()
    original = route_bench.time_decisions

    async def profiled(decider: Any, who: list[str], concurrency: int) -> Any:
        if concurrency != 1 or len(who) != work.decisions:
            return await original(decider, who, concurrency)  # warm-up, concurrent phase
        profiler.enable()
        try:
            return await original(decider, who, concurrency)
        finally:
            profiler.disable()

    route_bench.time_decisions = profiled  # type: ignore[assignment]
    try:
        if database == "sqlite":
            result: Any = await route_bench.run_sqlite(work)
        else:
            result = await route_bench.run_postgres(work, pg)
    finally:
        route_bench.time_decisions = original
    if isinstance(result, str):
        return {"skipped": result}
    return {
        "sequential": result.sequential,
        "by_cumulative_time": top_functions(profiler, "cumulative"),
        "by_own_time": top_functions(profiler, "tottime"),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--pg", default=DEFAULT_PG)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = replace(route_bench.Workload.quick(), rows=args.rows)
    results = {db: asyncio.run(profile(db, work, args.pg)) for db in ("sqlite", "postgresql")}
    for database, result in results.items():
        print(f"\n== {database}: {result.get('sequential', result.get('skipped'))}")
        print(result.get("by_cumulative_time", ""))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

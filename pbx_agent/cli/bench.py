"""``pbx-agent bench [--quick|--full]``: run the benchmarks in ``bench/`` (see BENCHMARKS.md).

The benchmarks live beside the package in a source checkout, not in it: they need the test
dependencies (panoramisk, the fake switches) and a PostgreSQL server, which an installed
daemon has no use for. This command finds ``bench/run.py`` next to the package and runs it
with the same interpreter; from an installed package without the checkout it says so.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pbx_agent

RUNNER = Path(pbx_agent.__file__).resolve().parent.parent / "bench" / "run.py"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks (a source checkout only) and print the figures",
        description=(
            "Run every benchmark of bench/ one after the other: AMI parsing against "
            "panoramisk, latency, timer accuracy and memory under live load, route decisions, "
            "callback claims, the answering-machine detector, FreeSWITCH's unicast audio. "
            "--quick takes under 2 minutes; --full gives the figures "
            "BENCHMARKS.md records. Results are written as JSON under bench/results/."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a quick look (the default)")
    mode.add_argument("--full", action="store_true", help="the full figures (about 12 minutes)")
    parser.add_argument(
        "--only", help="comma-separated subset of parse,live,route,claims,amd,unicast"
    )
    parser.add_argument("--pg", help="admin DSN of the PostgreSQL server the benchmarks use")
    parser.add_argument("--profile", action="store_true", help="profile in quick mode too")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if not RUNNER.is_file():
        sys.stderr.write(
            f"pbx-agent bench: {RUNNER} not found; the benchmarks run from a source checkout "
            "of pbx-agent (bench/run.py)\n"
        )
        return 2
    argv = [sys.executable, str(RUNNER), "--full" if args.full else "--quick"]
    if args.only:
        argv += ["--only", args.only]
    if args.pg:
        argv += ["--pg", args.pg]
    if args.profile:
        argv.append("--profile")
    return subprocess.run(argv, cwd=RUNNER.parent.parent, check=False).returncode  # noqa: S603

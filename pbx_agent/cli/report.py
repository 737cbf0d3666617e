"""``pbx-agent report --since 24h``: the figures a manager asks for, from the store.

Share of calls with hold against the target, holds over the tier limit by agent, silent
callers, lingering and script drops, night IVR and flagged routings, callbacks made /
answered / exhausted / overdue (``pbx_agent.reporting`` says where each comes from). As a
table (default), ``--format json`` or ``--format csv``; ``--out FILE`` writes it to a file.
Dates without an offset are in the site's time zone.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pbx_agent.cli.common import add_config_option
from pbx_agent.cli.db import fail, run_with_store
from pbx_agent.config import Config
from pbx_agent.errors import ConfigError
from pbx_agent.reporting import (
    build_report,
    parse_moment,
    render_csv,
    render_json,
    render_table,
)
from pbx_agent.store import Store

FORMATS = ("table", "json", "csv")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="the quality figures for a period (hold share, drops, callbacks, routings)",
        description=(
            "Compute the R8 figures from the store for the period [--since, --until): share "
            "of calls with hold against the target, holds over the tier limit by agent, "
            "silent-caller / lingering / script drops, night IVR and flagged routings, "
            "callbacks made, answered, exhausted and overdue."
        ),
    )
    add_config_option(parser)
    parser.add_argument(
        "--since",
        default="24h",
        help=(
            "start: a length back from --until (24h, 90m, 7d, 2w; with --until 2026-06-01, "
            "7d is the week before June 1) or an ISO date/time (default 24h)"
        ),
    )
    parser.add_argument(
        "--until",
        default=None,
        help="end: an ISO date/time, or a length back from now (default: now)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    rendered: list[str] = []

    async def report(store: Store, config: Config) -> int:
        zone = config.site.zone
        now = datetime.now(UTC)
        try:
            until = parse_moment(args.until, now=now, zone=zone) if args.until else now
            since = parse_moment(args.since, now=until, zone=zone)
            figures = await build_report(
                store,
                since,
                until,
                hold_target=config.standards_for().quality.hold_share_target,
                timezone=config.site.timezone,
            )
        except ConfigError as exc:
            return fail(str(exc))
        match args.format:
            case "json":
                rendered.append(render_json(figures))
            case "csv":
                rendered.append(render_csv(figures))
            case _:
                rendered.append(render_table(figures, zone))
        return 0

    status = run_with_store(args, report)
    if status == 0 and rendered:
        if args.out:
            try:
                Path(args.out).write_text(rendered[0], encoding="utf-8")
            except OSError as exc:
                return fail(f"cannot write the report to {args.out}: {exc.strerror or exc}")
        else:
            sys.stdout.write(rendered[0])
    return status

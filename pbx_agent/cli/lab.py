"""``pbx-agent lab``: the daemon, unchanged, against a fake PBX playing scripted calls."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from pbx_agent.cli.common import add_config_option
from pbx_agent.config import ConfigError, load_config
from pbx_agent.lab import timelapse
from pbx_agent.lab.runner import run_lab
from pbx_agent.lab.scenarios import all_scenarios
from pbx_agent.logging import configure_logging


def _speed(text: str) -> float:
    """``--speed``: a positive, finite number (not 0, a negative number, nan or inf)."""
    try:
        return timelapse.check_speed(float(text))
    except ValueError:
        msg = f"expected a positive finite number of virtual seconds per real second, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="run scripted calls for every standard against a built-in fake PBX",
        description=(
            "Start a fake PBX on loopback, attach the daemon to it exactly as to a real switch, "
            "play scripted calls that exercise each standard, print the daemon's structured "
            "log and a summary table. Time runs --speed times faster than real time."
        ),
    )
    add_config_option(parser)
    parser.add_argument("--pbx", choices=("asterisk", "freeswitch"), default="asterisk")
    parser.add_argument(
        "--speed",
        type=_speed,
        default=20.0,
        help="virtual seconds per real second: a positive finite number (default: 20)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    scenarios = [s for s in all_scenarios() if args.pbx in s.pbx]
    if args.list:
        for s in scenarios:
            sys.stdout.write(f"{s.name:32} {s.rule:12} {s.title}\n")
        return 0
    if args.scenario:
        unknown = set(args.scenario) - {s.name for s in scenarios}
        if unknown:
            sys.stderr.write(f"pbx-agent lab: unknown scenario(s): {', '.join(sorted(unknown))}\n")
            return 2
        scenarios = [s for s in scenarios if s.name in args.scenario]
    base: dict[str, Any] = {}
    if args.config:
        try:
            site = load_config(args.config)
        except ConfigError as exc:
            sys.stderr.write(f"pbx-agent lab: {exc}\n")
            return 2
        base = {
            "site": site.site.model_dump(),
            "standards": site.standards,
            "queues": site.queues,
            "dialed": site.dialed,
            "agents": site.agents.model_dump(),
        }
    events: list[dict[str, Any]] = []

    def tap(event: Mapping[str, Any]) -> None:
        events.append(dict(event))

    configure_logging(args.log_format, "info", tap=tap)
    try:
        results = timelapse.run(
            run_lab(scenarios, base_config=base, events=events, switch=args.pbx), speed=args.speed
        )
    except KeyboardInterrupt:
        # timelapse.run has already cancelled and awaited what was running, closed the loop.
        sys.stderr.write("pbx-agent lab: interrupted\n")
        return 130
    return 0 if all(r.passed for r in results) else 1

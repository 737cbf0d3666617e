"""``pbx-agent check-config FILE``: validate a configuration file without starting anything.

Prints every problem as ``key: message (got: value; accepted: ...)`` and exits 1, or prints a
one-line summary and exits 0. Environment overrides (``PBX_AGENT_...``) are applied as
``pbx-agent run`` would apply them. Secrets are never printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pbx_agent.config import Config, ConfigError, load_config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate a configuration file and list every problem",
        description=(
            "Validate FILE (plus PBX_AGENT_* environment overrides) and list every problem "
            "with its key, the bad value and what is accepted. Exit status 1 if any."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="the TOML configuration file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        out = sys.stdout
        count = len(exc.problems)
        out.write(f"{args.file}: {count} problem{'s' if count != 1 else ''}\n")
        for problem in exc.problems:
            out.write(f"{problem}\n")
        return 1
    sys.stdout.write(f"{args.file}: OK; {summary(config)}\n")
    return 0


def summary(config: Config) -> str:
    """Profile, PBX kind and the override layers, in one line."""
    queues = ", ".join(sorted(config.queues)) or "none"
    parts = [
        f"profile {config.site.profile}",
        f"pbx {config.pbx.kind}",
        f"queue overrides: {queues}",
    ]
    if config.dialed:
        parts.append(f"dialled-number overrides: {len(config.dialed)}")
    if config.shadow:
        parts.append("shadow mode")
    return "; ".join(parts)

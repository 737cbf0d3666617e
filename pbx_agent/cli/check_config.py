"""``pbx-agent check-config FILE``: validate a configuration file without starting anything.

Prints every problem as ``key: message (got: value; accepted: ...)`` and exits 1, or prints a
one-line summary and exits 0. Environment overrides (``PBX_AGENT_...``) are applied as
``pbx-agent run`` would apply them. Secrets are never printed.

Beyond what ``pbx-agent run`` refuses (``load_config``): when the profile's folder under
``prompts.sounds_dir`` is on this host, every phrase's sound file and the hold music
(``pbx_agent.sounds``); with ``--dialplan DIR``, the dialplan the configuration will meet
(``pbx_agent.dialplan_check``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pbx_agent.config import Config, ConfigError, ConfigProblem, load_config
from pbx_agent.dialplan_check import check_dialplan
from pbx_agent.sounds import prompt_file_problems


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
    parser.add_argument(
        "--dialplan",
        metavar="DIR",
        help="also check FILE against the dialplan files in DIR (contexts, hooks, features)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        return _report(args.file, exc.problems)
    # What the switch will play and run: the prompt files (when the profile's sounds folder
    # is on this host) and the dialplan named by --dialplan.
    prompt_files = prompt_file_problems(config)
    deployment = [
        *(prompt_files or []),
        *(check_dialplan(config, Path(args.dialplan)) if args.dialplan else []),
    ]
    if deployment:
        return _report(args.file, deployment)
    checked = ["prompt files" if prompt_files is not None else "", args.dialplan and "dialplan"]
    extra = " and ".join(c for c in checked if c)
    sys.stdout.write(
        f"{args.file}: OK; {summary(config)}" + (f"; {extra} checked" if extra else "") + "\n"
    )
    if prompt_files is None:
        # Said, not hidden: an admin who expects the check must see it did not happen.
        folder = config.prompts.sounds_dir / config.site.profile
        sys.stdout.write(
            f"note: prompt files not checked: {folder} is not on this host (prompts.sounds_dir; "
            f"pbx-agent prompts render --profile {config.site.profile} writes it)\n"
        )
    return 0


def _report(file: str, problems: Sequence[ConfigProblem]) -> int:
    count = len(problems)
    sys.stdout.write(f"{file}: {count} problem{'s' if count != 1 else ''}\n")
    for problem in problems:
        sys.stdout.write(f"{problem}\n")
    return 1


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

"""Helpers shared by the sub-commands: the ``--config`` option and loading it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pbx_agent.config import Config, ConfigError, load_config


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=os.environ.get("PBX_AGENT_CONFIG"),
        help="the TOML configuration (default: $PBX_AGENT_CONFIG, else the embedded defaults)",
    )


def load_or_report(path: str | None) -> Config | None:
    """The configuration, or None after printing every problem to stderr."""
    try:
        return load_config(Path(path) if path else None)
    except ConfigError as exc:
        problems = getattr(exc, "problems", None) or []
        where = path or "the embedded defaults"
        sys.stderr.write(
            f"pbx-agent: {where}: {len(problems) or 1} configuration problem(s); not starting\n"
        )
        for problem in problems or [exc]:
            sys.stderr.write(f"  {problem}\n")
        return None

"""The ``pbx-agent`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``; ``main`` only collects them. A sub-command's handler returns the
process exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

# Modules of this package that contribute sub-commands, in the order ``--help`` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "lab",
    "run",
    "check_config",
    "amd",
    "db",
    "callbacks",
    "flags",
    "prompts",
    "report",
    "bench",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pbx-agent",
        description="Makes a PBX enforce a call centre's telephone service standards.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

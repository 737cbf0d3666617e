"""The ``pbx-agent`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``; ``main`` only collects them. A sub-command's handler returns the
process exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
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
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`, quitting `less`): stop quietly, as Unix tools do,
        # and keep the interpreter's last flush of stdout from failing again at exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what the shell reports for a tool killed by it


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        sys.stdout.flush()  # --help into a closed pipe fails here, not at interpreter exit
        raise
    handler: Handler = args.handler
    status = handler(args)
    sys.stdout.flush()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

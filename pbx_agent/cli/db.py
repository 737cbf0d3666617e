"""``pbx-agent db upgrade|current``: the database schema, and the helpers every store-backed
admin command shares (opening the configured store, durations, times in the site's zone,
readable tables).

Exit status: 0 done, 1 the store failed or the thing asked for is not there, 2 the
configuration has problems (printed to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO, cast
from zoneinfo import ZoneInfo

from pbx_agent.cli.common import add_config_option, load_or_report
from pbx_agent.config import Config
from pbx_agent.errors import StoreUnavailable
from pbx_agent.logging import configure_logging
from pbx_agent.store import Store
from pbx_agent.store.migrate import is_known, newer_schema_message

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "db",
        help="create or upgrade the database schema, show its revision",
        description="Manage the schema of the configured store ([store] url).",
    )
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION")
    sub.required = True
    upgrade = sub.add_parser("upgrade", help="apply the shipped migrations (also done at start-up)")
    add_config_option(upgrade)
    upgrade.set_defaults(handler=handle_upgrade)
    current = sub.add_parser(
        "current", help="show the schema revision; exit 1 when it is behind the software"
    )
    add_config_option(current)
    current.set_defaults(handler=handle_current)


def handle_upgrade(args: argparse.Namespace) -> int:
    async def upgrade(store: Store, _config: Config) -> int:
        revision = await store.upgrade()
        print_line(f"{store.db.where}: schema at revision {revision}")
        return 0

    return run_with_store(args, upgrade, require_schema=False)


def handle_current(args: argparse.Namespace) -> int:
    async def current(store: Store, _config: Config) -> int:
        revision = await store.current_revision()
        head = Store.head_revision()
        shown = revision or "none (never migrated)"
        if not is_known(revision):
            assert revision is not None
            return fail(newer_schema_message(store.db.where, revision))
        print_line(f"{store.db.where}: schema revision {shown}; software expects {head}")
        if revision != head:
            print_line("run `pbx-agent db upgrade` (the daemon also upgrades at start-up)")
            return 1
        return 0

    return run_with_store(args, current, require_schema=False)


# ---------------------------------------------------------------------- shared helpers


def run_with_store(
    args: argparse.Namespace,
    action: Callable[[Store, Config], Awaitable[int]],
    *,
    require_schema: bool = True,
) -> int:
    """Load the configuration, open its store, run ``action``, close the store.
    Configuration problems exit 2; a store failure, or (``require_schema``) a schema older
    than the software, is printed and exits 1."""
    config = load_or_report(getattr(args, "config", None))
    if config is None:
        return 2
    # Admin commands print tables on stdout; the services' own log lines (warnings and
    # worse) go to stderr so the tables stay readable and scriptable.
    configure_logging("console", "warning", stream=cast("TextIO", _StderrProxy()))

    async def session() -> int:
        store = Store.open(config.store.url)
        try:
            if require_schema:
                revision = await store.current_revision()
                if revision is not None and not is_known(revision):
                    return fail(newer_schema_message(store.db.where, revision))
                if revision != Store.head_revision():
                    return fail(
                        f"{store.db.where}: schema revision {revision or 'none'}, software "
                        f"expects {Store.head_revision()}; run `pbx-agent db upgrade` first"
                    )
            return await action(store, config)
        finally:
            await store.close()

    try:
        return asyncio.run(session())
    except StoreUnavailable as exc:
        sys.stderr.write(f"pbx-agent: {exc}\n")
        return 1


def parse_duration(text: str) -> timedelta:
    """``72h``, ``30d``, ``90m``, ``45s``, ``2w``; a bare number is hours."""
    match = _DURATION.match(text)
    if match is None:
        msg = f"{text!r} is not a duration (accepted: a number with s, m, h, d or w, e.g. 72h)"
        raise argparse.ArgumentTypeError(msg)
    value, unit = float(match.group(1)), (match.group(2) or "h").lower()
    if value <= 0:
        msg = f"{text!r}: a duration must be positive"
        raise argparse.ArgumentTypeError(msg)
    return timedelta(seconds=value * _UNIT_SECONDS[unit])


def local_time(at: datetime | None, zone: ZoneInfo) -> str:
    """``2026-06-10 15:00:30+03:00`` in the site's time zone, with its offset (an admin
    reading it elsewhere, or across a clock change, knows which hour it is); ``-`` for none."""
    if at is None:
        return "-"
    return at.astimezone(zone).isoformat(sep=" ", timespec="seconds")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows under headers, columns padded to their widest cell."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def print_line(text: str, stream: TextIO | None = None) -> None:
    (stream or sys.stdout).write(text + "\n")


def fail(text: str) -> int:
    sys.stderr.write(f"pbx-agent: {text}\n")
    return 1


class _StderrProxy:
    """Whatever ``sys.stderr`` is at the time of writing (tests swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

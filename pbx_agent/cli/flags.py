"""``pbx-agent flags add|remove|list``: caller flags (R9), set and cleared by operators.

A flagged number's calls go to the designated queue of the most stress-resistant agents
until the flag expires. Numbers are normalised (any written form of a number is the same
customer); anonymous and unparsable numbers are refused. Each change is recorded as a
decision (rule R9) with who made it.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from pbx_agent.cli.common import add_config_option
from pbx_agent.cli.db import fail, local_time, parse_duration, print_line, run_with_store, table
from pbx_agent.config import Config
from pbx_agent.numbers import NormalizedNumber, normalize
from pbx_agent.store import CallerFlag, Decision, Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "flags",
        help="flag or unflag caller numbers (R9), list the flags",
        description="Caller flags in the configured store.",
    )
    sub = parser.add_subparsers(dest="flags_command", metavar="ACTION")
    sub.required = True

    add = sub.add_parser("add", help="flag a number")
    add_config_option(add)
    add.add_argument("number", metavar="NUMBER")
    add.add_argument("--reason", required=True, help="why (shown to supervisors)")
    add.add_argument("--by", required=True, help="who sets the flag")
    add.add_argument(
        "--expires",
        type=parse_duration,
        help="how long it holds, e.g. 30d (default: flags.default_expiry_days, else never)",
    )
    add.set_defaults(handler=handle_add)

    remove = sub.add_parser("remove", help="clear a number's flag")
    add_config_option(remove)
    remove.add_argument("number", metavar="NUMBER")
    remove.add_argument("--by", default="", help="who clears it (kept in the decision log)")
    remove.set_defaults(handler=handle_remove)

    listing = sub.add_parser("list", help="list the flags in force")
    add_config_option(listing)
    listing.add_argument("--all", action="store_true", help="include expired flags")
    listing.set_defaults(handler=handle_list)


def _number(raw: str, config: Config) -> NormalizedNumber | None:
    normalized = normalize(raw, config.site.default_region)
    return normalized if isinstance(normalized, NormalizedNumber) else None


def handle_add(args: argparse.Namespace) -> int:
    async def add(store: Store, config: Config) -> int:
        number = _number(args.number, config)
        if number is None:
            return fail(f"{args.number!r} is not a usable phone number")
        now = datetime.now(UTC)
        expires = args.expires
        default_days = config.standards_for().flags.default_expiry_days
        if expires is None and default_days is not None:
            expires = parse_duration(f"{default_days}d")
        flag = CallerFlag(
            number=number.e164,
            reason=args.reason,
            set_by=args.by,
            set_at=now,
            expires_at=now + expires if expires is not None else None,
        )
        await store.flags.set(flag)
        await store.decisions.record(
            Decision(
                at=now,
                rule="R9",
                action="flag_set",
                reason=args.reason,
                number=number.e164,
                agent=args.by,
                details={"expires_at": flag.expires_at.isoformat() if flag.expires_at else None},
            )
        )
        until = local_time(flag.expires_at, config.site.zone) if flag.expires_at else "never"
        print_line(f"{number.e164} flagged by {args.by}: {args.reason} (expires: {until})")
        return 0

    return run_with_store(args, add)


def handle_remove(args: argparse.Namespace) -> int:
    async def remove(store: Store, config: Config) -> int:
        number = _number(args.number, config)
        key = number.e164 if number is not None else args.number
        if not await store.flags.remove(key):
            return fail(f"{key} is not flagged")
        await store.decisions.record(
            Decision(
                at=datetime.now(UTC),
                rule="R9",
                action="flag_removed",
                reason="cleared by hand",
                number=key,
                agent=args.by or None,
            )
        )
        print_line(f"{key} unflagged")
        return 0

    return run_with_store(args, remove)


def handle_list(args: argparse.Namespace) -> int:
    async def listing(store: Store, config: Config) -> int:
        flags = await store.flags.list_flags(None if args.all else datetime.now(UTC))
        if not flags:
            print_line("no flagged numbers")
            return 0
        zone = config.site.zone
        rows = [
            [
                f.number,
                f.reason,
                f.set_by,
                local_time(f.set_at, zone),
                local_time(f.expires_at, zone) if f.expires_at else "never",
            ]
            for f in flags
        ]
        print_line(table(("NUMBER", "REASON", "SET BY", "SET AT", "EXPIRES"), rows).rstrip("\n"))
        return 0

    return run_with_store(args, listing)

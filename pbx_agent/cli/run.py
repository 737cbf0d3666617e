"""``pbx-agent run``: the daemon. Refuses to start on any configuration problem."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import structlog

from pbx_agent.cli.common import add_config_option, load_or_report
from pbx_agent.daemon import Daemon, tune_garbage_collector
from pbx_agent.errors import PbxAgentError, PbxAuthenticationFailed
from pbx_agent.logging import configure_logging
from pbx_agent.pbx.tasks import cancel_and_wait

log = structlog.get_logger("pbx_agent.cli.run")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the daemon (a built-in simulated PBX when none is configured)",
        description=(
            "Attach to the configured PBX and enforce the service standards. With no "
            "[asterisk] or [freeswitch] section the daemon attaches to a built-in simulated "
            "Asterisk that places calls by itself."
        ),
    )
    add_config_option(parser)
    parser.add_argument(
        "--shadow",
        action="store_true",
        help="decide and log everything, send nothing that changes a call",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    config = load_or_report(args.config)
    if config is None:
        return 2
    if args.shadow:
        config = config.model_copy(update={"shadow": True})
    # The built-in simulator's scenarios wait for the daemon's info events (a hold
    # announcement) whatever logging.level prints.
    simulated = config.pbx.kind == "simulated"
    configure_logging(
        config.logging.format, config.logging.level, capture_level="info" if simulated else None
    )
    try:
        asyncio.run(_serve(config, Path(args.config) if args.config else None))
    except PbxAuthenticationFailed as exc:
        sys.stderr.write(f"pbx-agent: {exc}\n")
        return 3
    except PbxAgentError as exc:
        sys.stderr.write(f"pbx-agent: cannot start: {exc}\n")
        return 1
    return 0


async def _serve(config: Any, path: Path | None) -> None:
    daemon = Daemon(config, config_path=path)
    daemon.handle_signals()
    starting = asyncio.ensure_future(daemon.start())
    stopping = asyncio.ensure_future(daemon.run_until_stopped())
    try:
        # A SIGTERM while the daemon is still attaching (a switch that accepts and never
        # answers can hold the first login for connect_timeout_s) stops it at once.
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("daemon_stopping", reason="asked to stop while still starting")
            await cancel_and_wait(starting)
            return
        # A start that fails half-way (a port already taken) still closes what it opened:
        # the store is closed cleanly and the AMI/ESL link logged off.
        starting.result()
        tune_garbage_collector()
        await stopping
    finally:
        stopping.cancel()
        await daemon.stop()

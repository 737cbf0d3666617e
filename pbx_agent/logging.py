"""Structured logging: one JSON object per line by default, readable columns on a terminal.

Every log line is an event with a name (``decision``, ``command_done``, ``ami_connected``...)
and fields; README.md lists the names and fields operations staff rely on. Strings that came
from a caller are escaped before they are rendered, so a caller name with control characters
cannot forge a second log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from pbx_agent.wire.escaping import printable


def _escape_strings(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Only strings holding something unprintable (control characters, bytes that were not
    # UTF-8) are rewritten; text already escaped by a codec's error message is left as is.
    for key, value in event_dict.items():
        if isinstance(value, str) and key not in ("exception", "event") and not value.isprintable():
            event_dict[key] = printable(value)
    return event_dict


def configure_logging(
    fmt: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    tap: Callable[[Mapping[str, Any]], None] | None = None,
) -> None:
    """Configure structlog for the process. ``fmt``: ``auto`` | ``json`` | ``console``."""
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty(), sort_keys=False)
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _escape_strings,
    ]
    if tap is not None:
        processors.append(_tap_processor(tap))
    processors += [structlog.processors.format_exc_info, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def _tap_processor(
    tap: Callable[[Mapping[str, Any]], None],
) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    """A processor that shows each event to ``tap`` (the lab checks expected log events)."""

    def processor(
        _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        tap(dict(event_dict))
        return event_dict

    return processor

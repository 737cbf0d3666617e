"""Structured logging: one JSON object per line by default, readable columns on a terminal.

Every log line is an event with a name (``decision``, ``command_done``, ``ami_connected``...)
and fields; README.md lists the names and fields operations staff rely on.

Invariants:
- Strings that came from a caller are escaped before they are rendered, at any depth (a
  caller name inside a command's ``fields`` as much as a top-level one), with the rules of
  ``pbx_agent.wire.escaping.printable``: a caller name with control characters cannot forge
  a second log line, a byte that was not UTF-8 is shown as ``\\xNN`` instead of
  reaching a stream that cannot encode it, and a backslash is doubled, so two different
  strings never render the same (text ``printable`` already rendered is not escaped
  again; any other text with a backslash is, an error message's escapes included).
- Logging never raises into the code that logs. A line the stream cannot encode is written
  with backslash escapes; any other failure (a processor, a closed stream) loses that one
  line and is reported on stderr as ``log_failed``, in ASCII. A decision is executed whether
  or not its log line could be written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from pbx_agent.wire.escaping import printable_nested


def _escape_strings(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # Strings holding something unprintable (control characters, bytes that were not
    # UTF-8) or a backslash are rewritten, so a literal "\x1b" cannot pass for a real ESC;
    # what ``printable`` already rendered (the engine's command fields) is left as is.
    # Nested values are copied, never changed in place: they may be a command's own fields.
    for key, value in event_dict.items():
        if key not in ("exception", "event"):
            event_dict[key] = printable_nested(value, keep_printable=True)
    return event_dict


def _report_lost(event: object, exc: BaseException) -> None:
    """Say on stderr, in ASCII, that a log line was lost and why; never raise."""
    # With stdout and stderr both failing there is nowhere left to say it.
    with contextlib.suppress(Exception):
        line = json.dumps(
            {
                "event": "log_failed",
                "level": "error",
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "lost_event": str(event),
                "error": f"{type(exc).__name__}: {exc}",
            },
            ensure_ascii=True,
        )
        print(line, file=sys.stderr, flush=True)  # noqa: T201 - the one place logging cannot log


class GuardedLogger:
    """A logger whose calls never raise: a failure to log is reported by ``_report_lost``.

    For code that must go on whatever happens to a log line (the engine executes a
    decision after logging it). ``logger`` is any structlog logger, usually a lazy proxy
    from ``structlog.get_logger``, so the process's configuration applies at each call.
    """

    __slots__ = ("_logger",)

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        try:
            getattr(self._logger, level)(event, **fields)
        except Exception as exc:  # noqa: BLE001 - a log line must never stop the caller
            _report_lost(event, exc)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """``error`` with the exception being handled (its traceback) attached."""
        fields.setdefault("exc_info", True)
        self._emit("error", event, fields)


class _LineWriter(structlog.PrintLogger):
    """Writes each rendered line; a line the stream cannot encode (a strict UTF-8 stdout
    and a surrogate in a traceback) is written with backslash escapes instead of raising."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except UnicodeEncodeError:
            encoding = getattr(self._file, "encoding", None) or "utf-8"
            super().msg(message.encode(encoding, "backslashreplace").decode(encoding))

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _never_raising(bound: type[Any]) -> type[Any]:
    """``bound`` (a structlog filtering logger class) whose log calls never raise."""

    class NeverRaising(bound):  # type: ignore[misc]
        def _proxy_to_logger(
            self, method_name: str, event: str | None = None, **event_kw: Any
        ) -> Any:
            try:
                return super()._proxy_to_logger(method_name, event, **event_kw)
            except Exception as exc:  # noqa: BLE001 - a log line must never stop the caller
                _report_lost(event, exc)
                return None

    return NeverRaising


class LevelGate:
    """Drops the events below ``level`` just before they are rendered. With
    ``configure_logging(capture_level=...)`` the loggers let lower events through for the
    processors placed before the gate (the built-in simulator's scenarios wait for info
    events whatever the daemon prints)."""

    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(
        self, _logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        name = str(event_dict.get("level") or method_name).upper()
        numeric = logging.getLevelName("WARNING" if name == "WARN" else name)
        if isinstance(numeric, int) and numeric < self.level:
            raise structlog.DropEvent
        return event_dict


def configure_logging(
    fmt: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    tap: Callable[[Mapping[str, Any]], None] | None = None,
    capture_level: str | None = None,
) -> None:
    """Configure structlog for the process. ``fmt``: ``auto`` | ``json`` | ``console``.
    ``capture_level`` (lower than ``level``): events from it up still reach the processors
    (a ``tap``, or one inserted before the ``LevelGate``); only ``level`` and up are written."""
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
    captured = logging.getLevelName(capture_level.upper()) if capture_level else numeric
    if not isinstance(captured, int) or captured > numeric:
        captured = numeric
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _escape_strings,
    ]
    if tap is not None:
        processors.append(_tap_processor(tap))
    if captured < numeric:
        processors.append(LevelGate(numeric))
    processors += [structlog.processors.format_exc_info, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=_never_raising(structlog.make_filtering_bound_logger(captured)),
        logger_factory=lambda *_args: _LineWriter(out),
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

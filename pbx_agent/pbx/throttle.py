"""A bound on how many lines one kind of peer error writes to the log.

A switch that sends malformed frames without end (a bug, a wrong port, a flood) would write
one warning per frame: millions of lines, a full disk under the store. ``LogThrottle``
writes the first ``burst`` of a window as they come and counts the rest; the count is said
in one ``log_lines_suppressed`` line when the next window's first one comes, or when the
connection ends (``flush``). Pure bookkeeping: the caller gives the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class LogThrottle:
    event: str
    burst: int = 20
    window_s: float = 60.0
    _window_start: float = -math.inf
    _written: int = 0
    _suppressed: int = 0

    def warning(self, now: float, **fields: Any) -> None:
        """``log.warning(event, **fields)`` unless the window's burst is spent."""
        if now - self._window_start >= self.window_s:
            self.flush(**{k: v for k, v in fields.items() if k == "pbx"})
            self._window_start, self._written = now, 0
        if self._written >= self.burst:
            self._suppressed += 1
            return
        self._written += 1
        log.warning(self.event, **fields)

    def flush(self, **fields: Any) -> None:
        """Say how many lines were left out since the last time (if any)."""
        if self._suppressed:
            log.warning(
                "log_lines_suppressed",
                suppressed_event=self.event,
                count=self._suppressed,
                window_s=self.window_s,
                **fields,
            )
            self._suppressed = 0

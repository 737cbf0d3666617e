"""One configuration problem, as the operator reads it.

A problem names the key (a dotted path such as ``standards.hold.reminder_interval_s`` or
``queues.support.silent_caller.steps[1].after_s``; for an environment override, the variable's
name), the offending value as text (secrets masked), what is accepted, and what is wrong.
This module imports nothing from the rest of the package so that ``pbx_agent.errors`` can
name it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    key: str
    value: str
    accepted: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message} (got: {self.value}; accepted: {self.accepted})"

"""For the adapters' tests: a policy that records the call events the engine gives it, and a
wait for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd


@dataclass
class Recorder:
    """Records every call event it sees; decides nothing."""

    name: str = "recorder"
    rule: str = "R0"
    seen: list[cm.CallEvent] = field(default_factory=list)

    def start(self, call: cm.Call, now: float) -> Any:
        return 0

    def step(
        self, state: Any, event: cm.CallEvent, call: cm.Call, now: float
    ) -> tuple[Any, list[cmd.Command]]:
        self.seen.append(event)
        return state, []

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.seen]


async def until(predicate: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    """Wait until ``predicate()`` holds; fail the test naming ``what`` after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")

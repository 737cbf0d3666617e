"""Lab scenarios: scripted calls that exercise one standard each.

A scenario module in ``pbx_agent/lab/scenarios/`` exposes ``SCENARIOS: list[Scenario]``
and is listed in ``pbx_agent/lab/scenarios/__init__.py``. A scenario drives the fake PBX
through ``ctx.pbx`` (a ``LabPbx``: the same script runs on every fake switch), waits with
``ctx.sleep`` (virtual seconds: the lab's clock runs faster than real time) and states what
the daemon must have decided: ``expect`` lists ``(policy, action)`` pairs that must appear,
in that order, among the decisions of the scenario's calls; ``forbid`` pairs must not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pbx_agent.daemon import Daemon
    from pbx_agent.engine import Decision
    from pbx_agent.lab.drivers import LabPbx


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    rule: str
    run: Callable[[LabContext], Awaitable[None]]
    expect: tuple[tuple[str, str], ...] = ()
    forbid: tuple[tuple[str, str], ...] = ()
    # Log events (by name) that must appear while the scenario runs, e.g. "pbx_resynced".
    expect_events: tuple[str, ...] = ()
    # Site configuration overrides for this scenario (merged into the lab's config).
    config: Mapping[str, Any] = field(default_factory=dict)
    # Local time of day ("23:30") the daemon's clock shows when the scenario starts.
    at_local_time: str | None = None
    pbx: frozenset[str] = frozenset({"asterisk", "freeswitch"})
    # How much faster than the lab's speed this scenario may run: long waits that nothing
    # times precisely (hours between callback attempts, quiet hours) need not take long.
    speed_factor: float = 1.0


@dataclass(slots=True)
class LabContext:
    pbx: LabPbx
    daemon: Daemon
    decisions: list[Decision]
    log_events: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of the daemon's (virtual) time."""
        await asyncio.sleep(seconds)

    async def until(
        self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = ""
    ) -> None:
        """Wait (virtual time) until ``predicate()`` holds; fail the scenario otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():  # noqa: ASYNC110 - predicates are plain functions
                    await asyncio.sleep(0.05)
        except TimeoutError:
            msg = f"timed out after {timeout} s waiting for {what or 'a condition'}"
            raise AssertionError(msg) from None

    def decided(self, policy: str, action: str) -> bool:
        return any(d.policy == policy and d.action == action for d in self.decisions)

    async def until_decided(self, policy: str, action: str, timeout: float = 30.0) -> None:
        await self.until(lambda: self.decided(policy, action), timeout, f"{policy}/{action}")

    def note(self, text: str) -> None:
        self.notes.append(text)

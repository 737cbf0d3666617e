"""The shape every policy has.

A policy is a pure state machine over one call::

    state = policy.start(call, now)                # None: this policy sits this call out
    state, commands = policy.step(state, event, call, now)

``call`` is the live ``pbx_agent.model.calls.Call``; policies read it and never change it.
``now`` is epoch seconds. Settings come from ``call.standards`` (the profile resolved for the
call's queue or dialled number), so a policy holds no configuration of its own beyond what its
constructor is given for the whole site.

Timers are commands: ``StartTimer(key, at)`` makes the engine deliver ``TimerFired(call, key)``
to the same policy at ``at``; keys are private to the policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from pbx_agent.model.calls import Call, CallEvent
from pbx_agent.model.commands import Command

S = TypeVar("S")

Step = tuple[Any, Sequence[Command]]


class Policy(Protocol):
    """One standard, enforced on one call."""

    name: str  # short snake_case name: the timer namespace and the log's ``policy`` field
    rule: str  # the STANDARDS.md rule it enforces: "R1", "R2", ...

    def start(self, call: Call, now: float) -> Any | None: ...

    def step(self, state: Any, event: CallEvent, call: Call, now: float) -> Step: ...

"""The engine, a policy and the Asterisk adapter against the fake Asterisk over loopback TCP,
on one injected clock.

Both sides read the same ``ManualClock``; a ticker task moves it in small steps, stopping at
each timer's own instant, and lets the sockets settle in between, so every event and action
carries an exact virtual time: the
fake records when each action arrived (``ReceivedAction.at``) and the engine when it decided.
Only virtual times are asserted, never how fast the machine ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pbx_agent.clock import ManualClock
from pbx_agent.config.standards import Standards
from pbx_agent.engine import Decision, Engine
from pbx_agent.model import calls as cm
from pbx_agent.model.events import CallId
from pbx_agent.pbx.ami_client import AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions, DialplanTarget
from pbx_agent.policies.base import Policy
from pbx_agent.testing.fake_asterisk import FakeAsterisk, Leg, ReceivedAction

TICK_S = 0.025  # virtual seconds per tick
SETTLE_S = 0.002  # real seconds the sockets get between ticks


def sound(key: str) -> str:
    return f"pbx-agent/ru/{key.replace('.', '-')}"


OPTIONS = AsteriskOptions(
    sounds=sound,
    targets={
        "linger": DialplanTarget("pbxagent-linger"),
        "requeue": DialplanTarget("pbxagent-requeue"),
    },
    talk_detect_silence_ms=300,
    talk_detect_threshold=256,
    watched_variables=frozenset({"PBXAGENT_ROLE"}),
)


def ami_settings(pbx: FakeAsterisk) -> AmiSettings:
    host, port = pbx.ami_address
    return AmiSettings(
        host=host,
        port=port,
        username="lab",
        secret="not-a-real-secret",
        action_timeout_s=2.0,
        ping_interval_s=60,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )


@dataclass
class Loopback:
    pbx: FakeAsterisk
    clock: ManualClock
    engine: Engine
    adapter: AsteriskAdapter
    decisions: list[Decision] = field(default_factory=list)

    def actions(self, *names: str, since: float = 0.0) -> list[ReceivedAction]:
        """Actions that change a call, in arrival order (pings and logins left out)."""
        wanted = {n.lower() for n in names} or {
            "originate",
            "hangup",
            "redirect",
            "setvar",
            "mixmonitor",
            "userevent",
        }
        return [r for r in self.pbx.received if r.name.lower() in wanted and r.at >= since]

    async def until(self, predicate: Any, timeout_s: float = 10.0, what: str = "") -> None:
        """Wait (real time, while the clock ticks) until ``predicate()`` holds."""
        try:
            async with asyncio.timeout(timeout_s):
                while not predicate():
                    await asyncio.sleep(SETTLE_S)
        except TimeoutError:
            msg = f"timed out waiting for {what or 'a condition'}"
            raise AssertionError(msg) from None

    async def sleep(self, virtual_s: float) -> None:
        end = self.clock.now() + virtual_s
        await self.until(lambda: self.clock.now() >= end, what=f"{virtual_s} virtual s")

    def call(self, leg: Leg) -> cm.Call | None:
        return self.engine.model.calls.get(CallId(leg.linkedid))

    def decided(self, action: str) -> list[Decision]:
        return [d for d in self.decisions if d.action == action]

    async def connected_call(self, *, agent_endpoint: str = "agent-1001") -> tuple[Leg, Leg]:
        """A caller is answered and queued to an agent; talk detection is on both legs."""
        caller = await self.pbx.inbound_call(caller="79161234567", caller_name="Иван")
        await caller.answer()
        agent = await caller.connect_agent(endpoint=agent_endpoint, queue="support")
        await self.until(
            lambda: caller.talk_detection and agent.talk_detection, what="TALK_DETECT set"
        )
        return caller, agent


async def _tick(clock: ManualClock) -> None:
    """Move time on, stopping at every timer's instant so what it starts happens on time."""
    while True:
        target = clock.now() + TICK_S
        due = clock.next_due()
        if due is not None:
            target = min(target, max(due, clock.now()))
        clock.advance_to(target)
        await asyncio.sleep(SETTLE_S)


@contextlib.asynccontextmanager
async def loopback(policies: Sequence[Policy], standards: Standards) -> AsyncIterator[Loopback]:
    clock = ManualClock()
    async with FakeAsterisk(clock=clock) as pbx:
        pbx.dialplan.add("pbxagent-linger", "s", [("Answer", ""), ("Wait", "120"), ("Hangup", "")])
        pbx.dialplan.add("pbxagent-requeue", "s", [("Queue", "support")])
        engine = Engine(clock=clock, policies=policies, standards=lambda _q, _d: standards)
        adapter = AsteriskAdapter(ami_settings(pbx), OPTIONS, handle_event=engine.handle)
        engine.executor = adapter
        rig = Loopback(pbx, clock, engine, adapter)
        engine.on_decision(rig.decisions.append)

        # What the composition root does where parties connect (pbx_agent.daemon).
        def talk_detection(event: cm.CallEvent, call: cm.Call | None, _now: float) -> None:
            if isinstance(event, cm.PartiesConnected) and call is not None:
                adapter.enable_talk_detection(
                    [call.legs[leg].channel for leg in (event.caller, event.agent)]
                )

        engine.on_call_event(talk_detection)
        ticker = asyncio.create_task(_tick(clock), name="virtual clock")
        await adapter.start()
        try:
            yield rig
        finally:
            await engine.close()
            await adapter.close()
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

"""The built-in simulated PBX behind ``pbx-agent run`` when no real switch is configured.

It is the lab's fake Asterisk, started in the daemon's own process on a free loopback port,
and a traffic generator that keeps placing calls drawn from the lab scenarios (the ones that
need no special configuration), a few at a time, at random intervals, until the daemon
stops. The daemon attaches to it over TCP exactly as to a real switch, so everything it logs
is what it would do on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING, Any

import structlog

from pbx_agent.lab.drivers import AsteriskLabPbx
from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.lab.scenarios import all_scenarios
from pbx_agent.testing.fake_asterisk import FakeAsterisk

if TYPE_CHECKING:
    from pbx_agent.daemon import Daemon

log = structlog.get_logger("pbx_agent.simulator")

SIM_USERNAME = "simulator"
SIM_SECRET = "simulated-pbx"  # noqa: S105 - a loopback-only fake switch in the same process


class Simulator:
    def __init__(
        self, *, concurrency: int = 3, mean_gap_s: float = 4.0, seed: int | None = None
    ) -> None:
        self.fake = FakeAsterisk(username=SIM_USERNAME, secret=SIM_SECRET)
        self.concurrency = concurrency
        self.mean_gap_s = mean_gap_s
        self._random = random.Random(seed)  # noqa: S311 - traffic shape, not security
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.calls_started = 0

    async def start(self) -> tuple[str, int]:
        await self.fake.start()
        return self.fake.ami_address

    def start_traffic(self, daemon: Daemon, agi_port: int) -> None:
        pbx = AsteriskLabPbx(self.fake, "127.0.0.1", agi_port)
        scenarios = [
            s
            for s in all_scenarios()
            if not s.config and s.at_local_time is None and s.rule != "foundation"
        ]
        if not scenarios:
            log.warning("simulator_idle", reason="no scenario can run on the default configuration")
            return
        self._runner = asyncio.create_task(self._traffic(daemon, pbx, scenarios), name="simulator")

    async def _traffic(
        self, daemon: Daemon, pbx: AsteriskLabPbx, scenarios: list[Scenario]
    ) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            await asyncio.sleep(self._random.expovariate(1.0 / self.mean_gap_s))
            await slots.acquire()
            scenario = self._random.choice(scenarios)
            self.calls_started += 1
            task = asyncio.create_task(
                self._play(daemon, pbx, scenario, slots), name=f"sim:{scenario.name}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _play(
        self, daemon: Daemon, pbx: AsteriskLabPbx, scenario: Scenario, slots: asyncio.Semaphore
    ) -> None:
        ctx = LabContext(pbx=pbx, daemon=daemon, decisions=[], log_events=[])
        daemon.engine.on_decision(ctx.decisions.append)
        log.info("simulated_call", scenario=scenario.name, rule=scenario.rule, title=scenario.title)
        try:
            await scenario.run(ctx)
        except Exception as exc:  # noqa: BLE001 - simulated traffic never stops the daemon
            log.info(
                "simulated_call_ended", scenario=scenario.name, note=f"{type(exc).__name__}: {exc}"
            )
        finally:
            daemon.engine.remove_decision_listener(ctx.decisions.append)
            slots.release()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                *([self._runner] if self._runner else []), *self._tasks, return_exceptions=True
            )
        await self.fake.stop()

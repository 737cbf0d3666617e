"""The built-in simulated PBX behind ``pbx-agent run`` when no real switch is configured.

It is the lab's fake Asterisk, started in the daemon's own process on a free loopback port,
and a traffic generator that keeps placing calls drawn from the lab scenarios (the Asterisk
ones that need no special configuration), a few at a time, at random intervals, until the
daemon stops. The daemon attaches to it over TCP exactly as to a real switch, so everything
it logs is what it would do on one.

A scenario sees the daemon's decisions and log events as in ``pbx-agent lab`` (some wait
for one, such as a hold announcement), but only its own: the lab plays one scenario at a
time, the simulator several, and a script waiting for "the hold record" must not take
another call's. A structlog processor hands each event to the running scenarios whose calls
it names (or to all of them when it names no call), and to nobody else, so a long-running
daemon keeps no log in memory. Whatever the outcome, no call of a scenario stays up: a
scenario that fails or overruns its deadline has every channel of its calls hung up on the
fake switch and is reported at warning level.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

from pbx_agent.lab.drivers import AsteriskLabPbx, AsteriskLeg
from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.lab.scenarios import all_scenarios
from pbx_agent.logging import LevelGate
from pbx_agent.testing.asterisk_model import Tech
from pbx_agent.testing.fake_asterisk import FakeAsterisk

if TYPE_CHECKING:
    from pbx_agent.daemon import Daemon
    from pbx_agent.engine import Decision
    from pbx_agent.testing.asterisk_model import Channel

log = structlog.get_logger("pbx_agent.simulator")

SIM_USERNAME = "simulator"
SIM_SECRET = "simulated-pbx"  # noqa: S105 - a loopback-only fake switch in the same process
# The switch the simulator is: the scenarios it plays are those offered on it.
SIM_PBX = "asterisk"

# Virtual seconds. No scenario in the pool lasts a minute; past this one is abandoned.
SCENARIO_DEADLINE_S = 300.0
# A scenario that ended normally may leave the daemon a moment to finish its calls (its
# last drop or hang-up in flight) before the simulator hangs up what is left.
LEFTOVER_GRACE_S = 5.0
# After the parties hung up, how long the daemon has to end its own channels (hold program,
# whispers) before the simulator hangs them up too.
HELPER_GRACE_S = 5.0
# The most log events one running scenario holds (the oldest are dropped beyond it).
MAX_EVENTS_PER_SCENARIO = 5000
# The newest AMI events, actions, AGI results and originations the fake switch keeps.
SIM_HISTORY = 2000

EventFilter = Callable[[Mapping[str, Any]], bool]


def simulator_scenarios(pbx: str = SIM_PBX) -> list[Scenario]:
    """The scenarios the simulator plays on a simulated ``pbx``: those offered on that
    switch that run on the default configuration at any time of day (the foundation's cut
    links and broken frames are not traffic)."""
    return [
        s
        for s in all_scenarios()
        if pbx in s.pbx and not s.config and s.at_local_time is None and s.rule != "foundation"
    ]


class LogFeed:
    """A structlog processor giving each log event to the scenarios running when it is
    logged (``LabContext.log_events``), as ``pbx-agent lab``'s tap does for its scenarios:
    to each subscriber whose filter takes the event. An event logged while no scenario runs
    is kept by nobody; each scenario's list is bounded by ``limit``."""

    def __init__(self, limit: int = MAX_EVENTS_PER_SCENARIO) -> None:
        self.limit = limit
        self._subscribers: list[tuple[list[dict[str, Any]], EventFilter]] = []

    def __call__(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._subscribers:
            event = dict(event_dict)
            for events, wanted in self._subscribers:
                if not wanted(event):
                    continue
                events.append(event)
                if len(events) > self.limit:
                    del events[: len(events) - self.limit]
        return event_dict

    def install(self) -> None:
        """Put the feed into the process's logging (again if logging was configured anew
        since): before the level gate when there is one (``run`` with the simulator
        captures info events whatever ``logging.level`` prints), else just before the
        renderer."""
        processors = list(structlog.get_config()["processors"])
        if any(p is self for p in processors):
            return
        gate = next((i for i, p in enumerate(processors) if isinstance(p, LevelGate)), None)
        processors.insert(max(len(processors) - 1, 0) if gate is None else gate, self)
        structlog.configure(processors=processors)

    def uninstall(self) -> None:
        processors = list(structlog.get_config()["processors"])
        if any(p is self for p in processors):
            structlog.configure(processors=[p for p in processors if p is not self])

    @contextlib.contextmanager
    def subscribe(
        self, wanted: EventFilter = lambda _event: True
    ) -> Iterator[list[dict[str, Any]]]:
        """A list that receives every event ``wanted`` takes until the block ends."""
        self.install()
        events: list[dict[str, Any]] = []
        entry = (events, wanted)
        self._subscribers.append(entry)
        try:
            yield events
        finally:
            self._subscribers = [s for s in self._subscribers if s is not entry]

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


class _ScenarioPbx(AsteriskLabPbx):
    """The fake switch as one scenario drives it: remembers the calls it placed, so that
    every channel of those calls can be found and hung up when the scenario is over."""

    def __init__(self, fake: FakeAsterisk, agi_host: str, agi_port: int) -> None:
        super().__init__(fake, agi_host, agi_port)
        self._linkedids: set[str] = set()
        self._known: set[Channel] = set()

    async def inbound_call(
        self, caller: str, caller_name: str = "", *, exten: str = "100"
    ) -> AsteriskLeg:
        leg = await super().inbound_call(caller, caller_name, exten=exten)
        self._linkedids.add(leg.leg.linkedid)
        return leg

    def live_channels(self) -> list[Channel]:
        """The scenario's live channels: those of its calls (the caller, the agent dialled
        from it) and the ones the daemon attached to them (hold programs, whispers: Local
        pairs spying on a leg of the calls)."""
        switch = self.fake.switch
        grown = True
        while grown:
            names = {ch.name for ch in self._known}
            found = {
                ch
                for ch in switch.channels.values()
                if ch not in self._known
                and (
                    ch.linkedid in self._linkedids
                    or ch.spying_on in self._known
                    or ch.local_partner in self._known
                    or ch.get_var("PBXAGENT_SPY_TARGET") in names
                )
            }
            self._known |= found
            grown = bool(found)
        return [ch for ch in self._known if ch.alive]

    def owns(self, call_or_leg: object) -> bool:
        """Whether a call id or leg id the daemon names is one of this scenario's calls (a
        call's id is its first channel's linkedid, known as soon as the call is placed,
        before the daemon hears of it)."""
        if not isinstance(call_or_leg, str) or not call_or_leg:
            return False
        if call_or_leg in self._linkedids:
            return True
        self.live_channels()
        return any(ch.uniqueid == call_or_leg for ch in self._known)

    def wants_event(self, event: Mapping[str, Any]) -> bool:
        """Whether this scenario sees a log event: one naming one of its calls or legs, or
        naming no call at all."""
        named = [event[key] for key in ("call_id", "leg") if event.get(key)]
        return not named or any(self.owns(value) for value in named)

    def wants_decision(self, decision: Decision) -> bool:
        return decision.call_id is None or self.owns(decision.call_id)


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 - a plain predicate on the fake's state
                await asyncio.sleep(0.05)
    return predicate()


class Simulator:
    kind = SIM_PBX

    def __init__(
        self,
        *,
        concurrency: int = 3,
        mean_gap_s: float = 4.0,
        seed: int | None = None,
        scenarios: list[Scenario] | None = None,
        deadline_s: float = SCENARIO_DEADLINE_S,
    ) -> None:
        self.fake = FakeAsterisk(username=SIM_USERNAME, secret=SIM_SECRET)
        # Its records of what it sent and was sent stay bounded however long it runs.
        self.fake.history_limit = SIM_HISTORY
        self.concurrency = concurrency
        self.mean_gap_s = mean_gap_s
        self.deadline_s = deadline_s
        self.scenarios = simulator_scenarios(self.kind) if scenarios is None else scenarios
        self.log_feed = LogFeed()
        self._random = random.Random(seed)  # noqa: S311 - traffic shape, not security
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.calls_started = 0
        self.calls_failed = 0

    async def start(self) -> tuple[str, int]:
        await self.fake.start()
        return self.fake.ami_address

    def start_traffic(self, daemon: Daemon, agi_port: int) -> None:
        if not self.scenarios:
            log.warning("simulator_idle", reason="no scenario can run on the default configuration")
            return
        self.log_feed.install()
        self._runner = asyncio.create_task(self._traffic(daemon, agi_port), name="simulator")

    async def _traffic(self, daemon: Daemon, agi_port: int) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            await asyncio.sleep(self._random.expovariate(1.0 / self.mean_gap_s))
            await slots.acquire()
            scenario = self._random.choice(self.scenarios)
            self.calls_started += 1
            task = asyncio.create_task(
                self._play(daemon, agi_port, scenario, slots), name=f"sim:{scenario.name}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _play(
        self, daemon: Daemon, agi_port: int, scenario: Scenario, slots: asyncio.Semaphore
    ) -> None:
        try:
            await self.play(daemon, agi_port, scenario)
        finally:
            slots.release()

    async def play(self, daemon: Daemon, agi_port: int, scenario: Scenario) -> bool:
        """Play one scenario as live traffic; whether it went as scripted. Never raises
        (but for cancellation); leaves none of its channels up."""
        pbx = _ScenarioPbx(self.fake, "127.0.0.1", agi_port)
        decisions: list[Decision] = []

        def collect(decision: Decision) -> None:
            if pbx.wants_decision(decision):
                decisions.append(decision)

        daemon.engine.on_decision(collect)
        reason: str | None = None
        log.info("simulated_call", scenario=scenario.name, rule=scenario.rule, title=scenario.title)
        try:
            with self.log_feed.subscribe(pbx.wants_event) as events:
                ctx = LabContext(pbx=pbx, daemon=daemon, decisions=decisions, log_events=events)
                try:
                    async with asyncio.timeout(self.deadline_s):
                        await scenario.run(ctx)
                except TimeoutError:
                    reason = f"still running after its {self.deadline_s:g} s deadline"
                except AssertionError as exc:
                    reason = str(exc) or "AssertionError"
                except Exception as exc:  # noqa: BLE001 - simulated traffic never stops the daemon
                    reason = f"{type(exc).__name__}: {exc}"
        finally:
            daemon.engine.remove_decision_listener(collect)
        hung_up = await self._end_calls(pbx, grace_s=0.0 if reason else LEFTOVER_GRACE_S)
        if reason is not None:
            self.calls_failed += 1
            log.warning(
                "simulated_call_failed",
                scenario=scenario.name,
                rule=scenario.rule,
                reason=reason,
                hung_up=hung_up,
            )
            return False
        # A script may end with its call still up (the caller who made a noise and went on
        # talking): the simulator's parties hang up then, which is no fault of anybody's.
        log.info("simulated_call_ended", scenario=scenario.name, notes=ctx.notes, hung_up=hung_up)
        return True

    async def _end_calls(self, pbx: _ScenarioPbx, *, grace_s: float) -> list[str]:
        """Hang up whatever of the scenario's calls is still up; the channels it was."""
        if grace_s > 0:
            await _until(lambda: not pbx.live_channels(), grace_s)
        left = pbx.live_channels()
        if not left:
            return []
        switch = self.fake.switch
        # The parties hang up (a BYE, normal clearing: no callback is due), as when the
        # call ends; the daemon then ends what it attached to them by itself.
        for ch in left:
            if ch.alive and ch.tech is Tech.PJSIP:
                switch.remote_hangup(ch, 16)
        if not await _until(lambda: not pbx.live_channels(), HELPER_GRACE_S):
            for ch in pbx.live_channels():
                switch.ami_hangup(ch, 16)
        return sorted(ch.name for ch in left)

    async def stop_traffic(self) -> None:
        """No new call, and the scenarios running are cancelled (their calls stay up on the
        switch until it stops: the daemon is stopping, as if in front of a real switch)."""
        if self._runner is not None:
            self._runner.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                *([self._runner] if self._runner else []), *self._tasks, return_exceptions=True
            )
        self.log_feed.uninstall()

    async def stop_switch(self) -> None:
        """Stop the fake switch: after the daemon let go of it (its AMI link and FastAGI
        server closed), so a clean stop looks like one, not like a switch that died."""
        await self.fake.stop()

    async def close(self) -> None:
        await self.stop_traffic()
        await self.stop_switch()

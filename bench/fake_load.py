"""The switch side of the live benchmarks: the project's fake Asterisk in its own process,
generating calls and background traffic on command.

It runs in a separate process so that generating the load does not take CPU from the
daemon being measured (the machine has 2 cores; the daemon gets one to itself as far as the
kernel allows). ``live_bench.py`` starts it and talks to it over stdin/stdout, one JSON
object per line:

    -> {"cmd": "calls", "n": 1000, "per_s": 100}   ramp up to n live calls (talking)
    <- {"live": 1000, "seconds": 4.2}
    -> {"cmd": "trim", "n": 1000, "per_s": 250}    hang up the newest calls down to n
    -> {"cmd": "noise", "rate": 5000}      top the event stream up to rate events/s
    -> {"cmd": "measure", "seconds": 15, "hold_rate": 10, "silent_rate": 3}
    <- {"holds": [...], "silent": [...], "events_per_s": 5012.3}
    -> {"cmd": "stats"} / {"cmd": "quit"}

Live calls talk: the agent and the caller take turns (``PACES``: bursts of 1.5–4 s and
pauses under 2 s, or calmer for the memory phase; no silence is long enough for the
dead-air rule), which is what a tracked call looks like
to the daemon, with talk detection on both legs. Noise is RTCPReceived and VarSet events on
random live channels, spread evenly (every 5 ms) so it is a stream, not bursts.

Measured scenarios (their timings are read on the shared monotonic clock, which the event
loops of both processes use, so the daemon's write times and the switch's truth compare):

- hold: an agent puts a talking caller on hold for ``hold_s``, then resumes;
- silent caller: a new call whose agent greets for 1.5 s, then nobody speaks; the truth for
  the first prompt is the real end of the greeting plus the rule's ``after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pbx_agent.testing import ami_templates as tpl
from pbx_agent.testing.ami_templates import Field, render
from pbx_agent.testing.fake_asterisk import FakeAsterisk, Leg
from pbx_agent.wire.ami import encode_message

USERNAME = "bench"
SECRET = "bench-not-a-secret"  # a loopback-only fake switch
NOISE_TICK_S = 0.005
GREETING_S = 1.5


def detect_margin(threshold_s: float, after_s: float) -> float:
    """How long a silent call lives after the greeting: past the first prompt's instant."""
    return threshold_s + after_s + 2.0


class LoadFake(FakeAsterisk):
    """The fake Asterisk without its in-memory event log (a load test would fill memory)
    and with a count of the events sent."""

    def __init__(self) -> None:
        super().__init__(username=USERNAME, secret=SECRET)
        self.sent_events = 0
        self.watch_stops: set[str] = set()  # channels whose ChannelTalkingStop is timed
        self.stop_emitted: dict[str, float] = {}  # channel -> monotonic time sent

    def _broadcast(self, fields: list[Field]) -> None:
        data = encode_message(fields)
        self.sent_events += 1
        if fields[0][1] == "ChannelTalkingStop":
            channel = next((v for k, v in fields if k == "Channel"), "")
            if channel in self.watch_stops:
                self.stop_emitted[channel] = time.monotonic()
        for client in self._clients.values():
            if client.wants(fields):
                client.send(data)

    async def _write_loop(self, client: Any) -> None:
        """Everything queued for a client in one write: one system call for a batch of
        events instead of one per event, so the switch process keeps up with the rate."""
        writer = client.writer
        queue: asyncio.Queue[bytes | None] = client.outgoing
        try:
            while True:
                batch = [await queue.get()]
                while not queue.empty() and len(batch) < 256:
                    batch.append(queue.get_nowait())
                if batch[-1] is None or writer.is_closing():
                    writer.write(b"".join(b for b in batch if b is not None))
                    return
                if None in batch:
                    writer.write(b"".join(b for b in batch if b is not None))
                    return
                writer.write(b"".join(batch))  # type: ignore[arg-type]
                await asyncio.wait_for(writer.drain(), self.write_timeout_s)
        except (ConnectionError, TimeoutError):
            client.closing = True
            writer.close()


# (speech burst range, pause range) in seconds. "busy": a lively conversation; "calm": the
# memory phase's extra calls, fewer events each so that thousands of them stay within what
# one switch process generates (pauses stay under the 10 s dead-air threshold either way).
PACES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "busy": ((1.5, 4.0), (0.3, 1.5)),
    "calm": ((1.0, 2.0), (5.0, 8.5)),
}


@dataclass
class LiveCall:
    caller: Leg
    agent: Leg
    pace: tuple[tuple[float, float], tuple[float, float]] = PACES["busy"]
    talking: bool = False  # talk detection is on and the conversation runs
    resumed: asyncio.Event = field(default_factory=asyncio.Event)  # clear: hold in progress
    task: asyncio.Task[None] | None = None


class Load:
    def __init__(self, fake: LoadFake, seed: int = 7) -> None:
        self.fake = fake
        self.rng = random.Random(seed)
        self.calls: list[LiveCall] = []
        self.numbers = iter(range(1, 10_000_000))
        self.noise_task: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.failures: list[str] = []

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(repr(task.exception()))

    def mono(self, epoch: float) -> float:
        """A time of the fake's clock on the monotonic clock."""
        return epoch - (self.fake.clock.now() - time.monotonic())

    async def new_call(self, agent_prefix: str) -> tuple[Leg, Leg]:
        n = next(self.numbers)
        caller = await self.fake.inbound_call(caller=f"7916{n:07d}", caller_name="Bench")
        await caller.answer()
        agent = await caller.connect_agent(endpoint=f"agent-{agent_prefix}{n}", queue="support")
        return caller, agent

    async def until_detected(self, call: LiveCall | tuple[Leg, Leg], timeout_s: float) -> bool:
        caller, agent = (call.caller, call.agent) if isinstance(call, LiveCall) else call
        deadline = time.monotonic() + timeout_s
        while not (caller.talk_detection and agent.talk_detection):
            if time.monotonic() > deadline or not caller.alive:
                return False
            await asyncio.sleep(0.05)
        return True

    # -- live calls -----------------------------------------------------------------------

    async def ramp(self, n: int, per_s: float, pace: str = "busy") -> dict[str, Any]:
        """New calls at ``per_s`` a second until ``n`` are live (a busy hour's arrival rate,
        not a burst: a switch does not start a thousand calls at once). ``pace``: how fast
        their parties take turns (``PACES``)."""
        started = time.monotonic()
        first = len(self.calls)
        while len(self.calls) < n:
            due = started + (len(self.calls) - first) / per_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            caller, agent = await self.new_call("")
            call = LiveCall(caller, agent, pace=PACES[pace])
            call.resumed.set()
            call.task = self._spawn(self.converse(call), "conversation")
            self.calls.append(call)
        created_s = time.monotonic() - started
        # Wait for the daemon to switch talk detection on everywhere (its Setvar actions);
        # give up when no call has started talking for 5 s.
        talking, last_progress = -1, time.monotonic()
        while talking < n and time.monotonic() - last_progress < 3.0:
            now_talking = sum(c.talking for c in self.calls)
            if now_talking != talking:
                talking, last_progress = now_talking, time.monotonic()
            await asyncio.sleep(0.1)
        return {
            "live": sum(c.caller.alive for c in self.calls),
            "talking": sum(c.talking for c in self.calls),
            "create_s": round(created_s, 2),
            "seconds": round(time.monotonic() - started, 2),
        }

    async def trim(self, n: int, per_s: float) -> dict[str, Any]:
        """Hang up the newest calls (the customer leaves) until ``n`` are live."""
        started = time.monotonic()
        ended = 0
        while len(self.calls) > n:
            call = self.calls.pop()
            if call.task is not None:
                call.task.cancel()
            if call.caller.alive:
                await call.caller.hangup()
            ended += 1
            due = started + ended / per_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        return {
            "live": sum(c.caller.alive for c in self.calls),
            "ended": ended,
            "seconds": round(time.monotonic() - started, 2),
        }

    async def converse(self, call: LiveCall) -> None:
        if not await self.until_detected(call, 120.0):
            return
        call.talking = True
        rng = random.Random(self.rng.random())
        await asyncio.sleep(rng.uniform(0, 2))  # calls do not all start in step
        # The greeting and a prompt answer, whatever the pace: a caller who says nothing for
        # 2.5 s after the greeting is a silent caller, whom the daemon prompts and drops.
        await call.agent.talk(rng.uniform(1.5, 3.0))
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        await call.caller.talk(rng.uniform(1.0, 2.0))
        await asyncio.sleep(rng.uniform(*call.pace[1]))
        while call.caller.alive:
            for leg in (call.agent, call.caller):
                await call.resumed.wait()  # while the agent holds the caller nobody talks
                await leg.talk(rng.uniform(*call.pace[0]))
                await asyncio.sleep(rng.uniform(*call.pace[1]))

    # -- noise ----------------------------------------------------------------------------

    def start_noise(self, rate: float) -> None:
        if self.noise_task is not None:
            self.noise_task.cancel()
        self.noise_task = self._spawn(self.noise(rate), "noise") if rate > 0 else None

    async def noise(self, rate: float) -> None:
        """Top the stream up to ``rate`` events/s, counting every event the fake sends."""
        switch = self.fake.switch
        started = time.monotonic()
        base = self.fake.sent_events
        while True:
            await asyncio.sleep(NOISE_TICK_S)
            due = int((time.monotonic() - started) * rate) - (self.fake.sent_events - base)
            for _ in range(min(max(due, 0), 500)):
                call = self.calls[self.rng.randrange(len(self.calls))] if self.calls else None
                if call is None or not call.caller.alive:
                    continue
                ch = (call.caller if self.rng.random() < 0.5 else call.agent).channel
                if self.rng.random() < 0.55:
                    values = {"To": "127.0.0.1:10169", "From": "127.0.0.1:4100"}
                    values.update(dict(tpl.RTCP_RR_VALUES))
                    switch.emit(
                        render("RTCPReceived", channels={"{Chan}": ch.snapshot()}, values=values)
                    )
                else:
                    switch.varset(ch, "RTPAUDIOQOSJITTER", f"{self.rng.random():.6f}", store=False)

    # -- measured scenarios ---------------------------------------------------------------

    async def hold_once(self, hold_s: float, out: list[dict[str, Any]]) -> None:
        candidates = [c for c in self.calls if c.talking and c.resumed.is_set()]
        if not candidates:
            return
        call = self.rng.choice(candidates)
        call.resumed.clear()
        try:
            await asyncio.sleep(0.3)  # let the current burst end; the agent presses hold
            at = time.monotonic()
            await call.caller.hold(by=call.agent)
            out.append({"caller": call.caller.name, "agent": call.agent.name, "at": at})
            await asyncio.sleep(hold_s)
            await call.caller.unhold(by=call.agent)
        finally:
            call.resumed.set()

    async def silent_once(self, rule_after_s: float, out: list[dict[str, Any]]) -> None:
        caller, agent = await self.new_call("s")
        if not await self.until_detected((caller, agent), 10.0):
            out.append({"caller": caller.name, "error": "talk detection never set"})
            return
        self.fake.watch_stops.add(agent.name)
        speech_end = self.fake.clock.now() + GREETING_S  # as the switch computes it
        detect = agent.channel.talk_detect
        threshold_s = detect.silence_ms / 1000 if detect is not None else 0.0
        await agent.talk(GREETING_S)
        # The caller stays silent; the daemon's first prompt is due after_s after the real
        # end of the greeting. Wait past it (the daemon's write is timed on its side), then
        # leave: the rest of the procedure is not measured.
        await asyncio.sleep(detect_margin(threshold_s, rule_after_s))
        end_mono = self.mono(speech_end)
        out.append(
            {
                "caller": caller.name,
                "agent": agent.name,
                "speech_end": end_mono,
                "expected_prompt": end_mono + rule_after_s,
                "talk_stop_due": end_mono + threshold_s,
                "talk_stop_sent": self.fake.stop_emitted.pop(agent.name, None),
            }
        )
        self.fake.watch_stops.discard(agent.name)
        if caller.alive:
            await caller.hangup()

    async def measure(
        self, seconds: float, hold_rate: float, hold_s: float, silent_rate: float, after_s: float
    ) -> dict[str, Any]:
        holds: list[dict[str, Any]] = []
        silent: list[dict[str, Any]] = []
        sent_before = self.fake.sent_events
        started = time.monotonic()
        cpu_before = time.process_time()
        scenario_tasks: list[asyncio.Task[Any]] = []

        async def every(rate: float, make: Any) -> None:
            if rate <= 0:
                return
            next_at = time.monotonic()
            while time.monotonic() - started < seconds:
                next_at += self.rng.expovariate(rate)
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                scenario_tasks.append(self._spawn(make(), "scenario"))

        await asyncio.gather(
            every(hold_rate, lambda: self.hold_once(hold_s, holds)),
            every(silent_rate, lambda: self.silent_once(after_s, silent)),
        )
        elapsed = time.monotonic() - started
        cpu_share = (time.process_time() - cpu_before) / elapsed
        sent = self.fake.sent_events - sent_before
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*scenario_tasks, return_exceptions=True), after_s + 20
            )
        return {
            "holds": holds,
            "silent": silent,
            "seconds": round(elapsed, 2),
            "events_per_s": round(sent / elapsed, 1),
            "cpu_share": round(cpu_share, 3),
            "live_calls": sum(c.caller.alive for c in self.calls),
            "failures": self.failures[-5:],
        }

    def stats(self) -> dict[str, Any]:
        return {
            "cpu_s": round(time.process_time(), 2),
            "live": sum(c.caller.alive for c in self.calls),
            "talking": sum(c.talking for c in self.calls),
            "channels": len(self.fake.switch.channels),
            "sent_events": self.fake.sent_events,
            "fake_errors": [repr(e) for e in self.fake.errors[-5:]],
            "failures": self.failures[-5:],
        }

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def serve() -> None:
    # A daemon that drops the connection (its watchdog) leaves writes failing: not news.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    fake = LoadFake()
    await fake.start()
    load = Load(fake)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    reply({"port": fake.ami_address[1], "username": USERNAME, "secret": SECRET})
    try:
        while line := await reader.readline():
            command = json.loads(line)
            match command["cmd"]:
                case "calls":
                    reply(
                        await load.ramp(
                            int(command["n"]),
                            float(command.get("per_s", 100)),
                            str(command.get("pace", "busy")),
                        )
                    )
                case "trim":
                    reply(await load.trim(int(command["n"]), float(command.get("per_s", 250))))
                case "noise":
                    load.start_noise(float(command["rate"]))
                    reply({"noise": command["rate"]})
                case "measure":
                    reply(
                        await load.measure(
                            float(command["seconds"]),
                            float(command.get("hold_rate", 0)),
                            float(command.get("hold_s", 2.0)),
                            float(command.get("silent_rate", 0)),
                            float(command.get("after_s", 2.5)),
                        )
                    )
                case "stats":
                    reply(load.stats())
                case "quit":
                    break
    finally:
        await load.close()
        await fake.stop()


if __name__ == "__main__":
    asyncio.run(serve())

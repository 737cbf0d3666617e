"""AMI events parsed and dispatched per second, on one core, side by side with panoramisk 1.4.

The same bytes (``ami_corpus.build_stream``: realistic events from the Asterisk 22
transcripts, many calls interleaved, cut into 4 KiB reads) go through:

- ``codec``: the project's sans-IO decoder alone (``AmiDecoder.feed`` / ``next_message``);
- ``daemon``: the daemon's whole path for an event: the decoder, the AMI client's routing
  (``AmiClient._route``, with the metrics wrapper the daemon installs), the Asterisk
  translator, ``Engine.handle`` with every policy of the default configuration, the call
  model, the metrics listeners and the JSON log lines (rendered, written to /dev/null). A
  command a policy issued would run through an executor that does no I/O, but on this corpus
  none does (its holds are decided ``hold_not_announced``): this is the event path, the
  command path is ``live_bench.py``'s; the service commands (facts: every call's record) go
  to handlers that accept them and do nothing;
- ``panoramisk``: ``AMIProtocol.data_received`` with its ``Message`` parsing and its
  ``Manager.dispatch`` to one no-op callback registered for every event.

Each variant runs inside an asyncio loop and yields to it after every read, as a socket
reader does. The process is pinned to one CPU and the rates are events per CPU second of
the process (``time.process_time``), so time spent descheduled by other work on a shared
machine does not count against either side; wall time is recorded beside it. Rounds
alternate the variants (codec, daemon, panoramisk, codec, ...) so the ratio of each round
compares runs made moments apart; the figures are the medians.

    .venv/bin/python bench/parse_bench.py [--events 100000] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from ami_corpus import build_stream, chunks
from common import at_least, median, null_stream, pin_to_one_core, write_json

from pbx_agent.clock import ManualClock
from pbx_agent.config import Config
from pbx_agent.daemon import build_policies, role_rules
from pbx_agent.engine import Engine
from pbx_agent.logging import configure_logging
from pbx_agent.metrics import Metrics
from pbx_agent.model.calls import Call, CallModel
from pbx_agent.model.commands import SERVICE_COMMANDS, PbxCommand
from pbx_agent.pbx.ami_client import AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions
from pbx_agent.wire.ami import AmiBanner, AmiDecoder


class NullExecutor:
    """Accepts every command without I/O: the benchmark measures dispatch, not the PBX."""

    def __init__(self) -> None:
        self.executed = 0

    async def execute(self, command: PbxCommand, call: Call) -> str:
        del command, call
        self.executed += 1
        return "benchmark"


async def run_codec(reads: list[bytes]) -> int:
    decoder = AmiDecoder(expect_banner=False)
    count = 0
    for data in reads:
        decoder.feed(data)
        while (message := decoder.next_message()) is not None:
            if not isinstance(message, AmiBanner):
                count += 1
        await asyncio.sleep(0)
    return count


async def accept_service_command(command: object, call: Call | None) -> None:
    """The services' side of the event path (the facts sink only queues its item); their
    store writes happen later, off the event path, and are not measured here."""
    del command, call


def build_daemon_path() -> tuple[AmiDecoder, AsteriskAdapter, Engine, NullExecutor]:
    """The objects the composition root wires for Asterisk, minus the sockets."""
    config = Config()
    rules = role_rules(config)
    executor = NullExecutor()
    engine = Engine(
        clock=ManualClock(),
        policies=build_policies(config),
        executor=executor,
        model=CallModel(rules),
        standards=config.standards_for,
    )
    for command_type in SERVICE_COMMANDS:
        engine.register_service(command_type, accept_service_command)
    metrics = Metrics()
    metrics.attach(engine)
    adapter = AsteriskAdapter(
        AmiSettings(host="127.0.0.1", port=5038, username="bench", secret="bench"),
        AsteriskOptions(
            sounds=lambda key: f"pbx-agent/ru/{key}",
            talk_detect_silence_ms=config.asterisk.talk_detect_silence_ms
            if config.asterisk
            else 300,
            watched_variables=rules.watched_variables() | frozenset({"PBXAGENT_QUEUE"}),
        ),
        handle_event=engine.handle,
    )
    metrics.instrument_ami(adapter.client, adapter.name)
    return AmiDecoder(expect_banner=False), adapter, engine, executor


async def run_daemon(reads: list[bytes]) -> tuple[int, dict[str, int]]:
    decoder, adapter, engine, executor = build_daemon_path()
    route = adapter.client._route  # noqa: SLF001 - the read loop's own dispatch step
    count = 0
    peak_calls = 0
    for data in reads:
        decoder.feed(data)
        while (message := decoder.next_message()) is not None:
            if not isinstance(message, AmiBanner):
                route(message)
                count += 1
        peak_calls = max(peak_calls, engine.live_calls)
        await asyncio.sleep(0)
    await engine.drain()
    return count, {"peak_live_calls": peak_calls, "commands_executed": executor.executed}


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


async def run_panoramisk(reads: list[bytes]) -> int:
    from panoramisk.ami_protocol import AMIProtocol  # noqa: PLC0415 - a test dependency
    from panoramisk.manager import Manager  # noqa: PLC0415

    manager = Manager(loop=asyncio.get_running_loop())
    count = 0

    def on_event(_manager: Any, _event: Any) -> None:
        nonlocal count
        count += 1

    manager.register_event("*", on_event)
    protocol = AMIProtocol()
    protocol.connection_made(_NullTransport())
    protocol.factory = manager
    protocol.encoding = manager.config["encoding"]  # what Manager.connection_made sets
    for data in reads:
        protocol.data_received(data)
        await asyncio.sleep(0)
    return count


VARIANTS = ("codec", "daemon", "panoramisk")


async def timed(variant: str, reads: list[bytes]) -> tuple[float, float, int, dict[str, int]]:
    """CPU seconds and wall seconds of one variant over ``reads``."""
    gc.collect()
    extra: dict[str, int] = {}
    wall = time.perf_counter()
    started = time.process_time()
    if variant == "codec":
        count = await run_codec(reads)
    elif variant == "daemon":
        count, extra = await run_daemon(reads)
    else:
        count = await run_panoramisk(reads)
    return time.process_time() - started, time.perf_counter() - wall, count, extra


async def run_stage(reads: list[bytes], stage: str) -> int:
    """The daemon path cut short after ``stage``: ``route`` (the client's routing to a no-op
    handler), ``metrics`` (plus the metrics wrapper), ``translate`` (plus the Asterisk
    translator and the adapter's bookkeeping, the engine left out)."""
    decoder, adapter, _engine, _executor = build_daemon_path()
    client = adapter.client
    if stage == "route":
        client.on_event = lambda _message: None
    elif stage == "metrics":
        client.on_event = lambda _message: None
        Metrics().instrument_ami(client, "bench")
    elif stage == "translate":
        adapter._handle = lambda _event: None  # noqa: SLF001 - cut the engine off
    route = client._route  # noqa: SLF001
    count = 0
    for data in reads:
        decoder.feed(data)
        while (message := decoder.next_message()) is not None:
            if not isinstance(message, AmiBanner):
                route(message)
                count += 1
        await asyncio.sleep(0)
    return count


STAGES = ("codec", "route", "metrics", "translate", "daemon")


def breakdown(reads: list[bytes], rounds: int = 3) -> dict[str, float]:
    """Microseconds per event added by each stage of the daemon path (medians of rounds)."""
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for _ in range(rounds):
        for stage in STAGES:
            gc.collect()
            started = time.process_time()
            if stage == "codec":
                count = asyncio.run(run_codec(reads))
            elif stage == "daemon":
                count, _ = asyncio.run(run_daemon(reads))
            else:
                count = asyncio.run(run_stage(reads, stage))
            per_stage[stage].append((time.process_time() - started) / count * 1e6)
    totals = {stage: median(values) for stage, values in per_stage.items()}
    out: dict[str, float] = {}
    previous = 0.0
    for stage in STAGES:
        out[f"{stage}_us"] = round(totals[stage] - previous, 2)
        previous = totals[stage]
    out["total_us"] = round(totals["daemon"], 2)
    return out


def profile_daemon(reads: list[bytes], top: int = 25) -> str:
    """cProfile of the daemon path, top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run_daemon(reads))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def run(events: int, rounds: int, *, profile: bool = False) -> dict[str, Any]:
    configure_logging(fmt="json", level="info", stream=null_stream())
    cpu = pin_to_one_core()
    stream, copies = build_stream(events)
    reads = chunks(stream)
    per_round: list[dict[str, Any]] = []
    extra: dict[str, int] = {}
    for _ in range(rounds):
        row: dict[str, Any] = {}
        for variant in VARIANTS:
            seconds, wall, count, more = asyncio.run(timed(variant, reads))
            extra.update(more)
            row[variant] = {"cpu_s": round(seconds, 4), "wall_s": round(wall, 4), "events": count}
            row[variant]["events_per_s"] = round(count / seconds)
        row["codec_vs_panoramisk"] = round(
            row["codec"]["events_per_s"] / row["panoramisk"]["events_per_s"], 2
        )
        row["daemon_vs_panoramisk"] = round(
            row["daemon"]["events_per_s"] / row["panoramisk"]["events_per_s"], 2
        )
        per_round.append(row)
    result: dict[str, Any] = {
        "events": events,
        "bytes": len(stream),
        "reads": len(reads),
        "read_size": 4096,
        "pinned_cpu": cpu,
        "transcript_copies": sum(copies.values()),
        "rounds": per_round,
        "daemon_path": extra,
    }
    for variant in VARIANTS:
        rates = [r[variant]["events_per_s"] for r in per_round]
        result[f"{variant}_events_per_s"] = round(median(rates))
    result["codec_vs_panoramisk"] = median(r["codec_vs_panoramisk"] for r in per_round)
    result["daemon_vs_panoramisk"] = median(r["daemon_vs_panoramisk"] for r in per_round)
    result["goal"] = ">= 2x panoramisk"
    if profile:
        # The causes, measured: what each stage adds per event, and where the time goes.
        result["breakdown_us_per_event"] = breakdown(reads)
        result["daemon_profile"] = profile_daemon(reads)
    return result


def report(result: dict[str, Any]) -> None:
    print(
        f"AMI parse+dispatch: {result['events']:,} events, {result['bytes'] / 1e6:.1f} MB "
        f"in {result['reads']:,} reads of 4 KiB, {len(result['rounds'])} rounds, "
        f"CPU {result['pinned_cpu']}"
    )
    for variant in VARIANTS:
        print(f"   {variant:<11} {result[f'{variant}_events_per_s']:>10,} events/s (median)")
    print(
        f"   codec  / panoramisk: {result['codec_vs_panoramisk']:.2f}x   "
        f"daemon / panoramisk: {result['daemon_vs_panoramisk']:.2f}x   (goal >= 2x)"
    )
    print(f"   daemon path: {result['daemon_path']}")
    if "breakdown_us_per_event" in result:
        parts = ", ".join(f"{k} {v}" for k, v in result["breakdown_us_per_event"].items())
        print(f"   microseconds per event, by stage: {parts}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=at_least(1), default=100_000)
    parser.add_argument("--rounds", type=at_least(1), default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile the daemon path")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.events, args.rounds, profile=args.profile)
    report(result)
    if args.profile:
        print(result["daemon_profile"])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Run lab scenarios: the daemon, unchanged, against a fake PBX on loopback.

For each scenario: a fresh fake switch, a fresh SQLite store in a temporary folder, the
daemon built by the composition root from a lab configuration (the site's config plus the
scenario's overrides) and attached over real TCP, exactly as in production. The scenario
script drives the switch; the daemon's structured log is printed as it happens; the
decisions and log events are checked against the scenario's expectations; a summary table
ends the run.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, TextIO

import structlog

from pbx_agent.clock import LoopClock
from pbx_agent.config import Config
from pbx_agent.config.settings import deep_merge
from pbx_agent.daemon import Daemon
from pbx_agent.engine import Decision
from pbx_agent.lab.drivers import AsteriskLabPbx, LabPbx
from pbx_agent.lab.freeswitch_driver import FreeswitchLabPbx
from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.pbx.asterisk_hold import MUSIC_STEM
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch

log = structlog.get_logger("pbx_agent.lab")


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    passed: bool
    decisions: int
    virtual_s: float
    real_s: float
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _lab_config(
    base: Mapping[str, Any], scenario: Scenario, ami: tuple[str, int], folder: Path
) -> Config:
    host, port = ami
    lab: dict[str, Any] = {
        "pbx": {"kind": "asterisk"},
        "asterisk": {
            "ami_host": host,
            "ami_port": port,
            "username": "lab",
            "secret": "not-a-real-secret",
            "fastagi_bind": f"127.0.0.1:{_free_port()}",
            "audiosocket_bind": f"127.0.0.1:{_free_port()}",
            # Deadlines are in the lab's virtual seconds: at 20x, the production 5 s would
            # be 250 real ms, which a loaded machine can miss and the watchdog would then
            # cut a healthy link.
            "ping_interval_s": 150,
            "ping_timeout_s": 120,
            "action_timeout_s": 120,
            "connect_timeout_s": 120,
        },
        "store": {"url": f"sqlite+aiosqlite:///{folder / 'lab.sqlite3'}"},
        # The local copy of the hold music the fake plays (_install_hold_music), as a site has.
        "prompts": {"sounds_dir": str(folder)},
        "metrics": {"enabled": False},
        # Once per virtual second would be twenty store transactions a real second at 20x,
        # enough to slow the whole lab down; callback timing here is tens of seconds.
        "scheduler": {"poll_interval_s": 5},
    }
    merged = deep_merge(deep_merge(dict(base), lab), scenario.config)
    return Config.model_validate(merged, context={})


LAB_HOLD_MUSIC_S = 20.0


def _install_hold_music(fake: FakeAsterisk, config: Config) -> None:
    """The hold music as a site has it: a file beside the daemon (silence, 8 kHz 16-bit mono)
    and the same sound, of the same length, on the switch."""
    path = config.prompts.sounds_dir / f"{MUSIC_STEM}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * int(8000 * LAB_HOLD_MUSIC_S))
    sound = f"{config.prompts.pbx_prefix.asterisk}{MUSIC_STEM}"
    fake.switch.sound_lengths.setdefault(sound, LAB_HOLD_MUSIC_S)


def _freeswitch_lab_config(
    base: Mapping[str, Any], scenario: Scenario, esl: tuple[str, int], folder: Path
) -> Config:
    host, port = esl
    lab: dict[str, Any] = {
        "pbx": {"kind": "freeswitch"},
        "freeswitch": {
            "esl_host": host,
            "esl_port": port,
            "password": FREESWITCH_LAB_PASSWORD,
            "outbound_bind": f"127.0.0.1:{_free_port()}",
            # Virtual seconds, as for Asterisk above.
            "action_timeout_s": 120,
            "connect_timeout_s": 120,
            "heartbeat_timeout_s": 600,
            "ping_interval_s": 150,
            "ping_timeout_s": 120,
            # The fake's agents are sofia/internal/agent-NNNN.
        },
        "agents": {"endpoint_patterns": ["sofia/*/agent-*"]},
        "store": {"url": f"sqlite+aiosqlite:///{folder / 'lab.sqlite3'}"},
        "metrics": {"enabled": False},
        # Once per virtual second would be twenty store transactions a real second at 20x,
        # enough to slow the whole lab down; callback timing here is tens of seconds.
        "scheduler": {"poll_interval_s": 5},
    }
    merged = deep_merge(deep_merge(dict(base), lab), scenario.config)
    return Config.model_validate(merged, context={})


FREESWITCH_LAB_PASSWORD = "not-a-real-password"  # noqa: S105 - the lab's fake switch
# Scenarios name the Asterisk adapter's log events; these are the FreeSWITCH adapter's.
FREESWITCH_EVENT_NAMES = {
    "ami_connected": "esl_connected",
    "ami_disconnected": "esl_disconnected",
    "ami_protocol_error": "esl_protocol_error",
}


def _start_epoch(config: Config, at_local_time: str | None) -> float | None:
    if at_local_time is None:
        return None
    hour, minute = (int(part) for part in at_local_time.split(":"))
    zone = config.site.zone
    today = datetime.now(zone).date()
    local = datetime.combine(today, dtime(hour, minute), tzinfo=zone)
    if local < datetime.now(zone) - timedelta(hours=12):
        local += timedelta(days=1)
    return local.timestamp()


async def run_scenario(
    scenario: Scenario,
    *,
    base_config: Mapping[str, Any],
    events: list[dict[str, Any]],
    switch: str = "asterisk",
) -> ScenarioResult:
    loop = asyncio.get_running_loop()
    base_speed = getattr(loop, "speed", None)
    if base_speed is not None and scenario.speed_factor != 1.0:
        loop.set_speed(base_speed * scenario.speed_factor)  # type: ignore[attr-defined]
    try:
        return await _run_scenario(scenario, base_config=base_config, events=events, switch=switch)
    finally:
        if base_speed is not None and scenario.speed_factor != 1.0:
            loop.set_speed(base_speed)  # type: ignore[attr-defined]


async def _run_scenario(
    scenario: Scenario,
    *,
    base_config: Mapping[str, Any],
    events: list[dict[str, Any]],
    switch: str,
) -> ScenarioResult:
    loop = asyncio.get_running_loop()
    real0, virtual0 = time.monotonic(), loop.time()
    first_event = len(events)
    decisions: list[Decision] = []
    log.info(
        "lab_scenario_started", scenario=scenario.name, rule=scenario.rule, title=scenario.title
    )
    with tempfile.TemporaryDirectory(prefix="pbx-agent-lab-") as tmp:
        if switch == "freeswitch":
            problems, notes = await _run_on_freeswitch(
                scenario, base_config, Path(tmp), decisions, events
            )
        else:
            async with FakeAsterisk() as fake:
                config = _lab_config(base_config, scenario, fake.ami_address, Path(tmp))
                _install_hold_music(fake, config)

                def asterisk(daemon: Daemon) -> LabPbx:
                    assert daemon.fastagi is not None
                    return AsteriskLabPbx(fake, "127.0.0.1", daemon.fastagi.port)

                problems, notes = await _play(scenario, config, asterisk, decisions, events)
    problems.extend(_check(scenario, decisions, events[first_event:], switch))
    result = ScenarioResult(
        scenario=scenario,
        passed=not problems,
        decisions=len(decisions),
        virtual_s=loop.time() - virtual0,
        real_s=time.monotonic() - real0,
        problems=problems,
        notes=notes,
    )
    log.info(
        "lab_scenario_finished",
        scenario=scenario.name,
        passed=result.passed,
        decisions=result.decisions,
        problems=problems,
    )
    return result


async def _run_on_freeswitch(
    scenario: Scenario,
    base_config: Mapping[str, Any],
    folder: Path,
    decisions: list[Decision],
    events: list[dict[str, Any]],
) -> tuple[list[str], list[str]]:
    """One scenario against the fake FreeSWITCH; the problems and the notes."""
    async with FakeFreeSwitch(FREESWITCH_LAB_PASSWORD, playback_s=1.0) as fake:
        config = _freeswitch_lab_config(base_config, scenario, ("127.0.0.1", fake.port), folder)

        def freeswitch(daemon: Daemon) -> LabPbx:
            assert daemon.esl_outbound is not None
            return FreeswitchLabPbx(fake, "127.0.0.1", daemon.esl_outbound.port)

        return await _play(scenario, config, freeswitch, decisions, events)


async def _play(
    scenario: Scenario,
    config: Config,
    make_pbx: Callable[[Daemon], LabPbx],
    decisions: list[Decision],
    events: list[dict[str, Any]],
) -> tuple[list[str], list[str]]:
    """Start a daemon on ``config`` at the scenario's local time, play the scenario through
    the switch ``make_pbx`` drives, stop the daemon; the problems and the notes."""
    problems: list[str] = []
    notes: list[str] = []
    clock = LoopClock(start_epoch=_start_epoch(config, scenario.at_local_time))
    daemon = Daemon(config, clock=clock)
    try:
        await daemon.start()
        daemon.engine.on_decision(decisions.append)
        ctx = LabContext(
            pbx=make_pbx(daemon), daemon=daemon, decisions=decisions, log_events=events
        )
        await scenario.run(ctx)
        await asyncio.sleep(0.5)  # let the last commands and outcomes be logged
        await daemon.engine.drain()
        notes = ctx.notes
    except AssertionError as exc:
        problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - a broken scenario is reported, the lab goes on
        problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        await daemon.stop()
    return problems, notes


def _check(
    scenario: Scenario,
    decisions: Sequence[Decision],
    events: Sequence[Mapping[str, Any]],
    switch: str = "asterisk",
) -> list[str]:
    problems: list[str] = []
    pairs = [(d.policy, d.action) for d in decisions]
    position = 0
    for wanted in scenario.expect:
        try:
            position = pairs.index(wanted, position) + 1
        except ValueError:
            seen = ", ".join(f"{p}/{a}" for p, a in pairs) or "none"
            problems.append(
                f"expected decision {wanted[0]}/{wanted[1]} (in order); decisions were: {seen}"
            )
            break
    problems.extend(
        f"decision {forbidden[0]}/{forbidden[1]} must not happen"
        for forbidden in scenario.forbid
        if forbidden in pairs
    )
    names = {event.get("event") for event in events}
    renamed = FREESWITCH_EVENT_NAMES if switch == "freeswitch" else {}
    problems.extend(
        f"expected log event {renamed.get(name, name)!r}"
        for name in scenario.expect_events
        if renamed.get(name, name) not in names
    )
    return problems


def print_summary(results: Sequence[ScenarioResult], out: TextIO) -> None:
    headers = ("scenario", "rule", "result", "decisions", "virtual s", "real s")
    rows = [
        (
            r.scenario.name,
            r.scenario.rule,
            "PASS" if r.passed else "FAIL",
            str(r.decisions),
            f"{r.virtual_s:.1f}",
            f"{r.real_s:.1f}",
        )
        for r in results
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(headers)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out.write("\n" + line + "\n" + "  ".join("-" * w for w in widths) + "\n")
    out.writelines(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + "\n" for row in rows
    )
    for result in results:
        out.writelines(f"  {result.scenario.name}: {problem}\n" for problem in result.problems)
    passed = sum(r.passed for r in results)
    out.write(f"\n{passed}/{len(results)} scenarios passed\n")


async def run_lab(
    scenarios: Sequence[Scenario],
    *,
    base_config: Mapping[str, Any],
    events: list[dict[str, Any]],
    out: TextIO = sys.stdout,
    switch: str = "asterisk",
) -> list[ScenarioResult]:
    results = [
        await run_scenario(s, base_config=base_config, events=events, switch=switch)
        for s in scenarios
    ]
    print_summary(results, out)
    return results

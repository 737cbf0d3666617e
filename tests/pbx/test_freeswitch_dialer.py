"""Callbacks on FreeSWITCH: the dialer, the daemon's machine detection over talk events and
avmd, and the verdict applied on the switch (fake FreeSWITCH over loopback TCP, with the
shipped dialplan's callback extensions imitated by the lab driver)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from pbx_agent.amd.params import DetectorParams, VerdictKind
from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.lab.freeswitch_driver import FreeswitchLabPbx
from pbx_agent.model import events as ev
from pbx_agent.pbx.esl_client import EslSettings
from pbx_agent.pbx.freeswitch import FreeswitchAdapter, FreeswitchOptions
from pbx_agent.pbx.freeswitch_dialer import FreeswitchDetection, FreeswitchDialer
from pbx_agent.services.callbacks import CallbackDial, CallbackNotPlacedError
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch

NUMBER = "79161234567"


@dataclass
class Sink:
    """Records what the callback service would be told."""

    outcomes: list[tuple[str, str]] = field(default_factory=list)
    verdicts: list[tuple[str, str, str]] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # both, in arrival order
    failing: set[str] = field(default_factory=set)  # request ids whose outcome raises

    async def on_originate_outcome(
        self,
        request_id: str,
        outcome: str,
        *,
        cause: int | None = None,
        cause_text: str = "",
        tech_cause: str = "",
    ) -> object:
        if request_id in self.failing:
            msg = "the store is down"
            raise RuntimeError(msg)
        self.outcomes.append((request_id, outcome))
        self.seen.append(("outcome", request_id, outcome))
        return None

    async def on_machine_verdict(self, request_id: str, verdict: str, *, cause: str = "") -> object:
        self.verdicts.append((request_id, verdict, cause))
        self.seen.append(("verdict", request_id, f"{verdict}/{cause}"))
        return None


@dataclass
class Rig:
    fs: FakeFreeSwitch
    lab: FreeswitchLabPbx
    adapter: FreeswitchAdapter
    dialer: FreeswitchDialer
    sink: Sink

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}")

    def api(self) -> list[str]:
        return [c.args for c in self.fs.commands_for("api")]


def dial(request_id: str, *, detect: bool = True) -> CallbackDial:
    return CallbackDial(
        request_id=request_id,
        job_id=1,
        attempt_no=1,
        number=f"+{NUMBER}",
        ring_time_s=40,
        target="support",
        detect_machine=detect,
    )


@contextlib.asynccontextmanager
async def rig(
    *, connect: bool = True, greeting: str | None = None, connect_timeout_s: float = 5.0
) -> AsyncIterator[Rig]:
    async with FakeFreeSwitch(playback_s=1.0) as fs:
        clock = LoopClock()
        engine = Engine(clock=clock, policies=[])
        adapter = FreeswitchAdapter(
            EslSettings(
                port=fs.port,
                password="ClueCon",
                connect_timeout_s=connect_timeout_s,
                reconnect_initial_s=0.05,
                reconnect_max_s=0.2,
            ),
            FreeswitchOptions(sounds=lambda key: f"{key}.wav"),
            handle_event=engine.handle,
            clock=clock,
        )
        engine.executor = adapter
        detection = FreeswitchDetection(params=DetectorParams(), deadline_ms=6000)
        dialer = FreeswitchDialer(detection, greeting=greeting)
        sink = Sink()
        dialer.report_to(sink)
        engine.subscribe((ev.OriginateOutcome, ev.MachineDetected), dialer.on_event)
        await dialer.start()
        if connect:
            await adapter.start()
            dialer.attach(adapter)
        lab = FreeswitchLabPbx(fs, "127.0.0.1", 1)
        try:
            yield Rig(fs, lab, adapter, dialer, sink)
        finally:
            await dialer.close()
            await engine.close()
            await adapter.close()


async def test_a_person_answering_is_human_and_goes_to_the_queue() -> None:
    """ "Алло?" then silence: HUMAN (the detector's answer-then-silence), transferred to
    connect."""
    request = "5b8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a01"
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="human")
        await r.dialer.place_callback(dial(request))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.outcomes == [(request, "answered")]
        assert r.sink.verdicts[0][:2] == (request, "human")
        assert r.sink.verdicts[0][2] == "answer-then-silence"
        await r.until(lambda: any("uuid_transfer" in line for line in r.api()), "the transfer")
        assert f"uuid_transfer {request} pbxagent_callback_connect XML default" in r.api()


async def test_a_long_greeting_is_a_machine_and_is_hung_up() -> None:
    """A 4.5 s greeting: MACHINE (long-greeting), the leg killed from our side (R6)."""
    request = "5b8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a02"
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        await r.dialer.place_callback(dial(request))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1:] == ("machine", "long-greeting")
        await r.until(lambda: r.fs.channel(request) is None, "the hang-up")
        assert f"uuid_kill {request} NORMAL_CLEARING" in r.api()


async def test_without_detection_the_callee_goes_straight_to_the_queue() -> None:
    """detect_machine off: originated into the connect extension, no verdict awaited."""
    request = "5b8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a03"
    async with rig() as r:
        await r.dialer.place_callback(dial(request, detect=False))
        await r.until(lambda: bool(r.sink.outcomes), "the outcome")
        assert "pbxagent_callback_connect" in r.fs.commands_for("bgapi")[-1].args
        await asyncio.sleep(0.2)
        assert r.sink.verdicts == []


async def test_an_answer_while_the_esl_link_is_down_is_taken_from_the_resync() -> None:
    """The link drops while the attempt rings and the customer answers meanwhile: its
    BACKGROUND_JOB (``+OK``) is lost, but the rows after the reconnect show the leg
    answered, so the attempt is answered (not given up as unknown and dialled again)."""
    request = "5b8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a07"
    async with rig(connect_timeout_s=0.3) as r:
        r.fs.ring_s = 0.5
        await r.dialer.place_callback(dial(request, detect=False))
        await r.until(lambda: request in r.adapter.translator.legs, "the ringing leg")
        r.fs.freeze()
        r.fs.drop_connections()
        leg = r.fs.channel(request)
        assert leg is not None
        await r.until(lambda: leg.answered, "the answer while the link is down")
        r.fs.thaw()
        await r.until(lambda: bool(r.sink.outcomes), "the outcome")
        await asyncio.sleep(0.2)
    assert r.sink.outcomes == [(request, "answered")]
    assert r.adapter.translator.originations == {}


async def test_the_callback_greeting_rides_on_the_originate() -> None:
    """pbx_agent_callback_greeting names the file pbxagent_callback_connect plays to the
    person before the queue ("this is a callback from ...")."""
    request = "5b8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a05"
    async with rig(greeting="pbx-agent/ru/callback-greeting.wav") as r:
        await r.dialer.place_callback(dial(request, detect=False))
        await r.until(lambda: bool(r.sink.outcomes), "the outcome")
        line = r.fs.commands_for("bgapi")[-1].args
    assert "pbx_agent_callback_greeting=pbx-agent/ru/callback-greeting.wav" in line


async def test_a_callback_is_not_placed_without_the_event_socket() -> None:
    """Not connected: CallbackNotPlacedError, so the attempt does not count."""
    async with rig(connect=False) as r:
        with pytest.raises(CallbackNotPlacedError):
            await r.dialer.place_callback(dial("5b8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a04"))


def test_detection_takes_amd_parameters_from_the_standards() -> None:
    """standards.amd becomes the detector's settings (the same as the AudioSocket server's
    on Asterisk), the NOTSURE choice and the deadline."""
    from pbx_agent.amd.params import detector_params  # noqa: PLC0415
    from pbx_agent.config import load_config  # noqa: PLC0415

    amd = load_config(
        None,
        env={"PBX_AGENT_STANDARDS__AMD__NOTSURE_ACTION": "machine",
             "PBX_AGENT_STANDARDS__AMD__DEADLINE_MS": "5000"},
    ).standards_for().amd  # fmt: skip
    detection = FreeswitchDetection.from_rule(amd)
    assert detection.params == detector_params(amd)
    assert detection.params.deadline_ms == 5000
    assert detection.params.on_notsure is VerdictKind.MACHINE
    assert detection.notsure_as is VerdictKind.MACHINE
    assert detection.deadline_ms == 5000


async def test_an_abandoned_attempt_is_killed_while_it_rings() -> None:
    """abandon(request id): uuid_kill of the leg placed with that origination_uuid."""
    request = "5b8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a06"
    async with rig() as r:
        r.lab.script_callee(NUMBER, "no_answer")
        await r.dialer.place_callback(dial(request))
        await r.until(lambda: r.fs.channel(request) is not None, "the ringing leg")
        await r.dialer.abandon(request)
        await r.until(lambda: r.fs.channel(request) is None, "the hang-up")
        assert f"uuid_kill {request} NORMAL_CLEARING" in r.api()
        await r.dialer.abandon("not-a-uuid; reloadxml")  # never reaches a command line
        assert not any("not-a-uuid" in line for line in r.api())

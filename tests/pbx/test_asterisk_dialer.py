"""Callback attempts on the fake Asterisk over loopback: the real scheduler, store, engine,
adapter and dialer, and the fake running the shipped callback context. Each outcome of
traces 07a-07f and 06a-06c is recorded on the attempt with the PBX's cause; the daemon's
AudioSocket verdicts reach the dialplan through PBXAGENT_AMD."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from structlog.testing import capture_logs

from pbx_agent.amd.params import DetectorParams, VerdictKind
from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.lab.scenarios.callbacks import CALLBACK_CONTEXT
from pbx_agent.model import events as ev
from pbx_agent.pbx.ami_client import AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions
from pbx_agent.pbx.asterisk_dialer import AsteriskDialer, MachineDetection
from pbx_agent.pbx.audiosocket_server import AudioSocketServer
from pbx_agent.policies.callbacks import (
    AttemptOutcome,
    CallbackAttempt,
    CallbackRules,
    JobStatus,
    QuietHours,
)
from pbx_agent.services.callbacks import CallbackDial, CallbackService, SchedulerSettings
from pbx_agent.store import Store
from pbx_agent.testing.audiosocket_client import CalleeVoice
from pbx_agent.testing.fake_asterisk import (
    AmdVerdict,
    DialOutcome,
    DialScript,
    FakeAsterisk,
)
from tests.store.databases import db_url, sqlite_url, store

__all__ = ["db_url", "store"]

NUMBER = "79161234567"
E164 = "+79161234567"
QUEUE = "support"
AGENT = "agent-1001"
TIMEOUT = 10.0
# dialplan/asterisk/pbx-agent-callback.conf, step for step (tests/services/test_callbacks_lab.py).
CONTEXT = CALLBACK_CONTEXT


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated SQLite store: the tests where the database makes no difference."""
    opened = Store.open(sqlite_url(tmp_path))
    await opened.upgrade()
    try:
        yield opened
    finally:
        await opened.close()


def rules(*, detect: bool = True, notsure_as: str = "human") -> CallbackRules:
    """Attempts due at once, then hours apart (never reached here); no quiet hours."""
    return CallbackRules(
        timezone=ZoneInfo("UTC"),
        attempt_offsets=(timedelta(0), timedelta(hours=1), timedelta(hours=2)),
        quiet_hours=QuietHours(time(0, 0), time(0, 0)),
        detect_machine=detect,
        notsure_as=notsure_as,
    )


@dataclass
class Rig:
    pbx: FakeAsterisk
    store: Store
    engine: Engine
    adapter: AsteriskAdapter
    dialer: AsteriskDialer
    service: CallbackService
    audiosocket: AudioSocketServer | None

    async def call_back(self) -> CallbackAttempt:
        """A drop a minute ago: the first attempt is due, the scheduler places it."""
        now = self.service.now_epoch()
        job = await self.service.schedule_after_drop(
            NUMBER, reason="caller_leg_failed", call_id="c1", cause="44", dropped_at=now - 60
        )
        assert job is not None
        assert await self.service.run_once() == 1
        [attempt] = await self.store.callbacks.attempts(job.id)
        return attempt

    async def settled(self, request_id: str) -> CallbackAttempt:
        """Wait until the attempt has its final outcome (the scheduler keeps cycling)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                attempt = await self.store.callbacks.attempt_by_request(request_id)
                assert attempt is not None
                if attempt.outcome not in (AttemptOutcome.DIALLING, AttemptOutcome.ANSWERED):
                    return attempt
                await self.service.run_once()
                await asyncio.sleep(0.02)

    def leg(self, request_id: str) -> list[str]:
        """The AMI events the fake sent about the callback leg, by name."""
        return [e.name for e in self.pbx.events if e.get("Uniqueid") == request_id]

    async def until(self, predicate: Callable[[], bool]) -> None:
        await self.pbx.switch.wait_until(predicate, TIMEOUT)


@contextlib.asynccontextmanager
async def rig(
    store: Store,
    *,
    engine_name: str = "daemon",
    callback_rules: CallbackRules | None = None,
    detector: DetectorParams | None = None,
    audiosocket_address: str | None = None,
    verdict_timeout_s: float = 30.0,
    connect_timeout_s: float = 5.0,
) -> AsyncIterator[Rig]:
    """Fake Asterisk + engine + adapter + dialer + scheduler, wired as the daemon wires them."""
    async with FakeAsterisk(time_scale=0.01) as pbx:
        pbx.audiosocket_pace = 0.0
        pbx.dialplan.add("pbxagent-callback", "s", CONTEXT)
        pbx.add_queue_member(QUEUE, AGENT, "Alice")
        clock = LoopClock()
        engine = Engine(clock=clock, policies=[])
        host, port = pbx.ami_address
        adapter = AsteriskAdapter(
            AmiSettings(
                host=host,
                port=port,
                username="lab",
                secret="not-a-real-secret",
                connect_timeout_s=connect_timeout_s,
                reconnect_initial_s=0.05,
                reconnect_max_s=0.2,
            ),
            AsteriskOptions(sounds=lambda key: key),
            handle_event=engine.handle,
        )
        engine.executor = adapter
        dialer = AsteriskDialer(MachineDetection(engine=engine_name))  # type: ignore[arg-type]
        service = CallbackService(
            store,
            dialer,
            callback_rules or rules(detect=engine_name != "none"),
            clock=clock,
            default_region="RU",
            owner="test",
            settings=SchedulerSettings(verdict_timeout_s=verdict_timeout_s),
        )
        dialer.report_to(service)
        engine.subscribe((ev.OriginateOutcome, ev.MachineDetected), dialer.on_event)
        await dialer.start()
        await adapter.start()
        server = None
        if engine_name == "daemon" and audiosocket_address is None:
            server = AudioSocketServer(dialer.on_audiosocket_verdict, params=detector, port=0)
            await server.start()
            audiosocket_address = f"127.0.0.1:{server.port}"
        dialer.attach(adapter, audiosocket=audiosocket_address)
        try:
            yield Rig(pbx, store, engine, adapter, dialer, service, server)
        finally:
            if server is not None:
                await server.close()
            await engine.close()
            await adapter.close()
            await dialer.close()


def script(pbx: FakeAsterisk, outcome: DialOutcome, amd: AmdVerdict | None = None) -> None:
    pbx.script_dial(NUMBER, DialScript(outcome, amd=amd))


def originate_fields(pbx: FakeAsterisk) -> list[tuple[str, str]]:
    [originate] = [a.message for a in pbx.received if a.name == "Originate"]
    return list(originate.fields)


# ------------------------------------------------------------------ the Originate itself


async def test_originate_carries_the_attempt_id_ring_time_target_and_detector(
    sqlite: Store,
) -> None:
    """ChannelId = the request id, Timeout = the ring time, the callback context, and the
    variables the context reads."""
    async with rig(sqlite) as r:
        script(r.pbx, DialOutcome.BUSY)
        attempt = await r.call_back()
        await r.settled(attempt.request_id)
        fields = originate_fields(r.pbx)
    values = dict(fields)
    variables = [v for k, v in fields if k == "Variable"]
    assert values["ChannelId"] == attempt.request_id
    assert values["Channel"] == f"PJSIP/{NUMBER}@trunk"
    assert values["Context"] == "pbxagent-callback"
    assert values["Timeout"] == "40000"
    assert f"PBXAGENT_CALLBACK_ID={attempt.request_id}" in variables
    assert "PBXAGENT_AMD_ENGINE=daemon" in variables
    assert any(v.startswith("PBXAGENT_AUDIOSOCKET=127.0.0.1:") for v in variables)
    assert "PBXAGENT_AMD_NOTSURE=HUMAN" in variables


async def test_amd_application_arguments_survive_the_variable_header(sqlite: Store) -> None:
    """AMD()'s nine comma-separated arguments reach the channel as one variable."""
    async with rig(sqlite, engine_name="asterisk") as r:
        script(r.pbx, DialOutcome.ANSWER, AmdVerdict.human(after_s=0.05))
        attempt = await r.call_back()
        await r.settled(attempt.request_id)
        [call] = r.pbx.originated
        assert call.channel is not None
        assert dict(call.request.variables)["PBXAGENT_AMD_PARAMS"] == (
            "2500,1500,800,5000,100,50,2,256,5000"
        )


async def test_no_ami_connection_is_not_placed_and_does_not_count(sqlite: Store) -> None:
    """With the AMI down the dialer refuses before sending: not_placed, retried later."""
    async with rig(sqlite) as r:
        await r.adapter.close()
        attempt = await r.call_back()
    assert attempt.outcome is AttemptOutcome.NOT_PLACED
    job = await sqlite.callbacks.get(attempt.job_id)
    assert job is not None
    assert job.attempts_made == 0


def test_an_asterisk_uniqueid_is_not_an_attempt() -> None:
    """Only UUID request ids are callback attempts; AMD on other calls is ignored."""
    dialer = AsteriskDialer(MachineDetection())
    dialer.on_event(ev.MachineDetected(ev.LegId("1795339557.35"), "machine"), 0.0)
    dialer.on_event(ev.OriginateOutcome("pbxagent-prompt-0a1b", "failed"), 0.0)
    assert dialer._reports.empty()


# ------------------------------------------------------------------ outcomes 07a-07f


@pytest.mark.parametrize(
    ("outcome", "expected", "cause", "tech_cause"),
    [
        (DialOutcome.BUSY, AttemptOutcome.BUSY, 17, "486"),  # 07b
        (DialOutcome.DECLINE, AttemptOutcome.REJECTED, 21, "603"),  # 07c
        (DialOutcome.NO_ANSWER, AttemptOutcome.NO_ANSWER, 19, ""),  # 07d
        (DialOutcome.NO_SUCH_ENDPOINT, AttemptOutcome.FAILED, None, ""),  # 07e
    ],
)
async def test_failed_originate_is_recorded_with_the_pbx_cause(
    store: Store,
    outcome: DialOutcome,
    expected: AttemptOutcome,
    cause: int | None,
    tech_cause: str,
) -> None:
    """Busy and declined both say Reason 0: only the Hangup cause tells them apart."""
    async with rig(store) as r:
        script(r.pbx, outcome)
        attempt = await r.settled((await r.call_back()).request_id)
    assert attempt.outcome is expected
    assert attempt.cause == cause
    assert attempt.tech_cause == tech_cause
    job = await store.callbacks.get(attempt.job_id)
    assert job is not None
    assert (job.status, job.attempts_made) == (JobStatus.SCHEDULED, 1)


async def test_no_such_endpoint_says_no_channel_was_created(sqlite: Store) -> None:
    """07e: no channel, no Hangup: the failure is reported from the response alone."""
    async with rig(sqlite) as r:
        script(r.pbx, DialOutcome.NO_SUCH_ENDPOINT)
        attempt = await r.settled((await r.call_back()).request_id)
        assert r.leg(attempt.request_id) == ["OriginateResponse"]
    assert "no channel was created" in attempt.cause_text


async def test_answer_without_detection_is_a_connection(sqlite: Store) -> None:
    """07a with detection off: the answer itself reaches the customer; the job is done."""
    async with rig(sqlite, engine_name="none") as r:
        script(r.pbx, DialOutcome.ANSWER)
        attempt = await r.settled((await r.call_back()).request_id)
        await r.until(lambda: bool(r.pbx.events_named("AgentConnect")))
    assert attempt.outcome is AttemptOutcome.CONNECTED
    assert attempt.answered_at is not None
    job = await sqlite.callbacks.get(attempt.job_id)
    assert job is not None
    assert job.status is JobStatus.DONE


async def test_an_answer_while_the_ami_link_is_down_is_taken_from_the_resync(
    sqlite: Store,
) -> None:
    """The link drops while the attempt rings and the customer answers meanwhile: its
    OriginateResponse is lost, but the channel list after the reconnect shows the attempt
    Up, so it is answered (connected), not given up as unknown and dialled again."""
    async with rig(sqlite, engine_name="none", connect_timeout_s=0.3) as r:
        r.pbx.script_dial(NUMBER, DialScript(DialOutcome.ANSWER, ring_s=0.3))
        attempt = await r.call_back()
        await r.pbx.wait_for_action("Originate")
        r.pbx.freeze()
        r.pbx.drop_connections()
        await r.until(
            lambda: any(
                ch.uniqueid == attempt.request_id and ch.state == 6
                for ch in r.pbx.switch.channels.values()
            )
        )
        r.pbx.thaw()
        settled = await r.settled(attempt.request_id)
    assert settled.outcome is AttemptOutcome.CONNECTED
    assert "OriginateResponse was lost" in settled.cause_text
    job = await sqlite.callbacks.get(attempt.job_id)
    assert job is not None
    assert job.status is JobStatus.DONE
    assert job.attempts_made == 1


async def test_every_event_of_the_leg_carries_the_attempt_id(sqlite: Store) -> None:
    """07f: the ChannelId is the leg's Uniqueid from Newchannel to Hangup, even on failure."""
    async with rig(sqlite) as r:
        script(r.pbx, DialOutcome.DECLINE)
        attempt = await r.settled((await r.call_back()).request_id)
        names = r.leg(attempt.request_id)
    assert names[0] == "Newchannel"
    assert "OriginateResponse" in names
    assert names[-1] == "Hangup"


# ------------------------------------------------------------------ AMD() 06a-06c


@pytest.mark.parametrize(
    ("verdict", "expected", "amd_result"),
    [
        (AmdVerdict.machine_long_greeting(0.05), AttemptOutcome.MACHINE, "machine"),  # 06a
        (AmdVerdict.human(0.05), AttemptOutcome.CONNECTED, "human"),  # 06b
        (AmdVerdict.initial_silence(0.05), AttemptOutcome.MACHINE, "machine"),  # 06c
    ],
)
async def test_amd_application_verdict_is_recorded_with_its_cause(
    store: Store, verdict: AmdVerdict, expected: AttemptOutcome, amd_result: str
) -> None:
    """AMD()'s AMDSTATUS/AMDCAUSE VarSets become the attempt's verdict and cause."""
    async with rig(store, engine_name="asterisk") as r:
        script(r.pbx, DialOutcome.ANSWER, verdict)
        attempt = await r.settled((await r.call_back()).request_id)
    assert attempt.outcome is expected
    assert (attempt.amd_result, attempt.amd_cause) == (amd_result, verdict.cause)


async def test_amd_application_machine_is_hung_up_by_the_dialplan(sqlite: Store) -> None:
    """R6 with AMD(): the context hangs the machine up (cause 16) and never queues it."""
    async with rig(sqlite, engine_name="asterisk") as r:
        script(r.pbx, DialOutcome.ANSWER, AmdVerdict.machine_long_greeting(0.05))
        attempt = await r.settled((await r.call_back()).request_id)
        await r.until(lambda: "Hangup" in r.leg(attempt.request_id))
        hangup = next(
            e for e in r.pbx.events_named("Hangup") if e.get("Uniqueid") == attempt.request_id
        )
        assert hangup["Cause"] == "16"
        assert not r.pbx.events_named("AgentConnect")


# ------------------------------------------------------------------ the daemon's detector


def newexten(pbx: FakeAsterisk, request_id: str) -> list[str]:
    return [
        e["Application"] for e in pbx.events_named("Newexten") if e.get("Uniqueid") == request_id
    ]


async def test_human_answer_is_connected_to_the_queue(store: Store) -> None:
    """AudioSocket: HUMAN is put on the leg, the dialplan queues the customer, job done."""
    async with rig(store) as r:
        script(r.pbx, DialOutcome.ANSWER)
        r.pbx.script_callee_voice(NUMBER, CalleeVoice.HUMAN)
        attempt = await r.settled((await r.call_back()).request_id)
        await r.until(lambda: bool(r.pbx.events_named("AgentConnect")))
        setvar = [a.message for a in r.pbx.received if a.name == "Setvar"]
        assert [(m["Channel"], m["Variable"], m["Value"]) for m in setvar] == [
            (attempt.request_id, "PBXAGENT_AMD", "HUMAN")
        ]
    assert attempt.outcome is AttemptOutcome.CONNECTED
    assert attempt.amd_result == "human"
    assert attempt.amd_cause.startswith("answer-then-silence")


async def test_machine_is_ended_from_our_side_and_counts_as_an_attempt(store: Store) -> None:
    """AudioSocket: MACHINE is set before the hang-up frame; the dialplan hangs up (R6)."""
    async with rig(store) as r:
        script(r.pbx, DialOutcome.ANSWER)
        r.pbx.script_callee_voice(NUMBER, CalleeVoice.MACHINE)
        attempt = await r.settled((await r.call_back()).request_id)
        await r.until(lambda: "Hangup" in r.leg(attempt.request_id))
        applications = newexten(r.pbx, attempt.request_id)
        hangup = next(
            e for e in r.pbx.events_named("Hangup") if e.get("Uniqueid") == attempt.request_id
        )
    assert attempt.outcome is AttemptOutcome.MACHINE
    assert hangup["Cause"] == "16"
    assert "Queue" not in applications
    job = await store.callbacks.get(attempt.job_id)
    assert job is not None
    assert (job.status, job.attempts_made) == (JobStatus.SCHEDULED, 1)


async def test_noisy_human_is_still_a_person(sqlite: Store) -> None:
    """A person over steady line noise, with people talking behind them, is HUMAN (the
    detector's verdict, not the deadline's default) and connected."""
    async with rig(sqlite) as r:
        script(r.pbx, DialOutcome.ANSWER)
        r.pbx.script_callee_voice(NUMBER, CalleeVoice.NOISY_HUMAN)
        attempt = await r.settled((await r.call_back()).request_id)
    assert (attempt.outcome, attempt.amd_result) == (AttemptOutcome.CONNECTED, "human")
    assert attempt.amd_cause.startswith("answer-then-silence")


SHORT = DetectorParams(deadline_ms=600, max_analysis_ms=600, no_speech_ms=500)


async def test_no_verdict_in_time_takes_the_default_and_releases_the_call(sqlite: Store) -> None:
    """A leg that sends no audio: at the deadline the default (HUMAN) is applied, the
    hang-up frame lets the call go on to the queue; the call is not held until the client
    gives up."""
    async with rig(sqlite, detector=SHORT) as r:
        script(r.pbx, DialOutcome.ANSWER)
        r.pbx.script_callee_voice(NUMBER, CalleeVoice.STALL)
        attempt = await r.settled((await r.call_back()).request_id)
        await r.until(lambda: bool(r.pbx.events_named("AgentConnect")))
        [run] = r.pbx.audiosocket_runs
    assert run.ended_by == "hangup-frame"
    assert attempt.outcome is AttemptOutcome.CONNECTED
    assert attempt.amd_cause == "deadline at 600 ms"


async def test_no_verdict_in_time_follows_a_machine_default(sqlite: Store) -> None:
    """notsure_action = machine: the deadline's default is MACHINE and the leg is hung up."""
    short_machine = SHORT.model_copy(
        update={"on_deadline": VerdictKind.MACHINE, "on_notsure": VerdictKind.MACHINE}
    )
    async with rig(sqlite, detector=short_machine, callback_rules=rules(notsure_as="machine")) as r:
        r.dialer.detection = MachineDetection(engine="daemon", notsure_as=VerdictKind.MACHINE)
        script(r.pbx, DialOutcome.ANSWER)
        r.pbx.script_callee_voice(NUMBER, CalleeVoice.STALL)
        attempt = await r.settled((await r.call_back()).request_id)
        await r.until(lambda: "Hangup" in r.leg(attempt.request_id))
        assert "Queue" not in newexten(r.pbx, attempt.request_id)
    assert attempt.outcome is AttemptOutcome.MACHINE


async def test_unreachable_daemon_connects_the_customer(sqlite: Store) -> None:
    """AudioSocket cannot connect: TryExec keeps the call, PBXAGENT_AMD stays HUMAN, the
    customer is queued; with no verdict the attempt follows the NOTSURE choice."""
    async with rig(sqlite, audiosocket_address="127.0.0.1:9", verdict_timeout_s=0.2) as r:
        script(r.pbx, DialOutcome.ANSWER)
        request_id = (await r.call_back()).request_id
        await r.until(lambda: bool(r.pbx.events_named("AgentConnect")))
        attempt = await r.settled(request_id)
        tries = [
            e["Value"]
            for e in r.pbx.events_named("VarSet")
            if e.get("Uniqueid") == request_id and e["Variable"] == "TRYSTATUS"
        ]
    assert tries == ["FAILED"]
    assert attempt.outcome is AttemptOutcome.CONNECTED
    assert attempt.amd_result == "timeout"


async def test_verdict_that_cannot_be_set_leaves_the_call_connected(sqlite: Store) -> None:
    """An AMI Setvar that gets no answer: the dialplan keeps its HUMAN default (never hang
    up on a person); the work order keeps the detector's verdict and the log says why."""
    async with rig(sqlite) as r:
        r.pbx.ignore_actions.add("Setvar")
        script(r.pbx, DialOutcome.ANSWER)
        r.pbx.script_callee_voice(NUMBER, CalleeVoice.MACHINE)
        with capture_logs() as logs:
            attempt = await r.settled((await r.call_back()).request_id)
            await r.until(lambda: bool(r.pbx.events_named("AgentConnect")))
    assert attempt.outcome is AttemptOutcome.MACHINE
    [warning] = [e for e in logs if e["event"] == "callback.verdict_not_applied"]
    assert warning["verdict"] == "MACHINE"


async def test_outcomes_are_applied_in_arrival_order(sqlite: Store) -> None:
    """The answer is recorded before the verdict that follows it."""
    async with rig(sqlite) as r:
        script(r.pbx, DialOutcome.ANSWER)
        r.pbx.script_callee_voice(NUMBER, CalleeVoice.HUMAN)
        attempt = await r.settled((await r.call_back()).request_id)
    assert attempt.answered_at is not None
    assert attempt.ended_at is not None
    assert attempt.answered_at <= attempt.ended_at


def test_request_without_detection_runs_no_detector() -> None:
    """detect_machine off for an attempt: PBXAGENT_AMD_ENGINE=none, no detector variables."""
    dialer = AsteriskDialer(MachineDetection(engine="daemon"))
    dialer.audiosocket = "127.0.0.1:9092"
    request = CallbackDial("id", 1, 1, E164, 40, QUEUE, detect_machine=False)
    names = dict(dialer.variables_for(request))
    assert names["PBXAGENT_AMD_ENGINE"] == "none"
    assert "PBXAGENT_AUDIOSOCKET" not in names


def test_the_callback_greeting_is_a_channel_variable() -> None:
    """PBXAGENT_CALLBACK_GREETING: the sound the callback context plays to a person before
    the queue; none configured, no variable."""
    request = CallbackDial("id", 1, 1, E164, 40, QUEUE, detect_machine=False)
    greeted = AsteriskDialer(
        MachineDetection(engine="none"), greeting="pbx-agent/ru/callback-greeting"
    )
    assert dict(greeted.variables_for(request))["PBXAGENT_CALLBACK_GREETING"] == (
        "pbx-agent/ru/callback-greeting"
    )
    plain = AsteriskDialer(MachineDetection(engine="none"))
    assert "PBXAGENT_CALLBACK_GREETING" not in dict(plain.variables_for(request))


async def test_an_abandoned_attempt_is_hung_up_while_it_rings(sqlite: Store) -> None:
    """abandon(request id): AMI Hangup of the ringing channel (its Uniqueid is the id)."""
    async with rig(sqlite) as r:
        script(r.pbx, DialOutcome.NO_ANSWER)
        attempt = await r.call_back()
        async with asyncio.timeout(TIMEOUT):
            while attempt.request_id not in r.adapter.translator.channels:
                await asyncio.sleep(0.01)
        channel = r.adapter.translator.channels[attempt.request_id].channel
        await r.dialer.abandon(attempt.request_id)
        hangups = [a.message for a in r.pbx.received if a.name == "Hangup"]
    assert [m.get("Channel") for m in hangups] == [channel]

"""The FreeSWITCH adapter with the engine, against the fake FreeSWITCH over loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.errors import UnsafeValueError
from pbx_agent.lab.freeswitch_driver import LISTENER_DIAL
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, LegId
from pbx_agent.pbx.esl_client import EslSettings
from pbx_agent.pbx.freeswitch import FreeswitchAdapter, FreeswitchOptions, FreeswitchTarget
from pbx_agent.testing.fake_freeswitch import (
    FakeFreeSwitch,
    OriginateOutcome,
    parse_dial_string,
    split_arguments,
)
from pbx_agent.testing.fake_freeswitch_model import FakeChannel
from tests.pbx.recording import Recorder, until

SOUNDS = "/usr/share/freeswitch/sounds"
PROMPT_S = 0.05


def sound(key: str) -> str:
    return f"pbx-agent/ru/{key.replace('.', '-')}.wav"


def path(key: str) -> str:
    return f"{SOUNDS}/{sound(key)}"


OPTIONS = FreeswitchOptions(
    sounds=sound,
    prompt_seconds=lambda _key: PROMPT_S,
    sounds_dir=SOUNDS,
    targets={
        "linger": FreeswitchTarget("pbxagent_linger"),
        "requeue": FreeswitchTarget("pbxagent_requeue"),
    },
    callback_dial_string="sofia/gateway/trunk/{number}",
    watched_variables=frozenset({"PBXAGENT_ROLE"}),
)


def settings(fs: FakeFreeSwitch) -> EslSettings:
    return EslSettings(
        host="127.0.0.1",
        port=fs.port,
        password="ClueCon",
        connect_timeout_s=2.0,
        command_timeout_s=1.0,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )


@pytest.fixture
async def fs() -> AsyncIterator[FakeFreeSwitch]:
    async with FakeFreeSwitch(time_scale=0.01, playback_s=20.0) as fake:
        yield fake


@dataclass
class Attached:
    fs: FakeFreeSwitch
    engine: Engine
    adapter: FreeswitchAdapter
    recorder: Recorder

    def api(self) -> list[str]:
        """The ``api`` commands the switch received, in order."""
        return [c.args for c in self.fs.commands_for("api")]

    def api_about(self, uuid: str) -> list[str]:
        return [line for line in self.api() if uuid in line]

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
        await until(predicate, what, timeout)

    def call(self) -> cm.Call:
        return next(iter(self.engine.model.calls.values()))

    async def run(self, command: cmd.PbxCommand) -> None:
        await self.engine.execute_now(command, call_id=self.call().id, rule="R0", policy="test")

    def seen(self, kind: type) -> list[Any]:
        return [e for e in self.recorder.seen if isinstance(e, kind)]


@contextlib.asynccontextmanager
async def attached(
    fs: FakeFreeSwitch, *, shadow: bool = False, options: FreeswitchOptions = OPTIONS
) -> AsyncIterator[Attached]:
    recorder = Recorder()
    clock = LoopClock()
    engine = Engine(clock=clock, policies=[recorder], shadow=shadow)
    adapter = FreeswitchAdapter(
        settings(fs), options, handle_event=engine.handle, clock=clock, shadow=shadow
    )
    engine.executor = adapter
    await adapter.start()
    try:
        yield Attached(fs, engine, adapter, recorder)
    finally:
        await engine.close()
        await adapter.close()


async def bridged(a: Attached) -> tuple[FakeChannel, FakeChannel]:
    """An inbound caller bridged to an agent, both known to the engine."""
    caller = a.fs.inbound_call("79161234567", "Иван", "100")
    agent = await a.fs.bridge(caller, "sofia/internal/agent-1001@127.0.0.1")
    assert agent is not None
    await a.until(lambda: bool(a.seen(cm.PartiesConnected)), "the parties to connect")
    return caller, agent


async def on_hold(a: Attached) -> tuple[FakeChannel, FakeChannel]:
    """The agent's phone holds the caller, who hears the switch's music."""
    caller, agent = await bridged(a)
    a.fs.hold(agent)
    await a.until(lambda: a.adapter.translator.hears_hold_music(caller.uuid), "the hold music")
    return caller, agent


def program(
    leg: str, *prompts: tuple[float, str], repeat: str | None = None
) -> cmd.StartHoldProgram:
    return cmd.StartHoldProgram(
        LegId(leg),
        started_at=LoopClock().now(),
        announcements=tuple(cmd.HoldAnnouncement(at, prompt) for at, prompt in prompts),
        repeat=repeat,
        repeat_every_s=0.1 if repeat else None,
    )


# -- hold programs ------------------------------------------------------------------------


async def test_hold_announcements_are_displaced_over_the_switchs_music(fs: FakeFreeSwitch) -> None:
    """Each announcement is ``uuid_displace <held> start <file> 0``: no mux, never a broadcast."""
    async with attached(fs) as a:
        caller, _agent = await on_hold(a)
        await a.run(program(caller.uuid, (0.0, "hold.announce"), (0.1, "hold.reminder")))
        await a.until(lambda: len(fs.displacements) == 2, "both announcements")
        assert a.api_about(caller.uuid)[-2:] == [
            f"uuid_displace {caller.uuid} start {path('hold.announce')} 0",
            f"uuid_displace {caller.uuid} start {path('hold.reminder')} 0",
        ]
        assert not [line for line in a.api() if line.startswith("uuid_broadcast")]


async def test_announcements_keep_their_times_on_the_daemons_clock(fs: FakeFreeSwitch) -> None:
    """The hold_cue log says how late each announcement started: under 100 ms here."""
    async with attached(fs) as a:
        caller, _agent = await on_hold(a)
        with capture_logs() as logs:
            await a.run(program(caller.uuid, (0.0, "hold.announce"), (0.2, "hold.reminder")))
            await a.until(lambda: len(fs.displacements) == 2, "both announcements")
        cues = [e for e in logs if e["event"] == "hold_cue"]
        assert [c["prompt"] for c in cues] == ["hold.announce", "hold.reminder"]
        assert all(c["late_ms"] < 100 for c in cues)


async def test_nothing_of_the_program_plays_after_it_is_stopped(fs: FakeFreeSwitch) -> None:
    """StopHoldProgram stops the announcement in progress; no command reaches the leg after."""
    async with attached(fs) as a:
        caller, agent = await on_hold(a)
        a.adapter.options = dataclasses.replace(OPTIONS, prompt_seconds=lambda _k: 5.0)
        await a.run(program(caller.uuid, (0.0, "hold.announce"), repeat="hold.reminder"))
        await a.until(lambda: bool(fs.displacements), "the announcement")
        fs.unhold(agent)
        await a.run(cmd.StopHoldProgram(LegId(caller.uuid)))
        sent = len(a.api_about(caller.uuid))
        await asyncio.sleep(0.3)
        assert a.api_about(caller.uuid)[-1] == (
            f"uuid_displace {caller.uuid} stop {path('hold.announce')}"
        )
        assert len(a.api_about(caller.uuid)) == sent
        assert not a.adapter.hold_programs


async def test_a_stop_while_an_announcement_is_being_started_still_stops_it(
    fs: FakeFreeSwitch,
) -> None:
    """The agent resumes while the switch has not yet answered the announcement's
    ``uuid_displace start``: the announcement is stopped once it has started, never heard
    over the resumed conversation."""
    async with attached(fs) as a:
        caller, agent = await on_hold(a)
        a.adapter.options = dataclasses.replace(OPTIONS, prompt_seconds=lambda _k: 5.0)
        original = a.adapter.api

        async def slow_start(command: str, **kwargs: Any) -> str:
            reply = await original(command, **kwargs)
            if " start " in command:
                await asyncio.sleep(0.2)  # the reply is still on its way
            return reply

        a.adapter.api = slow_start  # type: ignore[method-assign]
        await a.run(program(caller.uuid, (0.0, "hold.announce"), repeat="hold.reminder"))
        await a.until(lambda: bool(fs.displacements), "the announcement's start")
        fs.unhold(agent)
        await a.run(cmd.StopHoldProgram(LegId(caller.uuid)))
        await a.until(lambda: len(fs.displacements) == 2, "the announcement's stop")
        assert [(d[1], d[2]) for d in fs.displacements] == [
            ("start", path("hold.announce")),
            ("stop", path("hold.announce")),
        ]
        assert not caller.displacing


async def test_a_prompt_for_a_held_leg_waits_for_the_announcement_in_progress(
    fs: FakeFreeSwitch,
) -> None:
    """A prompt another rule sends to the held leg is displaced after the announcement."""
    async with attached(fs) as a:
        caller, _agent = await on_hold(a)
        await a.run(program(caller.uuid, (0.0, "hold.announce")))
        await a.until(lambda: bool(fs.displacements), "the announcement")
        await a.run(cmd.PlayPrompt(LegId(caller.uuid), "hold.callback_offer"))
        await a.until(lambda: len(fs.displacements) == 2, "the prompt")
        assert fs.displacements[1][2] == path("hold.callback_offer")
        await a.until(lambda: bool(a.seen(cm.PromptDone)), "the prompt's end")
        assert a.seen(cm.PromptDone)[0].prompt == "hold.callback_offer"


async def test_the_03b_trap_is_avoided_the_music_stops_at_unhold(fs: FakeFreeSwitch) -> None:
    """With a prompt sent to the held leg, unhold still stops the music (not 03b)."""
    async with attached(fs) as a:
        caller, agent = await on_hold(a)
        await a.run(cmd.PlayPrompt(LegId(caller.uuid), "hold.callback_offer", cmd.Audience.BOTH))
        fs.unhold(agent)
        await a.until(lambda: bool(a.seen(cm.HoldEnded)), "the hold to end")
        assert not caller.moh
        assert not a.adapter.translator.hears_hold_music(caller.uuid)
        assert not [line for line in a.api_about(caller.uuid) if line.startswith("uuid_broadcast")]


async def test_the_fake_reproduces_03b_when_a_broadcast_reaches_the_music_leg(
    fs: FakeFreeSwitch,
) -> None:
    """Control: a uuid_broadcast to the music leg leaves the music on after unhold (03b)."""
    async with attached(fs) as a:
        caller, agent = await on_hold(a)
        await a.adapter.client.api(f"uuid_broadcast {caller.uuid} {path('hold.announce')} aleg")
        fs.unhold(agent)
        await asyncio.sleep(0.1)
        assert caller.moh
        assert a.adapter.translator.hears_hold_music(caller.uuid)


async def test_a_hang_up_on_hold_ends_the_program_without_a_command(fs: FakeFreeSwitch) -> None:
    """The held caller hangs up: the program is gone and nothing more is sent for it."""
    async with attached(fs) as a:
        caller, _agent = await on_hold(a)
        await a.run(program(caller.uuid, (0.0, "hold.announce"), repeat="hold.reminder"))
        await a.until(lambda: bool(fs.displacements), "the announcement")
        fs.hangup(caller)
        await a.until(lambda: not a.adapter.hold_programs, "the program to end")
        sent = len(fs.displacements)
        await asyncio.sleep(0.3)
        assert len(fs.displacements) == sent


# -- prompts ------------------------------------------------------------------------------


async def test_a_prompt_to_both_parties_is_a_broadcast_to_both(fs: FakeFreeSwitch) -> None:
    """``uuid_broadcast <leg> <file> both``; its end is the leg's EXECUTE_COMPLETE."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        fs.playback_s = 0.05 / fs.time_scale
        await a.run(cmd.PlayPrompt(LegId(caller.uuid), "abuse.warning", cmd.Audience.BOTH))
        assert a.api()[-1] == f"uuid_broadcast {caller.uuid} {path('abuse.warning')} both"
        await a.until(lambda: bool(a.seen(cm.PromptDone)), "the prompt's end")
        done = a.seen(cm.PromptDone)[0]
        assert (done.leg, done.prompt, done.ok) == (caller.uuid, "abuse.warning", True)


async def test_a_prompt_to_one_bridged_party_is_whispered_with_displace_mux(
    fs: FakeFreeSwitch,
) -> None:
    """A bridged leg alone hears the prompt over the call (``mux``); the other is not cut off."""
    async with attached(fs) as a:
        _caller, agent = await bridged(a)
        await a.run(cmd.PlayPrompt(LegId(agent.uuid), "dead_air.reminder"))
        assert a.api()[-1] == f"uuid_displace {agent.uuid} start {path('dead_air.reminder')} 0 mux"
        await a.until(lambda: bool(a.seen(cm.PromptDone)), "the prompt's end")


async def test_a_prompt_to_a_party_alone_is_a_broadcast_to_that_leg(fs: FakeFreeSwitch) -> None:
    """A caller with nobody bridged hears the prompt through ``uuid_broadcast ... aleg``."""
    async with attached(fs) as a:
        caller = fs.inbound_call("79161234567", "Иван", "100")
        await a.until(lambda: bool(a.engine.model.calls), "the call")
        await a.run(cmd.PlayPrompt(LegId(caller.uuid), "linger.ask"))
        assert a.api()[-1] == f"uuid_broadcast {caller.uuid} {path('linger.ask')} aleg"


async def test_an_answerable_prompt_to_both_parties_is_displaced_on_the_caller_alone(
    fs: FakeFreeSwitch,
) -> None:
    """R2's phrases: a broadcast to both would stop the caller's voice reaching the agent's
    leg, where the switch detects it; displaced over the conversation, the caller's answer
    during the phrase is still heard (by the agent and as the caller's speech)."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        play = cmd.PlayPrompt(
            LegId(caller.uuid), "silent.prompt", cmd.Audience.BOTH, answerable=True
        )
        await a.run(play)
        assert a.api()[-1] == f"uuid_displace {caller.uuid} start {path('silent.prompt')} 0 mux"
        fs.talk(caller)
        await a.until(lambda: bool(a.seen(cm.SpeechStarted)), "the caller's speech")
        assert a.seen(cm.SpeechStarted)[0].leg == caller.uuid


async def test_a_prompt_to_a_caller_bridged_to_the_listener_is_displaced(
    fs: FakeFreeSwitch,
) -> None:
    """A lingering caller is bridged to the listener so that their speech is detected: a
    broadcast would stop that audio for the prompt's length; a displaced prompt does not."""
    async with attached(fs) as a:
        caller = fs.inbound_call("79161234567", "Иван", "100")
        await a.until(lambda: bool(a.engine.model.calls), "the call")
        listener = await fs.bridge(caller, LISTENER_DIAL)
        assert listener is not None
        await a.until(lambda: a.adapter.translator.peer_of(caller.uuid) is not None, "bridge")
        await a.run(cmd.PlayPrompt(LegId(caller.uuid), "linger.ask", answerable=True))
        assert a.api()[-1] == f"uuid_displace {caller.uuid} start {path('linger.ask')} 0 mux"
        fs.talk(caller)
        await a.until(lambda: bool(a.seen(cm.SpeechStarted)), "the caller's speech")


async def test_a_missing_file_is_a_failed_prompt(fs: FakeFreeSwitch) -> None:
    """FILE NOT FOUND ends the prompt with ok=False."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        fs.missing_sounds.add(path("abuse.warning"))
        await a.run(cmd.PlayPrompt(LegId(caller.uuid), "abuse.warning", cmd.Audience.BOTH))
        await a.until(lambda: bool(a.seen(cm.PromptDone)), "the prompt's end")
        assert a.seen(cm.PromptDone)[0].ok is False


# -- the other commands -------------------------------------------------------------------


async def test_hangup_kills_the_leg_with_the_cause_name(fs: FakeFreeSwitch) -> None:
    """HangupLeg(cause 17) is ``uuid_kill <uuid> USER_BUSY``."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        await a.run(cmd.HangupLeg(LegId(caller.uuid), cause=17))
        assert a.api()[-1] == f"uuid_kill {caller.uuid} USER_BUSY"
        await a.until(lambda: not caller.alive, "the hang-up")


async def test_hangup_of_a_leg_already_gone_is_done(fs: FakeFreeSwitch) -> None:
    """A leg the switch no longer has: the outcome says so, nothing fails."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        call = a.call()
        gone = cm.Leg(LegId("0000"), call.id, "", "", "", "", "", ev.Direction.INBOUND, None, 0.0)
        call.legs[LegId("0000")] = gone
        assert await a.adapter.execute(cmd.HangupLeg(LegId("0000")), call) == "0000 already gone"
        del call.legs[LegId("0000")]
        assert caller.alive


async def test_redirect_sets_the_parameters_then_transfers(fs: FakeFreeSwitch) -> None:
    """Redirect(linger) is uuid_setvar of each parameter, then uuid_transfer to the extension."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        command = cmd.Redirect(LegId(caller.uuid), "linger", (("PBXAGENT_REQUEUE_PRIORITY", "10"),))
        await a.run(command)
        assert a.api_about(caller.uuid)[-2:] == [
            f"uuid_setvar {caller.uuid} PBXAGENT_REQUEUE_PRIORITY 10",
            f"uuid_transfer {caller.uuid} pbxagent_linger XML default",
        ]


async def test_a_caller_controlled_value_stays_one_argument(fs: FakeFreeSwitch) -> None:
    """A value with spaces, quotes and a newline is quoted, the newline made visible."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        value = "Иван 'the' \\ caller\nsecond line"
        await a.run(cmd.SetVariable(LegId(caller.uuid), "PBXAGENT_NOTE", value))
        assert caller.variables["PBXAGENT_NOTE"] == "Иван 'the' \\\\ caller\\nsecond line"


async def test_an_agent_alert_is_an_event_and_a_whisper(fs: FakeFreeSwitch) -> None:
    """AlertAgent: ``sendevent CUSTOM pbx_agent::alert`` and the prompt displaced with mux."""
    async with attached(fs) as a:
        _caller, agent = await bridged(a)
        alert = cmd.AlertAgent(LegId(agent.uuid), "hold_limit", "hold.agent_alert", (("s", "120"),))
        await a.run(alert)
        sent = fs.commands_for("sendevent")[-1]
        assert (sent.get("Event-Subclass"), sent.get("Alert"), sent.get("Alert-s")) == (
            "pbx_agent::alert",
            "hold_limit",
            "120",
        )
        assert a.api()[-1].endswith(f"{path('hold.agent_alert')} 0 mux")


async def test_recording_starts_on_the_callers_leg(fs: FakeFreeSwitch) -> None:
    """StartRecording is ``uuid_record <caller> start <dir>/<call>.wav``."""
    async with attached(fs) as a:
        caller, _agent = await bridged(a)
        await a.run(cmd.StartRecording(a.call().id))
        assert fs.recordings == [
            (caller.uuid, "start", f"/var/lib/freeswitch/recordings/pbx-agent/{caller.uuid}.wav")
        ]


async def test_shadow_mode_sends_no_call_changing_command(fs: FakeFreeSwitch) -> None:
    """In shadow mode every command is logged (shadow_action) and none is sent."""
    async with attached(fs, shadow=True) as a:
        caller, agent = await bridged(a)
        with capture_logs() as logs:
            await a.run(cmd.PlayPrompt(LegId(caller.uuid), "abuse.warning", cmd.Audience.BOTH))
            await a.run(cmd.HangupLeg(LegId(agent.uuid)))
            await a.run(program(caller.uuid, (0.0, "hold.announce")))
            await asyncio.sleep(0.1)
        assert [line for line in a.api() if line.startswith("uuid_")] == []
        shadowed = [e["esl"] for e in logs if e["event"] == "shadow_action"]
        assert f"uuid_broadcast {caller.uuid} {path('abuse.warning')} both" in shadowed
        assert f"uuid_kill {agent.uuid} NORMAL_CLEARING" in shadowed
        assert caller.alive


# -- resync, talk, callbacks ----------------------------------------------------------------


async def test_a_reconnect_resyncs_and_keeps_the_call_once(fs: FakeFreeSwitch) -> None:
    """The link drops and comes back: ``show channels`` tells the engine the live legs."""
    async with attached(fs) as a:
        await bridged(a)
        with capture_logs() as logs:
            fs.drop_connections()
            await a.until(lambda: a.adapter.client.connections == 2, "the reconnect")
            await a.until(lambda: any(e["event"] == "pbx_resynced" for e in logs), "the resync")
        assert len(a.engine.model.calls) == 1
        assert len(a.call().legs) == 2


async def test_speech_ends_on_the_daemons_clock_after_the_debounce(fs: FakeFreeSwitch) -> None:
    """A TALK then a final NOTALK: SpeechEnded comes from the poll timer, not a new event."""
    async with attached(fs) as a:
        caller, agent = await bridged(a)
        fs.talk(caller, talking=True)
        await a.until(lambda: bool(a.seen(cm.SpeechStarted)), "the speech")
        fs.talk(caller, talking=False)
        await a.until(lambda: bool(a.seen(cm.SpeechEnded)), "the end of speech")
        ended = a.seen(cm.SpeechEnded)[0]
        assert (ended.leg, ended.role) == (caller.uuid, ev.Role.CALLER)
        assert agent.alive


async def test_a_callback_is_originated_with_at_least_31_s_of_ringing(fs: FakeFreeSwitch) -> None:
    """``bgapi originate``: origination_uuid = Job-UUID = the request id, originate_timeout
    at least 31 s, into the connect extension when no machine detection is asked for."""
    request = "4a8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a10"
    async with attached(fs) as a:
        await a.adapter.originate_callback(
            request_id=request, number="+79161234567", ring_time_s=20
        )
        sent = fs.commands_for("bgapi")[-1]
        assert sent.get("Job-UUID") == request
        verb, _, rest = sent.args.partition(" ")
        argv = split_arguments(rest)
        variables, endpoint = parse_dial_string(argv[0])
        assert verb == "originate"
        assert argv[1:] == ["pbxagent_callback_connect", "XML", "default"]
        assert endpoint == "sofia/gateway/trunk/79161234567"
        assert variables == {
            "origination_uuid": request,
            "originate_timeout": "31",
            "origination_caller_id_number": "0",
            "origination_caller_id_name": "Call centre",
            "pbx_agent_callback": request,
            "ignore_early_media": "true",
            "fire_talk_events": "true",
            "fire_not_talk_events": "true",
            "media_timeout": "4000",
        }


async def test_a_busy_callback_is_reported_busy_with_cause_17(fs: FakeFreeSwitch) -> None:
    """486 Busy Here ends the attempt as busy (07a)."""
    request = "4a8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a11"
    fs.set_originate_outcome("79161234567", OriginateOutcome.BUSY)
    outcomes: list[ev.OriginateOutcome] = []
    async with attached(fs) as a:
        a.engine.subscribe((ev.OriginateOutcome,), lambda e, _t: outcomes.append(e))  # type: ignore[arg-type]
        await a.adapter.originate_callback(request_id=request, number="79161234567", ring_time_s=40)
        await a.until(lambda: bool(outcomes), "the outcome")
    assert (outcomes[0].request, outcomes[0].outcome, outcomes[0].cause) == (request, "busy", 17)


async def test_a_callback_number_that_is_not_a_number_is_refused(fs: FakeFreeSwitch) -> None:
    """Nothing is dialled for a number with anything but digits."""
    async with attached(fs) as a:
        with pytest.raises(UnsafeValueError):
            await a.adapter.originate_callback(
                request_id="4a8e3c52-1f0b-4d64-9c0a-8d8f6f1e2a12",
                number="7916 &bridge(x)",
                ring_time_s=40,
            )
        assert fs.commands_for("bgapi") == []


async def test_a_command_for_a_leg_of_another_call_is_refused(fs: FakeFreeSwitch) -> None:
    """The adapter acts only on legs of the call the command came with."""
    async with attached(fs) as a:
        await bridged(a)
        call = a.call()
        with pytest.raises(Exception, match="not part of call"):
            await a.adapter.execute(cmd.HangupLeg(LegId("elsewhere")), call)
        assert call.id == CallId(call.id)


async def test_an_unexpected_error_in_a_background_task_is_logged_with_its_traceback(
    fs: FakeFreeSwitch,
) -> None:
    """A spawned coroutine raising something not the project's own is `task_failed`, traceback too."""
    adapter = FreeswitchAdapter(
        settings(fs), OPTIONS, handle_event=lambda _event: None, clock=LoopClock()
    )

    async def broken() -> None:
        msg = "Unique-ID"
        raise KeyError(msg)

    with capture_logs() as logs:
        await adapter._spawn(broken(), "hold-program:x")
    [failed] = [e for e in logs if e["event"] == "task_failed"]
    assert (failed["pbx"], failed["task"], failed["error"]) == (
        adapter.name,
        "hold-program:x",
        "KeyError: 'Unique-ID'",
    )
    assert failed["exc_info"] is True


async def test_an_agent_name_with_cr_lf_is_escaped_in_the_one_alert_event(
    fs: FakeFreeSwitch,
) -> None:
    """An agent name (mod_callcenter's CC-Agent) holding CR/LF still sends the alert, escaped."""
    async with attached(fs) as a:
        caller, agent = await bridged(a)
        # ESL events are URL-encoded on the wire, so a decoded CC-Agent can hold CR/LF.
        evil = " Alice\r\nEvent-Subclass: forged"
        a.engine.handle(ev.AgentConnected(LegId(caller.uuid), LegId(agent.uuid), evil, "support"))
        assert a.call().agent_id == evil
        with capture_logs() as logs:
            await a.run(cmd.AlertAgent(LegId(agent.uuid), "hold_limit", fields=(("n", "1\n2"),)))
        assert [e["event"] for e in logs if e["event"].startswith("command_")] == ["command_done"]
        [sent] = fs.commands_for("sendevent")
        assert [k for k, _ in sent.headers] == [
            "Event-Subclass",
            "Alert",
            "Unique-ID",
            "Call-ID",
            "Agent",
            "Alert-n",
        ]
        assert (sent.get("Event-Subclass"), sent.get("Agent"), sent.get("Alert-n")) == (
            "pbx_agent::alert",
            "Alice\\r\\nEvent-Subclass: forged",
            "1\\n2",
        )

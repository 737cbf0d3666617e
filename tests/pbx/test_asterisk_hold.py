"""The hold program on Asterisk, end to end over loopback TCP: the hold policy in the engine,
the Asterisk adapter on AMI, the FastAGI server with the hold_program hook, and the fake
Asterisk running the shipped dialplan (dialplan/asterisk/pbx-agent-hold.conf).

Time: the fake plays sounds ``SCALE`` times faster than real time and the daemon's clock runs
at the same pace (``ScaledClock``), so a 20 s hold takes 0.4 s and both sides agree on what
a second is.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pbx_agent.config.settings import resolve_standards
from pbx_agent.engine import Engine
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.hooks import HookRegistry
from pbx_agent.pbx.ami_client import AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions
from pbx_agent.pbx.asterisk_hold import HoldMusic, HoldProgramHook
from pbx_agent.pbx.fastagi import FastAgiServer
from pbx_agent.policies.hold import HoldPolicy
from pbx_agent.testing.fake_asterisk import FakeAsterisk, Leg
from pbx_agent.testing.fastagi_driver import AgiResult
from pbx_agent.wire.ami import AmiMessage

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan" / "asterisk" / "pbx-agent-hold.conf"
SCALE = 0.02
EPOCH = 1_795_339_200.0
MUSIC = HoldMusic("pbx-agent/hold-music", 7.5)
# Announcement and reminder 2.5 s each, music 7.5 s: with zh's 10 s reminders every gap is
# one whole music file, which the fake (it plays whole files) renders exactly.
SOUNDS = {
    "pbx-agent/zh/hold-announce": 2.5,
    "pbx-agent/zh/hold-reminder": 2.5,
    "pbx-agent/zh/hold-resume": 1.5,
    "pbx-agent/zh/hold-resume_long": 2.0,
    "pbx-agent/zh/hold-callback_offer": 2.5,
    "pbx-agent/zh/hold-callback_registered": 2.0,
    "pbx-agent/zh/hold-agent_limit": 1.5,
    MUSIC.sound: MUSIC.length_s,
}


class ScaledClock:
    """Epoch seconds that run 1/scale times faster than the loop's clock."""

    def __init__(self, scale: float, epoch: float = EPOCH) -> None:
        self._loop = asyncio.get_running_loop()
        self._scale = scale
        self._epoch = epoch
        self._t0 = self._loop.time()

    def now(self) -> float:
        return self._epoch + (self._loop.time() - self._t0) / self._scale

    def call_at(self, when: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_at(self._t0 + (when - self._epoch) * self._scale, callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds * self._scale)


def shipped_dialplan() -> dict[tuple[str, str], list[tuple[str, str]]]:
    """The extensions of the shipped file, as (application, data) steps."""
    steps: dict[tuple[str, str], list[tuple[str, str]]] = {}
    context = ""
    current: tuple[str, str] | None = None
    for raw in DIALPLAN.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            context = line.strip("[]")
            continue
        match = re.match(r"(exten|same)\s*=>\s*(.*)$", line)
        if match is None:
            continue
        parts = match.group(2).split(",", 2)
        if match.group(1) == "exten":
            current = (context, parts[0])
            app = parts[2]
        else:
            app = match.group(2).split(",", 1)[1]
        assert current is not None
        name, _, data = app.partition("(")
        steps.setdefault(current, []).append((name, data.removesuffix(")")))
    return steps


@dataclass
class Rig:
    pbx: FakeAsterisk
    engine: Engine
    adapter: AsteriskAdapter
    server: FastAgiServer
    clock: ScaledClock
    callbacks_requested: list[cmd.RequestCallback]

    async def call(self, music_class: str = "default") -> tuple[Leg, Leg]:
        caller = await self.pbx.inbound_call(caller="79161234567", caller_name="Иван")
        # As the inbound dialplan's Set(CHANNEL(musicclass)=...) leaves it.
        caller.channel.music_class = music_class
        await caller.answer()
        agent = await caller.connect_agent(endpoint="agent-1001")
        return caller, agent

    async def wait_agi(
        self,
        predicate: Callable[[list[str]], bool],
        timeout_s: float = 5,
        event: str = "AGIExecEnd",
    ) -> None:
        """Wait until the AGI commands reported on AMI (``AGIExecEnd``: finished;
        ``AGIExecStart``: started) satisfy ``predicate``."""
        await self.pbx.switch.wait_until(lambda: predicate(self.agi_commands(event)), timeout_s)

    def agi_commands(self, event: str = "AGIExecEnd") -> list[str]:
        return [e.get("Command") or "" for e in self.pbx.events_named(event)]

    async def hold_session(self, count: int = 1) -> AgiResult:
        await self.pbx.switch.wait_until(lambda: len(self.hold_results()) >= count, 5)
        return self.hold_results()[count - 1]

    def hold_results(self) -> list[AgiResult]:
        return [r for r in self.pbx.agi_results if "Local/hold@pbxagent-hold" in r.channel]

    def actions_after(self, index: int) -> list[AmiMessage]:
        return [r.message for r in self.pbx.received[index:]]


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    """The zh profile; the parameter may give ``standards`` (an override layer),
    ``hook`` (False: the hold_program hook is not served) and ``music`` (the hook's music by
    class)."""
    clock = ScaledClock(SCALE)
    param = getattr(request, "param", {})
    override = param.get("standards")
    standards = resolve_standards("zh", "", *([override] if override else []))
    async with FakeAsterisk(time_scale=SCALE) as pbx:
        for (context, exten), steps in shipped_dialplan().items():
            pbx.dialplan.add(context, exten, steps)
        pbx.switch.sound_lengths.update(SOUNDS)
        requested: list[cmd.RequestCallback] = []
        engine = Engine(
            clock=clock,
            policies=[HoldPolicy()],
            model=cm.CallModel(cm.RoleRules(agent_endpoint_patterns=("PJSIP/agent-*",))),
            standards=lambda _queue, _dialed: standards,
        )
        sounds = lambda key: "pbx-agent/zh/" + key.replace(".", "-")  # noqa: E731
        registry = HookRegistry()
        server = FastAgiServer(registry, port=0)
        await server.start()
        host, port = pbx.ami_address
        adapter = AsteriskAdapter(
            AmiSettings(host, port, pbx.username, pbx.secret),
            AsteriskOptions(sounds=sounds, agi_url=f"agi://127.0.0.1:{server.port}"),
            handle_event=engine.handle,
        )
        engine.executor = adapter

        async def callbacks(command: cmd.RequestCallback, _call: object) -> None:
            requested.append(command)

        engine.register_service(cmd.RequestCallback, callbacks)
        music = param.get("music", MUSIC)
        if isinstance(music, dict):
            pbx.switch.sound_lengths.update({m.sound: m.length_s for m in music.values()})
        hook = HoldProgramHook(
            adapter,
            music=music,
            sounds=sounds,
            clock=clock,
            on_prompt_done=lambda leg, prompt, ok: engine.handle(
                ev.PromptFinished(leg, prompt, ok)
            ),
        )
        if param.get("hook", True):
            registry.register(hook.spec())
        await adapter.start()
        await pbx.wait_for_login()
        try:
            yield Rig(pbx, engine, adapter, server, clock, requested)
        finally:
            # The customers hang up first: every hold program ends as it would on Asterisk.
            for leg in pbx.legs:
                if leg.alive and not leg.name.startswith("Local/"):
                    await leg.hangup()
            await pbx.switch.wait_until(lambda: server.active_sessions == 0, 5)
            await engine.close()
            await adapter.close()
            await server.close()


def originates_to(actions: list[AmiMessage], context: str) -> list[AmiMessage]:
    return [
        a for a in actions if a.name == "Originate" and f"@{context}/" in (a.get("Channel") or "")
    ]


def test_shipped_dialplan_spies_with_the_measured_options() -> None:
    """hold and whisper spy with qwE, barge with qBE; no MusicOnHold anywhere (trace 04e)."""
    plan = shipped_dialplan()
    assert ("ChanSpy", "${PBXAGENT_SPY_TARGET},qwE") in plan[("pbxagent-hold", "hold")]
    assert ("ChanSpy", "${PBXAGENT_SPY_TARGET},qwE") in plan[("pbxagent-whisper", "whisper")]
    assert ("ChanSpy", "${PBXAGENT_SPY_TARGET},qBE") in plan[("pbxagent-whisper", "barge")]
    apps = {app.lower() for steps in plan.values() for app, _ in steps}
    assert not apps & {"musiconhold", "startmusiconhold", "setmusiconhold"}


async def test_hold_originates_one_program_channel_spying_on_the_held_customer(rig: Rig) -> None:
    """At Hold: exactly one Originate of Local/hold@pbxagent-hold/n running the hold_program
    hook, spying on the customer's channel."""
    caller, agent = await rig.call()
    before = len(rig.pbx.received)
    await caller.hold(by=agent)
    originate = await rig.pbx.wait_for_action("Originate", after=before)
    assert originate.get("Channel") == "Local/hold@pbxagent-hold/n"
    assert originate.get("Application") == "AGI"
    data = originate.get("Data") or ""
    assert data.startswith(f"agi://127.0.0.1:{rig.server.port}/hold_program?program=")
    assert originate.get_all("Variable") == [f"PBXAGENT_SPY_TARGET={caller.name}"]
    await rig.wait_agi(lambda c: any("hold-music" in x for x in c))
    assert len(originates_to(rig.actions_after(before), "pbxagent-hold")) == 1


async def test_program_plays_announcement_music_and_reminder_as_files(rig: Rig) -> None:
    """The hook answers, streams the announcement, then music from an offset, then the reminder."""
    caller, agent = await rig.call()
    await caller.hold(by=agent)
    await rig.wait_agi(lambda c: sum("hold-reminder" in x for x in c) >= 1)
    commands = [c for c in rig.agi_commands() if not c.startswith("GET VARIABLE")]
    assert commands[0] == "ANSWER"
    assert commands[1] == 'STREAM FILE pbx-agent/zh/hold-announce ""'
    music = re.fullmatch(r'STREAM FILE pbx-agent/hold-music "" ?(\d*)', commands[2])
    assert music is not None
    # The gap to the 10 s reminder is 7.5 s less however late the program started (the
    # Originate, the spy attaching and the AGI connection take a moment): that much of the
    # 7.5 s file is skipped, so the reminder still starts at 10 s. How late the start was
    # depends on the machine's load, so only the bound that matters is checked: the skip
    # stays inside the file (a skip past its end would mean the reminder is already late).
    assert 0 <= int(music.group(1) or 0) < 7.5 * 8000
    assert commands[3] == 'STREAM FILE pbx-agent/zh/hold-reminder ""'
    assert not any("MusicOnHold" in c or "SET MUSIC" in c for c in commands)


QUIET = HoldMusic("pbx-agent/hold-music-quiet", 7.5)


@pytest.mark.parametrize("rig", [{"music": {"": MUSIC, "quiet": QUIET}}], indirect=True)
async def test_the_held_channels_music_class_picks_its_music(rig: Rig) -> None:
    """A customer whose CHANNEL(musicclass) is ``quiet`` hears hold-music-quiet: Asterisk
    names the class in MusicOnHoldStart just after Hold (04a), after the program started."""
    caller, agent = await rig.call(music_class="quiet")
    await caller.hold(by=agent)
    await rig.wait_agi(lambda c: sum("hold-reminder" in x for x in c) >= 1)
    music = [c for c in rig.agi_commands() if "hold-music" in c]
    assert music
    assert all(c.startswith('STREAM FILE pbx-agent/hold-music-quiet ""') for c in music)


@pytest.mark.parametrize("rig", [{"music": {"": MUSIC, "quiet": QUIET}}], indirect=True)
async def test_a_class_without_its_own_music_hears_the_default(rig: Rig) -> None:
    caller, agent = await rig.call(music_class="sales")
    await caller.hold(by=agent)
    await rig.wait_agi(lambda c: sum("hold-reminder" in x for x in c) >= 1)
    music = [c for c in rig.agi_commands() if "hold-music" in c]
    assert music
    assert all(c.startswith('STREAM FILE pbx-agent/hold-music ""') for c in music)


async def test_unhold_hangs_the_program_up_and_nothing_plays_after(rig: Rig) -> None:
    """At Unhold the daemon hangs the program channel up (cutting the segment that is playing),
    then barges the thanks; the program issues no command afterwards."""
    caller, agent = await rig.call()
    await caller.hold(by=agent)
    # Unhold while a music segment is playing.
    await rig.wait_agi(lambda c: any("hold-music" in x for x in c), event="AGIExecStart")
    program = (await rig.pbx.wait_for_action("Originate")).get("ChannelId")
    before = len(rig.pbx.received)
    await caller.unhold(by=agent)
    hangup = await rig.pbx.wait_for_action("Hangup", after=before)
    thanks = await rig.pbx.wait_for_action("Originate", after=before)
    after = rig.actions_after(before)
    assert [a.name for a in after] == ["Hangup", "Originate"]
    assert hangup.get("Channel", "").startswith("Local/hold@pbxagent-hold-")
    assert hangup.get("Channel", "").endswith(";1")
    assert thanks.get("Channel") == "Local/barge@pbxagent-whisper/n"
    assert thanks.get("Data") == "pbx-agent/zh/hold-resume"
    assert thanks.get_all("Variable") == [f"PBXAGENT_SPY_TARGET={caller.name}"]
    result = await rig.hold_session()
    last = result.commands[-1]
    assert last.line.startswith("STREAM FILE pbx-agent/hold-music")
    # The daemon did not wait for the segment to end: the helper's Hangup event comes before
    # the end of the STREAM FILE that was playing (on Asterisk the hang-up cuts it at once).
    events = rig.pbx.events
    helper_gone = next(
        i
        for i, e in enumerate(events)
        if e.get("Event") == "Hangup" and e.get("Channel") == hangup.get("Channel")
    )
    segment_end = max(
        i
        for i, e in enumerate(events)
        if e.get("Event") == "AGIExecEnd" and e.get("Command") == last.line
    )
    assert helper_gone < segment_end
    assert program and rig.adapter.program(program) is None
    await asyncio.sleep(20 * SCALE)
    assert originates_to(rig.actions_after(before), "pbxagent-hold") == []
    assert len(rig.hold_results()) == 1


async def test_customer_hanging_up_on_hold_ends_the_program_without_further_actions(
    rig: Rig,
) -> None:
    """The held customer hangs up: the program ends at once (the daemon hangs it up as the
    customer leaves the bridge, ChanSpy's E would end it anyway); no new helper, no thanks."""
    caller, agent = await rig.call()
    await caller.hold(by=agent)
    await rig.wait_agi(lambda c: any("hold-music" in x for x in c))
    before = len(rig.pbx.received)
    await caller.hangup()
    await rig.hold_session()
    await asyncio.sleep(10 * SCALE)
    after = rig.actions_after(before)
    assert [a.name for a in after if a.name == "Originate"] == []
    hangups = [a.get("Channel") or "" for a in after if a.name == "Hangup"]
    assert len(hangups) <= 1
    assert all(h.startswith("Local/hold@pbxagent-hold-") for h in hangups)
    assert not any(leg.alive and leg.name.startswith("Local/hold@") for leg in rig.pbx.legs)


async def test_two_holds_run_two_programs_one_after_the_other(rig: Rig) -> None:
    """Each hold gets its own program, and the first is gone before the second starts."""
    caller, agent = await rig.call()
    await caller.hold(by=agent)
    await rig.wait_agi(lambda c: any("hold-music" in x for x in c))
    await caller.unhold(by=agent)
    await rig.hold_session(1)
    await caller.hold(by=agent)
    await rig.wait_agi(lambda c: sum("hold-announce" in x for x in c) >= 2)
    await caller.unhold(by=agent)
    await rig.hold_session(2)
    holds = originates_to([r.message for r in rig.pbx.received], "pbxagent-hold")
    hangups = [a for a in rig.pbx.actions if a.name == "Hangup"]
    assert len(holds) == 2 and len(hangups) == 2
    assert holds[0].get("ChannelId") != holds[1].get("ChannelId")


SHORT_LIMIT = {"standards": {"hold": {"tier_limits_s": {"specialist": 20, "senior": 30}}}}


@pytest.mark.parametrize("rig", [SHORT_LIMIT], indirect=True)
async def test_over_limit_hold_alerts_the_agent_and_the_offer_taken_registers_a_callback(
    rig: Rig,
) -> None:
    """At the tier limit: UserEvent PbxAgentAlert and a whisper to the agent's channel only; the
    program offers the callback; the customer presses 1: the callback is requested, the program
    is replaced by one that confirms it, and the desktop is told."""
    caller, agent = await rig.call()
    before = len(rig.pbx.received)
    await caller.hold(by=agent)
    alert = await rig.pbx.wait_for_action("UserEvent", after=before, timeout_s=5)
    assert (alert.get("UserEvent"), alert.get("Alert")) == ("PbxAgentAlert", "hold_limit")
    assert alert.get("Channel") == agent.name
    whisper = await rig.pbx.wait_for_action(
        "Originate", after=before, where=lambda a: "pbxagent-whisper" in (a.get("Channel") or "")
    )
    assert whisper.get("Channel") == "Local/whisper@pbxagent-whisper/n"
    assert whisper.get("Data") == "pbx-agent/zh/hold-agent_limit"
    assert whisper.get_all("Variable") == [f"PBXAGENT_SPY_TARGET={agent.name}"]
    await rig.wait_agi(lambda c: any("hold-callback_offer" in x for x in c))
    pressed = len(rig.pbx.received)
    await caller.dtmf("1")
    await rig.pbx.switch.wait_until(lambda: len(rig.callbacks_requested) == 1, 5)
    (request,) = rig.callbacks_requested
    assert request.number == "79161234567"
    assert request.promised_deadline is None  # the customer's request: dialled soon
    taken = await rig.pbx.wait_for_action(
        "UserEvent", after=pressed, where=lambda a: a.get("Alert") == "callback_offer_taken"
    )
    assert taken.get("Channel") == agent.name
    after = rig.actions_after(pressed)
    assert [a.name for a in after][:3] == ["Hangup", "Originate", "UserEvent"]
    assert after[0].get("Channel", "").startswith("Local/hold@pbxagent-hold-")
    assert after[1].get("Channel") == "Local/hold@pbxagent-hold/n"
    await rig.wait_agi(lambda c: any("hold-callback_registered" in x for x in c))
    # The first program's session is over; the second one still runs.
    assert len(rig.hold_results()) == 1


@pytest.mark.parametrize("rig", [{"hook": False}], indirect=True)
async def test_a_program_that_cannot_run_is_restarted_twice_then_given_up(rig: Rig) -> None:
    """The FastAGI hook is not served, so each program channel ends at once: the adapter
    reports it, the policy starts a new program twice, then gives up; the hold goes on."""
    caller, agent = await rig.call()
    decisions: list[str] = []
    rig.engine.on_decision(lambda d: decisions.append(d.action))
    await caller.hold(by=agent)
    await rig.pbx.switch.wait_until(lambda: "hold_program_lost" in decisions, 5)
    holds = originates_to(rig.pbx.actions, "pbxagent-hold")
    assert len(holds) == 3
    assert decisions.count("start_hold_program") == 3
    await caller.unhold(by=agent)
    await rig.pbx.switch.wait_until(lambda: "play_prompt" in decisions, 5)
    assert len(originates_to(rig.pbx.actions, "pbxagent-hold")) == 3


async def test_a_refused_program_originate_is_retried_like_a_lost_program(rig: Rig) -> None:
    """Asterisk refuses the program's Originate: the policy is told at once, starts a new
    program twice (each refused too), then gives up."""
    rig.pbx.refuse_actions.add("Originate")
    caller, agent = await rig.call()
    decisions: list[str] = []
    rig.engine.on_decision(lambda d: decisions.append(d.action))
    await caller.hold(by=agent)
    async with asyncio.timeout(5):  # refusals change nothing on the switch: poll
        while "hold_program_lost" not in decisions:
            await asyncio.sleep(0.01)
    assert len(originates_to(rig.pbx.actions, "pbxagent-hold")) == 3
    assert decisions.count("start_hold_program") == 3


async def test_a_music_file_shorter_than_assumed_is_learnt_not_spun_on(rig: Rig) -> None:
    """The switch's file is 3 s where the daemon assumed 7.5 s: its real end (endpos) corrects
    the length at once, instead of STREAM FILE returning at once over and over in silence."""
    rig.pbx.switch.sound_lengths["pbx-agent/hold-music"] = 3.0
    caller, agent = await rig.call()
    with capture_logs() as logs:
        await caller.hold(by=agent)
        await rig.wait_agi(lambda c: sum("hold-reminder" in x for x in c) >= 1)
    commands = [c for c in rig.agi_commands() if c.startswith("STREAM FILE")]
    first_reminder = next(i for i, c in enumerate(commands) if "hold-reminder" in c)
    music_before = [c for c in commands[:first_reminder] if "hold-music" in c]
    assert 1 <= len(music_before) <= 5, music_before
    corrected = [e for e in logs if e["event"] == "hold_music_length_corrected"]
    assert corrected and corrected[0]["real_s"] == 3.0


async def test_a_user_without_system_is_told_the_hold_program_needs_it(rig: Rig) -> None:
    """An AMI user with originate but not system: Asterisk refuses to Originate into AGI
    ("Originate Access Forbidden"); the log names the missing class and where to add it,
    and the programs are given up like refused ones."""
    rig.pbx.write_classes = {"call", "originate", "reporting", "user"}
    caller, agent = await rig.call()
    decisions: list[str] = []
    rig.engine.on_decision(lambda d: decisions.append(d.action))
    with capture_logs() as logs:
        await caller.hold(by=agent)
        async with asyncio.timeout(5):  # refusals change nothing on the switch: poll
            while "hold_program_lost" not in decisions:
                await asyncio.sleep(0.01)
    denied = [e for e in logs if e["event"] == "ami_permission_denied"]
    assert denied
    assert denied[0]["ami_action"] == "Originate"
    error = str(denied[0]["error"])
    assert "Originate Access Forbidden: Application" in error
    assert "lacks the write class 'system'" in error
    assert "manager.conf" in error

"""The FreeSWITCH resync (``show channels as json`` after a (re)connect) at its edges: legs
hanging up, legs created while it runs, listener legs, bridges the rows do not show, events
right behind the rows, and what the daemon awaited while the link was down (a broadcast's
end, a callback's BACKGROUND_JOB)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.lab.freeswitch_driver import LISTENER_DIAL
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.pbx.esl_client import EslSettings
from pbx_agent.pbx.freeswitch import FreeswitchAdapter, FreeswitchOptions
from pbx_agent.pbx.freeswitch_events import FreeswitchTranslator
from pbx_agent.testing.fake_callcenter import FakeCallcenter
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch
from pbx_agent.testing.fake_freeswitch_model import new_uuid
from pbx_agent.wire.esl import EslEvent
from tests.pbx.recording import Recorder, until

CALLER = "c0000000-0000-4000-8000-000000000001"
AGENT = "c0000000-0000-4000-8000-000000000002"
LISTENER = "c0000000-0000-4000-8000-000000000003"


@dataclass
class Daemon:
    engine: Engine
    adapter: FreeswitchAdapter
    recorder: Recorder

    def alive_legs(self) -> dict[str, bool]:
        return {str(leg.id): leg.end is None for leg in self.engine.model.legs.values()}


@pytest.fixture
async def fs() -> AsyncIterator[FakeFreeSwitch]:
    async with FakeFreeSwitch(time_scale=0.01, playback_s=20.0) as fake:
        yield fake


@contextlib.asynccontextmanager
async def daemon(
    fs: FakeFreeSwitch, *, start: bool = True, prompt_s: float = 3.0
) -> AsyncIterator[Daemon]:
    recorder = Recorder()
    clock = LoopClock()
    engine = Engine(clock=clock, policies=[recorder])
    settings = EslSettings(
        host="127.0.0.1",
        port=fs.port,
        command_timeout_s=1.0,
        connect_timeout_s=0.5,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    options = FreeswitchOptions(sounds=lambda k: k, prompt_seconds=lambda _k: prompt_s)
    adapter = FreeswitchAdapter(settings, options, handle_event=engine.handle, clock=clock)
    engine.executor = adapter
    d = Daemon(engine, adapter, recorder)
    try:
        if start:
            await adapter.start()
            await until(lambda: adapter.client.connections == 1, "the first connection")
        yield d
    finally:
        await engine.close()
        await adapter.close()


async def reconnect(fs: FakeFreeSwitch, d: Daemon) -> None:
    before = d.adapter.client.connections
    fs.drop_connections()
    await until(lambda: d.adapter.client.connections == before + 1, "the reconnect")
    await asyncio.sleep(0.2)


def event(*headers: tuple[str, str]) -> EslEvent:
    return EslEvent(headers)


def created(uid: str, *extra: tuple[str, str]) -> EslEvent:
    return event(
        ("Event-Name", "CHANNEL_CREATE"),
        ("Unique-ID", uid),
        ("Channel-Name", f"sofia/internal/{uid}@127.0.0.1"),
        ("Call-Direction", "inbound"),
        *extra,
    )


def row(uid: str, call: str, callstate: str = "ACTIVE", **extra: str) -> dict[str, str]:
    out = {
        "uuid": uid,
        "call_uuid": call,
        "callstate": callstate,
        "state": "CS_EXECUTE",
        "application": "",
        "direction": "inbound",
        "name": f"sofia/internal/{uid}@127.0.0.1",
    }
    out.update(extra)
    return out


# -- 1. legs hanging up ---------------------------------------------------------------------


def test_rows_of_legs_hanging_up_are_not_live() -> None:
    """Between CHANNEL_HANGUP and CHANNEL_DESTROY the switch still lists a leg (03b): a
    HANGUP call state, a hang-up channel state, or a hang-up already seen is not alive."""
    translator = FreeswitchTranslator()
    translator.feed(created("seen"), 0.0)
    translator.feed(
        event(("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", "seen"), ("Hangup-Cause", "X")), 0.1
    )
    rows = [
        row("alive", "alive"),
        row("dying", "dying", "HANGUP"),
        row("reporting", "reporting", state="CS_REPORTING"),
        row("hangup-state", "hangup-state", state="CS_HANGUP"),
        row("seen", "seen"),
    ]
    assert [str(live.created.leg) for live in translator.live_legs(rows)] == ["alive"]


def test_a_destroy_without_a_hangup_hangs_the_leg_up() -> None:
    """A leg whose CHANNEL_HANGUP never reached the daemon hangs up at its CHANNEL_DESTROY,
    with that event's cause; a helper leg still produces no party event."""
    translator = FreeswitchTranslator()
    translator.feed(created("a"), 0.0)
    translator.feed(created("h", ("variable_pbx_agent_helper", "listen")), 0.0)
    destroy = event(
        ("Event-Name", "CHANNEL_DESTROY"), ("Unique-ID", "a"), ("Hangup-Cause", "USER_BUSY")
    )
    assert translator.feed(destroy, 1.0) == [ev.LegHungUp(ev.LegId("a"), 17, "USER_BUSY")]
    assert "a" not in translator.legs
    helper = event(("Event-Name", "CHANNEL_DESTROY"), ("Unique-ID", "h"))
    assert translator.feed(helper, 1.0) == []
    # After its hang-up, the destroy says nothing more.
    translator.feed(created("b"), 2.0)
    translator.feed(event(("Event-Name", "CHANNEL_HANGUP"), ("Unique-ID", "b")), 2.0)
    assert translator.feed(event(("Event-Name", "CHANNEL_DESTROY"), ("Unique-ID", "b")), 2.1) == []


async def test_a_reconnect_does_not_bring_back_a_leg_hanging_up(fs: FakeFreeSwitch) -> None:
    """The leg hung up (the call ended in the engine) and is not destroyed yet when the
    daemon reconnects: it stays ended, and its destroy changes nothing."""
    async with daemon(fs) as d:
        fs.model.on_hangup = None  # the hangup does not complete yet (03b)
        caller = fs.inbound_call("79161234567", "Ivan", "100")
        await until(lambda: "CallStarted" in d.recorder.kinds(), "the call")
        fs.model.hangup(caller, "NORMAL_CLEARING")
        fs.model.set_call_state(caller, "HANGUP")
        await until(lambda: "CallEnded" in d.recorder.kinds(), "the end of the call")
        await reconnect(fs, d)
        assert d.engine.model.calls == {}
        fs.model.reporting(caller)
        fs.model.destroy(caller)
        await asyncio.sleep(0.1)
        assert d.engine.model.calls == {}
        assert d.recorder.kinds().count("CallStarted") == 1


async def test_a_leg_hanging_up_at_startup_is_not_adopted(fs: FakeFreeSwitch) -> None:
    """Started while a leg hangs up: the resync does not adopt it."""
    fs.model.on_hangup = None
    caller = fs.inbound_call("79161234567", "Ivan", "100")
    fs.model.hangup(caller, "NORMAL_CLEARING")
    fs.model.set_call_state(caller, "HANGUP")
    async with daemon(fs) as d:
        await asyncio.sleep(0.1)
        assert d.alive_legs() == {}
        fs.model.reporting(caller)
        fs.model.destroy(caller)
        await asyncio.sleep(0.1)
        assert d.engine.model.calls == {}


# -- 2. legs created while the resync runs ---------------------------------------------------


async def test_a_leg_created_during_the_resync_stays_alive(fs: FakeFreeSwitch) -> None:
    """A CHANNEL_CREATE that reaches the daemon while ``show channels`` runs, its leg missing
    from the rows: the leg is neither forgotten nor reported gone."""
    async with daemon(fs) as d:
        state: dict[str, Any] = {}
        real = d.adapter.client.list_channels

        async def lagging_list(**kw: Any) -> Any:
            rows = await real(**kw)  # the table as the switch's SQL had it
            if d.adapter.client.connections == 2 and "caller" not in state:
                state["caller"] = fs.inbound_call("79161234567", "Ivan", "100")
                await until(lambda: state["caller"].uuid in d.adapter.translator.legs, "create")
            return rows

        d.adapter.client.list_channels = lagging_list  # type: ignore[method-assign]
        await reconnect(fs, d)
        uid = state["caller"].uuid
        assert uid in d.adapter.translator.legs
        assert d.alive_legs() == {uid: True}
        assert d.recorder.kinds() == ["CallStarted"]


# -- 3. listener legs ------------------------------------------------------------------------


def test_a_known_helper_stays_a_helper_and_is_never_bridged() -> None:
    """Rows carry no variables: a leg the translator knows as a helper is still one, and
    its bridge with the lone caller is not reported."""
    translator = FreeswitchTranslator()
    translator.feed(created("a"), 0.0)
    translator.feed(
        created("h", ("variable_pbx_agent_helper", "listen"), ("Channel-Call-UUID", "a")), 0.0
    )
    rows = [
        row("a", "a", application="bridge"),
        row("h", "a", direction="outbound", name="sofia/internal/listen@127.0.0.1"),
    ]
    live = translator.live_legs(rows)
    assert [(str(x.created.leg), x.created.origin, x.bridge) for x in live] == [
        ("a", None, None),
        ("h", "helper", None),
    ]


def test_an_unknown_listener_is_known_by_its_profile() -> None:
    """Started mid-call: the listener's legs are on the ``pbxagent`` profile. They are
    helpers, the caller is alone, and the talk the listener hears is the caller's."""
    translator = FreeswitchTranslator()
    rows = [
        row("a", "a", application="bridge"),
        row(
            "h",
            "a",
            direction="outbound",
            name="sofia/pbxagent/pbxagent_listen@127.0.0.1:5097",
            dest="pbxagent_listen",
        ),
        row("far", "far", application="park", name="sofia/pbxagent/100@127.0.0.1"),
    ]
    live = translator.live_legs(rows)
    assert [(str(x.created.leg), x.created.origin, x.bridge) for x in live] == [
        ("a", None, None),
        ("h", "helper", None),
        ("far", "helper", None),
    ]
    assert not translator.bridged_to_party("a")
    talk = translator.feed(event(("Event-Name", "TALK"), ("Unique-ID", "h")), 1.0)
    assert talk == [ev.TalkingStarted(ev.LegId("a"))]


async def test_a_daemon_started_beside_a_listener_sees_a_lone_caller(fs: FakeFreeSwitch) -> None:
    """A caller bridged to the listener when the daemon starts, then a reconnect: no agent,
    no PartiesConnected."""
    caller = fs.inbound_call("79161234567", "Ivan", "100")
    fs.answer(caller)
    listener = await fs.bridge(caller, LISTENER_DIAL)
    assert listener is not None
    async with daemon(fs) as d:
        await until(lambda: len(d.engine.model.legs) == 2, "the resync")
        await reconnect(fs, d)
        roles = {str(leg.id): leg.role for leg in d.engine.model.legs.values()}
        assert roles == {caller.uuid: cm.Role.CALLER, listener.uuid: cm.Role.HELPER}
        assert "PartiesConnected" not in d.recorder.kinds()
        assert all(leg.bridge is None for leg in d.engine.model.legs.values())


# -- 4. bridges the rows do not show ----------------------------------------------------------


async def bridged_call(fs: FakeFreeSwitch, d: Daemon) -> tuple[Any, Any]:
    """A caller bridged to agent-1001, the daemon having seen them connected."""
    caller = fs.inbound_call("79161234567", "Ivan", "100")
    agent = await fs.bridge(caller, "sofia/internal/agent-1001@127.0.0.1")
    assert agent is not None
    await until(lambda: "PartiesConnected" in d.recorder.kinds(), "the bridge")
    return caller, agent


async def test_a_bridge_after_hold_music_survives_a_reconnect(fs: FakeFreeSwitch) -> None:
    """After hold music the A-leg's application is no longer ``bridge``: the legs the
    translator knows as peers stay bridged."""
    async with daemon(fs) as d:
        caller, agent = await bridged_call(fs, d)
        fs.hold(agent)
        await until(lambda: d.adapter.translator.hears_hold_music(caller.uuid), "hold music")
        fs.unhold(agent)
        await until(lambda: not d.adapter.translator.hears_hold_music(caller.uuid), "unhold")
        seen = len(d.recorder.seen)
        await reconnect(fs, d)
        assert "PartiesSeparated" not in d.recorder.kinds()[seen:]
        bridges = {leg.bridge for leg in d.engine.model.legs.values()}
        assert len(bridges) == 1
        assert None not in bridges


async def outage(fs: FakeFreeSwitch, d: Daemon, during: Any) -> None:
    """The Event Socket goes down (nothing is sent or heard), ``during`` happens on the
    switch, the link comes back and the daemon resyncs."""
    before = d.adapter.client.connections
    fs.freeze()
    fs.drop_connections()
    await until(lambda: not d.adapter.client.connected, "the drop")
    done = during()
    if asyncio.iscoroutine(done):
        await done
    fs.thaw()
    await until(lambda: d.adapter.client.connections == before + 1, "the reconnect")
    await asyncio.sleep(0.2)


def speech_on(d: Daemon, leg: str) -> int:
    return sum(1 for e in d.recorder.seen if isinstance(e, cm.SpeechStarted) and e.leg == leg)


async def talk_is_heard(fs: FakeFreeSwitch, d: Daemon, leg: Any) -> bool:
    before = speech_on(d, leg.uuid)
    fs.talk(leg, talking=True)
    await asyncio.sleep(0.3)
    fs.talk(leg, talking=False)
    await asyncio.sleep(0.3)
    return speech_on(d, leg.uuid) > before


async def test_hold_music_of_a_hold_taken_again_during_an_outage_ends_at_the_unhold(
    fs: FakeFreeSwitch,
) -> None:
    """The agent resumes and holds again while the link is down (the first music's end is
    lost, the second music has another id); after the resync the agent's unhold ends the
    customer's music, and talk on the customer's leg is heard again."""
    async with daemon(fs) as d:
        caller, agent = await bridged_call(fs, d)
        fs.hold(agent)
        await until(lambda: d.adapter.translator.hears_hold_music(caller.uuid), "hold music")

        def resume_and_hold_again() -> None:
            fs.unhold(agent)
            fs.hold(agent)

        await outage(fs, d, resume_and_hold_again)
        assert d.adapter.translator.hears_hold_music(caller.uuid)
        fs.unhold(agent)
        await until(lambda: not d.adapter.translator.hears_hold_music(caller.uuid), "unhold")
        assert await talk_is_heard(fs, d, caller)


async def test_a_caller_handed_to_another_agent_during_an_outage_hears_the_new_one(
    fs: FakeFreeSwitch,
) -> None:
    """The first agent leaves and a second one is bridged to the caller while the link is
    down: after the resync the caller's leg is paired with the second agent, so talk on it
    is heard (it was dropped as unpaired, the dead-air rule then seeing silence)."""
    async with daemon(fs) as d:
        caller, first = await bridged_call(fs, d)
        second: list[Any] = []

        async def hand_over() -> None:
            fs.model.unbridge(caller, first, b_cause="NORMAL_CLEARING")
            fs.model.end_alone(first, "NORMAL_CLEARING")
            second.append(await fs.bridge(caller, "sofia/internal/agent-1002@127.0.0.1"))

        await outage(fs, d, hand_over)
        assert d.adapter.translator.peer_of(caller.uuid) == second[0].uuid
        assert await talk_is_heard(fs, d, caller)


async def callcenter_call_connected_during_an_outage(
    fs: FakeFreeSwitch, d: Daemon, *, agent_name: str = "1001@default"
) -> cm.Call:
    """A caller waits in mod_callcenter's support@default; the module bridges the agent
    while the link is down (its bridge-agent-start lost with it): the call after the resync."""
    caller = fs.inbound_call("79161234567", "Ivan", "100")
    fs.model.unpark(caller)
    fs.model.execute(caller, "callcenter", "support@default", new_uuid())
    await until(lambda: "CallStarted" in d.recorder.kinds(), "the call")

    def agent_answers() -> None:
        agent = fs.model.outbound(
            "sofia/internal/agent-1001@127.0.0.1",
            uuid=None,
            caller_number=caller.caller_number,
            caller_name="",
            variables={},
            originator=caller,
        )
        fs.model.answer(agent)
        fs.model.bridge(caller, agent)
        fs.callcenter.bridged(agent_name, "support@default", agent.uuid)

    await outage(fs, d, agent_answers)
    [call] = d.engine.model.calls.values()
    return call


async def test_a_callcenter_call_connected_during_an_outage_is_connected_after_it(
    fs: FakeFreeSwitch,
) -> None:
    """The caller waits in mod_callcenter (its application is ``callcenter``, not
    ``bridge``); an agent answers and is bridged by the module while the link is down. The
    resync's rows pair them (same call_uuid, both answered): the call is connected, so its
    holds, dead air and figures are followed, not a lone caller's."""
    async with daemon(fs) as d:
        call = await callcenter_call_connected_during_an_outage(fs, d)
        assert "PartiesConnected" in d.recorder.kinds()
        assert call.agent is not None and call.connected_at is not None


async def test_a_callcenter_agent_found_by_the_resync_is_named_as_the_module_names_it(
    fs: FakeFreeSwitch,
) -> None:
    """The agent's bridge-agent-start was lost in the outage: the resync reads the module's
    agent and tier lists, so the agent is 1001@default of support@default (as the live path
    names them: tier limit, figures, a callback's queue), not the device."""
    fs.callcenter.add_agent("1001@default", "user/1001", ("sales@default", "support@default"))
    async with daemon(fs) as d:
        call = await callcenter_call_connected_during_an_outage(fs, d)
        await until(lambda: call.queue is not None, "the agent named")
        assert call.agent_leg is not None
        assert (call.agent_leg.agent, call.queue) == ("1001@default", "support@default")
        assert "callcenter_config agent list" in [c.args for c in fs.commands_for("api")]


async def test_an_agent_hanging_up_while_the_lists_are_awaited_is_not_named(
    fs: FakeFreeSwitch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent hangs up right as the module's lists are read (its hang-up ahead of the
    answer): no agent is named on a leg that is gone."""
    fs.callcenter.add_agent("1001@default", "user/1001", ("support@default",))
    real = FakeCallcenter.api
    hung_up: list[str] = []

    def hang_up_then_list(self: FakeCallcenter, args: str) -> str:
        listing = real(self, args)  # the module's tables still say "In a queue call"
        agent = fs.channel(self.agents["1001@default"]["uuid"])
        if agent is not None and agent.state != "CS_DESTROY":
            hung_up.append(agent.uuid)
            fs.model.end_alone(agent, "NORMAL_CLEARING")
        return listing

    monkeypatch.setattr(FakeCallcenter, "api", hang_up_then_list)
    async with daemon(fs) as d:
        with capture_logs() as logs:
            call = await callcenter_call_connected_during_an_outage(fs, d)
        assert hung_up  # the lists were read, the agent gone by then
        assert not [e for e in logs if e["event"] == "agents_unidentified"]
        assert call.queue is None
        assert not d.adapter.translator.named_agents


async def test_without_mod_callcenter_the_agent_stays_named_by_its_device(
    fs: FakeFreeSwitch,
) -> None:
    """No mod_callcenter (its api command not found): the resync says so once and goes on;
    the call is connected, its agent named by the device."""
    fs.callcenter.loaded = False
    async with daemon(fs) as d:
        with capture_logs() as logs:
            call = await callcenter_call_connected_during_an_outage(fs, d)
        assert call.agent is not None and call.connected_at is not None
        assert call.queue is None
        [unidentified] = [e for e in logs if e["event"] == "agents_unidentified"]
        assert "Command not found" in unidentified["reason"]
        assert any(e["event"] == "pbx_resynced" for e in logs)


# -- 5. events right behind the rows ----------------------------------------------------------


async def test_a_bridge_formed_right_behind_the_channel_list_is_kept(fs: FakeFreeSwitch) -> None:
    """The agent's leg rings when the rows are taken, answers and is bridged right behind
    the reply (its events in the same read): the older rows do not part the two."""
    async with daemon(fs) as d:
        caller = fs.inbound_call("79161234567", "Ivan", "100")
        fs.model.unpark(caller)
        dial = "sofia/internal/agent-1001@127.0.0.1"
        fs.model.execute(caller, "bridge", dial, "c0000000-0000-4000-8000-0000000000a1")
        agent = fs.model.outbound(
            dial, uuid=None, caller_number="79161234567", caller_name="", variables={},
            originator=caller,
        )  # fmt: skip
        await until(lambda: len(d.engine.model.legs) == 2, "the ringing agent")

        def behind() -> None:
            fs.model.answer(agent)
            fs.model.bridge(caller, agent)

        fs.after_channel_list = behind
        await reconnect(fs, d)
        assert fs.after_channel_list is None
        legs = d.engine.model.legs
        bridges = [legs[ev.LegId(caller.uuid)].bridge, legs[ev.LegId(agent.uuid)].bridge]
        assert bridges[0] is not None
        assert bridges[0] == bridges[1]
        assert "PartiesSeparated" not in d.recorder.kinds()
        assert d.adapter.translator.bridged_to_party(caller.uuid)


async def test_a_bridge_ended_right_behind_the_channel_list_stays_ended(
    fs: FakeFreeSwitch,
) -> None:
    """Both legs stay up after their bridge ends right behind the reply: the rows (the
    A-leg still runs ``bridge``) do not join them again."""
    async with daemon(fs) as d:
        caller, agent = await bridged_call(fs, d)
        fs.after_channel_list = lambda: fs.model.unbridge(caller, agent, b_cause="NORMAL_CLEARING")
        await reconnect(fs, d)
        legs = d.engine.model.legs
        assert [legs[ev.LegId(u)].bridge for u in (caller.uuid, agent.uuid)] == [None, None]
        assert d.adapter.translator.peer_of(caller.uuid) is None
        assert d.adapter.translator.peer_of(agent.uuid) is None


async def test_an_answer_right_behind_the_channel_list_is_kept(fs: FakeFreeSwitch) -> None:
    """A call that arrived while the link was down rings in the rows and is answered right
    behind the reply: it is answered in the daemon (the translator did not know the leg
    when its CHANNEL_ANSWER came)."""
    async with daemon(fs) as d:
        before = d.adapter.client.connections
        fs.freeze()
        fs.drop_connections()
        caller = fs.inbound_call("79161234567", "Ivan", "100", answer=False)
        fs.after_channel_list = lambda: fs.answer(caller)
        fs.thaw()
        await until(lambda: d.adapter.client.connections == before + 1, "the reconnect")
        await until(lambda: fs.after_channel_list is None, "the rows")
        await asyncio.sleep(0.1)
        assert caller.answered
        assert d.engine.model.legs[ev.LegId(caller.uuid)].answered
        assert d.adapter.translator.legs[caller.uuid].answered


# -- 6. what was awaited while the link was down ----------------------------------------------


async def play(d: Daemon, fs: FakeFreeSwitch, caller: Any) -> None:
    """PlayPrompt to the lone caller: a ``uuid_broadcast`` (its end: EXECUTE_COMPLETE)."""
    call = next(iter(d.engine.model.calls.values()))
    await d.engine.execute_now(
        cmd.PlayPrompt(ev.LegId(caller.uuid), "silent.prompt", cmd.Audience.LEG),
        call_id=call.id,
        rule="R2",
        policy="test",
    )
    await until(lambda: fs.running_app(caller) == "playback", "the broadcast")


def prompts_done(d: Daemon) -> list[tuple[str, str, bool]]:
    done = [e for e in d.recorder.seen if isinstance(e, cm.PromptDone)]
    return [(str(e.leg), e.prompt, e.ok) for e in done]


async def test_a_broadcast_that_ended_while_the_link_was_down_is_finished() -> None:
    """The prompt's playback ends while the link is down (its CHANNEL_EXECUTE_COMPLETE is
    lost): after the resync the policies get its PromptDone once its length has passed
    (they would wait for it until their guard), and the leg no longer counts as hearing
    the switch's audio (its talk events would be dropped for good). A prompt still playing
    when the link comes back ends with its own event, reported once."""
    async with (
        FakeFreeSwitch(time_scale=0.01, playback_s=30.0) as fs,
        daemon(fs, prompt_s=0.2) as d,
    ):
        caller = fs.inbound_call("79161234567", "Ivan", "100")
        await until(lambda: "CallStarted" in d.recorder.kinds(), "the call")
        await play(d, fs, caller)
        before = d.adapter.client.connections
        fs.freeze()
        fs.drop_connections()
        await until(lambda: fs.running_app(caller) is None, "the end of the playback")
        fs.thaw()
        await until(lambda: d.adapter.client.connections == before + 1, "the reconnect")
        await until(lambda: bool(prompts_done(d)), "the PromptDone", timeout=3.0)
        assert prompts_done(d) == [(caller.uuid, "silent.prompt", True)]
        assert d.adapter.translator.awaited_prompts() == []
        assert not d.adapter.translator.legs[caller.uuid].switch_audio(d.adapter.clock.now())

        fs.playback_s = 150.0  # 1.5 s, as long as the daemon knows the prompt to be
        d.adapter.options = dataclasses.replace(d.adapter.options, prompt_seconds=lambda _k: 1.5)
        await play(d, fs, caller)
        await reconnect(fs, d)
        assert fs.running_app(caller) == "playback"
        await until(lambda: len(prompts_done(d)) == 2, "the second PromptDone", timeout=3.0)
        await asyncio.sleep(1.2)  # past the prompt's length and the slack
        assert len(prompts_done(d)) == 2


def test_after_a_resync_an_origination_listed_answered_is_answered() -> None:
    """resynced_originations(): the attempt listed answered was answered while the link
    was down; one listed ringing waits; one created and no longer listed ended meanwhile
    (no outcome: what became of it is unknown) and is forgotten; one placed after the rows
    were asked for waits for its events."""
    translator = FreeswitchTranslator()
    for name in ("up", "ringing", "gone"):
        translator.expect_origination(f"req-{name}", f"leg-{name}", "callback", job=f"req-{name}")
        translator.feed(created(f"leg-{name}"), 0.0)
    before = translator.known_originations()
    translator.expect_origination("req-late", "leg-late", "callback", job="req-late")
    events = translator.resynced_originations({"leg-up": True, "leg-ringing": False}, before)
    assert events == [
        ev.OriginateOutcome(
            "req-up",
            "answered",
            ev.LegId("leg-up"),
            cause_text="listed answered after the ESL link came back "
            "(its BACKGROUND_JOB was lost with the link)",
        )
    ]
    assert set(translator.originations) == {"req-ringing", "req-late"}


def test_an_origination_bridging_in_the_rows_is_answered() -> None:
    """RING_WAIT is also an answered leg running ``bridge`` (02c): a callback leg of ours
    only runs its extension once answered, so it is listed answered; any other leg in
    RING_WAIT (a caller not answered, ringing an agent) is not."""
    translator = FreeswitchTranslator()
    translator.expect_origination("req", "ours", "callback", job="req")
    translator.feed(created("ours"), 0.0)
    translator.feed(created("caller"), 0.0)
    rows = [row("ours", "ours", "RING_WAIT"), row("caller", "caller", "RING_WAIT")]
    live = {str(x.created.leg): x.answered for x in translator.live_legs(rows)}
    assert live == {"ours": True, "caller": False}

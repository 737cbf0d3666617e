"""The FreeSWITCH resync (``show channels as json`` after a (re)connect) at its edges: legs
hanging up, legs created while it runs, listener legs, bridges the rows do not show."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.lab.freeswitch_driver import LISTENER_DIAL
from pbx_agent.model import calls as cm
from pbx_agent.model import events as ev
from pbx_agent.pbx.esl_client import EslSettings
from pbx_agent.pbx.freeswitch import FreeswitchAdapter, FreeswitchOptions
from pbx_agent.pbx.freeswitch_events import FreeswitchTranslator
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch
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
async def daemon(fs: FakeFreeSwitch, *, start: bool = True) -> AsyncIterator[Daemon]:
    recorder = Recorder()
    clock = LoopClock()
    engine = Engine(clock=clock, policies=[recorder])
    settings = EslSettings(
        host="127.0.0.1",
        port=fs.port,
        command_timeout_s=1.0,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    adapter = FreeswitchAdapter(
        settings, FreeswitchOptions(sounds=lambda k: k), handle_event=engine.handle, clock=clock
    )
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


async def test_a_bridge_after_hold_music_survives_a_reconnect(fs: FakeFreeSwitch) -> None:
    """After hold music the A-leg's application is no longer ``bridge``: the legs the
    translator knows as peers stay bridged."""
    async with daemon(fs) as d:
        caller = fs.inbound_call("79161234567", "Ivan", "100")
        agent = await fs.bridge(caller, "sofia/internal/agent-1001@127.0.0.1")
        assert agent is not None
        await until(lambda: "PartiesConnected" in d.recorder.kinds(), "the bridge")
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

"""The Asterisk adapter with the engine, against the fake Asterisk over loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model.events import CallId, LegId, TalkingStopped
from pbx_agent.pbx.ami_client import AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions, DialplanTarget
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from pbx_agent.wire.ami import AmiMessage
from tests.pbx.recording import Recorder


def ami_settings(pbx: FakeAsterisk) -> AmiSettings:
    host, port = pbx.ami_address
    return AmiSettings(
        host=host,
        port=port,
        username="lab",
        secret="not-a-real-secret",
        action_timeout_s=1.0,
        ping_interval_s=30,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )


OPTIONS = AsteriskOptions(
    sounds=lambda key: f"pbx-agent/ru/{key.replace('.', '-')}",
    targets={"linger": DialplanTarget("pbxagent-linger")},
    watched_variables=frozenset({"PBXAGENT_ROLE", "PBXAGENT_TIER"}),
)


@contextlib.asynccontextmanager
async def attached(
    pbx: FakeAsterisk, *, shadow: bool = False, settings: AmiSettings | None = None
) -> AsyncIterator[tuple[Engine, AsteriskAdapter, Recorder]]:
    recorder = Recorder()
    engine = Engine(clock=LoopClock(), policies=[recorder], shadow=shadow)
    adapter = AsteriskAdapter(
        settings or ami_settings(pbx), OPTIONS, handle_event=engine.handle, shadow=shadow
    )
    engine.executor = adapter
    await adapter.start()
    try:
        yield engine, adapter, recorder
    finally:
        await engine.close()
        await adapter.close()


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk() as fake:
        yield fake


async def wait_for(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def connected_call(pbx: FakeAsterisk, engine: Engine) -> tuple[Any, Any, cm.Call]:
    caller = await pbx.inbound_call(caller="79161234567", caller_name="Иван")
    await caller.answer()
    agent = await caller.connect_agent(endpoint="agent-1001", queue="support")
    await wait_for(
        lambda: (
            CallId(caller.linkedid) in engine.model.calls
            and engine.model.calls[CallId(caller.linkedid)].agent is not None
        )
    )
    return caller, agent, engine.model.calls[CallId(caller.linkedid)]


async def test_a_queue_call_becomes_caller_and_agent(pbx: FakeAsterisk) -> None:
    """Events from the switch build the neutral call: caller, agent, queue, connected."""
    async with attached(pbx) as (engine, _, recorder):
        caller, agent, call = await connected_call(pbx, engine)
        assert call.caller == caller.uniqueid
        assert call.agent == agent.uniqueid
        assert call.queue == "support"
        assert call.caller_leg is not None and call.caller_leg.caller_name == "Иван"
        assert any(isinstance(e, cm.PartiesConnected) for e in recorder.seen)


async def test_prompt_to_both_parties_is_a_barge_whisper_channel(pbx: FakeAsterisk) -> None:
    """PlayPrompt(BOTH) originates a Local channel that barges into the caller's channel."""
    async with attached(pbx) as (engine, _, _):
        caller, _, call = await connected_call(pbx, engine)
        await engine.execute_now(
            cmd.PlayPrompt(LegId(caller.uniqueid), "silent.prompt", cmd.Audience.BOTH),
            call_id=call.id,
            rule="R2",
            policy="test",
        )
        originate = await pbx.wait_for_action("Originate")
    fields = {
        k: v for k, v in originate.fields if k not in ("ActionID", "ChannelId", "OtherChannelId")
    }
    assert fields == {
        "Action": "Originate",
        "Channel": "Local/barge@pbxagent-whisper/n",
        "Application": "Playback",
        "Data": "pbx-agent/ru/silent-prompt",
        "Variable": f"PBXAGENT_SPY_TARGET={caller.name}",
        "Async": "true",
        "CallerID": '"pbx-agent" <0>',
        "Timeout": "10000",
    }


async def test_hangup_call_hangs_up_every_party_with_the_cause(pbx: FakeAsterisk) -> None:
    """HangupCall sends Hangup with the cause for caller and agent, and the call ends."""
    async with attached(pbx) as (engine, _, recorder):
        caller, agent, call = await connected_call(pbx, engine)
        await engine.execute_now(
            cmd.HangupCall(call.id, cause=16), call_id=call.id, rule="R2", policy="test"
        )
        await wait_for(lambda: any(isinstance(e, cm.CallEnded) for e in recorder.seen))
    hangups = [(a["Channel"], a["Cause"]) for a in pbx.actions if a.name == "Hangup"]
    assert sorted(hangups) == sorted([(caller.name, "16"), (agent.name, "16")])


async def test_hanging_up_a_party_the_switch_already_hung_up_is_done(
    pbx: FakeAsterisk,
) -> None:
    """A party gone before its Hangup arrives ("No such channel"): done, not a failure."""
    async with attached(pbx) as (engine, _, _):
        caller, agent, call = await connected_call(pbx, engine)
        pbx.lose_events()  # the daemon does not learn that the agent left
        await agent.hangup()
        with capture_logs() as logs:
            await engine.execute_now(
                cmd.HangupCall(call.id, cause=16), call_id=call.id, rule="R2", policy="test"
            )
    assert not [e for e in logs if e["event"] == "command_failed"]
    [done] = [e for e in logs if e["event"] == "command_done"]
    assert done["action"] == "hangup_call"
    hangups = [a["Channel"] for a in pbx.actions if a.name == "Hangup"]
    assert sorted(hangups) == sorted([caller.name, agent.name])


async def test_redirect_sets_params_then_redirects(pbx: FakeAsterisk) -> None:
    """Redirect sets the parameters as variables, then sends the leg to the configured context."""
    async with attached(pbx) as (engine, _, _):
        caller, _, call = await connected_call(pbx, engine)
        await engine.execute_now(
            cmd.Redirect(LegId(caller.uniqueid), "linger", (("PBXAGENT_PRIO", "5"),)),
            call_id=call.id,
            rule="R3",
            policy="test",
        )
    names = [a.name for a in pbx.actions if a.name in ("Setvar", "Redirect")]
    assert names == ["Setvar", "Redirect"]
    redirect = next(a for a in pbx.actions if a.name == "Redirect")
    assert (redirect["Context"], redirect["Exten"], redirect["Priority"]) == (
        "pbxagent-linger",
        "s",
        "1",
    )


async def test_shadow_mode_logs_the_action_and_sends_nothing(pbx: FakeAsterisk) -> None:
    """In shadow mode the adapter logs exactly the action it would send and sends none."""
    async with attached(pbx, shadow=True) as (engine, _, _):
        _, _, call = await connected_call(pbx, engine)
        with capture_logs() as logs:
            await engine.execute_now(
                cmd.HangupCall(call.id, cause=16), call_id=call.id, rule="R2", policy="test"
            )
    assert not any(a.name == "Hangup" for a in pbx.actions)
    shadow = [e for e in logs if e["event"] == "shadow_action"]
    assert [e["ami_action"] for e in shadow] == ["Hangup", "Hangup"]
    assert ("Cause", "16") in shadow[0]["fields"]


async def test_shadow_mode_still_turns_talk_detection_on(pbx: FakeAsterisk) -> None:
    """TALK_DETECT only lets the daemon hear who speaks; without it a shadow daemon would
    decide deaf (every caller silent). It is sent in shadow mode too."""
    async with attached(pbx, shadow=True) as (engine, adapter, _):
        _, _, call = await connected_call(pbx, engine)
        adapter.enable_talk_detection([leg.channel for leg in call.legs.values()])
        await wait_for(lambda: sum(a.name == "Setvar" for a in pbx.actions) == 2)
    setvars = [a for a in pbx.actions if a.name == "Setvar"]
    assert {a.get("Variable") for a in setvars} == {"TALK_DETECT(set)"}


async def test_reconnect_resyncs_without_forgetting_or_duplicating(pbx: FakeAsterisk) -> None:
    """Calls alive before the cut are still tracked after it, once; calls that ended meanwhile end."""
    async with attached(pbx) as (engine, adapter, recorder):
        caller, _, call = await connected_call(pbx, engine)
        other = await pbx.inbound_call(caller="79990000000")
        await other.answer()
        await wait_for(lambda: CallId(other.linkedid) in engine.model.calls)
        pbx.freeze()
        pbx.drop_connections()
        await other.hangup()  # ends while the daemon cannot see it
        pbx.thaw()
        await wait_for(lambda: adapter.client.connections >= 2 and adapter.client.connected)
        await wait_for(lambda: CallId(other.linkedid) not in engine.model.calls)
        assert set(engine.model.calls) == {call.id}
        assert len(engine.model.calls[call.id].legs) == 2
        starts = [e for e in recorder.seen if isinstance(e, cm.CallStarted) and e.call == call.id]
        assert len(starts) == 1
        ended = [e for e in recorder.seen if isinstance(e, cm.CallEnded)]
        assert [e.call for e in ended] == [CallId(other.linkedid)]


async def test_a_call_arriving_right_behind_the_channel_list_is_kept(pbx: FakeAsterisk) -> None:
    """A call that arrives just after the resync's snapshot (its Newchannel in the same read
    as CoreShowChannelsComplete) is tracked, not ended as gone while the link was down."""
    arrived: list[Any] = []

    def arrive() -> None:
        ch = pbx.switch.inbound_channel(
            endpoint="trunk", caller="79160000001", caller_name="", exten="100", context="x"
        )
        pbx.switch.answer(ch)
        arrived.append(ch)

    async with attached(pbx) as (engine, adapter, recorder):
        pbx.freeze()
        pbx.drop_connections()
        pbx.after_channel_list = arrive
        pbx.thaw()
        await wait_for(lambda: bool(arrived) and adapter.client.connections >= 2)
        await wait_for(lambda: any(isinstance(e, cm.CallStarted) for e in recorder.seen))
        await wait_for(lambda: sum(a.name == "CoreSettings" for a in pbx.actions) >= 2)
        call_id = CallId(arrived[0].linkedid)
        assert arrived[0].alive
        assert call_id in engine.model.calls
        assert not [e for e in recorder.seen if isinstance(e, cm.CallEnded | cm.LegEnded)]


async def test_a_bridge_formed_right_behind_the_channel_list_is_kept(pbx: FakeAsterisk) -> None:
    """Caller and agent bridged just after the snapshot: the daemon keeps them connected
    (the list's "no bridge" is older than the BridgeEnter), so the agent's hold is seen."""
    async with attached(pbx) as (engine, adapter, recorder):
        caller = await pbx.inbound_call(caller="79161234567")
        await caller.answer()
        switch = pbx.switch
        agent = switch.new_pjsip_channel(
            "agent-1001", state=6, context="from-internal", exten="s", linkedid=caller.linkedid
        )
        switch.newchannel(agent)
        await wait_for(lambda: len(engine.model.legs) == 2)
        pbx.freeze()
        pbx.drop_connections()
        pbx.after_channel_list = lambda: switch.bridge_pair(caller.channel, agent)
        pbx.thaw()
        await wait_for(lambda: adapter.client.connections >= 2 and adapter.client.connected)
        await wait_for(lambda: sum(a.name == "CoreSettings" for a in pbx.actions) >= 2)
        call = engine.model.calls[CallId(caller.linkedid)]
        legs = [call.legs[LegId(caller.uniqueid)], call.legs[LegId(agent.uniqueid)]]
        assert legs[0].bridge is not None
        assert legs[0].bridge == legs[1].bridge
        assert not [e for e in recorder.seen if isinstance(e, cm.PartiesSeparated)]
        await caller.hold(by=pbx.leg(agent))
        await wait_for(lambda: any(isinstance(e, cm.HoldStarted) for e in recorder.seen))


async def test_a_prompt_that_ended_while_the_link_was_down_is_finished(pbx: FakeAsterisk) -> None:
    """The whisper's helper channel ends while the link is down: after the resync the
    policies get its PromptDone (they would wait for it until their guard) and nothing is
    kept of the helper."""
    settings = dataclasses.replace(ami_settings(pbx), connect_timeout_s=0.3)
    async with attached(pbx, settings=settings) as (engine, adapter, recorder):
        caller, _, call = await connected_call(pbx, engine)
        await engine.execute_now(
            cmd.PlayPrompt(LegId(caller.uniqueid), "silent.prompt", cmd.Audience.LEG),
            call_id=call.id,
            rule="R2",
            policy="test",
        )
        await wait_for(lambda: any(leg.name.startswith("Local/") for leg in pbx.legs))
        pbx.freeze()
        pbx.drop_connections()
        await wait_for(lambda: not any(leg.name.startswith("Local/") for leg in pbx.legs), 5)
        pbx.thaw()
        await wait_for(lambda: any(isinstance(e, cm.PromptDone) for e in recorder.seen), 5)
        alive = {leg.uniqueid for leg in pbx.legs}
        assert [u for u in adapter.translator.channels if u not in alive] == []
        assert adapter.translator.origins == {}
    done = next(e for e in recorder.seen if isinstance(e, cm.PromptDone))
    assert (done.leg, done.prompt) == (caller.uniqueid, "silent.prompt")


async def test_daemon_started_mid_call_picks_the_call_up(pbx: FakeAsterisk) -> None:
    """A call already in progress when the daemon starts is tracked from the resync."""
    caller = await pbx.inbound_call(caller="79161234567")
    await caller.answer()
    await caller.connect_agent(endpoint="agent-1001")
    async with attached(pbx) as (engine, _, _):
        await wait_for(lambda: CallId(caller.linkedid) in engine.model.calls)
        call = engine.model.calls[CallId(caller.linkedid)]
        assert len(call.legs) == 2
        assert call.agent is not None


async def test_an_agent_found_by_the_resync_is_named_as_the_queue_names_it(
    pbx: FakeAsterisk,
) -> None:
    """The call was connected by the queue before the daemon started (its AgentConnect
    never seen): the agent is the queue member Alice of "support", as the live path would
    name her (her tier, the figures and a callback's queue depend on it), not the device."""
    pbx.add_queue_member("support", "agent-1001", "Alice")
    caller = await pbx.inbound_call(caller="79161234567")
    await caller.answer()
    await caller.connect_agent(endpoint="agent-1001", queue="support", member_name="Alice")
    async with attached(pbx) as (engine, _, _):
        call_id = CallId(caller.linkedid)
        await wait_for(
            lambda: call_id in engine.model.calls and engine.model.calls[call_id].queue is not None
        )
        call = engine.model.calls[call_id]
        assert call.agent_leg is not None
        assert (call.agent_leg.agent, call.queue) == ("Alice", "support")


async def test_prompt_finished_when_the_whisper_channel_ends(pbx: FakeAsterisk) -> None:
    """The whisper channel hanging up after its playback is reported as PromptDone."""
    async with attached(pbx) as (engine, _, recorder):
        caller, _, call = await connected_call(pbx, engine)
        await engine.execute_now(
            cmd.PlayPrompt(LegId(caller.uniqueid), "silent.prompt", cmd.Audience.LEG),
            call_id=call.id,
            rule="R2",
            policy="test",
        )
        await wait_for(lambda: any(isinstance(e, cm.PromptDone) for e in recorder.seen), timeout=5)
    done = next(e for e in recorder.seen if isinstance(e, cm.PromptDone))
    assert (done.leg, done.prompt) == (caller.uniqueid, "silent.prompt")


async def test_caller_controlled_values_cannot_add_headers(pbx: FakeAsterisk) -> None:
    """A variable value holding CR/LF reaches the PBX escaped on one line, not as a new header."""
    async with attached(pbx) as (engine, _, _):
        caller, _, call = await connected_call(pbx, engine)
        evil = "x\r\nAction: Hangup\r\nChannel: " + caller.name
        await engine.execute_now(
            cmd.SetVariable(LegId(caller.uniqueid), "PBXAGENT_TOPIC", evil),
            call_id=call.id,
            rule="R5",
            policy="test",
        )
        setvar = await pbx.wait_for_action(
            "Setvar", where=lambda a: a.get("Variable") == "PBXAGENT_TOPIC"
        )
    assert not any(a.name == "Hangup" for a in pbx.actions)
    assert "\n" not in (setvar["Value"] or "")
    assert setvar["Value"].startswith("x\\r\\nAction: Hangup")


async def test_dialplan_talk_detection_sends_no_setvar_and_counts_the_configured_delay(
    pbx: FakeAsterisk,
) -> None:
    """talk_detect = "dialplan": no TALK_DETECT Setvar; a stop still means speech ended
    talk_detect_silence_ms earlier (the value the site's dialplan sets)."""
    options = dataclasses.replace(OPTIONS, talk_detect="dialplan", talk_detect_silence_ms=400)
    engine = Engine(clock=LoopClock(), policies=[Recorder()])
    adapter = AsteriskAdapter(ami_settings(pbx), options, handle_event=engine.handle)
    engine.executor = adapter
    await adapter.start()
    try:
        caller = await pbx.inbound_call(caller="79161234567")
        await caller.answer()
        adapter.enable_talk_detection([caller.name])
        await asyncio.sleep(0.1)
        stop = AmiMessage(
            (
                ("Event", "ChannelTalkingStop"),
                ("Uniqueid", caller.uniqueid),
                ("Duration", "1200"),
            )
        )
        translated = adapter.translator.feed(stop)
    finally:
        await engine.close()
        await adapter.close()
    assert not [a for a in pbx.actions if a.name == "Setvar" and "TALK_DETECT" in a["Variable"]]
    assert translated == [TalkingStopped(LegId(caller.uniqueid), 400, 1200)]


async def test_an_unexpected_error_in_a_background_action_is_logged_with_its_traceback(
    pbx: FakeAsterisk,
) -> None:
    """A spawned coroutine raising something not the project's own is `task_failed`, traceback too."""
    adapter = AsteriskAdapter(ami_settings(pbx), OPTIONS, handle_event=lambda _event: None)

    async def broken() -> None:
        msg = "Uniqueid"
        raise KeyError(msg)

    with capture_logs() as logs:
        adapter._spawn(broken(), "talk-detect")
        await adapter._tasks.wait()
    [failed] = [e for e in logs if e["event"] == "task_failed"]
    assert (failed["pbx"], failed["task"], failed["error"]) == (
        adapter.name,
        "talk-detect",
        "KeyError: 'Uniqueid'",
    )
    assert failed["exc_info"] is True


async def test_an_agent_name_with_cr_lf_is_escaped_in_the_one_alert_user_event(
    pbx: FakeAsterisk,
) -> None:
    """An agent name (queue MemberName) holding CR and LF still sends one UserEvent, escaped."""
    async with attached(pbx) as (engine, adapter, _):
        caller, agent, call = await connected_call(pbx, engine)
        # A bare CR or LF is part of a header's value for the AMI decoder (only CRLF ends it).
        agent_connect = AmiMessage(
            (
                ("Event", "AgentConnect"),
                ("Uniqueid", caller.uniqueid),
                ("DestUniqueid", agent.uniqueid),
                ("MemberName", "Alice\nAction: Hangup\rX: y"),
                ("Queue", "support"),
            )
        )
        for event in adapter.translator.feed(agent_connect):
            engine.handle(event)
        assert call.agent_id == "Alice\nAction: Hangup\rX: y"
        with capture_logs() as logs:
            await engine.execute_now(
                cmd.AlertAgent(
                    LegId(agent.uniqueid), "hold_limit", fields=(("number", "7916\nX: y"),)
                ),
                call_id=call.id,
                rule="R1",
                policy="test",
            )
        await pbx.wait_for_action("UserEvent")
    [done] = [e for e in logs if e["event"] in ("command_done", "command_failed")]
    assert done["event"] == "command_done"
    [user_event] = [a for a in pbx.actions if a.name == "UserEvent"]
    assert [k for k, _ in user_event.fields if k != "ActionID"] == [
        "Action",
        "UserEvent",
        "Alert",
        "Channel",
        "CallId",
        "Agent",
        "number",
    ]
    assert (user_event["Agent"], user_event["number"]) == (
        "Alice\\nAction: Hangup\\rX: y",
        "7916\\nX: y",
    )
    assert not any(a.name == "Hangup" for a in pbx.actions)

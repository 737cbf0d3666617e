"""R2 end to end over AMI: the fake Asterisk's talk events in, the exact actions out, on time."""

from __future__ import annotations

import pytest

from pbx_agent.policies.silent_caller import SilentCallerPolicy
from tests.policies.asterisk_loopback import OPTIONS, loopback, sound
from tests.policies.call_driver import standards

BOUND_S = 0.05  # the standard's timing bound: ±50 ms from the configured instant


async def test_silent_caller_gets_both_phrases_then_both_legs_are_hung_up() -> None:
    """Greeting, 2.5 s, barge "silent.prompt", 2.5 s after it ends "silent.closing", Hangup."""
    async with loopback([SilentCallerPolicy()], standards()) as rig:
        rig.pbx.switch.sound_lengths[sound("silent.prompt")] = 2.0
        rig.pbx.switch.sound_lengths[sound("silent.closing")] = 2.4
        caller, agent = await rig.connected_call()
        start = rig.clock.now()
        await agent.talk(1.5)  # the agent's greeting; returns after ChannelTalkingStop
        greeting_end = start + 1.5
        await rig.until(lambda: not caller.alive and not agent.alive, what="the drop")
        actions = rig.actions("Originate", "Hangup", since=start)

    barge = f"Local/barge@{OPTIONS.whisper_context}/n"
    names = [(a.name, a.message.get("Channel")) for a in actions]
    # Hanging up the caller ends the bridge, and Asterisk hangs the agent up with it.
    assert names[:3] == [("Originate", barge), ("Originate", barge), ("Hangup", caller.name)]
    first, second, hang_caller = actions[:3]
    assert first.message.get("Data") == sound("silent.prompt")
    assert second.message.get("Data") == sound("silent.closing")
    assert first.message.get("Variable") == f"PBXAGENT_SPY_TARGET={caller.name}"
    assert hang_caller.message.get("Cause") == "16"
    assert first.at == pytest.approx(greeting_end + 2.5, abs=BOUND_S)
    assert second.at == pytest.approx(first.at + 2.0 + 2.5, abs=BOUND_S)
    assert hang_caller.at == pytest.approx(second.at + 2.4, abs=BOUND_S)


async def test_talk_detection_is_set_on_both_legs_when_they_connect() -> None:
    """TALK_DETECT(set)=300,256 by AMI Setvar on the caller's and the agent's channel (03b)."""
    async with loopback([SilentCallerPolicy()], standards()) as rig:
        caller, agent = await rig.connected_call()
        setvars = rig.actions("Setvar")
    assert sorted(
        (a.message.get("Channel"), a.message.get("Variable"), a.message.get("Value"))
        for a in setvars
    ) == sorted(
        [
            (caller.name, "TALK_DETECT(set)", "300,256"),
            (agent.name, "TALK_DETECT(set)", "300,256"),
        ]
    )


async def test_caller_who_speaks_after_the_first_prompt_is_not_dropped() -> None:
    """One barge prompt, the caller answers, and nothing more is sent to the switch."""
    async with loopback([SilentCallerPolicy()], standards()) as rig:
        rig.pbx.switch.sound_lengths[sound("silent.prompt")] = 2.0
        caller, agent = await rig.connected_call()
        start = rig.clock.now()
        await agent.talk(1.0)
        await rig.until(lambda: len(rig.actions("Originate")) == 1, what="the first prompt")
        await rig.sleep(2.5)
        await caller.talk(1.2)
        await rig.sleep(8.0)
        actions = rig.actions("Originate", "Hangup", "Redirect", since=start)
        cancelled = rig.decided("silent_caller_cancelled")
    assert [a.name for a in actions] == ["Originate"]
    assert caller.alive
    assert len(cancelled) == 1


async def test_noise_burst_does_not_stop_the_procedure_over_ami() -> None:
    """A 100 ms burst (ChannelTalkingStop Duration 80) is noise: the prompt still comes on time."""
    async with loopback([SilentCallerPolicy()], standards()) as rig:
        caller, agent = await rig.connected_call()
        start = rig.clock.now()
        await agent.talk(1.0)
        greeting_end = start + 1.0
        await caller.talk(0.1)
        await rig.until(lambda: len(rig.actions("Originate")) == 1, what="the first prompt")
        (first,) = rig.actions("Originate")
        noise = rig.decided("silent_caller_noise")
    assert first.at == pytest.approx(greeting_end + 2.5, abs=BOUND_S)
    assert len(noise) == 1


async def test_a_phrase_whose_sound_file_is_missing_on_the_switch_never_leads_to_the_drop() -> None:
    """Playback of a missing file ends the helper normally with PLAYBACKSTATUS=FAILED: the
    caller heard nothing, so the procedure is abandoned and the caller is not hung up on."""
    async with loopback([SilentCallerPolicy()], standards()) as rig:
        rig.pbx.switch.missing_sounds.add(sound("silent.prompt"))
        caller, agent = await rig.connected_call()
        start = rig.clock.now()
        await agent.talk(1.0)
        await rig.until(lambda: rig.decided("silent_caller_abandoned"), what="the abandon")
        await rig.sleep(10.0)
        actions = rig.actions("Originate", "Hangup", since=start)
    assert [a.message.get("Data") for a in actions] == [sound("silent.prompt")]
    assert caller.alive and agent.alive
    assert rig.decided("silent_caller_drop") == []

"""R3 end to end over AMI: the farewell code frees the agent; the caller is asked, closed, dropped
or sent back to the queue."""

from __future__ import annotations

import pytest

from pbx_agent.policies.lingering import LingeringPolicy
from tests.policies.asterisk_loopback import OPTIONS, loopback, sound
from tests.policies.call_driver import standards

BOUND_S = 0.05


async def test_farewell_then_silence_ends_in_the_closing_phrase_and_a_drop() -> None:
    """Redirect to linger and the agent's Hangup at the press; whisper ask; whisper closing; drop."""
    async with loopback([LingeringPolicy()], standards()) as rig:
        rig.pbx.switch.sound_lengths[sound("linger.ask")] = 1.5
        rig.pbx.switch.sound_lengths[sound("linger.closing")] = 3.0
        caller, agent = await rig.connected_call()
        sent_at = rig.clock.now()
        await rig.pbx.feature(agent, "PbxAgentFeature", {"Feature": "pbxagent_farewell"})
        await rig.until(lambda: not caller.alive, what="the drop")
        actions = rig.actions("Redirect", "Originate", "Hangup", since=sent_at)
        # The press as the daemon saw it: when it decided to move the caller.
        (decided,) = [d for d in rig.decided("redirect") if d.fields["target"] == "linger"]
        pressed = decided.at

    whisper = f"Local/whisper@{OPTIONS.whisper_context}/n"
    assert [(a.name, a.message.get("Channel")) for a in actions] == [
        ("Redirect", caller.name),
        ("Hangup", agent.name),
        ("Originate", whisper),
        ("Originate", whisper),
        ("Hangup", caller.name),
    ]
    redirect, _, ask, closing, drop = actions
    assert redirect.message.get("Context") == "pbxagent-linger"
    assert redirect.at == pytest.approx(pressed, abs=BOUND_S)
    assert (ask.message.get("Data"), closing.message.get("Data")) == (
        sound("linger.ask"),
        sound("linger.closing"),
    )
    assert ask.at == pytest.approx(pressed + 2.5, abs=BOUND_S)
    assert closing.at == pytest.approx(ask.at + 1.5 + 3.0, abs=BOUND_S)
    assert drop.at == pytest.approx(closing.at + 3.0 + 2.5, abs=BOUND_S)


async def test_caller_who_answers_the_question_goes_back_to_the_queue_first() -> None:
    """Speech after the question: PBXAGENT_REQUEUE_PRIORITY and the queue are set, then Redirect to requeue."""
    async with loopback([LingeringPolicy()], standards()) as rig:
        rig.pbx.switch.sound_lengths[sound("linger.ask")] = 1.5
        rig.pbx.add_queue_member("support", "agent-1002", "Agent 1002")
        caller, agent = await rig.connected_call()
        pressed = rig.clock.now()
        await rig.pbx.feature(agent, "PbxAgentFeature", {"Feature": "pbxagent_farewell"})
        await rig.until(lambda: len(rig.actions("Originate")) == 1, what="the question")
        await rig.sleep(1.6)
        await caller.talk(1.0)
        await rig.until(lambda: caller.peer() is not None, what="the next agent")
        actions = [
            a
            for a in rig.actions("Redirect", "Setvar", since=pressed)
            if a.message.get("Variable") != "TALK_DETECT(set)"
        ]
        second_agent = caller.peer()

    assert [(a.name, a.message.get("Variable"), a.message.get("Context")) for a in actions] == [
        ("Redirect", None, "pbxagent-linger"),
        ("Setvar", "PBXAGENT_REQUEUE_PRIORITY", None),
        ("Setvar", "PBXAGENT_REQUEUE_QUEUE", None),
        ("Redirect", None, "pbxagent-requeue"),
    ]
    assert [a.message.get("Value") for a in actions[1:3]] == ["10", "support"]
    assert second_agent is not None
    assert second_agent.endpoint == "agent-1002"

"""R4 end to end over AMI: three presses of the abuse code, recorded, said to both, then dropped."""

from __future__ import annotations

import pytest

from pbx_agent.policies.scripts import ScriptsPolicy
from tests.policies.asterisk_loopback import OPTIONS, loopback, sound
from tests.policies.call_driver import standards

BOUND_S = 0.05


async def test_abuse_three_presses_record_warn_warn_farewell_then_drop_and_flag() -> None:
    """MixMonitor at the first press, a barge per press, Hangup after the farewell, number flagged."""
    async with loopback([ScriptsPolicy()], standards()) as rig:
        rig.pbx.switch.sound_lengths[sound("abuse.warning")] = 3.0
        rig.pbx.switch.sound_lengths[sound("abuse.farewell")] = 4.0
        caller, agent = await rig.connected_call()
        start = rig.clock.now()
        for _ in range(3):
            await rig.pbx.feature(agent, "PbxAgentFeature", {"Feature": "pbxagent_abuse"})
            count = len(rig.decided("script_step_played"))
            await rig.until(
                lambda count=count: len(rig.decided("script_step_played")) > count,
                what="the step to be said",
            )
            await rig.sleep(2.0)
        await rig.until(lambda: not caller.alive, what="the drop")
        actions = rig.actions("MixMonitor", "Originate", "Hangup", since=start)
        flagged = rig.decided("flag_number")

    barge = f"Local/barge@{OPTIONS.whisper_context}/n"
    assert [(a.name, a.message.get("Channel")) for a in actions][:5] == [
        ("MixMonitor", caller.name),
        ("Originate", barge),
        ("Originate", barge),
        ("Originate", barge),
        ("Hangup", caller.name),
    ]
    prompts = [a.message.get("Data") for a in actions[1:4]]
    assert prompts == [sound("abuse.warning"), sound("abuse.warning"), sound("abuse.farewell")]
    farewell, hangup = actions[3], actions[4]
    assert hangup.at == pytest.approx(farewell.at + 4.0, abs=BOUND_S)
    (flag,) = flagged
    assert flag.fields["number"] == "79161234567"
    assert flag.number == "79161234567"

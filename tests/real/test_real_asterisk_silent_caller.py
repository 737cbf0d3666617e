"""R2 on a real Asterisk (skipped unless PBX_AGENT_TEST_AMI is set).

Needs ``dialplan/asterisk/pbx-agent-hold.conf`` (the barge context) and
``pbx-agent-test-r2.conf`` loaded: a Local "caller" who says nothing is bridged with a Local
"agent" who greets with hello-world. The daemon must set talk detection on both, hear the
greeting end, barge both phrases in at 2.5 s silences, and hang the call up.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from pbx_agent.clock import LoopClock
from pbx_agent.config.settings import resolve_standards
from pbx_agent.engine import Decision, Engine
from pbx_agent.model import calls as cm
from pbx_agent.pbx.ami_client import AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions
from pbx_agent.policies.silent_caller import SilentCallerPolicy
from tests.real.conftest import RealAsterisk

pytestmark = pytest.mark.real_asterisk


async def test_silent_caller_is_prompted_twice_and_dropped(real_asterisk: RealAsterisk) -> None:
    """A real silent call: two barged phrases 2.5 s after the greeting and the first, then Hangup."""
    standards = resolve_standards("ru", "")
    decisions: list[Decision] = []
    ended: list[cm.CallEvent] = []
    engine = Engine(
        clock=LoopClock(), policies=[SilentCallerPolicy()], standards=lambda _q, _d: standards
    )
    engine.on_decision(decisions.append)
    engine.on_call_event(
        lambda event, _call, _now: ended.append(event) if isinstance(event, cm.CallEnded) else None
    )
    settings = AmiSettings(
        host=real_asterisk.host,
        port=real_asterisk.port,
        username=real_asterisk.username,
        secret=real_asterisk.secret,
    )
    # Stock sounds stand in for the recorded phrases: what is checked is when they are sent.
    adapter = AsteriskAdapter(
        settings, AsteriskOptions(sounds=lambda _key: "beep"), handle_event=engine.handle
    )
    engine.executor = adapter

    def talk_detection(event: cm.CallEvent, call: cm.Call | None, _now: float) -> None:
        if isinstance(event, cm.PartiesConnected) and call is not None:
            adapter.enable_talk_detection(
                [call.legs[leg].channel for leg in (event.caller, event.agent)]
            )

    engine.on_call_event(talk_detection)
    await adapter.start()
    try:
        await adapter.client.send_action(
            "Originate",
            [
                ("Channel", "Local/caller@pbxagent-test-r2/n"),
                ("Context", "pbxagent-test-r2"),
                ("Exten", "dial-agent"),
                ("Priority", "1"),
                ("Async", "true"),
                ("ChannelId", f"pbxagent-r2-{secrets.token_hex(4)}"),
            ],
        )
        async with asyncio.timeout(30):
            while not ended:
                await asyncio.sleep(0.1)
    finally:
        await engine.close()
        await adapter.close()

    def named(action: str) -> list[Decision]:
        return [d for d in decisions if d.action == action]

    steps = named("silent_caller_step")
    assert [d.fields["prompt"] for d in steps] == ["silent.prompt", "silent.closing"]
    assert [d.fields["silence_s"] for d in steps] == [2.5, 2.5]
    (drop,) = named("silent_caller_drop")
    greeting_end: Any = drop.fields["greeting_ended_at"]
    assert greeting_end is not None, "the agent's greeting was not heard: is talk detection set?"
    assert steps[0].at == pytest.approx(greeting_end + 2.5, abs=0.05)
    assert len(named("hangup_call")) == 1

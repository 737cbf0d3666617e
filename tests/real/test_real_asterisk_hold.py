"""The hold program against a real Asterisk (skipped unless PBX_AGENT_TEST_AMI is set).

The switch must have the shipped ``dialplan/asterisk/pbx-agent-hold.conf`` (``pbxagent-hold``)
and the test context ``pbxagent-test`` (``answer-wait``) loaded, and reach the daemon's
FastAGI listener at ``PBX_AGENT_TEST_AGI_BIND``. ``PBX_AGENT_TEST_HOLD_MUSIC=<sound>:<seconds>``
names a sound on the switch to use as the music (default ``hello-world:1.4``, from the core
sounds). The test originates a channel to hold, starts a hold program on it exactly as the
adapter does for a held customer, hears it start (ChanSpy attaches, the hook streams files),
then ends it on command and checks that nothing of it is left. What the hook streamed is read
from its own log (``hold_cue``), so the AMI user needs no more than the shipped
``manager.conf.sample`` grants (``AGIExecStart`` would need the ``agi`` read class).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import LoopClock
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId
from pbx_agent.model.hooks import HookRegistry
from pbx_agent.pbx.ami_client import AmiClient, AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions
from pbx_agent.pbx.asterisk_hold import HoldMusic, HoldProgramHook
from pbx_agent.pbx.fastagi import FastAgiServer
from pbx_agent.wire.ami import AmiMessage
from tests.real.conftest import RealAsterisk

pytestmark = pytest.mark.real_asterisk


def ami_settings(real: RealAsterisk) -> AmiSettings:
    return AmiSettings(host=real.host, port=real.port, username=real.username, secret=real.secret)


def hold_music() -> HoldMusic:
    value = os.environ.get("PBX_AGENT_TEST_HOLD_MUSIC", "hello-world:1.4")
    sound, _, seconds = value.rpartition(":")
    return HoldMusic(sound, float(seconds))


async def until(predicate: Any, timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"the switch did not show {what} within {timeout_s} s")


async def test_hold_program_starts_on_a_real_channel_and_ends_on_command(
    real_asterisk: RealAsterisk,
) -> None:
    """Originate a channel, run a hold program on it, see the spy attach and files stream,
    stop it, and see its channel and FastAGI session gone with nothing played after."""
    raw: list[AmiMessage] = []
    neutral: list[ev.PbxEvent] = []
    observer = AmiClient(ami_settings(real_asterisk), on_event=raw.append, name="observer")
    bind_host, _, bind_port = real_asterisk.agi_bind.rpartition(":")
    registry = HookRegistry()
    server = FastAgiServer(registry, host=bind_host, port=int(bind_port))
    agi_host = "127.0.0.1" if bind_host in ("0.0.0.0", "") else bind_host
    adapter = AsteriskAdapter(
        ami_settings(real_asterisk),
        AsteriskOptions(sounds=lambda key: key, agi_url=f"agi://{agi_host}:{server.port}"),
        handle_event=neutral.append,
    )
    hook = HoldProgramHook(adapter, music=hold_music(), sounds=lambda key: key, clock=LoopClock())
    registry.register(hook.spec())
    target_id = f"pbxagent-test-{secrets.token_hex(4)}"
    await server.start()
    await observer.start()
    await adapter.start()
    with capture_logs() as hook_log:
        try:
            await adapter.client.send_action(
                "Originate",
                [
                    ("Channel", "Local/answer-wait@pbxagent-test/n"),
                    ("Application", "Wait"),
                    ("Data", "30"),
                    ("Async", "true"),
                    ("ChannelId", target_id),
                ],
            )
            await until(
                lambda: any(isinstance(e, ev.LegCreated) and e.leg == target_id for e in neutral),
                10,
                "the channel to hold",
            )
            created = next(
                e for e in neutral if isinstance(e, ev.LegCreated) and e.leg == target_id
            )
            leg = cm.Leg(
                id=LegId(target_id),
                call=CallId(target_id),
                channel=created.channel,
                endpoint=created.endpoint,
                caller_number="",
                caller_name="",
                dialed="",
                direction=Direction.OUTBOUND,
                origin=None,
                created_at=0.0,
            )
            call = cm.Call(id=CallId(target_id), started_at=0.0, legs={leg.id: leg})
            start = cmd.StartHoldProgram(
                leg=leg.id,
                started_at=LoopClock().now(),
                announcements=(cmd.HoldAnnouncement(0.0, "hello-world"),),
                repeat="hello-world",
                repeat_every_s=4.0,
            )
            await adapter.execute(start, call)
            await until(
                lambda: any(
                    m.get("Event") == "ChanSpyStart" and m.get("SpyeeChannel") == created.channel
                    for m in raw
                ),
                10,
                "ChanSpy attaching to the held channel",
            )
            await until(
                lambda: any(e["event"] == "hold_cue" for e in hook_log),
                10,
                "the hold program streaming its announcement",
            )
            await asyncio.sleep(2)  # let it play: the announcement, then music
            await adapter.execute(cmd.StopHoldProgram(leg.id), call)
            await until(lambda: server.active_sessions == 0, 5, "the FastAGI session ending")
            stopped_at = len(hook_log)
            await asyncio.sleep(1)
            late = [e for e in hook_log[stopped_at:] if e["event"] == "hold_cue"]
            assert late == []
            assert any(e["event"] == "hold_program_ended" for e in hook_log)
            hold_channels = [
                m.get("Channel") or ""
                for m in raw
                if m.get("Event") == "Newchannel" and "pbxagent-hold" in (m.get("Channel") or "")
            ]
            assert len(hold_channels) == 2  # the Local pair
            hung_up = {m.get("Channel") for m in raw if m.get("Event") == "Hangup"}
            assert set(hold_channels) <= hung_up
            assert adapter.hold_programs == {}
        finally:
            target = next(
                (e.channel for e in neutral if isinstance(e, ev.LegCreated) and e.leg == target_id),
                None,
            )
            if target is not None:  # hanging up one half of the Local pair ends both
                await adapter.client.send_action("Hangup", [("Channel", target)])
            await adapter.close()
            await observer.close()
            await server.close()

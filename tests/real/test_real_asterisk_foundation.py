"""Foundation checks against a real Asterisk (skipped unless PBX_AGENT_TEST_AMI is set).

They place calls with AMI Originate into the sample dialplan's test context
(``dialplan/asterisk/pbx-agent-test.conf``: ``pbxagent-test``) and assert on what the daemon saw.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.errors import PbxAuthenticationFailed
from pbx_agent.model import calls as cm
from pbx_agent.pbx.ami_client import AmiClient, AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions
from tests.real.conftest import RealAsterisk

pytestmark = pytest.mark.real_asterisk


def settings(real: RealAsterisk, **overrides: Any) -> AmiSettings:
    values: dict[str, Any] = {
        "host": real.host,
        "port": real.port,
        "username": real.username,
        "secret": real.secret,
    }
    values.update(overrides)
    return AmiSettings(**values)


async def test_wrong_secret_is_refused(real_asterisk: RealAsterisk) -> None:
    """A real switch refuses a wrong secret and the client says so at start."""
    client = AmiClient(settings(real_asterisk, secret=secrets.token_hex(8)))
    with pytest.raises(PbxAuthenticationFailed):
        await client.start()
    await client.close()


async def test_originated_call_is_tracked_and_its_hangup_seen(real_asterisk: RealAsterisk) -> None:
    """A Local call into the test context is tracked by the engine and ends with its cause."""
    seen: list[cm.CallEvent] = []

    class Recorder:
        name, rule = "recorder", "R0"

        def start(self, call: cm.Call, now: float) -> Any:
            return 0

        def step(
            self, state: Any, event: cm.CallEvent, call: cm.Call, now: float
        ) -> tuple[Any, list[Any]]:
            seen.append(event)
            return state, []

    engine = Engine(clock=LoopClock(), policies=[Recorder()])
    adapter = AsteriskAdapter(
        settings(real_asterisk), AsteriskOptions(sounds=lambda k: k), handle_event=engine.handle
    )
    engine.executor = adapter
    await adapter.start()
    try:
        await adapter.client.send_action(
            "Originate",
            [
                ("Channel", "Local/answer-wait@pbxagent-test/n"),
                ("Application", "Wait"),
                ("Data", "2"),
                ("Async", "true"),
                ("ChannelId", f"pbxagent-test-{secrets.token_hex(4)}"),
            ],
        )
        async with asyncio.timeout(15):
            while not any(isinstance(e, cm.CallEnded) for e in seen):
                await asyncio.sleep(0.1)
    finally:
        await engine.close()
        await adapter.close()
    assert any(isinstance(e, cm.CallStarted) for e in seen)

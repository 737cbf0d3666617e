"""A FastAGI client that sends half its header and disconnects, while another FastAGI session
is in progress and AMI events keep arriving: neither is delayed, and the server goes on
serving (the panoramisk FastAGI server spins without yielding here and freezes the daemon)."""

from __future__ import annotations

import asyncio
import faulthandler
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.model.events import CallId
from pbx_agent.model.hooks import HookRegistry, HookSession
from pbx_agent.pbx.asterisk import AsteriskAdapter
from pbx_agent.pbx.fastagi import FastAgiServer
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from pbx_agent.wire.agi import encode_environment
from tests.pbx.test_asterisk_adapter import OPTIONS, ami_settings
from tests.pbx.test_fastagi import FakeChannel, environment, events, hook

# If the event loop were blocked for good, no asyncio timeout could fire: the process dumps
# its stacks and exits instead of hanging the suite.
HANG_GUARD_S = 60.0


@pytest.fixture
async def rig() -> AsyncIterator[tuple[FakeAsterisk, Engine, FastAgiServer, HookRegistry]]:
    registry = HookRegistry()
    async with (
        FakeAsterisk() as pbx,
        FastAgiServer(
            registry, port=0, header_timeout_s=5.0, command_timeout_s=1.0, default_deadline_s=2.0
        ) as server,
    ):
        engine = Engine(clock=LoopClock(), policies=[])
        adapter = AsteriskAdapter(ami_settings(pbx), OPTIONS, handle_event=engine.handle)
        engine.executor = adapter
        await adapter.start()
        try:
            yield pbx, engine, server, registry
        finally:
            await engine.close()
            await adapter.close()


async def test_half_a_header_and_a_disconnect_delay_neither_agi_nor_ami(
    rig: tuple[FakeAsterisk, Engine, FastAgiServer, HookRegistry],
) -> None:
    """Mid-session: half a header, then EOF. The running session ends on time, AMI calls are
    tracked meanwhile, and a new session is served after."""
    pbx, engine, server, registry = rig
    in_hook = asyncio.Event()
    release = asyncio.Event()

    async def slow_route(session: HookSession) -> None:
        in_hook.set()
        await release.wait()
        await session.set_variable("PBXAGENT_RESULT", "served")

    registry.register(hook("route", slow_route, deadline_s=5.0))
    faulthandler.dump_traceback_later(HANG_GUARD_S, exit=True)
    try:
        with capture_logs() as logs:
            first = FakeChannel(server.port, environment())
            running = asyncio.create_task(first.run())
            await asyncio.wait_for(in_hook.wait(), 5)
            half = encode_environment(environment())[:120]
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(half)
            await writer.drain()
            writer.close()  # EOF in the middle of the agi_* block
            caller = await pbx.inbound_call(caller="79161234567", caller_name="Иван")
            await caller.answer()
            async with asyncio.timeout(5):
                while CallId(caller.linkedid) not in engine.model.calls:
                    await asyncio.sleep(0.01)
                while not events(logs, "agi_header_invalid"):
                    await asyncio.sleep(0.01)
            release.set()
            await asyncio.wait_for(running, 5)
            second = FakeChannel(server.port, environment())
            await asyncio.wait_for(second.run(), 5)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert first.variables["PBXAGENT_RESULT"] == "served"
    assert second.variables["PBXAGENT_RESULT"] == "served"
    assert len(events(logs, "agi_header_invalid")) == 1

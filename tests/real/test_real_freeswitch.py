"""The FreeSWITCH adapter against a real FreeSWITCH (skipped unless PBX_AGENT_TEST_ESL is set).

``PBX_AGENT_TEST_ESL=host:port:password``. The calls are loopback channels (mod_loopback,
part of the stock build) whose far half runs ``park`` at the extension named by
``PBX_AGENT_TEST_FS_PARK`` (default ``9003``, the ``park`` extension of the transcripts' lab
dialplan, ``tests/traces/freeswitch/config``); nothing rings a phone.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pbx_agent.clock import LoopClock
from pbx_agent.daemon import FREESWITCH_EVENTS
from pbx_agent.engine import Engine
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import LegId
from pbx_agent.pbx.esl_client import EslSettings
from pbx_agent.pbx.freeswitch import FreeswitchAdapter, FreeswitchOptions
from pbx_agent.wire.esl import quote_api_arg
from tests.real.conftest import RealFreeswitch

pytestmark = pytest.mark.real_freeswitch

PARK = os.environ.get("PBX_AGENT_TEST_FS_PARK", "9003")
# A sound every FreeSWITCH can open: a tone stream (no file needed).
TONE = "tone_stream://%(500,0,440);loops=4"


class Rig:
    def __init__(
        self, engine: Engine, adapter: FreeswitchAdapter, events: list[ev.PbxEvent]
    ) -> None:
        self.engine = engine
        self.adapter = adapter
        self.events = events

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"timed out waiting for {what}; events: {self.events[-10:]}")

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def rig(real_freeswitch: RealFreeswitch) -> AsyncIterator[Rig]:
    events: list[ev.PbxEvent] = []
    clock = LoopClock()
    engine = Engine(clock=clock, policies=[])

    def handle(event: ev.PbxEvent) -> None:
        events.append(event)
        engine.handle(event)

    adapter = FreeswitchAdapter(
        EslSettings(
            host=real_freeswitch.host,
            port=real_freeswitch.port,
            password=real_freeswitch.password,
            events=FREESWITCH_EVENTS,
        ),
        FreeswitchOptions(sounds=lambda _key: TONE, prompt_seconds=lambda _key: 2.0),
        handle_event=handle,
        clock=clock,
    )
    engine.executor = adapter
    await adapter.start()
    try:
        yield Rig(engine, adapter, events)
    finally:
        await engine.close()
        await adapter.close()


async def _parked_call(rig: Rig) -> str:
    """A loopback call whose far half parks; returns the near leg's uuid."""
    leg = str(uuid.uuid4())
    dial = f"{{origination_uuid={leg}}}loopback/{PARK}/default"
    await rig.adapter.client.api(f"originate {quote_api_arg(dial)} &park()", timeout=10.0)
    await rig.until(lambda: any(e.leg == leg for e in rig.of(ev.LegCreated)), "the leg")
    return leg


async def test_the_adapter_subscribes_and_resyncs(rig: Rig) -> None:
    """Connected with the daemon's subscription, the live legs reported once."""
    await rig.until(lambda: bool(rig.of(ev.PbxResynced)), "the resync")
    assert rig.adapter.client.connected


async def test_a_leg_is_tracked_and_its_hangup_seen_with_its_cause(rig: Rig) -> None:
    """uuid_kill from the adapter: LegHungUp with NORMAL_CLEARING (Q.850 16)."""
    leg = await _parked_call(rig)
    await rig.adapter.kill(leg, 16)
    await rig.until(lambda: any(e.leg == leg for e in rig.of(ev.LegHungUp)), "the hang-up")
    ended = next(e for e in rig.of(ev.LegHungUp) if e.leg == leg)
    assert (ended.cause, ended.cause_text) == (16, "NORMAL_CLEARING")


async def test_a_displaced_prompt_is_accepted_and_stopped_by_its_path(rig: Rig) -> None:
    """``uuid_displace ... start`` then ``stop`` with the same path both answer +OK."""
    leg = await _parked_call(rig)
    try:
        started = await rig.adapter.client.api(f"uuid_displace {leg} start {quote_api_arg(TONE)} 0")
        stopped = await rig.adapter.client.api(f"uuid_displace {leg} stop {quote_api_arg(TONE)}")
        assert started.startswith("+OK")
        assert stopped.startswith("+OK")
    finally:
        await rig.adapter.kill(leg, 16)


async def test_a_prompt_to_a_leg_alone_ends_as_prompt_finished(rig: Rig) -> None:
    """PlayPrompt to a parked leg: ``uuid_broadcast ... aleg``, then PromptFinished."""
    leg = await _parked_call(rig)
    try:
        call = rig.engine.model.call_of(LegId(leg))
        assert call is not None
        await rig.adapter.execute(cmd.PlayPrompt(LegId(leg), "silent.prompt"), call)
        await rig.until(lambda: bool(rig.of(ev.PromptFinished)), "the prompt's end")
    finally:
        await rig.adapter.kill(leg, 16)

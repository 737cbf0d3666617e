"""R2 before the queue over FastAGI and AMI: the fake Asterisk runs AGI(agi://.../entry) on an
answered caller; talk events reach the hook through the engine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from pbx_agent.config.standards import Standards
from pbx_agent.hooks.entry import EntryHook, TalkFeed
from pbx_agent.model import events as ev
from pbx_agent.model.hooks import HookRegistry, HookSession
from pbx_agent.pbx.fastagi import FastAgiServer
from pbx_agent.testing.fake_asterisk import AgiResult, Leg
from tests.policies.asterisk_loopback import Loopback, loopback, sound
from tests.policies.test_silent_caller_entry import fast_standards

BOUND_S = 0.05


@contextlib.asynccontextmanager
async def entry_rig(
    *, shadow: bool = False, standards: Callable[[str | None, str | None], Standards] | None = None
) -> AsyncIterator[tuple[Loopback, str]]:
    std = fast_standards()
    async with loopback([], std) as rig:
        feed = TalkFeed()
        rig.engine.subscribe((ev.TalkingStarted, ev.TalkingStopped), feed.on_event)

        async def talk_detection(session: HookSession) -> None:
            await session.set_variable("TALK_DETECT(set)", "300,256")

        hook = EntryHook(
            standards=standards or (lambda _q, _d: std),
            shadow=shadow,
            feed=feed,
            clock=rig.clock,
            sounds=sound,
            talk_detection=talk_detection,
            decide=lambda command, session: rig.engine.record_decision(
                command, call=None, rule="R2", policy="silent_caller_entry"
            ),
        )
        server = FastAgiServer(HookRegistry({"entry": hook.spec(30.0)}), port=0)
        await server.start()
        try:
            yield rig, f"agi://127.0.0.1:{server.port}/entry"
        finally:
            await server.close()


async def run_entry(rig: Loopback, url: str, caller: Leg) -> AgiResult:
    return await asyncio.wait_for(rig.pbx.agi(caller, url, idle_timeout_s=30), 20)


async def test_silent_caller_is_told_and_hung_up_before_the_queue() -> None:
    """ANSWER, TALK_DETECT, two STREAM FILEs 0.5 s of silence apart, PBXAGENT_ENTRY=silent, HANGUP."""
    async with entry_rig() as (rig, url):
        rig.pbx.switch.sound_lengths[sound("silent.prompt")] = 1.0
        caller = await rig.pbx.inbound_call(caller="79161234567")
        result = await run_entry(rig, url, caller)
    verbs = [verb for verb in result.verbs if verb != "GET VARIABLE"]
    assert verbs == [
        "ANSWER",
        "SET VARIABLE",
        "STREAM FILE",
        "STREAM FILE",
        "SET VARIABLE",
        "HANGUP",
    ]
    assert dict(result.variables_set)["PBXAGENT_ENTRY"] == "silent"
    steps = [d for d in rig.decisions if d.action == "silent_caller_step"]
    assert [d.fields["silence_s"] for d in steps] == [pytest.approx(0.5, abs=BOUND_S)] * 2


async def test_caller_who_speaks_goes_on_to_the_queue_over_fastagi() -> None:
    """The caller's speech (ChannelTalkingStart/Stop over AMI) ends the check: spoke, no HANGUP."""
    async with entry_rig() as (rig, url):
        rig.pbx.switch.sound_lengths[sound("silent.prompt")] = 1.0
        caller = await rig.pbx.inbound_call(caller="79161234567")
        session = asyncio.create_task(run_entry(rig, url, caller))
        await rig.until(lambda: caller.talk_detection, what="TALK_DETECT on the caller")
        await caller.talk(0.8)
        result = await session
    assert dict(result.variables_set)["PBXAGENT_ENTRY"] == "spoke"
    assert "HANGUP" not in result.verbs
    assert caller.alive


async def test_in_shadow_mode_the_check_neither_answers_nor_speaks_nor_hangs_up() -> None:
    """Shadow mode sends nothing that changes a call: the caller goes on unchecked, and the
    log says why the check did not run."""
    async with entry_rig(shadow=True) as (rig, url):
        caller = await rig.pbx.inbound_call(caller="79161234567")
        result = await run_entry(rig, url, caller)
    assert [verb for verb in result.verbs if verb != "GET VARIABLE"] == ["SET VARIABLE"]
    assert dict(result.variables_set)["PBXAGENT_ENTRY"] == "unchecked"
    assert [d.action for d in rig.decisions] == ["silent_caller_entry_shadowed"]


async def test_the_queue_named_in_the_hook_url_picks_its_overrides() -> None:
    """entry?queue=support: the support queue's standards decide (here: the check is on only
    for that queue)."""
    off = fast_standards(pre_queue=False)
    on = fast_standards()
    seen: list[str | None] = []

    def per_queue(queue: str | None, _dialed: str | None) -> Standards:
        seen.append(queue)
        return on if queue == "support" else off

    async with entry_rig(standards=per_queue) as (rig, url):
        rig.pbx.switch.sound_lengths[sound("silent.prompt")] = 1.0
        caller = await rig.pbx.inbound_call(caller="79161234567")
        result = await run_entry(rig, f"{url}?queue=support", caller)
    assert seen == ["support"]
    assert dict(result.variables_set)["PBXAGENT_ENTRY"] == "silent"

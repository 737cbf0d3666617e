"""R2 before the queue: the ``entry`` hook runs the silence procedure on an answered caller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from pbx_agent.clock import ManualClock
from pbx_agent.config.standards import Standards
from pbx_agent.hooks.entry import (
    RESULT_VARIABLE,
    EntryHook,
    TalkFeed,
    entry_deadline_s,
    mark_unchecked,
)
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, LegId
from pbx_agent.model.hooks import HookSession, PlayResult
from tests.policies.call_driver import standards

LEG = LegId("e.1")
CALL = CallId("e.1")


def fast_standards(**silent: Any) -> Standards:
    """ru with 0.5 s steps (the range widened on purpose) and the pre-queue check on."""
    rule: dict[str, Any] = {
        "step_range_s": [0.1, 3],
        "steps": [
            {"after_s": 0.5, "prompt": "silent.prompt"},
            {"after_s": 0.5, "prompt": "silent.closing"},
        ],
        "pre_queue": True,
    }
    rule.update(silent)
    return standards("ru", silent_caller=rule)


@dataclass
class FakeSession:
    """A ``HookSession`` whose prompts take ``prompt_s`` on the test's clock."""

    clock: ManualClock
    prompt_s: float = 1.0
    failing: frozenset[str] = frozenset()
    hook: str = "entry"
    params: Mapping[str, str] = field(default_factory=dict)
    leg: LegId = LEG
    call: CallId = CALL
    channel: str = "PJSIP/trunk-00000001"
    caller_number: str = "79161234567"
    caller_name: str = ""
    dialed: str = "100"
    variables: Mapping[str, str] = field(default_factory=dict)
    done: list[tuple[float, str, str]] = field(default_factory=list)
    set: dict[str, str] = field(default_factory=dict)

    @property
    def hung_up(self) -> bool:
        return any(what == "hangup" for _, what, _ in self.done)

    async def get_variable(self, name: str) -> str | None:
        return self.set.get(name)

    async def set_variable(self, name: str, value: str) -> None:
        self.set[name] = value
        self.done.append((self.clock.now(), "set", f"{name}={value}"))

    async def answer(self) -> None:
        self.done.append((self.clock.now(), "answer", ""))

    async def play(
        self, sound: str, *, escape_digits: str = "", offset_samples: int = 0
    ) -> PlayResult:
        self.done.append((self.clock.now(), "play", sound))
        if sound in self.failing:
            return PlayResult(None, 0, failed=True)
        await clock_sleep(self.clock, self.prompt_s)
        return PlayResult(None, int(self.prompt_s * 8000))

    async def wait_for_digit(self, timeout_s: float) -> str | None:
        await clock_sleep(self.clock, timeout_s)
        return None

    async def hangup(self) -> None:
        self.done.append((self.clock.now(), "hangup", ""))

    def plays(self) -> list[tuple[float, str]]:
        return [(at, what) for at, kind, what in self.done if kind == "play"]


async def clock_sleep(clock: ManualClock, seconds: float) -> None:
    woke: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    clock.call_at(clock.now() + seconds, lambda: woke.done() or woke.set_result(None))
    await woke


@contextlib.asynccontextmanager
async def ticking(clock: ManualClock) -> AsyncIterator[None]:
    """Move the clock on in small steps, stopping at every timer's instant."""

    async def tick() -> None:
        while True:
            due = clock.next_due()
            target = clock.now() + 0.01
            if due is not None:
                target = min(target, max(due, clock.now()))
            clock.advance_to(target)
            await asyncio.sleep(0.001)  # let whatever the clock woke run before it moves on

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sound(key: str) -> str:
    return f"ru/{key.replace('.', '-')}"


def make_hook(clock: ManualClock, feed: TalkFeed, std: Standards) -> tuple[EntryHook, list[Any]]:
    decisions: list[Any] = []

    async def talk_detection(session: HookSession) -> None:
        await session.set_variable("TALK_DETECT(set)", "300,256")

    hook = EntryHook(
        standards=lambda _q, _d: std,
        feed=feed,
        clock=clock,
        sounds=sound,
        talk_detection=talk_detection,
        decide=lambda command, _session: decisions.append(command),
    )
    return hook, decisions


async def run_hook(session: FakeSession, hook: EntryHook, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        await hook(session)


async def test_silent_caller_hears_both_phrases_and_is_hung_up_before_the_queue() -> None:
    """Answer, talk detection on, prompt after 0.5 s, closing 0.5 s after it ends, hang up."""
    clock = ManualClock()
    session = FakeSession(clock)
    hook, decisions = make_hook(clock, TalkFeed(), fast_standards())
    start = clock.now()
    async with ticking(clock):
        await run_hook(session, hook)
    assert [(kind, what) for _, kind, what in session.done] == [
        ("answer", ""),
        ("set", "TALK_DETECT(set)=300,256"),
        ("play", sound("silent.prompt")),
        ("play", sound("silent.closing")),
        ("set", f"{RESULT_VARIABLE}=silent"),
        ("hangup", ""),
    ]
    (first, _), (second, _) = session.plays()
    assert first == pytest.approx(start + 0.5, abs=1e-6)
    assert second == pytest.approx(first + 1.0 + 0.5, abs=1e-6)
    drop = [d for d in decisions if isinstance(d, cmd.Note) and d.action == "silent_caller_drop"]
    assert drop[0].fields["silences_s"] == [0.5, 0.5, 0.0]


async def test_caller_who_speaks_goes_on_to_the_queue() -> None:
    """Speech after the first prompt: verdict ``spoke``, no closing phrase, no hang-up."""
    clock = ManualClock()
    feed = TalkFeed()
    session = FakeSession(clock)
    hook, _ = make_hook(clock, feed, fast_standards())

    async def caller_speaks() -> None:
        while not session.plays():
            await asyncio.sleep(0)
        await clock_sleep(clock, 1.2)
        feed.on_event(ev.TalkingStarted(LEG), clock.now())
        await clock_sleep(clock, 1.0)
        feed.on_event(ev.TalkingStopped(LEG, 300, 700), clock.now())

    async with ticking(clock):
        await asyncio.gather(run_hook(session, hook), caller_speaks())
    assert [what for _, what in session.plays()] == [sound("silent.prompt")]
    assert session.set[RESULT_VARIABLE] == "spoke"
    assert not session.hung_up


async def test_noise_before_the_queue_does_not_count_as_speech() -> None:
    """A 100 ms burst is noise: the caller is still dropped as silent."""
    clock = ManualClock()
    feed = TalkFeed()
    session = FakeSession(clock)
    hook, _ = make_hook(clock, feed, fast_standards())

    async def click() -> None:
        while not any(kind == "answer" for _, kind, _ in session.done):
            await asyncio.sleep(0)
        feed.on_event(ev.TalkingStarted(LEG), clock.now())
        await clock_sleep(clock, 0.4)
        feed.on_event(ev.TalkingStopped(LEG, 300, 100), clock.now())

    async with ticking(clock):
        await asyncio.gather(run_hook(session, hook), click())
    assert session.set[RESULT_VARIABLE] == "silent"
    assert session.hung_up


async def test_hook_does_nothing_when_the_pre_queue_check_is_off() -> None:
    """Without ``pre_queue`` the call is not even answered by the hook: verdict ``unchecked``."""
    clock = ManualClock()
    session = FakeSession(clock)
    hook, _ = make_hook(clock, TalkFeed(), fast_standards(pre_queue=False))
    await run_hook(session, hook)
    assert [(kind, what) for _, kind, what in session.done] == [
        ("set", f"{RESULT_VARIABLE}=unchecked")
    ]


async def test_prompt_that_fails_lets_the_caller_through_unchecked() -> None:
    """A caller is never dropped without the phrase: a failed prompt means ``unchecked``."""
    clock = ManualClock()
    session = FakeSession(clock, failing=frozenset({sound("silent.prompt")}))
    hook, _ = make_hook(clock, TalkFeed(), fast_standards())
    async with ticking(clock):
        await run_hook(session, hook)
    assert session.set[RESULT_VARIABLE] == "unchecked"
    assert not session.hung_up


async def test_safe_default_lets_the_caller_through() -> None:
    """On a deadline or a failure the dialplan is told ``unchecked`` and goes on to the queue."""
    clock = ManualClock()
    session = FakeSession(clock)
    hook, _ = make_hook(clock, TalkFeed(), fast_standards())
    spec = hook.spec(10.0)
    assert spec.on_timeout is mark_unchecked
    await mark_unchecked(session)
    assert session.set == {RESULT_VARIABLE: "unchecked"}


async def test_feed_stops_watching_the_leg_when_the_hook_ends() -> None:
    """Talk events of a leg no hook watches any more are dropped, not queued for ever."""
    clock = ManualClock()
    feed = TalkFeed()
    hook, _ = make_hook(clock, feed, fast_standards())
    async with ticking(clock):
        await run_hook(FakeSession(clock), hook)
    feed.on_event(ev.TalkingStarted(LEG), clock.now())
    assert feed.watched == 0


def test_deadline_covers_every_step_and_its_prompt() -> None:
    """ru: 2.5 + 2.5 s of silence, two prompts of up to 15 s, 0 s pause, 5 s margin."""
    assert entry_deadline_s(standards("ru").silent_caller) == pytest.approx(40.0, abs=1e-6)


def test_the_hooks_deadline_covers_the_slowest_queues_procedure() -> None:
    """entry?queue=support runs the support queue's steps: the hook's one deadline is long
    enough for them, not only for the site's."""
    from types import SimpleNamespace  # noqa: PLC0415

    from pbx_agent.config import load_config  # noqa: PLC0415
    from pbx_agent.engine import Engine  # noqa: PLC0415
    from pbx_agent.hooks.entry import entry_hook_factory  # noqa: PLC0415

    env = {
        "PBX_AGENT_QUEUES__SUPPORT__SILENT_CALLER__HANGUP_AFTER_CLOSING_S": "30",
        "PBX_AGENT_DIALED__88005550199__SILENT_CALLER__STEP_RANGE_S": "[2, 30]",
        "PBX_AGENT_DIALED__88005550199__SILENT_CALLER__STEPS": (
            '[{"after_s": 30, "prompt": "silent.prompt"},'
            ' {"after_s": 30, "prompt": "silent.closing"}]'
        ),
    }
    config = load_config(None, env=env)
    clock = ManualClock()
    daemon = SimpleNamespace(
        config=config,
        engine=Engine(clock=clock, policies=[]),
        clock=clock,
        hook_standards=config.standards_for,
    )
    spec = entry_hook_factory(daemon)  # type: ignore[arg-type]
    assert spec is not None
    # The queue's and the number's overrides together are the slowest.
    slowest = entry_deadline_s(config.standards_for("support", "88005550199").silent_caller)
    assert slowest > entry_deadline_s(config.standards_for("support", None).silent_caller)
    assert spec.deadline_s == pytest.approx(slowest)


async def test_a_deadline_arriving_while_the_report_wait_is_being_stopped_is_not_lost() -> None:
    """The hook's deadline can land in the step where the wait for a talk report is being
    cancelled: it must still end the hook, not be taken for that wait's own cancellation."""
    from pbx_agent.clock import LoopClock  # noqa: PLC0415
    from pbx_agent.hooks.entry import _next_report  # noqa: PLC0415

    class SlowToStop(asyncio.Queue[Any]):
        async def get(self) -> Any:
            try:
                return await super().get()
            except asyncio.CancelledError:
                await asyncio.sleep(0.05)  # still stopping when the deadline fires
                raise

    clock = LoopClock()
    waiting = asyncio.create_task(_next_report(SlowToStop(), clock, clock.now() + 0.01))
    await asyncio.sleep(0.03)  # the timer fired; the report wait is being stopped
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_lost_pbx_link_lets_the_caller_through_unchecked() -> None:
    """The talk events stop with the AMI link while the hook's own socket still works: the
    caller who talks meanwhile is not heard, so the check ends ``unchecked``, no closing
    phrase and no hang-up."""
    clock = ManualClock()
    feed = TalkFeed()
    session = FakeSession(clock)
    hook, decisions = make_hook(clock, feed, fast_standards())

    async def link_lost() -> None:
        while not session.plays():
            await asyncio.sleep(0)
        await clock_sleep(clock, 0.2)
        feed.on_event(ev.PbxConnectionChanged("asterisk", connected=False, reason="gone"), 0.0)

    async with ticking(clock):
        await asyncio.gather(run_hook(session, hook), link_lost())
    assert [what for _, what in session.plays()] == [sound("silent.prompt")]
    assert session.set[RESULT_VARIABLE] == "unchecked"
    assert not session.hung_up
    unheard = [d for d in decisions if isinstance(d, cmd.Note)][-1]
    assert unheard.action == "silent_caller_unheard"
    assert "(gone)" in unheard.reason


async def test_a_link_down_when_the_hook_starts_checks_nothing() -> None:
    """A call answered while the link is down: no prompt, ``unchecked``; once the link is
    back the next call is checked again."""
    clock = ManualClock()
    feed = TalkFeed()
    feed.on_event(ev.PbxConnectionChanged("asterisk", connected=False), 0.0)
    session = FakeSession(clock)
    hook, _ = make_hook(clock, feed, fast_standards())
    async with ticking(clock):
        await run_hook(session, hook)
    assert session.plays() == []
    assert session.set[RESULT_VARIABLE] == "unchecked"
    assert not session.hung_up
    feed.on_event(ev.PbxConnectionChanged("asterisk", connected=True), 0.0)
    again = FakeSession(clock)
    async with ticking(clock):
        await run_hook(again, hook)
    assert again.set[RESULT_VARIABLE] == "silent"
    assert again.hung_up

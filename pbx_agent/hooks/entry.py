"""The ``entry`` dialplan hook: R2's silent-caller procedure before the queue, so a caller
who says nothing never reaches an agent (``standards.silent_caller.pre_queue``).

The dialplan calls the hook right after answering an incoming call, then reads the verdict
from ``PBXAGENT_ENTRY`` (see ``[pbxagent-entry-example]`` in
``dialplan/asterisk/pbx-agent-scripts.conf``)::

    same => n,AGI(agi://127.0.0.1:4573/entry?queue=support)
    same => n,GotoIf($["${PBXAGENT_ENTRY}" = "silent"]?silent)
    same => n,Queue(support)

Theory of operation. The rule is not repeated here: the hook runs the same silence
procedure as the in-call policy (``pbx_agent.policies.silent_caller``: ``begin``/``advance``
over a ``SilencePlan`` built from the same ``silent_caller`` settings), counting from the
moment the hook starts, and turns its effects into hook commands: ``Say`` is a ``play`` of the
step's prompt to the caller (there is no agent yet), the end of the ``play`` is
``PromptPlayed``, ``Arm`` is how long to wait for the caller's next sound. The caller's speech
comes from talk detection: the PBX's talk events for this leg, which the engine's raw event
stream delivers (``TalkFeed``, subscribed to the engine by the composition root); the hook
turns talk detection on for its channel first. The one-way-audio variant (a callback) is not
used here: with no agent there is no conversation that was cut.

The PBX link. The talk events come over the AMI / Event Socket link, the hook's session
over its own socket: with the link down the hook could still play and hang up while hearing
nothing. So a lost link (``PbxConnectionChanged(connected=False)``, or a link already down
when the hook starts) ends the procedure (``HearingLost``: outcome ``unheard``, logged as
``silent_caller_unheard``) and the caller goes on to the queue ``unchecked``.

Verdicts (``PBXAGENT_ENTRY``): ``spoke`` (the caller spoke: on to the queue), ``silent`` (every
step said to a silent caller: the hook hangs up), ``unchecked`` (the rule is off, a prompt
failed, the daemon overran its deadline or failed: the dialplan goes on to the queue, as if the
daemon were absent). Every step and the verdict are logged as decisions.

Invariants: the hook never drops a caller it did not tell (a failed prompt ends in
``unchecked``); its deadline covers every step with its prompt; one inbox per watched leg,
removed when the hook ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog

from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.hooks import HookSession, HookSpec
from pbx_agent.pbx.tasks import cancel_and_wait
from pbx_agent.policies.silent_caller import (
    Arm,
    CallerSoundEnded,
    CallerSoundStarted,
    Disarm,
    Due,
    Effect,
    Finished,
    HearingLost,
    NoiseIgnored,
    Outcome,
    PromptPlayed,
    Say,
    Signal,
    Silence,
    SilencePlan,
    advance,
    begin,
)

if TYPE_CHECKING:
    from pbx_agent.clock import Clock
    from pbx_agent.config import Config
    from pbx_agent.config.standards import SilentCallerRule, Standards
    from pbx_agent.daemon import Daemon

log = structlog.get_logger("pbx_agent.hooks.entry")

HOOK_NAME = "entry"
RESULT_VARIABLE = "PBXAGENT_ENTRY"
RULE = "R2"
POLICY = "silent_caller_entry"
# What one prompt may take, for the hook's deadline (the seed's phrases are 2-6 s long).
PROMPT_ALLOWANCE_S = 15.0


class EntryVerdict(StrEnum):
    SPOKE = "spoke"
    SILENT = "silent"
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class TalkReport:
    """One talk event of a watched leg, stamped when the daemon received it."""

    at: float
    started: bool
    ended_at: float | None = None  # the real end of speech (stopped reports)
    speech_ms: int | None = None
    link_lost: str | None = None  # not talk: the PBX link is down (why), nothing is heard


LINK_LOST = "the daemon lost the PBX link: it cannot know whether the caller spoke"


class TalkFeed:
    """Routes the PBX's talk events to the hooks watching those legs.

    The composition root subscribes ``on_event`` to the engine's raw events
    (``engine.subscribe((TalkingStarted, TalkingStopped, PbxConnectionChanged), ...)``): a
    lost link reaches every watched leg as a ``link_lost`` report.
    """

    def __init__(self) -> None:
        self._inboxes: dict[ev.LegId, asyncio.Queue[TalkReport]] = {}
        self._link_down: str | None = None  # why, while the PBX link is down

    def on_event(self, event: ev.PbxEvent, now: float) -> None:
        if isinstance(event, ev.PbxConnectionChanged):
            self._link_down = None if event.connected else (event.reason or "link lost")
            if self._link_down is not None:
                lost = TalkReport(now, started=False, link_lost=self._link_down)
                for watching in self._inboxes.values():
                    watching.put_nowait(lost)
            return
        if not isinstance(event, ev.TalkingStarted | ev.TalkingStopped):
            return
        inbox = self._inboxes.get(event.leg)
        if inbox is None:
            return
        if isinstance(event, ev.TalkingStarted):
            inbox.put_nowait(TalkReport(now, started=True))
        else:
            ended_at = now - event.silence_ms / 1000.0
            inbox.put_nowait(
                TalkReport(now, started=False, ended_at=ended_at, speech_ms=event.speech_ms)
            )

    @contextlib.contextmanager
    def watch(self, leg: ev.LegId) -> Iterator[asyncio.Queue[TalkReport]]:
        inbox: asyncio.Queue[TalkReport] = asyncio.Queue()
        if self._link_down is not None:
            inbox.put_nowait(TalkReport(0.0, started=False, link_lost=self._link_down))
        self._inboxes[leg] = inbox
        try:
            yield inbox
        finally:
            if self._inboxes.get(leg) is inbox:
                del self._inboxes[leg]

    @property
    def watched(self) -> int:
        return len(self._inboxes)


def _signal(report: TalkReport) -> Signal:
    if report.link_lost is not None:
        return HearingLost(f"{LINK_LOST} ({report.link_lost})")
    if report.started:
        return CallerSoundStarted(report.at)
    assert report.ended_at is not None
    return CallerSoundEnded(report.ended_at, report.speech_ms)


Decide = Callable[[cmd.Command, HookSession], None]


async def run_silence_check(
    session: HookSession,
    plan: SilencePlan,
    inbox: asyncio.Queue[TalkReport],
    *,
    clock: Clock,
    sounds: Callable[[str], str],
    decide: Decide | None = None,
) -> Silence:
    """Run the silence procedure on ``session``'s caller until it is over; return its end."""
    now = clock.now()
    procedure, effects = begin(plan, quiet_since=now, now=now)
    pending: deque[Effect] = deque(effects)
    armed: float | None = None
    while True:
        while pending:
            effect = pending.popleft()
            match effect:
                case Arm():
                    armed = effect.at
                case Disarm():
                    armed = None
                case Say():
                    _decide(decide, session, _step_note(effect))
                    procedure, more = await _say(session, procedure, effect, inbox, clock, sounds)
                    pending.extend(more)
                case NoiseIgnored():
                    _decide(
                        decide,
                        session,
                        cmd.Note(
                            "silent_caller_noise",
                            f"a {effect.duration_ms} ms sound is noise, not speech",
                            {"duration_ms": effect.duration_ms, "stage": "entry"},
                        ),
                    )
                case Finished():
                    return procedure
        report = await _next_report(inbox, clock, armed)
        signal: Signal = Due() if report is None else _signal(report)
        now = clock.now()
        procedure, effects = advance(procedure, signal, now)
        pending.extend(effects)


async def _next_report(
    inbox: asyncio.Queue[TalkReport], clock: Clock, armed: float | None
) -> TalkReport | None:
    """The caller's next talk report, or None once the clock reaches ``armed``.

    The wait is on ``clock`` (not the event loop's timer), so the hook keeps the same time
    as the engine whatever clock the daemon runs on.
    """
    if not inbox.empty():
        return inbox.get_nowait()
    woke: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not woke.done():
            woke.set_result(None)

    timer = clock.call_at(armed, wake) if armed is not None else None
    getter = asyncio.create_task(inbox.get(), name="entry talk report")
    try:
        waiters: set[asyncio.Future[Any]] = {getter, woke}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if timer is not None:
            timer.cancel()
        if not getter.done():
            await cancel_and_wait(getter)
    if getter.done() and not getter.cancelled():
        return getter.result()
    return None


async def _say(
    session: HookSession,
    procedure: Silence,
    say: Say,
    inbox: asyncio.Queue[TalkReport],
    clock: Clock,
    sounds: Callable[[str], str],
) -> tuple[Silence, list[Effect]]:
    """Play one step's prompt; then what the caller did meanwhile, then the prompt's end."""
    result = await session.play(sounds(say.prompt))
    effects: list[Effect] = []
    now = clock.now()
    while not inbox.empty():
        procedure, more = advance(procedure, _signal(inbox.get_nowait()), now)
        effects.extend(more)
    procedure, more = advance(procedure, PromptPlayed(not result.failed), now)
    return procedure, [*effects, *more]


def _decide(decide: Decide | None, session: HookSession, command: cmd.Command) -> None:
    if decide is not None:
        decide(command, session)


def _step_note(say: Say) -> cmd.Note:
    return cmd.Note(
        "silent_caller_step",
        f"the caller has been silent for {say.silence_s:.2f} s before the queue "
        f"(step {say.step + 1} of {say.of})",
        {
            "step": say.step + 1,
            "of": say.of,
            "prompt": say.prompt,
            "silence_s": round(say.silence_s, 3),
            "late_s": round(say.late_s, 3),
            "stage": "entry",
        },
    )


def entry_deadline_s(
    rule: SilentCallerRule, prompt_allowance_s: float = PROMPT_ALLOWANCE_S
) -> float:
    """Long enough for every step, its prompt and the final pause, with a margin."""
    steps = sum(step.after_s for step in rule.steps)
    return steps + rule.hangup_after_closing_s + len(rule.steps) * prompt_allowance_s + 5.0


class EntryHook:
    """The ``entry`` hook's handler. See the module docstring."""

    def __init__(
        self,
        *,
        standards: Callable[[str | None, str | None], Standards],
        feed: TalkFeed,
        clock: Clock,
        sounds: Callable[[str], str],
        talk_detection: Callable[[HookSession], Awaitable[None]] | None = None,
        decide: Decide | None = None,
        prompt_guard_s: float = PROMPT_ALLOWANCE_S,
        shadow: bool = False,
    ) -> None:
        self._shadow = shadow
        self._standards = standards
        self._feed = feed
        self._clock = clock
        self._sounds = sounds
        self._talk_detection = talk_detection
        self._decide = decide
        self._prompt_guard_s = prompt_guard_s

    def spec(self, deadline_s: float, live: Callable[[], float] | None = None) -> HookSpec:
        return HookSpec(
            name=HOOK_NAME,
            handler=self,
            deadline_s=deadline_s,
            on_timeout=mark_unchecked,
            live_deadline_s=live,
        )

    async def __call__(self, session: HookSession) -> None:
        # ``AGI(agi://.../entry?queue=support)``: the queue the call is for (its overrides).
        queue = session.params.get("queue") or None
        rule = self._standards(queue, session.dialed or None).silent_caller
        if not (rule.enabled and rule.pre_queue):
            await session.set_variable(RESULT_VARIABLE, EntryVerdict.UNCHECKED)
            return
        if self._shadow:
            # The check answers the call, speaks and may hang up: nothing of it in shadow
            # mode; the caller goes on to the queue as if the daemon were absent.
            _decide(
                self._decide,
                session,
                cmd.Note(
                    "silent_caller_entry_shadowed",
                    "shadow mode: the pre-queue silence check would answer the call and may "
                    "drop it, so it is not run",
                    {"stage": "entry"},
                ),
            )
            await session.set_variable(RESULT_VARIABLE, EntryVerdict.UNCHECKED)
            return
        plan = SilencePlan.for_silent_caller(rule, prompt_guard_s=self._prompt_guard_s)
        with self._feed.watch(session.leg) as inbox:
            await session.answer()
            if self._talk_detection is not None:
                await self._talk_detection(session)
            procedure = await run_silence_check(
                session,
                plan,
                inbox,
                clock=self._clock,
                sounds=self._sounds,
                decide=self._decide,
            )
        await self._conclude(session, procedure)

    async def _conclude(self, session: HookSession, procedure: Silence) -> None:
        silences = [round(s, 3) for s in procedure.silences]
        if procedure.outcome is Outcome.DROPPED:
            _decide(
                self._decide,
                session,
                cmd.Note(
                    "silent_caller_drop",
                    f"{procedure.detail} before the queue",
                    {"silences_s": silences, "stage": "entry"},
                ),
            )
            await session.set_variable(RESULT_VARIABLE, EntryVerdict.SILENT)
            await session.hangup()
            return
        verdict = (
            EntryVerdict.SPOKE if procedure.outcome is Outcome.HEARD else (EntryVerdict.UNCHECKED)
        )
        action = {
            Outcome.HEARD: "silent_caller_cancelled",
            Outcome.UNHEARD: "silent_caller_unheard",
        }.get(procedure.outcome or Outcome.ABANDONED, "silent_caller_abandoned")
        _decide(
            self._decide,
            session,
            cmd.Note(action, procedure.detail, {"silences_s": silences, "stage": "entry"}),
        )
        await session.set_variable(RESULT_VARIABLE, verdict)


async def mark_unchecked(session: HookSession) -> None:
    """The safe default: the dialplan goes on to the queue as if the daemon were absent."""
    await session.set_variable(RESULT_VARIABLE, EntryVerdict.UNCHECKED)


def entry_hook_factory(daemon: Daemon) -> HookSpec | None:
    """For ``pbx_agent.daemon.HOOK_FACTORIES``: the hook wired to the daemon's parts."""
    from pbx_agent.prompts import sound_name  # noqa: PLC0415 - the composition root's helper

    config = daemon.config
    engine = daemon.engine
    clock = daemon.clock
    assert clock is not None
    feed = TalkFeed()
    engine.subscribe((ev.TalkingStarted, ev.TalkingStopped, ev.PbxConnectionChanged), feed.on_event)
    # The simulated PBX is the fake Asterisk: it names sounds as Asterisk does.
    pbx = "asterisk" if config.pbx.kind == "simulated" else config.pbx.kind
    asterisk = config.asterisk

    async def talk_detection(session: HookSession) -> None:
        if asterisk is not None:
            value = f"{asterisk.talk_detect_silence_ms},{asterisk.talk_detect_energy_threshold}"
            await session.set_variable("TALK_DETECT(set)", value)

    def decide(command: cmd.Command, session: HookSession) -> None:
        engine.record_decision(
            command, call=engine.model.calls.get(session.call), rule=RULE, policy=POLICY
        )

    hook = EntryHook(
        # Through the daemon, so a reload (SIGHUP) reaches the hook too.
        standards=daemon.hook_standards,
        feed=feed,
        clock=clock,
        sounds=lambda key: sound_name(config, key, pbx),
        talk_detection=talk_detection if pbx == "asterisk" else None,
        decide=decide,
        shadow=config.shadow,
    )
    # One deadline for the hook, long enough for the slowest layer's procedure (a queue's
    # own steps apply through entry?queue=); worked out again after a reload.
    latest: dict[str, tuple[Config, float]] = {}

    def live_deadline_s() -> float:
        running = daemon.config
        known = latest.get("config")
        if known is None or known[0] is not running:
            known = latest["config"] = (running, config_entry_deadline_s(running))
        return known[1]

    return hook.spec(live_deadline_s(), live_deadline_s)


def config_entry_deadline_s(config: Config) -> float:
    """The entry hook's deadline under ``config``: its slowest layer's procedure."""
    queues: list[str | None] = [None, *config.queues]
    numbers: list[str | None] = [None, *config.dialed]
    return max(
        entry_deadline_s(config.standards_for(q, d).silent_caller) for q in queues for d in numbers
    )

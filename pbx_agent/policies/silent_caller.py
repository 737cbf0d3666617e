"""R2, the silent caller: a caller who says nothing hears the set phrases, then the call is
dropped. Also the silence procedure itself, which R3 (``lingering``) and the pre-queue entry
hook (``pbx_agent.hooks.entry``) run with their own steps.

Theory of operation
-------------------
Two layers, both pure.

*The silence procedure* (``begin`` / ``advance`` over a ``Silence`` state) is the rule: count
the caller's silence; when it reaches the next step's ``after_s``, say that step's prompt;
after the last prompt wait ``final_wait_s`` and drop. Any real speech from the caller at any
step ends it (``Outcome.HEARD``). It knows nothing of calls, legs or commands: it takes
``Signal``s and returns ``Effect``s, so each user maps them to its own actions (the policy to
commands, the entry hook to FastAGI calls).

Timing. Silence is counted from ``quiet_since``: the real end of the other party's speech (the
agent's greeting), or the moment a prompt finished playing. Talk detectors report the end of
speech late (Asterisk's ``ChannelTalkingStop`` comes ``TALK_DETECT`` silence-threshold ms after
the speech really ended) and the call model hands over the real end (``SpeechEnded.ended_at``),
so a step is armed for ``ended_at + after_s`` however late the report came: the prompt goes out
at the configured instant, not threshold ms later. While the other party speaks nothing is
counted; when they stop, the count starts again from their real end of speech (a prompt never
cuts into the agent's words).

Noise. A sound from the caller (``CallerSoundStarted``) cannot be judged until it ends: only
the detector's end report says how long it was (``speech_ms``, Asterisk's ``Duration``, or the
time from its start to its real end). While a sound is pending, no step is played over it and
no drop happens (the timer is disarmed). When it ends:

- ``>= min_speech_ms``: speech. The procedure is over (``HEARD``).
- shorter: noise. It does not count as speech *and does not restart the silence*: the step stays
  due at its original instant; if that instant passed while the burst was being judged, the
  step is played at once (so a burst can delay a step by at most the burst's length plus the
  detector's end-report delay, and that step is then outside the ±50 ms bound; logged as
  ``late_s``).

Transitions (``stage`` x ``signal``; every signal in ``OVER`` is ignored)::

    WAITING  Due (no sound pending)          -> PLAYING  Say(step), Arm(now + prompt_guard_s)
    WAITING  OtherSpeechStarted              -> WAITING  quiet_since = None, Disarm
    WAITING  OtherSpeechEnded(t)             -> WAITING  quiet_since = t, Arm(t + after_s)
    PLAYING  PromptPlayed(ok), more steps    -> WAITING  quiet_since = now, Arm(now + after_s)
    PLAYING  PromptPlayed(ok), last step     -> CLOSING  Arm(now + final_wait_s)
                                                (final_wait_s = 0 and no sound: OVER DROPPED)
    PLAYING  PromptPlayed(failed) | Due      -> OVER ABANDONED (never drop a caller who was
                                                not told; a lost report is a failed prompt)
    CLOSING  Due (no sound pending)          -> OVER DROPPED
    any      CallerSoundStarted              -> same, sound pending (WAITING/CLOSING: Disarm)
    any      CallerSoundEnded >= min         -> OVER HEARD, Disarm
    any      CallerSoundEnded < min          -> same, NoiseIgnored; WAITING/CLOSING: Arm(due),
                                                or act at once if due passed meanwhile
    PLAYING  Other*                          -> remembered (the agent may talk over a prompt;
                                                a prompt that ends while they still talk
                                                leaves the count stopped: WAITING/CLOSING
                                                with nothing armed, Disarm)
    CLOSING  OtherSpeechStarted              -> CLOSING  due = None, Disarm (no drop over the
                                                agent's words)
    CLOSING  OtherSpeechEnded(t)             -> CLOSING  Arm(t + final_wait_s)
    any      HearingLost                     -> OVER UNHEARD, Disarm (the user could no longer
                                                hear the caller: whatever was said meanwhile
                                                is unknown, so never a drop on that silence)

*The policy* (``SilentCallerPolicy``, R2 on one call): when the caller and an agent are
connected the procedure begins with the greeting not yet over; the agent's first speech ends
the greeting wait, and if the agent never speaks the greeting is presumed over
``greeting_max_s`` after connect. Prompts are played to both parties (``Audience.BOTH``), so
the agent hears what the caller is told. A drop hangs up both legs and is logged with every
silence it measured. In the ``zh`` profile (``one_way_audio_callback``) the last step says the
one-way-audio phrase instead (§4: "we will contact you at once") and a callback is requested
(R7). The agent taking over (hold, any feature code) stops the procedure; the parties being
separated before it finished puts it back to waiting for the next connection (a transfer).

The link to the PBX. While the daemon's link to the switch is down it hears nothing: a caller
who starts speaking then is never reported (Asterisk sends ``ChannelTalkingStart`` once), and
counting on would prompt, close and hang up on a caller who has been talking all along. So
``LinkLost`` ends a running procedure (``HearingLost``: outcome ``UNHEARD``, logged as
``silent_caller_unheard``) and the caller is not dropped. It does not start again in that call:
R2 is about the first words after the greeting, and after a gap the daemon could not hear it
cannot tell a caller who is listening to the agent from a silent one; the agent, who hears the
caller, takes over, as after a hold. For the same reason a connection made while the link was
down (``PartiesConnected`` between ``LinkLost`` and ``LinkRestored``, seen only in the resync)
is not checked either: its greeting and first words were not heard. A call still waiting for
an agent when the link comes back is checked as usual when it is connected.

Invariants: one timer per procedure (``Arm`` replaces, ``Disarm`` cancels); ``Finished`` is
emitted exactly once, on entering ``OVER``; nothing here awaits, logs or reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model.events import LegId, Role

if TYPE_CHECKING:
    from pbx_agent.config import Config
    from pbx_agent.config.standards import SilentCallerRule, Standards

# A timer may fire a hair early (the event loop's clock resolution); far inside ±50 ms.
_EARLY_TOLERANCE_S = 0.001

# --------------------------------------------------------------------------- the procedure


class Stage(StrEnum):
    WAITING = "waiting"  # counting the caller's silence towards the next step's prompt
    PLAYING = "playing"  # a step's prompt is playing
    CLOSING = "closing"  # the last prompt has played; the drop is due after final_wait_s
    OVER = "over"  # finished, see ``Silence.outcome``


class Outcome(StrEnum):
    HEARD = "heard"  # the caller spoke: the procedure is cancelled, the call goes on
    DROPPED = "dropped"  # every step was said to a silent caller: drop the call
    ABANDONED = "abandoned"  # a prompt could not be played (or was never confirmed)
    UNHEARD = "unheard"  # the caller could not be heard for a while: never dropped on it


@dataclass(frozen=True, slots=True)
class PlannedStep:
    after_s: float  # silence before this step's prompt
    prompt: str


@dataclass(frozen=True, slots=True)
class SilencePlan:
    """What one run of the procedure does: steps, the wait before the drop, the noise floor."""

    steps: tuple[PlannedStep, ...]
    final_wait_s: float
    min_speech_ms: int
    # How long a prompt may take to report that it finished before it counts as failed.
    prompt_guard_s: float = 60.0

    @classmethod
    def for_silent_caller(
        cls, rule: SilentCallerRule, *, one_way: bool = False, prompt_guard_s: float = 60.0
    ) -> SilencePlan:
        """R2's plan. ``one_way``: the last step says ``one_way_prompt`` (a callback follows)."""
        steps = [PlannedStep(step.after_s, step.prompt) for step in rule.steps]
        if one_way:
            steps[-1] = PlannedStep(steps[-1].after_s, rule.one_way_prompt)
        return cls(
            steps=tuple(steps),
            final_wait_s=rule.hangup_after_closing_s,
            min_speech_ms=rule.min_speech_ms,
            prompt_guard_s=prompt_guard_s,
        )


@dataclass(frozen=True, slots=True)
class Silence:
    """One run of the silence procedure."""

    plan: SilencePlan
    stage: Stage = Stage.WAITING
    step: int = 0  # the step being waited for (WAITING) or played (PLAYING)
    quiet_since: float | None = None  # start of the silence being counted; None: other talks
    other_talking: bool = False  # the other party (the agent) is speaking
    due: float | None = None  # when the current wait ends (step, prompt guard, drop)
    sound_since: float | None = None  # a sound from the caller is pending judgement
    sound_clipped: bool = False  # it began before the procedure: measured from sound_since
    prompt_done_at: float | None = None  # when the last prompt finished (CLOSING)
    silences: tuple[float, ...] = ()  # the silence measured before each prompt (and the drop)
    outcome: Outcome | None = None
    detail: str = ""


# -- signals (what happened) --


@dataclass(frozen=True, slots=True)
class CallerSoundStarted:
    at: float
    # The sound began before the procedure (the caller's goodbye over R3's farewell press):
    # only its part from ``at`` counts, not the detector's measure of all of it.
    clipped: bool = False


@dataclass(frozen=True, slots=True)
class CallerSoundEnded:
    ended_at: float  # the real end of the sound
    speech_ms: int | None  # the detector's measure of it, when it gives one


@dataclass(frozen=True, slots=True)
class OtherSpeechStarted:
    pass


@dataclass(frozen=True, slots=True)
class OtherSpeechEnded:
    ended_at: float


@dataclass(frozen=True, slots=True)
class Due:
    """The armed timer fired."""


@dataclass(frozen=True, slots=True)
class PromptPlayed:
    ok: bool


@dataclass(frozen=True, slots=True)
class HearingLost:
    """The caller can no longer be heard (the link to the switch is down): a silence counted
    from here on would be the daemon's deafness, not the caller's."""

    why: str


Signal = (
    CallerSoundStarted
    | CallerSoundEnded
    | OtherSpeechStarted
    | OtherSpeechEnded
    | Due
    | PromptPlayed
    | HearingLost
)


# -- effects (what to do) --


@dataclass(frozen=True, slots=True)
class Arm:
    at: float


@dataclass(frozen=True, slots=True)
class Disarm:
    pass


@dataclass(frozen=True, slots=True)
class Say:
    step: int  # 0-based
    of: int
    prompt: str
    silence_s: float  # how long the caller had been silent
    late_s: float  # how far past the configured instant (a noise burst held it back)

    @property
    def last(self) -> bool:
        return self.step == self.of - 1


@dataclass(frozen=True, slots=True)
class NoiseIgnored:
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Finished:
    outcome: Outcome
    silences: tuple[float, ...]
    detail: str
    speech_ms: int | None = None  # HEARD: how long the caller spoke


Effect = Arm | Disarm | Say | NoiseIgnored | Finished
Transition = tuple[Silence, list[Effect]]


def begin(plan: SilencePlan, *, quiet_since: float | None, now: float) -> Transition:
    """Start counting. ``quiet_since=None``: the other party is still talking (a greeting)."""
    state = Silence(plan=plan, quiet_since=quiet_since)
    if quiet_since is None:
        return state, []
    return _wait_for_step(state, 0, quiet_since, now)


def advance(state: Silence, signal: Signal, now: float) -> Transition:  # noqa: C901, PLR0911, PLR0912
    """The transition function; see the table in the module docstring."""
    if state.stage is Stage.OVER:
        return state, []
    match signal:
        case CallerSoundStarted():
            if state.sound_since is not None:
                return state, []
            held = replace(state, sound_since=signal.at, sound_clipped=signal.clipped)
            return held, [Disarm()] if state.stage is not Stage.PLAYING else []
        case CallerSoundEnded():
            return _sound_ended(state, signal, now)
        case OtherSpeechStarted():
            talking = replace(state, other_talking=True)
            if state.stage is Stage.PLAYING:
                return talking, []
            if state.stage is Stage.WAITING:
                talking = replace(talking, quiet_since=None)
            return replace(talking, due=None), [Disarm()]
        case OtherSpeechEnded():
            quiet = replace(state, other_talking=False)
            match state.stage:
                case Stage.PLAYING:
                    return quiet, []
                case Stage.WAITING:
                    return _wait_for_step(quiet, state.step, signal.ended_at, now)
                case Stage.CLOSING:
                    return _close_after(quiet, signal.ended_at, now)
        case Due():
            if state.due is None or now < state.due - _EARLY_TOLERANCE_S:
                return state, []  # stale: re-armed or disarmed since
            return _due(state, now)
        case PromptPlayed():
            if state.stage is not Stage.PLAYING:
                return state, []
            if not signal.ok:
                prompt = state.plan.steps[state.step].prompt
                return _finish(state, Outcome.ABANDONED, f"prompt {prompt} could not be played")
            return _prompt_played(state, now)
        case HearingLost():
            return _finish(replace(state, sound_since=None), Outcome.UNHEARD, signal.why)
    return state, []


def _wait_for_step(state: Silence, step: int, quiet_since: float, now: float) -> Transition:
    due = quiet_since + state.plan.steps[step].after_s
    waiting = replace(state, stage=Stage.WAITING, step=step, quiet_since=quiet_since, due=due)
    return waiting, _arm_unless_sounding(waiting, now)


def _arm_unless_sounding(state: Silence, now: float) -> list[Effect]:
    if state.sound_since is not None or state.due is None:
        return []
    return [Arm(max(state.due, now))]


def _sound_ended(state: Silence, signal: CallerSoundEnded, now: float) -> Transition:
    if state.sound_since is None:
        return state, []  # an end we never saw begin (detection enabled mid-sound)
    if signal.speech_ms is not None and not state.sound_clipped:
        duration_ms = signal.speech_ms
    else:
        duration_ms = round(max(0.0, signal.ended_at - state.sound_since) * 1000)
    cleared = replace(state, sound_since=None, sound_clipped=False)
    if duration_ms >= state.plan.min_speech_ms:
        return _finish(
            cleared, Outcome.HEARD, f"the caller spoke for {duration_ms} ms", speech_ms=duration_ms
        )
    noise = NoiseIgnored(duration_ms)
    if cleared.stage is Stage.PLAYING or cleared.due is None:
        return cleared, [noise]
    if cleared.due <= now:
        # The step fell due while the burst was being judged: it is played now, late.
        after, effects = _due(cleared, now)
        return after, [noise, *effects]
    return cleared, [noise, Arm(cleared.due)]


def _due(state: Silence, now: float) -> Transition:
    if state.sound_since is not None:
        return state, []  # never armed while a sound is pending; a late fire waits for it
    plan = state.plan
    match state.stage:
        case Stage.WAITING:
            assert state.quiet_since is not None  # due is only set with quiet_since
            assert state.due is not None
            step = plan.steps[state.step]
            silence = now - state.quiet_since
            say = Say(
                step=state.step,
                of=len(plan.steps),
                prompt=step.prompt,
                silence_s=silence,
                late_s=max(0.0, now - state.due),
            )
            playing = replace(
                state,
                stage=Stage.PLAYING,
                due=now + plan.prompt_guard_s,
                silences=(*state.silences, silence),
            )
            return playing, [say, Arm(now + plan.prompt_guard_s)]
        case Stage.PLAYING:
            prompt = plan.steps[state.step].prompt
            return _finish(
                state,
                Outcome.ABANDONED,
                f"prompt {prompt} did not report its end within {plan.prompt_guard_s:g} s",
            )
        case Stage.CLOSING:
            return _drop(state, now)
    return state, []


def _prompt_played(state: Silence, now: float) -> Transition:
    plan = state.plan
    last = state.step + 1 >= len(plan.steps)
    if state.other_talking:
        # The agent is still speaking: nothing is counted (and nothing said or dropped over
        # their words) until they stop; OtherSpeechEnded arms from their real end.
        if last:
            closing = replace(state, stage=Stage.CLOSING, due=None, prompt_done_at=now)
            return closing, [Disarm()]
        waiting = replace(
            state, stage=Stage.WAITING, step=state.step + 1, quiet_since=None, due=None
        )
        return waiting, [Disarm()]
    if not last:
        return _wait_for_step(state, state.step + 1, now, now)
    return _close_after(replace(state, stage=Stage.CLOSING, prompt_done_at=now), now, now)


def _close_after(state: Silence, quiet_since: float, now: float) -> Transition:
    """CLOSING: the drop falls due ``final_wait_s`` after ``quiet_since``."""
    closing = replace(state, due=quiet_since + state.plan.final_wait_s)
    if closing.due is not None and closing.due <= now and closing.sound_since is None:
        return _drop(closing, now)
    return closing, _arm_unless_sounding(closing, now)


def _drop(state: Silence, now: float) -> Transition:
    after_last = now - state.prompt_done_at if state.prompt_done_at is not None else 0.0
    counted = replace(state, silences=(*state.silences, after_last))
    n = len(state.plan.steps)
    return _finish(counted, Outcome.DROPPED, f"the caller stayed silent through all {n} steps")


def _finish(
    state: Silence, outcome: Outcome, detail: str, *, speech_ms: int | None = None
) -> Transition:
    over = replace(state, stage=Stage.OVER, due=None, outcome=outcome, detail=detail)
    return over, [Disarm(), Finished(outcome, over.silences, detail, speech_ms)]


def awaits_prompt(procedure: Silence | None, prompt: str) -> bool:
    """Whether ``procedure`` is waiting for ``prompt`` to finish playing."""
    return (
        procedure is not None
        and procedure.stage is Stage.PLAYING
        and procedure.plan.steps[procedure.step].prompt == prompt
    )


# --------------------------------------------------------------------------- the R2 policy

PROCEDURE_TIMER = "procedure"
GREETING_TIMER = "greeting"
LINK_LOST = "the daemon lost the PBX link: it cannot know whether the caller spoke"


class Phase(StrEnum):
    IDLE = "idle"  # the caller is not connected to an agent (yet, or any more)
    RUNNING = "running"  # the procedure runs
    FINISHED = "finished"  # the caller spoke, was dropped, or the agent took over: done


@dataclass(frozen=True, slots=True)
class SilentCallerState:
    phase: Phase = Phase.IDLE
    caller: LegId | None = None
    agent: LegId | None = None
    procedure: Silence | None = None
    connected_at: float | None = None
    greeting_pending: bool = False  # the greeting timer runs (the agent has not spoken yet)
    greeting_ended_at: float | None = None
    one_way: bool = False  # the drop is one-way audio: announce and call back (zh)
    # IDLE: the link to the PBX was lost at this time and is not back yet (no LinkRestored).
    unheard_since: float | None = None


class SilentCallerPolicy:
    """R2 on one call. See the module docstring."""

    name = "silent_caller"
    rule = "R2"

    def __init__(self, *, prompt_guard_s: float = 60.0) -> None:
        self.prompt_guard_s = prompt_guard_s

    def start(self, call: cm.Call, now: float) -> SilentCallerState | None:
        del now
        if call.standards is None:
            return None
        return SilentCallerState()

    def step(  # noqa: C901, PLR0911, PLR0912
        self, state: SilentCallerState, event: cm.CallEvent, call: cm.Call, now: float
    ) -> tuple[SilentCallerState, Sequence[cmd.Command]]:
        if state.phase is Phase.FINISHED:
            return state, []
        match event:
            case cm.PartiesConnected():
                if state.phase is Phase.IDLE:
                    return self._connected(state, event, call, now)
                return replace(state, agent=event.agent), []
            case cm.LinkLost():
                if state.phase is Phase.IDLE:
                    return replace(state, unheard_since=event.at), []
                return self._signal(state, HearingLost(LINK_LOST), call, now)
            case cm.LinkRestored():
                return replace(state, unheard_since=None), []
            case cm.CallEnded():
                return replace(state, phase=Phase.FINISHED), _cancel_timers(state)
            case cm.LegEnded() if event.end.leg == state.caller:
                return replace(state, phase=Phase.FINISHED), _cancel_timers(state)
        if state.phase is not Phase.RUNNING or state.procedure is None:
            return state, []
        match event:
            case cm.SpeechStarted(leg=leg) if leg == state.caller:
                talking = call.legs.get(leg)
                since = talking.talking_since if talking and talking.talking_since else now
                return self._signal(state, CallerSoundStarted(since), call, now)
            case cm.SpeechEnded(leg=leg) if leg == state.caller:
                return self._signal(
                    state, CallerSoundEnded(event.ended_at, event.speech_ms), call, now
                )
            case cm.SpeechStarted(leg=leg) if leg == state.agent:
                pre: list[cmd.Command] = []
                if state.greeting_pending:
                    state = replace(state, greeting_pending=False)
                    pre.append(cmd.CancelTimer(GREETING_TIMER))
                state, commands = self._signal(state, OtherSpeechStarted(), call, now)
                return state, [*pre, *commands]
            case cm.SpeechEnded(leg=leg) if leg == state.agent:
                if state.greeting_ended_at is None:
                    state = replace(state, greeting_ended_at=event.ended_at)
                return self._signal(state, OtherSpeechEnded(event.ended_at), call, now)
            case cm.TimerFired() if event.key == GREETING_TIMER:
                if not state.greeting_pending:
                    return state, []
                state = replace(state, greeting_pending=False, greeting_ended_at=now)
                state, commands = self._signal(state, OtherSpeechEnded(now), call, now)
                note = cmd.Note(
                    "silent_caller_greeting_presumed",
                    "the agent did not speak; the greeting is taken as over",
                    {"after_connect_s": _r(now - (state.connected_at or now))},
                )
                return state, [note, *commands]
            case cm.TimerFired() if event.key == PROCEDURE_TIMER:
                return self._signal(state, Due(), call, now)
            case cm.PromptDone(leg=leg) if leg == state.caller and awaits_prompt(
                state.procedure, event.prompt
            ):
                return self._signal(state, PromptPlayed(event.ok), call, now)
            case cm.HoldStarted():
                return self._stop(state, "the caller was put on hold before speaking")
            case cm.FeatureCode() if event.role is Role.AGENT:
                return self._stop(state, f"the agent pressed the feature code {event.feature}")
            case cm.PartiesSeparated():
                stopped, commands = self._stop(state, "the caller and the agent were separated")
                return replace(stopped, phase=Phase.IDLE, procedure=None), commands
        return state, []

    # -- transitions ---------------------------------------------------------------------

    def _connected(
        self, state: SilentCallerState, event: cm.PartiesConnected, call: cm.Call, now: float
    ) -> tuple[SilentCallerState, Sequence[cmd.Command]]:
        standards = call.standards
        if standards is None or not standards.silent_caller.enabled:
            return replace(state, phase=Phase.FINISHED), []
        if state.unheard_since is not None:
            note = cmd.Note(
                "silent_caller_unheard",
                "the caller and the agent were connected while the daemon had lost the PBX "
                "link: it cannot know whether the greeting was said or the caller spoke; the "
                "caller is not checked for silence",
                {"link_lost_at": state.unheard_since},
            )
            return replace(state, phase=Phase.FINISHED, unheard_since=None), [note]
        rule = standards.silent_caller
        one_way = _one_way(standards)
        plan = SilencePlan.for_silent_caller(
            rule, one_way=one_way, prompt_guard_s=self.prompt_guard_s
        )
        procedure, _ = begin(plan, quiet_since=None, now=now)
        running = SilentCallerState(
            phase=Phase.RUNNING,
            caller=event.caller,
            agent=event.agent,
            procedure=procedure,
            connected_at=now,
            greeting_pending=True,
            one_way=one_way,
        )
        commands: list[cmd.Command] = []
        agent = call.legs.get(event.agent)
        if agent is not None and agent.talking:
            # The agent was already speaking when the bridge formed: the greeting is under way.
            running, commands = self._signal(
                replace(running, greeting_pending=False), OtherSpeechStarted(), call, now
            )
            commands = list(commands)
        else:
            commands.append(cmd.StartTimer(GREETING_TIMER, now + rule.greeting_max_s))
        caller = call.legs.get(event.caller)
        if caller is not None and caller.talking:
            since = caller.talking_since if caller.talking_since is not None else now
            running, more = self._signal(running, CallerSoundStarted(since), call, now)
            commands.extend(more)
        return running, commands

    def _signal(
        self, state: SilentCallerState, signal: Signal, call: cm.Call, now: float
    ) -> tuple[SilentCallerState, list[cmd.Command]]:
        assert state.procedure is not None
        procedure, effects = advance(state.procedure, signal, now)
        state = replace(state, procedure=procedure)
        commands: list[cmd.Command] = []
        for effect in effects:
            commands.extend(self._command_for(state, effect, call))
        if procedure.stage is Stage.OVER:
            if state.greeting_pending:
                commands.append(cmd.CancelTimer(GREETING_TIMER))
            state = replace(state, phase=Phase.FINISHED, greeting_pending=False)
        return state, commands

    def _command_for(  # noqa: PLR0911
        self, state: SilentCallerState, effect: Effect, call: cm.Call
    ) -> list[cmd.Command]:
        assert state.caller is not None
        assert state.procedure is not None
        match effect:
            case Arm():
                return [cmd.StartTimer(PROCEDURE_TIMER, effect.at)]
            case Disarm():
                return [cmd.CancelTimer(PROCEDURE_TIMER)]
            case Say():
                reason = (
                    f"the caller has been silent for {effect.silence_s:.2f} s "
                    f"(step {effect.step + 1} of {effect.of})"
                )
                return [
                    cmd.Note(
                        "silent_caller_step",
                        reason,
                        {
                            "step": effect.step + 1,
                            "of": effect.of,
                            "prompt": effect.prompt,
                            "silence_s": _r(effect.silence_s),
                            "late_s": _r(effect.late_s),
                        },
                    ),
                    cmd.PlayPrompt(
                        state.caller, effect.prompt, cmd.Audience.BOTH, reason, answerable=True
                    ),
                ]
            case NoiseIgnored():
                return [
                    cmd.Note(
                        "silent_caller_noise",
                        f"a {effect.duration_ms} ms sound from the caller is shorter than "
                        f"{state.procedure.plan.min_speech_ms} ms: noise, not speech",
                        {"duration_ms": effect.duration_ms},
                    )
                ]
            case Finished(outcome=Outcome.HEARD):
                return [
                    cmd.Note(
                        "silent_caller_cancelled",
                        effect.detail,
                        {"speech_ms": effect.speech_ms, "silences_s": _rs(effect.silences)},
                    )
                ]
            case Finished(outcome=Outcome.ABANDONED):
                return [
                    cmd.Note(
                        "silent_caller_abandoned",
                        f"{effect.detail}; the call is not dropped without its phrase",
                        {"silences_s": _rs(effect.silences)},
                    ),
                ]
            case Finished(outcome=Outcome.UNHEARD):
                return [
                    cmd.Note(
                        "silent_caller_unheard",
                        f"{effect.detail}; the caller is not dropped and not checked again "
                        "in this call",
                        {"silences_s": _rs(effect.silences)},
                    ),
                ]
            case Finished(outcome=Outcome.DROPPED):
                return self._drop(state, effect, call)
        return []

    def _drop(self, state: SilentCallerState, effect: Finished, call: cm.Call) -> list[cmd.Command]:
        fields = {
            "silences_s": _rs(effect.silences),
            "greeting_ended_at": state.greeting_ended_at,
            "connected_at": state.connected_at,
            "one_way_audio": state.one_way,
        }
        commands: list[cmd.Command] = [cmd.Note("silent_caller_drop", effect.detail, fields)]
        if state.one_way:
            if call.caller_number:
                commands.append(
                    cmd.RequestCallback(
                        number=call.caller_number,
                        # The callback service reads the kind from the reason's first word.
                        reason=f"one_way_audio (the caller could not be heard: {effect.detail})",
                        trigger_call=call.id,
                        cause="one_way_audio",
                    )
                )
            else:
                commands.append(
                    cmd.Note("no_callback", "one-way audio, but the caller's number is withheld")
                )
        silences = ", ".join(f"{s:.2f}" for s in effect.silences)
        commands.append(
            cmd.HangupCall(call.id, 16, f"silent caller: {effect.detail} (silences {silences} s)")
        )
        return commands

    def _stop(
        self, state: SilentCallerState, why: str
    ) -> tuple[SilentCallerState, list[cmd.Command]]:
        commands = _cancel_timers(state)
        commands.append(cmd.Note("silent_caller_stopped", why))
        return replace(state, phase=Phase.FINISHED, greeting_pending=False), commands


def silent_caller_policy_factory(_config: Config) -> SilentCallerPolicy:
    """For ``pbx_agent.daemon.POLICY_FACTORIES``. Always on: ``silent_caller.enabled`` is read
    per call (a queue may differ)."""
    return SilentCallerPolicy()


def _one_way(standards: Standards) -> bool:
    """Whether one-way audio ends in the callback phrase and a callback request: only when
    the scheduler will make that callback (the configuration refuses the other case)."""
    callbacks = standards.callbacks
    return (
        standards.silent_caller.one_way_audio_callback
        and callbacks.enabled
        and callbacks.one_way_audio
    )


def _cancel_timers(state: SilentCallerState) -> list[cmd.Command]:
    if state.phase is not Phase.RUNNING:
        return []
    return [cmd.CancelTimer(PROCEDURE_TIMER), cmd.CancelTimer(GREETING_TIMER)]


def _r(value: float) -> float:
    return round(value, 3)


def _rs(values: tuple[float, ...]) -> list[float]:
    return [_r(v) for v in values]

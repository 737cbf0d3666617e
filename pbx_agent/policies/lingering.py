"""R3, lingering after the farewell: the agent is freed at once and the daemon closes the call.

Theory of operation
-------------------
The agent says the farewell and presses the feature code that ``standards.feature_codes`` maps
to ``farewell``. At once the caller is moved to the ``linger`` destination (the dialplan keeps
the channel up while the daemon speaks to it) and the agent's leg is hung up, so the agent
takes the next call. On the caller alone the daemon then runs the silence procedure of
``pbx_agent.policies.silent_caller`` with R3's own steps (seed 000)::

    press ──ask_after_s (2-3 s)──> "Я Вам могу еще чем-нибудь помочь?"
          ──answer_wait_s──> "Если у вас больше нет вопросов, ... Всего доброго."
          ──drop_after_s (2-3 s)──> drop

Silence is counted from the press (the farewell was said just before it) and then from the end
of each prompt. The same noise floor as R2 applies (``silent_caller.min_speech_ms``: it is a
property of the line and the detector, not of a rule), with the same handling of short bursts.

Speech. The daemon has no speech recognition, so it cannot tell "no" from a question. Any
speech at any step is taken as the caller wanting to go on: the caller is sent back to the
queue (``requeue``) ahead of new callers (``PBXAGENT_REQUEUE_PRIORITY``, which the
dialplan gives the queue), as seed 000 says "if the client has
questions, continue the conversation". Treating speech as "no" would drop callers who had a
question, the worse mistake; a caller who only said "no" has just heard that they may hang up,
and usually does before an agent answers.

Transitions::

    IDLE/REQUEUED  PartiesConnected                 -> CONNECTED
    CONNECTED      FeatureCode(farewell) from agent -> LINGERING  Redirect(caller, linger),
                                                       HangupLeg(agent), procedure begins
    LINGERING      procedure HEARD                  -> REQUEUED   Redirect(caller, requeue)
    LINGERING      procedure ABANDONED              -> REQUEUED   (a prompt failed: the caller
                                                       is not left in silence, nor dropped
                                                       without the closing phrase)
    LINGERING      procedure DROPPED                -> DONE       HangupCall
    LINGERING      PartiesConnected                 -> CONNECTED  (the dialplan connected the
                                                       caller to an agent itself)
    LINGERING      LinkLost                         -> LINK_LOST  procedure UNHEARD: stopped,
                                                       no drop (noted)
    LINK_LOST      LinkRestored                     -> REQUEUED   Redirect(caller, requeue)
    LINK_LOST      LinkRestored, still bridged      -> CONNECTED  (the farewell's own commands
                   with the agent                                  were lost with the link)
    LINK_LOST      PartiesConnected                 -> CONNECTED
    any            the caller's leg ended           -> DONE       (LINGERING, LINK_LOST: noted,
                                                       the caller closed the call as the
                                                       standard wants)

The link to the PBX. While the daemon's link to the switch is down it hears nothing of the
caller: an answer to "anything else?" would be lost, and the silence counted on would drop a
caller who asked a question. So ``LinkLost`` stops the procedure (outcome ``UNHEARD``, noted as
``lingering_unheard``) and the caller is not dropped. The procedure is not run again: when the
link is back (``LinkRestored``) the daemon cannot know what the caller heard or said, so it
does what it does whenever it is in doubt (a failed prompt): the caller goes back to the queue,
ahead of new callers, rather than being left in the silent linger destination (whose dialplan
only bounds the wait) or dropped. A caller who had nothing more to ask hangs up there, as the
standard wants. If the link never comes back the linger destination's own bound ends the call.

Invariants: pure; prompts go to the caller alone (the agent has gone); the feature code is
honoured only from the agent's leg of a connected call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from pbx_agent.config.standards import FAREWELL, Standards
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model.events import LegId, Role
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
    PlannedStep,
    PromptPlayed,
    Say,
    Signal,
    Silence,
    SilencePlan,
    advance,
    awaits_prompt,
    begin,
)

if TYPE_CHECKING:
    from pbx_agent.config import Config

LINGER_TARGET = "linger"
REQUEUE_TARGET = "requeue"
PROCEDURE_TIMER = "procedure"
# Read by Asterisk's Queue(): the caller's priority in the queue.
# Neutral names: each dialplan hands them to its queue (Asterisk QUEUE_PRIO, FreeSWITCH
# mod_callcenter cc_base_score), so the policy stays PBX-neutral.
PRIORITY_VARIABLE = "PBXAGENT_REQUEUE_PRIORITY"
# Read by the sample ``pbxagent-requeue`` context: the queue the caller came from.
QUEUE_VARIABLE = "PBXAGENT_REQUEUE_QUEUE"
LINK_LOST = "the daemon lost the PBX link: it cannot know whether the caller answered"


class Phase(StrEnum):
    IDLE = "idle"  # not connected to an agent yet
    CONNECTED = "connected"  # the caller talks with an agent
    LINGERING = "lingering"  # the agent has gone; the daemon closes the call
    REQUEUED = "requeued"  # the caller spoke and went back to the queue
    LINK_LOST = "link_lost"  # lingering when the PBX link was lost: requeued when it is back
    DONE = "done"


@dataclass(frozen=True, slots=True)
class LingeringState:
    phase: Phase = Phase.IDLE
    caller: LegId | None = None
    agent: LegId | None = None
    farewell_at: float | None = None
    procedure: Silence | None = None
    requeues: int = 0


def lingering_plan(standards: Standards, *, prompt_guard_s: float = 60.0) -> SilencePlan:
    """R3's steps, as a run of the silence procedure."""
    rule = standards.lingering
    return SilencePlan(
        steps=(
            PlannedStep(rule.ask_after_s, rule.ask_prompt),
            PlannedStep(rule.answer_wait_s, rule.closing_prompt),
        ),
        final_wait_s=rule.drop_after_s,
        min_speech_ms=standards.silent_caller.min_speech_ms,
        prompt_guard_s=prompt_guard_s,
    )


class LingeringPolicy:
    """R3 on one call. See the module docstring."""

    name = "lingering"
    rule = "R3"

    def __init__(self, *, requeue_priority: int = 10, prompt_guard_s: float = 60.0) -> None:
        self.requeue_priority = requeue_priority
        self.prompt_guard_s = prompt_guard_s

    def start(self, call: cm.Call, now: float) -> LingeringState | None:
        del now
        if call.standards is None:
            return None
        return LingeringState()

    def step(  # noqa: C901, PLR0911
        self, state: LingeringState, event: cm.CallEvent, call: cm.Call, now: float
    ) -> tuple[LingeringState, Sequence[cmd.Command]]:
        if state.phase is Phase.DONE:
            return state, []
        match event:
            case cm.PartiesConnected():
                return self._connected(state, event)
            case cm.CallEnded():
                return replace(state, phase=Phase.DONE), []
            case cm.LegEnded() if event.end.leg == state.caller:
                return self._caller_left(state, now)
            case cm.FeatureCode() if state.phase is Phase.CONNECTED:
                return self._feature(state, event, call, now)
            case cm.LinkLost() if state.phase is Phase.LINGERING and state.procedure is not None:
                return self._signal(state, HearingLost(LINK_LOST), call, now)
            case cm.LinkRestored() if state.phase is Phase.LINK_LOST:
                return self._link_restored(state, event, call)
        if state.phase is not Phase.LINGERING or state.procedure is None:
            return state, []
        match event:
            case cm.SpeechStarted(leg=leg) if leg == state.caller:
                talking = call.legs.get(leg)
                since = talking.talking_since if talking and talking.talking_since else now
                return self._signal(state, CallerSoundStarted(since), call, now)
            case cm.SpeechEnded(leg=leg) if leg == state.caller:
                signal = CallerSoundEnded(event.ended_at, event.speech_ms)
                return self._signal(state, signal, call, now)
            case cm.TimerFired() if event.key == PROCEDURE_TIMER:
                return self._signal(state, Due(), call, now)
            case cm.PromptDone(leg=leg) if leg == state.caller and awaits_prompt(
                state.procedure, event.prompt
            ):
                return self._signal(state, PromptPlayed(event.ok), call, now)
        return state, []

    # -- transitions ---------------------------------------------------------------------

    def _connected(
        self, state: LingeringState, event: cm.PartiesConnected
    ) -> tuple[LingeringState, Sequence[cmd.Command]]:
        commands: list[cmd.Command] = []
        if state.phase is Phase.LINGERING:
            commands = [
                cmd.CancelTimer(PROCEDURE_TIMER),
                cmd.Note("lingering_stopped", "the caller was connected to an agent again"),
            ]
        connected = replace(
            state,
            phase=Phase.CONNECTED,
            caller=event.caller,
            agent=event.agent,
            procedure=None,
            farewell_at=None,
        )
        return connected, commands

    def _feature(
        self, state: LingeringState, event: cm.FeatureCode, call: cm.Call, now: float
    ) -> tuple[LingeringState, Sequence[cmd.Command]]:
        standards = call.standards
        if (
            standards is None
            or standards.feature_codes.get(event.feature) != FAREWELL
            or event.role is not Role.AGENT
            or event.leg != state.agent
            or state.caller is None
        ):
            return state, []
        if not standards.lingering.enabled:
            return state, [
                cmd.Note("lingering_disabled", "farewell pressed, but R3 is off for this call")
            ]
        procedure, effects = begin(
            lingering_plan(standards, prompt_guard_s=self.prompt_guard_s),
            quiet_since=now,
            now=now,
        )
        lingering = replace(state, phase=Phase.LINGERING, farewell_at=now, procedure=procedure)
        commands: list[cmd.Command] = [
            cmd.Redirect(
                state.caller,
                LINGER_TARGET,
                reason="the agent said the farewell: the daemon closes the call",
            ),
            cmd.HangupLeg(
                event.leg, 16, reason="the agent said the farewell and is freed for the next call"
            ),
        ]
        for effect in effects:
            commands.extend(self._command_for(lingering, effect, call))
        caller = call.legs.get(state.caller)
        if caller is not None and caller.talking:
            # Speaking over the press (their own goodbye): only what they say after it can be
            # an answer; what came before was said to the agent.
            sound = CallerSoundStarted(now, clipped=True)
            lingering, more = self._signal(lingering, sound, call, now)
            commands.extend(more)
        return lingering, commands

    def _signal(
        self, state: LingeringState, signal: Signal, call: cm.Call, now: float
    ) -> tuple[LingeringState, list[cmd.Command]]:
        assert state.procedure is not None
        procedure, effects = advance(state.procedure, signal, now)
        state = replace(state, procedure=procedure)
        commands: list[cmd.Command] = []
        for effect in effects:
            commands.extend(self._command_for(state, effect, call))
        if procedure.outcome is Outcome.DROPPED:
            state = replace(state, phase=Phase.DONE)
        elif procedure.outcome is Outcome.UNHEARD:
            state = replace(state, phase=Phase.LINK_LOST)
        elif procedure.outcome is not None:
            state = replace(state, phase=Phase.REQUEUED, requeues=state.requeues + 1)
        return state, commands

    def _command_for(  # noqa: PLR0911
        self, state: LingeringState, effect: Effect, call: cm.Call
    ) -> list[cmd.Command]:
        assert state.caller is not None
        match effect:
            case Arm():
                return [cmd.StartTimer(PROCEDURE_TIMER, effect.at)]
            case Disarm():
                return [cmd.CancelTimer(PROCEDURE_TIMER)]
            case Say():
                reason = (
                    f"the caller stayed on the line {effect.silence_s:.2f} s "
                    f"after the farewell (step {effect.step + 1} of {effect.of})"
                )
                if effect.step > 0:
                    reason = (
                        f"no answer for {effect.silence_s:.2f} s "
                        f"(step {effect.step + 1} of {effect.of})"
                    )
                return [
                    cmd.Note(
                        "lingering_step",
                        reason,
                        {
                            "step": effect.step + 1,
                            "of": effect.of,
                            "prompt": effect.prompt,
                            "silence_s": round(effect.silence_s, 3),
                            "late_s": round(effect.late_s, 3),
                        },
                    ),
                    cmd.PlayPrompt(
                        state.caller, effect.prompt, cmd.Audience.LEG, reason, answerable=True
                    ),
                ]
            case NoiseIgnored():
                return [
                    cmd.Note(
                        "lingering_noise",
                        f"a {effect.duration_ms} ms sound from the caller is noise, not speech",
                        {"duration_ms": effect.duration_ms},
                    )
                ]
            case Finished(outcome=Outcome.DROPPED):
                silences = [round(s, 3) for s in effect.silences]
                return [
                    cmd.Note(
                        "lingering_drop",
                        effect.detail,
                        {"silences_s": silences, "farewell_at": state.farewell_at},
                    ),
                    cmd.HangupCall(
                        call.id,
                        16,
                        f"the caller stayed silent after the farewell and the closing phrase "
                        f"(silences {', '.join(f'{s:.2f}' for s in effect.silences)} s)",
                    ),
                ]
            case Finished(outcome=Outcome.UNHEARD):
                return [
                    cmd.Note(
                        "lingering_unheard",
                        f"{effect.detail}; the caller is not dropped, and goes back to the "
                        "queue once the link is back",
                        {
                            "silences_s": [round(s, 3) for s in effect.silences],
                            "farewell_at": state.farewell_at,
                        },
                    )
                ]
            case Finished():
                why = (
                    f"{effect.detail}: the caller goes back to the queue to continue"
                    if effect.outcome is Outcome.HEARD
                    else f"{effect.detail}: the caller goes back to the queue rather than "
                    "being left in silence"
                )
                return [self._requeue(state.caller, call, why)]
        return []

    def _requeue(self, caller: LegId, call: cm.Call, why: str) -> cmd.Redirect:
        params = [(PRIORITY_VARIABLE, str(self.requeue_priority))]
        if call.queue:
            params.append((QUEUE_VARIABLE, call.queue))
        return cmd.Redirect(caller, REQUEUE_TARGET, tuple(params), why)

    def _link_restored(
        self, state: LingeringState, event: cm.LinkRestored, call: cm.Call
    ) -> tuple[LingeringState, Sequence[cmd.Command]]:
        assert state.caller is not None
        if state.agent is not None and call.bridged_together(state.caller, state.agent):
            # The farewell's redirect and hang-up were lost with the link: the agent is
            # still talking with the caller, so the conversation simply goes on.
            note = cmd.Note(
                "lingering_stopped",
                "the PBX link is back and the caller is still with the agent: the farewell "
                "did not take effect",
            )
            connected = replace(state, phase=Phase.CONNECTED, procedure=None, farewell_at=None)
            return connected, [note]
        why = (
            f"the PBX link is back after {event.at - event.lost_at:.2f} s: the caller may have "
            "answered meanwhile and goes back to the queue rather than being left in silence"
        )
        requeued = replace(state, phase=Phase.REQUEUED, requeues=state.requeues + 1)
        return requeued, [self._requeue(state.caller, call, why)]

    def _caller_left(
        self, state: LingeringState, now: float
    ) -> tuple[LingeringState, Sequence[cmd.Command]]:
        done = replace(state, phase=Phase.DONE)
        if state.phase not in (Phase.LINGERING, Phase.LINK_LOST) or state.farewell_at is None:
            return done, []
        return done, [
            cmd.CancelTimer(PROCEDURE_TIMER),
            cmd.Note(
                "lingering_caller_left",
                "the caller hung up after the farewell",
                {"after_farewell_s": round(now - state.farewell_at, 3)},
            ),
        ]


def lingering_policy_factory(_config: Config) -> LingeringPolicy:
    """For ``pbx_agent.daemon.POLICY_FACTORIES``. Always on: ``lingering.enabled`` is read per
    call when the farewell code is pressed."""
    return LingeringPolicy()

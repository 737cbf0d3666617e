"""R4, non-constructive dialogue: the agent presses a script's feature code, the daemon says the
script's next step to both parties, and the last step ends the call.

Theory of operation
-------------------
``standards.scripts`` holds every script (abuse, off-topic, guessing, circling, outage, prank in
``ru``; abuse, off-topic, harassment, chatting in ``zh``): one to three prompt keys, the last
being the farewell. ``standards.feature_codes`` maps the feature name the PBX reports to a
script (or to ``farewell``, which is R3's and ignored here).

Each press of a script's code by the agent of a connected call plays that script's next step
in the profile's recorded voice to both parties (``Audience.BOTH``: the caller hears it, the
agent hears that it was said). Presses are counted per script for the whole call, so a caller
who calms down and starts again later gets the second warning, not the first again (000: "warn
twice, then end"). A step is counted once it has played: a step that failed to play is not
counted (the agent is told and may press again or say it themselves), and a press while a step
is still playing is ignored, so a double press never skips a warning.

When the last step has played the call is dropped (both legs). Evidence (004): every step is
logged with the time of the press and of its end (``script_step``, ``script_step_played``),
the drop with the whole history (``script_drop``); a script marked ``record`` starts the call's
recording (MixMonitor on Asterisk) at its first step, so the warnings are on it; a script
marked ``flag_number`` flags the caller's number when it drops the call (R9), with the reason.

Transitions (per call; ``playing`` is the step under way)::

    idle     FeatureCode(script) from the agent -> playing  [StartRecording], PlayPrompt(BOTH)
    playing  FeatureCode(any script)            -> playing  (ignored, noted)
    playing  PromptDone(ok), not the last step  -> idle     the step counts
    playing  PromptDone(ok), the last step      -> dropped  [FlagNumber], HangupCall
    playing  PromptDone(failed) | guard timer   -> idle     AlertAgent; the step does not count
    any      CallEnded                          -> dropped

A press counts only while the agent is in the caller's bridge: an agent away consulting a
colleague (an attended transfer) is ignored, and if they step away while the farewell plays
only the caller's leg is ended (never the colleague's). When the call's standards change
under it (a new queue, a reload) to fewer steps than were said, the next press says the last
step, the farewell.

Invariants: pure; only the agent's presses count; at most one step plays at a time; the call is
dropped at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model.events import LegId, Role

if TYPE_CHECKING:
    from pbx_agent.config import Config

GUARD_TIMER = "step_guard"


@dataclass(frozen=True, slots=True)
class StepPlayed:
    """One step that was said, as evidence."""

    script: str
    step: int  # 1-based
    prompt: str
    pressed_at: float
    played_at: float


@dataclass(frozen=True, slots=True)
class Playing:
    script: str
    step: int  # 1-based
    of: int
    prompt: str
    pressed_at: float
    agent: LegId
    flag_number: bool = False  # the script flags the caller's number when it drops the call


@dataclass(frozen=True, slots=True)
class ScriptsState:
    counts: tuple[tuple[str, int], ...] = ()  # steps said, per script
    playing: Playing | None = None
    recording: bool = False
    dropped: bool = False
    history: tuple[StepPlayed, ...] = ()

    def said(self, script: str) -> int:
        return dict(self.counts).get(script, 0)


class ScriptsPolicy:
    """R4 on one call. See the module docstring."""

    name = "scripts"
    rule = "R4"

    def __init__(self, *, prompt_guard_s: float = 60.0) -> None:
        self.prompt_guard_s = prompt_guard_s

    def start(self, call: cm.Call, now: float) -> ScriptsState | None:
        del now
        if call.standards is None:
            return None
        return ScriptsState()

    def step(
        self, state: ScriptsState, event: cm.CallEvent, call: cm.Call, now: float
    ) -> tuple[ScriptsState, Sequence[cmd.Command]]:
        if state.dropped:
            return state, []
        match event:
            case cm.FeatureCode() if event.role is Role.AGENT:
                return self._pressed(state, event, call, now)
            case cm.PromptDone() if _awaited(state, event, call):
                return self._played(state, event.ok, call, now)
            case cm.TimerFired() if event.key == GUARD_TIMER and state.playing is not None:
                why = f"the step did not report its end within {self.prompt_guard_s:g} s"
                return self._failed(state, why, call)
            case cm.CallEnded():
                return replace(state, dropped=True, playing=None), []
        return state, []

    def _pressed(
        self, state: ScriptsState, event: cm.FeatureCode, call: cm.Call, now: float
    ) -> tuple[ScriptsState, Sequence[cmd.Command]]:
        standards = call.standards
        if standards is None:
            return state, []
        name = standards.feature_codes.get(event.feature)
        script = standards.scripts.get(name) if name is not None else None
        if name is None or script is None:
            return state, []  # not a script (the farewell, or a code of another rule)
        caller = call.caller
        if caller is None or not call.leg_alive(caller) or call.agent != event.leg:
            return state, [
                cmd.Note(
                    "script_press_ignored",
                    f"{name} pressed with no connected caller",
                    {"script": name, "feature": event.feature},
                )
            ]
        if not call.bridged_together(caller, event.leg):
            # Away from the caller (consulting a colleague): a drop now would end the
            # colleague's leg with the call, and the caller would hear it alone.
            return state, [
                cmd.Note(
                    "script_press_ignored",
                    f"{name} pressed while the agent is not connected to the caller",
                    {"script": name, "feature": event.feature},
                )
            ]
        if state.playing is not None:
            return state, [
                cmd.Note(
                    "script_press_ignored",
                    f"{name} pressed while step {state.playing.step} of {state.playing.script} "
                    "is still playing",
                    {"script": name, "playing": state.playing.script},
                )
            ]
        # The standards can change under a call (a new queue, a reload) to fewer steps than
        # were said already: the next press says the new last step, the farewell.
        number = min(state.said(name) + 1, len(script.steps))
        prompt = script.steps[number - 1]
        playing = Playing(
            name, number, len(script.steps), prompt, now, event.leg, script.flag_number
        )
        commands: list[cmd.Command] = []
        recording = state.recording
        if script.record and not recording:
            recording = True
            commands.append(
                cmd.StartRecording(call.id, reason=f"evidence for the {name} script (R4)")
            )
        reason = f"the agent pressed {name}: step {number} of {len(script.steps)}"
        commands.extend(
            [
                cmd.Note(
                    "script_step",
                    reason,
                    {
                        "script": name,
                        "step": number,
                        "of": len(script.steps),
                        "prompt": prompt,
                        "pressed_at": now,
                        "agent": call.agent_id,
                    },
                ),
                cmd.PlayPrompt(caller, prompt, cmd.Audience.BOTH, reason),
                cmd.StartTimer(GUARD_TIMER, now + self.prompt_guard_s),
            ]
        )
        return replace(state, playing=playing, recording=recording), commands

    def _played(
        self, state: ScriptsState, ok: bool, call: cm.Call, now: float
    ) -> tuple[ScriptsState, Sequence[cmd.Command]]:
        playing = state.playing
        assert playing is not None
        if not ok:
            return self._failed(state, f"prompt {playing.prompt} could not be played", call)
        said = StepPlayed(playing.script, playing.step, playing.prompt, playing.pressed_at, now)
        counts = dict(state.counts)
        counts[playing.script] = playing.step
        after = replace(
            state,
            counts=tuple(sorted(counts.items())),
            playing=None,
            history=(*state.history, said),
        )
        commands: list[cmd.Command] = [
            cmd.CancelTimer(GUARD_TIMER),
            cmd.Note(
                "script_step_played",
                f"step {playing.step} of {playing.of} of {playing.script} was said",
                {
                    "script": playing.script,
                    "step": playing.step,
                    "prompt": playing.prompt,
                    "pressed_at": playing.pressed_at,
                    "played_at": now,
                },
            ),
        ]
        if playing.step < playing.of:
            return after, commands
        commands.extend(self._drop(after, playing, call))
        return replace(after, dropped=True), commands

    def _drop(self, state: ScriptsState, last: Playing, call: cm.Call) -> list[cmd.Command]:
        steps = [s for s in state.history if s.script == last.script]
        reason = (
            f"{last.script} script finished: {len(steps)} step(s) said at the presses of "
            f"agent {call.agent_id or 'unknown'}"
        )
        commands: list[cmd.Command] = [
            cmd.Note(
                "script_drop",
                reason,
                {
                    "script": last.script,
                    "steps": [
                        {
                            "step": s.step,
                            "prompt": s.prompt,
                            "pressed_at": s.pressed_at,
                            "played_at": s.played_at,
                        }
                        for s in steps
                    ],
                },
            )
        ]
        standards = call.standards
        if last.flag_number and standards is not None and standards.flags.enabled:
            if call.caller_number:
                commands.append(
                    cmd.FlagNumber(
                        number=call.caller_number,
                        reason=reason,
                        set_by="R4",
                        trigger_call=call.id,
                    )
                )
            else:
                commands.append(
                    cmd.Note("flag_skipped", "the caller's number is withheld: nothing to flag")
                )
        caller = call.caller
        if caller is not None and not call.bridged_together(caller, last.agent):
            # The agent left the caller while the farewell played (a consultation): only the
            # caller's leg is ended, never the colleague's the agent is talking to.
            commands.append(cmd.HangupLeg(caller, 16, reason))
        else:
            commands.append(cmd.HangupCall(call.id, 16, reason))
        return commands

    def _failed(
        self, state: ScriptsState, why: str, call: cm.Call
    ) -> tuple[ScriptsState, Sequence[cmd.Command]]:
        playing = state.playing
        assert playing is not None
        commands: list[cmd.Command] = [
            cmd.CancelTimer(GUARD_TIMER),
            cmd.Note(
                "script_step_failed",
                f"{why}; step {playing.step} of {playing.script} does not count",
                {"script": playing.script, "step": playing.step, "prompt": playing.prompt},
            ),
        ]
        if call.leg_alive(playing.agent):
            commands.append(
                cmd.AlertAgent(
                    playing.agent,
                    "script_step_failed",
                    None,
                    (("script", playing.script), ("step", str(playing.step))),
                    reason=f"{why}: the agent may press again or say it",
                )
            )
        return replace(state, playing=None), commands


def _awaited(state: ScriptsState, event: cm.PromptDone, call: cm.Call) -> bool:
    playing = state.playing
    return playing is not None and event.leg == call.caller and event.prompt == playing.prompt


def scripts_policy_factory(_config: Config) -> ScriptsPolicy:
    """For ``pbx_agent.daemon.POLICY_FACTORIES``: every script of the call's standards."""
    return ScriptsPolicy()

"""R1 "hold, not mute" and the R8 silence and talk-over figures, from talk detection on both
parties of a bridged call.

Theory of operation
-------------------
The policy watches one conversation: the customer and the agent bridged together. After
every call event it looks at the call (the model has already applied the event) and puts the
conversation in one of four phases:

    phase          when
    -------------  ---------------------------------------------------------------
    APART          the customer and the agent are not bridged together
    ON_HOLD        they are, and some hold is on (a hold is not dead air: R1 wants it)
    TALKING        they are, no hold, and at least one of them is speaking
    SILENT         they are, no hold, and neither is speaking
    LINK_LOST      the daemon's link to the PBX is down: nothing can be heard

Entering SILENT starts a *silence* at the moment the last sound ended: the real end of the
last speech (``SpeechEnded.ended_at``: detectors report it late), the end of the hold, the
end of a prompt the daemon played, or the moment the parties were connected. Two timers
run from that moment::

    silence + dead_air.log_after_s            Note(dead_air) with the agent (ru 10 s, zh 3 s)
    silence + dead_air.agent_reminder_after_s AlertAgent(dead_air): a short phrase only the
                                              agent hears ("put the call on hold or talk"),
                                              and an event for the agent's desktop

Leaving SILENT cancels both. A silence longer than ``quality.dead_air_s`` (3 s, 003 §17: the
R8 figure "unannounced silence over 3 s") is recorded when it ends (``RecordFact("dead_air",
...)`` with its full length and what ended it), whether or not it was long enough to log.

Talk-over (R8, 003 "抢话"): both parties speaking at once. The overlap starts when one
starts speaking while the other is; it ends at the real end of either's speech. An overlap
longer than ``dead_air.talk_over_s`` is recorded (``RecordFact("talk_over", ...)``) when it
ends; it is measured at its end because detectors report the end of speech late, so a
timer running from the start would count overlaps that had in fact already ended.

The link to the PBX. While it is down the daemon hears no talk events: a silence counted on
would be its own deafness, and the agent would be reminded of dead air while the parties may
be talking. ``LinkLost`` ends the current silence and any overlap at that instant (recorded,
as when speech ends, only if what was heard before the loss was long enough: ``ended_by``
``link_lost``); nothing is counted in ``LINK_LOST``. ``LinkRestored`` looks at the call again:
a silence then starts from the moment the daemon hears again, never across the outage.

Prompts the daemon plays are not seen by talk detection (it listens to the parties), so a
prompt counts as sound only when it ends (``PromptDone``): a prompt longer than the log
threshold can be logged as dead air. The silence before the agent's greeting counts from
the moment the parties are connected.

Invariants: pure; at most one silence and one overlap at a time; a timer that fires for a
silence that has since ended does nothing (timers carry no episode, so the phase and the
silence start are checked again).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd

if TYPE_CHECKING:
    from pbx_agent.config import Config
    from pbx_agent.config.standards import DeadAirRule, Standards

LOG_TIMER = "log"
REMIND_TIMER = "remind"


class Phase(StrEnum):
    APART = "apart"
    ON_HOLD = "on_hold"
    TALKING = "talking"
    SILENT = "silent"
    LINK_LOST = "link_lost"


@dataclass(frozen=True, slots=True)
class DeadAirState:
    phase: Phase = Phase.APART
    silence_since: float | None = None  # when the current silence began (phase SILENT)
    logged: bool = False  # the current silence passed the log threshold
    reminded: bool = False  # the agent was reminded during the current silence
    overlap_since: float | None = None  # both parties speaking since


Step = tuple[DeadAirState, list[cmd.Command]]


class DeadAirPolicy:
    """R1 "hold, not mute" and R8 silence / talk-over figures (see the module docstring)."""

    name = "dead_air"
    rule = "R1"

    def start(self, call: cm.Call, now: float) -> DeadAirState:  # noqa: ARG002 - protocol
        return DeadAirState()

    def step(self, state: DeadAirState, event: cm.CallEvent, call: cm.Call, now: float) -> Step:
        rule = _rule(call.standards)
        if isinstance(event, cm.TimerFired):
            return self._timer(state, event.key, call, rule, now)
        if state.phase is Phase.LINK_LOST and not isinstance(event, cm.LinkRestored | cm.CallEnded):
            return state, []  # deaf until the link is back: nothing is measured
        commands: list[cmd.Command] = []
        state = self._track_overlap(state, event, call, rule, now, commands)
        phase = _phase(call) if rule is not None and rule.enabled else Phase.APART
        if isinstance(event, cm.CallEnded):
            phase = Phase.APART
        elif isinstance(event, cm.LinkLost):
            phase = Phase.LINK_LOST
        if phase is Phase.SILENT and state.phase is Phase.SILENT:
            if isinstance(event, cm.PromptDone) and rule is not None:
                # A prompt just filled the silence: it starts again from here.
                commands.extend(_end_silence(state, call, now, "prompt"))
                state = replace(state, silence_since=None, logged=False, reminded=False)
                return _begin_silence(state, rule, now, commands)
            return state, commands
        if state.phase is Phase.SILENT:
            commands.extend(_end_silence(state, call, _sound_at(event, now), str(phase)))
            commands.extend([cmd.CancelTimer(LOG_TIMER), cmd.CancelTimer(REMIND_TIMER)])
            state = replace(state, silence_since=None, logged=False, reminded=False)
        state = replace(state, phase=phase)
        if phase is Phase.SILENT and rule is not None:
            return _begin_silence(state, rule, _silence_start(event, now), commands)
        return state, commands

    # -- timers -----------------------------------------------------------------------------

    def _timer(
        self, state: DeadAirState, key: str, call: cm.Call, rule: DeadAirRule | None, now: float
    ) -> Step:
        if rule is None or state.phase is not Phase.SILENT or state.silence_since is None:
            return state, []
        silent_s = now - state.silence_since
        agent = call.agent_id
        if key == LOG_TIMER and not state.logged:
            note = cmd.Note(
                "dead_air",
                f"neither party has spoken for {rule.log_after_s:g} s in a bridged call that "
                "is not on hold",
                {
                    "agent": agent,
                    "silent_since": state.silence_since,
                    "silent_s": round(silent_s, 3),
                },
            )
            return replace(state, logged=True), [note]
        if key == REMIND_TIMER and not state.reminded:
            agent_leg = call.agent
            if agent_leg is None or not call.leg_alive(agent_leg):
                return replace(state, reminded=True), []
            alert = cmd.AlertAgent(
                leg=agent_leg,
                alert="dead_air",
                prompt=rule.agent_reminder_prompt,
                fields=(("silent_s", f"{silent_s:.0f}"),),
                reason=(
                    f"{rule.agent_reminder_after_s:g} s of silence: the customer hears dead "
                    "air; hold, not mute"
                ),
            )
            return replace(state, reminded=True), [alert]
        return state, []

    # -- talk-over --------------------------------------------------------------------------

    def _track_overlap(
        self,
        state: DeadAirState,
        event: cm.CallEvent,
        call: cm.Call,
        rule: DeadAirRule | None,
        now: float,
        commands: list[cmd.Command],
    ) -> DeadAirState:
        both = _both_speaking(call)
        if state.overlap_since is None:
            if both and isinstance(event, cm.SpeechStarted) and _phase(call) is Phase.TALKING:
                return replace(state, overlap_since=now)
            return state
        if both and not isinstance(
            event, cm.CallEnded | cm.PartiesSeparated | cm.HoldStarted | cm.LinkLost
        ):
            return state
        ended_at = event.ended_at if isinstance(event, cm.SpeechEnded) else now
        ended_at = max(ended_at, state.overlap_since)
        overlap_s = ended_at - state.overlap_since
        if rule is not None and rule.enabled and overlap_s > rule.talk_over_s:
            commands.append(
                cmd.RecordFact(
                    "talk_over",
                    {
                        "call_id": str(call.id),
                        "agent": call.agent_id,
                        "started_at": state.overlap_since,
                        "ended_at": ended_at,
                        "overlap_s": round(overlap_s, 3),
                        "limit_s": rule.talk_over_s,
                    },
                )
            )
        return replace(state, overlap_since=None)


def dead_air_policy_factory(_config: Config) -> DeadAirPolicy:
    """For ``pbx_agent.daemon.POLICY_FACTORIES``. Always on: ``dead_air.enabled`` is read per
    call. Needs talk detection on both parties (the Asterisk adapter sets TALK_DETECT when
    the parties connect)."""
    return DeadAirPolicy()


# ------------------------------------------------------------------------------ helpers


def _rule(standards: Standards | None) -> DeadAirRule | None:
    return standards.dead_air if standards is not None else None


def _parties(call: cm.Call) -> tuple[cm.Leg, cm.Leg] | None:
    caller, agent = call.caller_leg, call.agent_leg
    if caller is None or agent is None or not caller.alive or not agent.alive:
        return None
    if caller.bridge is None or caller.bridge != agent.bridge:
        return None
    return caller, agent


def _phase(call: cm.Call) -> Phase:
    parties = _parties(call)
    if parties is None or call.ended:
        return Phase.APART
    if call.holds:
        return Phase.ON_HOLD
    if any(leg.talking for leg in parties):
        return Phase.TALKING
    return Phase.SILENT


def _both_speaking(call: cm.Call) -> bool:
    parties = _parties(call)
    return parties is not None and all(leg.talking for leg in parties)


def _silence_start(event: cm.CallEvent, now: float) -> float:
    """When the sound that preceded this silence ended."""
    if isinstance(event, cm.SpeechEnded):
        return min(event.ended_at, now)
    if isinstance(event, cm.HoldEnded):
        return min(event.ended_at, now)
    return now


def _sound_at(event: cm.CallEvent, now: float) -> float:
    """When the current silence ended (the event that ended it happened now)."""
    if isinstance(event, cm.HoldStarted):
        return min(event.started_at, now)
    return now


def _begin_silence(
    state: DeadAirState, rule: DeadAirRule, since: float, commands: list[cmd.Command]
) -> Step:
    commands.extend(
        [
            cmd.StartTimer(LOG_TIMER, since + rule.log_after_s),
            cmd.StartTimer(REMIND_TIMER, since + rule.agent_reminder_after_s),
        ]
    )
    return replace(state, phase=Phase.SILENT, silence_since=since), commands


def _end_silence(
    state: DeadAirState, call: cm.Call, ended_at: float, ended_by: str
) -> list[cmd.Command]:
    if state.silence_since is None:
        return []
    figure_s = call.standards.quality.dead_air_s if call.standards is not None else None
    long_enough = figure_s is not None and ended_at - state.silence_since > figure_s
    if not (state.logged or long_enough):
        return []
    return [
        cmd.RecordFact(
            "dead_air",
            {
                "call_id": str(call.id),
                "agent": call.agent_id,
                "started_at": state.silence_since,
                "ended_at": ended_at,
                "silent_s": round(ended_at - state.silence_since, 3),
                "agent_reminded": state.reminded,
                "logged": state.logged,
                "ended_by": ended_by,
            },
        )
    ]


__all__ = ["DeadAirPolicy", "DeadAirState", "Phase", "dead_air_policy_factory"]

"""What policies ask for. The engine executes these through the active PBX adapter or a
service; policies never talk to a PBX themselves.

Every command that changes something carries a ``reason``: the engine logs each command as
one ``decision`` event (call id, rule, action, reason and the command's fields) before it
is executed, and logs its outcome after.

Invariants:
- Commands are PBX-neutral: a prompt is a key of the profile's phrases (the adapter maps it
  to a sound file), a destination is a name from the configuration (``ivr``, ``requeue``),
  never a dialplan context or an XML extension.
- A command addressed to a leg or call that has already ended is dropped by the engine with
  a log line, never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pbx_agent.model.events import CallId, LegId


class Audience(StrEnum):
    """Who hears a prompt."""

    LEG = "leg"  # only the party behind ``leg`` (e.g. a whisper to the agent)
    BOTH = "both"  # ``leg`` and every party bridged with it (caller and agent together)


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    leg: LegId
    prompt: str
    audience: Audience = Audience.LEG
    reason: str = ""
    # The party behind ``leg`` may answer while it plays, and that answer must still be heard
    # (R2: any speech cancels the drop). A switch that can play to both parties only by
    # interrupting the conversation plays it to ``leg`` alone, over the conversation.
    answerable: bool = False


@dataclass(frozen=True, slots=True)
class HoldAnnouncement:
    """One announcement inside a hold program, ``at_s`` seconds after the hold began."""

    at_s: float
    prompt: str


@dataclass(frozen=True, slots=True)
class StartHoldProgram:
    """Give the held party continuous music with announcements at exact offsets.

    The program runs until ``StopHoldProgram`` (or the leg ends). ``announcements`` are in
    time order; after the last one, ``repeat`` (if set) is announced every ``repeat_every_s``.
    A program that ends before it is stopped (its helper failed, the switch dropped it) is
    reported as ``PromptFinished(leg, HOLD_PROGRAM_PROMPT, ok=False)``: the held party may be
    hearing silence.
    """

    leg: LegId
    started_at: float
    announcements: tuple[HoldAnnouncement, ...]
    repeat: str | None = None
    repeat_every_s: float | None = None
    music_class: str = ""
    reason: str = ""


HOLD_PROGRAM_PROMPT = "hold_program"
"""The prompt name under which a hold program's unexpected end is reported."""


@dataclass(frozen=True, slots=True)
class StopHoldProgram:
    leg: LegId
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HangupLeg:
    leg: LegId
    cause: int = 16
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HangupCall:
    """Hang up every party of the call (caller and agent)."""

    call: CallId
    cause: int = 16
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send ``leg`` to a configured destination (``ivr``, ``requeue``, ``linger``, ...).

    ``params`` become channel variables the destination can read (e.g. a queue priority).
    """

    leg: LegId
    target: str
    params: tuple[tuple[str, str], ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SetVariable:
    leg: LegId
    name: str
    value: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AlertAgent:
    """Tell the agent something only the agent hears, and raise an event for the desktop."""

    leg: LegId
    alert: str  # machine-readable kind: "hold_limit", "dead_air", ...
    prompt: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StartRecording:
    call: CallId
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Deliver ``TimerFired(key)`` to the issuing policy at epoch time ``at``.

    Starting a timer with a key that is already pending replaces it.
    """

    key: str
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: str


@dataclass(frozen=True, slots=True)
class Note:
    """A decision that needs no PBX action (``no_callback``, ``dead_air``). Logged, counted."""

    action: str
    reason: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordFact:
    """Persist a fact for the figures (``hold``, ``interaction``, ``call``)."""

    kind: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RequestCallback:
    """Ask the callback service to call this customer back (R7)."""

    number: str
    reason: str
    trigger_call: CallId
    cause: str = ""
    promised_deadline: float | None = None


@dataclass(frozen=True, slots=True)
class CancelCallbacks:
    """The customer called in: pending callbacks to this number are no longer needed."""

    number: str
    reason: str
    trigger_call: CallId
    # Only the callbacks the customer asked for (the hold offer), whatever
    # callbacks.cancel_on_inbound says: the agent came back to them.
    requested_only: bool = False


@dataclass(frozen=True, slots=True)
class FlagNumber:
    """Mark a number (R9) so its next calls go to the designated queue."""

    number: str
    reason: str
    set_by: str
    trigger_call: CallId | None = None


PbxCommand = (
    PlayPrompt
    | StartHoldProgram
    | StopHoldProgram
    | HangupLeg
    | HangupCall
    | Redirect
    | SetVariable
    | AlertAgent
    | StartRecording
)
ServiceCommand = RecordFact | RequestCallback | CancelCallbacks | FlagNumber
Command = PbxCommand | ServiceCommand | StartTimer | CancelTimer | Note

PBX_COMMANDS: tuple[type, ...] = (
    PlayPrompt,
    StartHoldProgram,
    StopHoldProgram,
    HangupLeg,
    HangupCall,
    Redirect,
    SetVariable,
    AlertAgent,
    StartRecording,
)
SERVICE_COMMANDS: tuple[type, ...] = (RecordFact, RequestCallback, CancelCallbacks, FlagNumber)


def action_name(command: object) -> str:
    """The snake_case name of a command, as logged in the ``action`` field."""
    if isinstance(command, Note):
        return command.action
    name = type(command).__name__
    out = [name[0].lower()]
    for ch in name[1:]:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)

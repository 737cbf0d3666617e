"""PBX-neutral events: what an adapter tells the engine, in the call centre's terms.

Adapters (``pbx_agent.pbx.asterisk``, ``pbx_agent.pbx.freeswitch``) translate their PBX's
wire messages into these and nothing else; the call model and the policies never see AMI
or ESL. Every event is a frozen, slotted dataclass.

Invariants:
- ``leg`` is the PBX's stable id of one channel (Asterisk ``Uniqueid``, FreeSWITCH
  ``Unique-ID``); ``call`` groups the legs of one customer call (Asterisk ``Linkedid``,
  FreeSWITCH the originating leg's uuid). A leg belongs to exactly one call.
- Times are not carried by events: the engine stamps each event with its clock when it
  arrives. Where the PBX reports something that happened earlier (talk detection reports
  the end of speech after its silence threshold), the event says how long ago.
- Strings that come from the caller (numbers, names) are kept exactly as received
  (undecodable bytes as surrogate escapes); they are never interpreted here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NewType

LegId = NewType("LegId", str)
CallId = NewType("CallId", str)


class Role(StrEnum):
    """What a leg is in the customer's call."""

    CALLER = "caller"  # the customer (inbound caller, or the callee of a callback)
    AGENT = "agent"  # a call-centre agent's device
    HELPER = "helper"  # a channel the daemon itself created (whisper, hold program)
    OTHER = "other"  # anything else (IVR-only legs, unrelated channels)


class Direction(StrEnum):
    INBOUND = "inbound"  # the leg came into the PBX (a caller dialling in, an agent phone)
    OUTBOUND = "outbound"  # the PBX placed the leg (Dial, Originate, bridge)


@dataclass(frozen=True, slots=True)
class LegCreated:
    """A new channel exists on the PBX."""

    leg: LegId
    call: CallId
    channel: str  # the PBX's channel name, for logs and PBX commands
    endpoint: (
        str  # the device/account behind the channel (``PJSIP/alice``, ``sofia/internal/1001``)
    )
    caller_number: str
    caller_name: str
    dialed: str  # the number or extension the leg was placed to / dialled
    direction: Direction
    answered: bool = False
    # The daemon created this leg itself (a whisper/hold program helper, a callback attempt):
    # the adapter knows from the id it chose.
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class LegAnswered:
    leg: LegId


@dataclass(frozen=True, slots=True)
class LegJoinedBridge:
    leg: LegId
    bridge: str


@dataclass(frozen=True, slots=True)
class LegLeftBridge:
    leg: LegId
    bridge: str


@dataclass(frozen=True, slots=True)
class LegVariable:
    """A channel variable the daemon watches changed (roles, tier, topic, AMD verdicts)."""

    leg: LegId
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class AgentConnected:
    """The PBX says an agent (queue member) answered a caller (Asterisk ``AgentConnect``)."""

    caller_leg: LegId
    agent_leg: LegId
    agent: str  # the agent's id: queue member interface or name
    queue: str


@dataclass(frozen=True, slots=True)
class HoldPressed:
    """``leg``'s device put the call on hold (the leg that *pressed* hold, usually the agent)."""

    leg: LegId


@dataclass(frozen=True, slots=True)
class HoldReleased:
    leg: LegId


@dataclass(frozen=True, slots=True)
class MusicOnHoldStarted:
    """``leg`` now hears the PBX's hold music (the held party)."""

    leg: LegId
    music_class: str


@dataclass(frozen=True, slots=True)
class MusicOnHoldStopped:
    leg: LegId


@dataclass(frozen=True, slots=True)
class TalkingStarted:
    """Speech began on ``leg`` (the party behind that leg is speaking)."""

    leg: LegId


@dataclass(frozen=True, slots=True)
class TalkingStopped:
    """Speech on ``leg`` ended ``silence_ms`` ago (detectors report the end late)."""

    leg: LegId
    silence_ms: int
    speech_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DigitPressed:
    leg: LegId
    digit: str


@dataclass(frozen=True, slots=True)
class FeatureRequested:
    """An agent pressed a feature code (``farewell``, ``abuse``, ``offtopic``, ...)."""

    leg: LegId
    feature: str


@dataclass(frozen=True, slots=True)
class LegHungUp:
    """The leg is gone. ``cause`` is Q.850 where the PBX gives one."""

    leg: LegId
    cause: int | None
    cause_text: str = ""
    tech_cause: str = ""  # SIP status or FreeSWITCH disposition detail
    # A hint from the PBX that the leg's media died (rtp/media timeout), when it says so.
    media_timeout: bool = False
    # What the PBX recorded as the other side's cause (FreeSWITCH bridge_hangup_cause).
    peer_cause: str = ""


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A prompt the daemon asked for has finished playing (or could not be played)."""

    leg: LegId
    prompt: str
    ok: bool = True


@dataclass(frozen=True, slots=True)
class OriginateOutcome:
    """What became of a call the daemon asked the PBX to place.

    ``outcome`` is one of ``answered``, ``busy``, ``rejected``, ``no_answer``, ``failed``.
    """

    request: str  # the id the daemon gave the originate
    outcome: str
    leg: LegId | None = None
    cause: int | None = None
    cause_text: str = ""
    tech_cause: str = ""


@dataclass(frozen=True, slots=True)
class MachineDetected:
    """An answering-machine verdict for ``leg``: ``human``, ``machine`` or ``notsure``."""

    leg: LegId
    verdict: str
    cause: str = ""
    decided_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class LiveLeg:
    """One leg as the PBX lists it during a resync."""

    created: LegCreated
    answered: bool
    bridge: str | None = None
    on_hold_music: bool = False


@dataclass(frozen=True, slots=True)
class PbxResynced:
    """After a (re)connect: the complete list of legs alive on the PBX right now."""

    pbx: str
    legs: tuple[LiveLeg, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class PbxConnectionChanged:
    pbx: str
    connected: bool
    reason: str = ""


PbxEvent = (
    LegCreated
    | LegAnswered
    | LegJoinedBridge
    | LegLeftBridge
    | LegVariable
    | AgentConnected
    | HoldPressed
    | HoldReleased
    | MusicOnHoldStarted
    | MusicOnHoldStopped
    | TalkingStarted
    | TalkingStopped
    | DigitPressed
    | FeatureRequested
    | LegHungUp
    | PromptFinished
    | OriginateOutcome
    | MachineDetected
    | PbxResynced
    | PbxConnectionChanged
)

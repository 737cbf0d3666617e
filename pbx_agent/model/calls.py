"""The neutral call model: legs grouped into customer calls, with roles, bridges, hold and
talking state, and the call-level events policies consume.

Theory of operation
-------------------
``CallModel.apply(event, now)`` takes one PBX-neutral event (``model.events``), updates the
model and returns the call-level events (``CallEvent``) it implies, in order. It is pure in
the STYLE.md sense: no I/O, time is a parameter, the same inputs give the same outputs.

- A *call* is the customer's call: the legs that share the PBX's call id (Asterisk
  ``Linkedid``). A leg from another call that joins a bridge with the caller (a transfer to a
  second agent placed as a new call) is re-homed into the caller's call, because the standards
  are about the customer's experience, not the PBX's bookkeeping.
- *Roles*: a leg created by the daemon itself is a ``HELPER`` (never a party). A leg is an
  ``AGENT`` when the PBX says so (``AgentConnected``, the role variable) or its endpoint
  matches a configured pattern; the first inbound leg of a call is the ``CALLER``; with
  ``bridged_peer_is_agent`` (the default) the first non-caller leg bridged with the caller is
  taken as the agent. Callback attempts (origin ``callback``) are the caller (the customer).
- *Parties connected*: ``PartiesConnected`` fires when the caller and an agent are in the same
  bridge (again after a transfer, with the new agent).
- *Hold*: the leg that pressed hold is the *holder*; the held party is the other party in its
  bridge. A hold begins at ``HoldPressed`` or, if the PBX reports only music, at
  ``MusicOnHoldStarted`` on a bridged party. A pressed hold ends only at ``HoldReleased`` (the
  daemon's own whisper channel makes Asterisk stop the held party's music, which must not end
  the hold), or when the holder or the held party leaves the bridge or hangs up (a transfer
  while on hold). Each holder has at most one hold; both parties holding each other are two
  holds.
- *Talking*: ``SpeechStarted`` / ``SpeechEnded`` with the real end of speech
  (``now - silence_ms``).
- A call ends when its last non-helper leg is gone: ``CallEnded`` carries every leg's end in
  the order they ended, so a rule can look at who went first and with what cause.
- *The link to the PBX*: when it is lost (``PbxConnectionChanged(connected=False)``) every
  live call gets ``LinkLost``: from then on nothing of it is heard (a talk start or stop, a
  hold, a digit), so a rule timing silence cannot know whether anyone spoke. At the next
  resync each of those calls that is still live gets ``LinkRestored``, after every event the
  resync itself implies for it (hang-ups, answers, bridges, holds ended as ``link_lost``).
  The resync gives back hang-ups, answers and bridges, never who talked meanwhile.

Invariants: a leg id is in exactly one call; ``Call.legs`` keeps ended legs (with ``end``) until
the call ends; after ``CallEnded`` the call is removed and later events for its legs are ignored.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId, Role

if TYPE_CHECKING:
    from pbx_agent.config import Standards


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class RoleRules:
    """How legs are recognised (``[agents]`` in the configuration)."""

    agent_endpoint_patterns: tuple[str, ...] = ()
    role_variable: str = "PBXAGENT_ROLE"
    tier_variable: str = "PBXAGENT_TIER"
    agent_variable: str = "PBXAGENT_AGENT"
    queue_variable: str = "PBXAGENT_QUEUE"
    topic_variable: str = "PBXAGENT_TOPIC"
    bridged_peer_is_agent: bool = True
    tiers: Mapping[str, str] = field(default_factory=dict)
    default_tier: str = "specialist"

    def compiled_patterns(self) -> re.Pattern[str] | None:
        if not self.agent_endpoint_patterns:
            return None
        return re.compile("|".join(fnmatch.translate(p) for p in self.agent_endpoint_patterns))

    def watched_variables(self) -> frozenset[str]:
        return frozenset(
            {
                self.role_variable,
                self.tier_variable,
                self.agent_variable,
                self.queue_variable,
                self.topic_variable,
            }
        )


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class LegEnd:
    """How one leg ended: what the hang-up rules look at."""

    leg: LegId
    role: Role
    answered: bool
    cause: int | None
    cause_text: str
    tech_cause: str
    media_timeout: bool
    peer_cause: str
    ended_at: float
    order: int  # 0 for the first leg of the call to end
    was_bridged: bool  # it was talking to another party when it ended
    # False: it ended while the daemon's link to the PBX was down (gone at the resync); its
    # cause is unknown and ``ended_at`` is when the link was lost, the last time it was seen.
    seen: bool = True


@dataclass(slots=True)
class Leg:
    id: LegId
    call: CallId
    channel: str
    endpoint: str
    caller_number: str
    caller_name: str
    dialed: str
    direction: Direction
    origin: str | None
    created_at: float
    role: Role = Role.OTHER
    role_fixed: bool = False  # set by the PBX (AgentConnected / role variable): not re-guessed
    answered: bool = False
    answered_at: float | None = None
    bridge: str | None = None
    hearing_music: bool = False
    music_class: str = ""  # the last music on hold class the PBX reported for this leg
    talking: bool = False
    talking_since: float | None = None
    speech_ended_at: float | None = None
    agent: str | None = None
    tier: str | None = None
    tier_given: bool = False  # the tier came from the tier variable, not from agents.tiers
    queue: str | None = None
    end: LegEnd | None = None

    @property
    def alive(self) -> bool:
        return self.end is None


@dataclass(slots=True)
class Hold:
    holder: LegId
    held: LegId
    started_at: float
    source: str  # "pressed" or "music"


@dataclass(slots=True)
class Call:
    """One customer call. Policies read it; only ``CallModel`` changes it."""

    id: CallId
    started_at: float
    legs: dict[LegId, Leg] = field(default_factory=dict)
    caller: LegId | None = None
    agent: LegId | None = None
    connected_at: float | None = None
    queue: str | None = None
    topic: str | None = None
    holds: dict[LegId, Hold] = field(default_factory=dict)  # by holder
    ended_legs: list[LegEnd] = field(default_factory=list)
    ended_at: float | None = None
    # The resolved standards for this call (profile + site + dialled number + queue).
    standards: Standards | None = None
    # Free-form facts adapters or policies attached (e.g. the dialled number the call came in on).
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def caller_leg(self) -> Leg | None:
        return self.legs.get(self.caller) if self.caller else None

    @property
    def agent_leg(self) -> Leg | None:
        return self.legs.get(self.agent) if self.agent else None

    @property
    def caller_number(self) -> str:
        leg = self.caller_leg
        return leg.caller_number if leg else ""

    @property
    def dialed(self) -> str:
        leg = self.caller_leg
        return leg.dialed if leg else ""

    @property
    def agent_id(self) -> str | None:
        leg = self.agent_leg
        return leg.agent if leg else None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def hold_on(self, held: LegId) -> Hold | None:
        for hold in self.holds.values():
            if hold.held == held:
                return hold
        return None

    def leg_alive(self, leg: LegId) -> bool:
        found = self.legs.get(leg)
        return found is not None and found.alive

    def bridged_together(self, one: LegId, other: LegId) -> bool:
        """Both legs are alive and in the same bridge (talking to each other, or one holding
        the other), not e.g. an agent away consulting a colleague."""
        a, b = self.legs.get(one), self.legs.get(other)
        return (
            a is not None
            and b is not None
            and a.alive
            and b.alive
            and a.bridge is not None
            and a.bridge == b.bridge
        )

    def parties(self) -> list[Leg]:
        return [leg for leg in self.legs.values() if leg.role is not Role.HELPER]


# --------------------------------------------------------------------------- call events


@dataclass(frozen=True, slots=True)
class CallStarted:
    call: CallId


@dataclass(frozen=True, slots=True)
class PartiesConnected:
    """The caller and an agent are now in one bridge (again, with a new agent, after a transfer)."""

    call: CallId
    caller: LegId
    agent: LegId


@dataclass(frozen=True, slots=True)
class AgentIdentified:
    """The PBX named the agent and queue of the call (a queue's AgentConnect)."""

    call: CallId
    agent_leg: LegId
    agent: str
    queue: str


@dataclass(frozen=True, slots=True)
class PartiesSeparated:
    """The caller and the agent are no longer bridged (one left the bridge or hung up)."""

    call: CallId
    caller: LegId
    agent: LegId


@dataclass(frozen=True, slots=True)
class HoldStarted:
    call: CallId
    held: LegId
    holder: LegId
    started_at: float


@dataclass(frozen=True, slots=True)
class HoldEnded:
    call: CallId
    held: LegId
    holder: LegId
    started_at: float
    ended_at: float
    how: str  # "released", "holder_left", "held_left", "hung_up", "link_lost"


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    call: CallId
    leg: LegId
    role: Role


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    call: CallId
    leg: LegId
    role: Role
    ended_at: float  # when the speech really ended (detectors report it late)
    speech_ms: int | None


@dataclass(frozen=True, slots=True)
class DigitReceived:
    call: CallId
    leg: LegId
    role: Role
    digit: str


@dataclass(frozen=True, slots=True)
class FeatureCode:
    call: CallId
    leg: LegId
    role: Role
    feature: str


@dataclass(frozen=True, slots=True)
class PromptDone:
    call: CallId
    leg: LegId
    prompt: str
    ok: bool


@dataclass(frozen=True, slots=True)
class LegEnded:
    call: CallId
    end: LegEnd


@dataclass(frozen=True, slots=True)
class CallEnded:
    call: CallId
    legs: tuple[LegEnd, ...]
    ended_at: float


@dataclass(frozen=True, slots=True)
class TimerFired:
    call: CallId
    key: str


@dataclass(frozen=True, slots=True)
class VariableChanged:
    call: CallId
    leg: LegId
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class LinkLost:
    """The daemon lost its link to the PBX (AMI, Event Socket) while this call was live:
    until ``LinkRestored`` it hears nothing of the call (no talk, hold, digit or hang-up
    events), so it cannot know whether anyone spoke."""

    call: CallId
    at: float
    reason: str = ""  # why the link went (the adapter's words), for the log


@dataclass(frozen=True, slots=True)
class LinkRestored:
    """The link is back and this call, live when it was lost, is still live. Comes after
    every event the resync implies for the call; what was said meanwhile stays unknown."""

    call: CallId
    at: float
    lost_at: float  # when the link was lost (the call's ``LinkLost``)


CallEvent = (
    CallStarted
    | PartiesConnected
    | AgentIdentified
    | PartiesSeparated
    | HoldStarted
    | HoldEnded
    | SpeechStarted
    | SpeechEnded
    | DigitReceived
    | FeatureCode
    | PromptDone
    | LegEnded
    | CallEnded
    | TimerFired
    | VariableChanged
    | LinkLost
    | LinkRestored
)


# --------------------------------------------------------------------------- the model


class CallModel:
    """All live calls, updated by PBX-neutral events. See the module docstring."""

    def __init__(self, rules: RoleRules | None = None) -> None:
        self.rules = rules or RoleRules()
        self._agent_re = self.rules.compiled_patterns()
        self._watched = self.rules.watched_variables()
        self.calls: dict[CallId, Call] = {}
        # Calls that left the model without a CallEnded (absorbed into another call, or a
        # helper's own call): whoever keeps per-call state takes them (``take_forgotten``).
        self._forgotten: list[CallId] = []
        self.legs: dict[LegId, Leg] = {}
        self.bridges: dict[str, set[LegId]] = {}
        # The calls told ``LinkLost`` and not yet ``LinkRestored``: when their link was lost.
        self._unheard: dict[CallId, float] = {}
        # Calls told LinkLost whose events were applied again before the resync (they arrive
        # while the channel list is awaited): when each was last heard.
        self._heard_again: dict[CallId, float] = {}

    # -- queries --------------------------------------------------------------------------

    def call_of(self, leg: LegId) -> Call | None:
        found = self.legs.get(leg)
        return self.calls.get(found.call) if found else None

    def bridged_peers(self, leg: Leg) -> list[Leg]:
        if leg.bridge is None:
            return []
        members = self.bridges.get(leg.bridge, set())
        return [
            self.legs[other]
            for other in sorted(members)
            if other != leg.id and other in self.legs and self.legs[other].role is not Role.HELPER
        ]

    # -- the transition function ------------------------------------------------------------

    def apply(self, event: ev.PbxEvent, now: float) -> list[CallEvent]:
        """Apply one PBX event; the call events it makes."""
        if not self._unheard or isinstance(event, ev.PbxResynced | ev.PbxConnectionChanged):
            return self._apply(event, now)
        leg = self.legs.get(getattr(event, "leg", None) or LegId(""))
        touched = {leg.call} if leg is not None else set()
        out = self._apply(event, now)
        touched |= {e.call for e in out}
        for call_id in touched & self._unheard.keys():
            self._heard_again[call_id] = now
        return out

    def _seen_until(self, call_id: CallId, now: float) -> float:
        """The last moment a call told LinkLost was heard: the loss, or an event of it
        applied since (``now`` for a call not told)."""
        lost_at = self._unheard.get(call_id)
        if lost_at is None:
            return now
        return max(lost_at, self._heard_again.get(call_id, lost_at))

    def _apply(self, event: ev.PbxEvent, now: float) -> list[CallEvent]:  # noqa: C901, PLR0911, PLR0912
        match event:
            case ev.LegCreated():
                return self._leg_created(event, now)
            case ev.PbxResynced():
                return self._resynced(event, now)
            case ev.PbxConnectionChanged(connected=False):
                return self._link_lost(event, now)
            case ev.PbxConnectionChanged() | ev.OriginateOutcome() | ev.MachineDetected():
                return []
        leg = self.legs.get(getattr(event, "leg", None) or LegId(""))
        if isinstance(event, ev.AgentConnected):
            return self._agent_connected(event, now)
        if leg is None or leg.end is not None:
            return []
        call = self.calls[leg.call]
        match event:
            case ev.LegAnswered():
                if not leg.answered:
                    leg.answered = True
                    leg.answered_at = now
                return []
            case ev.LegJoinedBridge():
                return self._joined(call, leg, event.bridge, now)
            case ev.LegLeftBridge():
                return self._left(call, leg, event.bridge, now)
            case ev.LegVariable():
                return self._variable(call, leg, event.name, event.value, now)
            case ev.HoldPressed():
                return self._hold_pressed(call, leg, now)
            case ev.HoldReleased():
                return self._hold_released(call, leg, now)
            case ev.MusicOnHoldStarted():
                leg.hearing_music = True
                if event.music_class:
                    leg.music_class = event.music_class
                return self._music_started(call, leg, now)
            case ev.MusicOnHoldStopped():
                leg.hearing_music = False
                return self._music_stopped(call, leg, now)
            case ev.TalkingStarted():
                if leg.role is Role.HELPER or leg.talking:
                    return []
                leg.talking = True
                leg.talking_since = now
                return [SpeechStarted(call.id, leg.id, leg.role)]
            case ev.TalkingStopped():
                if leg.role is Role.HELPER:
                    return []
                started: list[CallEvent] = []
                if not leg.talking:
                    if not event.speech_ms:
                        return []
                    # Its start was missed (it came while the link to the switch was down;
                    # Asterisk sends it once): the end says how long the speech lasted, and
                    # a caller who spoke must not be taken for a silent one.
                    leg.talking = True
                    leg.talking_since = now - (event.silence_ms + event.speech_ms) / 1000.0
                    started.append(SpeechStarted(call.id, leg.id, leg.role))
                leg.talking = False
                ended_at = now - event.silence_ms / 1000.0
                if leg.talking_since is not None:
                    ended_at = max(ended_at, leg.talking_since)
                leg.speech_ended_at = ended_at
                return [
                    *started,
                    SpeechEnded(call.id, leg.id, leg.role, ended_at, event.speech_ms),
                ]
            case ev.DigitPressed():
                return [DigitReceived(call.id, leg.id, leg.role, event.digit)]
            case ev.FeatureRequested():
                return [FeatureCode(call.id, leg.id, leg.role, event.feature)]
            case ev.PromptFinished():
                return [PromptDone(call.id, leg.id, event.prompt, event.ok)]
            case ev.LegHungUp():
                return self._hung_up(call, leg, event, now)
        return []

    # -- legs -------------------------------------------------------------------------------

    def _new_leg(self, created: ev.LegCreated, now: float) -> Leg:
        leg = Leg(
            id=created.leg,
            call=created.call,
            channel=created.channel,
            endpoint=created.endpoint,
            caller_number=created.caller_number,
            caller_name=created.caller_name,
            dialed=created.dialed,
            direction=created.direction,
            origin=created.origin,
            created_at=now,
            answered=created.answered,
            answered_at=now if created.answered else None,
        )
        if created.origin == "helper":
            leg.role = Role.HELPER
            leg.role_fixed = True
        elif created.origin == "callback":
            leg.role = Role.CALLER
            leg.role_fixed = True
        elif self._agent_re is not None and self._agent_re.match(created.endpoint):
            leg.role = Role.AGENT
            leg.role_fixed = True
            leg.agent = _endpoint_name(created.endpoint)
        return leg

    def _leg_created(self, created: ev.LegCreated, now: float) -> list[CallEvent]:
        if created.leg in self.legs:
            return []  # a duplicate (resync raced with the live event): keep what we have
        leg = self._new_leg(created, now)
        out: list[CallEvent] = []
        call = self.calls.get(created.call)
        if call is None:
            call = Call(id=created.call, started_at=now)
            self.calls[call.id] = call
            if leg.role is not Role.HELPER:
                out.append(CallStarted(call.id))
        call.legs[leg.id] = leg
        self.legs[leg.id] = leg
        if (
            leg.role is Role.OTHER
            and call.caller is None
            and created.direction is Direction.INBOUND
        ):
            leg.role = Role.CALLER
        if leg.role is Role.CALLER and call.caller is None:
            call.caller = leg.id
        if leg.role is Role.AGENT and leg.tier is None:
            leg.tier = self._tier_for(leg.agent)
        return out

    def _tier_for(self, agent: str | None) -> str:
        if agent is not None and agent in self.rules.tiers:
            return self.rules.tiers[agent]
        return self.rules.default_tier

    def _retier(self, leg: Leg) -> None:
        """The tier of ``leg`` for the agent it now names: the tier variable wins, else
        ``agents.tiers`` for the agent id (known only once the queue or the dialplan names
        the agent, after the leg was first given one by its endpoint name)."""
        if not leg.tier_given:
            leg.tier = self._tier_for(leg.agent)

    def _make_agent(self, call: Call, leg: Leg, agent: str | None, queue: str | None) -> None:
        leg.role = Role.AGENT
        leg.role_fixed = True
        if agent:
            leg.agent = agent
        elif leg.agent is None:
            leg.agent = _endpoint_name(leg.endpoint)
        self._retier(leg)
        if queue:
            leg.queue = queue
            call.queue = queue

    def _rehome(self, leg: Leg, call: Call) -> None:
        """Move ``leg`` (and only it) into ``call``."""
        old = self.calls.get(leg.call)
        if old is call:
            return
        if old is not None:
            old.legs.pop(leg.id, None)
            if old.agent == leg.id:
                old.agent = None
            if not any(other.role is not Role.HELPER for other in old.legs.values()):
                # The old call held nothing but this leg: it is absorbed, not ended.
                for helper in list(old.legs.values()):
                    helper.call = call.id
                    call.legs[helper.id] = helper
                self.calls.pop(old.id, None)
                self._forgotten.append(old.id)
        leg.call = call.id
        call.legs[leg.id] = leg

    # -- agents and bridges ---------------------------------------------------------------

    def _agent_connected(self, event: ev.AgentConnected, now: float) -> list[CallEvent]:
        agent_leg = self.legs.get(event.agent_leg)
        caller_leg = self.legs.get(event.caller_leg)
        if agent_leg is None or agent_leg.end is not None:
            return []
        call = self.calls[caller_leg.call] if caller_leg is not None else self.calls[agent_leg.call]
        if caller_leg is not None and caller_leg.end is None and call.caller is None:
            caller_leg.role = Role.CALLER
            call.caller = caller_leg.id
        self._rehome(agent_leg, call)
        self._make_agent(call, agent_leg, event.agent, event.queue)
        out: list[CallEvent] = [AgentIdentified(call.id, agent_leg.id, event.agent, event.queue)]
        out.extend(self._check_connected(call, now))
        return out

    def _joined(self, call: Call, leg: Leg, bridge: str, now: float) -> list[CallEvent]:
        leg.bridge = bridge
        self.bridges.setdefault(bridge, set()).add(leg.id)
        if leg.role is Role.HELPER:
            return []
        peers = self.bridged_peers(leg)
        # A leg of another call joining the caller's bridge belongs to the caller's call.
        for peer in peers:
            peer_call = self.calls.get(peer.call)
            if peer_call is None or peer_call is call:
                continue
            if peer.role is Role.CALLER and leg.role is not Role.CALLER:
                self._rehome(leg, peer_call)
                call = peer_call
            elif leg.role is Role.CALLER and peer.role is not Role.CALLER:
                self._rehome(peer, call)
        return self._check_connected(call, now)

    def _check_connected(self, call: Call, now: float) -> list[CallEvent]:
        caller = call.caller_leg
        if caller is None or caller.end is not None or caller.bridge is None:
            return []
        peers = self.bridged_peers(caller)
        agent: Leg | None = next((p for p in peers if p.role is Role.AGENT), None)
        if agent is None and self.rules.bridged_peer_is_agent:
            agent = next((p for p in peers if p.role is Role.OTHER and not p.role_fixed), None)
            if agent is not None:
                self._make_agent(call, agent, None, None)
        if agent is None or (call.agent == agent.id and call.connected_at is not None):
            return []
        call.agent = agent.id
        if call.connected_at is None:
            call.connected_at = now
        if agent.queue and not call.queue:
            call.queue = agent.queue
        return [PartiesConnected(call.id, caller.id, agent.id)]

    def _left(self, call: Call, leg: Leg, bridge: str, now: float) -> list[CallEvent]:
        members = self.bridges.get(bridge)
        if members is not None:
            members.discard(leg.id)
            if not members:
                del self.bridges[bridge]
        if leg.bridge == bridge:
            leg.bridge = None
        if leg.role is Role.HELPER:
            return []
        out = self._end_holds_involving(call, leg, now, "holder_left", "held_left")
        if (
            call.agent is not None
            and call.caller is not None
            and leg.id in (call.agent, call.caller)
        ):
            out.append(PartiesSeparated(call.id, call.caller, call.agent))
        return out

    def _variable(self, call: Call, leg: Leg, name: str, value: str, now: float) -> list[CallEvent]:
        rules = self.rules
        out: list[CallEvent] = []
        if name == rules.role_variable:
            role = value.strip().lower()
            if role == Role.AGENT:
                self._make_agent(call, leg, None, None)
                out.extend(self._check_connected(call, now))
            elif role == Role.CALLER:
                leg.role = Role.CALLER
                leg.role_fixed = True
                if call.caller is None:
                    call.caller = leg.id
        elif name == rules.tier_variable and value:
            leg.tier = value.strip()
            leg.tier_given = True
        elif name == rules.agent_variable and value:
            leg.agent = value
            if leg.role is Role.AGENT:
                self._retier(leg)
        elif name == rules.queue_variable and value:
            leg.queue = value
            call.queue = value
        elif name == rules.topic_variable and value:
            call.topic = value
        out.append(VariableChanged(call.id, leg.id, name, value))
        return out

    # -- hold ---------------------------------------------------------------------------------

    def _hold_pressed(self, call: Call, holder: Leg, now: float) -> list[CallEvent]:
        if holder.id in call.holds:
            return []
        peers = self.bridged_peers(holder)
        if not peers:
            return []
        held = peers[0]
        existing = call.hold_on(held.id)
        if existing is not None and existing.source == "music" and existing.holder == holder.id:
            existing.source = "pressed"
            return []
        hold = Hold(holder=holder.id, held=held.id, started_at=now, source="pressed")
        call.holds[holder.id] = hold
        return [HoldStarted(call.id, held.id, holder.id, now)]

    def _hold_released(self, call: Call, holder: Leg, now: float) -> list[CallEvent]:
        hold = call.holds.pop(holder.id, None)
        if hold is None:
            return []
        return [HoldEnded(call.id, hold.held, hold.holder, hold.started_at, now, "released")]

    def _music_started(self, call: Call, held: Leg, now: float) -> list[CallEvent]:
        if call.hold_on(held.id) is not None:
            return []
        peers = self.bridged_peers(held)
        if not peers:
            return []  # music outside a bridge (a queue's music while waiting) is not a hold
        holder = peers[0]
        if holder.id in call.holds:
            return []
        call.holds[holder.id] = Hold(holder=holder.id, held=held.id, started_at=now, source="music")
        return [HoldStarted(call.id, held.id, holder.id, now)]

    def _music_stopped(self, call: Call, held: Leg, now: float) -> list[CallEvent]:
        hold = call.hold_on(held.id)
        if hold is None or hold.source != "music":
            return []
        del call.holds[hold.holder]
        return [HoldEnded(call.id, hold.held, hold.holder, hold.started_at, now, "released")]

    def _end_holds_involving(
        self, call: Call, leg: Leg, now: float, as_holder: str, as_held: str
    ) -> list[CallEvent]:
        out: list[CallEvent] = []
        for holder_id, hold in list(call.holds.items()):
            if leg.id in (hold.holder, hold.held):
                del call.holds[holder_id]
                how = as_holder if hold.holder == leg.id else as_held
                out.append(HoldEnded(call.id, hold.held, hold.holder, hold.started_at, now, how))
        return out

    # -- hang-up --------------------------------------------------------------------------

    def _hung_up(
        self, call: Call, leg: Leg, event: ev.LegHungUp, now: float, *, seen: bool = True
    ) -> list[CallEvent]:
        out: list[CallEvent] = []
        was_bridged = bool(self.bridged_peers(leg)) if leg.bridge else False
        if leg.role is not Role.HELPER:
            out.extend(self._end_holds_involving(call, leg, now, "hung_up", "hung_up"))
            if (
                call.agent is not None
                and call.caller is not None
                and leg.id in (call.agent, call.caller)
                and leg.bridge is not None
            ):
                out.append(PartiesSeparated(call.id, call.caller, call.agent))
        if leg.bridge is not None:
            members = self.bridges.get(leg.bridge)
            if members is not None:
                members.discard(leg.id)
                if not members:
                    del self.bridges[leg.bridge]
            leg.bridge = None
        leg.talking = False
        end = LegEnd(
            leg=leg.id,
            role=leg.role,
            answered=leg.answered,
            cause=event.cause,
            cause_text=event.cause_text,
            tech_cause=event.tech_cause,
            media_timeout=event.media_timeout,
            peer_cause=event.peer_cause,
            ended_at=now,
            order=len(call.ended_legs),
            was_bridged=was_bridged,
            seen=seen,
        )
        leg.end = end
        if leg.role is Role.HELPER:
            self._forget_leg(call, leg)
            return out
        call.ended_legs.append(end)
        out.append(LegEnded(call.id, end))
        if all(
            other.end is not None for other in call.legs.values() if other.role is not Role.HELPER
        ):
            call.ended_at = now
            out.append(CallEnded(call.id, tuple(call.ended_legs), now))
            self._forget_call(call)
        return out

    def _forget_leg(self, call: Call, leg: Leg) -> None:
        call.legs.pop(leg.id, None)
        self.legs.pop(leg.id, None)
        if not call.legs and self.calls.get(call.id) is call:
            # A call that only ever held the daemon's own helper (a whisper channel on a
            # call id of its own) ends with it; it was never a customer's call.
            del self.calls[call.id]
            self._forgotten.append(call.id)

    def take_forgotten(self) -> list[CallId]:
        """The calls gone from the model without a ``CallEnded`` since the last call."""
        forgotten, self._forgotten = self._forgotten, []
        return forgotten

    def _forget_call(self, call: Call) -> None:
        for leg_id in call.legs:
            self.legs.pop(leg_id, None)
        self.calls.pop(call.id, None)
        self._unheard.pop(call.id, None)
        self._heard_again.pop(call.id, None)

    # -- the link to the PBX ----------------------------------------------------------------

    def _link_lost(self, event: ev.PbxConnectionChanged, now: float) -> list[CallEvent]:
        """``LinkLost`` for every live call not already told (a reconnect that failed before
        its resync loses the link again: the calls are still unheard since the first loss).

        Calls do not carry the PBX they are on: one daemon attaches to one PBX
        (``pbx.kind``), so every live call is on the PBX whose link was lost. A call holding
        only the daemon's own helper leg is no customer's call and is not told.
        """
        out: list[CallEvent] = []
        for call in self.calls.values():
            if call.id in self._unheard or not call.parties():
                continue
            self._unheard[call.id] = now
            out.append(LinkLost(call.id, now, event.reason))
        return out

    def _link_restored(self, now: float) -> list[CallEvent]:
        """``LinkRestored`` for every call told ``LinkLost`` that the resync left alive."""
        out: list[CallEvent] = [
            LinkRestored(call_id, now, lost_at)
            for call_id, lost_at in self._unheard.items()
            if call_id in self.calls
        ]
        self._unheard.clear()
        self._heard_again.clear()
        return out

    # -- resync -----------------------------------------------------------------------------

    def _resynced(self, event: ev.PbxResynced, now: float) -> list[CallEvent]:
        """Reconcile with the PBX's list of live legs after a (re)connect.

        Legs we track that the PBX no longer has ended while we were away: they end with an
        unknown cause, unseen (``LegEnd.seen``), when their call was last heard (the outage
        is not their time: a call's duration is what was seen of it, never shorter). Legs
        the PBX has that we do not know are added. Known legs keep their history; an answer
        or a bridge change the switch lists for them is applied (nothing duplicated,
        nothing forgotten).

        Holds known before the cut end (``how="link_lost"``): a switch does not list hold
        states, and an ``Unhold`` sent while the link was down is lost for good. Carrying on
        as if the hold went on could leave the daemon's hold program announcing over a
        resumed conversation until the call ends; ending it risks at most a silent rest of a
        hold that really goes on, until the agent resumes the call. Such a hold ends when
        its call was last heard (the loss, or an event of it that arrived while the list
        was awaited): when it really ended is unknown, and the outage is not the agent's
        hold time (a 20 s hold released during a 5-minute outage is not over the limit).

        Last, every call told ``LinkLost`` that is still live gets ``LinkRestored``.
        """
        out: list[CallEvent] = []
        for call in list(self.calls.values()):
            seen_until = self._seen_until(call.id, now)
            for holder_id, hold in list(call.holds.items()):
                del call.holds[holder_id]
                ended_at = max(hold.started_at, seen_until)
                out.append(
                    HoldEnded(
                        call.id, hold.held, hold.holder, hold.started_at, ended_at, "link_lost"
                    )
                )
        alive = {live.created.leg: live for live in event.legs}
        for leg_id in [lid for lid in self.legs if lid not in alive]:
            leg = self.legs.get(leg_id)
            if leg is None or leg.end is not None:
                continue
            call = self.calls[leg.call]
            out.extend(
                self._hung_up(
                    call,
                    leg,
                    ev.LegHungUp(leg_id, None, "gone while the daemon was disconnected"),
                    self._seen_until(call.id, now),
                    seen=False,
                )
            )
        for live in event.legs:
            known = self.legs.get(live.created.leg)
            if known is not None:
                out.extend(self._reconcile(known, live, now))
                continue
            out.extend(self._leg_created(live.created, now))
            leg = self.legs[live.created.leg]
            call = self.calls[leg.call]
            if live.answered:
                leg.answered = True
                leg.answered_at = now
            if live.bridge:
                out.extend(self._joined(call, leg, live.bridge, now))
            if live.on_hold_music:
                leg.hearing_music = True
                out.extend(self._music_started(call, leg, now))
        out.extend(self._link_restored(now))
        return out

    def _reconcile(self, leg: Leg, live: ev.LiveLeg, now: float) -> list[CallEvent]:
        """A leg known before the cut, as the switch lists it now: an answer or a bridge
        change made while the link was down (a queued caller connected to an agent) is
        taken, or the call would never be seen as connected."""
        if leg.end is not None:
            return []
        call = self.calls[leg.call]
        out: list[CallEvent] = []
        if live.answered and not leg.answered:
            leg.answered = True
            leg.answered_at = now
        if live.bridge != leg.bridge:
            if leg.bridge is not None:
                out.extend(self._left(call, leg, leg.bridge, now))
            if live.bridge:
                out.extend(self._joined(self.calls[leg.call], leg, live.bridge, now))
        return out


def _endpoint_name(endpoint: str) -> str:
    """``PJSIP/agent-1001`` → ``agent-1001``; ``sofia/internal/1001@host`` → ``1001``."""
    name = endpoint.rsplit("/", 1)[-1]
    return name.split("@", 1)[0]

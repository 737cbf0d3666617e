"""ESL events → PBX-neutral events. No I/O: the adapter feeds it events with the time they
arrived, it returns neutral events; ``poll(now)`` returns what became due since (a
debounced end of speech, a machine-detection verdict) and ``next_deadline()`` says when to
poll next.

What the FreeSWITCH 1.10.12 transcripts taught (``tests/traces/freeswitch/README.md``) and
how it is read here:

- A leg is a ``Unique-ID``; the customer's call is ``Channel-Call-UUID`` (a bridge's B-leg
  carries its A-leg's uuid there, 02c). ``CHANNEL_BRIDGE`` comes on the A-leg with
  ``Bridge-A-Unique-ID``/``Bridge-B-Unique-ID``; the pair gets one neutral bridge id.
- Legs the daemon created are known by the id it chose (``origination_uuid``) or by the
  ``pbx_agent_helper`` channel variable (``sip_h_X-PbxAgent-Helper`` on the far side of a
  SIP loop): the *listener* a lone caller is bridged to so that the switch's talk detection
  can hear them (see below). A bridge with a helper is kept here, never reported: for the
  call model the caller is alone.
- Hold (03a): ``CHANNEL_HOLD``/``CHANNEL_UNHOLD`` on the leg whose phone pressed hold;
  ~160 ms later the *other* leg runs ``playback local_stream://moh`` (its partner's
  ``hold_music``): that playback is the held party's music (``MusicOnHoldStarted``) until its
  ``CHANNEL_EXECUTE_COMPLETE``. A playback is hold music when the leg's bridged peer holds,
  or when it plays one of ``hold_music_prefixes`` — unless the daemon asked for it.
- Talk detection (04): ``TALK``/``NOTALK`` fire on the leg the audio is *sent to*: speech on
  leg X is the speech of X's bridged peer, so the event is moved to the peer. A leg with no
  peer, or one the switch is playing something to (a prompt, hold music, a displaced file),
  carries the switch's own audio, never a party's: those events are dropped. During
  continuous speech a ``NOTALK`` comes every ~0.8 s and ``TALK`` 20–120 ms after it, so a
  ``NOTALK`` only ends the speech when no ``TALK`` follows within ``talk_debounce_ms``; the
  final ``NOTALK`` comes 0–0.8 s after the speech really ended (0.38–0.42 s in 04), so the
  end is put ``notalk_lag_ms`` before it. A ``NOTALK`` with no ``TALK`` before it (each leg
  starts "talking" and says ``NOTALK`` ~0.8 s after media starts) is ignored.
- Hang-ups: ``CHANNEL_HANGUP`` (the first report; in 03b ``CHANNEL_HANGUP_COMPLETE`` never
  came) with the cause name turned into one number (``cause_number``: Q.850 for the
  standard names, FreeSWITCH's own codes above 127 for ``MEDIA_TIMEOUT``,
  ``ALLOTTED_TIMEOUT``...), ``media_timeout`` for ``MEDIA_TIMEOUT`` (07b), ``peer_cause`` from
  ``variable_bridge_hangup_cause`` (the survivor of 07b is ``NORMAL_CLEARING`` with
  ``MEDIA_TIMEOUT`` there), ``tech_cause`` the SIP status when the far end refused.
- Originations (07a): ``bgapi originate`` with our own ``Job-UUID``; its BACKGROUND_JOB is
  ``+OK <uuid>`` once answered or ``-ERR <CAUSE>`` (``USER_BUSY``, ``CALL_REJECTED``,
  ``NO_ANSWER``, ``NORMAL_TEMPORARY_FAILURE``...), before or after the leg's hang-up.
- Machine detection (06): core FreeSWITCH only reports beeps (``avmd::beep``, each event
  twice with one ``Event-Sequence``). For a callback leg registered with ``DetectorParams``
  the translator runs the daemon's detector's rules over the callee's speech segments (its
  debounced talk events, in ms after the answer) and the first beep
  (``detector_on_segments``), and reports ``MachineDetected``. The verdict needs the
  callee to be heard: while the leg has never been bridged to a listener the verdict is
  ``notsure`` (``no-talk-detection``), so a missing listener can never make a
  silent-looking person a machine.
- Feature codes: the agent's ``bind_meta_app`` runs ``event pbx_agent_feature=<name>`` on the
  agent's channel: a ``CHANNEL_APPLICATION`` with that header. ``mod_callcenter``'s
  ``callcenter::info`` ``bridge-agent-start`` names the agent and the queue.
- Watched variables: from the variables events carry (``variable_<name>``) and from
  ``CHANNEL_EXECUTE`` of ``set``/``export`` (``NAME=value``); reported when they change.

Invariants: every neutral event for a leg follows its ``LegCreated``; ``TalkingStarted`` and
``TalkingStopped`` alternate per speaker; a helper leg produces no party event.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from pbx_agent.amd.detector import SpeechSegment
from pbx_agent.amd.params import DetectorParams, VerdictKind
from pbx_agent.amd.segments import ReportedBeep, detector_on_segments
from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId
from pbx_agent.pbx.resync import agents_in_bridges
from pbx_agent.policies.callbacks import cause_number
from pbx_agent.wire.esl import EslEvent

HELPER_VARIABLE = "pbx_agent_helper"
HELPER_SIP_HEADER_VARIABLE = "sip_h_X-PbxAgent-Helper"
# The SIP profile that carries only the listener (dialplan/freeswitch/pbx-agent-profile.xml):
# both of its legs are named after it. A resync row has no variables, only this name.
HELPER_CHANNEL_PREFIX = "sofia/pbxagent/"
FEATURE_HEADER = "pbx_agent_feature"
DEFAULT_HOLD_MUSIC_PREFIXES = ("local_stream://",)
PLAYBACK_APPS = frozenset({"playback", "endless_playback", "play_and_get_digits", "speak"})
_SET_APPS = frozenset({"set", "export", "set_profile_var"})
# How often an undecided machine detection is looked at again (one AMD() frame is 20 ms).
AMD_TICK_S = 0.1
# The A-leg applications whose second answered leg of the same call (``call_uuid``, which
# FreeSWITCH sets on a bridge) is its bridged party in the resync's rows: ``bridge``, and
# ``callcenter`` (mod_callcenter bridges the agent to the waiting member itself).
_BRIDGING_APPS = frozenset({"bridge", "callcenter"})
# A resync row of a leg hanging up (CHANNEL_HANGUP fired, CHANNEL_DESTROY not yet: 03b).
_ENDED_CALL_STATES = frozenset({"HANGUP"})
_ENDED_STATES = frozenset({"CS_HANGUP", "CS_REPORTING", "CS_DESTROY"})
# Hold music a resync found (``show channels`` names no playback): unhold ends it.
RESYNCED_MUSIC = "resynced"
# The VAD's period: during continuous speech it repeats NOTALK/TALK about this often (04).
VAD_PERIOD_S = 0.85
# Originate failures, by the cause in ``-ERR <CAUSE>`` (07a, 07c).
_FAILED_ORIGINATE = {
    "USER_BUSY": "busy",
    "CALL_REJECTED": "rejected",
    "DECLINE": "rejected",
    "BUSY_EVERYWHERE": "busy",
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ORIGINATOR_CANCEL": "no_answer",
    "ALLOTTED_TIMEOUT": "no_answer",
    "PROGRESS_TIMEOUT": "no_answer",
}


def endpoint_of(channel: str) -> str:
    """``sofia/internal/agent-1001@127.0.0.1:5181`` → ``sofia/internal/agent-1001``."""
    return channel.split("@", 1)[0]


def sounds_like_moh(data: str, prefixes: Iterable[str]) -> bool:
    return any(data.startswith(prefix) for prefix in prefixes)


# mod_callcenter's names for an agent bridged to a member (AGENT_STATE_CHART) and for its
# tier in that member's queue (STATE_CHART), compared as the module does (strcasecmp).
_CC_IN_CALL = "in a queue call"
_CC_TIER_ACTIVE = "active inbound"


def agents_from_callcenter(
    legs: Iterable[ev.LiveLeg],
    agents: Iterable[Mapping[str, str]],
    tiers: Iterable[Mapping[str, str]],
    unseen: Collection[str],
) -> list[ev.AgentConnected]:
    """Who the agents a resync found are, from mod_callcenter's ``agent list`` and ``tier
    list`` rows: a ``bridge-agent-start`` the daemon never saw leaves a bridged agent named
    by its device, with no queue (wrong tier limit, figures, callback queue). The module
    stores the agent's channel (``uuid``) when it bridges it; an ``unseen`` bridged leg that
    is one agent's channel while that agent is ``In a queue call`` is that agent, in the one
    queue where its tier is ``Active Inbound`` (none or several: no queue), connected to the
    one other party of its bridge. Two agents on one channel name nobody."""
    by_uuid: dict[str, list[str]] = {}
    for row in agents:
        name, uuid = row.get("name") or "", row.get("uuid") or ""
        if name and uuid and (row.get("state") or "").lower() == _CC_IN_CALL:
            by_uuid.setdefault(uuid, []).append(name)
    queues: dict[str, set[str]] = {}
    for row in tiers:
        if (row.get("state") or "").lower() == _CC_TIER_ACTIVE and row.get("queue"):
            queues.setdefault(row.get("agent") or "", set()).add(row["queue"])

    def identify(leg: ev.LiveLeg) -> tuple[str, str] | None:
        names = by_uuid.get(str(leg.created.leg), [])
        if len(names) != 1:
            return None
        active = queues.get(names[0], set())
        return names[0], next(iter(active)) if len(active) == 1 else ""

    return agents_in_bridges(
        legs, unseen, identify, lambda other: str(other.created.leg) in by_uuid
    )


@dataclass(slots=True)
class _Leg:
    uuid: str
    channel: str
    helper: bool
    answered: bool = False
    answered_at: float | None = None
    peer: str | None = None  # the leg bridged with this one (a helper too)
    bridge: str | None = None  # the neutral bridge id (party bridges only)
    holding: bool = False  # this leg's phone pressed hold
    moh_app: str | None = None  # Application-UUID of the hold music playing to this leg
    # Other playbacks running on it: Application-UUID -> Application-Data (the file).
    playbacks: dict[str, str] = field(default_factory=dict)
    switch_audio_until: float = 0.0  # a displaced file the daemon plays (adapter-reported)
    variables: dict[str, str] = field(default_factory=dict)  # watched ones, last seen
    hung_up: bool = False
    listened: bool = False  # it has been bridged to a listener (its speech can be heard)

    def switch_audio(self, now: float) -> bool:
        """The switch itself is sending audio to this leg: its talk events are not a party."""
        return self.moh_app is not None or bool(self.playbacks) or now < self.switch_audio_until


@dataclass(slots=True)
class _Talk:
    """Speech heard on one leg (``vad_leg``), said by ``speaker`` (its peer). The speech
    ends ``notalk_lag_ms`` before the NOTALK that ended it, and no later than one VAD period
    after the last TALK (``heard_at``)."""

    speaker: str
    since: float
    heard_at: float  # the last TALK (the VAD says so again every ~0.8 s while speech goes on)
    notalk_at: float | None = None  # a NOTALK waiting for the debounce


@dataclass(slots=True)
class _Origination:
    request: str
    leg: str
    origin: str
    created: bool = False
    cause: str = ""
    tech_cause: str = ""


@dataclass(eq=False, slots=True)
class AwaitedPrompt:
    """A broadcast the daemon asked for and awaits the end of (its CHANNEL_EXECUTE_COMPLETE);
    ``ends_at`` is when its length will have passed since it was sent (None: not known)."""

    leg: str
    path: str
    prompt: str
    ends_at: float | None = None


@dataclass(slots=True)
class _Amd:
    """Machine detection on one answered callback leg."""

    params: DetectorParams
    deadline_ms: int
    answered_at: float | None = None
    segments: list[SpeechSegment] = field(default_factory=list)
    beeps: list[ReportedBeep] = field(default_factory=list)
    beep_sequences: set[int] = field(default_factory=set)
    next_check: float | None = None
    done: bool = False


@dataclass(slots=True)
class FreeswitchTranslator:
    """Stateful translation of one ESL event stream. See the module docstring."""

    watched_variables: frozenset[str] = frozenset()
    pbx: str = "freeswitch"
    talk_debounce_ms: int = 200
    notalk_lag_ms: int = 400
    hold_music_prefixes: tuple[str, ...] = DEFAULT_HOLD_MUSIC_PREFIXES
    legs: dict[str, _Leg] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # leg uuid → origin we gave it
    # Callback attempts: the customer's number by leg uuid (the leg's Caller-ID is ours).
    callees: dict[str, str] = field(default_factory=dict)
    originations: dict[str, _Origination] = field(default_factory=dict)  # by Job-UUID
    _by_leg: dict[str, _Origination] = field(default_factory=dict)
    _prompts: dict[tuple[str, str], list[AwaitedPrompt]] = field(default_factory=dict)
    _talks: dict[str, _Talk] = field(default_factory=dict)  # by the leg the VAD runs on
    _amd: dict[str, _Amd] = field(default_factory=dict)
    # Agent legs named by mod_callcenter (bridge-agent-start, or a resync's agent list).
    named_agents: set[str] = field(default_factory=set)

    # -- what the adapter tells the translator ------------------------------------------

    def expect_origination(
        self, request: str, leg: str, origin: str, *, job: str, callee: str = ""
    ) -> None:
        """A leg the daemon is about to originate: ``leg`` is its ``origination_uuid``,
        ``job`` the ``Job-UUID`` of the ``bgapi originate``, ``callee`` the number dialled
        (the leg's caller number in the call model: its own Caller-ID is the daemon's)."""
        origination = _Origination(request, leg, origin)
        self.origins[leg] = origin
        if callee:
            self.callees[leg] = callee
        self.originations[job] = origination
        self._by_leg[leg] = origination

    def detect_machine(self, leg: str, params: DetectorParams, *, deadline_ms: int) -> None:
        """Run the detector's rules on ``leg``'s talk events once it answers (a callback
        attempt)."""
        self._amd[leg] = _Amd(params, deadline_ms)

    def expect_prompt(
        self, leg: str, path: str, prompt: str, *, ends_at: float | None = None
    ) -> None:
        """A playback of ``path`` the daemon asked for on ``leg`` (``uuid_broadcast``): its end
        is ``PromptFinished(prompt)``, and it is never taken for hold music. ``ends_at``:
        when its length will have passed (see ``prompt_end_lost``)."""
        awaited = AwaitedPrompt(leg, path, prompt, ends_at)
        self._prompts.setdefault((leg, path), []).append(awaited)

    def forget_prompt(self, leg: str, path: str, prompt: str) -> None:
        """The broadcast was refused: no playback will come."""
        waiting = self._prompts.get((leg, path))
        found = next((a for a in reversed(waiting or []) if a.prompt == prompt), None)
        if waiting and found is not None:
            waiting.remove(found)
            if not waiting:
                del self._prompts[(leg, path)]

    def awaited_prompts(self) -> list[AwaitedPrompt]:
        """The broadcasts whose end has not been seen yet."""
        return [awaited for waiting in self._prompts.values() for awaited in waiting]

    def prompt_end_lost(self, awaited: AwaitedPrompt) -> list[ev.PbxEvent]:
        """After a resync: ``awaited``'s CHANNEL_EXECUTE_COMPLETE may have been lost with the
        link (the playback ended while it was down) and its length has passed. Unless its
        end was seen meanwhile, it is finished now (nothing said it failed) and the leg no
        longer counts as hearing it."""
        key = (awaited.leg, awaited.path)
        waiting = self._prompts.get(key)
        if not waiting or awaited not in waiting:
            return []
        waiting.remove(awaited)
        if not waiting:
            del self._prompts[key]
        state = self.legs.get(awaited.leg)
        if state is not None:
            app = next((u for u, data in state.playbacks.items() if data == awaited.path), None)
            if app is not None:
                del state.playbacks[app]
        return [ev.PromptFinished(LegId(awaited.leg), awaited.prompt, ok=True)]

    def switch_audio(self, leg: str, until: float) -> None:
        """The daemon displaces a file on ``leg`` until ``until``: its talk events are not a
        party's meanwhile."""
        state = self.legs.get(leg)
        if state is not None:
            state.switch_audio_until = max(state.switch_audio_until, until)

    # -- what the adapter asks ----------------------------------------------------------

    def peer_of(self, leg: str) -> str | None:
        state = self.legs.get(leg)
        return state.peer if state is not None else None

    def bridged_to_party(self, leg: str) -> bool:
        """``leg`` is bridged with another party (not with a listener)."""
        state = self.legs.get(leg)
        if state is None or state.peer is None:
            return False
        peer = self.legs.get(state.peer)
        return peer is not None and not peer.helper

    def hears_hold_music(self, leg: str) -> bool:
        state = self.legs.get(leg)
        return state is not None and state.moh_app is not None

    # -- events in ------------------------------------------------------------------------

    def feed(self, event: EslEvent, now: float) -> list[ev.PbxEvent]:  # noqa: C901, PLR0912
        """The neutral events ``event`` implies, then whatever became due by ``now``."""
        name = event.name
        uid = event.unique_id or ""
        out: list[ev.PbxEvent]
        match name:
            case "CHANNEL_CREATE":
                out = self._created(event, now)
            case "CHANNEL_ANSWER":
                out = self._answered(uid, now)
            case "CHANNEL_BRIDGE":
                out = self._bridged(event, now)
            case "CHANNEL_UNBRIDGE":
                out = self._unbridged(event, now)
            case "CHANNEL_HOLD":
                out = self._hold(uid, pressed=True)
            case "CHANNEL_UNHOLD":
                out = self._hold(uid, pressed=False)
            case "CHANNEL_EXECUTE":
                out = self._execute(uid, event, now)
            case "CHANNEL_EXECUTE_COMPLETE":
                out = self._execute_complete(uid, event)
            case "TALK":
                out = self._talk(uid, now)
            case "NOTALK":
                out = self._notalk(uid, now)
            case "DTMF":
                digit = event.get("DTMF-Digit") or ""
                out = [ev.DigitPressed(LegId(uid), digit)] if self._party(uid) and digit else []
            case "CHANNEL_APPLICATION":
                feature = event.get(FEATURE_HEADER)
                out = (
                    [ev.FeatureRequested(LegId(uid), feature)]
                    if feature and self._party(uid)
                    else []
                )
            case "CUSTOM":
                out = self._custom(event, now)
            case "CHANNEL_HANGUP":
                out = self._hangup(uid, event, now)
            case "CHANNEL_DESTROY":
                out = self._destroy(uid, event, now)
            case "BACKGROUND_JOB":
                out = self._background_job(event)
            case _:
                out = []
        if name in ("CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_CREATE"):
            out.extend(self._variables(uid, event))
        out.extend(self.poll(now))
        return out

    def poll(self, now: float) -> list[ev.PbxEvent]:
        """Speech ends confirmed by the debounce, and machine verdicts, due by ``now``."""
        out: list[ev.PbxEvent] = []
        debounce = self.talk_debounce_ms / 1000.0
        for vad_leg, talk in list(self._talks.items()):
            if talk.notalk_at is not None and talk.notalk_at + debounce <= now:
                out.extend(self._talk_ended(vad_leg, talk, now))
        for leg in list(self._amd):
            out.extend(self._amd_check(leg, now))
        return out

    def next_deadline(self) -> float | None:
        """When ``poll`` may have something to say, or None."""
        debounce = self.talk_debounce_ms / 1000.0
        times = [
            talk.notalk_at + debounce for talk in self._talks.values() if talk.notalk_at is not None
        ]
        # An undecided detection is looked at every tick: silence decides too.
        times.extend(
            amd.next_check
            for amd in self._amd.values()
            if amd.next_check is not None and not amd.done
        )
        return min(times) if times else None

    # -- legs -----------------------------------------------------------------------------

    def _party(self, uid: str) -> bool:
        state = self.legs.get(uid)
        return state is not None and not state.helper and not state.hung_up

    def _created(self, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        uid = event.unique_id or ""
        if not uid or uid in self.legs:
            return []
        created = self.leg_created(event)
        self.legs[uid] = _Leg(
            uid,
            created.channel,
            helper=created.origin == "helper",
            answered=created.answered,
            answered_at=now if created.answered else None,
        )
        origination = self._by_leg.get(uid)
        if origination is not None:
            origination.created = True
        return [created]

    def leg_created(self, event: EslEvent) -> ev.LegCreated:
        """The ``LegCreated`` of a channel event (CHANNEL_CREATE, or a resync row made one)."""
        uid = event.unique_id or ""
        variables = event.variables
        channel = event.get("Channel-Name") or ""
        origin = self.origins.get(uid)
        known = self.legs.get(uid)
        if origin is None and (
            HELPER_VARIABLE in variables
            or HELPER_SIP_HEADER_VARIABLE in variables
            or channel.startswith(HELPER_CHANNEL_PREFIX)
            or (known is not None and known.helper)
        ):
            origin = "helper"
        direction = (
            Direction.INBOUND
            if (event.get("Call-Direction") or "").lower() == "inbound" and origin is None
            else Direction.OUTBOUND
        )
        call = event.get("Channel-Call-UUID") or variables.get("call_uuid") or uid
        return ev.LegCreated(
            leg=LegId(uid),
            call=CallId(call),
            channel=channel,
            endpoint=endpoint_of(channel),
            caller_number=self.callees.get(uid) or event.get("Caller-Caller-ID-Number") or "",
            caller_name=event.get("Caller-Caller-ID-Name") or "",
            dialed=event.get("Caller-Destination-Number") or "",
            direction=direction,
            answered=(event.get("Answer-State") or "") == "answered",
            origin=origin,
        )

    def _answered(self, uid: str, now: float) -> list[ev.PbxEvent]:
        state = self.legs.get(uid)
        if state is None or state.answered:
            return []
        state.answered = True
        state.answered_at = now
        amd = self._amd.get(uid)
        if amd is not None:
            amd.answered_at = now
            amd.next_check = now + AMD_TICK_S
        return [] if state.helper else [ev.LegAnswered(LegId(uid))]

    def _variables(self, uid: str, event: EslEvent) -> list[ev.PbxEvent]:
        state = self.legs.get(uid)
        if state is None or state.helper or not self.watched_variables:
            return []
        out: list[ev.PbxEvent] = []
        for name in sorted(self.watched_variables):
            value = event.variable(name)
            if value is not None:
                out.extend(self._variable(state, name, value))
        return out

    def _variable(self, state: _Leg, name: str, value: str) -> list[ev.PbxEvent]:
        if state.variables.get(name) == value:
            return []
        state.variables[name] = value
        return [ev.LegVariable(LegId(state.uuid), name, value)]

    # -- bridges --------------------------------------------------------------------------

    def _bridged(self, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        a_uid = event.get("Bridge-A-Unique-ID") or event.unique_id or ""
        b_uid = event.get("Bridge-B-Unique-ID") or event.get("Other-Leg-Unique-ID") or ""
        a, b = self.legs.get(a_uid), self.legs.get(b_uid)
        if a is None or b is None:
            return []
        out: list[ev.PbxEvent] = []
        for leg in (a, b):
            if leg.peer is not None and leg.peer not in (a.uuid, b.uuid):
                out.extend(self._separate(leg, now))
        a.peer, b.peer = b.uuid, a.uuid
        if a.helper or b.helper:
            party = b if a.helper else a
            party.listened = True
            return out
        bridge = f"{a.uuid}+{b.uuid}"
        a.bridge = b.bridge = bridge
        out.append(ev.LegJoinedBridge(LegId(a.uuid), bridge))
        out.append(ev.LegJoinedBridge(LegId(b.uuid), bridge))
        return out

    def _unbridged(self, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        a = self.legs.get(event.get("Bridge-A-Unique-ID") or event.unique_id or "")
        if a is None:
            return []
        return self._separate(a, now)

    def _separate(self, leg: _Leg, now: float) -> list[ev.PbxEvent]:
        """``leg`` and its peer are no longer bridged: end the talk heard across the bridge."""
        peer = self.legs.get(leg.peer) if leg.peer is not None else None
        out: list[ev.PbxEvent] = []
        for one in (leg, peer):
            if one is None:
                continue
            out.extend(self._cut_talk(one.uuid, now))
        bridge = leg.bridge
        for one in (leg, peer):
            if one is None:
                continue
            one.peer = None
            one.bridge = None
            if bridge is not None:
                out.append(ev.LegLeftBridge(LegId(one.uuid), bridge))
        return out

    # -- hold and playbacks ---------------------------------------------------------------

    def _hold(self, uid: str, *, pressed: bool) -> list[ev.PbxEvent]:
        state = self.legs.get(uid)
        if state is None or state.helper:
            return []
        state.holding = pressed
        out: list[ev.PbxEvent] = []
        peer = self.legs.get(state.peer) if state.peer is not None else None
        if not pressed and peer is not None and peer.moh_app == RESYNCED_MUSIC:
            # Music found by a resync: its playback's end was never seen, the unhold ends it.
            peer.moh_app = None
            out.append(ev.MusicOnHoldStopped(LegId(peer.uuid)))
        out.append(ev.HoldPressed(LegId(uid)) if pressed else ev.HoldReleased(LegId(uid)))
        return out

    def _execute(self, uid: str, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        state = self.legs.get(uid)
        if state is None:
            return []
        app = event.get("Application") or ""
        data = event.get("Application-Data") or ""
        app_uuid = event.get("Application-UUID") or ""
        if app in _SET_APPS and "=" in data and not state.helper:
            name, _, value = data.partition("=")
            if name in self.watched_variables:
                return self._variable(state, name, value)
            return []
        if app not in PLAYBACK_APPS:
            return []
        out = self._cut_talk(uid, now)
        ours = (uid, data) in self._prompts
        peer = self.legs.get(state.peer) if state.peer is not None else None
        is_moh = not ours and (
            sounds_like_moh(data, self.hold_music_prefixes) or (peer is not None and peer.holding)
        )
        if is_moh and state.moh_app is None:
            state.moh_app = app_uuid
            if not state.helper:
                music_class = data.split("://", 1)[-1]
                out.append(ev.MusicOnHoldStarted(LegId(uid), music_class))
        else:
            state.playbacks[app_uuid] = data
        return out

    def _execute_complete(self, uid: str, event: EslEvent) -> list[ev.PbxEvent]:
        state = self.legs.get(uid)
        if state is None:
            return []
        app = event.get("Application") or ""
        if app not in PLAYBACK_APPS:
            return []
        app_uuid = event.get("Application-UUID") or ""
        data = event.get("Application-Data") or ""
        if state.moh_app is not None and app_uuid == state.moh_app:
            state.moh_app = None
            return [] if state.helper else [ev.MusicOnHoldStopped(LegId(uid))]
        state.playbacks.pop(app_uuid, None)
        waiting = self._prompts.get((uid, data))
        if not waiting:
            return []
        awaited = waiting.pop(0)
        if not waiting:
            del self._prompts[(uid, data)]
        ok = (event.get("Application-Response") or "") == "FILE PLAYED"
        return [ev.PromptFinished(LegId(uid), awaited.prompt, ok=ok)]

    # -- talk -------------------------------------------------------------------------------

    def _talk(self, vad_leg: str, now: float) -> list[ev.PbxEvent]:
        state = self.legs.get(vad_leg)
        if state is None or state.hung_up or state.switch_audio(now) or state.peer is None:
            return []
        speaker = self.legs.get(state.peer)
        if speaker is None or speaker.helper or speaker.hung_up:
            return []
        talk = self._talks.get(vad_leg)
        if talk is not None and talk.speaker == speaker.uuid:
            talk.notalk_at = None  # the NOTALK was one of the ~0.8 s blips: speech goes on
            talk.heard_at = now
            return []
        out: list[ev.PbxEvent] = []
        if talk is not None:
            out.extend(self._talk_ended(vad_leg, talk, now))
        self._talks[vad_leg] = _Talk(speaker.uuid, now, now)
        amd = self._amd.get(speaker.uuid)
        if amd is not None and amd.answered_at is not None and not amd.done:
            amd.segments.append(SpeechSegment(_ms(now - amd.answered_at)))
        out.append(ev.TalkingStarted(LegId(speaker.uuid)))
        return out

    def _notalk(self, vad_leg: str, now: float) -> list[ev.PbxEvent]:
        talk = self._talks.get(vad_leg)
        if talk is not None and talk.notalk_at is None:
            talk.notalk_at = now
        return []

    def _talk_ended(self, vad_leg: str, talk: _Talk, now: float) -> list[ev.PbxEvent]:
        """The speech ``talk`` describes is over: it ended ``notalk_lag_ms`` before its
        NOTALK (or now, when the bridge or the leg went away)."""
        self._talks.pop(vad_leg, None)
        if talk.notalk_at is not None:
            # No later than one VAD period after the last TALK either: a NOTALK that reached
            # the daemon late must not lengthen the speech.
            estimate = talk.notalk_at - self.notalk_lag_ms / 1000.0
            ended = max(talk.since, min(estimate, talk.heard_at + VAD_PERIOD_S))
        else:
            ended = min(now, talk.heard_at + VAD_PERIOD_S)
        amd = self._amd.get(talk.speaker)
        if amd is not None and amd.answered_at is not None and amd.segments and not amd.done:
            last = amd.segments[-1]
            if last.end_ms is None:
                amd.segments[-1] = SpeechSegment(last.start_ms, _ms(ended - amd.answered_at))
        return [
            ev.TalkingStopped(
                LegId(talk.speaker),
                silence_ms=max(0, _ms(now - ended)),
                speech_ms=max(0, _ms(ended - talk.since)),
            )
        ]

    def _cut_talk(self, leg: str, now: float) -> list[ev.PbxEvent]:
        """Talk heard on ``leg`` or said by ``leg`` ends now (its bridge or media changed)."""
        out: list[ev.PbxEvent] = []
        for vad_leg, talk in list(self._talks.items()):
            if leg in (vad_leg, talk.speaker):
                out.extend(self._talk_ended(vad_leg, talk, now))
        return out

    # -- custom events ----------------------------------------------------------------------

    def _custom(self, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        subclass = event.subclass or ""
        if subclass == "avmd::beep":
            return self._beep(event, now)
        if subclass == "callcenter::info" and event.get("CC-Action") == "bridge-agent-start":
            caller = event.get("CC-Member-Session-UUID") or ""
            agent = event.get("CC-Agent-UUID") or ""
            if caller and agent:
                self.named_agents.add(agent)
                return [
                    ev.AgentConnected(
                        LegId(caller),
                        LegId(agent),
                        event.get("CC-Agent") or "",
                        event.get("CC-Queue") or "",
                    )
                ]
        return []

    def _beep(self, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        uid = event.unique_id or ""
        amd = self._amd.get(uid)
        sequence = event.sequence
        if amd is None or amd.answered_at is None or amd.done:
            return []
        if sequence is not None:
            # Every avmd event comes twice with one Event-Sequence (trace 06).
            if sequence in amd.beep_sequences:
                return []
            amd.beep_sequences.add(sequence)
        try:
            frequency = float(event.get("Frequency") or "0")
        except ValueError:
            frequency = 0.0
        amd.beeps.append(ReportedBeep(_ms(now - amd.answered_at), frequency))
        return []

    # -- machine detection ------------------------------------------------------------------

    def _amd_check(self, uid: str, now: float) -> list[ev.PbxEvent]:
        amd = self._amd.get(uid)
        if amd is None or amd.done or amd.answered_at is None:
            return []
        amd.next_check = now + AMD_TICK_S
        # Speech is taken to go on only as far as the VAD vouches for it: no further than a
        # NOTALK waiting for its debounce, nor past one VAD period after the last TALK (it
        # repeats every ~0.8 s while speech goes on). A late event then delays the verdict
        # instead of lengthening a greeting into a machine's.
        limits = [now]
        for talk in self._talks.values():
            if talk.speaker == uid:
                limits.append(talk.notalk_at if talk.notalk_at is not None else now)
                limits.append(talk.heard_at + VAD_PERIOD_S)
        at_ms = _ms(min(limits) - amd.answered_at)
        verdict = detector_on_segments(amd.segments, at_ms, beeps=amd.beeps, params=amd.params)
        if verdict is None and _ms(now - amd.answered_at) < amd.deadline_ms:
            return []
        amd.done = True
        state = self.legs.get(uid)
        if verdict is None:
            kind, cause, decided = "notsure", f"DEADLINE-{amd.deadline_ms}", at_ms
        else:
            kind, cause, decided = (
                verdict.kind.value.lower(),
                verdict.reason,
                verdict.decided_at_ms,
            )
        if state is not None and not state.listened and not amd.beeps:
            # Nothing could hear the callee: silence here proves nothing.
            kind, cause = VerdictKind.NOTSURE.value.lower(), f"no-talk-detection ({cause})"
        return [ev.MachineDetected(LegId(uid), kind, cause, decided)]

    # -- the end of a leg -------------------------------------------------------------------

    def _hangup(self, uid: str, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        state = self.legs.get(uid)
        if state is None or state.hung_up:
            return []
        out = self._cut_talk(uid, now)
        state.hung_up = True
        name = event.get("Hangup-Cause") or ""
        variables = event.variables
        peer_cause = (
            variables.get("bridge_hangup_cause") or variables.get("last_bridge_hangup_cause") or ""
        )
        tech = variables.get("sip_term_status") or variables.get("proto_specific_hangup_cause")
        origination = self._by_leg.get(uid)
        if origination is not None:
            origination.cause = name
            origination.tech_cause = tech or ""
        amd = self._amd.get(uid)
        if amd is not None:
            amd.done = True
        if state.helper:
            return out
        out.append(
            ev.LegHungUp(
                LegId(uid),
                cause_number(None, name),
                name,
                tech or "",
                media_timeout=name == "MEDIA_TIMEOUT",
                peer_cause=peer_cause,
            )
        )
        return out

    def _destroy(self, uid: str, event: EslEvent, now: float) -> list[ev.PbxEvent]:
        """CHANNEL_DESTROY. A leg whose CHANNEL_HANGUP never came (it was hanging up while
        the daemon was away, 03b) hangs up now, with the destroy event's cause."""
        state = self.legs.get(uid)
        out = self._hangup(uid, event, now) if state is not None and not state.hung_up else []
        self._destroyed(uid)
        return out

    def _destroyed(self, uid: str) -> None:
        state = self.legs.pop(uid, None)
        self.named_agents.discard(uid)
        if state is not None and state.peer is not None:
            peer = self.legs.get(state.peer)
            if peer is not None and peer.peer == uid:
                peer.peer = None
        self._amd.pop(uid, None)
        if uid not in self._by_leg:
            self.origins.pop(uid, None)
            self.callees.pop(uid, None)
        for key in [k for k in self._prompts if k[0] == uid]:
            del self._prompts[key]

    def _background_job(self, event: EslEvent) -> list[ev.PbxEvent]:
        origination = self.originations.pop(event.job_uuid or "", None)
        if origination is None:
            return []
        self._by_leg.pop(origination.leg, None)
        body = (event.body or "").strip()
        leg = LegId(origination.leg)
        if body.startswith("+OK"):
            return [ev.OriginateOutcome(origination.request, "answered", leg)]
        name = body.removeprefix("-ERR").strip().split(" ", 1)[0] if body else ""
        name = name or origination.cause
        state = self.legs.get(origination.leg)
        if state is None or state.hung_up:
            self.origins.pop(origination.leg, None)
            self.callees.pop(origination.leg, None)
        return [
            ev.OriginateOutcome(
                origination.request,
                _FAILED_ORIGINATE.get(name, "failed"),
                leg if origination.created else None,
                cause=cause_number(None, name),
                cause_text=name or body or "no result",
                tech_cause=origination.tech_cause,
            )
        ]

    # -- resync -----------------------------------------------------------------------------

    def live_legs(
        self,
        rows: Iterable[Mapping[str, str]],
        *,
        answered_since: Collection[str] = (),
        bridges_since: Mapping[str, str | None] | None = None,
    ) -> tuple[ev.LiveLeg, ...]:
        """``show channels as json`` rows as resync entries.

        Rows of legs hanging up (``callstate`` HANGUP, a hang-up state, or a leg whose
        CHANNEL_HANGUP was seen) are not alive. The rows name no bridge peer; legs of one call
        (``call_uuid``) that are both answered and ``ACTIVE``/``HELD`` are taken as bridged
        when the A-leg runs ``bridge`` or the two were already peers here. A helper is never
        reported in a bridge: a lone party with one is paired with it here only.

        The rows are older than the events that arrived while they were awaited (the switch
        sends what it queued meanwhile right behind the reply): ``answered_since`` (legs whose
        CHANNEL_ANSWER came then, known here or not) and ``bridges_since`` (each leg's bridge
        as those events left it, None for none) win over them.
        """
        newer = bridges_since or {}
        rows = [row for row in rows if row.get("uuid") and self._row_alive(row)]
        created = {row["uuid"]: self._row_created(row) for row in rows}
        bridges, listeners = self._row_pairs(rows, created)
        for uid, bridge in newer.items():
            if bridge is None:
                bridges.pop(uid, None)
            else:
                bridges[uid] = bridge
        holding = {row["uuid"] for row in rows if row.get("callstate") == "HELD"}
        out = []
        for row in rows:
            uid = row["uuid"]
            answered = self._row_answered(row) or uid in answered_since
            state = self._adopt(created[uid], answered, bridges, rows, listed=created)
            state.holding = uid in holding
            if state.moh_app is not None and state.peer is not None and state.peer not in holding:
                # Hold music whose end was lost in the outage (the unhold came meanwhile):
                # nobody holds this leg's peer now, so it hears the peer, not music (else
                # its talk events would be taken for the music's until its next hang-up).
                state.moh_app = None
            # The peer of a leg that holds hears the switch's music: never broadcast to it.
            music = state.peer in holding and state.moh_app is None
            if state.peer in holding:
                # Whichever playback was its music, its end may have been lost in the outage
                # (a resume and a new hold meanwhile): the peer's unhold ends it now.
                state.moh_app = RESYNCED_MUSIC
            out.append(ev.LiveLeg(created[uid], answered, bridges.get(uid), on_hold_music=music))
        for party, helper in listeners.items():
            self._listen(party, helper)
        return tuple(out)

    def _row_pairs(
        self, rows: Iterable[Mapping[str, str]], created: Mapping[str, ev.LegCreated]
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The bridge of each bridged party's row, and the listener of each lone party."""
        by_call: dict[str, list[Mapping[str, str]]] = {}
        for row in rows:
            by_call.setdefault(row.get("call_uuid") or row["uuid"], []).append(row)
        bridges: dict[str, str] = {}
        listeners: dict[str, str] = {}
        for call, members in by_call.items():
            up = [m["uuid"] for m in members if m.get("callstate") in ("ACTIVE", "HELD")]
            talking = [uid for uid in up if created[uid].origin != "helper"]
            helpers = [uid for uid in up if created[uid].origin == "helper"]
            if len(talking) == 1 and len(helpers) == 1:
                listeners[talking[0]] = helpers[0]
            if len(talking) != 2:
                continue
            first, second = talking
            known = self.legs.get(first)
            a_leg = next((m for m in members if m["uuid"] == call and call in talking), None)
            if known is not None and known.peer == second and known.bridge is not None:
                bridges[first] = bridges[second] = known.bridge
            elif a_leg is not None and a_leg.get("application") in _BRIDGING_APPS:
                bridges[first] = bridges[second] = f"{first}+{second}"
        return bridges, listeners

    def _row_answered(self, row: Mapping[str, str]) -> bool:
        """The rows have no answer state, only the call state. ``RING_WAIT`` is also an
        answered leg running ``bridge`` (02c: bob answered, then RING_WAIT while carol
        rings); a leg the daemon originated only runs its extension once answered, so for
        one of ours it means answered (a callback leg bridging its customer to an agent)."""
        callstate = row.get("callstate")
        if callstate in ("ACTIVE", "HELD", "UNHELD"):
            return True
        return callstate == "RING_WAIT" and row["uuid"] in self._by_leg

    def _row_alive(self, row: Mapping[str, str]) -> bool:
        if row.get("callstate") in _ENDED_CALL_STATES or row.get("state") in _ENDED_STATES:
            return False
        state = self.legs.get(row["uuid"])
        return state is None or not state.hung_up

    def _listen(self, party_uid: str, helper_uid: str) -> None:
        """A resync found a lone party with a listener in its call: talk events on the
        listener are the party's (as after their CHANNEL_BRIDGE)."""
        party, helper = self.legs.get(party_uid), self.legs.get(helper_uid)
        if party is None or helper is None or party.peer is not None or helper.peer is not None:
            return
        party.peer, helper.peer = helper_uid, party_uid
        party.listened = True

    def live_leg(self, created: ev.LegCreated) -> ev.LiveLeg | None:
        """The resync entry of a leg whose CHANNEL_CREATE came during the resync (the rows
        may miss it), or None once it hung up."""
        state = self.legs.get(str(created.leg))
        if state is None or state.hung_up:
            return None
        return ev.LiveLeg(created, state.answered, state.bridge)

    def _row_created(self, row: Mapping[str, str]) -> ev.LegCreated:
        headers = (
            ("Unique-ID", row.get("uuid", "")),
            ("Channel-Name", row.get("name", "")),
            ("Call-Direction", row.get("direction", "")),
            ("Channel-Call-UUID", row.get("call_uuid") or row.get("uuid", "")),
            ("Caller-Caller-ID-Number", row.get("cid_num", "")),
            ("Caller-Caller-ID-Name", row.get("cid_name", "")),
            ("Caller-Destination-Number", row.get("dest", "")),
            ("Answer-State", "answered" if row.get("callstate") == "ACTIVE" else ""),
        )
        return self.leg_created(EslEvent(headers))

    def _adopt(
        self,
        created: ev.LegCreated,
        answered: bool,
        bridges: Mapping[str, str],
        rows: Iterable[Mapping[str, str]],
        *,
        listed: Collection[str] = (),
    ) -> _Leg:
        """Track a leg first seen in a resync (its later events must find it), and take the
        rows' pairing for a known leg whose peer is no longer ``listed`` (it was handed to
        another party while the link was down: its talk events are that party's now)."""
        uid = str(created.leg)
        state = self.legs.get(uid)
        if state is None:
            state = _Leg(uid, created.channel, helper=created.origin == "helper")
            self.legs[uid] = state
        state.answered = state.answered or answered
        bridge = bridges.get(uid)
        if state.peer is not None and listed and state.peer not in listed:
            state.peer = None
        if bridge is not None and state.peer is None:
            state.bridge = bridge
            state.peer = next(
                (r["uuid"] for r in rows if bridges.get(r["uuid"]) == bridge and r["uuid"] != uid),
                None,
            )
        return state

    def known_originations(self) -> set[str]:
        """The Job-UUIDs of the originations awaiting their BACKGROUND_JOB (taken before a
        resync)."""
        return set(self.originations)

    def resynced_originations(
        self, alive: Mapping[str, bool], before: Collection[str]
    ) -> list[ev.PbxEvent]:
        """After a resync: ``alive`` maps each listed leg to whether it is answered;
        ``before`` is ``known_originations()`` from before the rows were asked for (what was
        placed after has its events still to come). An origination whose leg is listed
        answered was answered while the link was down, its BACKGROUND_JOB (``+OK``, sent only
        after the answer, 02a) lost with the link: ``answered``. One whose leg was created
        and is no longer listed ended meanwhile and nothing more will come of it: forgotten
        without an outcome (what became of it is not known; the callback service gives it
        up in its own time). One whose leg was never seen waits for its events."""
        out: list[ev.PbxEvent] = []
        for job, origination in list(self.originations.items()):
            if job not in before:
                continue
            if alive.get(origination.leg):
                del self.originations[job]
                self._by_leg.pop(origination.leg, None)
                out.append(
                    ev.OriginateOutcome(
                        origination.request,
                        "answered",
                        LegId(origination.leg),
                        cause_text="listed answered after the ESL link came back "
                        "(its BACKGROUND_JOB was lost with the link)",
                    )
                )
            elif origination.created and origination.leg not in alive:
                del self.originations[job]
                self._by_leg.pop(origination.leg, None)
                if origination.leg not in self.legs:
                    self.origins.pop(origination.leg, None)
                    self.callees.pop(origination.leg, None)
        return out

    def forget_missing(self, alive: Iterable[str]) -> None:
        """After a resync: legs the switch no longer has are gone."""
        keep = set(alive)
        for uid in [u for u in self.legs if u not in keep]:
            self._destroyed(uid)
        for vad_leg in [v for v in self._talks if v not in keep]:
            del self._talks[vad_leg]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)

"""AMI events → PBX-neutral events. No I/O: the adapter feeds it messages, it returns events.

What the traces taught (``tests/traces/asterisk-22/README.md``), and how it is read here:

- A leg is a ``Uniqueid``; the customer's call is its ``Linkedid``. A channel whose Uniqueid
  equals its Linkedid started the call (inbound, or originated); a dialled leg inherits the
  caller's Linkedid (outbound).
- ``Hold``/``Unhold`` are raised on the leg that pressed hold; ``MusicOnHoldStart``/``Stop``
  on the held leg. Both are passed on; the call model decides what a hold is.
- ``ChannelTalkingStop`` arrives ``talk_detect_silence_ms`` after speech really ended; its
  ``Duration`` excludes that wait. The event says how long ago the speech ended.
- ``Hangup.Cause`` is Q.850 (``TechCause``: the SIP status when present).
  ``SoftHangupRequest.Cause`` is an internal bitmask: bit 1 (AST_SOFTHANGUP_DEV, e.g. an RTP
  timeout) before a ``Hangup`` marks the leg's media as dead (trace 08b).
- AMD's verdict is only two ``VarSet`` events (``AMDSTATUS`` then ``AMDCAUSE``, same ms).
- ``OriginateResponse`` with ``Reason: 0`` means busy, declined or failed alike: the
  ``HangupRequest``/``Hangup`` cause of the channel (``Uniqueid`` = our ``ChannelId``) tells
  them apart (17 busy, 21 rejected). The response can come before the ``Hangup``, so a
  Reason-0 failure is reported when the channel's cause is known, or at once when the
  channel never existed (07e) or was already gone.
- Feature codes arrive as ``UserEvent: PbxAgentFeature`` with ``Feature: <name>`` on the
  channel of the agent who pressed them (the sample ``features.conf`` raises them).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId
from pbx_agent.pbx.resync import agents_in_bridges
from pbx_agent.wire.ami import AmiMessage
from pbx_agent.wire.digits import parse_decimal

FEATURE_USEREVENT = "PbxAgentFeature"
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]{8}(;\d)?$")
_LOCAL_SUFFIX = re.compile(r"(-[0-9a-fA-F]+)?;\d$")
_ORIGINATE_REASONS = {"1": "failed", "3": "no_answer", "4": "answered", "5": "busy", "8": "busy"}
_CAUSE_OUTCOMES = {17: "busy", 21: "rejected", 19: "no_answer", 18: "no_answer", 16: "answered"}
SOFTHANGUP_DEV = 0x01


def endpoint_of(channel: str) -> str:
    """``PJSIP/bob-00000020`` → ``PJSIP/bob``; ``Local/x@ctx-0000001a;2`` → ``Local/x@ctx``."""
    if channel.startswith("Local/"):
        return _LOCAL_SUFFIX.sub("", channel)
    return _CHANNEL_SUFFIX.sub("", channel)


def parse_cause(value: str | None) -> int | None:
    """A cause code or a duration as Asterisk prints it (``%d``); ``None`` for anything else,
    so a field holding ``"²"`` reads as unknown rather than raising."""
    return parse_decimal(value)


@dataclass(slots=True)
class _Channel:
    channel: str
    linkedid: str
    softhangup: int = 0
    request_cause: int | None = None
    request_tech: str = ""
    cause: int | None = None  # from Hangup, for originate outcomes


@dataclass(slots=True)
class _Origination:
    request: str
    leg: LegId
    response_reason: str | None = None  # Reason of a failed OriginateResponse, awaiting a cause
    cause: int | None = None  # the channel's HangupRequest/Hangup cause, once seen
    tech_cause: str = ""
    channel_seen: bool = False
    hung_up: bool = False


def agents_from_queue_status(
    legs: Iterable[ev.LiveLeg], items: Iterable[AmiMessage], unseen: Collection[str]
) -> list[ev.AgentConnected]:
    """Who the agents a resync found are, from a ``QueueStatus`` list: an ``AgentConnect``
    the daemon never saw (lost with the link, or before it started) leaves a bridged agent
    named by its endpoint, with no queue, so its tier limit, figures and callbacks' queue
    would be wrong. Each ``unseen`` bridged leg whose endpoint is one queue member's
    ``Location`` / ``StateInterface`` (the one in a call, when it is a member of several
    queues) is that member, connected to the one other party of its bridge that is no
    queue member. Ambiguous cases (two members on one device, two parties) name nobody."""
    members: dict[str, list[tuple[str, str, bool]]] = {}
    for item in items:
        if item.name != "QueueMember" or not item.get("Name"):
            continue  # a member with no name names nobody (its device name stays)
        entry = (item.get("Queue") or "", item.get("Name") or "", item.get("InCall") == "1")
        for key in {item.get("Location") or "", item.get("StateInterface") or ""} - {""}:
            members.setdefault(key, []).append(entry)

    def identify(leg: ev.LiveLeg) -> tuple[str, str] | None:
        found = members.get(leg.created.endpoint)
        if not found:
            return None
        busy = [m for m in found if m[2]] or found
        names = {name for _, name, _ in busy}
        queues = {queue for queue, _, _ in busy}
        if len(names) != 1:
            return None
        return names.pop(), queues.pop() if len(queues) == 1 else ""

    return agents_in_bridges(
        legs, unseen, identify, lambda other: other.created.endpoint in members
    )


@dataclass(slots=True)
class AsteriskTranslator:
    """Stateful translation of one AMI stream. ``feed(message)`` returns neutral events."""

    talk_detect_silence_ms: int = 2500
    watched_variables: frozenset[str] = frozenset()
    pbx: str = "asterisk"
    # Ids (Uniqueid / ChannelId) of channels the daemon created, with their origin.
    origins: dict[str, str] = field(default_factory=dict)
    # Originate ChannelId → request id, for callback attempts awaiting an outcome.
    originations: dict[str, _Origination] = field(default_factory=dict)
    # Callback attempts: the customer's number, by channel id. The leg's own CallerIDNum is
    # the caller ID the daemon presents (or <unknown>, trace 07a), not the customer.
    callees: dict[str, str] = field(default_factory=dict)
    channels: dict[str, _Channel] = field(default_factory=dict)
    _amd_status: dict[str, str] = field(default_factory=dict)

    def expect_origination(
        self, request: str, channel_id: str, origin: str, *, callee: str = ""
    ) -> None:
        """Register a daemon-originated channel before the Originate is sent; ``callee``:
        the number dialled, which is the leg's caller number in the call model."""
        self.origins[channel_id] = origin
        self.originations[channel_id] = _Origination(request, LegId(channel_id))
        if callee:
            self.callees[channel_id] = callee

    def expect_helper(self, *channel_ids: str) -> None:
        for channel_id in channel_ids:
            self.origins[channel_id] = "helper"

    def feed(self, message: AmiMessage) -> list[ev.PbxEvent]:  # noqa: C901, PLR0911, PLR0912
        name = message.name
        uid = message.get("Uniqueid") or ""
        leg = LegId(uid)
        match name:
            case "Newchannel":
                return [self._created(message)]
            case "Newstate":
                if message.get("ChannelState") == "6":
                    return [ev.LegAnswered(leg)]
                return []
            case "BridgeEnter":
                return [ev.LegJoinedBridge(leg, message.get("BridgeUniqueid") or "")]
            case "BridgeLeave":
                return [ev.LegLeftBridge(leg, message.get("BridgeUniqueid") or "")]
            case "Hold":
                return [ev.HoldPressed(leg)]
            case "Unhold":
                return [ev.HoldReleased(leg)]
            case "MusicOnHoldStart":
                return [ev.MusicOnHoldStarted(leg, message.get("Class") or "")]
            case "MusicOnHoldStop":
                return [ev.MusicOnHoldStopped(leg)]
            case "ChannelTalkingStart":
                return [ev.TalkingStarted(leg)]
            case "ChannelTalkingStop":
                duration = parse_cause(message.get("Duration"))
                return [ev.TalkingStopped(leg, self.talk_detect_silence_ms, duration)]
            case "DTMFEnd":
                if (message.get("Direction") or "").lower() != "received":
                    return []
                return [ev.DigitPressed(leg, message.get("Digit") or "")]
            case "UserEvent":
                if message.get("UserEvent") == FEATURE_USEREVENT:
                    return [ev.FeatureRequested(leg, message.get("Feature") or "")]
                return []
            case "VarSet":
                return self._varset(leg, message)
            case "AgentConnect":
                return self._agent_connect(message)
            case "HangupRequest" | "SoftHangupRequest":
                return self._hangup_request(uid, message)
            case "Hangup":
                return self._hangup(uid, message)
            case "OriginateResponse":
                return self._originate_response(message)
        return []

    # -- channels -----------------------------------------------------------------------------

    def _created(self, message: AmiMessage) -> ev.LegCreated:
        uid = message.get("Uniqueid") or ""
        channel = message.get("Channel") or ""
        linkedid = message.get("Linkedid") or uid
        self.channels[uid] = _Channel(channel, linkedid)
        if uid in self.originations:
            self.originations[uid].channel_seen = True
        origin = self.origins.get(uid)
        direction = Direction.INBOUND if linkedid == uid else Direction.OUTBOUND
        if origin is not None:
            direction = Direction.OUTBOUND
        return ev.LegCreated(
            leg=LegId(uid),
            call=CallId(linkedid),
            channel=channel,
            endpoint=endpoint_of(channel),
            caller_number=self.callees.get(uid) or message.get("CallerIDNum") or "",
            caller_name=message.get("CallerIDName") or "",
            dialed=message.get("Exten") or "",
            direction=direction,
            answered=message.get("ChannelState") == "6",
            origin=origin,
        )

    def live_leg(self, item: AmiMessage) -> ev.LiveLeg:
        """A ``CoreShowChannel`` item as a resync entry."""
        created = self._created(item)
        bridge = item.get("BridgeId") or None
        return ev.LiveLeg(created=created, answered=item.get("ChannelState") == "6", bridge=bridge)

    def _varset(self, leg: LegId, message: AmiMessage) -> list[ev.PbxEvent]:
        variable = message.get("Variable") or ""
        value = message.get("Value") or ""
        if variable == "AMDSTATUS":
            self._amd_status[leg] = value
            return []
        if variable == "AMDCAUSE":
            status = self._amd_status.pop(leg, "")
            return [ev.MachineDetected(leg, status.lower() or "notsure", value)]
        if variable in self.watched_variables:
            return [ev.LegVariable(leg, variable, value)]
        return []

    def _agent_connect(self, message: AmiMessage) -> list[ev.PbxEvent]:
        caller = message.get("Uniqueid") or ""
        agent = message.get("DestUniqueid") or ""
        if not caller or not agent:
            return []
        name = message.get("MemberName") or message.get("Interface") or ""
        return [ev.AgentConnected(LegId(caller), LegId(agent), name, message.get("Queue") or "")]

    # -- hang-ups and originations --------------------------------------------------------------

    def _hangup_request(self, uid: str, message: AmiMessage) -> list[ev.PbxEvent]:
        chan = self.channels.get(uid)
        if chan is None:
            return []
        cause = parse_cause(message.get("Cause"))
        if message.name == "SoftHangupRequest":
            chan.softhangup |= cause or 0
            return []
        origination = self.originations.get(uid)
        if origination is not None and cause is not None:
            origination.cause = cause
            origination.tech_cause = message.get("TechCause") or ""
        return self._maybe_failed_origination(uid)

    def _hangup(self, uid: str, message: AmiMessage) -> list[ev.PbxEvent]:
        chan = self.channels.pop(uid, None)
        cause = parse_cause(message.get("Cause"))
        self._amd_status.pop(uid, None)
        out: list[ev.PbxEvent] = []
        origination = self.originations.get(uid)
        if origination is not None:
            origination.hung_up = True
            if origination.cause is None:
                origination.cause = cause
                origination.tech_cause = message.get("TechCause") or ""
            out.extend(self._maybe_failed_origination(uid))
        media_timeout = bool(chan and chan.softhangup & SOFTHANGUP_DEV and cause == 44)
        out.append(
            ev.LegHungUp(
                LegId(uid),
                cause,
                message.get("Cause-txt") or "",
                message.get("TechCause") or "",
                media_timeout=media_timeout,
            )
        )
        if uid not in self.originations:
            self.origins.pop(uid, None)
            self.callees.pop(uid, None)
        return out

    def _originate_response(self, message: AmiMessage) -> list[ev.PbxEvent]:
        uid = message.get("Uniqueid") or ""
        origination = self.originations.get(uid)
        if origination is None:
            return []
        if (message.get("Response") or "").lower() == "success":
            self.originations.pop(uid, None)
            return [ev.OriginateOutcome(origination.request, "answered", LegId(uid))]
        reason = message.get("Reason") or "0"
        if reason in _ORIGINATE_REASONS:
            self.originations.pop(uid, None)
            self._forget_origin_if_gone(origination)
            return [
                ev.OriginateOutcome(
                    origination.request,
                    _ORIGINATE_REASONS[reason],
                    LegId(uid) if origination.channel_seen else None,
                    cause=origination.cause or (19 if reason == "3" else None),
                    cause_text=f"OriginateResponse Reason {reason}",
                    tech_cause=origination.tech_cause,
                )
            ]
        origination.response_reason = reason
        if not origination.channel_seen:
            # 07e: no such endpoint, no channel was ever created: nothing more will come.
            self.originations.pop(uid, None)
            self.origins.pop(uid, None)
            self.callees.pop(uid, None)
            return [
                ev.OriginateOutcome(
                    origination.request,
                    "failed",
                    None,
                    cause_text=f"OriginateResponse Reason {reason}, no channel was created",
                )
            ]
        return self._maybe_failed_origination(uid)

    def _maybe_failed_origination(self, uid: str) -> list[ev.PbxEvent]:
        """A Reason-0 failure is reported once the channel's cause is known (07b, 07c)."""
        origination = self.originations.get(uid)
        if origination is None or origination.response_reason is None:
            return []
        if origination.cause is None and not origination.hung_up:
            return []
        self.originations.pop(uid, None)
        self._forget_origin_if_gone(origination)
        cause = origination.cause
        outcome = _CAUSE_OUTCOMES.get(cause or 0, "failed")
        if outcome == "answered":
            outcome = "failed"
        return [
            ev.OriginateOutcome(
                origination.request,
                outcome,
                LegId(uid),
                cause=cause,
                cause_text=f"Q.850 cause {cause}" if cause is not None else "unknown cause",
                tech_cause=origination.tech_cause,
            )
        ]

    def _forget_origin_if_gone(self, origination: _Origination) -> None:
        if origination.hung_up or not origination.channel_seen:
            self.origins.pop(origination.leg, None)
            self.callees.pop(origination.leg, None)

    def known_ids(self) -> set[str]:
        """Every channel id this translator holds state for (taken before a resync)."""
        return {*self.channels, *self.origins, *self.originations}

    def resynced(self, alive: Mapping[str, bool], before: Collection[str]) -> list[ev.PbxEvent]:
        """After a resync: ``alive`` maps each listed channel id to whether it is Up;
        ``before`` is ``known_ids()`` from before the list was asked for (what came after
        has its events still to come). An origination the list shows Up was answered while
        the link was down, its OriginateResponse lost with the link: ``answered``. One it
        does not list ended meanwhile and nothing more will come of it: forgotten without
        an outcome (what became of it is not known; the caller of the Originate gives it up
        in its own time). Channels the switch no longer lists are forgotten."""
        out: list[ev.PbxEvent] = []
        for uid, origination in list(self.originations.items()):
            if uid not in before:
                continue
            if uid in alive:
                if alive[uid]:
                    del self.originations[uid]
                    out.append(
                        ev.OriginateOutcome(
                            origination.request,
                            "answered",
                            LegId(uid),
                            cause_text="listed Up after the AMI link came back "
                            "(its OriginateResponse was lost with the link)",
                        )
                    )
                continue
            del self.originations[uid]
        for uid in [u for u in before if u not in alive and u not in self.originations]:
            self.channels.pop(uid, None)
            self.origins.pop(uid, None)
            self.callees.pop(uid, None)
            self._amd_status.pop(uid, None)
        return out

    def forget(self, uids: Iterable[str]) -> None:
        for uid in uids:
            self.channels.pop(uid, None)

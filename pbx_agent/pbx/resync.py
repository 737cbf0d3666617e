"""What the events that arrive while a resync's channel list is awaited say (both PBXs).

A switch's channel list (Asterisk ``CoreShowChannels``, FreeSWITCH ``show channels``) is a
snapshot; the events it queued meanwhile come right behind the reply and are applied to the
model at once, so they may be newer than the list: a leg created, answered, bridged,
unbridged or hung up. ``ResyncNotes`` keeps them while the list is awaited so that the
adapter can let them win over it. ``agents_in_bridges`` names the agents among the legs a
resync found bridged, from what the switch's queue says of them (``agents_unidentified``
logs when it cannot). No network, no clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import structlog

from pbx_agent.model import events as ev

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class ResyncNotes:
    active: bool = False
    gone: set[str] = field(default_factory=set)
    created: dict[str, ev.LegCreated] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    bridges: dict[str, str | None] = field(default_factory=dict)  # None: in no bridge

    def begin(self) -> None:
        """The list is being asked for: note from now on, forgetting any earlier resync."""
        self.active = True
        self.gone.clear()
        self.created.clear()
        self.answered.clear()
        self.bridges.clear()

    def end(self) -> None:
        self.active = False

    def note(self, event: ev.PbxEvent) -> None:
        if not self.active:
            return
        match event:
            case ev.LegHungUp():
                self.gone.add(event.leg)
            case ev.LegCreated():
                self.created[event.leg] = event
            case ev.LegAnswered():
                self.answered.add(event.leg)
            case ev.LegJoinedBridge():
                self.bridges[event.leg] = event.bridge or None
            case ev.LegLeftBridge():
                self.bridges[event.leg] = None

    def correct(self, listed: dict[str, ev.LiveLeg]) -> tuple[ev.LiveLeg, ...]:
        """The listed legs (by id) as the noted events leave them: gone ones removed, ones
        created after the snapshot added, answers and bridge changes applied."""
        legs = {uid: live for uid, live in listed.items() if uid not in self.gone}
        for uid, created in self.created.items():
            if uid not in legs and uid not in self.gone:
                legs[uid] = ev.LiveLeg(created=created, answered=created.answered)
        for uid in self.answered:
            if uid in legs and not legs[uid].answered:
                legs[uid] = dataclasses.replace(legs[uid], answered=True)
        for uid, bridge in self.bridges.items():
            if uid in legs:
                legs[uid] = dataclasses.replace(legs[uid], bridge=bridge)
        return tuple(legs.values())


def agents_in_bridges(
    legs: Iterable[ev.LiveLeg],
    unseen: Collection[str],
    identify: Callable[[ev.LiveLeg], tuple[str, str] | None],
    is_agent: Callable[[ev.LiveLeg], bool] | None = None,
) -> list[ev.AgentConnected]:
    """The agents among the bridged legs a resync found whose connection was never seen (it
    was lost with the link, or came before the daemon started): each ``unseen`` bridged leg
    that ``identify`` names (agent name, queue or "") is that agent, connected to the one
    other party of its bridge that is no agent (``is_agent``; by default: one ``identify``
    names). Two such parties, or none, name nobody: the leg stays named by its device."""
    live = list(legs)
    named = {str(leg.created.leg): identify(leg) for leg in live if leg.bridge}
    agent = is_agent or (lambda other: named.get(str(other.created.leg)) is not None)
    by_bridge: dict[str, list[ev.LiveLeg]] = {}
    for leg in live:
        if leg.bridge:
            by_bridge.setdefault(leg.bridge, []).append(leg)
    out: list[ev.AgentConnected] = []
    for leg in live:
        found = named.get(str(leg.created.leg))
        if str(leg.created.leg) not in unseen or not leg.bridge or found is None:
            continue
        parties = [
            other for other in by_bridge[leg.bridge] if other is not leg and not agent(other)
        ]
        if len(parties) == 1:
            out.append(ev.AgentConnected(parties[0].created.leg, leg.created.leg, *found))
    return out


def agents_unidentified(pbx: str, legs: int, reason: str) -> None:
    """The switch's queue could not say who the agents a resync found are (both PBXs): they
    stay named by their device. Never fatal: logged at info."""
    log.info(
        "agents_unidentified",
        pbx=pbx,
        legs=legs,
        reason=reason,
        note="agents found by the resync stay named by their device",
    )

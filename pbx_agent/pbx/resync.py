"""What the events that arrive while a resync's channel list is awaited say (both PBXs).

A switch's channel list (Asterisk ``CoreShowChannels``, FreeSWITCH ``show channels``) is a
snapshot; the events it queued meanwhile come right behind the reply and are applied to the
model at once, so they may be newer than the list: a leg created, answered, bridged,
unbridged or hung up. ``ResyncNotes`` keeps them while the list is awaited so that the
adapter can let them win over it. Pure bookkeeping: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pbx_agent.model import events as ev


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

"""Builders for neutral events, so model and engine tests read like call scripts."""

from __future__ import annotations

from pbx_agent.model import events as ev
from pbx_agent.model.events import CallId, Direction, LegId


def created(
    leg: str,
    call: str,
    *,
    endpoint: str = "PJSIP/alice",
    number: str = "79161234567",
    name: str = "Иван",
    dialed: str = "100",
    direction: Direction = Direction.INBOUND,
    origin: str | None = None,
) -> ev.LegCreated:
    return ev.LegCreated(
        leg=LegId(leg),
        call=CallId(call),
        channel=f"{endpoint}-0000{leg[-2:]}",
        endpoint=endpoint,
        caller_number=number,
        caller_name=name,
        dialed=dialed,
        direction=direction,
        origin=origin,
    )


def bridged_call_events(
    caller: str = "c.1", agent: str = "c.2", call: str = "c.1"
) -> list[ev.PbxEvent]:
    """A caller dials in and an agent leg is dialled and bridged (trace 02b, neutral form)."""
    return [
        created(caller, call),
        created(
            agent,
            call,
            endpoint="PJSIP/agent-1001",
            number="100",
            name="",
            direction=Direction.OUTBOUND,
        ),
        ev.LegAnswered(LegId(agent)),
        ev.LegAnswered(LegId(caller)),
        ev.LegJoinedBridge(LegId(agent), "b1"),
        ev.LegJoinedBridge(LegId(caller), "b1"),
    ]

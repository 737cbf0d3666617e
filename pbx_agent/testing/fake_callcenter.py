"""The fake FreeSWITCH's mod_callcenter tables: agents and tiers, as ``callcenter_config``
lists them.

What is imitated (mod_callcenter.c, 1.10): the ``agents`` and ``tiers`` tables' columns in
their SQLite order; ``callcenter_config agent list`` / ``tier list`` print them through
``list_result_callback`` (a header line of the column names only when there is a row, the
values joined by ``|`` unescaped, then ``+OK``); bridging a member to an agent stores the
agent's channel in ``agents.uuid``, its state ``In a queue call`` and its tier in that queue
``Active Inbound``; the end of the bridge leaves the agent ``Waiting`` and the tier
``Ready``. Members, strategies, offering and wrap-up are not imitated: the fake switch's
scripts bridge agents themselves.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

AGENT_COLUMNS = (
    "name",
    "instance_id",
    "uuid",
    "type",
    "contact",
    "status",
    "state",
    "max_no_answer",
    "wrap_up_time",
    "reject_delay_time",
    "busy_delay_time",
    "no_answer_delay_time",
    "last_bridge_start",
    "last_bridge_end",
    "last_offered_call",
    "last_status_change",
    "no_answer_count",
    "calls_answered",
    "talk_time",
    "ready_time",
    "external_calls_count",
)
TIER_COLUMNS = ("queue", "agent", "state", "level", "position")


@dataclass(slots=True)
class FakeCallcenter:
    agents: dict[str, dict[str, str]] = field(default_factory=dict)
    tiers: list[dict[str, str]] = field(default_factory=list)
    loaded: bool = True  # False: mod_callcenter not loaded (its api command not found)

    def add_agent(self, name: str, contact: str, queues: tuple[str, ...] = ()) -> None:
        """``callcenter_config agent add`` (type callback, Available, Waiting) and one tier
        per queue (Ready, level 1)."""
        row = dict.fromkeys(AGENT_COLUMNS, "0")
        row.update(
            name=name,
            instance_id="single_box",
            uuid="",
            type="callback",
            contact=contact,
            status="Available",
            state="Waiting",
        )
        self.agents[name] = row
        for queue in queues:
            self.tiers.append(
                {"queue": queue, "agent": name, "state": "Ready", "level": "1", "position": "1"}
            )

    def bridged(self, agent: str, queue: str, agent_uuid: str) -> None:
        """The module bridged a member to ``agent`` on channel ``agent_uuid``."""
        row = self.agents.get(agent)
        if row is None:
            return
        row.update(uuid=agent_uuid, state="In a queue call")
        row["calls_answered"] = str(int(row["calls_answered"]) + 1)
        for tier in self.tiers:
            if tier["agent"] == agent and tier["queue"] == queue:
                tier["state"] = "Active Inbound"

    def channel_gone(self, uuid: str) -> None:
        """An agent's channel ended: the agent waits again, its tiers are ready."""
        for name, row in self.agents.items():
            if row["uuid"] == uuid and row["state"] == "In a queue call":
                row["state"] = "Waiting"
                for tier in self.tiers:
                    if tier["agent"] == name and tier["state"] == "Active Inbound":
                        tier["state"] = "Ready"

    def api(self, args: str) -> str:
        """``callcenter_config <args>``: the two lists; anything else ``-ERR Invalid!``."""
        argv = args.lower().split()  # switch_separate_string on spaces
        if argv[:2] == ["agent", "list"]:
            return _listing(AGENT_COLUMNS, self.agents.values())
        if argv[:2] == ["tier", "list"]:
            return _listing(TIER_COLUMNS, self.tiers)
        return "-ERR Invalid!\n"


def _listing(columns: tuple[str, ...], rows: Collection[Mapping[str, str]]) -> str:
    if not rows:
        return "+OK\n"
    lines = ["|".join(columns), *("|".join(row[c] for c in columns) for row in rows)]
    return "".join(f"{line}\n" for line in lines) + "+OK\n"

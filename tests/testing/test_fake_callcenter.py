"""The fake mod_callcenter's tables and their ``callcenter_config`` lists."""

from __future__ import annotations

from pbx_agent.testing.fake_callcenter import AGENT_COLUMNS, FakeCallcenter
from pbx_agent.wire.callcenter import parse_list


def test_an_empty_table_lists_only_ok() -> None:
    """No agent, no tier: no header line, only +OK (list_result_callback never runs)."""
    cc = FakeCallcenter()
    assert cc.api("agent list") == "+OK\n"
    assert cc.api("tier list") == "+OK\n"


def test_a_bridge_is_in_the_agent_and_tier_lists_until_the_channel_ends() -> None:
    """Bridging stores the agent's channel, In a queue call, its tier Active Inbound; the
    channel's end leaves it Waiting and Ready."""
    cc = FakeCallcenter()
    cc.add_agent("1001@default", "user/1001|user/1001-mobile", ("support@default",))
    cc.bridged("1001@default", "support@default", "a1")
    [agent] = parse_list(cc.api("agent list"), loose="contact").rows
    assert tuple(agent) == AGENT_COLUMNS
    assert (agent["uuid"], agent["state"], agent["contact"]) == (
        "a1",
        "In a queue call",
        "user/1001|user/1001-mobile",
    )
    assert [t["state"] for t in parse_list(cc.api("tier list")).rows] == ["Active Inbound"]
    cc.channel_gone("a1")
    [agent] = parse_list(cc.api("agent list"), loose="contact").rows
    assert agent["state"] == "Waiting"
    assert [t["state"] for t in parse_list(cc.api("tier list")).rows] == ["Ready"]


def test_other_subcommands_are_invalid() -> None:
    """What the fake does not imitate is refused as the module refuses a bad one."""
    assert FakeCallcenter().api("queue list members support@default") == "-ERR Invalid!\n"

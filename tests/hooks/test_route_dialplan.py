"""The sample inbound dialplan agrees with the route hook it calls."""

from __future__ import annotations

import re
from pathlib import Path

from pbx_agent.config.settings import AsteriskContexts
from pbx_agent.hooks.route import (
    HOOK_NAME,
    NOTICE_VARIABLE,
    ROUTE_VARIABLE,
    TARGET_VARIABLE,
)
from pbx_agent.policies.night_routing import Route

SAMPLE = Path(__file__).resolve().parents[2] / "dialplan" / "asterisk" / "pbx-agent-inbound.conf"


def priorities() -> list[str]:
    """The dialplan lines (exten/same), comments dropped."""
    lines = [line.split(";", 1)[0].strip() for line in SAMPLE.read_text().splitlines()]
    return [line for line in lines if line.startswith(("exten =>", "same =>"))]


def test_the_inbound_context_calls_the_route_hook() -> None:
    """AGI(agi://127.0.0.1:4573/route...) comes before any Queue()."""
    lines = priorities()
    agi = next(i for i, line in enumerate(lines) if f"4573/{HOOK_NAME}?" in line)
    first_queue = next(i for i, line in enumerate(lines) if "Queue(" in line)
    assert agi < first_queue


def test_the_dialplan_branches_on_every_route_but_agent() -> None:
    """ivr and flagged have their branch; agent (and anything else) falls to the queue."""
    text = "\n".join(priorities())
    for route in (Route.IVR, Route.FLAGGED):
        assert f'"${{{ROUTE_VARIABLE}}}" = "{route}"' in text
    assert f'"${{{ROUTE_VARIABLE}}}" = "{Route.AGENT}"' not in text


def test_a_failed_agi_goes_to_the_normal_queue() -> None:
    """AGISTATUS other than SUCCESS jumps to the agent label, which is the normal Queue()."""
    lines = priorities()
    assert any('"${AGISTATUS}" != "SUCCESS"]?agent' in line for line in lines)
    assert any(re.search(r"n\(agent\),Queue\(support", line) for line in lines)


def test_the_ivr_branch_plays_the_notice_then_goes_to_the_target() -> None:
    """Playback(${PBXAGENT_NOTICE}) before Goto(${PBXAGENT_ROUTE_TARGET},s,1)."""
    lines = priorities()
    notice = next(i for i, line in enumerate(lines) if f"Playback(${{{NOTICE_VARIABLE}}})" in line)
    goto = next(i for i, line in enumerate(lines) if f"Goto(${{{TARGET_VARIABLE}}},s,1)" in line)
    assert notice < goto


def test_the_default_ivr_context_is_defined() -> None:
    """[asterisk.contexts] ivr's default context exists in the sample."""
    assert f"[{AsteriskContexts().ivr}]" in SAMPLE.read_text()

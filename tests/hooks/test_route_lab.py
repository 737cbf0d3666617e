"""The lab scenarios of R5 and R9 pass with the daemon built by the composition root and
the route hook registered."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from pbx_agent import daemon
from pbx_agent.hooks.route import route_hook_factory
from pbx_agent.lab import timelapse
from pbx_agent.lab.runner import run_lab
from pbx_agent.lab.scenarios import night_routing

pytestmark = pytest.mark.slow


def test_night_routing_lab_scenarios_pass() -> None:
    """Night repeat caller to the IVR, by day to an agent, flagged queue, store down."""
    assert route_hook_factory in daemon.HOOK_FACTORIES
    with capture_logs() as events:
        results = timelapse.run(
            run_lab(night_routing.SCENARIOS, base_config={}, events=events), speed=10
        )
    failed = {r.scenario.name: r.problems for r in results if not r.passed}
    assert failed == {}
    assert len(results) == 4
    decisions = [e for e in events if e.get("event") == "route_decision"]
    assert [e["route"] for e in decisions] == ["ivr", "agent", "flagged", "agent"]

"""The lab scenarios of R2, R3 and R4 pass with the daemon built by the composition root."""

from __future__ import annotations

from typing import Any

import pytest

from pbx_agent import daemon
from pbx_agent.hooks.entry import entry_hook_factory
from pbx_agent.lab import timelapse
from pbx_agent.lab.runner import run_lab
from pbx_agent.lab.scenarios import lingering, scripts, silent_caller
from pbx_agent.policies.lingering import lingering_policy_factory
from pbx_agent.policies.scripts import scripts_policy_factory
from pbx_agent.policies.silent_caller import silent_caller_policy_factory

pytestmark = pytest.mark.slow


def test_r2_r3_r4_lab_scenarios_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Silent caller dropped / speaks / noise; linger drop / requeue; abuse x3 - all pass."""
    monkeypatch.setattr(
        daemon,
        "POLICY_FACTORIES",
        [silent_caller_policy_factory, lingering_policy_factory, scripts_policy_factory],
    )
    monkeypatch.setattr(daemon, "HOOK_FACTORIES", [entry_hook_factory])
    scenarios = [
        s
        for s in (*silent_caller.SCENARIOS, *lingering.SCENARIOS, *scripts.SCENARIOS)
        if "asterisk" in s.pbx
    ]
    events: list[dict[str, Any]] = []
    results = timelapse.run(run_lab(scenarios, base_config={}, events=events), speed=10)
    failed = {r.scenario.name: r.problems for r in results if not r.passed}
    assert failed == {}
    assert len(results) == 6

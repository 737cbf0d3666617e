"""The R1 lab scenarios pass with the daemon built by the composition root, the hold and
dead-air policies and the hold_program hook wired in."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from pbx_agent import daemon
from pbx_agent.lab import timelapse
from pbx_agent.lab.runner import run_lab
from pbx_agent.lab.scenarios import hold
from pbx_agent.pbx.asterisk_hold import hold_program_hook_factory
from pbx_agent.policies.dead_air import dead_air_policy_factory
from pbx_agent.policies.hold import hold_policy_factory

pytestmark = pytest.mark.slow


def test_r1_lab_scenarios_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short hold, long hold, over-limit hold with the callback taken, hang-up on hold, dead air."""
    monkeypatch.setattr(daemon, "POLICY_FACTORIES", [hold_policy_factory, dead_air_policy_factory])
    monkeypatch.setattr(daemon, "HOOK_FACTORIES", [hold_program_hook_factory])
    with capture_logs() as events:
        results = timelapse.run(run_lab(hold.SCENARIOS, base_config={}, events=events), speed=10)
    failed = {r.scenario.name: r.problems for r in results if not r.passed}
    assert failed == {}
    assert len(results) == len(hold.SCENARIOS) == 5
    # The lab gives the daemon the music the fake plays, as a site must (docs/hold.md): the
    # announcements are planned on its real length, never corrected mid-hold.
    music = [e for e in events if str(e["event"]).startswith("hold_music_")]
    assert music == []

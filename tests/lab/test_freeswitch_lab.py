"""Every lab scenario passes on the fake FreeSWITCH, with the daemon built by the composition
root exactly as ``pbx-agent lab --pbx freeswitch`` builds it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from pbx_agent import daemon
from pbx_agent.hooks.route import route_hook_factory
from pbx_agent.lab import timelapse
from pbx_agent.lab.runner import run_lab
from pbx_agent.lab.scenario import Scenario
from pbx_agent.lab.scenarios import all_scenarios

pytestmark = pytest.mark.slow


def _run(scenarios: list[Scenario], monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    # The night-routing scenarios need the route hook among the served hooks.
    assert route_hook_factory in daemon.HOOK_FACTORIES
    with capture_logs() as events:
        results = timelapse.run(
            run_lab(scenarios, base_config={}, events=events, switch="freeswitch"), speed=20
        )
    assert len(results) == len(scenarios)
    return {r.scenario.name: r.problems for r in results if not r.passed}


# A click shorter than the detector's 0.8 s period cannot be measured on FreeSWITCH.
ASTERISK_ONLY = {"silent_caller_noise_burst"}
FREESWITCH_ONLY = {"silent_caller_click_is_speech_on_freeswitch"}


def test_every_scenario_but_the_click_is_offered_on_freeswitch() -> None:
    """Every standard's scripts run on both switches; the 100 ms click has a FreeSWITCH
    variant that checks the documented difference (a click is taken as speech there)."""
    assert {s.name for s in all_scenarios() if "freeswitch" not in s.pbx} == ASTERISK_ONLY
    assert {s.name for s in all_scenarios() if "asterisk" not in s.pbx} == FREESWITCH_ONLY


def test_the_in_call_scenarios_pass_on_the_fake_freeswitch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Foundation, R1 (hold, dead air), R2, R3, R4, R5 and R9 on FreeSWITCH."""
    scenarios = [s for s in all_scenarios() if "freeswitch" in s.pbx and s.rule not in ("R6", "R7")]
    assert _run(scenarios, monkeypatch) == {}


def test_the_callback_scenarios_pass_on_the_fake_freeswitch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """R6 and R7: callbacks, machine detection from talk events and avmd, on FreeSWITCH."""
    scenarios = [s for s in all_scenarios() if "freeswitch" in s.pbx and s.rule in ("R6", "R7")]
    assert _run(scenarios, monkeypatch) == {}

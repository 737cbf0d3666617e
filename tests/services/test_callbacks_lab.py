"""The R6/R7 lab scenarios pass with the daemon built by the composition root, and the fake
switch runs the callback context exactly as the shipped dialplan writes it."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from pbx_agent import daemon
from pbx_agent.config.settings import AsteriskContexts
from pbx_agent.lab import timelapse
from pbx_agent.lab.runner import run_lab
from pbx_agent.lab.scenarios import callbacks
from pbx_agent.policies.callbacks import callbacks_policy_factory
from tests.deploy.shipped_dialplan import shipped_steps


def test_the_lab_runs_the_shipped_callback_context() -> None:
    """The fake's callback steps are the sample dialplan's, step for step."""
    shipped = shipped_steps("pbx-agent-callback.conf", AsteriskContexts().callback)
    assert shipped == callbacks.CALLBACK_CONTEXT
    assert AsteriskContexts().callback == callbacks.CALLBACK_CONTEXT_NAME


def test_a_machine_is_hung_up_before_the_queue() -> None:
    """The machine branch comes before Queue(), and nothing hangs up a person before it."""
    apps = [f"{app}({data})" for app, data in callbacks.CALLBACK_CONTEXT]
    machine = next(i for i, step in enumerate(apps) if '"${PBXAGENT_AMD}" = "MACHINE"' in step)
    queue = next(i for i, step in enumerate(apps) if step.startswith("Queue("))
    assert machine < queue
    assert "Hangup(16)" in apps[machine]
    assert not any(step.startswith("Hangup") for step in apps[:queue])


def test_the_daemon_is_reached_through_tryexec() -> None:
    """AudioSocket() runs inside TryExec, so an unreachable daemon never hangs up the call."""
    steps = [data for app, data in callbacks.CALLBACK_CONTEXT if "AudioSocket(" in data]
    assert len(steps) == 1
    assert "?TryExec(AudioSocket(" in steps[0]


@pytest.mark.slow
def test_callback_lab_scenarios_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop then human, no answer x3, machine, noisy human, AMD(), cancelled, quiet hours."""
    monkeypatch.setattr(daemon, "POLICY_FACTORIES", [callbacks_policy_factory])
    monkeypatch.setattr(daemon, "HOOK_FACTORIES", [])
    with capture_logs() as events:
        results = timelapse.run(
            run_lab(callbacks.SCENARIOS, base_config={}, events=events), speed=20
        )
    failed = {r.scenario.name: r.problems for r in results if not r.passed}
    assert failed == {}
    assert len(results) == 7

"""`pbx-agent lab` as the README's first command runs it: a real process, the foundation's
scenarios, one JSON log line per decision and the summary table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

from tests.lab.interrupt import interrupt_when

ENTRY = "import sys; from pbx_agent.cli import main; sys.exit(main(sys.argv[1:]))"
FOUNDATION = ("link_cut_mid_call", "malformed_frame")
# As ENTRY, with Ctrl-C's KeyboardInterrupt restored: a shell's background job (and so a test
# run from one) starts with SIGINT ignored, and Python keeps an ignored SIGINT ignored.
ENTRY_WITH_CTRL_C = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from pbx_agent.cli import main; sys.exit(main(sys.argv[1:]))"
)


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PBX_AGENT_")}
    return subprocess.run(
        [sys.executable, "-c", ENTRY, "lab", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_the_foundation_scenarios_pass_with_one_log_line_per_decision() -> None:
    """Link cut mid-call and a malformed frame: PASS, and the decisions column of the table
    counts exactly the decision lines of the JSON log."""
    run = lab("--log-format", "json", *(a for name in FOUNDATION for a in ("--scenario", name)))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    decisions = 0
    for line in run.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        decisions += event.get("event") == "decision"
    rows = {
        m.group(1): (m.group(2), int(m.group(3)))
        for m in re.finditer(
            r"^(\w+)\s+foundation\s+(PASS|FAIL)\s+(\d+)\s", run.stdout, re.MULTILINE
        )
    }
    assert set(rows) == set(FOUNDATION)
    assert all(result == "PASS" for result, _ in rows.values())
    assert decisions == sum(count for _, count in rows.values()) > 0
    assert "2/2 scenarios passed" in run.stdout


def test_an_unknown_scenario_is_refused_by_name() -> None:
    """A typo in --scenario: exit 2, the name in the message, nothing run."""
    run = lab("--scenario", "hold_shrot")
    assert run.returncode == 2
    assert "hold_shrot" in run.stderr
    assert "scenarios passed" not in run.stdout


@pytest.mark.parametrize("speed", ["0", "-1", "nan", "inf", "fast"])
def test_a_speed_that_is_not_a_positive_finite_number_is_refused(speed: str) -> None:
    """``--speed 0``: a usage error naming --speed and what it accepts (exit 2), not a
    ValueError traceback from the event loop, and nothing run."""
    run = lab("--speed", speed, "--scenario", "hold_short")
    assert run.returncode == 2, run.stderr
    assert "argument --speed" in run.stderr
    assert "positive finite number" in run.stderr
    assert repr(speed) in run.stderr
    assert "Traceback" not in run.stderr
    assert "never awaited" not in run.stderr
    assert "scenarios passed" not in run.stdout


def test_ctrl_c_stops_the_lab_cleanly() -> None:
    """SIGINT mid-scenario: exit 130 at once, one "interrupted" line on stderr and no
    traceback; the daemon's shutdown runs to ``daemon_stopped`` with no failed step."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PBX_AGENT_")}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY_WITH_CTRL_C, "lab", "--log-format", "json"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
        # The first decision: a scenario is under way.
        lines, out, _ = interrupt_when(proc, lambda line: '"event": "decision"' in line, 60)
        err.seek(0)
        stderr = err.read()
    log = "".join(lines) + out
    assert proc.returncode == 130, stderr[-3000:]
    assert [line for line in stderr.splitlines() if not line.startswith("{")] == [
        "pbx-agent lab: interrupted"
    ]
    assert "Traceback" not in stderr
    assert '"event": "shutdown_step_failed"' not in log
    assert '"event": "fastagi_session_crashed"' not in log
    assert '"event": "daemon_stopped"' in log
    assert "scenarios passed" not in log

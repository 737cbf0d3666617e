"""`pbx-agent lab` as the README's first command runs it: a real process, the foundation's
scenarios, one JSON log line per decision and the summary table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

ENTRY = "import sys; from pbx_agent.cli import main; sys.exit(main(sys.argv[1:]))"
FOUNDATION = ("link_cut_mid_call", "malformed_frame")


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

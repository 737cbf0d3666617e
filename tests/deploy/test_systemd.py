"""The systemd unit: it runs the daemon, reloads with SIGHUP, and does not restart in a loop
on the exit statuses that restarting cannot cure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pbx_agent import cli

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "pbx-agent.service"


def unit() -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current[key] = value
    return sections


def test_the_unit_runs_the_daemon_with_its_configuration() -> None:
    """ExecStart is `pbx-agent run --config` as the unprivileged pbx-agent user."""
    service = unit()["Service"]
    assert service["ExecStart"].endswith("pbx-agent run --config /etc/pbx-agent/pbx-agent.toml")
    assert service["User"] == "pbx-agent"
    assert service["EnvironmentFile"].endswith("/etc/pbx-agent/pbx-agent.env")
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_reload_sends_sighup_and_stop_sends_sigterm() -> None:
    """systemctl reload -> SIGHUP (Daemon.reload); stop -> SIGTERM (Daemon.stop)."""
    service = unit()["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"


def test_a_bad_configuration_stops_the_restart_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` exits 2 on configuration problems, and the unit does not restart on 2 (or 3,
    the PBX refusing the credentials)."""
    for name in [n for n in os.environ if n.upper().startswith("PBX_AGENT_")]:
        monkeypatch.delenv(name)
    bad = tmp_path / "bad.toml"
    bad.write_text("[standards.hold]\nreminder_interval_s = -1\n", encoding="utf-8")
    assert cli.main(["run", "--config", str(bad)]) == 2
    assert set(unit()["Service"]["RestartPreventExitStatus"].split()) == {"2", "3"}
    assert unit()["Service"]["Restart"] == "on-failure"


def test_the_environment_sample_sets_only_configuration_overrides() -> None:
    """Every variable the env sample sets (or shows) is a PBX_AGENT_<SECTION>__<KEY> the
    configuration accepts."""
    from pbx_agent.config import load_config  # noqa: PLC0415

    sample = UNIT.parent / "pbx-agent.env.sample"
    names = {}
    for raw in sample.read_text(encoding="utf-8").splitlines():
        line = raw.lstrip("# ").strip()
        if line.startswith("PBX_AGENT_") and "=" in line:
            name, _, value = line.partition("=")
            names[name] = value
    assert "PBX_AGENT_ASTERISK__SECRET" in names
    load_config(None, env={**names, "PBX_AGENT_PBX__KIND": "asterisk"})

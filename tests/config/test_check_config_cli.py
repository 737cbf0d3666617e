"""``pbx-agent check-config FILE``: exit codes and output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pbx_agent import cli

SAMPLES = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(autouse=True)
def only_this_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the real parser with this command alone, and no PBX_AGENT_* from the test runner."""
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ("check_config",))
    for name in [n for n in os.environ if n.upper().startswith("PBX_AGENT_")]:
        monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_config_is_a_registered_command() -> None:
    """The command is part of the CLI's command list."""
    assert "check_config" in cli._COMMAND_MODULES


def test_valid_file_exits_0_with_a_one_line_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid file: exit 0 and one line naming the profile, PBX and queues; then a note
    that the prompt files could not be checked, as their folder is not on this host."""
    path = write(
        tmp_path,
        f'[site]\nprofile = "zh"\n[prompts]\nsounds_dir = "{tmp_path / "sounds"}"\n'
        "[queues.vip.hold]\nreminder_interval_s = 15\n",
    )
    assert cli.main(["check-config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith(f"note: prompt files not checked: {tmp_path / 'sounds' / 'zh'}")
    assert "profile zh" in lines[0]
    assert "pbx simulated" in lines[0]
    assert "queue overrides: vip" in lines[0]


def test_invalid_file_exits_1_listing_each_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each problem is printed as 'key: message (got: value; accepted: ...)'."""
    path = write(
        tmp_path,
        "[standards.callbacks]\nring_time_s = 30\n[standards.hold]\nreminder_intervl_s = 1\n",
    )
    assert cli.main(["check-config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "2 problems" in out
    assert (
        "standards.callbacks.ring_time_s: too small: out of range (got: 30; accepted: > 30)" in out
    )
    assert (
        "standards.hold.reminder_intervl_s: unknown key 'reminder_intervl_s'; did you mean" in out
    )


def test_environment_overrides_are_checked_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad PBX_AGENT_* variable fails the check, named by the variable."""
    monkeypatch.setenv("PBX_AGENT_LOGGING__LEVEL", "LOUD")
    assert cli.main(["check-config", str(write(tmp_path, ""))]) == 1
    assert "PBX_AGENT_LOGGING__LEVEL: not an accepted value" in capsys.readouterr().out


def test_secrets_are_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither a valid nor a misplaced secret appears in the output."""
    monkeypatch.setenv("PBX_AGENT_ASTERISK__SECRET", "hunter2-env")
    path = write(tmp_path, '[asterisk]\nami_port = 0\n[freeswitch]\npasword = "hunter2-file"\n')
    assert cli.main(["check-config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "freeswitch.pasword" in out
    assert "hunter2" not in out


@pytest.mark.parametrize("sample", ["pbx-agent.toml", "pbx-agent.zh.toml"])
def test_sample_files_pass_check_config(sample: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped samples are valid."""
    assert cli.main(["check-config", str(SAMPLES / sample)]) == 0, capsys.readouterr().out

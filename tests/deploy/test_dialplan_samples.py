"""The dialplan samples against the configuration (check-config --dialplan), and the
manager.conf sample against what the daemon sends and reads."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from pbx_agent import cli
from pbx_agent.config import Config, load_config
from pbx_agent.dialplan_check import check_dialplan
from pbx_agent.lab.scenarios.silent_caller import SCRIPT_CONTEXTS, SHIPPED_AS_IS
from pbx_agent.pbx.ami_permissions import NEEDED_WRITE_CLASSES, READ_CLASSES, WRITE_CLASSES
from tests.deploy.shipped_dialplan import shipped_steps

ROOT = Path(__file__).resolve().parents[2]
DIALPLAN = ROOT / "dialplan"
TRACES = ROOT / "tests" / "traces" / "asterisk-22"


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("PBX_AGENT_")]:
        monkeypatch.delenv(name)


def sample_config() -> Config:
    return load_config(ROOT / "config" / "pbx-agent.toml")


def copy_of_samples(tmp_path: Path) -> Path:
    folder = tmp_path / "asterisk"
    shutil.copytree(DIALPLAN / "asterisk", folder)
    return folder


def test_the_sample_config_passes_against_the_sample_dialplan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """check-config config/pbx-agent.toml --dialplan dialplan: OK, dialplan checked."""
    status = cli.main(
        ["check-config", str(ROOT / "config" / "pbx-agent.toml"), "--dialplan", str(DIALPLAN)]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "dialplan checked" in out


def test_a_context_the_daemon_uses_but_no_file_defines_is_reported(tmp_path: Path) -> None:
    """Without pbx-agent-callback.conf, asterisk.contexts.callback has nowhere to go."""
    folder = copy_of_samples(tmp_path)
    (folder / "pbx-agent-callback.conf").unlink()
    problems = check_dialplan(sample_config(), folder)
    assert [p.key for p in problems] == ["asterisk.contexts.callback"]
    assert problems[0].value == "pbxagent-callback"


def test_an_agi_hook_the_daemon_does_not_serve_is_reported(tmp_path: Path) -> None:
    """AGI(agi://.../rout) (a typo) names its file and line and lists the served hooks."""
    folder = copy_of_samples(tmp_path)
    inbound = folder / "pbx-agent-inbound.conf"
    inbound.write_text(inbound.read_text().replace("4573/route?", "4573/rout?"))
    problems = check_dialplan(sample_config(), folder)
    assert len(problems) == 1
    assert problems[0].key.startswith(f"{inbound}:")
    assert problems[0].value == "rout"
    assert "route" in problems[0].accepted


def test_an_agi_address_other_than_the_fastagi_bind_is_reported(tmp_path: Path) -> None:
    """A dialplan calling port 4574 while the daemon listens on 4573."""
    folder = copy_of_samples(tmp_path)
    scripts = folder / "pbx-agent-scripts.conf"
    scripts.write_text(scripts.read_text().replace("127.0.0.1:4573/entry", "127.0.0.1:4574/entry"))
    problems = check_dialplan(sample_config(), folder)
    assert [(p.value, "asterisk.fastagi_bind" in p.accepted) for p in problems] == [
        ("127.0.0.1:4574", True)
    ]


def test_a_feature_code_agents_cannot_press_is_reported(tmp_path: Path) -> None:
    """A feature of standards.feature_codes with no [applicationmap] entry."""
    folder = copy_of_samples(tmp_path)
    features = folder / "pbx-agent-features.conf"
    text = features.read_text()
    features.write_text(re.sub(r"^pbxagent_prank +=>.*$", "", text, flags=re.MULTILINE))
    problems = check_dialplan(sample_config(), folder)
    assert [p.key for p in problems] == ["standards.feature_codes.pbxagent_prank"]


def test_the_freeswitch_samples_match_a_freeswitch_configuration() -> None:
    """Hooks, socket address and the IVR extension of dialplan/freeswitch."""
    config = load_config(
        None, env={"PBX_AGENT_PBX__KIND": "freeswitch", "PBX_AGENT_FREESWITCH__PASSWORD": "x"}
    )
    assert check_dialplan(config, DIALPLAN) == []


def freeswitch_on_port_8085() -> Config:
    """A FreeSWITCH configuration whose outbound server is not where the samples point."""
    return load_config(
        None,
        env={
            "PBX_AGENT_PBX__KIND": "freeswitch",
            "PBX_AGENT_FREESWITCH__PASSWORD": "x",
            "PBX_AGENT_FREESWITCH__OUTBOUND_BIND": "127.0.0.1:8085",
        },
    )


def test_a_freeswitch_socket_to_another_port_is_reported(tmp_path: Path) -> None:
    """The outbound socket must be where the daemon's outbound server listens."""
    shutil.copytree(DIALPLAN / "freeswitch", tmp_path / "freeswitch")
    config = freeswitch_on_port_8085()
    sockets = [p for p in check_dialplan(config, tmp_path) if "outbound_bind" in p.accepted]
    assert {p.value for p in sockets} == {"127.0.0.1:8084"}
    # Each socket action is named by its line, as the Asterisk checks name theirs.
    for problem in sockets:
        file, _, line = problem.key.rpartition(":")
        assert file.endswith("pbx-agent.xml")
        text = Path(file).read_text(encoding="utf-8").splitlines()[int(line) - 1]
        assert 'application="socket"' in text
    assert len({p.key for p in sockets}) == len(sockets) > 1


def manager_user() -> dict[str, str]:
    text = (DIALPLAN / "asterisk" / "manager.conf.sample").read_text(encoding="utf-8")
    section = text.split("[pbx-agent]", 1)[1]
    return {
        k.strip(): v.split(";")[0].strip()
        for k, _, v in (line.partition("=") for line in section.splitlines() if "=" in line)
    }


def test_the_manager_sample_grants_exactly_the_classes_the_daemon_needs() -> None:
    """write = the least classes covering every action; read = the classes of its events."""
    user = manager_user()
    assert set(user["write"].split(",")) == set(NEEDED_WRITE_CLASSES)
    assert set(user["read"].split(",")) == set(READ_CLASSES)
    for action, classes in WRITE_CLASSES.items():
        if action in ("Getvar", "Status"):
            continue  # not sent by the daemon
        assert set(classes) & set(NEEDED_WRITE_CLASSES), action


def test_the_read_classes_agree_with_the_privileges_seen_on_a_real_asterisk() -> None:
    """Each event the daemon relies on carried, on Asterisk 22, the class listed for it."""
    seen: dict[str, str] = {}
    for trace in TRACES.glob("*.recv.txt"):
        event = ""
        for raw in trace.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.rstrip("\r")
            if line.startswith("Event: "):
                event = line[7:]
            elif line.startswith("Privilege: ") and event:
                seen[event] = line[11:].split(",")[0]
    checked = 0
    for cls, events in READ_CLASSES.items():
        for event in events:
            if event in seen:
                assert seen[event] == cls, (event, seen[event], cls)
                checked += 1
    assert checked >= 10


def test_the_manager_sample_stamps_events_for_the_lag_metric() -> None:
    """timestampevents = yes: the daemon measures event lag from the switch's stamp."""
    text = (DIALPLAN / "asterisk" / "manager.conf.sample").read_text(encoding="utf-8")
    assert re.search(r"^timestampevents = yes$", text, re.MULTILINE)
    assert manager_user()["permit"].startswith("127.0.0.1/")


def test_an_extension_the_daemon_transfers_freeswitch_legs_to_must_exist(tmp_path: Path) -> None:
    """A FreeSWITCH dialplan without the lingering extension is reported by its key."""
    (tmp_path / "freeswitch").mkdir()
    (tmp_path / "freeswitch" / "only.xml").write_text(
        "<include>"
        + "".join(
            f'<extension name="{name}"><condition/></extension>'
            for name in (
                "pbxagent_ivr",
                "pbxagent_requeue",
                "pbxagent_callback",
                "pbxagent_callback_audio",
                "pbxagent_callback_connect",
            )
        )
        + "</include>",
        encoding="utf-8",
    )
    config = load_config(
        None, env={"PBX_AGENT_PBX__KIND": "freeswitch", "PBX_AGENT_FREESWITCH__PASSWORD": "x"}
    )
    problems = check_dialplan(config, tmp_path)
    assert [(p.key, p.value) for p in problems] == [
        ("freeswitch.linger_extension", "pbxagent_linger")
    ]


def test_the_lab_runs_the_shipped_whisper_and_linger_contexts() -> None:
    """The fake's whisper, barge and linger steps are the sample files', step for step."""
    for file, context, exten in SHIPPED_AS_IS:
        assert shipped_steps(file, context, exten) == SCRIPT_CONTEXTS[(context, exten)], context


def test_a_lingering_caller_is_sent_audio_a_whisper_can_be_mixed_into() -> None:
    """pbxagent-linger plays silence as a file (no Wait()): before Asterisk 22.11 a whisper
    reaches only a channel that is being sent audio."""
    steps = shipped_steps("pbx-agent-scripts.conf", "pbxagent-linger")
    applications = [application for application, _ in steps]
    assert "Wait" not in applications
    [files] = [data for application, data in steps if application == "Playback"]
    assert set(files.split("&")) == {"silence/10"}
    assert len(files.split("&")) * 10 >= 120  # as long as the Wait(120) it replaced


@pytest.mark.parametrize(("amd_audio", "missing"), [("unicast", True), ("talk_events", False)])
def test_the_audio_callback_extension_is_required_only_when_unicast_is_used(
    tmp_path: Path, amd_audio: str, missing: bool
) -> None:
    (tmp_path / "freeswitch").mkdir()
    names = ("pbxagent_ivr", "pbxagent_linger", "pbxagent_requeue", "pbxagent_callback",
             "pbxagent_callback_connect")  # fmt: skip
    (tmp_path / "freeswitch" / "only.xml").write_text(
        "<include>"
        + "".join(f'<extension name="{n}"><condition/></extension>' for n in names)
        + "</include>",
        encoding="utf-8",
    )
    config = load_config(
        None,
        env={
            "PBX_AGENT_PBX__KIND": "freeswitch",
            "PBX_AGENT_FREESWITCH__PASSWORD": "x",
            "PBX_AGENT_FREESWITCH__AMD_AUDIO": amd_audio,
        },
    )
    keys = [(p.key, p.value) for p in check_dialplan(config, tmp_path)]
    expected = [("freeswitch.callback_audio_extension", "pbxagent_callback_audio")]
    assert keys == (expected if missing else [])


def test_a_freeswitch_file_that_is_not_xml_is_named_and_the_rest_checked(
    tmp_path: Path,
) -> None:
    """A truncated XML file beside the shipped ones: one problem naming it and the parser's
    reason, no traceback; the other files' sockets are still checked, by file:line."""
    shutil.copytree(DIALPLAN / "freeswitch", tmp_path / "freeswitch")
    (tmp_path / "freeswitch" / "broken.xml").write_text(
        '<include>\n  <extension name="x">\n    <condition', encoding="utf-8"
    )
    config = freeswitch_on_port_8085()
    found = check_dialplan(config, tmp_path)
    [broken] = [p for p in found if p.key.endswith("broken.xml")]
    assert broken.value == "(not XML)"
    assert broken.message
    sockets = [p for p in found if "outbound_bind" in p.accepted]
    assert sockets
    assert all(p.key.rpartition(":")[2].isdigit() for p in sockets)

"""The shipped FreeSWITCH dialplan (dialplan/freeswitch) agrees with the daemon's defaults
and with what the lab's FreeSWITCH imitates."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from pbx_agent.config import load_config
from pbx_agent.config.settings import FreeswitchSettings
from pbx_agent.lab.freeswitch_driver import LISTENER_DIAL
from pbx_agent.pbx.freeswitch_events import FEATURE_HEADER, HELPER_VARIABLE
from pbx_agent.testing.fake_freeswitch import parse_dial_string

FOLDER = Path(__file__).resolve().parents[2] / "dialplan" / "freeswitch"
STANDARDS = FOLDER / "pbx-agent-standards.xml"


def _extensions(path: Path) -> dict[str, list[tuple[str, str]]]:
    root = ET.parse(path).getroot()
    return {
        ext.get("name", ""): [
            (a.get("application", ""), a.get("data", "")) for a in ext.iter("action")
        ]
        for ext in root.iter("extension")
    }


def test_every_extension_the_daemon_transfers_to_is_shipped() -> None:
    """linger, requeue, callback and callback_connect exist with their default names."""
    settings = FreeswitchSettings()
    names = set(_extensions(STANDARDS))
    assert {
        settings.linger_extension,
        settings.requeue_extension,
        settings.callback_extension,
        settings.callback_audio_extension,
        settings.callback_connect_extension,
    } <= names


def test_the_lab_imitates_the_shipped_listener_bridge() -> None:
    """The lab's listener dial string is the one pbxagent_linger and pbxagent_callback use."""
    extensions = _extensions(STANDARDS)
    for name in ("pbxagent_linger", "pbxagent_callback"):
        bridges = [data for app, data in extensions[name] if app == "bridge"]
        assert bridges == [LISTENER_DIAL]


def test_the_listener_is_marked_as_the_daemons_helper_on_both_halves() -> None:
    """The near leg by its variable, the far leg by the SIP header it receives."""
    variables, endpoint = parse_dial_string(LISTENER_DIAL)
    assert variables[HELPER_VARIABLE] == "listen"
    assert variables["sip_h_X-PbxAgent-Helper"] == "listen"
    assert variables["fire_talk_events"] == variables["fire_not_talk_events"] == "true"
    assert endpoint == "sofia/pbxagent/pbxagent_listen@127.0.0.1:5097"
    far = _extensions(FOLDER / "pbx-agent-listen.xml")["pbxagent_listen"]
    assert ("answer", "") in far


def test_every_feature_code_of_both_profiles_is_bound_for_the_agent() -> None:
    """bind_meta_app raises ``event pbx_agent_feature=<name>`` on the agent's leg (b, s, i)."""
    actions = _extensions(STANDARDS)["pbxagent_standards"]
    bound = {}
    for app, data in actions:
        if app == "bind_meta_app":
            key, listen, flags, application = data.split(" ", 3)
            assert (listen, flags) == ("b", "si")
            name = application.removeprefix(f"event::{FEATURE_HEADER}=")
            assert name != application
            bound[name] = key
    wanted: set[str] = set()
    for profile in ("ru", "zh"):
        config = load_config(None).model_copy(
            update={"site": load_config(None).site.model_copy(update={"profile": profile})}
        )
        wanted |= set(config.standards_for().feature_codes)
    assert wanted <= set(bound)
    assert len(set(bound.values())) == len(bound)  # one digit each


def test_talk_events_are_asked_for_before_the_call_is_answered() -> None:
    """pbxagent_standards sets and exports fire_talk_events and fire_not_talk_events."""
    actions = _extensions(STANDARDS)["pbxagent_standards"]
    for variable in ("fire_talk_events", "fire_not_talk_events"):
        assert ("set", f"{variable}=true") in actions
        assert ("export", f"nolocal:{variable}=true") in actions


def test_the_sip_profile_switches_the_detector_on() -> None:
    """The listener's profile has vad=both and takes calls from loopback only."""
    root = ET.parse(FOLDER / "pbx-agent-profile.xml").getroot()
    params = {p.get("name"): p.get("value") for p in root.iter("param")}
    assert params["vad"] == "both"
    assert params["sip-ip"] == "127.0.0.1"
    assert params["apply-inbound-acl"] == "loopback.auto"


def test_the_audio_callback_extension_parks_the_leg_with_a_safe_side() -> None:
    """unicast streams only from the park loop; sched_transfer connects the callee if the
    daemon never decides, before the park (an application after park never runs)."""
    actions = _extensions(STANDARDS)[FreeswitchSettings().callback_audio_extension]
    assert [app for app, _ in actions] == ["sched_transfer", "park"]
    assert actions[0][1] == "+8 pbxagent_callback_connect XML default"

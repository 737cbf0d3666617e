"""The real-PBX lanes: the switch under test has every dialplan sample loaded.

Skipped unless PBX_AGENT_TEST_AMI / PBX_AGENT_TEST_ESL name a real switch (tests/real). The
checks only read (CLI commands over AMI, ``xml_locate`` and ``sofia status`` over ESL). The
AMI ``Command`` action needs the write class ``command``, which the daemon's own user
(``manager.conf.sample``) does not have: the lane's user needs it in addition."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pbx_agent.pbx.ami_client import AmiClient, AmiSettings
from pbx_agent.pbx.esl_client import EslClient
from tests.real.conftest import RealAsterisk, RealFreeswitch

DIALPLAN = Path(__file__).resolve().parents[2] / "dialplan"
_SECTION = re.compile(r"^\[([^\]]+)\]", re.MULTILINE)


def sample_contexts() -> dict[str, str]:
    """Context -> the sample file defining it (files with extensions only)."""
    found = {}
    for path in sorted((DIALPLAN / "asterisk").glob("*.conf")):
        text = path.read_text(encoding="utf-8")
        if "exten =>" in text:
            found.update(dict.fromkeys(_SECTION.findall(text), path.name))
    return found


def feature_names() -> list[str]:
    text = (DIALPLAN / "asterisk" / "pbx-agent-features.conf").read_text(encoding="utf-8")
    mapping = text.split("[applicationmap]", 1)[1].split("\n[", 1)[0]
    return re.findall(r"^(\w+)\s*=>", mapping, re.MULTILINE)


async def cli_output(client: AmiClient, command: str) -> str:
    response = await client.send_action("Command", [("Command", command)])
    if response.name.lower() != "success" and not response.get_all("Output"):
        pytest.fail(
            f"AMI Command {command!r} refused ({response.get('Message')}): the lane's AMI user "
            "needs write = command besides the daemon's classes (tests/real/conftest.py)"
        )
    return "\n".join(response.get_all("Output"))


@pytest.mark.real_asterisk
async def test_every_sample_context_feature_and_music_class_is_loaded(
    real_asterisk: RealAsterisk,
) -> None:
    """dialplan show, features show and moh show classes list what the samples define."""
    client = AmiClient(
        AmiSettings(
            real_asterisk.host, real_asterisk.port, real_asterisk.username, real_asterisk.secret
        )
    )
    await client.start()
    try:
        await client.wait_connected(10)
        missing = []
        for context, file in sample_contexts().items():
            shown = await cli_output(client, f"dialplan show {context}")
            if f"[ Context '{context}'" not in shown:
                missing.append(f"{context} ({file})")
        features = await cli_output(client, "features show")
        classes = await cli_output(client, "moh show classes")
    finally:
        await client.close()
    assert missing == []
    assert [f for f in feature_names() if f not in features] == []
    assert "Class: pbx-agent" in classes


@pytest.mark.real_freeswitch
async def test_every_sample_extension_is_in_the_freeswitch_dialplan(
    real_freeswitch: RealFreeswitch,
) -> None:
    """xml_locate dialplan returns every extension of the dialplan samples, and the SIP
    profile of pbx-agent-profile.xml runs (event_socket.conf.xml: this very connection)."""
    names = [
        e.get("name")
        for file in ("pbx-agent.xml", "pbx-agent-standards.xml", "pbx-agent-listen.xml")
        for e in ET.parse(DIALPLAN / "freeswitch" / file).getroot().iter("extension")
    ]
    profile = ET.parse(DIALPLAN / "freeswitch" / "pbx-agent-profile.xml").getroot().get("name")
    client = EslClient(real_freeswitch.esl_settings())
    await client.start()
    try:
        located = await client.api("xml_locate dialplan")
        status = await client.api(f"sofia status profile {profile}")
    finally:
        await client.close()
    assert [n for n in names if f'name="{n}"' not in located] == []
    assert "Invalid Profile" not in status
    assert str(profile) in status

"""The opt-in real-PBX lanes.

``PBX_AGENT_TEST_AMI=host:port:user:secret`` runs the ``real_asterisk`` tests against a real
Asterisk loaded with the project's ``dialplan/asterisk`` samples; ``PBX_AGENT_TEST_AGI_BIND``
(``host:port``, default ``127.0.0.1:4573``) is where the daemon's FastAGI listener binds so
that switch can reach it. ``PBX_AGENT_TEST_ESL=host:port:password`` runs the
``real_freeswitch`` tests. Without them these tests are skipped, with the reason.

The lane's AMI user needs the daemon's classes (``dialplan/asterisk/manager.conf.sample``:
``read = call,dialplan,dtmf,agent,user``, ``write = call,originate,system,user``) plus
``write = command`` for the checks that read the loaded dialplan with CLI commands.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from pbx_agent.pbx.esl_client import EslSettings


@dataclass(frozen=True)
class RealAsterisk:
    host: str
    port: int
    username: str
    secret: str
    agi_bind: str


@dataclass(frozen=True)
class RealFreeswitch:
    host: str
    port: int
    password: str

    def esl_settings(self) -> EslSettings:
        """An inbound Event Socket to this switch that asks only for HEARTBEAT events."""
        return EslSettings(
            host=self.host, port=self.port, password=self.password, events=("HEARTBEAT",)
        )


def _split(value: str, parts: int, name: str) -> list[str]:
    pieces = value.split(":", parts - 1)
    if len(pieces) != parts:
        pytest.fail(f"{name}={value!r}: expected {parts} ':'-separated parts")
    return pieces


@pytest.fixture(scope="session")
def real_asterisk() -> RealAsterisk:
    value = os.environ.get("PBX_AGENT_TEST_AMI")
    if not value:
        pytest.skip("no real Asterisk: set PBX_AGENT_TEST_AMI=host:port:user:secret")
    host, port, user, secret = _split(value, 4, "PBX_AGENT_TEST_AMI")
    return RealAsterisk(
        host, int(port), user, secret, os.environ.get("PBX_AGENT_TEST_AGI_BIND", "127.0.0.1:4573")
    )


@pytest.fixture(scope="session")
def real_freeswitch() -> RealFreeswitch:
    value = os.environ.get("PBX_AGENT_TEST_ESL")
    if not value:
        pytest.skip("no real FreeSWITCH: set PBX_AGENT_TEST_ESL=host:port:password")
    host, port, password = _split(value, 3, "PBX_AGENT_TEST_ESL")
    return RealFreeswitch(host, int(port), password)

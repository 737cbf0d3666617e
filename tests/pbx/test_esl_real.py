"""The inbound ESL client against a real FreeSWITCH (skipped unless PBX_AGENT_TEST_ESL is set).

``PBX_AGENT_TEST_ESL=host:port:password``; only read-only commands are sent.
"""

from __future__ import annotations

import os
import secrets

import pytest

from pbx_agent.errors import PbxActionFailed, PbxAuthenticationFailed
from pbx_agent.pbx.esl_client import EslClient, EslSettings

pytestmark = pytest.mark.real_freeswitch


@pytest.fixture
def real() -> EslSettings:
    spec = os.environ.get("PBX_AGENT_TEST_ESL")
    if not spec:
        pytest.skip("no real FreeSWITCH: set PBX_AGENT_TEST_ESL=host:port:password")
    host, port, password = spec.split(":", 2)
    return EslSettings(host=host, port=int(port), password=password, events=("HEARTBEAT",))


async def test_wrong_password_is_refused(real: EslSettings) -> None:
    """A real switch refuses a wrong password and start() says so."""
    settings = EslSettings(host=real.host, port=real.port, password=secrets.token_hex(8))
    client = EslClient(settings)
    with pytest.raises(PbxAuthenticationFailed):
        await client.start()
    await client.close()


async def test_api_bgapi_and_channel_list(real: EslSettings) -> None:
    """status, a correlated bgapi, a refused api and the channel list all work."""
    client = EslClient(real)
    await client.start()
    try:
        assert "is ready" in await client.api("status")
        assert (await client.bgapi("version")).startswith("FreeSWITCH Version")
        with pytest.raises(PbxActionFailed):
            await client.api("uuid_kill 00000000-0000-0000-0000-000000000000")
        assert isinstance(await client.list_channels(), list)
    finally:
        await client.close()

"""Core ``unicast`` against a real FreeSWITCH (skipped unless PBX_AGENT_TEST_ESL is set).

``PBX_AGENT_TEST_ESL=host:port:password``. This test places one call: a ``loopback/`` leg to
the extension ``PBX_AGENT_TEST_ESL_MOH`` (9664, the vanilla configuration's hold music, by
default; the transcripts' lab dialplan has no such extension: point it at one that plays
sound), parked; it asks for the leg's audio with ``unicast`` and hangs the leg up.
``PBX_AGENT_TEST_UNICAST_ADDRESS`` is this host as the switch reaches it (127.0.0.1 when both
run on one machine) and ``PBX_AGENT_TEST_UNICAST_SWITCH_IP`` the switch's own (its end of
the stream; 0.0.0.0 lets it choose). It checks what the daemon relies on: datagrams of
whole 16-bit samples, one 20 ms frame each at the leg's read rate, with sound in them.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import numpy as np
import pytest

from pbx_agent.pbx.esl_client import EslClient
from pbx_agent.wire.unicast import parse_read_rate, unicast_headers
from tests.real.conftest import RealFreeswitch

pytestmark = pytest.mark.real_freeswitch


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams.append((data, (str(addr[0]), int(addr[1]))))


async def test_a_parked_leg_streams_its_audio_as_l16_datagrams(
    real_freeswitch: RealFreeswitch,
) -> None:
    address = os.environ.get("PBX_AGENT_TEST_UNICAST_ADDRESS", "127.0.0.1")
    switch_ip = os.environ.get("PBX_AGENT_TEST_UNICAST_SWITCH_IP", "0.0.0.0")
    extension = os.environ.get("PBX_AGENT_TEST_ESL_MOH", "9664")
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        _Collector,
        local_addr=("0.0.0.0" if address != "127.0.0.1" else "127.0.0.1", 0),
    )
    port = transport.get_extra_info("sockname")[1]
    leg = str(uuid.uuid4())
    client = EslClient(real_freeswitch.esl_settings())
    await client.start()
    try:
        result = await client.api(
            f"originate {{origination_uuid={leg}}}loopback/{extension} &park()", timeout=15.0
        )
        assert result.startswith("+OK"), result
        rate = parse_read_rate(await client.api(f"uuid_getvar {leg} read_rate"))
        reply = await client.command(
            f"sendmsg {leg}",
            unicast_headers(local_ip=switch_ip, local_port=0, remote_ip=address, remote_port=port),
        )
        assert reply.ok, reply.reply_text
        await asyncio.sleep(2.0)
    finally:
        try:
            await client.api(f"uuid_kill {leg}")
        finally:
            await client.close()
            transport.close()
    datagrams = collector.datagrams
    assert len(datagrams) >= 50, "the park loop sends one datagram per 20 ms frame"
    assert {len(data) for data, _ in datagrams} == {2 * rate // 50}
    assert len({source for _, source in datagrams}) == 1
    samples = np.frombuffer(b"".join(data for data, _ in datagrams), dtype="<i2")
    assert float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > 30.0, "hold music heard"

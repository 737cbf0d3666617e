"""The fake FreeSWITCH's uuid_displace, uuid_record and the 03b hold-music trap."""

from __future__ import annotations

import asyncio

from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch

FILE = "/usr/share/freeswitch/sounds/pbx-agent/ru/hold-announce.wav"


async def test_a_file_is_displaced_once_per_channel_until_it_ends() -> None:
    """A second displacement of the same file is refused; after the file ends it is allowed."""
    async with FakeFreeSwitch(time_scale=0.01, playback_s=5.0) as fs:
        ch = fs.inbound_call("79161234567")
        assert await fs.run_api("uuid_displace", f"{ch.uuid} start {FILE} 0") == "+OK Success\n"
        refused = await fs.run_api("uuid_displace", f"{ch.uuid} start {FILE} 0")
        assert refused == "-ERR Cannot displace session!\n"
        await asyncio.sleep(0.1)  # 5 s of file at time_scale 0.01
        assert await fs.run_api("uuid_displace", f"{ch.uuid} start {FILE} 0 mux") == "+OK Success\n"


async def test_stopping_a_displacement_finds_it_by_its_path() -> None:
    """``stop`` with the path that started it: +OK; with another path: -ERR."""
    async with FakeFreeSwitch(time_scale=0.01) as fs:
        ch = fs.inbound_call("79161234567")
        await fs.run_api("uuid_displace", f"{ch.uuid} start {FILE} 0")
        other = await fs.run_api("uuid_displace", f"{ch.uuid} stop /elsewhere.wav")
        assert other == "-ERR Cannot stop displace session!\n"
        assert await fs.run_api("uuid_displace", f"{ch.uuid} stop {FILE}") == "+OK Success\n"
        assert ch.displacing == {}


async def test_a_broadcast_to_the_music_leg_leaves_the_music_on_after_unhold() -> None:
    """Trace 03b: after a uuid_broadcast to the held party, unhold does not stop the music."""
    async with FakeFreeSwitch(time_scale=0.01) as fs:
        caller = fs.inbound_call("79161234567")
        agent = await fs.bridge(caller, "sofia/internal/agent-1001@127.0.0.1")
        assert agent is not None
        fs.hold(agent)
        await fs.run_api("uuid_broadcast", f"{caller.uuid} {FILE} aleg")
        fs.unhold(agent)
        assert caller.moh


async def test_without_a_broadcast_unhold_stops_the_music() -> None:
    """Trace 03a: unhold stops the music of the held party."""
    async with FakeFreeSwitch(time_scale=0.01) as fs:
        caller = fs.inbound_call("79161234567")
        agent = await fs.bridge(caller, "sofia/internal/agent-1001@127.0.0.1")
        assert agent is not None
        fs.hold(agent)
        fs.unhold(agent)
        assert not caller.moh


async def test_a_recording_is_recorded() -> None:
    """``uuid_record <uuid> start <path>`` answers +OK Success and is kept."""
    async with FakeFreeSwitch(time_scale=0.01) as fs:
        ch = fs.inbound_call("79161234567")
        assert await fs.run_api("uuid_record", f"{ch.uuid} start /tmp/x.wav") == "+OK Success\n"
        assert fs.recordings == [(ch.uuid, "start", "/tmp/x.wav")]

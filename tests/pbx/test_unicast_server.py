"""The unicast receiver over real loopback UDP, against a sender that streams like
FreeSWITCH's park loop: one datagram of 8 kHz L16 per 20 ms frame, from one socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import numpy as np
import pytest
from structlog.testing import capture_logs

from pbx_agent.amd.detector import Verdict
from pbx_agent.amd.params import DetectorParams, VerdictKind
from pbx_agent.pbx.unicast_server import UnicastAudioServer, UnicastUnavailableError
from pbx_agent.testing.audiosocket_client import CalleeVoice, callee_audio

TIMEOUT = 5.0
LEG = "5c7a1d36-93a4-4c0e-a7f1-2b8e6d4f9a10"
FRAME = 320
FAST = DetectorParams(deadline_ms=700, max_analysis_ms=700, no_speech_ms=600)


class Verdicts:
    def __init__(self) -> None:
        self.received: list[tuple[str, Verdict]] = []
        self.arrived = asyncio.Event()

    def __call__(self, leg: str, verdict: Verdict) -> None:
        self.received.append((leg, verdict))
        self.arrived.set()

    async def one(self, leg: str = LEG) -> Verdict:
        async with asyncio.timeout(TIMEOUT):
            await self.arrived.wait()
        await asyncio.sleep(0.05)  # a second verdict would be here by now
        [(got, verdict)] = self.received
        assert got == leg
        return verdict


@pytest.fixture
def verdicts() -> Verdicts:
    return Verdicts()


@pytest.fixture
async def server(verdicts: Verdicts) -> AsyncIterator[UnicastAudioServer]:
    async with UnicastAudioServer(verdicts, first_audio_timeout_s=1.0) as srv:
        yield srv


def sender(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


async def stream(sock: socket.socket, port: int, audio: bytes, *, frames_per_tick: int = 10) -> int:
    """Send ``audio`` as 320-byte datagrams, yielding to the loop every few frames."""
    sent = 0
    for offset in range(0, len(audio), FRAME):
        sock.sendto(audio[offset : offset + FRAME].ljust(FRAME, b"\0"), ("127.0.0.1", port))
        sent += 1
        if sent % frames_per_tick == 0:
            await asyncio.sleep(0.002)
    return sent


async def opened(server: UnicastAudioServer, leg: str = LEG, **kwargs: object) -> int:
    loop = asyncio.get_running_loop()
    return await server.open(leg, answered_at=loop.time(), **kwargs)  # type: ignore[arg-type]


async def test_a_person_streamed_by_the_switch_is_a_person(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    port = await opened(server, source_host="127.0.0.1")
    with sender() as sock:
        await stream(sock, port, callee_audio(CalleeVoice.HUMAN))
        verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.HUMAN
    assert 900 <= verdict.decided_at_ms <= 3000
    assert server.active_sessions == 0
    assert server.port_of(LEG) is None


async def test_a_greeting_and_its_beep_are_a_machine(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    port = await opened(server)
    with sender() as sock:
        await stream(sock, port, callee_audio(CalleeVoice.MACHINE))
        verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.MACHINE


async def test_the_socket_is_closed_once_the_verdict_is_out(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    port = await opened(server)
    with sender() as sock:
        await stream(sock, port, callee_audio(CalleeVoice.HUMAN))
        await verdicts.one()
        # The port is free again: another socket can bind it.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", port))
        probe.close()


async def test_nothing_arriving_gives_the_default_soon_with_advice(verdicts: Verdicts) -> None:
    params = DetectorParams(on_deadline=VerdictKind.HUMAN)
    async with UnicastAudioServer(verdicts, params=params, first_audio_timeout_s=0.05) as srv:
        with capture_logs() as logs:
            await opened(srv)
            verdict = await verdicts.one()
    assert (verdict.kind, verdict.reason) == (VerdictKind.HUMAN, "no-audio")
    [warning] = [entry for entry in logs if entry["event"] == "unicast_no_audio"]
    assert "freeswitch.unicast_address" in warning["advice"]


async def test_an_undecided_stream_gets_the_default_at_the_deadline(verdicts: Verdicts) -> None:
    async with UnicastAudioServer(verdicts, params=FAST, first_audio_timeout_s=0.5) as srv:
        port = await opened(srv)
        with sender() as sock:
            sock.sendto(b"\0" * FRAME, ("127.0.0.1", port))  # one frame of silence, then none
            verdict = await verdicts.one()
    assert (verdict.kind, verdict.reason) == (FAST.on_deadline, "deadline")


async def test_datagrams_from_another_source_are_dropped(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    """The first datagram fixes the source; a beep from anywhere else is not heard."""
    port = await opened(server, source_host="127.0.0.1")
    beep = callee_audio(CalleeVoice.MACHINE)[-8000:]  # the greeting's end and its beep
    with sender() as sock, sender() as intruder, capture_logs() as logs:
        sock.sendto(b"\0" * FRAME, ("127.0.0.1", port))
        await asyncio.sleep(0.01)
        await stream(intruder, port, beep * 4)
        await stream(sock, port, callee_audio(CalleeVoice.HUMAN))
        verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.HUMAN
    [closed] = [entry for entry in logs if entry["event"] == "unicast_stream_closed"]
    assert closed["foreign"] > 0
    assert [entry["action"] for entry in logs if entry["event"] == "unicast_foreign_datagram"] == [
        "dropped"
    ]


async def test_a_sender_not_at_the_switch_address_is_never_taken(verdicts: Verdicts) -> None:
    async with UnicastAudioServer(verdicts, first_audio_timeout_s=0.3) as srv:
        port = await opened(srv, source_host="127.0.0.1")
        with sender("127.0.0.2") as stranger:
            await stream(stranger, port, callee_audio(CalleeVoice.MACHINE))
            verdict = await verdicts.one()
    assert verdict.reason == "no-audio"


async def test_malformed_datagrams_are_dropped_and_counted(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    port = await opened(server)
    audio = callee_audio(CalleeVoice.HUMAN)
    with sender() as sock, capture_logs() as logs:
        for offset in range(0, len(audio), FRAME):
            sock.sendto(audio[offset : offset + FRAME], ("127.0.0.1", port))
            if offset % (FRAME * 25) == 0:
                sock.sendto(b"\x01\x02\x03", ("127.0.0.1", port))
                await asyncio.sleep(0.002)
        verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.HUMAN
    [closed] = [entry for entry in logs if entry["event"] == "unicast_stream_closed"]
    assert closed["malformed"] > 1
    refused = [entry for entry in logs if entry["event"] == "unicast_datagram_refused"]
    assert len(refused) == 1
    assert "not whole 16-bit samples" in refused[0]["error"]


async def test_the_leg_ending_judges_what_was_heard(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    port = await opened(server)
    with sender() as sock:
        await stream(sock, port, b"\0" * FRAME * 10)
        await asyncio.sleep(0.05)
        server.ended(LEG)
        verdict = await verdicts.one()
    assert verdict.reason.startswith("peer-hangup:")
    assert verdict.kind is VerdictKind.NOTSURE


async def test_one_verdict_per_leg_whatever_comes_after(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    port = await opened(server)
    with sender() as sock:
        await stream(sock, port, callee_audio(CalleeVoice.HUMAN))
        await verdicts.one()
        server.ended(LEG)
        server.cancel(LEG, "late")
        await asyncio.sleep(0.05)
    assert len(verdicts.received) == 1


async def test_two_legs_get_two_ports_and_their_own_verdicts(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    other = "9e3f0b52-1a7d-4c68-b2e5-7d0c4a91f3b8"
    first, second = await opened(server), await opened(server, other)
    assert first != second
    with sender() as a, sender() as b:
        await asyncio.gather(
            stream(a, first, callee_audio(CalleeVoice.HUMAN)),
            stream(b, second, callee_audio(CalleeVoice.MACHINE)),
        )
        async with asyncio.timeout(TIMEOUT):
            while len(verdicts.received) < 2:
                await asyncio.sleep(0.01)
    kinds = {leg: verdict.kind for leg, verdict in verdicts.received}
    assert kinds == {LEG: VerdictKind.HUMAN, other: VerdictKind.MACHINE}


async def test_ports_come_from_the_configured_range_and_run_out_cleanly(
    verdicts: Verdicts,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
        free.bind(("127.0.0.1", 0))
        low = free.getsockname()[1]
    async with UnicastAudioServer(verdicts, ports=(low, low), first_audio_timeout_s=1.0) as srv:
        assert await opened(srv) == low
        with pytest.raises(UnicastUnavailableError, match=f"no port free on 127.0.0.1:{low}-{low}"):
            await opened(srv, "9e3f0b52-1a7d-4c68-b2e5-7d0c4a91f3b8")
        assert srv.active_sessions == 1


def _free_range(size: int) -> tuple[int, int]:
    """``size`` consecutive UDP ports that were free a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            low = probe.getsockname()[1]
        if low + size - 1 > 65535:
            continue
        socks = []
        try:
            for port in range(low, low + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return low, low + size - 1
    raise AssertionError("no free port range")


async def test_a_port_just_freed_is_not_the_next_legs(verdicts: Verdicts) -> None:
    """The switch streams a judged leg until its hang-up lands: the port it streamed to is
    not handed to the next leg at once (its first datagram would fix the wrong source and
    feed it the old call's audio); ports go round the range, a freed one last."""
    low, high = _free_range(3)
    second = "9e3f0b52-1a7d-4c68-b2e5-7d0c4a91f3b8"
    third = "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e"
    async with UnicastAudioServer(verdicts, ports=(low, high), first_audio_timeout_s=1.0) as srv:
        first = await opened(srv)
        srv.cancel(LEG, "judged")  # settled: its port is free again
        assert await opened(srv, second) != first
        srv.cancel(second, "judged")
        assert await opened(srv, third) not in (first, low + 1)


async def test_with_every_free_port_just_freed_the_one_freed_longest_ago_is_used(
    verdicts: Verdicts,
) -> None:
    """Three ports, all busy; the third is freed, 20 s later the second: the next leg gets
    the third's (its old stream has had the longest to stop), not the second's."""
    low, high = _free_range(3)
    now = [1000.0]
    legs = [
        "9e3f0b52-1a7d-4c68-b2e5-7d0c4a91f3b8",
        "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
        "1d2e3f4a-5b6c-4d7e-8f90-1a2b3c4d5e6f",
    ]
    async with UnicastAudioServer(
        verdicts, ports=(low, high), first_audio_timeout_s=60.0, now=lambda: now[0]
    ) as srv:
        ports = [await srv.open(leg, answered_at=now[0]) for leg in legs]
        assert ports == [low, low + 1, low + 2]
        srv.cancel(legs[2], "judged")
        now[0] += 20
        srv.cancel(legs[1], "judged")
        await asyncio.sleep(0.01)  # the closed sockets are released on the next loop turns
        fourth = await srv.open("2e3f4a5b-6c7d-4e8f-9a01-2b3c4d5e6f70", answered_at=now[0])
    assert fourth == low + 2


async def test_too_many_streams_are_refused_before_anything_is_bound(verdicts: Verdicts) -> None:
    async with UnicastAudioServer(verdicts, max_sessions=1) as srv:
        await opened(srv)
        with pytest.raises(UnicastUnavailableError, match="1 streams already open"):
            await opened(srv, "9e3f0b52-1a7d-4c68-b2e5-7d0c4a91f3b8")
        with pytest.raises(UnicastUnavailableError, match="already has a stream"):
            await opened(srv)


@pytest.mark.parametrize("ports", [(10, 5), (0, 10), (1, 70000)])
def test_a_bad_port_range_is_refused(verdicts: Verdicts, ports: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="port range"):
        UnicastAudioServer(verdicts, ports=ports)


async def test_closing_gives_every_open_leg_the_default(verdicts: Verdicts) -> None:
    srv = UnicastAudioServer(verdicts, first_audio_timeout_s=5.0)
    await opened(srv)
    await srv.close()
    [(leg, verdict)] = verdicts.received
    assert (leg, verdict.reason) == (LEG, "closed")
    with pytest.raises(UnicastUnavailableError, match="closed"):
        await opened(srv)


async def test_a_failing_consumer_is_contained(verdicts: Verdicts) -> None:
    calls: list[str] = []

    def broken(leg: str, _verdict: Verdict) -> None:
        calls.append(leg)
        msg = "consumer bug"
        raise RuntimeError(msg)

    async with UnicastAudioServer(broken, first_audio_timeout_s=0.05) as srv:
        with capture_logs() as logs:
            await opened(srv)
            async with asyncio.timeout(TIMEOUT):
                while not calls:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.02)
        assert await opened(srv, "9e3f0b52-1a7d-4c68-b2e5-7d0c4a91f3b8") > 0
    assert any(entry["event"] == "amd_verdict_callback_failed" for entry in logs)


async def test_a_16khz_leg_is_judged_like_an_8khz_one(
    server: UnicastAudioServer, verdicts: Verdicts
) -> None:
    """G.722: the switch sends 16 kHz L16; the receiver brings it to the detector's 8 kHz."""
    narrow = np.frombuffer(callee_audio(CalleeVoice.HUMAN), dtype="<i2")
    wide = np.repeat(narrow, 2).astype("<i2").tobytes()  # crude, but speech stays speech
    port = await opened(server, rate=16000)
    with sender() as sock:
        for offset in range(0, len(wide), 2 * FRAME):
            sock.sendto(wide[offset : offset + 2 * FRAME], ("127.0.0.1", port))
            if offset % (20 * FRAME) == 0:
                await asyncio.sleep(0.002)
        verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.HUMAN

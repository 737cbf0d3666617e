"""The AudioSocket server over real loopback TCP, against a client that speaks like
Asterisk's AudioSocket(): UUID frame first, then 20 ms signed-linear frames."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest
from structlog.testing import capture_logs

from pbx_agent.amd import signals as s
from pbx_agent.amd.detector import Verdict
from pbx_agent.amd.params import DetectorParams, VerdictKind
from pbx_agent.pbx.audiosocket_server import AudioSocketServer
from pbx_agent.wire.audiosocket import (
    AudioSocketDecoder,
    AudioSocketHangup,
    encode_audio,
    encode_dtmf,
    encode_hangup,
    encode_uuid,
)

TIMEOUT = 5.0
CALL = uuid.UUID("0b8f4d2a-6c1e-4e3b-9d7a-5f2c8e1a4b6d")
# Short deadlines keep the tests fast; the analysis limit must not exceed the deadline.
FAST = DetectorParams(deadline_ms=700, max_analysis_ms=700, no_speech_ms=600)


class Verdicts:
    def __init__(self) -> None:
        self.received: list[tuple[uuid.UUID, Verdict]] = []
        self.arrived = asyncio.Event()

    def __call__(self, stream: uuid.UUID, verdict: Verdict) -> None:
        self.received.append((stream, verdict))
        self.arrived.set()

    async def one(self) -> Verdict:
        async with asyncio.timeout(TIMEOUT):
            await self.arrived.wait()
        [(stream, verdict)] = self.received
        assert stream == CALL
        return verdict


@pytest.fixture
def verdicts() -> Verdicts:
    return Verdicts()


async def serve(verdicts: Verdicts, **kwargs: object) -> AudioSocketServer:
    server = AudioSocketServer(verdicts, port=0, **kwargs)  # type: ignore[arg-type]
    await server.start()
    return server


@pytest.fixture
async def server(verdicts: Verdicts) -> AsyncIterator[AudioSocketServer]:
    srv = await serve(verdicts)
    yield srv
    await srv.close()


async def connect(server: AudioSocketServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(TIMEOUT):
        return await asyncio.open_connection("127.0.0.1", server.port)


def frames(pcm: np.ndarray) -> bytes:
    return b"".join(
        encode_audio(pcm[i : i + 160].astype("<i2").tobytes()) for i in range(0, pcm.size, 160)
    )


async def read_until_closed(reader: asyncio.StreamReader) -> list[object]:
    decoder = AudioSocketDecoder()
    async with asyncio.timeout(TIMEOUT):
        while data := await reader.read(4096):
            decoder.feed(data)
    decoder.feed(b"")
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    return messages


async def test_person_answering_gives_human_then_a_hangup_frame(server, verdicts):
    """A 'Hello?' then silence: HUMAN is reported, the hang-up frame sent, the socket closed."""
    reader, writer = await connect(server)
    writer.write(encode_uuid(CALL) + frames(s.render(s.silence(0.4), s.syllables(3), seconds=3)))
    await writer.drain()
    verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.HUMAN
    assert await read_until_closed(reader) == [AudioSocketHangup()]
    writer.close()


async def test_beep_gives_machine_with_audio_time(server, verdicts):
    """A beep is MACHINE, stamped with the audio's own time, not the wall clock."""
    reader, writer = await connect(server)
    writer.write(encode_uuid(CALL) + frames(s.render(s.silence(1.0), s.tone(1000, 0.5), seconds=2)))
    await writer.drain()
    verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.MACHINE
    assert 1160 <= verdict.decided_at_ms <= 1240
    await read_until_closed(reader)
    writer.close()


async def test_no_verdict_in_time_gives_the_configured_default(verdicts):
    """Audio that stalls: at the deadline the default verdict is reported and the call freed."""
    params = DetectorParams(**{**FAST.model_dump(), "on_deadline": VerdictKind.MACHINE})
    server = await serve(verdicts, params=params)
    try:
        reader, writer = await connect(server)
        writer.write(encode_uuid(CALL) + frames(s.render(s.silence(0.2))))
        await writer.drain()
        loop = asyncio.get_running_loop()
        started = loop.time()
        verdict = await verdicts.one()
        assert verdict == Verdict(VerdictKind.MACHINE, "deadline", 700)
        assert await read_until_closed(reader) == [AudioSocketHangup()]
        # Not held longer than the deadline (generous bound: this is not a speed test).
        assert loop.time() - started < TIMEOUT
        writer.close()
    finally:
        await server.close()


async def test_peer_vanishing_still_reports_once(server, verdicts):
    """The peer closes mid-stream: the detector's finish verdict is reported exactly once."""
    _reader, writer = await connect(server)
    writer.write(encode_uuid(CALL) + frames(s.render(s.silence(0.3))))
    await writer.drain()
    writer.close()
    verdict = await verdicts.one()
    assert verdict.kind is VerdictKind.NOTSURE
    assert verdict.reason.startswith("peer-gone")
    await asyncio.sleep(0.05)
    assert len(verdicts.received) == 1


async def test_peer_hangup_frame_ends_the_session(server, verdicts):
    """A hang-up frame from the peer ends the stream with the detector's finish verdict."""
    reader, writer = await connect(server)
    writer.write(encode_uuid(CALL) + frames(s.render(s.silence(0.3))) + encode_hangup())
    await writer.drain()
    verdict = await verdicts.one()
    assert verdict.reason.startswith("peer-hangup")
    # The peer ended it: nothing is sent back.
    assert await read_until_closed(reader) == []
    writer.close()


async def test_truncated_frame_at_close_is_a_protocol_error(server, verdicts):
    """Half an audio frame then close: reported with the default verdict, reason protocol-error."""
    _reader, writer = await connect(server)
    writer.write(encode_uuid(CALL) + encode_audio(b"\x00\x00" * 160)[:50])
    await writer.drain()
    writer.close()
    verdict = await verdicts.one()
    assert verdict == Verdict(VerdictKind.HUMAN, "protocol-error", 0)


async def test_oversized_frame_is_a_protocol_error(server, verdicts):
    """A frame announcing 64 KiB is refused from its header; the call gets the default."""
    reader, writer = await connect(server)
    with capture_logs() as logs:
        writer.write(encode_uuid(CALL) + b"\x10\xff\xff")
        await writer.drain()
        verdict = await verdicts.one()
        await read_until_closed(reader)
    assert verdict.reason == "protocol-error"
    assert any(e["event"] == "audiosocket_protocol_error" for e in logs)
    writer.close()


async def test_stream_without_uuid_first_is_dropped(server, verdicts):
    """Audio before the UUID frame: no one to report to, the connection is closed."""
    reader, writer = await connect(server)
    with capture_logs() as logs:
        writer.write(frames(s.render(s.silence(0.1))))
        await writer.drain()
        assert await read_until_closed(reader) == []
    assert verdicts.received == []
    assert any(e["event"] == "audiosocket_no_uuid" for e in logs)
    writer.close()


async def test_silent_peer_is_dropped_after_the_uuid_timeout(verdicts):
    """A peer that connects and sends nothing is closed after uuid_timeout_s."""
    server = await serve(verdicts, uuid_timeout_s=0.1)
    try:
        reader, writer = await connect(server)
        with capture_logs() as logs:
            assert await read_until_closed(reader) == []
        assert any(e["event"] == "audiosocket_uuid_timeout" for e in logs)
        assert verdicts.received == []
        writer.close()
    finally:
        await server.close()


async def test_a_failing_consumer_does_not_break_the_session():
    """on_verdict raising is logged; the hang-up frame is still sent."""

    def broken(_stream: uuid.UUID, _verdict: Verdict) -> None:
        msg = "consumer bug"
        raise RuntimeError(msg)

    server = AudioSocketServer(broken, port=0)
    await server.start()
    try:
        reader, writer = await connect(server)
        with capture_logs() as logs:
            writer.write(encode_uuid(CALL) + frames(s.render(s.silence(0.3), s.tone(1000, 0.4))))
            await writer.drain()
            assert await read_until_closed(reader) == [AudioSocketHangup()]
        assert any(e["event"] == "amd_verdict_callback_failed" for e in logs)
        writer.close()
    finally:
        await server.close()


async def test_async_consumers_are_awaited(verdicts):
    """on_verdict may be a coroutine function."""
    seen: list[Verdict] = []

    async def consumer(_stream: uuid.UUID, verdict: Verdict) -> None:
        await asyncio.sleep(0)
        seen.append(verdict)
        verdicts(CALL, verdict)

    server = AudioSocketServer(consumer, port=0)
    await server.start()
    try:
        _reader, writer = await connect(server)
        writer.write(encode_uuid(CALL) + frames(s.render(s.silence(0.3), s.tone(1000, 0.4))))
        await writer.drain()
        assert (await verdicts.one()).kind is VerdictKind.MACHINE
        assert len(seen) == 1
        writer.close()
    finally:
        await server.close()


async def test_sessions_beyond_the_limit_are_refused(verdicts):
    """Past max_sessions a new connection is closed at once; the first one is unaffected."""
    server = await serve(verdicts, max_sessions=1)
    try:
        _r1, w1 = await connect(server)
        w1.write(encode_uuid(CALL))
        await w1.drain()
        await asyncio.sleep(0.05)
        r2, w2 = await connect(server)
        assert await read_until_closed(r2) == []
        assert server.active_sessions == 1
        w1.close()
        w2.close()
    finally:
        await server.close()


async def test_close_cancels_open_sessions(verdicts):
    """close() ends sessions that are still listening, without waiting for their deadline."""
    server = await serve(verdicts)
    _reader, writer = await connect(server)
    writer.write(encode_uuid(CALL))
    await writer.drain()
    await asyncio.sleep(0.05)
    assert server.active_sessions == 1
    async with asyncio.timeout(TIMEOUT):
        await server.close()
    assert server.active_sessions == 0
    # ... and the attempt still gets its one verdict: the default, reason "closed".
    [(stream, verdict)] = verdicts.received
    assert (stream, verdict.kind, verdict.reason) == (CALL, VerdictKind.HUMAN, "closed")
    writer.close()


async def test_a_second_stream_for_one_attempt_gets_no_verdict(server, verdicts):
    """Two connections naming one attempt id: the first is judged; the second is refused
    (closed, no verdict), so it cannot overwrite the first's verdict on the channel."""
    _r1, first = await connect(server)
    first.write(encode_uuid(CALL))
    await first.drain()
    await asyncio.sleep(0.05)
    reader, second = await connect(server)
    with capture_logs() as logs:
        second.write(encode_uuid(CALL) + frames(s.render(s.tone(1000, 1.0), seconds=1.5)))
        await second.drain()
        assert await read_until_closed(reader) == []
    assert verdicts.received == []
    assert [e["event"] for e in logs if e["event"] == "audiosocket_stream_refused"] == [
        "audiosocket_stream_refused"
    ]
    first.close()
    second.close()


async def test_a_dtmf_flood_is_logged_once_and_other_calls_go_on(server, verdicts):
    """Thousands of DTMF frames: one log line, not one per frame."""
    reader, writer = await connect(server)
    with capture_logs() as logs:
        writer.write(encode_uuid(CALL) + encode_dtmf("5") * 20000 + encode_hangup())
        await writer.drain()
        await verdicts.one()
        await read_until_closed(reader)
    events = [e["event"] for e in logs]
    assert events.count("audiosocket_dtmf") == 1
    assert [e["frames"] for e in logs if e["event"] == "audiosocket_dtmf_total"] == [20000]
    writer.close()


async def test_no_hangup_frame_when_configured_off(verdicts):
    """hangup_after_verdict=False leaves ending the stream to the dialplan."""
    server = await serve(verdicts, hangup_after_verdict=False)
    try:
        reader, writer = await connect(server)
        writer.write(encode_uuid(CALL) + frames(s.render(s.silence(0.3), s.tone(1000, 0.4))))
        await writer.drain()
        await verdicts.one()
        assert await read_until_closed(reader) == []
        writer.close()
    finally:
        await server.close()


async def test_binding_beyond_loopback_warns(verdicts):
    """Listening on a non-loopback address is allowed but logged as a warning."""
    server = AudioSocketServer(verdicts, host="0.0.0.0", port=0)
    with capture_logs() as logs:
        await server.start()
    await server.close()
    assert any(e["event"] == "audiosocket_not_loopback" for e in logs)

"""The fake FreeSWITCH's core ``unicast`` call-command, over real loopback ESL and UDP.

What FreeSWITCH 1.10 does (switch_ivr_parse_event, switch_ivr_activate_unicast,
switch_ivr_park): the headers' defaults, a UDP socket bound to local-ip:local-port, one
320-byte L16 datagram per 20 ms frame read while the leg is parked, nothing reported to the
client, and the socket closed when the leg leaves park or hangs up.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch, UnicastStream
from pbx_agent.wire.esl import EslDecoder, EslMessage, encode_command

FRAME = 320  # 20 ms of 8 kHz 16-bit samples
TIME_SCALE = 0.05  # a 20 ms frame every millisecond
FRAME_S = 0.02 * TIME_SCALE
LEG = "2f0d7a6e-7c1b-4f7e-9d55-5b0c8f1e3a01"


def callee_audio(frames: int) -> bytes:
    """Distinct, never-silent samples, so any offset or gap shows."""
    return struct.pack(f"<{frames * FRAME // 2}h", *((i % 30000) + 1 for i in range(frames * 160)))


def expected_stream(audio: bytes, offset: int, length: int) -> bytes:
    """What the datagrams carry from ``offset`` on: the audio, then zeros."""
    tail = audio[offset : offset + length]
    return tail + bytes(length - len(tail))


class EslClient:
    """A bare ESL client, as the other fake tests use: bytes out, decoded messages in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = EslDecoder()
        self.messages: list[EslMessage] = []

    async def _read_until(self, done: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the fake closed the ESL socket")
                self.decoder.feed(data)
                while (message := self.decoder.next_message()) is not None:
                    self.messages.append(message)

    def _replies(self) -> list[EslMessage]:
        return [m for m in self.messages if not m.is_event]

    async def send(self, line: str, headers: list[tuple[str, str]] | None = None) -> EslMessage:
        """One command; its reply (command/reply or api/response)."""
        count = len(self._replies())
        self.writer.write(encode_command(line, headers or []))
        await self._read_until(lambda: len(self._replies()) > count)
        return self._replies()[count]

    def close(self) -> None:
        self.writer.close()


class Receiver:
    """The daemon's end of the stream: a UDP socket on loopback."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            self.sock.bind(("127.0.0.1", port))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.0)
        self.port = int(self.sock.getsockname()[1])

    async def take(self, count: int, timeout_s: float = 5.0) -> list[tuple[bytes, tuple[str, int]]]:
        """The next ``count`` datagrams with their senders."""
        loop = asyncio.get_running_loop()
        out = []
        async with asyncio.timeout(timeout_s):
            while len(out) < count:
                data, sender = await loop.sock_recvfrom(self.sock, 65536)
                out.append((data, (str(sender[0]), int(sender[1]))))
        return out

    def drain(self) -> int:
        """Discard what has already arrived; how many datagrams that was."""
        count = 0
        while True:
            try:
                self.sock.recvfrom(65536)
            except BlockingIOError:
                return count
            count += 1

    async def quiet_for(self, seconds: float) -> int:
        """How many datagrams arrive within ``seconds``."""
        await asyncio.sleep(seconds)
        return self.drain()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def fs() -> AsyncIterator[FakeFreeSwitch]:
    async with FakeFreeSwitch(time_scale=TIME_SCALE) as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


async def connect(fs: FakeFreeSwitch) -> EslClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", fs.port)
    client = EslClient(reader, writer)
    await client._read_until(lambda: bool(client.messages))  # auth/request
    assert (await client.send("auth ClueCon")).reply_text == "+OK accepted"
    return client


@pytest.fixture
async def esl(fs: FakeFreeSwitch) -> AsyncIterator[EslClient]:
    client = await connect(fs)
    yield client
    client.close()


def unicast_headers(port: int, **overrides: str) -> list[tuple[str, str]]:
    headers = {
        "call-command": "unicast",
        "local-ip": "127.0.0.1",
        "local-port": "0",
        "remote-ip": "127.0.0.1",
        "remote-port": str(port),
        "transport": "udp",
    }
    headers.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return list(headers.items())


async def originate_parked(esl: EslClient, user: str = "carol", uuid: str = LEG) -> None:
    """``originate ... &park()``: an answered outbound leg, parked."""
    reply = await esl.send(
        f"api originate {{origination_uuid={uuid}}}sofia/internal/{user}@127.0.0.1:5190 &park()"
    )
    assert reply.body_text == f"+OK {uuid}\n"


async def start_unicast(
    fs: FakeFreeSwitch, esl: EslClient, headers: list[tuple[str, str]], uuid: str = LEG
) -> UnicastStream:
    reply = await esl.send(f"sendmsg {uuid}", headers)
    assert reply.reply_text == "+OK"
    return fs.unicasts[-1]


def free_udp_port(port: int) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        probe.close()
    return True


# -- the stream ----------------------------------------------------------------------------------


async def test_a_parked_leg_streams_its_callee_audio_from_the_answer_on(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """320-byte datagrams from the bound address to the remote one: the callee's audio from
    the frame being read when the unicast arrived (what came before is lost), then zeros."""
    audio = callee_audio(400)  # 8 s of speech, 0.4 s at this time scale
    fs.set_callee_audio("carol", audio)
    await originate_parked(esl)
    leg = fs.channel(LEG)
    assert leg is not None and leg.parked_app_uuid is not None
    sent_at = time.time()
    record = await start_unicast(fs, esl, unicast_headers(receiver.port))
    assert record.refused is None and record.active
    assert record.local is not None and record.local[0] == "127.0.0.1" and record.local[1] != 0
    assert record.requested_local == ("127.0.0.1", 0)
    assert record.remote == ("127.0.0.1", receiver.port)

    first = await receiver.take(1)
    first_at = time.time()
    offset = record.audio_offset
    assert offset is not None and offset % FRAME == 0
    # The first frame is the one being read when the unicast arrived: not one read before.
    answered = leg.answered_us / 1_000_000
    assert (sent_at - answered) / FRAME_S - 1 <= offset / FRAME <= (first_at - answered) / FRAME_S
    assert offset < len(audio)

    frames = (len(audio) - offset) // FRAME + 5  # the rest of the audio, then silence
    datagrams = first + await receiver.take(frames - 1)
    assert {len(data) for data, _ in datagrams} == {FRAME}
    assert {sender for _, sender in datagrams} == {record.local}
    stream = b"".join(data for data, _ in datagrams)
    assert stream == expected_stream(audio, offset, frames * FRAME)
    assert stream.endswith(bytes(5 * FRAME))
    assert record.frames_sent >= frames


async def test_a_leg_without_audio_sends_silence(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """No set_callee_audio for the user: the frames still flow, all zeros."""
    await originate_parked(esl, user="nobody")
    await start_unicast(fs, esl, unicast_headers(receiver.port))
    datagrams = await receiver.take(10)
    assert [data for data, _ in datagrams] == [bytes(FRAME)] * 10


async def test_datagrams_sent_to_the_switch_end_are_taken_and_dropped(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """Audio back towards the leg arrives on the bound socket; the stream goes on."""
    fs.set_callee_audio("carol", callee_audio(50))
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port))
    assert record.local is not None
    await receiver.take(2)
    for _ in range(3):
        receiver.sock.sendto(bytes(FRAME), record.local)
    async with asyncio.timeout(5):
        while record.datagrams_received < 3:
            await asyncio.sleep(0.005)
    await receiver.take(5)
    assert record.active


# -- the headers ---------------------------------------------------------------------------------


async def test_missing_and_empty_headers_take_freeswitchs_defaults(
    fs: FakeFreeSwitch, esl: EslClient
) -> None:
    """Only call-command (and an empty remote-ip): 127.0.0.1:8025 -> 127.0.0.1:8026, udp."""
    if not free_udp_port(8025):
        pytest.skip("127.0.0.1:8025 is taken on this machine")
    try:
        rx = Receiver(8026)
    except OSError:
        pytest.skip("127.0.0.1:8026 is taken on this machine")
    try:
        await originate_parked(esl)
        record = await start_unicast(
            fs, esl, [("call-command", "unicast"), ("remote-ip", ""), ("local-port", "")]
        )
        assert record.requested_local == ("127.0.0.1", 8025)
        assert record.local == ("127.0.0.1", 8025)
        assert record.remote == ("127.0.0.1", 8026)
        assert (record.transport, record.flags) == ("udp", "")
        [(data, sender)] = await rx.take(1)
        assert (len(data), sender) == (FRAME, ("127.0.0.1", 8025))
    finally:
        rx.close()


async def test_ports_are_read_as_atoi_does(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """``(switch_port_t) atoi(...)``: digits up to the first other character, 16 bits."""
    await originate_parked(esl)
    fs.stall_unicast(LEG)  # nothing is sent to the odd remote port
    record = await start_unicast(
        fs, esl, unicast_headers(receiver.port, local_port="0x1f", remote_port="65546 ms")
    )
    assert record.requested_local == ("127.0.0.1", 0)
    assert record.remote == ("127.0.0.1", 10)
    assert record.local is not None and record.local[1] != 0


@pytest.mark.parametrize("transport", ["sctp", "udp4", "tls"])
async def test_a_bad_transport_is_refused_and_the_reply_is_still_ok(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver, transport: str
) -> None:
    """FreeSWITCH only logs "Invalid transport": +OK, nothing bound, nothing sent."""
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port, transport=transport))
    assert record.refused == f"Invalid transport {transport}"
    assert record.local is None and not record.active and record.closed
    assert await receiver.quiet_for(50 * FRAME_S) == 0
    assert fs.unicast(LEG) is None


async def test_tcp_in_any_case_still_streams_over_udp(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """transport TCP: the socket FreeSWITCH makes is a UDP one all the same."""
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port, transport="TCP"))
    assert record.refused is None
    [(data, sender)] = await receiver.take(1)
    assert (len(data), sender) == (FRAME, record.local)


async def test_native_flags_are_not_modelled_and_send_nothing(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port, flags="native"))
    assert record.refused is not None and "native" in record.refused
    assert await receiver.quiet_for(50 * FRAME_S) == 0


async def test_a_failed_bind_streams_nothing(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """local-port taken: the bind fails, only the switch's log would say so."""
    await originate_parked(esl)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        port = str(taken.getsockname()[1])
        record = await start_unicast(fs, esl, unicast_headers(receiver.port, local_port=port))
        assert record.refused is not None and record.refused.startswith("Failure creating")
        assert record.local is None and record.closed
        assert await receiver.quiet_for(50 * FRAME_S) == 0
    finally:
        taken.close()


async def test_a_second_unicast_while_one_is_active_is_ignored(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """The first stream goes on, from its socket; the second binds nothing."""
    await originate_parked(esl)
    first = await start_unicast(fs, esl, unicast_headers(receiver.port))
    other = Receiver()
    try:
        second = await start_unicast(fs, esl, unicast_headers(other.port))
        assert second.refused == "a unicast is already active on this channel"
        assert second.local is None
        datagrams = await receiver.take(5)
        assert {sender for _, sender in datagrams} == {first.local}
        assert await other.quiet_for(20 * FRAME_S) == 0
        assert fs.unicast(LEG) is first
    finally:
        other.close()


# -- the end of the stream -----------------------------------------------------------------------


def assert_closed(record: UnicastStream) -> None:
    """The switch's socket is gone: its port can be bound again."""
    assert not record.active and record.closed
    assert record.local is not None and free_udp_port(record.local[1])


async def test_hanging_up_stops_the_stream_and_closes_the_socket(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    fs.set_callee_audio("carol", callee_audio(100))
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port))
    await receiver.take(3)
    assert (await esl.send(f"api uuid_kill {LEG}")).body_text == "+OK\n"
    assert record.ended == "hangup"
    assert_closed(record)
    sent = record.frames_sent
    receiver.drain()  # what was sent before the hangup
    assert await receiver.quiet_for(50 * FRAME_S) == 0
    assert record.frames_sent == sent


async def test_a_transfer_out_of_park_stops_the_stream_until_a_new_unicast(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """uuid_transfer ends the park (and its unicast); the leg parks again without one."""
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port))
    await receiver.take(3)
    assert (await esl.send(f"api uuid_transfer {LEG} 9999")).body_text == "+OK\n"
    assert record.ended == "unpark"
    assert_closed(record)
    receiver.drain()
    assert await receiver.quiet_for(50 * FRAME_S) == 0
    again = await start_unicast(fs, esl, unicast_headers(receiver.port))
    assert again.active
    [(_data, sender)] = await receiver.take(1)
    assert sender == again.local


async def test_a_bridge_out_of_park_stops_the_stream(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port))
    await receiver.take(2)
    leg = fs.channel(LEG)
    assert leg is not None
    assert await fs.bridge(leg, "sofia/internal/agent@127.0.0.1") is not None
    assert record.ended == "unpark"
    assert_closed(record)


async def test_closing_the_fake_closes_every_stream(receiver: Receiver) -> None:
    async with FakeFreeSwitch(time_scale=TIME_SCALE) as fake:
        client = await connect(fake)
        await originate_parked(client)
        record = await start_unicast(fake, client, unicast_headers(receiver.port))
        await receiver.take(1)
        client.close()
    assert record.ended == "closed"
    assert_closed(record)


# -- faults --------------------------------------------------------------------------------------


async def test_a_stalled_leg_activates_but_sends_nothing(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    """stall_unicast: bound and active, not a datagram; unstalled, it flows again."""
    fs.set_callee_audio("carol", callee_audio(100))
    fs.stall_unicast(LEG)
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port))
    assert record.active and record.local is not None
    assert await receiver.quiet_for(50 * FRAME_S) == 0
    assert record.frames_sent == 0
    fs.stall_unicast(LEG, stalled=False)
    datagrams = await receiver.take(3)
    assert {len(data) for data, _ in datagrams} == {FRAME}


async def test_stalling_by_endpoint_user_stalls_every_leg_to_it(
    fs: FakeFreeSwitch, esl: EslClient, receiver: Receiver
) -> None:
    fs.stall_unicast("carol")
    await originate_parked(esl)
    record = await start_unicast(fs, esl, unicast_headers(receiver.port))
    assert record.active
    assert await receiver.quiet_for(50 * FRAME_S) == 0


# -- the outbound-socket session -----------------------------------------------------------------


async def test_unicast_on_an_outbound_socket_session(
    fs: FakeFreeSwitch, receiver: Receiver
) -> None:
    """Plain ``sendmsg`` on the async outbound socket (which parks the leg): silence until
    the leg answers, then the caller's audio from the answer; closing the socket ends the
    park and the stream."""
    audio = callee_audio(200)
    fs.set_callee_audio("gina", audio)  # an inbound leg: the party on it is its caller
    session: dict[str, EslClient] = {}
    ready = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session["esl"] = EslClient(reader, writer)
        ready.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        call = await fs.outbound_call("127.0.0.1", server.sockets[0].getsockname()[1])
        async with asyncio.timeout(5):
            await ready.wait()
        daemon = session["esl"]
        assert (await daemon.send("connect")).reply_text == "+OK\n"
        assert (await daemon.send("myevents")).reply_text == "+OK Events Enabled"
        # Without it the channel would stay parked when the socket closes (mod_event_socket).
        assert (await daemon.send("resume")).reply_text == "+OK"
        reply = await daemon.send("sendmsg", unicast_headers(receiver.port))
        assert reply.reply_text == "+OK"
        record = fs.unicasts[-1]
        assert record.uuid == call.channel.uuid and record.active
        early = await receiver.take(3)
        assert [data for data, _ in early] == [bytes(FRAME)] * 3  # not answered yet
        reply = await daemon.send(
            "sendmsg", [("call-command", "execute"), ("execute-app-name", "answer")]
        )
        assert reply.reply_text == "+OK"

        datagrams: list[bytes] = []
        async with asyncio.timeout(5):
            while record.audio_offset is None or not any(any(d) for d in datagrams):
                datagrams += [data for data, _ in await receiver.take(1)]
        offset = record.audio_offset
        assert offset is not None
        spoken = datagrams[next(i for i, d in enumerate(datagrams) if any(d)) :]
        frames = (len(audio) - offset) // FRAME + 3
        spoken += [data for data, _ in await receiver.take(frames - len(spoken))]
        assert {len(d) for d in spoken} == {FRAME}
        assert b"".join(spoken) == expected_stream(audio, offset, frames * FRAME)

        daemon.close()  # the socket application returns: its park ends
        async with asyncio.timeout(5):
            await call.dialplan_continued.wait()
        assert record.ended == "unpark"
        assert_closed(record)
        receiver.drain()
        assert await receiver.quiet_for(50 * FRAME_S) == 0
    finally:
        server.close()
        await server.wait_closed()

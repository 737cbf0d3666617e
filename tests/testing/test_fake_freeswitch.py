"""The fake FreeSWITCH against the FreeSWITCH 1.10.12 transcripts it imitates."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch, OriginateOutcome
from pbx_agent.wire.esl import (
    EslDecoder,
    EslEvent,
    EslMessage,
    channel_variables,
    encode_command,
    quote_api_arg,
)

TRACES = Path(__file__).resolve().parents[1] / "traces" / "freeswitch"
RAW_MARK = b"#=== BEGIN RAW ===\n"
NOISE = {"RECV_RTCP_MESSAGE", "HEARTBEAT", "RE_SCHEDULE", "API", "BACKGROUND_JOB"}


def raw_bytes(name: str, direction: str = "recv") -> bytes:
    return (TRACES / f"{name}.{direction}.txt").read_bytes().split(RAW_MARK, 1)[1]


@functools.cache
def _trace_messages(name: str) -> tuple[EslMessage, ...]:
    decoder = EslDecoder()
    decoder.feed(raw_bytes(name))
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return tuple(out)


def trace_messages(name: str) -> list[EslMessage]:
    return list(_trace_messages(name))


@functools.cache
def _trace_events(name: str) -> tuple[EslEvent, ...]:
    return tuple(m.event() for m in _trace_messages(name) if m.is_event)


def trace_events(name: str) -> list[EslEvent]:
    return list(_trace_events(name))


def sent_commands(name: str) -> list[bytes]:
    lines = (TRACES / f"{name}.timeline.jsonl").read_text("utf-8").splitlines()[1:]
    return [r["data"].encode() for r in map(json.loads, lines) if r["dir"] == "sent"]


def shape(event: EslEvent) -> list[str]:
    """The header names in order, without the channel variables."""
    return [name for name, _ in event.headers if not name.startswith("variable_")]


def leg_of(event: EslEvent) -> str:
    return (event.get("Channel-Name") or "").rsplit("/", 1)[-1].split("@")[0]


def first_by_leg(events: list[EslEvent]) -> dict[tuple[str, str | None, str], EslEvent]:
    firsts: dict[tuple[str, str | None, str], EslEvent] = {}
    for event in events:
        firsts.setdefault((event.name, event.subclass, leg_of(event)), event)
    return firsts


class RawClient:
    """A bare ESL client: bytes out, decoded messages in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = EslDecoder()
        self.messages: list[EslMessage] = []
        self.raw = bytearray()
        self.closed = False

    async def send(self, data: bytes, settle: float = 0.01, *, reply: bool = True) -> None:
        """Write a command; wait for its reply (if one is expected), then ``settle`` more."""
        replies = self.replies()
        self.writer.write(data)
        if reply:
            await self.read_for(1.0, until=lambda: self.replies() > replies)
        await self.read_for(settle)

    def replies(self) -> int:
        return sum(1 for m in self.messages if not m.is_event)

    async def read_for(self, seconds: float, until: Callable[[], bool] | None = None) -> None:
        try:
            async with asyncio.timeout(seconds):
                while not self.closed and not (until is not None and until()):
                    data = await self.reader.read(65536)
                    self.raw += data
                    self.decoder.feed(data)
                    while (message := self.decoder.next_message()) is not None:
                        self.messages.append(message)
                    self.closed = not data
        except TimeoutError:
            pass

    def events(self) -> list[EslEvent]:
        return [m.event() for m in self.messages if m.is_event]


@pytest.fixture
async def fs() -> AsyncIterator[FakeFreeSwitch]:
    async with FakeFreeSwitch(time_scale=0.001) as fake:
        yield fake


async def connect(fs: FakeFreeSwitch, *, subscribe: str | None = "event plain ALL") -> RawClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", fs.port)
    client = RawClient(reader, writer)
    await client.send(encode_command("auth ClueCon"))
    if subscribe:
        await client.send(encode_command(subscribe))
    return client


def assert_same_shapes(fake: list[EslEvent], trace: list[EslEvent]) -> None:
    """Every event the fake sends has the header names, in order, of the same traced event."""
    traced = first_by_leg(trace)
    compared = 0
    for key, event in first_by_leg(fake).items():
        if key in traced:
            assert shape(event) == shape(traced[key]), key
            compared += 1
    assert compared >= 5


# -- inbound protocol -----------------------------------------------------------------------


async def test_bad_password_exchange_is_byte_exact_with_trace_01a(fs: FakeFreeSwitch) -> None:
    """api before auth, then a wrong password: the same bytes as the real switch, then close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fs.port)
    client = RawClient(reader, writer)
    for command in sent_commands("01a-esl-auth-bad"):
        await client.send(command)
    await client.read_for(0.5)
    assert client.closed
    assert bytes(client.raw) == raw_bytes("01a-esl-auth-bad")


async def test_command_replies_match_trace_01b(fs: FakeFreeSwitch) -> None:
    """Replaying 01b's commands gives the same reply texts (job ids aside)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fs.port)
    client = RawClient(reader, writer)
    for command in sent_commands("01b-esl-basics-plain"):
        await client.send(command)
    await client.read_for(0.3)

    def replies(messages: list[EslMessage]) -> list[str]:
        out = []
        for m in messages:
            if m.content_type == "command/reply":
                text = m.reply_text or ""
                out.append(text.split(":")[0] if m.job_uuid else text)
            elif m.content_type == "api/response" and m.body_text.startswith("-ERR"):
                out.append(m.body_text)
        return out

    assert replies(client.messages) == replies(trace_messages("01b-esl-basics-plain"))
    assert client.closed


async def test_client_job_uuid_is_honoured_and_the_job_body_is_framed(fs: FakeFreeSwitch) -> None:
    """bgapi with Job-UUID: the reply and the BACKGROUND_JOB carry it; the body is the output."""
    client = await connect(fs)
    await client.send(b"bgapi version\nJob-UUID: 11111111-2222-3333-4444-555555555555\n\n")
    reply = next(m for m in client.messages if m.job_uuid)
    assert reply.reply_text == "+OK Job-UUID: 11111111-2222-3333-4444-555555555555"
    job = next(e for e in client.events() if e.name == "BACKGROUND_JOB")
    traced = next(e for e in trace_events("01b-esl-basics-plain") if e.name == "BACKGROUND_JOB")
    assert shape(job) == shape(traced)
    assert job.body == (
        "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit "
        "(git a88d069 2024-08-02 21:02:27Z 64bit)\n"
    )


async def test_sendevent_comes_back_as_in_trace_01d(fs: FakeFreeSwitch) -> None:
    """Our CUSTOM event returns with the client's headers first and both Content-Lengths."""
    client = await connect(fs, subscribe="event plain CUSTOM lab::test")
    await client.send(sent_commands("01d-esl-log-and-sendevent")[5])
    echoed = client.events()[0]
    traced = trace_events("01d-esl-log-and-sendevent")[0]
    assert shape(echoed) == shape(traced)
    assert echoed.body == traced.body
    assert echoed["Command"] == "sendevent CUSTOM"


async def test_heartbeat_comes_every_interval_with_re_schedule() -> None:
    """HEARTBEAT then RE_SCHEDULE, at the configured interval, shaped like trace 01b."""
    async with FakeFreeSwitch(heartbeat_interval_s=0.05) as fs:
        client = await connect(fs)
        await client.read_for(0.3)
    names = [e.name for e in client.events()]
    assert names.count("HEARTBEAT") >= 3
    assert names[names.index("HEARTBEAT") + 1] == "RE_SCHEDULE"
    traced = trace_events("01b-esl-basics-plain")
    heartbeat = next(e for e in client.events() if e.name == "HEARTBEAT")
    assert shape(heartbeat) == shape(traced[0])


async def test_json_subscription_sends_the_same_events_as_json(fs: FakeFreeSwitch) -> None:
    """event json ALL: text/event-json bodies that decode to the plain events' headers."""
    client = await connect(fs, subscribe="event json ALL")
    fs.inbound_call("79001234567", "Иван")
    await client.read_for(0.05)
    kinds = {m.content_type for m in client.messages if m.is_event}
    assert kinds == {"text/event-json"}
    create = next(e for e in client.events() if e.name == "CHANNEL_CREATE")
    assert create["Caller-Caller-ID-Name"] == "Иван"


async def test_filters_and_nixevent_narrow_the_subscription(fs: FakeFreeSwitch) -> None:
    """filter Unique-ID keeps one channel's events; noevents stops them."""
    client = await connect(fs)
    first = fs.inbound_call("100")
    await client.send(encode_command(f"filter Unique-ID {first.uuid}"))
    client.messages.clear()
    fs.inbound_call("200")
    fs.hangup(first)
    await client.read_for(0.05)
    assert {e.unique_id for e in client.events()} == {first.uuid}
    await client.send(encode_command("noevents"))
    client.messages.clear()
    fs.inbound_call("300")
    await client.read_for(0.05)
    assert client.events() == []


async def test_commands_are_recorded_in_order(fs: FakeFreeSwitch) -> None:
    """Every command received is kept with its socket label."""
    client = await connect(fs)
    await client.send(encode_command("api status"))
    assert [c.command.line for c in fs.commands] == [
        "auth ClueCon",
        "event plain ALL",
        "api status",
    ]
    assert fs.commands[0].socket.startswith("inbound-")


# -- channel events ------------------------------------------------------------------------------


async def test_originate_and_playback_produce_trace_02a(fs: FakeFreeSwitch) -> None:
    """bgapi originate ... &playback: the same events in the same order with the same headers."""
    client = await connect(fs)
    await client.send(sent_commands("02a-originate-answer-playback-hangup-plain")[2], settle=0.05)
    fake = [e for e in client.events() if e.name not in NOISE]
    trace = [
        e for e in trace_events("02a-originate-answer-playback-hangup-plain") if e.name not in NOISE
    ]
    assert [e.name for e in fake] == [e.name for e in trace]
    for made, seen in zip(fake, trace, strict=True):
        assert shape(made) == shape(seen), made.name


async def test_bridge_and_callee_hangup_produce_trace_02c(fs: FakeFreeSwitch) -> None:
    """A bridged call whose callee hangs up: each leg's events as in 02c."""
    client = await connect(fs)
    await client.send(sent_commands("02c-originate-bridge-callee-hangs-up-plain")[2], settle=0.05)
    bob = next(ch for ch in fs.model.channels.values() if "bob" in ch.name)
    carol = bob.peer
    assert carol is not None
    fs.hangup(carol)
    await client.read_for(0.05)
    fake = [e for e in client.events() if e.name not in NOISE]
    trace = [
        e for e in trace_events("02c-originate-bridge-callee-hangs-up-plain") if e.name not in NOISE
    ]
    for leg in ("bob", "carol"):
        assert [e.name for e in fake if leg_of(e) == leg] == [
            e.name for e in trace if leg_of(e) == leg
        ], leg
    assert_same_shapes(fake, trace)
    bridge = next(e for e in fake if e.name == "CHANNEL_BRIDGE")
    assert bridge["Bridge-B-Unique-ID"] == carol.uuid
    assert bridge["Caller-Caller-ID-Number"] == "bob"  # the originated leg's caller id flipped


async def test_media_timeout_hangs_up_the_dead_leg_and_marks_the_survivor(
    fs: FakeFreeSwitch,
) -> None:
    """die(): B ends MEDIA_TIMEOUT, A ends NORMAL_CLEARING with bridge_hangup_cause (07b)."""
    client = await connect(fs)
    await client.send(
        sent_commands("07b-bridged-call-far-end-dies-media-timeout-plain")[2], settle=0.05
    )
    ivan = next(ch for ch in fs.model.channels.values() if "ivan" in ch.name)
    assert ivan.peer is not None
    fs.die(ivan.peer)
    await client.read_for(0.05)
    fake = [e for e in client.events() if e.name not in NOISE]
    trace = trace_events("07b-bridged-call-far-end-dies-media-timeout-plain")
    assert_same_shapes(fake, trace)
    judy_done = next(e for e in fake if e.name == "CHANNEL_HANGUP_COMPLETE" and leg_of(e) == "judy")
    ivan_done = next(e for e in fake if e.name == "CHANNEL_HANGUP_COMPLETE" and leg_of(e) == "ivan")
    assert judy_done["Hangup-Cause"] == "MEDIA_TIMEOUT"
    assert judy_done.variable("sip_hangup_disposition") == "send_bye"
    assert ivan_done["Hangup-Cause"] == "NORMAL_CLEARING"
    assert ivan_done.variable("bridge_hangup_cause") == "MEDIA_TIMEOUT"


async def test_dying_without_media_timeout_changes_nothing(fs: FakeFreeSwitch) -> None:
    """Without media_timeout a vanished far end leaves the call up and silent."""
    a = fs.inbound_call("100")
    b = await fs.bridge(a, "sofia/internal/agent@127.0.0.1")
    assert b is not None
    fs.die(b, media_timeout=False)
    assert a.alive and b.alive


async def test_hold_and_unhold_produce_trace_03a(fs: FakeFreeSwitch) -> None:
    """hold(): CALLSTATE HELD + CHANNEL_HOLD on the holder, hold music on its peer (03a)."""
    client = await connect(fs)
    await client.send(sent_commands("03a-hold-unhold-broadcast-to-held-leg-plain")[2], settle=0.05)
    alice = next(ch for ch in fs.model.channels.values() if "alice" in ch.name)
    fs.hold(alice)
    fs.unhold(alice)
    await client.read_for(0.05)
    fake = [e for e in client.events() if e.name not in NOISE]
    assert_same_shapes(fake, trace_events("03a-hold-unhold-broadcast-to-held-leg-plain"))
    names = [(e.name, leg_of(e)) for e in fake]
    assert names.index(("CHANNEL_HOLD", "alice")) < names.index(("PLAYBACK_START", "dave"))
    moh = next(e for e in fake if e.name == "PLAYBACK_START" and leg_of(e) == "dave")
    assert moh["Playback-File-Path"] == "local_stream://moh"


async def test_talk_fires_on_the_leg_the_speech_is_sent_to(fs: FakeFreeSwitch) -> None:
    """erin speaks: TALK/NOTALK fire on frank's channel, shaped as in trace 04."""
    client = await connect(fs)
    await client.send(sent_commands("04-talk-notalk-rtp-vad-plain")[2], settle=0.05)
    erin = next(ch for ch in fs.model.channels.values() if "erin" in ch.name)
    fs.talk(erin)
    fs.talk(erin, talking=False)
    await client.read_for(0.05)
    talks = [e for e in client.events() if e.name in ("TALK", "NOTALK")]
    assert [(e.name, leg_of(e)) for e in talks] == [("TALK", "frank"), ("NOTALK", "frank")]
    traced = next(e for e in trace_events("04-talk-notalk-rtp-vad-plain") if e.name == "TALK")
    assert shape(talks[0]) == shape(traced)


async def test_avmd_beep_arrives_twice_with_one_sequence(fs: FakeFreeSwitch) -> None:
    """avmd::beep: a bare copy and a full copy sharing Event-Sequence (trace 06)."""
    client = await connect(fs)
    await client.send(sent_commands("06-avmd-voicemail-beep-plain")[2], settle=0.05)
    hank = next(ch for ch in fs.model.channels.values() if "hank" in ch.name)
    fs.avmd_beep(hank)
    await client.read_for(0.05)
    beeps = [e for e in client.events() if e.subclass == "avmd::beep"]
    traced = [e for e in trace_events("06-avmd-voicemail-beep-plain") if e.subclass == "avmd::beep"]
    assert [shape(e) for e in beeps] == [shape(e) for e in traced]
    assert beeps[0].sequence == beeps[1].sequence


@pytest.mark.parametrize(
    ("outcome", "body", "disposition"),
    [
        (OriginateOutcome.ANSWER, "+OK {uuid}\n", None),
        (OriginateOutcome.BUSY, "-ERR USER_BUSY\n", "recv_refuse"),
        (OriginateOutcome.REJECT, "-ERR CALL_REJECTED\n", "recv_refuse"),
        (OriginateOutcome.NO_ANSWER, "-ERR NO_ANSWER\n", "send_cancel"),
        (OriginateOutcome.EARLY_NO_ANSWER, "-ERR NO_ANSWER\n", "send_cancel"),
        (OriginateOutcome.UNREACHABLE, "-ERR NORMAL_TEMPORARY_FAILURE\n", "recv_refuse"),
    ],
)
async def test_originate_outcomes_match_trace_07a(
    fs: FakeFreeSwitch, outcome: OriginateOutcome, body: str, disposition: str | None
) -> None:
    """Each scripted outcome gives the BACKGROUND_JOB body and hangup data of 07a."""
    fs.set_originate_outcome("leo", outcome)
    client = await connect(fs)
    uuid = "27b8c8d4-56b7-467b-9239-537229338dfc"
    await client.send(
        encode_command(
            f"bgapi originate {{origination_uuid={uuid},originate_timeout=5}}"
            "sofia/internal/leo@127.0.0.1:5190 &park()"
        ),
        settle=0.05,
    )
    job = next(e for e in client.events() if e.name == "BACKGROUND_JOB")
    assert job.body == body.format(uuid=uuid)
    assert job["Job-Command-Arg"].endswith("&park()")
    hangups = [e for e in client.events() if e.name == "CHANNEL_HANGUP"]
    if disposition is None:
        assert not hangups
    else:
        assert hangups[0].variable("sip_hangup_disposition") == disposition
        assert hangups[0]["Hangup-Cause"] == body.removeprefix("-ERR ").strip()


async def test_escaped_originate_variables_arrive_intact(fs: FakeFreeSwitch) -> None:
    """A hostile caller name in {origination_caller_id_name=...} is the channel's name."""
    name = "O'Brien, Jr. | {x} ;"
    client = await connect(fs)
    dial = channel_variables({"origination_caller_id_name": name}) + "sofia/internal/kate@h"
    await client.send(encode_command(f"api originate {quote_api_arg(dial)} &park()"), settle=0.05)
    create = next(e for e in client.events() if e.name == "CHANNEL_CREATE")
    assert create["Caller-Caller-ID-Name"] == name


async def test_show_channels_as_json_lists_live_channels(fs: FakeFreeSwitch) -> None:
    """show channels as json: row_count and one row per live channel."""
    client = await connect(fs, subscribe=None)
    ch = fs.inbound_call("79001234567", "Ivan")
    await client.send(encode_command("api show channels as json"))
    document = json.loads(client.messages[-1].body_text)
    assert document["row_count"] == 1
    assert document["rows"][0]["uuid"] == ch.uuid


async def test_uuid_broadcast_plays_on_the_named_leg(fs: FakeFreeSwitch) -> None:
    """uuid_broadcast ... aleg: +OK Message sent, then the playback's events on that leg."""
    client = await connect(fs)
    ch = fs.inbound_call("100")
    await client.send(encode_command(f"api uuid_broadcast {ch.uuid} lab/bcast1400.wav aleg"))
    await client.read_for(0.05)
    response = next(m for m in client.messages if m.content_type == "api/response")
    assert response.body_text == "+OK Message sent\n"
    names = [e.name for e in client.events() if e.unique_id == ch.uuid]
    tail = names[names.index("CHANNEL_EXECUTE", names.index("CHANNEL_PARK")) :]
    assert tail[:4] == [
        "CHANNEL_EXECUTE",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "CHANNEL_EXECUTE_COMPLETE",
    ]


async def test_uuid_break_stops_a_running_playback(fs: FakeFreeSwitch) -> None:
    """uuid_break ends the playback at once (PLAYBACK_STOP, EXECUTE_COMPLETE)."""
    fs.playback_s = 1000.0
    client = await connect(fs)
    ch = fs.inbound_call("100")
    await client.send(encode_command(f"api uuid_broadcast {ch.uuid} lab/long.wav aleg"))
    assert fs.running_app(ch) == "playback"
    await client.send(encode_command(f"api uuid_break {ch.uuid} all"))
    assert fs.running_app(ch) is None
    assert [e.name for e in client.events()][-2:] == ["PLAYBACK_STOP", "CHANNEL_EXECUTE_COMPLETE"]


async def test_uuid_hold_and_off_toggle_hold(fs: FakeFreeSwitch) -> None:
    """uuid_hold puts a leg on hold (CHANNEL_HOLD), uuid_hold off releases it."""
    client = await connect(fs)
    a = fs.inbound_call("100")
    await fs.bridge(a, "sofia/internal/agent@127.0.0.1")
    await client.send(encode_command(f"api uuid_hold {a.uuid}"))
    assert a.held
    await client.send(encode_command(f"api uuid_hold off {a.uuid}"))
    assert not a.held
    names = [e.name for e in client.events() if e.unique_id == a.uuid]
    assert names.index("CHANNEL_HOLD") < names.index("CHANNEL_UNHOLD")


async def test_uuid_transfer_takes_a_leg_out_of_its_bridge(fs: FakeFreeSwitch) -> None:
    """uuid_transfer: the leg leaves its bridge (the peer hangs up) and parks at the target."""
    client = await connect(fs)
    a = fs.inbound_call("100")
    b = await fs.bridge(a, "sofia/internal/agent@127.0.0.1")
    assert b is not None
    await client.send(encode_command(f"api uuid_transfer {a.uuid} ivr XML default"))
    assert a.alive and not b.alive
    assert a.destination == "ivr"
    assert any(e.name == "CHANNEL_UNBRIDGE" for e in client.events())


async def test_uuid_commands_on_a_missing_channel_fail_like_freeswitch(fs: FakeFreeSwitch) -> None:
    """Unknown uuids answer -ERR No such channel!; unknown commands name themselves."""
    client = await connect(fs, subscribe=None)
    await client.send(encode_command("api uuid_displace 00000000 start x.wav 0 mux"))
    await client.send(encode_command("api bogus_command arg1"))
    bodies = [m.body_text for m in client.messages if m.content_type == "api/response"]
    assert bodies == ["-ERR No such channel!\n", "-ERR bogus_command Command not found!\n"]


# -- faults ------------------------------------------------------------------------------------


async def test_frozen_switch_answers_nothing_until_thawed(fs: FakeFreeSwitch) -> None:
    """freeze(): commands get no reply and events stop; thaw() resumes."""
    client = await connect(fs, subscribe=None)
    fs.freeze()
    await client.send(encode_command("api status"), settle=0.1, reply=False)
    assert [m.content_type for m in client.messages][-1] == "command/reply"
    fs.thaw()
    await client.send(encode_command("api status"))
    assert client.messages[-1].content_type == "api/response"


async def test_drop_connections_resets_the_sockets(fs: FakeFreeSwitch) -> None:
    """drop_connections() closes every socket at once."""
    client = await connect(fs)
    fs.drop_connections()
    await client.read_for(0.2)
    assert client.closed


async def test_send_raw_writes_bytes_verbatim(fs: FakeFreeSwitch) -> None:
    """send_raw() puts exactly those bytes on authenticated sockets."""
    client = await connect(fs, subscribe=None)
    before = len(client.raw)
    fs.send_raw(b"Content-Type: text/x-test\n\n")
    await client.read_for(0.05)
    assert bytes(client.raw[before:]) == b"Content-Type: text/x-test\n\n"


# -- the outbound-socket side --------------------------------------------------------------------


async def run_outbound(fs: FakeFreeSwitch, trace: str, mode: str) -> tuple[list[EslMessage], str]:
    """Play a trace's server side against the fake's outbound driver; what came back."""
    received: list[EslMessage] = []
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = RawClient(reader, writer)
        for traced in sent_commands(trace):
            command = traced
            if b"uuid_getvar" in traced:
                # The traced uuid was the real call's; ask about this call.
                uuid = client.messages[0].channel_data().unique_id
                command = f"api uuid_getvar {uuid} lab_var\n\n".encode()
            await client.send(command)
        await client.read_for(0.15)
        received.extend(client.messages)
        writer.close()
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    call = await fs.outbound_call(
        "127.0.0.1",
        server.sockets[0].getsockname()[1],
        caller_number="gina",
        caller_name="gina",
        mode=mode,
    )
    async with asyncio.timeout(5):
        await done.wait()
    server.close()
    await server.wait_closed()
    return received, call.channel.uuid


async def test_outbound_session_matches_trace_05a(fs: FakeFreeSwitch) -> None:
    """connect, myevents, linger, getvar, sendmsg and hangup answer as in 05a."""
    fake, uuid = await run_outbound(fs, "05a-outbound-socket-async-full", "async")
    trace = trace_messages("05a-outbound-socket-async-full")
    connect_reply, traced_connect = fake[0], trace[0]
    assert [n for n, _ in connect_reply.headers if not n.startswith("variable_")] == [
        n for n, _ in traced_connect.headers if not n.startswith("variable_")
    ]
    assert connect_reply.reply_text == "+OK\n"

    def replies(messages: list[EslMessage]) -> list[str | None]:
        return [m.reply_text for m in messages if m.content_type == "command/reply"][1:]

    assert replies(fake) == replies(trace)

    def tail(messages: list[EslMessage]) -> list[str]:
        names = [m.event().name if m.is_event else m.content_type for m in messages]
        return names[names.index("CHANNEL_HANGUP") :]

    assert tail(fake) == tail(trace)
    sent_tags = ["87e0acde-3973-44ac-9f16-7a5d8ce58345", "5a3009eb-74fb-414d-b433-78ffa6ed52c2"]
    completed = [m.event().get("Application-UUID") for m in fake if m.is_event]
    assert all(tag in completed for tag in sent_tags)
    assert fake[-2].is_linger_notice
    assert fake[-2].linger_time == 5
    assert fake[-1].disposition == "disconnect"
    assert fake[-1]["Controlled-Session-UUID"] == uuid


async def test_sync_outbound_replies_after_the_application(fs: FakeFreeSwitch) -> None:
    """Sync mode (05b): +OK follows the application; no_such_app hangs the channel up."""
    fake, _uuid = await run_outbound(fs, "05b-outbound-socket-sync-full", "sync")
    names = [m.event().name if m.is_event else m.reply_text for m in fake]
    answer_reply = names.index("+OK", names.index("+OK will linger"))
    assert names[answer_reply + 1 : answer_reply + 3] == ["CHANNEL_EXECUTE", "CHANNEL_ANSWER"]
    hangup = next(m.event() for m in fake if m.is_event and m.event().name == "CHANNEL_HANGUP")
    assert hangup["Hangup-Cause"] == "DESTINATION_OUT_OF_ORDER"
    assert any(m.is_linger_notice and m.linger_time == -1 for m in fake)

"""The ESL codec against the FreeSWITCH 1.10.12 transcripts and against hostile input."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx_agent.errors import ProtocolError, UnsafeValueError
from pbx_agent.wire.esl import (
    DISCONNECT_GOODBYE,
    EslCommand,
    EslCommandDecoder,
    EslDecoder,
    EslEvent,
    EslMessage,
    EslProtocolError,
    decode_json_event,
    decode_plain_event,
    decode_xml_event,
    encode_api,
    encode_api_response,
    encode_auth,
    encode_auth_request,
    encode_bgapi,
    encode_channel_data_reply,
    encode_command,
    encode_command_reply,
    encode_disconnect_notice,
    encode_event,
    encode_event_json_body,
    encode_event_plain_body,
    encode_execute,
    encode_hangup,
    encode_message,
    encode_sendmsg,
    url_encode,
)

TRACES = Path(__file__).resolve().parents[1] / "traces" / "freeswitch"
RAW_MARK = b"#=== BEGIN RAW ===\n"
RECV = sorted(TRACES.glob("*.recv.txt"))
SENT = sorted(TRACES.glob("*.sent.txt"))
SMALL_RECV = [p for p in RECV if p.stat().st_size < 60_000]


def raw_bytes(path: Path) -> bytes:
    return path.read_bytes().split(RAW_MARK, 1)[1]


def trace_name(path: Path) -> str:
    return path.name.replace(".recv.txt", "").replace(".sent.txt", "")


def timeline_records(path: Path, direction: str) -> list[bytes]:
    lines = (TRACES / f"{trace_name(path)}.timeline.jsonl").read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines[1:]]
    return [r["data"].encode("utf-8") for r in records if r["dir"] == direction]


def decode_all(data: bytes, chunks: list[int] | None = None) -> list[EslMessage]:
    decoder = EslDecoder()
    out: list[EslMessage] = []
    sizes = iter(chunks or [len(data) or 1])
    pos = 0
    while pos < len(data):
        size = next(sizes, 4096)
        decoder.feed(data[pos : pos + size])
        pos += size
        while (message := decoder.next_message()) is not None:
            out.append(message)
    decoder.feed(b"")
    while (message := decoder.next_message()) is not None:
        out.append(message)
    assert decoder.at_eof
    return out


def decode_commands(data: bytes) -> list[EslCommand]:
    decoder = EslCommandDecoder()
    decoder.feed(data)
    decoder.feed(b"")
    out: list[EslCommand] = []
    while (command := decoder.next_command()) is not None:
        out.append(command)
    assert decoder.at_eof
    return out


def trace_messages(name: str) -> list[EslMessage]:
    return decode_all(raw_bytes(TRACES / f"{name}.recv.txt"))


def trace_events(name: str) -> list[EslEvent]:
    return [m.event() for m in trace_messages(name) if m.is_event]


# -- every trace ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECV, ids=trace_name)
def test_received_trace_splits_into_the_timeline_messages(path: Path) -> None:
    """Each .recv.txt decodes to exactly the messages the timeline shows, re-framed byte-exact."""
    messages = decode_all(raw_bytes(path))
    assert [encode_message(m) for m in messages] == timeline_records(path, "recv")


@pytest.mark.parametrize("path", RECV, ids=trace_name)
def test_received_trace_decodes_the_same_in_random_chunks(path: Path) -> None:
    """Chunk boundaries anywhere (bodies, blank lines, UTF-8) do not change the result."""
    data = raw_bytes(path)
    rng = random.Random(path.name)
    chunks = [rng.randint(1, 3000) for _ in range(len(data))]
    assert decode_all(data, chunks) == decode_all(data)


@pytest.mark.parametrize("path", SMALL_RECV, ids=trace_name)
def test_received_trace_decodes_the_same_fed_one_byte_at_a_time(path: Path) -> None:
    """Feeding one byte at a time gives the same messages."""
    data = raw_bytes(path)
    assert decode_all(data, [1] * len(data)) == decode_all(data)


@pytest.mark.parametrize("path", SENT, ids=trace_name)
def test_sent_trace_splits_into_commands_and_reencodes(path: Path) -> None:
    """Each .sent.txt decodes to the client's commands, which re-encode byte-exact."""
    commands = decode_commands(raw_bytes(path))
    encoded = [encode_command(c.line, c.headers, c.body) for c in commands]
    assert encoded == timeline_records(path, "sent")


@pytest.mark.parametrize("path", RECV, ids=trace_name)
def test_every_event_body_reencodes_as_freeswitch_serialized_it(path: Path) -> None:
    """Plain and json event bodies decode and re-encode to the same bytes."""
    for message in decode_all(raw_bytes(path)):
        if message.content_type == "text/event-plain":
            assert encode_event_plain_body(message.event()) == message.body
        elif message.content_type == "text/event-json":
            assert encode_event_json_body(message.event()) == message.body
        elif message.is_event:
            assert message.event().name


# -- what the messages mean ----------------------------------------------------------------------


def test_reply_text_ok_and_error_replies() -> None:
    """command/reply carries its result in Reply-Text; ok is true only for +OK."""
    messages = trace_messages("01a-esl-auth-bad")
    assert messages[0].content_type == "auth/request"
    assert messages[1].reply_text == "-ERR command not found"
    assert not messages[1].ok
    accepted = trace_messages("01b-esl-basics-plain")[1]
    assert accepted.ok
    assert accepted.reply_text == "+OK accepted"


def test_bad_auth_ends_with_the_goodbye_disconnect_notice() -> None:
    """After -ERR invalid comes a text/disconnect-notice with the 67-byte goodbye."""
    notice = trace_messages("01a-esl-auth-bad")[-1]
    assert notice.is_disconnect_notice
    assert not notice.is_linger_notice
    assert notice.body_text == DISCONNECT_GOODBYE
    assert len(notice.body) == 67


def test_api_response_errors_are_inside_the_body() -> None:
    """api/response bodies carry -ERR text; the outer message is a normal response."""
    messages = trace_messages("01b-esl-basics-plain")
    bodies = [m.body_text for m in messages if m.content_type == "api/response"]
    assert bodies[1] == "-ERR bogus_command Command not found!\n"
    assert bodies[2] == "-ERR No such channel!\n"


def test_bgapi_reply_carries_a_separate_job_uuid_header() -> None:
    """The bgapi reply has Reply-Text '+OK Job-UUID: x' and a Job-UUID header."""
    replies = [m for m in trace_messages("01b-esl-basics-plain") if m.job_uuid]
    assert replies[1].job_uuid == "11111111-2222-3333-4444-555555555555"
    assert replies[1].reply_text == "+OK Job-UUID: 11111111-2222-3333-4444-555555555555"


def test_background_job_plain_body_uses_the_inner_content_length() -> None:
    """A BACKGROUND_JOB's result is its body, framed by the inner Content-Length."""
    jobs = [e for e in trace_events("01b-esl-basics-plain") if e.name == "BACKGROUND_JOB"]
    assert jobs[1].job_uuid == "11111111-2222-3333-4444-555555555555"
    assert jobs[1].body is not None
    assert jobs[1].body.startswith("FreeSWITCH Version 1.10.12-release")
    assert jobs[1].headers[-1] == ("Content-Length", str(len(jobs[1].body)))


def test_background_job_json_body_is_under_underscore_body() -> None:
    """In json the job result is `_body`, and the Content-Length stays the last header."""
    job = next(e for e in trace_events("01c-esl-basics-json") if e.name == "BACKGROUND_JOB")
    assert job.body is not None
    assert job.body.startswith("UP 0 years")
    assert job.headers[-1] == ("Content-Length", "370")
    assert "_body" not in job


def test_plain_values_are_url_decoded() -> None:
    """%3A, %20, %2B in plain values decode; '+' and '~' stay as they are."""
    heartbeat = trace_events("01b-esl-basics-plain")[0]
    assert heartbeat.name == "HEARTBEAT"
    assert heartbeat["FreeSWITCH-IPv6"] == "fd00::2"
    assert heartbeat["Event-Date-GMT"] == "Sun, 22 Nov 2026 09:30:16 GMT"
    assert (
        heartbeat["FreeSWITCH-Version"] == "1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit"
    )


def test_plain_and_json_heartbeats_have_the_same_header_names() -> None:
    """The two formats carry the same headers in the same order."""
    plain = next(e for e in trace_events("01b-esl-basics-plain") if e.name == "HEARTBEAT")
    json_ = next(e for e in trace_events("01c-esl-basics-json") if e.name == "HEARTBEAT")
    assert [n for n, _ in plain.headers] == [n for n, _ in json_.headers]


def test_repeated_plain_headers_are_all_kept() -> None:
    """CHANNEL_HANGUP_COMPLETE names Hangup-Cause twice; get returns the first, get_all both."""
    event = next(
        e
        for e in trace_events("02a-originate-answer-playback-hangup-plain")
        if e.name == "CHANNEL_HANGUP_COMPLETE"
    )
    assert event.get_all("Hangup-Cause") == ["NORMAL_CLEARING", "NORMAL_CLEARING"]
    assert event.get("hangup-cause") == "NORMAL_CLEARING"


def test_json_duplicate_keys_are_all_kept() -> None:
    """The json CHANNEL_HANGUP_COMPLETE keeps both Hangup-Cause keys."""
    event = next(
        e
        for e in trace_events("02b-originate-answer-playback-hangup-json")
        if e.name == "CHANNEL_HANGUP_COMPLETE"
    )
    assert len(event.get_all("Hangup-Cause")) == 2


def test_echoed_sendevent_keeps_both_content_lengths_and_its_body() -> None:
    """Our own CUSTOM event comes back with two Content-Length headers and its 34-byte body."""
    event = trace_events("01d-esl-log-and-sendevent")[0]
    assert event.name == "CUSTOM"
    assert event.subclass == "lab::test"
    assert event["X-Lab-Header"] == "some value with spaces"
    assert event.get_all("Content-Length") == ["34", "34"]
    assert event.body == "hello from the client\nsecond line\n"


def test_xml_event_gives_headers_and_the_body_cut_to_its_length() -> None:
    """text/event-xml: URL-decoded header elements; the indented body is cut to 114 bytes."""
    events = [
        m.event()
        for m in trace_messages("01c-esl-basics-json")
        if m.content_type == "text/event-xml"
    ]
    api, job = events
    assert api.name == "API"
    assert api["FreeSWITCH-IPv6"] == "fd00::2"
    assert job.body is not None
    assert job.body.endswith("64bit)\n")
    assert len(job.body.encode()) == 114
    assert job.headers[-1] == ("Content-Length", "114")


def test_log_data_message_has_headers_after_its_content_length() -> None:
    """log/data puts Log-Level etc. after Content-Length; the log line is the body."""
    log = next(
        m for m in trace_messages("01d-esl-log-and-sendevent") if m.content_type == "log/data"
    )
    assert log["Log-Level"] == "6"
    assert log["User-Data"] == ""
    assert log.body_text.endswith("Timezone reloaded 0 definitions\n")


def test_event_helpers_expose_channel_fields_and_variables() -> None:
    """unique_id, sequence, variables (prefix stripped) and variable() read the channel data."""
    event = next(
        e
        for e in trace_events("02a-originate-answer-playback-hangup-plain")
        if e.name == "CHANNEL_HANGUP_COMPLETE"
    )
    assert event.unique_id == "940d5350-1097-4f52-baad-cc67445ead47"
    assert event.sequence is not None
    assert event.variables["sip_hangup_disposition"] == "send_bye"
    assert event.variable("sip_hangup_disposition") == "send_bye"
    assert event.variable("no_such_variable") is None


def test_outbound_connect_reply_is_channel_data_with_encoded_reply_text() -> None:
    """The connect reply is a CHANNEL_DATA header block; Reply-Text %2BOK%0A means +OK."""
    connect = trace_messages("05a-outbound-socket-async-full")[0]
    assert connect.is_channel_data
    assert connect.content_type == "command/reply"
    assert connect["Reply-Text"] == "%2BOK%0A"
    assert connect.reply_text == "+OK\n"
    assert connect.ok
    data = connect.channel_data()
    assert data.name == "CHANNEL_DATA"
    assert data["Channel-Name"] == "sofia/internal/gina@127.0.0.1"
    assert data["Socket-Mode"] == "async"
    assert data["Control"] == "full"
    assert data.variable("current_application_data") == "127.0.0.1:8084 async full"


def test_outbound_getvar_reply_is_the_bare_value_or_an_error() -> None:
    """getvar answers the value in Reply-Text, or -ERR command not found when empty."""
    replies = [
        m.reply_text
        for m in trace_messages("05a-outbound-socket-async-full")[1:8]
        if m.content_type == "command/reply"
    ]
    assert replies[:4] == [
        "+OK Events Enabled",
        "+OK will linger 5 seconds",
        "gina",
        "-ERR command not found",
    ]


def test_linger_and_final_disconnect_notices() -> None:
    """After hangup: a linger notice (Linger-Time 5, no body), later the goodbye notice."""
    messages = trace_messages("05a-outbound-socket-async-full")
    linger, final = messages[-2], messages[-1]
    assert linger.is_linger_notice
    assert linger.linger_time == 5
    assert linger["Channel-Name"] == "sofia/internal/gina@127.0.0.1"
    assert linger.body == b""
    assert final.is_disconnect_notice
    assert final.disposition == "disconnect"
    assert final.body_text == DISCONNECT_GOODBYE


def test_sync_linger_without_timeout_reports_minus_one() -> None:
    """`linger` with no time gives Linger-Time -1 (until the client closes)."""
    notice = next(m for m in trace_messages("05b-outbound-socket-sync-full") if m.is_linger_notice)
    assert notice.linger_time == -1


def test_execute_complete_carries_our_event_uuid_as_application_uuid() -> None:
    """CHANNEL_EXECUTE_COMPLETE's Application-UUID is the Event-UUID of our sendmsg."""
    completes = [
        e
        for e in trace_events("05a-outbound-socket-async-full")
        if e.name == "CHANNEL_EXECUTE_COMPLETE"
    ]
    assert completes[0]["Application"] == "answer"
    assert completes[0]["Application-UUID"] == "87e0acde-3973-44ac-9f16-7a5d8ce58345"


def test_avmd_events_arrive_twice_with_the_same_sequence() -> None:
    """avmd::beep comes as a bare copy and a full copy sharing Event-Sequence."""
    beeps = [e for e in trace_events("06-avmd-voicemail-beep-plain") if e.subclass == "avmd::beep"]
    assert len(beeps) == 2
    assert beeps[0].sequence == beeps[1].sequence
    assert beeps[0]["Beep-Status"] == "DETECTED"
    assert "Channel-Name" not in beeps[0]
    assert "Channel-Name" in beeps[1]


# -- malformed input --------------------------------------------------------------------------------


def test_garbage_block_raises_naming_the_frame_then_decoding_goes_on() -> None:
    """A header line without ':' is consumed, reported, and the next message decodes."""
    decoder = EslDecoder()
    decoder.feed(b"hello world\n\nContent-Type: command/reply\nReply-Text: +OK\n\n")
    with pytest.raises(EslProtocolError, match="hello world"):
        decoder.next_message()
    message = decoder.next_message()
    assert message is not None
    assert message.ok


def test_message_without_content_type_is_a_recoverable_error() -> None:
    """A block of valid headers but no Content-Type is reported and consumed."""
    decoder = EslDecoder()
    decoder.feed(b"Reply-Text: +OK\n\nContent-Type: auth/request\n\n")
    with pytest.raises(EslProtocolError, match="no Content-Type"):
        decoder.next_message()
    message = decoder.next_message()
    assert message is not None
    assert message.content_type == "auth/request"


def test_content_length_shorter_than_the_body_desynchronises_visibly() -> None:
    """A too-small Content-Length leaves the rest of the body to fail as the next frame."""
    decoder = EslDecoder()
    decoder.feed(b"Content-Type: api/response\nContent-Length: 3\n\n+OK accepted\n\n")
    first = decoder.next_message()
    assert first is not None
    assert first.body == b"+OK"
    with pytest.raises(EslProtocolError):
        decoder.next_message()


def test_truncated_body_at_end_of_stream_raises_once() -> None:
    """End of stream inside a body raises once, naming the frame, then the decoder is at EOF."""
    decoder = EslDecoder()
    decoder.feed(b"Content-Type: api/response\nContent-Length: 100\n\nUP 0 years")
    assert decoder.next_message() is None
    decoder.feed(b"")
    with pytest.raises(EslProtocolError, match="10 of 100 bytes"):
        decoder.next_message()
    assert decoder.next_message() is None
    assert decoder.at_eof


def test_truncated_header_block_at_end_of_stream_raises_once() -> None:
    """End of stream inside a header block raises once."""
    decoder = EslDecoder()
    decoder.feed(b"Content-Type: command/re")
    decoder.feed(b"")
    with pytest.raises(EslProtocolError, match="inside a header block"):
        decoder.next_message()
    assert decoder.next_message() is None
    assert decoder.at_eof


@pytest.mark.parametrize("length", ["abc", "-5", "12x", "99999999999"])
def test_unusable_content_length_is_fatal(length: str) -> None:
    """A Content-Length that is not a number or is too large loses framing for good."""
    decoder = EslDecoder(max_body_bytes=1 << 20)
    decoder.feed(f"Content-Type: api/response\nContent-Length: {length}\n\n".encode())
    with pytest.raises(EslProtocolError, match="framing is lost"):
        decoder.next_message()
    assert decoder.broken
    decoder.feed(b"Content-Type: command/reply\nReply-Text: +OK\n\n")
    with pytest.raises(EslProtocolError, match="framing is lost"):
        decoder.next_message()


def test_header_block_growing_past_the_limit_is_fatal() -> None:
    """Bytes without a blank line beyond max_header_bytes stop the decoder; memory stays bounded."""
    decoder = EslDecoder(max_header_bytes=1024)
    decoder.feed(b"Content-Type: text/event-plain\n" + b"X" * 2000)
    with pytest.raises(EslProtocolError, match="max_header_bytes=1024"):
        decoder.next_message()
    assert decoder.broken
    decoder.feed(b"more" * 1000)
    assert len(decoder._buf) == 0


def test_stray_blank_lines_between_messages_are_skipped() -> None:
    """Empty lines before a message are ignored, as FreeSWITCH's own reader does."""
    decoder = EslDecoder()
    decoder.feed(b"\n\nContent-Type: auth/request\n\n")
    message = decoder.next_message()
    assert message is not None
    assert message.content_type == "auth/request"


def test_invalid_utf8_round_trips_byte_exact() -> None:
    """Bytes that are not UTF-8 survive decode and re-encode unchanged."""
    frame = b"Content-Type: command/reply\nReply-Text: caller \xff\xfe\n\n"
    assert [encode_message(m) for m in decode_all(frame)] == [frame]


def test_decoder_rejects_data_after_end_of_stream() -> None:
    """Feeding after EOF is a programming error."""
    decoder = EslDecoder()
    decoder.feed(b"")
    with pytest.raises(ValueError, match="after the end"):
        decoder.feed(b"x")


@pytest.mark.parametrize(
    "body",
    [
        b"Event-Name: X\n",  # no blank line
        b"Event-Name: X\nbroken line\n\n",
        b"Event-Name: X\nContent-Length: 5\n\nabc",
    ],
)
def test_malformed_plain_event_bodies_raise(body: bytes) -> None:
    """Plain bodies without a blank line, with a bad line or a wrong inner length are refused."""
    with pytest.raises(EslProtocolError):
        decode_plain_event(body)


@pytest.mark.parametrize(
    "body", [b"{", b"[1]", b'{"a":{"b":"c"}}', b'{"a":1}', b"[" * 100_000, b"\xff"]
)
def test_malformed_json_event_bodies_raise(body: bytes) -> None:
    """Invalid JSON, non-objects, nested or non-string values and deep nesting are refused."""
    with pytest.raises(EslProtocolError):
        decode_json_event(body)


def test_json_array_value_becomes_repeated_headers() -> None:
    """A multi-value header serialized as an array gives one pair per value."""
    event = decode_json_event(b'{"Event-Name":"X","v":["a","b"]}')
    assert event.get_all("v") == ["a", "b"]


@pytest.mark.parametrize(
    "body",
    [b"<event>", b"<other/>", b'<!DOCTYPE x [<!ENTITY a "b">]><event><headers/></event>'],
)
def test_malformed_or_dangerous_xml_event_bodies_raise(body: bytes) -> None:
    """Broken XML, a wrong root and any declaration are refused."""
    with pytest.raises(EslProtocolError):
        decode_xml_event(body)


def test_event_of_a_non_event_message_raises() -> None:
    """Asking an api/response for its event names the content type."""
    message = EslMessage((("Content-Type", "api/response"),), b"+OK")
    with pytest.raises(EslProtocolError, match="api/response"):
        message.event()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_trace_frames_raise_only_protocol_errors(data: st.DataObject) -> None:
    """Random damage to real frames yields messages or EslProtocolError, never a hang or crash."""
    source = raw_bytes(TRACES / "05b-outbound-socket-sync-full.recv.txt")[:8000]
    mutated = bytearray(source)
    for _ in range(data.draw(st.integers(1, 12))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        action = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = data.draw(st.sampled_from([0x0A, 0x3A, 0x30, 0x39, 0x20, 0xFF, 0x00, 0x41]))
        if action == "replace":
            mutated[pos] = byte
        elif action == "insert":
            mutated.insert(pos, byte)
        else:
            del mutated[pos]
    chunk = data.draw(st.integers(1, 5000))
    decoder = EslDecoder(max_body_bytes=100_000)
    budget = [10 * len(mutated) + 100]
    for start in range(0, len(mutated), chunk):
        decoder.feed(bytes(mutated[start : start + chunk]))
        drain_tolerantly(decoder, budget)
        if decoder.broken:
            break
    decoder.feed(b"")
    drain_tolerantly(decoder, budget)


def drain_tolerantly(decoder: EslDecoder, budget: list[int]) -> None:
    """Read every available message, swallowing protocol errors; fail if it never ends."""
    while not decoder.broken:
        budget[0] -= 1
        assert budget[0] > 0, "the decoder did not make progress"
        try:
            message = decoder.next_message()
        except EslProtocolError:
            continue
        if message is None:
            return
        if message.is_event:
            with contextlib.suppress(EslProtocolError):
                message.event()


def test_protocol_error_is_a_project_protocol_error() -> None:
    """EslProtocolError derives from the project's ProtocolError."""
    assert issubclass(EslProtocolError, ProtocolError)


# -- encoders ----------------------------------------------------------------------------------------


def test_command_encoders_produce_the_traced_bytes() -> None:
    """auth, api, bgapi with Job-UUID produce exactly what the trace client sent."""
    sent = timeline_records(TRACES / "01b-esl-basics-plain.sent.txt", "sent")
    assert encode_auth("ClueCon") == sent[0]
    assert encode_api("status") == sent[1]
    assert encode_bgapi("version", "11111111-2222-3333-4444-555555555555") == sent[7]


def test_execute_and_hangup_encoders_produce_the_traced_sendmsg() -> None:
    """sendmsg execute (with Event-UUID, event-lock) and hangup match trace 05a."""
    sent = timeline_records(TRACES / "05a-outbound-socket-async-full.sent.txt", "sent")
    assert encode_execute("answer", event_uuid="87e0acde-3973-44ac-9f16-7a5d8ce58345") == sent[5]
    assert (
        encode_execute(
            "playback",
            "lab/hello.wav",
            event_lock=True,
            event_uuid="5a3009eb-74fb-414d-b433-78ffa6ed52c2",
        )
        == sent[6]
    )
    assert encode_execute("sleep", "1000") == sent[7]
    assert encode_hangup("NORMAL_CLEARING") == sent[-1]


def test_sendmsg_to_a_uuid_names_it_on_the_command_line() -> None:
    """Inbound sendmsg addresses a channel: `sendmsg <uuid>`."""
    sent = timeline_records(TRACES / "06-avmd-voicemail-beep-plain.sent.txt", "sent")
    assert (
        encode_sendmsg(
            "c02d44f1-cf02-4df2-ac3e-564fa9d83463",
            [("call-command", "execute"), ("execute-app-name", "avmd_start")],
        )
        == sent[3]
    )


def test_command_with_a_body_gets_its_content_length() -> None:
    """A body adds Content-Length after the headers (sendevent as traced)."""
    sent = timeline_records(TRACES / "01d-esl-log-and-sendevent.sent.txt", "sent")
    encoded = encode_command(
        "sendevent CUSTOM",
        [("Event-Subclass", "lab::test"), ("X-Lab-Header", "some value with spaces")],
        "hello from the client\nsecond line\n",
    )
    assert encoded == sent[5]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_encoders_refuse_cr_lf_nul_in_lines_and_values(bad: str) -> None:
    """CR, LF and NUL would add a header or a command: refused everywhere."""
    with pytest.raises(UnsafeValueError):
        encode_api(f"uuid_kill {bad}")
    with pytest.raises(UnsafeValueError):
        encode_sendmsg(None, [("execute-app-arg", bad)])
    with pytest.raises(UnsafeValueError):
        encode_auth(bad)


@pytest.mark.parametrize("bad", ["", "a:b", " a", "a\nb"])
def test_encoders_refuse_unsafe_header_names(bad: str) -> None:
    """Empty names, names with ':' or blanks around them are refused."""
    with pytest.raises(UnsafeValueError):
        encode_command("sendmsg", [(bad, "x")])


def test_encoders_refuse_a_value_starting_with_a_blank() -> None:
    """FreeSWITCH strips leading blanks of header values, so such a value is refused."""
    with pytest.raises(UnsafeValueError, match="starts with a blank"):
        encode_sendmsg(None, [("execute-app-arg", " x")])


def test_encoders_refuse_a_lying_content_length() -> None:
    """A Content-Length header that does not match the body is refused."""
    with pytest.raises(UnsafeValueError, match="does not match"):
        encode_command("sendevent CUSTOM", [("Content-Length", "5")], "abc")


def test_sendmsg_refuses_a_uuid_with_a_space() -> None:
    """The uuid on the command line must be one word."""
    with pytest.raises(UnsafeValueError):
        encode_sendmsg("a b", [("call-command", "hangup")])


# -- server-side encoders (the fake) -----------------------------------------------------------------


def test_server_encoders_produce_the_traced_bytes() -> None:
    """Greeting, replies, api responses and the goodbye notice match trace 01b/01a."""
    recv = timeline_records(TRACES / "01b-esl-basics-plain.recv.txt", "recv")
    assert encode_auth_request() == recv[0]
    assert encode_command_reply("+OK accepted") == recv[1]
    assert encode_api_response(trace_messages("01b-esl-basics-plain")[2].body) == recv[2]
    job = "b5f7c11b-3995-4de7-bf54-b4536027859c"
    assert encode_command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]) in recv
    assert encode_disconnect_notice() == recv[-1]


def test_outbound_notices_match_trace_05a() -> None:
    """The linger and final notices of an outbound session are byte-exact."""
    recv = timeline_records(TRACES / "05a-outbound-socket-async-full.recv.txt", "recv")
    uuid = "4874a557-cd48-494d-895b-ae6b41fead9a"
    assert (
        encode_disconnect_notice(
            session_uuid=uuid,
            linger=True,
            channel_name="sofia/internal/gina@127.0.0.1",
            linger_time=5,
        )
        == recv[-2]
    )
    assert encode_disconnect_notice(session_uuid=uuid) == recv[-1]


def test_channel_data_reply_reencodes_the_connect_block() -> None:
    """The connect reply built from its channel data equals the traced block."""
    connect = trace_messages("05a-outbound-socket-async-full")[0]
    data = connect.channel_data()
    without_reply = EslEvent(data.headers[:-4])
    encoded = encode_channel_data_reply(without_reply, socket_mode="async", control="full")
    assert encoded == encode_message(connect)


def test_event_encoder_frames_plain_and_json() -> None:
    """encode_event puts Content-Length before Content-Type and decodes back to the event."""
    event = EslEvent(
        (("Event-Name", "CUSTOM"), ("Event-Subclass", "x::y"), ("Content-Length", "2")), "hi"
    )
    for event_format in ("plain", "json"):
        decoded = decode_all(encode_event(event, event_format))[0]
        assert decoded.headers[0][0] == "Content-Length"
        assert decoded.event() == event


def test_url_encode_matches_freeswitch_for_reserved_and_non_ascii() -> None:
    """Reserved characters and non-ASCII bytes are %XX; ',', '/', '~', '(' are not."""
    assert url_encode("a b:c@d+e,f/g~h(i)") == "a%20b%3Ac%40d%2Be,f/g~h(i)"
    assert url_encode("Иван") == "%D0%98%D0%B2%D0%B0%D0%BD"
    assert (
        decode_plain_event(f"Caller: {url_encode('Иван; ы')}\n\n".encode())["Caller"] == "Иван; ы"
    )


def test_an_xml_content_length_of_non_ascii_digits_is_ignored_not_a_crash() -> None:
    """'²'.isdigit() is True but int('²') raises ValueError, which escaped the codec and
    ended the outbound session without its safe default."""
    event = decode_xml_event(
        "<event><headers><Event-Name>CUSTOM</Event-Name></headers>"
        "<Content-Length>²</Content-Length><body>hello</body></event>".encode()
    )
    assert event.get("Event-Name") == "CUSTOM"
    assert event.body == "hello"


def test_a_password_with_a_line_break_is_refused_without_being_printed() -> None:
    """auth's refusal names the command, not the password."""
    with pytest.raises(UnsafeValueError) as caught:
        encode_auth("ClueSecret\n")
    assert "auth" in str(caught.value)
    assert "ClueSecret" not in str(caught.value)

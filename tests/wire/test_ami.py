"""The AMI codec against the Asterisk 22 transcripts and against hostile input."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx_agent.errors import ProtocolError, UnsafeValueError
from pbx_agent.wire.ami import (
    AmiBanner,
    AmiDecoder,
    AmiMessage,
    AmiProtocolError,
    encode_action,
    encode_banner,
    encode_message,
)

TRACES = Path(__file__).resolve().parents[1] / "traces" / "asterisk-22"
RAW_MARK = b"#=== BEGIN RAW ===\n"
AMI_RECV = sorted(p for p in TRACES.glob("*.recv.txt") if not p.name.startswith("05a"))
AMI_SENT = sorted(p for p in TRACES.glob("*.sent.txt") if not p.name.startswith("05a"))


def raw_bytes(path: Path) -> bytes:
    return path.read_bytes().split(RAW_MARK, 1)[1]


def timeline_records(path: Path, direction: str) -> list[str]:
    name = path.name.replace(".recv.txt", "").replace(".sent.txt", "")
    lines = (TRACES / f"{name}.timeline.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines[1:]]
    return [r["data"] for r in records if r["dir"] == direction]


def decode_all(
    data: bytes, *, expect_banner: bool = True, chunks: list[int] | None = None
) -> list[AmiBanner | AmiMessage]:
    decoder = AmiDecoder(expect_banner=expect_banner)
    out: list[AmiBanner | AmiMessage] = []
    pos = 0
    sizes = iter(chunks or [len(data) or 1])
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


def messages_of(items: list[AmiBanner | AmiMessage]) -> list[AmiMessage]:
    return [m for m in items if isinstance(m, AmiMessage)]


def trace_id(path: Path) -> str:
    return path.name.split(".")[0]


# --- the transcripts -------------------------------------------------------------------


@pytest.mark.parametrize("path", AMI_RECV, ids=trace_id)
def test_received_trace_decodes_to_the_timeline_messages(path: Path) -> None:
    """Each received transcript decodes to one banner plus one message per timeline record."""
    items = decode_all(raw_bytes(path))
    records = timeline_records(path, "recv")
    assert isinstance(items[0], AmiBanner)
    assert items[0].text == "Asterisk Call Manager/11.0.0"
    assert items[0].version == "11.0.0"
    assert len(items) == len(records)
    for message, record in zip(items[1:], records[1:], strict=True):
        assert isinstance(message, AmiMessage)
        assert message.kind in ("response", "event")
        assert encode_message(message.fields) == record.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("path", AMI_RECV, ids=trace_id)
def test_received_trace_decodes_the_same_in_random_chunks(path: Path) -> None:
    """Chunk boundaries (including single bytes) never change what is decoded."""
    data = raw_bytes(path)
    whole = decode_all(data)
    rng = random.Random(path.name)
    for chunks in ([1] * len(data), [rng.randint(1, 300) for _ in range(len(data))]):
        assert decode_all(data, chunks=chunks) == whole


@pytest.mark.parametrize("path", AMI_RECV, ids=trace_id)
def test_received_trace_reencodes_to_the_same_bytes(path: Path) -> None:
    """Banner and messages re-encoded reproduce the received bytes exactly."""
    items = decode_all(raw_bytes(path))
    banner = items[0]
    assert isinstance(banner, AmiBanner)
    rebuilt = encode_banner(banner.version) + b"".join(
        encode_message(m.fields) for m in messages_of(items)
    )
    assert rebuilt == raw_bytes(path)


@pytest.mark.parametrize("path", AMI_SENT, ids=trace_id)
def test_sent_trace_decodes_as_actions_and_reencodes(path: Path) -> None:
    """The client's transcript decodes (server side) to actions that re-encode byte-exact."""
    data = raw_bytes(path)
    items = decode_all(data, expect_banner=False, chunks=[7] * len(data))
    actions = messages_of(items)
    assert len(items) == len(actions) == len(timeline_records(path, "sent"))
    assert all(a.kind == "action" for a in actions)
    rebuilt = b"".join(encode_action(a.name, a.fields[1:]) for a in actions)
    assert rebuilt == data


def test_trace_status_event_exposes_its_trailing_action_id() -> None:
    """A Status event carries ActionID as its last header; look-up still finds it."""
    items = decode_all(raw_bytes(TRACES / "01c-ami-basics.recv.txt"))
    status = [m for m in messages_of(items) if m.kind == "event" and m.name == "Status"]
    assert status
    assert status[0].fields[-1][0] == "ActionID"
    assert status[0].action_id == "c-14"


def test_command_output_lines_are_repeated_fields() -> None:
    """Asterisk 22's Command reply keeps its Output lines as repeated fields."""
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(
        b"Response: Success\r\nActionID: 3\r\nMessage: Command output follows\r\n"
        b"Output: line one\r\nOutput: line: two\r\n\r\n"
    )
    message = decoder.next_message()
    assert isinstance(message, AmiMessage)
    assert message.get_all("output") == ["line one", "line: two"]


# --- message accessors ------------------------------------------------------------------


def test_lookups_ignore_case_and_return_the_first_occurrence() -> None:
    """get/[]/in ignore case; a repeated name answers with its first value."""
    message = AmiMessage((("Event", "VarSet"), ("Variable", "A"), ("variable", "B")))
    assert message.get("VARIABLE") == "A"
    assert message["variable"] == "A"
    assert "vArIaBlE" in message
    assert message.get_all("Variable") == ["A", "B"]


def test_missing_field_gives_default_or_key_error() -> None:
    """An absent name is None (or the default) with get, KeyError with []."""
    message = AmiMessage((("Response", "Success"),))
    assert message.get("ActionID") is None
    assert message.get("ActionID", "x") == "x"
    assert "ActionID" not in message
    assert 3 not in message
    with pytest.raises(KeyError):
        message["ActionID"]


@pytest.mark.parametrize(
    ("first", "kind"),
    [("Response", "response"), ("Event", "event"), ("Action", "action"), ("EVENT", "event")],
)
def test_kind_comes_from_the_first_header(first: str, kind: str) -> None:
    """Response/Event/Action as first header name the message kind; name is its value."""
    message = AmiMessage(((first, "Thing"), ("ActionID", "7")))
    assert message.kind == kind
    assert message.name == "Thing"
    assert message.action_id == "7"


def test_kind_of_a_message_without_a_known_first_header_is_a_protocol_error() -> None:
    """A hand-built message starting with another header has no kind."""
    with pytest.raises(AmiProtocolError, match="Channel"):
        AmiMessage((("Channel", "x"),)).kind  # noqa: B018


# --- decoding details -------------------------------------------------------------------


def test_utf8_name_split_inside_a_character_arrives_whole() -> None:
    """A Cyrillic caller name split mid-character by TCP arrives exactly."""
    frame = "Event: Newchannel\r\nCallerIDName: Иван\r\n\r\n".encode()
    cut = frame.index("И".encode()) + 1
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(frame[:cut])
    assert decoder.next_message() is None
    decoder.feed(frame[cut:])
    message = decoder.next_message()
    assert isinstance(message, AmiMessage)
    assert message["CallerIDName"] == "Иван"


def test_invalid_utf8_round_trips_byte_exact() -> None:
    """Bytes that are not UTF-8 survive decoding and re-encoding unchanged."""
    frame = b"Event: Newchannel\r\nCallerIDName: \xff\xfe\xd0 ok \xc3\r\n\r\n"
    items = decode_all(frame, expect_banner=False)
    assert encode_message(messages_of(items)[0].fields) == frame


def test_name_with_empty_value_is_accepted_with_or_without_the_space() -> None:
    """`AccountCode: ` and `AccountCode:` both give an empty value."""
    items = decode_all(b"Event: X\r\nAccountCode: \r\nLanguage:\r\n\r\n", expect_banner=False)
    assert messages_of(items)[0].fields == (("Event", "X"), ("AccountCode", ""), ("Language", ""))


def test_value_keeps_everything_after_the_first_colon_space() -> None:
    """Only the first ': ' separates; later ones and extra spaces stay in the value."""
    items = decode_all(b"Event: X\r\nRequestType: Action:  Foo \r\n\r\n", expect_banner=False)
    assert messages_of(items)[0]["RequestType"] == "Action:  Foo "


def test_name_colon_value_without_space_is_accepted() -> None:
    """`Name:value` is read as Asterisk itself reads it."""
    items = decode_all(b"Action: Ping\r\nActionID:42\r\n\r\n", expect_banner=False)
    assert messages_of(items)[0].action_id == "42"


def test_blank_lines_between_messages_are_skipped() -> None:
    """Stray CRLFs before and between frames produce no message."""
    data = b"\r\nEvent: A\r\n\r\n\r\n\r\n\r\nEvent: B\r\n\r\n\r\n"
    for chunks in (None, [1] * len(data), [5] * len(data)):
        items = decode_all(data, expect_banner=False, chunks=chunks)
        assert [m.name for m in messages_of(items)] == ["A", "B"]


def test_line_without_colon_raises_naming_the_frame_then_decoding_goes_on() -> None:
    """A malformed frame is consumed, reported with its text, and the next frame decodes."""
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(b"Event: A\r\nthis line has no colon\r\n\r\nEvent: B\r\n\r\n")
    with pytest.raises(AmiProtocolError, match="this line has no colon"):
        decoder.next_message()
    message = decoder.next_message()
    assert isinstance(message, AmiMessage)
    assert message.name == "B"


def test_unknown_first_header_is_a_protocol_error() -> None:
    """A block must start with Response, Event or Action."""
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(b"Channel: x\r\nEvent: A\r\n\r\n")
    with pytest.raises(AmiProtocolError, match="Response, Event or Action"):
        decoder.next_message()
    assert decoder.next_message() is None


def test_error_message_escapes_control_characters_of_the_frame() -> None:
    """The frame shown in an error is escaped, so it cannot forge log lines."""
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(b"Event: A\r\nbad\x1b[31m\r\n\r\n")
    with pytest.raises(AmiProtocolError) as info:
        decoder.next_message()
    assert "\x1b" not in str(info.value)
    assert "\\x1b[31m" in str(info.value)


def test_end_of_stream_inside_a_frame_raises_once() -> None:
    """A partial frame at EOF is a protocol error, reported once."""
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(b"Event: A\r\n\r\nEvent: B\r\nChan")
    decoder.feed(b"")
    first = decoder.next_message()
    assert isinstance(first, AmiMessage)
    with pytest.raises(AmiProtocolError, match="ended inside a frame"):
        decoder.next_message()
    assert decoder.next_message() is None
    assert decoder.at_eof


def test_end_of_stream_after_whole_frames_is_clean() -> None:
    """EOF right after a terminator raises nothing."""
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(b"Event: A\r\n\r\n")
    decoder.feed(b"")
    assert isinstance(decoder.next_message(), AmiMessage)
    assert decoder.next_message() is None
    assert decoder.at_eof


def test_at_eof_is_false_until_the_stream_ends() -> None:
    """at_eof stays False while the peer may still send."""
    decoder = AmiDecoder(expect_banner=False)
    decoder.feed(b"Event: A\r\n\r\n")
    assert isinstance(decoder.next_message(), AmiMessage)
    assert not decoder.at_eof


def test_frame_growing_past_the_limit_raises_and_the_stream_resynchronises() -> None:
    """An endless frame is cut at max_frame_bytes; decoding resumes after its end."""
    decoder = AmiDecoder(expect_banner=False, max_frame_bytes=1024)
    decoder.feed(b"Event: Big\r\nData: ")
    for _ in range(10):
        decoder.feed(b"x" * 100)
        assert decoder.next_message() is None
    decoder.feed(b"x" * 100)
    with pytest.raises(AmiProtocolError, match="max_frame_bytes=1024"):
        decoder.next_message()
    decoder.feed(b"x" * 5000 + b"\r\n\r")
    assert decoder.next_message() is None
    decoder.feed(b"\nEvent: Small\r\n\r\n")
    message = decoder.next_message()
    assert isinstance(message, AmiMessage)
    assert message.name == "Small"
    assert len(decoder._buf) == 0


def test_complete_frame_over_the_limit_raises() -> None:
    """A frame over max_frame_bytes that arrives in one piece is refused too."""
    decoder = AmiDecoder(expect_banner=False, max_frame_bytes=100)
    decoder.feed(b"Event: Big\r\nData: " + b"y" * 200 + b"\r\n\r\nEvent: Next\r\n\r\n")
    with pytest.raises(AmiProtocolError, match="exceeds max_frame_bytes=100"):
        decoder.next_message()
    message = decoder.next_message()
    assert isinstance(message, AmiMessage)
    assert message.name == "Next"


def test_banner_without_a_version_is_a_protocol_error() -> None:
    """The first line must look like `Something/version`."""
    decoder = AmiDecoder()
    decoder.feed(b"Hello there\r\nEvent: A\r\n\r\n")
    with pytest.raises(AmiProtocolError, match="Hello there"):
        decoder.next_message()
    message = decoder.next_message()
    assert isinstance(message, AmiMessage)


def test_banner_is_a_single_line_followed_directly_by_messages() -> None:
    """The banner has no blank line after it; the next bytes are a message."""
    items = decode_all(encode_banner("11.0.0") + b"Response: Success\r\n\r\n", chunks=[3] * 99)
    assert items[0] == AmiBanner("Asterisk Call Manager/11.0.0", "11.0.0")
    assert isinstance(items[1], AmiMessage)


def test_legacy_command_output_becomes_output_fields() -> None:
    """A pre-14 `Response: Follows` body ends at --END COMMAND-- and reads as Output lines."""
    data = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: 9\r\n"
        b"Name: looks like a header\n\nlast line\n--END COMMAND--\r\n\r\n"
        b"Event: After\r\n\r\n"
    )
    for chunks in (None, [1] * len(data)):
        items = messages_of(decode_all(data, expect_banner=False, chunks=chunks))
        assert items[0].fields == (
            ("Response", "Follows"),
            ("Privilege", "Command"),
            ("ActionID", "9"),
            ("Output", "Name: looks like a header"),
            ("Output", ""),
            ("Output", "last line"),
        )
        assert items[1].name == "After"


def test_legacy_command_output_without_final_newline() -> None:
    """Output glued to the end marker is still one Output line."""
    data = b"Response: Follows\r\nPrivilege: Command\r\nuptime 5--END COMMAND--\r\n\r\n"
    items = messages_of(decode_all(data, expect_banner=False))
    assert items[0].get_all("Output") == ["uptime 5"]
    assert items[0].action_id is None


def test_decoder_rejects_data_after_end_of_stream() -> None:
    """Feeding bytes after b'' is a caller bug, not silently accepted."""
    decoder = AmiDecoder()
    decoder.feed(b"")
    with pytest.raises(ValueError, match="after the end"):
        decoder.feed(b"x")


# --- encoding ---------------------------------------------------------------------------


def test_encode_action_puts_action_then_action_id_then_fields() -> None:
    """The action line comes first, the ActionID second, then fields in order."""
    data = encode_action("Getvar", [("Channel", "PJSIP/a-1"), ("Variable", "X")], action_id="c-7")
    assert data == b"Action: Getvar\r\nActionID: c-7\r\nChannel: PJSIP/a-1\r\nVariable: X\r\n\r\n"


def test_encode_action_keeps_repeated_fields() -> None:
    """Repeated names (Variable) are all written, in order."""
    data = encode_action("Originate", [("Variable", "A=1"), ("Variable", "B=2")])
    assert data == b"Action: Originate\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"


def test_encode_action_refuses_a_second_action_id() -> None:
    """ActionID both as keyword and as a field is refused, not silently doubled."""
    with pytest.raises(UnsafeValueError, match="ActionID"):
        encode_action("Ping", [("ActionID", "2")], action_id="1")


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b", "x\r\n\r\nAction: Hangup"])
def test_encoders_refuse_cr_lf_nul_in_values(bad: str) -> None:
    """A value with CR, LF or NUL is refused by every encoder."""
    with pytest.raises(UnsafeValueError):
        encode_action("Setvar", [("Value", bad)])
    with pytest.raises(UnsafeValueError):
        encode_action(bad)
    with pytest.raises(UnsafeValueError):
        encode_action("Ping", action_id=bad)
    with pytest.raises(UnsafeValueError):
        encode_message([("Event", bad)])


@pytest.mark.parametrize("bad", ["", "A:B", " Name", "Name ", "Na\rme", "Na\nme", "Na\0me"])
def test_encoders_refuse_unsafe_field_names(bad: str) -> None:
    """Empty names, ':', outer spaces, CR, LF and NUL are refused in a field name."""
    with pytest.raises(UnsafeValueError):
        encode_action("Setvar", [(bad, "v")])
    with pytest.raises(UnsafeValueError):
        encode_message([("Event", "X"), (bad, "v")])


def test_encoders_keep_values_exactly() -> None:
    """Leading/trailing spaces, colons and unicode in a value are written unchanged."""
    value = '  Иван: ;,|"\\ '
    data = encode_message([("Event", "X"), ("CallerIDName", value)])
    assert data == f"Event: X\r\nCallerIDName: {value}\r\n\r\n".encode()
    assert messages_of(decode_all(data, expect_banner=False))[0]["CallerIDName"] == value


def test_encoder_refuses_a_lone_surrogate() -> None:
    """A code point UTF-8 cannot carry is refused with the project's error."""
    with pytest.raises(UnsafeValueError, match="UTF-8"):
        encode_message([("Event", "X"), ("Name", "\ud800")])


def test_encode_message_refuses_an_empty_message() -> None:
    """An empty field list would encode a bare blank line."""
    with pytest.raises(UnsafeValueError):
        encode_message([])


# --- hostile input ----------------------------------------------------------------------

FRAMES = [
    frame + b"\r\n\r\n"
    for path in AMI_RECV[:6]
    for frame in raw_bytes(path).split(b"\r\n", 1)[1].split(b"\r\n\r\n")
    if frame
]


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    frames = draw(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=6))
    data = bytearray(b"".join(frames))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "flip"]))
        blob = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b":", b": ", b"\0", b"\xd0", b"\xff"]))
        if op == "insert":
            data[pos:pos] = blob
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 5))]
        elif pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
    return bytes(data)


def drain_tolerantly(data: bytes, chunks: list[int], *, max_frame_bytes: int) -> int:
    """Feed everything, swallowing protocol errors; return the number of next_message calls."""
    decoder = AmiDecoder(expect_banner=False, max_frame_bytes=max_frame_bytes)
    calls = 0
    pos = 0
    sizes = iter(chunks)
    ended = False
    while not ended:
        if pos < len(data):
            size = next(sizes, 64)
            decoder.feed(data[pos : pos + size])
            pos += size
        else:
            decoder.feed(b"")
            ended = True
        while True:
            calls += 1
            # Bounded work: never more calls than bytes plus a few per feed.
            assert calls <= 4 * len(data) + 100
            try:
                if decoder.next_message() is None:
                    break
            except ProtocolError:
                continue
    assert decoder.at_eof
    return calls


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    data=st.one_of(mutated_streams(), st.binary(max_size=400)),
    chunks=st.lists(st.integers(1, 40), max_size=50),
    max_frame_bytes=st.sampled_from([64, 200, 1 << 20]),
)
def test_hostile_streams_raise_only_protocol_errors_and_terminate(
    data: bytes, chunks: list[int], max_frame_bytes: int
) -> None:
    """Random and mutated frames only ever raise ProtocolError, with bounded calls."""
    drain_tolerantly(data, chunks, max_frame_bytes=max_frame_bytes)


@settings(max_examples=200, deadline=None)
@given(data=mutated_streams(), chunks=st.lists(st.integers(1, 40), max_size=50))
def test_chunking_never_changes_the_outcome_of_a_mutated_stream(
    data: bytes, chunks: list[int]
) -> None:
    """Whole or chunked, the same messages and the same errors come out, in order."""

    def outcome(sizes: list[int] | None) -> list[object]:
        decoder = AmiDecoder(expect_banner=False)
        result: list[object] = []
        pos = 0
        size_iter = iter(sizes or [len(data) or 1])
        ended = False
        while not ended:
            if pos < len(data):
                size = next(size_iter, 64)
                decoder.feed(data[pos : pos + size])
                pos += size
            else:
                decoder.feed(b"")
                ended = True
            while True:
                try:
                    message = decoder.next_message()
                except AmiProtocolError:
                    result.append("error")
                    continue
                if message is None:
                    break
                result.append(message)
        return result

    assert outcome(chunks) == outcome(None)


HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from([*"ab Иван:;,|\"'\\()[]{}\r\n\t\0", "\udcff", "\udcd0", "\u202e"]),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(number=HOSTILE_TEXT, name=HOSTILE_TEXT)
def test_caller_id_never_adds_an_ami_header_or_field(number: str, name: str) -> None:
    """A hostile caller id is refused or arrives as exactly the fields that were sent."""
    fields = [("Channel", "PJSIP/a-1"), ("CallerID", f'"{name}" <{number}>'), ("Variable", name)]
    try:
        data = encode_action("Originate", fields, action_id="x-1")
    except UnsafeValueError:
        assert any(c in number + name for c in "\r\n\0")
        return
    items = messages_of(decode_all(data, expect_banner=False))
    assert len(items) == 1
    assert items[0].fields == (("Action", "Originate"), ("ActionID", "x-1"), *fields)


def test_a_secret_with_a_line_break_is_refused_without_being_printed() -> None:
    """The codec's refusal names the field, not the secret."""
    with pytest.raises(UnsafeValueError) as caught:
        encode_action("Login", [("Username", "lab"), ("Secret", "TopSecret42\n")], action_id="1")
    assert "Secret" in str(caught.value)
    assert "TopSecret42" not in str(caught.value)

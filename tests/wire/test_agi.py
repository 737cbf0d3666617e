"""The AGI codec against the Asterisk 22 FastAGI transcript and against hostile input."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx_agent.errors import ProtocolError, UnsafeValueError
from pbx_agent.wire.agi import (
    AGI_MAX_ARGS,
    AGI_MAX_LINE_BYTES,
    AgiCommand,
    AgiCommandDecoder,
    AgiDecoder,
    AgiEnvironment,
    AgiHangup,
    AgiProtocolError,
    AgiReply,
    encode_command,
    encode_environment,
    encode_hangup,
    encode_reply,
    parse_command,
    quote_arg,
)

TRACES = Path(__file__).resolve().parents[1] / "traces" / "asterisk-22"
RAW_MARK = b"#=== BEGIN RAW ===\n"
RECV = (TRACES / "05a-fastagi-session.recv.txt").read_bytes().split(RAW_MARK, 1)[1]
SENT = (TRACES / "05a-fastagi-session.sent.txt").read_bytes().split(RAW_MARK, 1)[1]

Message = AgiEnvironment | AgiReply | AgiHangup


def decode(data: bytes, chunks: list[int] | None = None) -> list[Message]:
    decoder = AgiDecoder()
    out: list[Message] = []
    pos = 0
    sizes = iter(chunks or [len(data) or 1])
    while pos < len(data):
        size = next(sizes, 64)
        decoder.feed(data[pos : pos + size])
        pos += size
        while (message := decoder.next_message()) is not None:
            out.append(message)
    decoder.feed(b"")
    while (message := decoder.next_message()) is not None:
        out.append(message)
    assert decoder.at_eof
    return out


def trace_env() -> dict[str, str]:
    """The trace's environment block: every key res_agi.c writes, in its order."""
    env = decode(RECV)[0]
    assert isinstance(env, AgiEnvironment)
    return dict(env)


def commands(data: bytes) -> list[AgiCommand]:
    decoder = AgiCommandDecoder()
    decoder.feed(data)
    decoder.feed(b"")
    out = []
    while (command := decoder.next_message()) is not None:
        out.append(command)
    return out


# --- the transcript ---------------------------------------------------------------------


def test_trace_environment_decodes_with_typed_accessors() -> None:
    """The 05a environment block gives the request, script, channel and caller fields."""
    env = decode(RECV)[0]
    assert isinstance(env, AgiEnvironment)
    assert env.network
    assert env.request == "agi://127.0.0.1:4573/route?x=1"
    assert env.network_script == "route?x=1"
    assert env.script_path == "route"
    assert dict(env.query) == {"x": "1"}
    assert env.channel == "PJSIP/carol-00000010"
    assert env.uniqueid == "1795339422.20"
    assert env.callerid == "carol"
    assert env.calleridname == "unknown"
    assert env.dnid == "604"
    assert env.context == "from-ua"
    assert env.extension == "604"
    assert env.priority == "2"
    assert env.accountcode == ""
    assert env.args == ()
    assert env["agi_type"] == "PJSIP"
    assert len(env) == 22


def test_trace_replies_decode_one_per_command_plus_the_hangup_line() -> None:
    """After the environment: one reply per sent command, and one HANGUP line."""
    messages = decode(RECV)[1:]
    replies = [m for m in messages if isinstance(m, AgiReply)]
    assert len(replies) == len(commands(SENT))
    assert [type(m).__name__ for m in messages].count("AgiHangup") == 1
    hangup_at = next(i for i, m in enumerate(messages) if isinstance(m, AgiHangup))
    assert messages[hangup_at - 1] == AgiReply(code=200, result="-1")


def test_trace_decodes_the_same_in_random_chunks() -> None:
    """Chunk boundaries (including single bytes) never change what is decoded."""
    whole = decode(RECV)
    rng = random.Random(5)
    assert decode(RECV, [1] * len(RECV)) == whole
    assert decode(RECV, [rng.randint(1, 50) for _ in range(len(RECV))]) == whole


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("200 result=1 (PJSIP/carol-00000010)", AgiReply(200, "1", "PJSIP/carol-00000010")),
        ("200 result=1 (carol on PJSIP/c-1)", AgiReply(200, "1", "carol on PJSIP/c-1")),
        ("200 result=0", AgiReply(200, "0")),
        ("200 result=0 endpos=3404", AgiReply(200, "0", endpos=3404)),
        ("200 result=-1 endpos=0", AgiReply(200, "-1", endpos=0)),
        ("200 result=53", AgiReply(200, "53")),
        ("200 result= (timeout)", AgiReply(200, "", "timeout")),
        ("200 result=0 (timeout) endpos=80", AgiReply(200, "0", "timeout", 80)),
        ("200 result=1 (a (nested) value)", AgiReply(200, "1", "a (nested) value")),
        ("100 result=0 Trying...", AgiReply(100, "0", extra="Trying...")),
        ("510 Invalid or unknown command", AgiReply(510, extra="Invalid or unknown command")),
        (
            "511 Command Not Permitted on a dead channel or intercept routine",
            AgiReply(511, extra="Command Not Permitted on a dead channel or intercept routine"),
        ),
    ],
)
def test_reply_lines_parse_into_their_parts(line: str, expected: AgiReply) -> None:
    """Result, data in parentheses, endpos and leftover text are separated."""
    messages = decode(encode_environment({"agi_channel": "x"}) + line.encode() + b"\n")
    assert messages[1] == expected


def test_trace_usage_block_is_one_reply_with_its_body() -> None:
    """The multi-line 520 block is one reply whose usage keeps every body line."""
    reply = next(m for m in decode(RECV) if isinstance(m, AgiReply) and m.code == 520)
    assert reply.extra == "Invalid command syntax.  Proper usage follows:"
    assert reply.usage[0].startswith("Send the given file")
    assert reply.usage[-1] == "    <value>FAILED</value>"
    assert len(reply.usage) == 5


def test_reply_accessors() -> None:
    """ok, result_int and dead_channel read the reply."""
    assert AgiReply(200, "53").ok
    assert AgiReply(200, "53").result_int == 53
    assert AgiReply(200, "").result_int is None
    assert AgiReply(511, extra="x").dead_channel
    assert not AgiReply(510, extra="x").ok


def test_trace_commands_parse_to_verb_and_arguments() -> None:
    """Every sent 05a line splits into a known verb (or none) and its arguments."""
    parsed = commands(SENT)
    assert parsed[1] == AgiCommand(
        argv=("GET", "FULL", "VARIABLE", "${CALLERID(num)} on ${CHANNEL}"),
        verb="GET FULL VARIABLE",
        args=("${CALLERID(num)} on ${CHANNEL}",),
    )
    assert parsed[7].verb == "STREAM FILE"
    assert parsed[7].args == ("beep", "")
    assert parsed[14] == AgiCommand(argv=("FOOBAR", "baz"), verb=None, args=("baz",))
    assert parsed[17].args == ("Verbose", "agi says hi,1")


def test_trace_commands_reencode_to_the_same_words() -> None:
    """Re-encoding each parsed command gives a line Asterisk splits identically."""
    for command in commands(SENT):
        verb = command.verb or command.argv[0]
        line = encode_command(verb, *command.args)
        assert parse_command(line.decode().removesuffix("\n")).argv == command.argv


def test_trace_plain_commands_reencode_byte_exact() -> None:
    """Lines whose words need no quoting come out exactly as sent."""
    lines = SENT.decode().splitlines()
    for line, command in zip(lines, commands(SENT), strict=True):
        if '"' in line:
            continue
        assert (
            encode_command(command.verb or command.argv[0], *command.args) == (line + "\n").encode()
        )


# --- environment and replies from the Asterisk side ------------------------------------


def test_environment_encoding_round_trips() -> None:
    """encode_environment produces a block the decoder reads back exactly."""
    env = {**trace_env(), "agi_calleridname": 'Иван "Ив" ;,|', "agi_arg_1": ""}
    decoded = decode(encode_environment(env))[0]
    assert isinstance(decoded, AgiEnvironment)
    assert dict(decoded) == env
    assert decoded.args == ("",)


def test_environment_args_stop_at_the_first_gap() -> None:
    """agi_arg_N are read in order up to the first missing one."""
    env = AgiEnvironment((("agi_arg_1", "a"), ("agi_arg_2", "b"), ("agi_arg_4", "d")))
    assert env.args == ("a", "b")


def test_environment_query_is_percent_decoded() -> None:
    """Hook parameters in the request query are decoded."""
    env = AgiEnvironment((("agi_network_script", "hook?name=%D0%98%20x&flag=&a=1&a=2"),))
    assert dict(env.query) == {"name": "И x", "flag": "", "a": "1"}
    assert env.script_path == "hook"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("agi_x", "a\nb"),
        ("agi_x", "a\rb"),
        ("agi_x", "a\0b"),
        ("a:b", "v"),
        ("a b", "v"),
        ("", "v"),
    ],
)
def test_environment_encoder_refuses_unsafe_keys_and_values(key: str, value: str) -> None:
    """A line break, NUL, or a malformed key cannot enter the environment block."""
    with pytest.raises(UnsafeValueError):
        encode_environment({key: value})


def test_reply_encoding_round_trips() -> None:
    """encode_reply builds the lines the decoder parses back."""
    data = (
        encode_environment({"agi_channel": "c"})
        + encode_reply(result=1, data="PJSIP/a-1")
        + encode_reply(result=0, endpos=3404)
        + encode_reply(510, extra="Invalid or unknown command")
        + encode_reply(520, usage=["line one", "", "  <value>x</value>"])
        + encode_hangup()
    )
    assert decode(data)[1:] == [
        AgiReply(200, "1", "PJSIP/a-1"),
        AgiReply(200, "0", endpos=3404),
        AgiReply(510, extra="Invalid or unknown command"),
        AgiReply(
            520,
            extra="Invalid command syntax.  Proper usage follows:",
            usage=("line one", "", "  <value>x</value>"),
        ),
        AgiHangup(),
    ]


def test_reply_encoder_refuses_a_usage_line_that_would_end_the_block() -> None:
    """A usage body line shaped like 'NNN text' is refused."""
    with pytest.raises(UnsafeValueError):
        encode_reply(520, usage=["200 result=1"])


def test_reply_encoder_refuses_line_breaks_in_data() -> None:
    """Data with a line break would forge a second reply."""
    with pytest.raises(UnsafeValueError):
        encode_reply(result=1, data="x)\n200 result=1 (y")


# --- decoder errors ---------------------------------------------------------------------


def test_end_of_stream_in_the_middle_of_the_environment_raises() -> None:
    """Half an environment block then EOF is a protocol error, not a wait."""
    half = encode_environment({"agi_network": "yes", "agi_channel": "c"})[:-1]
    decoder = AgiDecoder()
    decoder.feed(half)
    assert decoder.next_message() is None
    decoder.feed(b"")
    with pytest.raises(AgiProtocolError, match="environment block after 2 lines"):
        decoder.next_message()
    assert decoder.next_message() is None
    assert decoder.at_eof


def test_end_of_stream_inside_a_line_of_the_environment_raises() -> None:
    """EOF in the middle of an environment line is reported with that line."""
    decoder = AgiDecoder()
    decoder.feed(b"agi_network: yes\nagi_chan")
    decoder.feed(b"")
    with pytest.raises(AgiProtocolError, match="agi_chan"):
        decoder.next_message()


def test_end_of_stream_before_any_byte_is_clean() -> None:
    """A client that connects and closes at once is not a protocol error."""
    decoder = AgiDecoder()
    decoder.feed(b"")
    assert decoder.next_message() is None
    assert decoder.at_eof


def test_end_of_stream_inside_a_usage_block_raises() -> None:
    """A 520 block cut by EOF is reported."""
    decoder = AgiDecoder(expect_environment=False)
    decoder.feed(b"520-Invalid command syntax.  Proper usage follows:\nbody\n")
    decoder.feed(b"")
    with pytest.raises(AgiProtocolError, match="usage block"):
        decoder.next_message()


def test_environment_line_without_colon_raises_naming_it() -> None:
    """Garbage in the environment names the line."""
    decoder = AgiDecoder()
    decoder.feed(b"agi_network: yes\nGET / HTTP/1.1\n")
    with pytest.raises(AgiProtocolError, match=r"GET / HTTP/1\.1"):
        decoder.next_message()


def test_garbage_reply_raises_and_the_next_line_decodes() -> None:
    """A reply line that is not 'NNN ...' raises after being consumed."""
    decoder = AgiDecoder(expect_environment=False)
    decoder.feed(b"hello\x1b[2J\n200 result=1\n")
    with pytest.raises(AgiProtocolError) as info:
        decoder.next_message()
    assert "\\x1b[2J" in str(info.value)
    assert decoder.next_message() == AgiReply(200, "1")


def test_blank_lines_between_replies_are_skipped() -> None:
    """Empty lines outside a usage block carry nothing."""
    decoder = AgiDecoder(expect_environment=False)
    decoder.feed(b"\n\n200 result=1\n\n")
    assert decoder.next_message() == AgiReply(200, "1")
    assert decoder.next_message() is None


def test_overlong_line_raises_once_and_is_discarded() -> None:
    """A line past max_line_bytes is reported and skipped up to its end."""
    decoder = AgiDecoder(expect_environment=False, max_line_bytes=100)
    decoder.feed(b"200 result=1 (" + b"x" * 150)
    with pytest.raises(AgiProtocolError, match="max_line_bytes=100"):
        decoder.next_message()
    decoder.feed(b"y" * 500)
    assert decoder.next_message() is None
    decoder.feed(b"zzz)\n200 result=0\n")
    assert decoder.next_message() == AgiReply(200, "0")


def test_invalid_utf8_in_a_value_survives() -> None:
    """Undecodable bytes in GET VARIABLE data come back surrogate-escaped, losslessly."""
    decoder = AgiDecoder(expect_environment=False)
    decoder.feed(b"200 result=1 (\xff\xd0)\n")
    reply = decoder.next_message()
    assert isinstance(reply, AgiReply)
    assert reply.data is not None
    assert reply.data.encode("utf-8", "surrogateescape") == b"\xff\xd0"


# --- command encoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "plain"),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\there", '"tab\there"'),
        ("Иван", "Иван"),
    ],
)
def test_quote_arg_quotes_only_when_needed(value: str, quoted: str) -> None:
    """Plain words stay bare; spaces, quotes, backslashes and empties are quoted."""
    assert quote_arg(value) == quoted
    assert parse_command(f"VERBOSE {quoted}").args == (value,)


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_encode_command_refuses_line_breaks_and_nul(bad: str) -> None:
    """CR, LF and NUL would end the command early: refused."""
    with pytest.raises(UnsafeValueError):
        encode_command("SET VARIABLE", "X", bad)


@pytest.mark.parametrize("verb", ["", "GET  VARIABLE", 'GET "X"', "SET\nVARIABLE", " ANSWER"])
def test_encode_command_refuses_a_malformed_verb(verb: str) -> None:
    """The verb is plain words separated by single spaces."""
    with pytest.raises(UnsafeValueError):
        encode_command(verb)


def test_encode_command_refuses_lines_asterisk_would_cut() -> None:
    """Over 2047 bytes, Asterisk would run the rest as a second command."""
    encode_command("VERBOSE", "x" * (AGI_MAX_LINE_BYTES - len("VERBOSE \n")))
    with pytest.raises(UnsafeValueError, match="2047"):
        encode_command("VERBOSE", "x" * (AGI_MAX_LINE_BYTES - len("VERBOSE \n") + 1))


def test_encode_command_refuses_more_words_than_asterisk_keeps() -> None:
    """Asterisk keeps 127 words; more would be silently dropped."""
    encode_command("EXEC", *(["a"] * (AGI_MAX_ARGS - 1)))
    with pytest.raises(UnsafeValueError, match="127"):
        encode_command("EXEC", *(["a"] * AGI_MAX_ARGS))


def test_parse_command_follows_asterisk_quirks() -> None:
    """Quotes inside a word join, escapes make characters literal, extra spaces vanish."""
    assert parse_command('EXEC  Verbose "agi says hi",1').argv == (
        "EXEC",
        "Verbose",
        "agi says hi,1",
    )
    assert parse_command('SET VARIABLE a\\ b "x\\"y"').args == ("a b", 'x"y')
    assert parse_command('VERBOSE ""').args == ("",)
    assert parse_command("get variable X").verb == "GET VARIABLE"


ARG_TEXT = st.text(
    alphabet=st.sampled_from([*"ab \t\"\\',;|()[]{}$=И", "\udcff", "\u202e"]), max_size=20
)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(ARG_TEXT, max_size=6))
def test_encoded_arguments_come_back_exactly_and_in_number(args: list[str]) -> None:
    """Whatever the text, Asterisk's parse_args sees exactly the words that were sent."""
    line = encode_command("SET VARIABLE", *args)
    assert line.count(b"\n") == 1
    command = parse_command(line.decode("utf-8", "surrogateescape").removesuffix("\n"))
    assert command.verb == "SET VARIABLE"
    assert command.args == tuple(args)


# --- hostile input ----------------------------------------------------------------------

RECV_LINES = RECV.split(b"\n")


@st.composite
def mutated_agi_streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(RECV_LINES), max_size=40))
    data = bytearray(b"\n".join(lines))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data)))
        blob = draw(st.sampled_from([b"\n", b"\n\n", b":", b"-", b"520-", b"\xff", b"\0", b" "]))
        if draw(st.booleans()):
            data[pos:pos] = blob
        else:
            del data[pos : pos + draw(st.integers(1, 4))]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(mutated_agi_streams(), st.binary(max_size=400)),
    chunks=st.lists(st.integers(1, 40), max_size=40),
    expect_environment=st.booleans(),
)
def test_hostile_agi_streams_raise_only_protocol_errors_and_terminate(
    data: bytes, chunks: list[int], expect_environment: bool
) -> None:
    """Random and mutated AGI bytes only ever raise ProtocolError, with bounded calls."""
    decoder = AgiDecoder(expect_environment=expect_environment, max_line_bytes=128)
    calls = 0
    pos = 0
    sizes = iter(chunks)
    ended = False
    while not ended:
        if pos < len(data):
            size = next(sizes, 32)
            decoder.feed(data[pos : pos + size])
            pos += size
        else:
            decoder.feed(b"")
            ended = True
        while True:
            calls += 1
            assert calls <= 2 * len(data) + 100
            try:
                if decoder.next_message() is None:
                    break
            except ProtocolError:
                continue
    assert decoder.at_eof


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_hostile_command_lines_parse_without_surprises(data: bytes) -> None:
    """The Asterisk-side command decoder takes any bytes, raising only ProtocolError."""
    decoder = AgiCommandDecoder(max_line_bytes=128)
    decoder.feed(data)
    decoder.feed(b"")
    for _ in range(len(data) + 2):
        try:
            if decoder.next_message() is None:
                break
        except ProtocolError:
            continue
    assert decoder.at_eof


def test_an_endpos_too_long_for_int_is_a_protocol_error() -> None:
    """int() refuses more than 4300 digits with a ValueError, which escaped the codec: the
    session was neither marked broken nor given its default. Now it is a protocol error."""
    decoder = AgiDecoder(expect_environment=False)
    decoder.feed(b"200 result=0 endpos=" + b"9" * 5000 + b"\n")
    with pytest.raises(ProtocolError, match="endpos of 5000 digits"):
        decoder.next_message()
    decoder.feed(b"200 result=0 endpos=" + b"9" * 18 + b"\n")
    reply = decoder.next_message()
    assert reply is not None
    assert reply.endpos == 10**18 - 1  # type: ignore[union-attr]


def test_the_start_of_another_reply_behind_a_complete_one_is_seen() -> None:
    decoder = AgiDecoder(expect_environment=False)
    decoder.feed(b"200 result=1 (x)\n200 res")
    assert decoder.next_message() is not None
    assert decoder.next_message() is None
    assert decoder.unsolicited_partial
    hangup = AgiDecoder(expect_environment=False)
    hangup.feed(b"200 result=1 (x)\nHANG")
    assert hangup.next_message() is not None
    assert hangup.next_message() is None
    assert not hangup.unsolicited_partial


# --- line feeds inside the environment's values ----------------------------------------


def _trace_env_with(name: str) -> tuple[bytes, bytes]:
    """The trace's environment block with ``agi_calleridname`` replaced as Asterisk writes
    it (unescaped), and what follows the block."""
    block, rest = RECV.split(b"\n\n", 1)
    line = b"agi_calleridname: unknown\n"
    assert line in block + b"\n"
    return (block + b"\n").replace(line, b"agi_calleridname: " + name.encode() + b"\n"), rest


@pytest.mark.parametrize(
    "name",
    ["Ivanov\n", "Иванов\nИван", "a\n\nb", "\n", "Bob\nagi_dnid: 88005550000", "x\nagi_arg_1: y"],
)
def test_a_caller_name_holding_line_feeds_comes_back_whole(name: str) -> None:
    """Asterisk writes the name as it is: the block does not end at its empty lines, and a
    forged key inside it stays part of the name (the real agi_dnid is the one read)."""
    block, rest = _trace_env_with(name)
    messages = decode(block + b"\n" + rest, chunks=[7] * 400)
    env = messages[0]
    assert isinstance(env, AgiEnvironment)
    assert env.calleridname == name
    assert env.dnid == "604"
    assert env["agi_callingpres"] == "0"
    assert env.args == ()
    assert [type(m) for m in messages[1:]] == [type(m) for m in decode(RECV)[1:]]


def test_an_environment_block_of_more_than_32_kib_is_refused() -> None:
    """A peer cannot make the daemon hold megabytes of 'environment' per connection."""
    decoder = AgiDecoder()
    decoder.feed(b"agi_network: yes\n" + b"agi_arg_1: " + b"x" * 40000 + b"\n")
    with pytest.raises(AgiProtocolError, match="32768 bytes"):
        decoder.next_message()


@pytest.mark.parametrize(
    "name",
    [
        "Bob\nagi_extension: 900\nagi_arg_1: x\n",
        "Bob\nagi_accountcode: x\n",
        "Bob\nagi_threadid: 1\n\nagi_context: evil",
        "Bob\nagi_arg_1: x\n\n",
        "Bob\n\nagi_arg_1: x",
        "Bob\r\nagi_extension: 900\r\n\r\nagi_arg_1: x\r",
        "Bob\ragi_extension: 900\n\r\n",
        "\n\n",
    ],
)
def test_a_caller_name_forging_the_rest_of_the_block_stays_in_the_name(name: str) -> None:
    """Forged agi_extension/agi_arg_N/agi_threadid and an empty line inside the name do not
    end the block: the real context, extension, threadid and no args are read, then replies."""
    block, rest = _trace_env_with(name)
    messages = decode(block + b"\n" + rest, chunks=[5] * 600)
    env = messages[0]
    assert isinstance(env, AgiEnvironment)
    assert env.calleridname == name
    assert (env.context, env.extension, env.dnid) == ("from-ua", "604", "604")
    assert env["agi_threadid"] == "139675393078976"
    assert env.args == ()
    assert messages[1:] == decode(RECV)[1:]


def test_forged_args_inside_the_name_are_not_args_and_real_ones_are() -> None:
    """A forged agi_arg_1 stays in the name; Asterisk's own agi_arg_1 after agi_threadid counts."""
    name = "Bob\nagi_arg_1: forged\n"
    block, rest = _trace_env_with(name)
    messages = decode(block + b"agi_arg_1: real\nagi_arg_2: two\n\n" + rest)
    env = messages[0]
    assert isinstance(env, AgiEnvironment)
    assert env.calleridname == name
    assert env.args == ("real", "two")


def test_a_line_feed_inside_an_agi_arg_folds_into_it() -> None:
    """An argument holding a line feed keeps its second line instead of breaking the block."""
    block, rest = _trace_env_with("unknown")
    env = decode(block + b"agi_arg_1: a\nb\nagi_arg_2: c\n\n" + rest)[0]
    assert isinstance(env, AgiEnvironment)
    assert env.args == ("a\nb", "c")

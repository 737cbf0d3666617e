"""Numbers a PBX or a caller wrote are ASCII digits: "²" and "١" are not numbers, never errors."""

from __future__ import annotations

import pytest

from pbx_agent.errors import UnsafeValueError
from pbx_agent.pbx.asterisk_version import WhisperSupport, whisper_verdict
from pbx_agent.wire.agi import AgiDecoder, AgiReply, encode_reply
from pbx_agent.wire.digits import parse_decimal
from pbx_agent.wire.esl import EslEvent, EslMessage, decode_xml_event
from pbx_agent.wire.unicast import UnicastProtocolError, parse_read_rate

NOT_NUMBERS = ["\u00b2", "16\u00b9", "\u0661\u0666", "1_6", "+16", "", " ", "1" * 19, "1" * 5000]


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_parse_decimal_reads_anything_but_ascii_digits_as_none(text: str) -> None:
    """str.isdigit() and int() take these; a number on the wire is 1 to 18 ASCII digits."""
    assert parse_decimal(text) is None
    assert parse_decimal(text, signed=True) is None


def test_parse_decimal_reads_ascii_digits_and_a_signed_minus() -> None:
    """Plain digits, spaces around them, and '-' only when signed."""
    assert parse_decimal(" 16\t") == 16
    assert parse_decimal("-1") is None
    assert parse_decimal("-1", signed=True) == -1
    assert parse_decimal("-", signed=True) is None


def test_a_read_rate_with_a_superscript_digit_is_a_unicast_protocol_error() -> None:
    """'8000²' is refused like 11025, not a bare ValueError."""
    with pytest.raises(UnicastProtocolError, match="refused"):
        parse_read_rate("8000\u00b2")


def test_an_arabic_indic_read_rate_is_refused() -> None:
    """int() reads '٨٠٠٠' as 8000; FreeSWITCH never writes it."""
    with pytest.raises(UnicastProtocolError, match="refused"):
        parse_read_rate("\u0668\u0660\u0660\u0660")


def test_an_event_sequence_of_a_superscript_digit_is_unknown() -> None:
    """Event-Sequence '²' reads as no sequence instead of raising."""
    assert EslEvent((("Event-Sequence", "\u00b2"),)).sequence is None
    assert EslEvent((("Event-Sequence", "42"),)).sequence == 42


def test_a_linger_time_of_non_ascii_digits_is_unknown() -> None:
    """Linger-Time '١٠' is not 10 seconds; -1 still means until we close."""
    linger = EslMessage(
        (("Content-Type", "text/disconnect-notice"), ("Linger-Time", "\u0661\u0660"))
    )
    assert linger.linger_time is None
    assert EslMessage((("Linger-Time", "-1"),)).linger_time == -1


def test_an_agi_result_of_non_ascii_digits_is_not_an_int() -> None:
    """result='١' is not 1."""
    assert AgiReply(200, result="\u0661").result_int is None
    assert AgiReply(200, result="-1").result_int == -1


def test_an_asterisk_version_in_arabic_indic_digits_is_not_a_release() -> None:
    """'٢٢.١١' is not 22.11."""
    verdict = whisper_verdict("\u0662\u0662.\u0661\u0661.0")
    assert verdict.whisper is WhisperSupport.UNKNOWN


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (510, b"510 Invalid or unknown command\n"),
        (511, b"511 Command Not Permitted on a dead channel or intercept routine\n"),
        (520, b"520 Invalid command syntax.  Proper usage not available.\n"),
    ],
)
def test_an_agi_reply_code_alone_gets_asterisks_text_and_decodes(code: int, line: bytes) -> None:
    """encode_reply(510) writes what res_agi.c writes, which the decoder reads back."""
    assert encode_reply(code) == line
    decoder = AgiDecoder(expect_environment=False)
    decoder.feed(encode_reply(code))
    reply = decoder.next_message()
    assert isinstance(reply, AgiReply)
    assert reply.code == code


def test_an_agi_reply_code_without_text_asterisk_never_writes_is_refused() -> None:
    """Asterisk writes no bare '503' or '200': the encoder refuses instead of writing one."""
    with pytest.raises(UnsafeValueError, match="without result or text"):
        encode_reply(503)
    with pytest.raises(UnsafeValueError, match="without result or text"):
        encode_reply(200, extra="")


def test_an_xml_event_content_length_of_5000_digits_keeps_the_whole_body() -> None:
    """int() refused 5000 digits with a ValueError; now the length is unusable, the body kept."""

    body = b"<event><headers><Event-Name>X</Event-Name></headers><Content-Length>"
    body += b"9" * 5000 + b"</Content-Length><body>abc</body></event>"
    assert decode_xml_event(body).get("Content-Length") == "3"

"""The sans-IO AudioSocket codec: every frame kind, truncation, oversize, bad payloads."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx_agent.errors import ProtocolError
from pbx_agent.wire.audiosocket import (
    AUDIO_FRAME_BYTES,
    AudioSocketAudio,
    AudioSocketDecoder,
    AudioSocketDtmf,
    AudioSocketError,
    AudioSocketHangup,
    AudioSocketProtocolError,
    AudioSocketUuid,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
)

STREAM_ID = uuid.UUID("3f0c1c2e-8d4b-4f7a-9a51-2b8f5f3e9d10")


def decode_all(data: bytes, **kwargs: int) -> list[object]:
    decoder = AudioSocketDecoder(**kwargs)
    decoder.feed(data)
    messages = []
    while (message := decoder.next_message()) is not None:
        messages.append(message)
    return messages


def test_uuid_frame_is_the_binary_uuid():
    """A UUID frame is kind 0x01, length 16, the UUID's 16 bytes (as ast_audiosocket_init)."""
    frame = encode_uuid(STREAM_ID)
    assert frame == b"\x01\x00\x10" + STREAM_ID.bytes
    assert decode_all(frame) == [AudioSocketUuid(STREAM_ID)]


def test_audio_frame_carries_little_endian_samples():
    """An audio frame is kind 0x10 with a big-endian length and the raw samples."""
    pcm = (1000).to_bytes(2, "little", signed=True) * (AUDIO_FRAME_BYTES // 2)
    frame = encode_audio(pcm)
    assert frame[:3] == b"\x10\x01\x40"
    [message] = decode_all(frame)
    assert message == AudioSocketAudio(pcm)
    assert isinstance(message, AudioSocketAudio)
    assert message.duration_ms == 20


def test_hangup_frame_is_three_zero_bytes():
    """The hang-up frame is 0x00 0x00 0x00, as the protocol documents."""
    assert encode_hangup() == b"\x00\x00\x00"
    assert decode_all(b"\x00\x00\x00") == [AudioSocketHangup()]


def test_dtmf_frame_is_one_ascii_digit():
    """A DTMF frame is kind 0x03 with one ASCII digit."""
    assert encode_dtmf("5") == b"\x03\x00\x015"
    assert decode_all(b"\x03\x00\x01#") == [AudioSocketDtmf("#")]


def test_error_frame_keeps_its_optional_code():
    """An error frame (0xff) may carry an application code or nothing."""
    assert decode_all(encode_error(b"\x01") + encode_error()) == [
        AudioSocketError(b"\x01"),
        AudioSocketError(b""),
    ]


def test_frames_split_byte_by_byte_decode_the_same():
    """Frames arriving one byte at a time decode exactly as when they arrive whole."""
    stream = encode_uuid(STREAM_ID) + encode_audio(b"\x01\x00" * 160) + encode_hangup()
    decoder = AudioSocketDecoder()
    messages = []
    for byte in stream:
        decoder.feed(bytes([byte]))
        while (message := decoder.next_message()) is not None:
            messages.append(message)
    assert messages == decode_all(stream)
    assert len(messages) == 3


def test_clean_end_of_stream_is_not_an_error():
    """End of stream at a frame boundary is a clean end (at_eof)."""
    decoder = AudioSocketDecoder()
    decoder.feed(encode_hangup())
    decoder.feed(b"")
    assert decoder.next_message() == AudioSocketHangup()
    assert decoder.next_message() is None
    assert decoder.at_eof


def test_stream_ending_inside_a_header_raises():
    """End of stream after part of a header raises, naming how much arrived."""
    decoder = AudioSocketDecoder()
    decoder.feed(b"\x10\x01")
    decoder.feed(b"")
    with pytest.raises(AudioSocketProtocolError, match="header"):
        decoder.next_message()


def test_stream_ending_inside_a_payload_raises():
    """A truncated audio frame raises at end of stream, naming the missing bytes."""
    decoder = AudioSocketDecoder()
    decoder.feed(encode_audio(b"\x00\x00" * 160)[:100])
    assert decoder.next_message() is None
    decoder.feed(b"")
    with pytest.raises(AudioSocketProtocolError, match="97 of 320"):
        decoder.next_message()


def test_oversized_frame_is_refused_from_its_header():
    """A length over the limit is refused before its payload is buffered."""
    decoder = AudioSocketDecoder(max_payload_bytes=640)
    decoder.feed(b"\x10\xff\xff")
    with pytest.raises(AudioSocketProtocolError, match=r"65535.*at most 640"):
        decoder.next_message()
    assert decoder.buffered_bytes == 3


def test_decoder_stays_failed_after_an_error():
    """After a protocol error there is no resynchronisation: every call raises again."""
    decoder = AudioSocketDecoder()
    decoder.feed(b"\x42\x00\x00" + encode_hangup())
    with pytest.raises(AudioSocketProtocolError, match="0x42"):
        decoder.next_message()
    with pytest.raises(AudioSocketProtocolError, match="0x42"):
        decoder.next_message()


def test_codec_errors_are_protocol_errors():
    """Callers can catch the project's ProtocolError for any codec failure."""
    assert issubclass(AudioSocketProtocolError, ProtocolError)


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        (b"\x01\x00\x04abcd", "UUID frame with 4"),
        (b"\x03\x00\x02" + b"12", "DTMF frame"),
        (b"\x03\x00\x01" + b"x", "DTMF frame"),
        (b"\x10\x00\x03" + b"abc", "audio frame with 3"),
        (b"\x10\x00\x00", "audio frame with 0"),
        (b"\x00\x00\x01" + b"x", "hang-up frame with 1"),
        (b"\x02\x00\x00", "unknown frame kind 0x02"),
    ],
)
def test_malformed_frames_are_refused(frame: bytes, match: str):
    """Each kind's payload rule is enforced, and the message names the frame."""
    with pytest.raises(AudioSocketProtocolError, match=match):
        decode_all(frame)


def test_data_after_end_of_stream_is_refused():
    """Feeding bytes after b"" is a caller bug and says so."""
    decoder = AudioSocketDecoder()
    decoder.feed(b"")
    with pytest.raises(AudioSocketProtocolError, match="after end of stream"):
        decoder.feed(b"\x00")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: encode_audio(b"\x00"), "positive even"),
        (lambda: encode_audio(b""), "positive even"),
        (lambda: encode_dtmf("12"), "DTMF digit"),
        (lambda: encode_error(b"x" * 70000), "16-bit length"),
    ],
)
def test_encoders_refuse_what_cannot_be_framed(call, match: str):
    """Encoders refuse payloads the peer could not decode."""
    with pytest.raises(ValueError, match=match):
        call()


def test_decoder_limit_must_fit_the_wire():
    """The payload limit is between 1 and 65535 bytes."""
    with pytest.raises(ValueError, match="max_payload_bytes"):
        AudioSocketDecoder(max_payload_bytes=0)


@given(st.lists(st.binary(min_size=2, max_size=400).filter(lambda b: len(b) % 2 == 0), max_size=8))
def test_audio_frames_round_trip(chunks: list[bytes]):
    """Any sequence of audio payloads round-trips through the encoder and decoder."""
    stream = b"".join(encode_audio(chunk) for chunk in chunks)
    assert decode_all(stream) == [AudioSocketAudio(chunk) for chunk in chunks]

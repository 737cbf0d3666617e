"""Sans-IO codec for Asterisk's AudioSocket protocol (``AudioSocket()`` / ``res_audiosocket``).

The daemon is the AudioSocket *server*: the callback context runs
``AudioSocket(<attempt uuid>,<daemon host:port>)`` on the answered leg, Asterisk connects
and streams the leg's audio. No sockets, no clocks, no logging: bytes in, messages out.

Wire format (Asterisk ``res/res_audiosocket.c``, ``docs.asterisk.org`` "AudioSocket"):

- Every message is a 3-byte header, ``kind`` (1 byte) and payload length (2 bytes,
  unsigned, big-endian), then exactly that many payload bytes.
- ``0x00`` hang-up: terminate the stream (length 0; socket closure means the same).
- ``0x01`` UUID: 16 bytes, the binary form of the UUID given to ``AudioSocket()``.
  Asterisk sends it once, first (``ast_audiosocket_init``).
- ``0x03`` DTMF: one ASCII digit (Asterisk 20+ forwards the channel's DTMF).
- ``0x10`` audio: signed linear, 16-bit little-endian, 8 kHz, mono (the application
  sets the channel's read format to ``slin``; one 20 ms frame is 320 bytes).
- ``0xff`` error: an optional application-specific code (Asterisk's own: ``0x00`` none,
  ``0x01`` the calling party hung up, ``0x02`` frame forwarding error, ``0x04`` memory).

Invariants of the decoder:
- A payload longer than ``max_payload_bytes`` is refused from its header alone, before
  the payload is buffered: memory stays bounded whatever the peer claims. After any
  protocol error the stream cannot be resynchronised (there is no frame delimiter), so
  the decoder stays failed and raises again on every call.
- A UUID frame must be 16 bytes, a DTMF frame 1 byte, an audio frame an even number of
  bytes (whole samples) and not empty, a hang-up frame may carry nothing. Unknown kinds
  are refused, naming the kind.
- End of stream (``feed(b"")``) in the middle of a frame raises once, naming how many
  bytes were missing; at a frame boundary it is a clean end (``at_eof``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import IntEnum

from pbx_agent.errors import ProtocolError

__all__ = [
    "AUDIO_FRAME_BYTES",
    "AudioSocketAudio",
    "AudioSocketDecoder",
    "AudioSocketDtmf",
    "AudioSocketError",
    "AudioSocketHangup",
    "AudioSocketKind",
    "AudioSocketMessage",
    "AudioSocketProtocolError",
    "AudioSocketUuid",
    "encode_audio",
    "encode_dtmf",
    "encode_error",
    "encode_hangup",
    "encode_uuid",
]

_HEADER_BYTES = 3
_UUID_BYTES = 16
_MAX_WIRE_PAYLOAD = 0xFFFF
# One 20 ms frame of 8 kHz 16-bit audio: what Asterisk sends per voice frame.
AUDIO_FRAME_BYTES = 320
# Generous: Asterisk's own frames are 320 bytes; a few hundred ms of audio in one frame is
# still plausible from another implementation, 64 KiB is not needed by anyone.
_DEFAULT_MAX_PAYLOAD = 8000


class AudioSocketProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid AudioSocket frame."""


class AudioSocketKind(IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


@dataclass(frozen=True, slots=True)
class AudioSocketHangup:
    """The peer ends the stream."""


@dataclass(frozen=True, slots=True)
class AudioSocketUuid:
    """The stream's identity: the UUID the dialplan passed to ``AudioSocket()``."""

    uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class AudioSocketDtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class AudioSocketAudio:
    """Signed linear 16-bit little-endian 8 kHz mono samples."""

    pcm: bytes

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) // 16  # 8 samples per ms, 2 bytes per sample


@dataclass(frozen=True, slots=True)
class AudioSocketError:
    """The peer reports an error; ``code`` is its optional payload (empty when none)."""

    code: bytes


AudioSocketMessage = (
    AudioSocketHangup | AudioSocketUuid | AudioSocketDtmf | AudioSocketAudio | AudioSocketError
)

_DTMF_DIGITS = frozenset("0123456789*#ABCD")


class AudioSocketDecoder:
    """Incremental decoder: ``feed(bytes)`` then ``next_message()`` until it returns None."""

    def __init__(self, *, max_payload_bytes: int = _DEFAULT_MAX_PAYLOAD) -> None:
        if not 1 <= max_payload_bytes <= _MAX_WIRE_PAYLOAD:
            msg = (
                f"max_payload_bytes={max_payload_bytes} is out of range; "
                f"accepted: 1..{_MAX_WIRE_PAYLOAD}"
            )
            raise ValueError(msg)
        self._max_payload = max_payload_bytes
        self._buffer = bytearray()
        self._eof = False
        self._failed: AudioSocketProtocolError | None = None

    @property
    def at_eof(self) -> bool:
        """The stream ended and every complete frame has been returned."""
        return self._eof and not self._buffer

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed the stream."""
        if self._eof:
            if data:
                msg = "AudioSocket: data fed after end of stream"
                raise AudioSocketProtocolError(msg)
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_message(self) -> AudioSocketMessage | None:
        """The next complete message, or None when more bytes are needed (or at a clean end)."""
        if self._failed is not None:
            raise self._failed
        try:
            return self._next()
        except AudioSocketProtocolError as exc:
            self._failed = exc
            raise

    def _next(self) -> AudioSocketMessage | None:
        buffer = self._buffer
        if len(buffer) < _HEADER_BYTES:
            if self._eof and buffer:
                msg = (
                    f"AudioSocket: stream ended inside a frame header "
                    f"({len(buffer)} of {_HEADER_BYTES} bytes)"
                )
                raise AudioSocketProtocolError(msg)
            return None
        raw_kind = buffer[0]
        length = int.from_bytes(buffer[1:3], "big")
        kind = _kind(raw_kind, length)
        if length > self._max_payload:
            msg = (
                f"AudioSocket: {kind.name} frame announces {length} payload bytes; "
                f"accepted: at most {self._max_payload}"
            )
            raise AudioSocketProtocolError(msg)
        end = _HEADER_BYTES + length
        if len(buffer) < end:
            if self._eof:
                msg = (
                    f"AudioSocket: stream ended inside a {kind.name} frame "
                    f"({len(buffer) - _HEADER_BYTES} of {length} payload bytes)"
                )
                raise AudioSocketProtocolError(msg)
            return None
        payload = bytes(buffer[_HEADER_BYTES:end])
        del buffer[:end]
        return _message(kind, payload)


def _kind(raw_kind: int, length: int) -> AudioSocketKind:
    try:
        return AudioSocketKind(raw_kind)
    except ValueError:
        msg = (
            f"AudioSocket: unknown frame kind 0x{raw_kind:02x} (length {length}); "
            "accepted: 0x00 hang-up, 0x01 UUID, 0x03 DTMF, 0x10 audio, 0xff error"
        )
        raise AudioSocketProtocolError(msg) from None


def _message(kind: AudioSocketKind, payload: bytes) -> AudioSocketMessage:
    if kind is AudioSocketKind.HANGUP:
        if payload:
            msg = f"AudioSocket: hang-up frame with {len(payload)} payload bytes; accepted: 0"
            raise AudioSocketProtocolError(msg)
        return AudioSocketHangup()
    if kind is AudioSocketKind.UUID:
        if len(payload) != _UUID_BYTES:
            msg = (
                f"AudioSocket: UUID frame with {len(payload)} payload bytes; "
                f"accepted: exactly {_UUID_BYTES}"
            )
            raise AudioSocketProtocolError(msg)
        return AudioSocketUuid(uuid.UUID(bytes=payload))
    if kind is AudioSocketKind.DTMF:
        digit = payload.decode("ascii", errors="replace")
        if len(payload) != 1 or digit not in _DTMF_DIGITS:
            msg = f"AudioSocket: DTMF frame with payload {payload!r}; accepted: one of 0-9 * # A-D"
            raise AudioSocketProtocolError(msg)
        return AudioSocketDtmf(digit)
    if kind is AudioSocketKind.AUDIO:
        if not payload or len(payload) % 2:
            msg = (
                f"AudioSocket: audio frame with {len(payload)} payload bytes; "
                "accepted: a positive even number (16-bit samples)"
            )
            raise AudioSocketProtocolError(msg)
        return AudioSocketAudio(payload)
    return AudioSocketError(payload)


def _frame(kind: AudioSocketKind, payload: bytes) -> bytes:
    if len(payload) > _MAX_WIRE_PAYLOAD:
        msg = (
            f"AudioSocket: {kind.name} payload of {len(payload)} bytes does not fit "
            f"the 16-bit length; accepted: at most {_MAX_WIRE_PAYLOAD}"
        )
        raise ValueError(msg)
    return bytes((kind,)) + len(payload).to_bytes(2, "big") + payload


def encode_hangup() -> bytes:
    """Ask the peer to end the stream (``AudioSocket()`` returns and the dialplan goes on)."""
    return _frame(AudioSocketKind.HANGUP, b"")


def encode_uuid(stream_id: uuid.UUID) -> bytes:
    return _frame(AudioSocketKind.UUID, stream_id.bytes)


def encode_dtmf(digit: str) -> bytes:
    if len(digit) != 1 or digit not in _DTMF_DIGITS:
        msg = f"AudioSocket: DTMF digit {digit!r} refused; accepted: one of 0-9 * # A-D"
        raise ValueError(msg)
    return _frame(AudioSocketKind.DTMF, digit.encode("ascii"))


def encode_audio(pcm: bytes) -> bytes:
    """One audio frame: 16-bit little-endian 8 kHz mono samples."""
    if not pcm or len(pcm) % 2:
        msg = f"AudioSocket: audio of {len(pcm)} bytes refused; accepted: a positive even number"
        raise ValueError(msg)
    return _frame(AudioSocketKind.AUDIO, pcm)


def encode_error(code: bytes = b"") -> bytes:
    return _frame(AudioSocketKind.ERROR, code)

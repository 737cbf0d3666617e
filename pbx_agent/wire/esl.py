"""Sans-IO codec for the FreeSWITCH Event Socket (ESL), both directions.

Used by the daemon's inbound client and outbound-socket server (decoding what FreeSWITCH
sends, encoding commands) and by the fake FreeSWITCH in ``pbx_agent.testing`` (decoding
commands, encoding greetings, replies and events). No sockets, no clocks, no logging.

The wire format, as captured from FreeSWITCH 1.10.12 (``tests/traces/freeswitch``):

- Line ends are LF only. A message is a block of ``Name: value`` lines closed by an empty
  line; when the block has a ``Content-Length`` header, exactly that many bytes of body
  follow, with nothing after them (the next message starts right after the body).
- Messages from FreeSWITCH (``EslDecoder`` -> ``EslMessage``) always carry a
  ``Content-Type``, though not always first: events put ``Content-Length`` before it, and
  the outbound ``connect`` reply is a whole serialized CHANNEL_DATA event whose
  ``Content-Type: command/reply``, ``Reply-Text: %2BOK%0A`` (URL-encoded ``+OK\\n``),
  ``Socket-Mode`` and ``Control`` come last. Outer header values are not URL-encoded,
  except in that block (``EslMessage.channel_data()`` decodes it).
- Messages from a client (``EslCommandDecoder`` -> ``EslCommand``) start with the command
  line (``api status``, ``sendmsg <uuid>``), then optional headers, then a body when they
  have a ``Content-Length`` (``sendevent``).
- A header line is split on its first ``:`` and the value loses its leading spaces and
  tabs, as FreeSWITCH's own parser does. Names repeat and keep their order. Empty lines
  before a message are skipped (FreeSWITCH's server skips them too).
- Event bodies (``EslMessage.event()``): ``text/event-plain`` is a header block with
  URL-encoded values, then a blank line; an event with a body (BACKGROUND_JOB, sendevent)
  ends its header block with its own ``Content-Length: N``, a blank line and N raw bytes.
  ``text/event-json`` is one object of strings with duplicate keys kept (a name FreeSWITCH
  added twice appears twice), the body under ``_body``; an array value (a multi-value
  header) becomes repeated pairs. ``text/event-xml`` gives the ``<headers>`` children
  (URL-encoded text) and ``<body>``, cut to the declared ``<Content-Length>`` because
  FreeSWITCH's pretty-printer indents the closing tag into the text. In every format an
  event that has a body carries that body's ``Content-Length`` as its last header.
- Text is UTF-8 decoded with ``surrogateescape``: any byte sequence round-trips.

Errors. ``EslProtocolError`` names the frame. Two kinds:
- recoverable: a frame whose header block could be delimited and whose length is known
  (a line without ``:``, no ``Content-Type``) is consumed first, then the error is raised;
  the caller may log it and keep reading. A bad event body raises from ``event()``, the
  frame itself having been delivered.
- fatal (framing lost): a ``Content-Length`` that is not a decimal number or exceeds
  ``max_body_bytes``, or a header block growing past ``max_header_bytes`` without its
  blank line. Nothing after it can be trusted, so the decoder raises and then raises the
  same error on every later call (``broken`` is set); the owner must drop the connection.
End of stream in the middle of a frame raises once. Work is linear in the bytes fed and
memory is bounded by the two limits.

Encoding refuses (``UnsafeValueError``) CR, LF or NUL in a command line, header name or
value, a header name that is empty or contains ``:``, and a value starting with a space
or tab (FreeSWITCH would strip it). Values are never altered.

Arguments. FreeSWITCH splits ``api`` arguments on spaces with its own quoting rules
(``switch_separate_string``: ``'...'`` quotes, ``\\`` escapes, a leading ``^^X`` changes
the delimiter, then each argument is cleaned of quotes and escapes), and splits the
``{name=value,...}`` variable blocks of originate/bridge dial strings on ``,`` and then
``=`` with the same rules, inside braces found by counting ``{``/``}``.
``quote_api_arg`` and ``quote_channel_variable`` build text that those parsers read back
as exactly the original value (tests replay the C logic), so caller-controlled text such
as a caller name stays one argument. Neither protects against ``${...}`` expansion, which
FreeSWITCH applies to application data: never pass caller text as application data.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NoReturn
from urllib.parse import unquote_to_bytes

from pbx_agent.errors import ProtocolError, UnsafeValueError
from pbx_agent.wire.digits import parse_decimal
from pbx_agent.wire.escaping import Escaped, printable
from pbx_agent.wire.headers import HeaderLookup

__all__ = [
    "DISCONNECT_GOODBYE",
    "ContentType",
    "EslCommand",
    "EslCommandDecoder",
    "EslDecoder",
    "EslEvent",
    "EslMessage",
    "EslProtocolError",
    "channel_variables",
    "decode_json_event",
    "decode_plain_event",
    "decode_xml_event",
    "encode_api",
    "encode_api_response",
    "encode_auth",
    "encode_auth_request",
    "encode_bgapi",
    "encode_channel_data_reply",
    "encode_command",
    "encode_command_reply",
    "encode_disconnect_notice",
    "encode_event",
    "encode_event_json_body",
    "encode_event_plain_body",
    "encode_execute",
    "encode_hangup",
    "encode_message",
    "encode_sendmsg",
    "quote_api_arg",
    "quote_channel_variable",
    "url_encode",
]

DISCONNECT_GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"

_BLANK = b"\n\n"
_SHOWN_CHARS = 200
_DEFAULT_MAX_HEADER_BYTES = 256 * 1024
# FreeSWITCH's own reader accepts commands of up to 10 MiB; a ``show channels as json``
# on a busy switch is the largest thing the daemon reads.
_DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class ContentType(StrEnum):
    """The ``Content-Type`` values FreeSWITCH sends."""

    AUTH_REQUEST = "auth/request"
    COMMAND_REPLY = "command/reply"
    API_RESPONSE = "api/response"
    EVENT_PLAIN = "text/event-plain"
    EVENT_JSON = "text/event-json"
    EVENT_XML = "text/event-xml"
    LOG_DATA = "log/data"
    DISCONNECT_NOTICE = "text/disconnect-notice"
    RUDE_REJECTION = "text/rude-rejection"


_EVENT_TYPES = frozenset({ContentType.EVENT_PLAIN, ContentType.EVENT_JSON, ContentType.EVENT_XML})


class EslProtocolError(ProtocolError):
    """The ESL peer sent bytes that are not an ESL message; the message shows the frame."""


def _show(frame: bytes | str) -> str:
    """The frame for an error message: decoded, escaped, truncated."""
    text = frame.decode("utf-8", "surrogateescape") if isinstance(frame, bytes) else frame
    if len(text) > _SHOWN_CHARS:
        return Escaped(printable(text[:_SHOWN_CHARS]) + f"... ({len(text)} chars)")
    return printable(text)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _url_decode(value: bytes) -> str:
    # FreeSWITCH's switch_url_decode: %XX only; '+' stays '+'.
    if b"%" not in value:
        return _text(value)
    return _text(unquote_to_bytes(value))


class _EslHeaders(HeaderLookup):
    __slots__ = ()

    headers: tuple[tuple[str, str], ...]

    def _pairs(self) -> tuple[tuple[str, str], ...]:
        return self.headers


@dataclass(frozen=True, slots=True)
class EslEvent(_EslHeaders):
    """One FreeSWITCH event, decoded from any of the three formats.

    ``headers`` keeps wire order and repeated names (``Hangup-Cause`` twice in
    CHANNEL_HANGUP_COMPLETE); values are decoded (no URL encoding). Look-ups ignore case
    and return the first occurrence. ``body`` is the event's body (BACKGROUND_JOB result,
    sendevent payload) or ``None``.
    """

    headers: tuple[tuple[str, str], ...]
    body: str | None = None
    _index: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    @property
    def name(self) -> str:
        """``Event-Name`` (``CUSTOM`` for custom events; see ``subclass``)."""
        return self.get("Event-Name") or ""

    @property
    def subclass(self) -> str | None:
        """``Event-Subclass`` of a CUSTOM event (``avmd::beep``, ``sofia::reinvite``)."""
        return self.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        """The channel the event is about (``Unique-ID``), if any."""
        return self.get("Unique-ID")

    @property
    def job_uuid(self) -> str | None:
        return self.get("Job-UUID")

    @property
    def sequence(self) -> int | None:
        """``Event-Sequence`` (strictly increasing, except duplicated avmd events)."""
        value = self.get("Event-Sequence")
        return parse_decimal(value)

    @property
    def variables(self) -> dict[str, str]:
        """Channel variables carried by the event (``variable_*`` headers, prefix removed)."""
        result: dict[str, str] = {}
        for name, value in self.headers:
            if name.startswith("variable_"):
                result.setdefault(name[9:], value)
        return result

    def variable(self, name: str) -> str | None:
        """One channel variable (``variable_<name>``), or ``None``."""
        return self.get("variable_" + name)


@dataclass(frozen=True, slots=True)
class EslMessage(_EslHeaders):
    """One message from FreeSWITCH: its outer headers (raw, ordered) and raw body bytes."""

    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    _index: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    @property
    def content_type(self) -> str:
        return self.get("Content-Type") or ""

    @property
    def is_event(self) -> bool:
        return self.content_type in _EVENT_TYPES

    @property
    def is_channel_data(self) -> bool:
        """The outbound ``connect`` reply: a CHANNEL_DATA event serialized as headers."""
        return self.content_type == ContentType.COMMAND_REPLY and "Event-Name" in self

    @property
    def reply_text(self) -> str | None:
        """``Reply-Text`` (URL-decoded in the ``connect`` reply, where it is ``+OK\\n``)."""
        value = self.get("Reply-Text")
        if value is not None and self.is_channel_data:
            return _url_decode(value.encode("utf-8", "surrogateescape"))
        return value

    @property
    def ok(self) -> bool:
        """A ``command/reply`` that starts with ``+OK``."""
        text = self.reply_text
        return text is not None and text.startswith("+OK")

    @property
    def job_uuid(self) -> str | None:
        return self.get("Job-UUID")

    @property
    def is_disconnect_notice(self) -> bool:
        return self.content_type == ContentType.DISCONNECT_NOTICE

    @property
    def disposition(self) -> str | None:
        """``Content-Disposition`` of a disconnect notice: ``linger`` or ``disconnect``."""
        return self.get("Content-Disposition")

    @property
    def is_linger_notice(self) -> bool:
        """The channel hung up but the socket stays open to deliver the last events."""
        return self.is_disconnect_notice and self.disposition == "linger"

    @property
    def linger_time(self) -> int | None:
        """``Linger-Time`` of a linger notice in seconds; -1 means until we close."""
        return parse_decimal(self.get("Linger-Time"), signed=True)

    @property
    def body_text(self) -> str:
        return _text(self.body)

    def event(self) -> EslEvent:
        """The event in a ``text/event-plain``, ``-json`` or ``-xml`` message."""
        content_type = self.content_type
        if content_type == ContentType.EVENT_PLAIN:
            return decode_plain_event(self.body)
        if content_type == ContentType.EVENT_JSON:
            return decode_json_event(self.body)
        if content_type == ContentType.EVENT_XML:
            return decode_xml_event(self.body)
        msg = (
            f"ESL message of Content-Type {_show(content_type)!r} is not an event; accepted: "
            "text/event-plain, text/event-json, text/event-xml"
        )
        raise EslProtocolError(msg)

    def channel_data(self) -> EslEvent:
        """The channel data of the outbound ``connect`` reply, values URL-decoded."""
        if not self.is_channel_data:
            msg = (
                "ESL message is not an outbound connect reply (a command/reply with "
                f"Event-Name): {_show(self.content_type)!r}"
            )
            raise EslProtocolError(msg)
        return EslEvent(
            tuple(
                (name, _url_decode(value.encode("utf-8", "surrogateescape")))
                for name, value in self.headers
            )
        )


@dataclass(frozen=True, slots=True)
class EslCommand(_EslHeaders):
    """One command from an ESL client: the command line, its headers and optional body."""

    line: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    _index: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    @property
    def verb(self) -> str:
        """The first word, lower-cased (``api``, ``bgapi``, ``sendmsg``, ``event`` ...)."""
        return self.line.split(" ", 1)[0].lower()

    @property
    def args(self) -> str:
        """Everything after the first space of the command line."""
        parts = self.line.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""


def _parse_header_lines(lines: list[bytes], frame: bytes) -> tuple[list[tuple[str, str]], str]:
    """Name/value pairs of header lines; an error text for lines without ``:``."""
    pairs: list[tuple[str, str]] = []
    error = ""
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name:
            if not error:
                error = (
                    f"ESL header line {_show(line)!r} has no 'Name: value' form in frame "
                    f"{_show(frame)!r}"
                )
            continue
        pairs.append((_text(name), _text(value.lstrip(b" \t"))))
    return pairs, error


def _content_length(pairs: list[tuple[str, str]], frame: bytes, limit: int) -> int:
    """The frame's body length from its first Content-Length; raises if unusable."""
    for name, value in pairs:
        if name.lower() == "content-length":
            if not value.isascii() or not value.isdigit():
                msg = (
                    f"ESL Content-Length {_show(value)!r} is not a decimal number; framing "
                    f"is lost: {_show(frame)!r}"
                )
                raise EslProtocolError(msg)
            length = int(value)
            if length > limit:
                msg = (
                    f"ESL Content-Length {length} exceeds max_body_bytes={limit}; framing "
                    f"is lost: {_show(frame)!r}"
                )
                raise EslProtocolError(msg)
            return length
    return 0


class _Framer:
    """Splits a byte stream into (header block, body) frames; see the module docstring."""

    __slots__ = (
        "_body_len",
        "_broken",
        "_buf",
        "_eof",
        "_eof_reported",
        "_error",
        "_first",
        "_frame",
        "_max_body_bytes",
        "_max_header_bytes",
        "_pairs",
        "_scan",
    )

    _commands = False

    def __init__(
        self,
        *,
        max_header_bytes: int = _DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = _DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if max_header_bytes < 64:
            msg = f"max_header_bytes={max_header_bytes} is too small; accepted: 64 or more"
            raise ValueError(msg)
        if max_body_bytes < 0:
            msg = f"max_body_bytes={max_body_bytes} is negative; accepted: 0 or more"
            raise ValueError(msg)
        self._buf = bytearray()
        self._eof = False
        self._eof_reported = False
        self._max_header_bytes = max_header_bytes
        self._max_body_bytes = max_body_bytes
        # Where the next blank-line search starts: bytes before it were already scanned.
        self._scan = 0
        # A header block already parsed, waiting for its body.
        self._pairs: list[tuple[str, str]] | None = None
        self._first = ""
        self._frame = b""
        self._error = ""
        self._body_len = 0
        self._broken: str | None = None

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            msg = "ESL decoder fed data after the end of the stream"
            raise ValueError(msg)
        if self._broken is None:
            self._buf += data

    @property
    def at_eof(self) -> bool:
        """The stream has ended and every message in it has been returned."""
        return self._eof and not self._buf and self._pairs is None

    @property
    def broken(self) -> bool:
        """Framing was lost (fatal error raised); the connection must be dropped."""
        return self._broken is not None

    def _next_frame(self) -> tuple[str, list[tuple[str, str]], bytes] | None:
        if self._broken is not None:
            raise EslProtocolError(self._broken)
        buf = self._buf
        if (self._pairs is None and not self._read_head()) or len(buf) < self._body_len:
            self._at_partial_end()
            return None
        body = bytes(buf[: self._body_len])
        del buf[: self._body_len]
        pairs, first, error = self._pairs, self._first, self._error
        assert pairs is not None  # set by _read_head
        self._pairs = None
        self._body_len = 0
        if (
            not error
            and not self._commands
            and not any(name.lower() == "content-type" for name, _ in pairs)
        ):
            error = f"ESL message has no Content-Type: {_show(self._frame)!r}"
        if error:
            raise EslProtocolError(error)
        return first, pairs, body

    def _read_head(self) -> bool:
        """Parse the next header block into the pending state; False if incomplete."""
        buf = self._buf
        # Empty lines between messages are skipped, as FreeSWITCH's own reader does.
        skip = 0
        while skip < len(buf) and buf[skip] in (0x0A, 0x0D):
            skip += 1
        if skip:
            del buf[:skip]
            self._scan = 0
        if not buf:
            return False
        end = buf.find(_BLANK, self._scan)
        if end < 0:
            if len(buf) > self._max_header_bytes:
                self._lose_framing(
                    f"ESL header block grew past max_header_bytes={self._max_header_bytes} "
                    f"without a blank line; framing is lost: {_show(bytes(buf[:_SHOWN_CHARS]))!r}"
                )
            self._scan = max(0, len(buf) - 1)
            return False
        frame = bytes(buf[:end])
        del buf[: end + 2]
        self._scan = 0
        if end > self._max_header_bytes:
            self._lose_framing(
                f"ESL header block of {end} bytes exceeds max_header_bytes="
                f"{self._max_header_bytes}; framing is lost: {_show(frame)!r}"
            )
        lines = frame.split(b"\n")
        first = ""
        if self._commands:
            first = _text(lines[0])
            lines = lines[1:]
        pairs, error = _parse_header_lines(lines, frame)
        try:
            length = _content_length(pairs, frame, self._max_body_bytes)
        except EslProtocolError as exc:
            self._lose_framing(str(exc))
        self._pairs = pairs
        self._first = first
        self._frame = frame
        self._error = error
        self._body_len = length
        return True

    def _lose_framing(self, message: str) -> NoReturn:
        self._broken = message
        del self._buf[:]
        self._pairs = None
        raise EslProtocolError(message)

    def _at_partial_end(self) -> None:
        """``None`` (need more), unless the stream ended inside a frame: then raise once."""
        if not self._eof or self._eof_reported or (not self._buf and self._pairs is None):
            return
        self._eof_reported = True
        if self._pairs is not None:
            got = len(self._buf)
            msg = (
                f"ESL stream ended inside a body: {got} of {self._body_len} bytes after "
                f"{_show(self._frame)!r}"
            )
        else:
            msg = (
                f"ESL stream ended inside a header block ({len(self._buf)} bytes): "
                f"{_show(bytes(self._buf))!r}"
            )
        del self._buf[:]
        self._pairs = None
        raise EslProtocolError(msg)


class EslDecoder(_Framer):
    """Turns the byte stream from FreeSWITCH into ``EslMessage`` objects.

    ``feed(data)`` then ``next_message()`` until it returns ``None`` (more bytes needed).
    ``feed(b"")`` marks the end of the stream.
    """

    __slots__ = ()

    def next_message(self) -> EslMessage | None:
        """The next complete message, or ``None`` if more bytes are needed."""
        frame = self._next_frame()
        if frame is None:
            return None
        _, pairs, body = frame
        return EslMessage(tuple(pairs), body)


class EslCommandDecoder(_Framer):
    """Turns the byte stream from an ESL client into ``EslCommand`` objects (server side)."""

    __slots__ = ()
    _commands = True

    def next_command(self) -> EslCommand | None:
        """The next complete command, or ``None`` if more bytes are needed."""
        frame = self._next_frame()
        if frame is None:
            return None
        line, pairs, body = frame
        has_length = any(name.lower() == "content-length" for name, _ in pairs)
        return EslCommand(line, tuple(pairs), body if has_length else None)


# -- event bodies -------------------------------------------------------------------------


def decode_plain_event(body: bytes) -> EslEvent:
    """A ``text/event-plain`` body: URL-encoded header lines, blank line, optional body."""
    head, blank, rest = body.partition(_BLANK)
    if not blank:
        msg = f"ESL plain event has no blank line after its headers: {_show(body)!r}"
        raise EslProtocolError(msg)
    pairs: list[tuple[str, str]] = []
    for line in head.split(b"\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name:
            msg = (
                f"ESL plain event header line {_show(line)!r} has no 'Name: value' form: "
                f"{_show(head)!r}"
            )
            raise EslProtocolError(msg)
        pairs.append((_text(name), _url_decode(value.lstrip(b" \t"))))
    if not rest:
        return EslEvent(tuple(pairs))
    declared = next((v for n, v in reversed(pairs) if n.lower() == "content-length"), None)
    if declared != str(len(rest)):
        msg = (
            f"ESL plain event body is {len(rest)} bytes but its Content-Length is "
            f"{_show(declared or 'missing')!r}: {_show(head)!r}"
        )
        raise EslProtocolError(msg)
    return EslEvent(tuple(pairs), _text(rest))


class _JsonObject(list[tuple[str, object]]):
    """A decoded JSON object as its ordered pairs (duplicate keys kept)."""


def _json_pairs(pairs: list[tuple[str, object]]) -> _JsonObject:
    return _JsonObject(pairs)


def decode_json_event(body: bytes) -> EslEvent:
    """A ``text/event-json`` body: one object of strings; duplicate keys are kept."""
    try:
        decoded = json.loads(_text(body), object_pairs_hook=_json_pairs)
    except (ValueError, RecursionError) as exc:
        msg = f"ESL json event is not valid JSON ({exc}): {_show(body)!r}"
        raise EslProtocolError(msg) from None
    if not isinstance(decoded, _JsonObject):
        msg = f"ESL json event is not a JSON object: {_show(body)!r}"
        raise EslProtocolError(msg)
    pairs: list[tuple[str, str]] = []
    event_body: str | None = None
    for name, value in decoded:
        if isinstance(value, str):
            if name == "_body":
                event_body = value
            else:
                pairs.append((name, value))
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            # A multi-value header (FreeSWITCH serializes it as an array).
            pairs.extend((name, item) for item in value)
        else:
            msg = (
                f"ESL json event field {_show(name)!r} is not a string or a list of strings: "
                f"{_show(body)!r}"
            )
            raise EslProtocolError(msg)
    return EslEvent(tuple(pairs), event_body)


def decode_xml_event(body: bytes) -> EslEvent:
    """A ``text/event-xml`` body: ``<event><headers>...</headers>[<body>]</event>``."""
    if b"<!" in body:
        # FreeSWITCH never sends a DTD or CDATA; refusing them keeps the parser from
        # expanding entities.
        msg = f"ESL xml event contains a declaration ('<!'): {_show(body)!r}"
        raise EslProtocolError(msg)
    try:
        root = ET.fromstring(body)  # noqa: S314 - no DTD possible, see above
    except ET.ParseError as exc:
        msg = f"ESL xml event is not well-formed ({exc}): {_show(body)!r}"
        raise EslProtocolError(msg) from None
    headers = root.find("headers")
    if root.tag != "event" or headers is None:
        msg = f"ESL xml event has no <event><headers>: {_show(body)!r}"
        raise EslProtocolError(msg)
    pairs = [
        (child.tag, _url_decode((child.text or "").encode("utf-8", "surrogateescape")))
        for child in headers
    ]
    body_element = root.find("body")
    if body_element is None:
        return EslEvent(tuple(pairs))
    text = body_element.text or ""
    length_element = root.find("Content-Length")
    declared = (length_element.text or "").strip() if length_element is not None else ""
    raw = text.encode("utf-8", "surrogateescape")
    # ASCII digits only (parse_decimal): "²" and 5000 digits made int() raise.
    length = parse_decimal(declared)
    if length is not None and length <= len(raw):
        raw = raw[:length]
    pairs.append(("Content-Length", str(len(raw))))
    return EslEvent(tuple(pairs), _text(raw))


# URL encoding as switch_url_encode does it: these, controls and bytes >= 0x7F.
_URL_UNSAFE = frozenset(b'\r\n "#%&+:;<=>?@[\\]^`{|}')
_URL_TABLE = [
    f"%{byte:02X}" if byte < 0x20 or byte > 0x7E or byte in _URL_UNSAFE else chr(byte)
    for byte in range(256)
]


def url_encode(value: str) -> str:
    """A header value as FreeSWITCH URL-encodes it in plain events."""
    raw = value.encode("utf-8", "surrogateescape")
    return "".join([_URL_TABLE[byte] for byte in raw])


def _body_parts(event: EslEvent) -> tuple[tuple[tuple[str, str], ...], bytes | None]:
    """Headers without the body's own trailing Content-Length, and the body bytes."""
    headers = event.headers
    if event.body is None:
        return headers, None
    if headers and headers[-1][0].lower() == "content-length":
        headers = headers[:-1]
    return headers, event.body.encode("utf-8", "surrogateescape")


def encode_event_plain_body(event: EslEvent) -> bytes:
    """The ``text/event-plain`` body for ``event``, as FreeSWITCH serializes it."""
    headers, body = _body_parts(event)
    lines = [f"{name}: {url_encode(value)}\n" for name, value in headers]
    for name, _ in headers:
        _check_name(name)
    text = "".join(lines).encode("utf-8", "surrogateescape")
    if body:
        return text + f"Content-Length: {len(body)}\n\n".encode() + body
    return text + b"\n"


def encode_event_json_body(event: EslEvent) -> bytes:
    """The ``text/event-json`` body for ``event``: duplicate names stay duplicate keys."""
    headers, body = _body_parts(event)
    items = [(name, value) for name, value in headers]
    if body:
        items.append(("Content-Length", str(len(body))))
        items.append(("_body", _text(body)))
    text = ",".join(
        json.dumps(name, ensure_ascii=False) + ":" + json.dumps(value, ensure_ascii=False)
        for name, value in items
    )
    return ("{" + text + "}").encode("utf-8", "surrogateescape")


def encode_event(event: EslEvent, event_format: str = "plain") -> bytes:
    """A whole event message (``Content-Length`` then ``Content-Type``), plain or json."""
    if event_format == "plain":
        body = encode_event_plain_body(event)
    elif event_format == "json":
        body = encode_event_json_body(event)
    else:
        msg = f"ESL event format {event_format!r} cannot be encoded; accepted: plain, json"
        raise ValueError(msg)
    head = f"Content-Length: {len(body)}\nContent-Type: text/event-{event_format}\n\n"
    return head.encode() + body


# -- encoding commands and messages ---------------------------------------------------------


def _check_name(name: str) -> None:
    if (
        not name
        or ":" in name
        or "\r" in name
        or "\n" in name
        or "\0" in name
        or name[0] in " \t"
        or name[-1] in " \t"
    ):
        msg = (
            f"ESL header name {printable(name)!r} is not allowed; accepted: a non-empty "
            "name without ':', CR, LF, NUL or leading/trailing blanks"
        )
        raise UnsafeValueError(msg)


def _check_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        msg = (
            f"ESL header {printable(name)!r} value {printable(value)!r} contains CR, LF or "
            "NUL, which would split the message; accepted: any other text"
        )
        raise UnsafeValueError(msg)
    if value[:1] in (" ", "\t"):
        msg = (
            f"ESL header {printable(name)!r} value {printable(value)!r} starts with a blank, "
            "which FreeSWITCH strips; accepted: a value starting with another character"
        )
        raise UnsafeValueError(msg)


def _check_line(line: str) -> None:
    if not line or "\r" in line or "\n" in line or "\0" in line:
        word = line.split(" ", 1)[0]
        # auth / userauth carry the password: never printed, even in an error.
        shown = f"{word} (the rest not shown)" if word in ("auth", "userauth") else line
        msg = (
            f"ESL command line {printable(shown)!r} is empty or contains CR, LF or NUL; "
            "accepted: one non-empty line"
        )
        raise UnsafeValueError(msg)


def _header_block(
    first: Iterable[str], headers: Iterable[tuple[str, str]], body: bytes | None
) -> bytes:
    lines = list(first)
    declared: str | None = None
    for name, value in headers:
        _check_name(name)
        _check_value(name, value)
        if name.lower() == "content-length" and declared is None:
            declared = value
        lines.append(f"{name}: {value}\n")
    if body is not None and declared is None:
        declared = str(len(body))
        lines.append(f"Content-Length: {declared}\n")
    size = len(body) if body is not None else 0
    if declared is not None and declared != str(size):
        msg = (
            f"ESL Content-Length {printable(declared)!r} does not match the body of {size} "
            "bytes; accepted: the body's exact length"
        )
        raise UnsafeValueError(msg)
    lines.append("\n")
    return "".join(lines).encode("utf-8", "surrogateescape") + (body or b"")


def _as_bytes(body: bytes | str | None) -> bytes | None:
    if isinstance(body, str):
        return body.encode("utf-8", "surrogateescape")
    return body


def encode_command(
    line: str, headers: Iterable[tuple[str, str]] = (), body: bytes | str | None = None
) -> bytes:
    """A command: its line, headers (verbatim), and a body with its ``Content-Length``.

    A ``Content-Length`` among ``headers`` must match ``body``; without one it is added
    after the other headers.
    """
    _check_line(line)
    return _header_block([line + "\n"], headers, _as_bytes(body))


def encode_auth(password: str) -> bytes:
    return encode_command(f"auth {password}")


def encode_api(command: str) -> bytes:
    """``api <command>``: a synchronous API call, answered by one ``api/response``."""
    return encode_command(f"api {command}")


def encode_bgapi(command: str, job_uuid: str | None = None) -> bytes:
    """``bgapi <command>``; with ``job_uuid`` the BACKGROUND_JOB carries our own id."""
    headers = [("Job-UUID", job_uuid)] if job_uuid is not None else []
    return encode_command(f"bgapi {command}", headers)


def encode_sendmsg(
    uuid: str | None, headers: Iterable[tuple[str, str]], body: bytes | str | None = None
) -> bytes:
    """``sendmsg [<uuid>]`` (no uuid on an outbound socket: the socket's own channel)."""
    if uuid is not None and (not uuid or " " in uuid):
        msg = f"ESL sendmsg uuid {printable(uuid)!r} is not allowed; accepted: one word"
        raise UnsafeValueError(msg)
    return encode_command("sendmsg" if uuid is None else f"sendmsg {uuid}", headers, body)


def encode_execute(
    app: str,
    arg: str | None = None,
    *,
    uuid: str | None = None,
    event_uuid: str | None = None,
    event_lock: bool = False,
) -> bytes:
    """``sendmsg`` executing a dialplan application; ``event_uuid`` tags its events.

    CHANNEL_EXECUTE_COMPLETE carries ``Application-UUID`` equal to ``event_uuid``.
    """
    headers = [("call-command", "execute"), ("execute-app-name", app)]
    if arg is not None and arg != "":
        headers.append(("execute-app-arg", arg))
    if event_lock:
        headers.append(("event-lock", "true"))
    if event_uuid is not None:
        headers.append(("Event-UUID", event_uuid))
    return encode_sendmsg(uuid, headers)


def encode_hangup(cause: str = "NORMAL_CLEARING", *, uuid: str | None = None) -> bytes:
    return encode_sendmsg(uuid, [("call-command", "hangup"), ("hangup-cause", cause)])


def encode_message(message: EslMessage) -> bytes:
    """Re-frame a message exactly: its headers verbatim, a blank line, its body."""
    return _header_block([], message.headers, message.body or None)


# -- server-side encoders (the fake FreeSWITCH) ---------------------------------------------


def encode_auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def encode_command_reply(reply_text: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """``command/reply`` with ``Reply-Text`` then ``headers`` (bgapi adds ``Job-UUID``)."""
    return _header_block(
        [], [("Content-Type", "command/reply"), ("Reply-Text", reply_text), *headers], None
    )


def encode_api_response(body: bytes | str) -> bytes:
    raw = _as_bytes(body) or b""
    return f"Content-Type: api/response\nContent-Length: {len(raw)}\n\n".encode() + raw


def encode_disconnect_notice(
    *,
    session_uuid: str | None = None,
    linger: bool = False,
    channel_name: str | None = None,
    linger_time: int | None = None,
) -> bytes:
    """A ``text/disconnect-notice``: inbound goodbye, or an outbound linger/disconnect."""
    headers = [("Content-Type", "text/disconnect-notice")]
    if session_uuid is not None:
        headers.append(("Controlled-Session-UUID", session_uuid))
        headers.append(("Content-Disposition", "linger" if linger else "disconnect"))
    if linger:
        headers.append(("Channel-Name", channel_name or ""))
        headers.append(("Linger-Time", str(-1 if linger_time is None else linger_time)))
        return _header_block([], [*headers, ("Content-Length", "0")], b"")
    return _header_block([], headers, DISCONNECT_GOODBYE.encode())


def encode_channel_data_reply(
    channel_data: EslEvent, *, socket_mode: str = "async", control: str = "full"
) -> bytes:
    """The outbound ``connect`` reply: the channel data serialized, reply headers last."""
    reply = EslEvent(
        (
            *channel_data.headers,
            ("Content-Type", "command/reply"),
            ("Reply-Text", "+OK\n"),
            ("Socket-Mode", socket_mode),
            ("Control", control),
        )
    )
    return encode_event_plain_body(reply)


# -- arguments ------------------------------------------------------------------------------

# Printable ASCII that FreeSWITCH's splitter reads literally (no blank, quote or backslash).
_PLAIN_ARG = re.compile(r"[!-&(-\[\]-~]+")


def _refuse_controls(value: str, what: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        msg = (
            f"{what} {printable(value)!r} contains CR, LF or NUL, which no FreeSWITCH "
            "escape carries; accepted: any other text"
        )
        raise UnsafeValueError(msg)


def quote_api_arg(value: str) -> str:
    """``value`` as exactly one argument of an ``api``/``bgapi`` command line.

    FreeSWITCH splits the arguments on spaces (``switch_separate_string``), honouring
    ``'...'`` and ``\\`` escapes, then strips quotes, escapes and surrounding blanks. A
    value of plain characters is returned as is; anything else is single-quoted with
    ``\\`` and ``'`` escaped, which also protects blanks, control characters and a
    leading ``^^`` (a delimiter change). CR, LF and NUL are refused.
    """
    _refuse_controls(value, "ESL api argument")
    if _PLAIN_ARG.fullmatch(value) and not value.startswith("^^"):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _escape_separated(value: str, delimiter: str) -> str:
    """Escape for one level of switch_separate_string on ``delimiter`` + cleanup."""
    out: list[str] = []
    for ch in value:
        if ch in ("\\", "'", delimiter):
            out.append("\\" + ch)
        elif ch == " ":
            # Cleanup trims blanks around an element; \\s is read back as a space.
            out.append("\\s")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    return "".join(out)


def quote_channel_variable(value: str) -> str:
    """``value`` as the value of ``{name=value,...}`` in an originate or bridge string.

    The block is split on ``,`` and then each element on its first ``=``, each split
    followed by a cleanup pass, so the value is escaped for both levels. Braces are found
    by counting, with no escape, so a value's ``{``/``}`` must balance; CR, LF and NUL are
    refused. Wrap the whole dial string with ``quote_api_arg`` when it goes into ``api``.
    """
    _refuse_controls(value, "ESL channel variable value")
    depth = 0
    for ch in value:
        depth += 1 if ch == "{" else -1 if ch == "}" else 0
        if depth < 0:
            break
    if depth != 0:
        msg = (
            f"ESL channel variable value {printable(value)!r} has unbalanced braces, which "
            "would end the variable block early; accepted: balanced '{' and '}'"
        )
        raise UnsafeValueError(msg)
    # An empty value would make the element "name=" with no second part, which FreeSWITCH
    # drops; '' is read back as an empty value.
    inner = _escape_separated(value, "=") if value else "''"
    return _escape_separated(inner, ",")


_VARIABLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def channel_variables(variables: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``{name=value,...}`` for an originate/bridge dial string, values escaped."""
    items = variables.items() if isinstance(variables, Mapping) else variables
    parts: list[str] = []
    for name, value in items:
        if not _VARIABLE_NAME.fullmatch(name):
            msg = (
                f"ESL channel variable name {printable(name)!r} is not allowed; accepted: "
                "letters, digits, '_', '.', '-'"
            )
            raise UnsafeValueError(msg)
        parts.append(f"{name}={quote_channel_variable(value)}")
    return "{" + ",".join(parts) + "}"

"""Sans-IO codec for the Asterisk Manager Interface (AMI), both directions.

Used by the daemon's AMI client (decoding responses and events, encoding actions) and by
the fake Asterisk in ``pbx_agent.testing`` (decoding actions, encoding the banner,
responses and events). No sockets, no clocks, no logging: bytes in, messages out.

The wire format, as captured from Asterisk 22 (``tests/traces/asterisk-22``):

- On connect the server sends one banner line, ``Asterisk Call Manager/11.0.0\\r\\n``,
  with no blank line after it (``AmiBanner``).
- Every other message is a block of ``Name: value\\r\\n`` lines closed by an empty line
  (``\\r\\n\\r\\n``). The first header says what it is: ``Response``, ``Event`` or
  ``Action``. Names repeat (``Output:``, ``Variable:``, ``ChanVariable:``), so a message
  keeps its fields as an ordered tuple of pairs; look-ups are case-insensitive and return
  the first occurrence.
- A line is split on its first ``": "``. ``Name:`` with nothing after it is a name with
  an empty value (Asterisk sends ``AccountCode: ``, and some builds trim the space). A
  line with ``:`` but no space after it is split on that ``:`` (Asterisk's own header
  look-up accepts ``Name:value``). A line without any ``:`` is a protocol error.
- Empty lines between messages (stray ``\\r\\n``) are skipped.
- Text is UTF-8, decoded with ``surrogateescape``: any byte sequence, valid UTF-8 or not,
  round-trips exactly through decode and encode. A block is decoded only once its
  terminator has arrived, so a multi-byte character split across TCP segments is never
  seen half.

Legacy command output. Asterisk before 14 answered the ``Command`` action with
``Response: Follows``, ``Privilege: Command``, an optional ``ActionID``, then the raw CLI
output (bare ``\\n`` line ends, possibly empty lines, possibly ``Name: value`` look-alikes)
and ``--END COMMAND--\\r\\n\\r\\n``. Asterisk 14 and later (22 in trace 01c) answer
``Response: Success`` / ``Message: Command output follows`` with one ``Output:`` header per
line, which is the ordinary format. The decoder accepts the legacy form so the daemon
also works against old servers: a block whose first line is ``Response: Follows`` is
framed by ``--END COMMAND--\\r\\n\\r\\n`` (not by the first empty line), its leading
``Response``/``Privilege``/``ActionID`` lines become fields, and every line of the raw
output becomes an ``Output`` field, so consumers read both forms the same way
(``message.get_all("Output")``). Re-encoding such a message produces the modern form, not
the legacy bytes.

Errors. A malformed block raises ``AmiProtocolError`` *after* it has been consumed, so
the caller may log it and keep reading. A frame that grows past ``max_frame_bytes``
without a terminator raises once and the decoder then discards bytes up to the next
``\\r\\n\\r\\n`` (memory stays bounded, the stream resynchronises). End of stream in the
middle of a frame raises once. Work is linear in the bytes fed: each byte is scanned for
the terminator once, whatever the chunk sizes.

Encoding refuses (``UnsafeValueError``) CR, LF or NUL anywhere, and a field name that is
empty, contains ``:`` or starts or ends with a space: such a value would add a header or
a message. Values are never altered.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NoReturn

from pbx_agent.errors import ProtocolError, UnsafeValueError
from pbx_agent.wire.escaping import Escaped, printable
from pbx_agent.wire.headers import HeaderLookup

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AmiBanner",
    "AmiDecoder",
    "AmiMessage",
    "AmiProtocolError",
    "encode_action",
    "encode_banner",
    "encode_message",
]

_TERMINATOR = b"\r\n\r\n"
_LEGACY_PREFIX = b"Response: Follows\r\n"
_LEGACY_INSIDE = b"\r\n\r\n" + _LEGACY_PREFIX
_LEGACY_TERMINATOR = b"--END COMMAND--\r\n\r\n"
_LEGACY_HEADERS = frozenset({"response", "privilege", "actionid"})
_KINDS: dict[str, Literal["response", "event", "action"]] = {
    "response": "response",
    "event": "event",
    "action": "action",
}
_BANNER_MAX_BYTES = 1024
_SHOWN_CHARS = 200


class AmiProtocolError(ProtocolError):
    """The AMI peer sent bytes that are not an AMI message; the message shows the frame."""


def _show(frame: bytes | str) -> str:
    """The frame for an error message: decoded, escaped, truncated."""
    text = frame.decode("utf-8", "surrogateescape") if isinstance(frame, bytes) else frame
    if len(text) > _SHOWN_CHARS:
        return Escaped(printable(text[:_SHOWN_CHARS]) + f"... ({len(text)} chars)")
    return printable(text)


@dataclass(frozen=True, slots=True)
class AmiBanner:
    """The greeting line a server sends first: ``Asterisk Call Manager/11.0.0``."""

    text: str  # the whole line without CRLF
    version: str  # the protocol version after the last "/", e.g. "11.0.0"


@dataclass(frozen=True, slots=True)
class AmiMessage(HeaderLookup):
    """One AMI block: a Response, an Event, or (read by a server) an Action.

    ``fields`` keeps wire order and repeated names. Name look-ups ignore case and return
    the first occurrence.
    """

    fields: tuple[tuple[str, str], ...]
    _index: dict[str, str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def _pairs(self) -> tuple[tuple[str, str], ...]:
        return self.fields

    @property
    def kind(self) -> Literal["response", "event", "action"]:
        """What the block is, from its first header name."""
        first = self.fields[0][0] if self.fields else ""
        kind = _KINDS.get(first.lower())
        if kind is None:
            msg = (
                f"AMI message starts with {_show(first)!r}; "
                "accepted first headers: Response, Event, Action"
            )
            raise AmiProtocolError(msg)
        return kind

    @property
    def name(self) -> str:
        """The Event name, the Response status (Success, Error, ...) or the Action name."""
        self.kind  # noqa: B018 - validates the first header
        return self.fields[0][1]

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")


class AmiDecoder:
    """Turns a byte stream from an AMI peer into ``AmiBanner`` / ``AmiMessage`` objects.

    ``feed(data)`` then ``next_message()`` until it returns ``None`` (more bytes needed).
    ``feed(b"")`` marks the end of the stream. With ``expect_banner`` (the client side)
    the first line is the server's banner.
    """

    __slots__ = (
        "_buf",
        "_eof",
        "_eof_reported",
        "_expect_banner",
        "_legacy",
        "_max_frame_bytes",
        "_pending",
        "_scan",
        "_skipping",
    )

    def __init__(self, *, expect_banner: bool = True, max_frame_bytes: int = 1 << 20) -> None:
        if max_frame_bytes < 64:
            msg = f"max_frame_bytes={max_frame_bytes} is too small; accepted: 64 or more"
            raise ValueError(msg)
        self._buf = bytearray()
        self._eof = False
        self._eof_reported = False
        self._expect_banner = expect_banner
        self._max_frame_bytes = max_frame_bytes
        # Where the next terminator search starts: bytes before it were already scanned.
        self._scan = 0
        # None: not known yet whether the current frame is a legacy "Response: Follows".
        self._legacy: bool | None = None
        self._skipping = False
        # Frames already parsed by the fast path, in order; an error is raised in its turn.
        self._pending: deque[AmiMessage | AmiProtocolError] = deque()

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            msg = "AMI decoder fed data after the end of the stream"
            raise ValueError(msg)
        self._buf += data

    @property
    def at_eof(self) -> bool:
        """The stream has ended and every message in it has been returned."""
        return self._eof and not self._buf and not self._pending

    def next_message(self) -> AmiBanner | AmiMessage | None:
        """The next complete banner or message, or ``None`` if more bytes are needed."""
        if self._pending:
            return _unwrap(self._pending.popleft())
        if self._skipping and not self._skip_oversized():
            if self._eof:
                # The oversized frame was reported when it overflowed: drop its tail quietly.
                del self._buf[:]
            return None
        if self._expect_banner:
            return self._next_banner()
        buf = self._buf
        # Skip empty lines between messages.
        while buf.startswith(b"\r\n"):
            del buf[:2]
            self._scan = 0
        if not buf:
            return None
        legacy = self._legacy
        if legacy is None and len(buf) >= len(_LEGACY_PREFIX):
            legacy = self._legacy = buf.startswith(_LEGACY_PREFIX)
        if not legacy:
            # Fast path: decode and split every complete frame buffered so far at once.
            end = buf.rfind(_TERMINATOR, self._scan)
            if end >= 0 and buf.find(_LEGACY_INSIDE, 0, end + len(_TERMINATOR)) < 0:
                return self._split_frames(end)
        return self._next_frame(legacy=bool(legacy))

    def _next_frame(self, *, legacy: bool) -> AmiMessage | None:
        """One frame, framed by its own terminator (legacy frames, or a legacy one follows)."""
        buf = self._buf
        terminator = _LEGACY_TERMINATOR if legacy else _TERMINATOR
        end = buf.find(terminator, self._scan)
        if end < 0:
            if len(buf) > self._max_frame_bytes:
                self._overflow()
            self._scan = max(0, len(buf) - len(terminator) + 1)
            self._raise_if_ended_inside_frame()
            return None
        frame_end = end + len(terminator)
        block = buf[:end].decode("utf-8", "surrogateescape")
        del buf[:frame_end]
        self._scan = 0
        self._legacy = None
        self._check_size(block, frame_end)
        if legacy:
            return _parse_legacy(block)
        return _parse_block(block)

    def _split_frames(self, end: int) -> AmiMessage | None:
        """Parse every frame up to the terminator at ``end``; none of them is legacy."""
        buf = self._buf
        # rfind found the last terminator of a run of CRLF pairs; the frame ends where the
        # run starts (what a front-to-back search finds), the rest are empty lines.
        while end >= 2 and buf[end - 2 : end] == b"\r\n":
            end -= 2
        text = buf[:end].decode("utf-8", "surrogateescape")
        del buf[: end + len(_TERMINATOR)]
        self._scan = 0
        self._legacy = None
        pending = self._pending
        for block in text.split("\r\n\r\n"):
            # Stray empty lines between frames end up at the start of the next block.
            frame = block
            while frame.startswith("\r\n"):
                frame = frame[2:]
            if not frame:
                continue
            try:
                if len(frame) * 4 + 4 > self._max_frame_bytes:
                    self._check_size(frame, len(frame.encode("utf-8", "surrogateescape")) + 4)
                pending.append(_parse_block(frame))
            except AmiProtocolError as exc:
                pending.append(exc)
        return _unwrap(pending.popleft()) if pending else None

    def _check_size(self, block: str, frame_bytes: int) -> None:
        if frame_bytes > self._max_frame_bytes:
            msg = (
                f"AMI frame of {frame_bytes} bytes exceeds max_frame_bytes="
                f"{self._max_frame_bytes}: {_show(block)!r}"
            )
            raise AmiProtocolError(msg)

    def _next_banner(self) -> AmiBanner | None:
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > _BANNER_MAX_BYTES:
                self._expect_banner = False
                line = bytes(buf[:_BANNER_MAX_BYTES])
                del buf[:]
                self._skipping = True
                msg = f"AMI banner line longer than {_BANNER_MAX_BYTES} bytes: {_show(line)!r}"
                raise AmiProtocolError(msg)
            if self._eof and buf:
                self._expect_banner = False
                self._raise_if_ended_inside_frame()
            return None
        line = bytes(buf[:end])
        del buf[: end + 2]
        self._expect_banner = False
        text = line.decode("utf-8", "surrogateescape")
        _, slash, version = text.rpartition("/")
        if not slash or not version or ": " in text:
            msg = (
                f"AMI banner {_show(text)!r} is not a greeting line "
                "like 'Asterisk Call Manager/11.0.0'"
            )
            raise AmiProtocolError(msg)
        return AmiBanner(text=text, version=version)

    def _overflow(self) -> NoReturn:
        buf = self._buf
        head = bytes(buf[:_SHOWN_CHARS])
        size = len(buf)
        # Keep the last bytes: the terminator may be split across this and the next chunk.
        del buf[: -(len(_TERMINATOR) - 1)]
        self._scan = 0
        self._legacy = None
        self._skipping = True
        msg = (
            f"AMI frame grew past max_frame_bytes={self._max_frame_bytes} without a "
            f"terminator ({size} bytes so far); discarding up to the next blank line: "
            f"{_show(head)!r}"
        )
        raise AmiProtocolError(msg)

    def _skip_oversized(self) -> bool:
        """Discard the rest of an oversized frame; True once its end was found."""
        buf = self._buf
        end = buf.find(_TERMINATOR)
        if end < 0:
            del buf[: -(len(_TERMINATOR) - 1)]
            return False
        del buf[: end + len(_TERMINATOR)]
        self._skipping = False
        return True

    def _raise_if_ended_inside_frame(self) -> None:
        """Raise once if the stream ended with a partial frame buffered."""
        if not self._eof or self._eof_reported or not self._buf:
            return
        self._eof_reported = True
        rest = bytes(self._buf)
        del self._buf[:]
        self._skipping = False
        msg = f"AMI stream ended inside a frame ({len(rest)} bytes): {_show(rest)!r}"
        raise AmiProtocolError(msg)


def _unwrap(item: AmiMessage | AmiProtocolError) -> AmiMessage:
    if isinstance(item, AmiProtocolError):
        raise item
    return item


def _parse_block(text: str) -> AmiMessage:
    parts = [line.partition(": ") for line in text.split("\r\n")]
    fields = tuple([(name, value) for name, sep, value in parts if sep])
    if len(fields) != len(parts):
        fields = tuple(_parse_line(name, sep, value, text) for name, sep, value in parts)
    if fields[0][0].lower() not in _KINDS:
        msg = (
            f"AMI message starts with {_show(fields[0][0])!r}, expected Response, Event "
            f"or Action: {_show(text)!r}"
        )
        raise AmiProtocolError(msg)
    return AmiMessage(fields)


def _parse_line(name: str, sep: str, value: str, text: str) -> tuple[str, str]:
    """The slow path for a line without ``": "``: ``Name:`` or ``Name:value``."""
    if sep:
        return name, value
    name, sep, value = name.partition(":")
    if not sep or not name:
        msg = f"AMI header line {_show(name)!r} has no 'Name: value' form in frame {_show(text)!r}"
        raise AmiProtocolError(msg)
    return name, value


def _parse_legacy(text: str) -> AmiMessage:
    """A pre-14 ``Response: Follows`` block (terminator already removed)."""
    fields: list[tuple[str, str]] = []
    rest = text
    while True:
        line, sep, after = rest.partition("\r\n")
        name, colon, value = line.partition(":")
        if not sep or not colon or name.lower() not in _LEGACY_HEADERS:
            break
        if name.lower() in {key.lower() for key, _ in fields}:
            break
        fields.append((name, value.removeprefix(" ")))
        rest = after
    # The output uses bare LF line ends; a final line may lack one.
    output = rest.split("\n")
    if output and output[-1] in ("", "\r"):
        output.pop()
    fields.extend(("Output", line.removesuffix("\r")) for line in output)
    return AmiMessage(tuple(fields))


def _check_name(name: str) -> None:
    if (
        not name
        or ":" in name
        or "\r" in name
        or "\n" in name
        or "\0" in name
        or name[0] == " "
        or name[-1] == " "
    ):
        msg = (
            f"AMI field name {printable(name)!r} is not allowed; accepted: a non-empty "
            "name without ':', CR, LF, NUL or leading/trailing spaces"
        )
        raise UnsafeValueError(msg)


# Fields whose values are never printed, even in an error.
_SECRET_FIELDS = frozenset({"secret", "key"})


def _check_value(name: str, value: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        shown = "(not shown)" if name.lower() in _SECRET_FIELDS else repr(printable(value))
        msg = (
            f"AMI field {printable(name)!r} value {shown} contains CR, LF or "
            "NUL, which would split the message; accepted: any other text"
        )
        raise UnsafeValueError(msg)


def _encode_lines(lines: list[str]) -> bytes:
    lines.append("\r\n")
    text = "".join(lines)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        msg = f"AMI message holds a code point UTF-8 cannot carry ({exc.reason}): {_show(text)!r}"
        raise UnsafeValueError(msg) from exc


def _field_lines(fields: Iterable[tuple[str, str]], lines: list[str]) -> None:
    for name, value in fields:
        _check_name(name)
        _check_value(name, value)
        lines.append(f"{name}: {value}\r\n")


def encode_action(
    action: str, fields: Iterable[tuple[str, str]] = (), *, action_id: str | None = None
) -> bytes:
    """The bytes of one action: ``Action``, then ``ActionID`` (if given), then ``fields``."""
    _check_value("Action", action)
    lines = [f"Action: {action}\r\n"]
    if action_id is not None:
        _check_value("ActionID", action_id)
        lines.append(f"ActionID: {action_id}\r\n")
    _field_lines(fields, lines)
    if action_id is not None and sum(line[:10].lower() == "actionid: " for line in lines) > 1:
        msg = f"AMI action {printable(action)!r} has ActionID both as keyword and in fields"
        raise UnsafeValueError(msg)
    return _encode_lines(lines)


def encode_message(fields: Iterable[tuple[str, str]]) -> bytes:
    """The bytes of one server-side block (a Response or an Event), fields in order."""
    lines: list[str] = []
    _field_lines(fields, lines)
    if not lines:
        msg = "AMI message has no fields; accepted: at least a Response or Event header"
        raise UnsafeValueError(msg)
    return _encode_lines(lines)


def encode_banner(version: str = "11.0.0") -> bytes:
    """The greeting line a server sends on connect."""
    _check_value("banner", version)
    if "/" in version or not version:
        msg = f"AMI banner version {printable(version)!r} is not allowed; accepted: e.g. 11.0.0"
        raise UnsafeValueError(msg)
    return f"Asterisk Call Manager/{version}\r\n".encode("utf-8", "surrogateescape")

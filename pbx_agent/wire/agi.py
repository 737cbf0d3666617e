"""Sans-IO codec for the Asterisk Gateway Interface over TCP (FastAGI), both sides.

Used by the daemon's FastAGI server (``pbx_agent.pbx.fastagi``: decode the environment and
the replies, encode commands) and by test doubles playing Asterisk (decode commands,
encode the environment and replies). No sockets, no clocks, no logging.

The wire format, as captured from Asterisk 22 (``tests/traces/asterisk-22/05a*``):

- Lines end with a bare LF. Text is UTF-8, decoded with ``surrogateescape`` so any byte
  sequence survives exactly.
- Asterisk opens with the environment: ``agi_key: value`` lines, then one empty line
  (``AgiEnvironment``). Asterisk writes ``unknown`` for an absent caller id, name, DNID or
  RDNIS; the codec keeps values as sent. It writes every key of ``setup_env`` in one fixed
  order (``_ENV_ORDER``, ending ``agi_threadid``), then ``agi_arg_N``, values unescaped: after
  a value a caller controls (a caller name), only the key that follows it starts a field,
  and every other line, an empty one too, is a line of that value, so a name cannot forge
  keys or end the block early.
- Then the server writes one command line at a time and Asterisk answers each with one
  reply (``AgiReply``), always a code then text: ``200 result=1 (value)``,
  ``200 result=0 endpos=3404``, ``510 Invalid or unknown command``, ``511 Command Not
  Permitted on a dead channel or intercept routine``, or the multi-line usage block
  ``520-Invalid command syntax.  Proper usage follows:`` ... ``520 End of proper usage.``
  whose body is free text.
- When the caller hangs up, Asterisk writes ``HANGUP`` on a line of its own, unsolicited,
  right after the reply to the command that was running (``AgiHangup``).
- Empty lines between replies carry nothing and are skipped.

Command lines are split by Asterisk's ``parse_args`` (res/res_agi.c): words separated by
spaces or tabs; a double quote toggles quoting (and an empty ``""`` is an empty word);
a backslash makes the next character literal. ``encode_command`` quotes an argument only
when it needs to, escapes ``\\`` and ``"`` inside, and refuses CR, LF and NUL (which
would end the line early) and lines that Asterisk would cut: it reads at most 2047 bytes
per line (``AGI_BUF_LEN``) and 127 words (``MAX_ARGS``). ``parse_command`` is the exact
inverse, for test doubles.

Errors. A malformed line raises ``AgiProtocolError`` after it has been consumed. A line
longer than ``max_line_bytes`` raises and is discarded up to its end. End of stream in
the middle of the environment block, of a usage block or of a line raises once: a client
that sends half the environment and disconnects is an error, never a wait.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from pbx_agent.errors import ProtocolError, UnsafeValueError
from pbx_agent.wire.digits import parse_decimal
from pbx_agent.wire.escaping import Escaped, printable

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AGI_MAX_ARGS",
    "AGI_MAX_LINE_BYTES",
    "KNOWN_COMMANDS",
    "AgiCommand",
    "AgiCommandDecoder",
    "AgiDecoder",
    "AgiEnvironment",
    "AgiHangup",
    "AgiProtocolError",
    "AgiReply",
    "encode_command",
    "encode_environment",
    "encode_hangup",
    "encode_reply",
    "parse_command",
    "quote_arg",
]

# res_agi.c reads a command into a 2048-byte buffer (AGI_BUF_LEN, with its NUL) and splits
# it into at most MAX_ARGS - 1 = 127 words; a longer line would be cut into two commands.
AGI_MAX_LINE_BYTES: Final = 2047
AGI_MAX_ARGS: Final = 127

# The commands of Asterisk 22's res_agi.c (and res_speech's SPEECH ones), longest first
# where one is a prefix of another. Used to split a parsed line into verb and arguments.
KNOWN_COMMANDS: Final[tuple[str, ...]] = (
    "ANSWER",
    "ASYNCAGI BREAK",
    "CHANNEL STATUS",
    "CONTROL STREAM FILE",
    "DATABASE DEL",
    "DATABASE DELTREE",
    "DATABASE GET",
    "DATABASE PUT",
    "EXEC",
    "GET DATA",
    "GET FULL VARIABLE",
    "GET OPTION",
    "GET VARIABLE",
    "GOSUB",
    "HANGUP",
    "NOOP",
    "RECEIVE CHAR",
    "RECEIVE TEXT",
    "RECORD FILE",
    "SAY ALPHA",
    "SAY DATE",
    "SAY DATETIME",
    "SAY DIGITS",
    "SAY NUMBER",
    "SAY PHONETIC",
    "SAY TIME",
    "SEND IMAGE",
    "SEND TEXT",
    "SET AUTOHANGUP",
    "SET CALLERID",
    "SET CONTEXT",
    "SET EXTENSION",
    "SET MUSIC",
    "SET PRIORITY",
    "SET VARIABLE",
    "SPEECH ACTIVATE GRAMMAR",
    "SPEECH CREATE",
    "SPEECH DEACTIVATE GRAMMAR",
    "SPEECH DESTROY",
    "SPEECH LOAD GRAMMAR",
    "SPEECH RECOGNIZE",
    "SPEECH SET",
    "SPEECH UNLOAD GRAMMAR",
    "STREAM FILE",
    "TDD MODE",
    "VERBOSE",
    "WAIT FOR DIGIT",
)
_COMMANDS_BY_WORDS: Final = {tuple(c.split(" ")): c for c in KNOWN_COMMANDS}
_LONGEST_COMMAND: Final = max(len(c.split(" ")) for c in KNOWN_COMMANDS)

_SHOWN_CHARS = 200
_USAGE_MAX_LINES = 1000
_ENV_MAX_LINES = 1000
# The whole block: Asterisk's is ~700 bytes; a long dialplan argument list stays well under.
_ENV_MAX_BYTES = 32768
# res_agi.c writes the block in this order (trace 05a; agi_network* first for FastAGI),
# values unescaped: a caller ID name holding a line feed spills onto lines of its own.
_ENV_ORDER = (
    "agi_network",
    "agi_network_script",
    "agi_request",
    "agi_channel",
    "agi_language",
    "agi_type",
    "agi_uniqueid",
    "agi_version",
    "agi_callerid",
    "agi_calleridname",
    "agi_callingpres",
    "agi_callingani2",
    "agi_callington",
    "agi_callingtns",
    "agi_dnid",
    "agi_rdnis",
    "agi_context",
    "agi_extension",
    "agi_priority",
    "agi_enhanced",
    "agi_accountcode",
    "agi_threadid",
)
# Values a caller (or a dialplan quoting one) controls, where a line feed can hide: Asterisk
# writes every key of _ENV_ORDER, always, in that order (then agi_arg_N, then the empty
# line), so after one of these only the key that follows it in _ENV_ORDER starts a field;
# any other line, empty or forged ("agi_extension: 900"), is a line of the value.
_ENV_FREE_TEXT = frozenset(
    {
        "agi_network_script",
        "agi_request",
        "agi_callerid",
        "agi_calleridname",
        "agi_dnid",
        "agi_rdnis",
    }
)
_ENV_NEXT: Final = {
    key: _ENV_ORDER[rank + 1] for rank, key in enumerate(_ENV_ORDER[:-1]) if key in _ENV_FREE_TEXT
}
# A sample offset: 18 digits is far past any recording, and int() stays cheap.
_MAX_ENDPOS_DIGITS = 18

_RESULT_LINE = re.compile(
    r"result=(?P<result>\S*)"
    r"(?: \((?P<data>.*)\))?"
    r"(?: endpos=(?P<endpos>-?[0-9]+))?"
    r"(?: (?P<extra>.*))?",
    re.DOTALL,
)
# What res_agi.c writes after these codes when it has no result (agi_handle_command).
_ASTERISK_TEXTS: Final = {
    510: "Invalid or unknown command",
    511: "Command Not Permitted on a dead channel or intercept routine",
    520: "Invalid command syntax.  Proper usage not available.",
}
# Asterisk writes every status line as "NNN text" ("NNN-text" opening a usage block).
_CODE_LINE = re.compile(r"(?P<code>[0-9]{3})(?P<sep>[ -])(?P<rest>.*)", re.DOTALL)
_WORD_CHARS_NEEDING_QUOTES = frozenset(' \t"\\')


class AgiProtocolError(ProtocolError):
    """The AGI peer sent bytes that are not AGI; the message shows the line."""


def _show(text: str) -> str:
    if len(text) > _SHOWN_CHARS:
        return Escaped(printable(text[:_SHOWN_CHARS]) + f"... ({len(text)} chars)")
    return printable(text)


# --- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgiEnvironment(Mapping[str, str]):
    """The ``agi_*`` block Asterisk sends first: a read-only mapping plus typed accessors.

    Keys are the names as sent (``agi_channel``); a repeated key keeps its first value.
    """

    fields: tuple[tuple[str, str], ...]
    _index: Mapping[str, str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index: dict[str, str] = {}
        for key, value in self.fields:
            index.setdefault(key, value)
        object.__setattr__(self, "_index", MappingProxyType(index))

    def __getitem__(self, key: str) -> str:
        return self._index[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def _value(self, key: str) -> str:
        return self._index.get(key, "")

    @property
    def request(self) -> str:
        """``agi://127.0.0.1:4573/route?x=1``."""
        return self._value("agi_request")

    @property
    def network(self) -> bool:
        return self._value("agi_network") == "yes"

    @property
    def network_script(self) -> str:
        """The request's path and query after the host: ``route?x=1``."""
        return self._value("agi_network_script")

    @property
    def script_path(self) -> str:
        """The path of ``network_script`` without its query: ``route``."""
        return self.network_script.partition("?")[0]

    @property
    def query(self) -> Mapping[str, str]:
        """The query parameters of ``network_script`` (percent-decoded; first value wins)."""
        params: dict[str, str] = {}
        for key, value in parse_qsl(self.network_script.partition("?")[2], keep_blank_values=True):
            params.setdefault(key, value)
        return MappingProxyType(params)

    @property
    def channel(self) -> str:
        return self._value("agi_channel")

    @property
    def uniqueid(self) -> str:
        return self._value("agi_uniqueid")

    @property
    def callerid(self) -> str:
        """The caller's number as sent (Asterisk writes ``unknown`` when there is none)."""
        return self._value("agi_callerid")

    @property
    def calleridname(self) -> str:
        return self._value("agi_calleridname")

    @property
    def dnid(self) -> str:
        return self._value("agi_dnid")

    @property
    def rdnis(self) -> str:
        return self._value("agi_rdnis")

    @property
    def context(self) -> str:
        return self._value("agi_context")

    @property
    def extension(self) -> str:
        return self._value("agi_extension")

    @property
    def priority(self) -> str:
        return self._value("agi_priority")

    @property
    def language(self) -> str:
        return self._value("agi_language")

    @property
    def channel_type(self) -> str:
        return self._value("agi_type")

    @property
    def accountcode(self) -> str:
        return self._value("agi_accountcode")

    @property
    def version(self) -> str:
        return self._value("agi_version")

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1``, ``agi_arg_2``, ... in order, up to the first one missing."""
        out: list[str] = []
        while (value := self._index.get(f"agi_arg_{len(out) + 1}")) is not None:
            out.append(value)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class AgiReply:
    """Asterisk's answer to one command.

    ``code`` is the status (200, 510, 511, 520, ...). For ``NNN result=...`` lines,
    ``result`` is the word after ``result=``, ``data`` the text in parentheses,
    ``endpos`` the playback offset in samples, ``extra`` any text left over. For other
    lines ``extra`` is the text after the code. A multi-line 520 keeps its first line's
    text in ``extra`` and the usage body lines in ``usage``.
    """

    code: int
    result: str | None = None
    data: str | None = None
    endpos: int | None = None
    extra: str | None = None
    usage: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def result_int(self) -> int | None:
        """``result`` as an integer, or ``None`` if absent or not a number (ASCII digits,
        perhaps after ``-``: Asterisk prints ``%d``)."""
        return parse_decimal(self.result, signed=True)

    @property
    def dead_channel(self) -> bool:
        """511: the channel is gone (or in an intercept routine); only a few commands run."""
        return self.code == 511


@dataclass(frozen=True, slots=True)
class AgiHangup:
    """The unsolicited ``HANGUP`` line: the channel hung up while the session runs."""


@dataclass(frozen=True, slots=True)
class AgiCommand:
    """A command line as Asterisk reads it: ``argv`` after ``parse_args``.

    ``verb`` is the known command the first words name (upper case, e.g. ``GET VARIABLE``)
    or ``None`` when they name none; ``args`` are the words after it.
    """

    argv: tuple[str, ...]
    verb: str | None
    args: tuple[str, ...]


# --- command lines ----------------------------------------------------------------------


def quote_arg(value: str) -> str:
    """One ``parse_args`` word with exactly ``value``'s text (CR, LF, NUL refused)."""
    _check_line_text("AGI argument", value)
    if value and not _WORD_CHARS_NEEDING_QUOTES.intersection(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_command(verb: str, *args: str) -> bytes:
    """One command line: ``verb`` as is (e.g. ``GET VARIABLE``), then each argument quoted.

    Raises ``UnsafeValueError`` for CR/LF/NUL anywhere, a verb that is not plain words, or a
    line Asterisk would cut (over 2047 bytes or 127 words).
    """
    words = verb.split(" ")
    if not verb or not all(w and w.isascii() and w.isalnum() for w in words):
        msg = (
            f"AGI command verb {printable(verb)!r} is not allowed; accepted: words of ASCII "
            "letters and digits separated by single spaces, e.g. 'GET VARIABLE'"
        )
        raise UnsafeValueError(msg)
    line = " ".join([verb, *(quote_arg(a) for a in args)]) + "\n"
    try:
        data = line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        msg = f"AGI command {_show(line)!r} holds a code point UTF-8 cannot carry"
        raise UnsafeValueError(msg) from exc
    if len(data) > AGI_MAX_LINE_BYTES:
        msg = (
            f"AGI command {_show(line)!r} is {len(data)} bytes; Asterisk reads at most "
            f"{AGI_MAX_LINE_BYTES} per line and would run the rest as another command"
        )
        raise UnsafeValueError(msg)
    if len(words) + len(args) > AGI_MAX_ARGS:
        msg = (
            f"AGI command {_show(verb)!r} has {len(words) + len(args)} words; Asterisk keeps "
            f"at most {AGI_MAX_ARGS}"
        )
        raise UnsafeValueError(msg)
    return data


def parse_command(line: str) -> AgiCommand:
    """Split a command line exactly as Asterisk's ``parse_args`` does, then name the verb."""
    words: list[list[str]] = []
    in_word = quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            # A quote opened between words starts a word, so "" is an empty word.
            if quoted and not in_word and len(words) < AGI_MAX_ARGS:
                words.append([])
                in_word = True
        elif ch in " \t" and not quoted and not escaped:
            in_word = False
        elif ch == "\\" and not escaped:
            escaped = True
        elif in_word:
            words[-1].append(ch)
            escaped = False
        elif len(words) < AGI_MAX_ARGS:
            words.append([ch])
            in_word = True
            escaped = False
        # else: Asterisk drops the characters of words past MAX_ARGS - 1.
    return _name_command(tuple("".join(w) for w in words))


def _name_command(argv: tuple[str, ...]) -> AgiCommand:
    for size in range(min(_LONGEST_COMMAND, len(argv)), 0, -1):
        verb = _COMMANDS_BY_WORDS.get(tuple(w.upper() for w in argv[:size]))
        if verb is not None:
            return AgiCommand(argv=argv, verb=verb, args=argv[size:])
    return AgiCommand(argv=argv, verb=None, args=argv[1:] if argv else ())


# --- encoders for the Asterisk side ----------------------------------------------------


def _check_line_text(what: str, value: str) -> None:
    if "\n" in value or "\r" in value or "\0" in value:
        msg = (
            f"{what} {printable(value)!r} contains CR, LF or NUL, which would end the AGI "
            "line early; accepted: any other text"
        )
        raise UnsafeValueError(msg)


def _encode_lines(lines: Iterable[str]) -> bytes:
    text = "".join(line + "\n" for line in lines)
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        msg = f"AGI text {_show(text)!r} holds a code point UTF-8 cannot carry"
        raise UnsafeValueError(msg) from exc


def encode_environment(mapping: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """The ``agi_*`` block Asterisk sends first, closed by its empty line."""
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    lines: list[str] = []
    for key, value in items:
        _check_line_text("AGI environment key", key)
        _check_line_text("AGI environment value", value)
        if not key or ":" in key or " " in key:
            msg = (
                f"AGI environment key {printable(key)!r} is not allowed; accepted: a "
                "non-empty name without ':' or spaces, e.g. agi_channel"
            )
            raise UnsafeValueError(msg)
        lines.append(f"{key}: {value}")
    lines.append("")
    return _encode_lines(lines)


def encode_reply(
    code: int = 200,
    *,
    result: str | int | None = None,
    data: str | None = None,
    endpos: int | None = None,
    extra: str | None = None,
    usage: Iterable[str] = (),
) -> bytes:
    """One reply as Asterisk writes it.

    ``encode_reply(result=1, data="PJSIP/a-1")`` -> ``200 result=1 (PJSIP/a-1)``;
    ``encode_reply(510)`` -> ``510 Invalid or unknown command``; a 520 with ``usage`` lines
    is the multi-line block ending ``520 End of proper usage.``. Asterisk never writes a
    code alone: without ``result`` or ``extra``, 510, 511 and 520 get res_agi.c's own
    text and any other code raises ``UnsafeValueError``.
    """
    if not 100 <= code <= 999:
        msg = f"AGI reply code {code} is not allowed; accepted: three digits, e.g. 200"
        raise UnsafeValueError(msg)
    for what, text in (("result", result), ("data", data), ("extra", extra)):
        if isinstance(text, str):
            _check_line_text(f"AGI reply {what}", text)
    usage_lines = list(usage)
    if usage_lines:
        return _encode_usage(code, extra, usage_lines)
    if result is None:
        text = extra or _ASTERISK_TEXTS.get(code)
        if not text:
            msg = (
                f"AGI reply {code} without result or text is not allowed (Asterisk always "
                "writes text after the code); accepted: result=..., extra='...', or "
                f"code {', '.join(str(c) for c in _ASTERISK_TEXTS)} alone"
            )
            raise UnsafeValueError(msg)
        return _encode_lines([f"{code} {text}"])
    parts = [f"{code} result={result}"]
    if data is not None:
        parts.append(f"({data})")
    if endpos is not None:
        parts.append(f"endpos={endpos}")
    if extra:
        parts.append(extra)
    return _encode_lines([" ".join(parts)])


def _encode_usage(code: int, first: str | None, lines: list[str]) -> bytes:
    for line in lines:
        _check_line_text("AGI usage line", line)
        if _is_code(line[:3]) and line[3:4] == " ":
            msg = f"AGI usage line {printable(line)!r} would end the usage block early"
            raise UnsafeValueError(msg)
    if first is None:
        first = "Invalid command syntax.  Proper usage follows:"
    return _encode_lines([f"{code}-{first}", *lines, f"{code} End of proper usage."])


def encode_hangup() -> bytes:
    """The unsolicited line Asterisk writes when the channel hangs up."""
    return b"HANGUP\n"


# --- decoders ---------------------------------------------------------------------------


class _LineReader:
    """LF-framed lines with a bounded length; shared by both decoders."""

    __slots__ = ("_buf", "_discarding", "_eof", "_max_line_bytes", "_scan", "_what")

    def __init__(self, what: str, max_line_bytes: int) -> None:
        if max_line_bytes < 64:
            msg = f"max_line_bytes={max_line_bytes} is too small; accepted: 64 or more"
            raise ValueError(msg)
        self._buf = bytearray()
        self._eof = False
        self._scan = 0
        self._discarding = False
        self._max_line_bytes = max_line_bytes
        self._what = what

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        if self._eof:
            msg = f"{self._what} decoder fed data after the end of the stream"
            raise ValueError(msg)
        self._buf += data

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def drained(self) -> bool:
        return self._eof and not self._buf

    @property
    def partial(self) -> bytes:
        """The start of a line not complete yet (what ``next_line`` left buffered)."""
        return bytes(self._buf)

    def next_line(self) -> str | None:
        """The next line without its LF; ``None`` if incomplete. Raises for an overlong line."""
        buf = self._buf
        while True:
            end = buf.find(b"\n", self._scan)
            if end < 0:
                if len(buf) > self._max_line_bytes:
                    self._overflow()
                    return None
                self._scan = len(buf)
                if self._discarding and self._eof:
                    del buf[:]
                    self._discarding = False
                return None
            line = buf[:end].decode("utf-8", "surrogateescape")
            del buf[: end + 1]
            self._scan = 0
            if self._discarding:
                # The tail of a line already reported as too long.
                self._discarding = False
                continue
            if end > self._max_line_bytes:
                msg = (
                    f"{self._what} line of {end} bytes exceeds max_line_bytes="
                    f"{self._max_line_bytes}: {_show(line)!r}"
                )
                raise AgiProtocolError(msg)
            return line

    def _overflow(self) -> None:
        buf = self._buf
        head = buf[:_SHOWN_CHARS].decode("utf-8", "surrogateescape")
        discarding = self._discarding
        del buf[:]
        self._scan = 0
        self._discarding = True
        if discarding:
            return
        msg = (
            f"{self._what} line grew past max_line_bytes={self._max_line_bytes} without a "
            f"line end; discarding it: {_show(head)!r}"
        )
        raise AgiProtocolError(msg)

    def take_rest(self) -> str:
        rest = self._buf.decode("utf-8", "surrogateescape")
        del self._buf[:]
        self._discarding = False
        return rest


def _is_code(text: str) -> bool:
    return len(text) == 3 and text.isascii() and text.isdigit()


def _parse_env_line(line: str) -> tuple[str, str]:
    key, sep, value = line.partition(": ")
    if not sep:
        key, sep, value = line.partition(":")
    if not sep or not key:
        msg = f"AGI environment line {_show(line)!r} is not 'agi_name: value'"
        raise AgiProtocolError(msg)
    return key, value


def _parse_reply_line(line: str) -> AgiReply:
    match = _CODE_LINE.fullmatch(line)
    if match is None:
        msg = f"AGI reply {_show(line)!r} is neither 'NNN text' nor HANGUP"
        raise AgiProtocolError(msg)
    code = int(match["code"])
    rest = match["rest"]
    if rest.startswith("result="):
        result = _RESULT_LINE.fullmatch(rest)
        if result is not None:
            endpos = result["endpos"]
            if endpos is not None and len(endpos.lstrip("-")) > _MAX_ENDPOS_DIGITS:
                msg = f"AGI reply {_show(line)!r} has an endpos of {len(endpos)} digits"
                raise AgiProtocolError(msg)
            return AgiReply(
                code=code,
                result=result["result"],
                data=result["data"],
                endpos=int(endpos) if endpos is not None else None,
                extra=result["extra"],
            )
    return AgiReply(code=code, extra=rest)


class AgiDecoder:
    """The daemon's side: the environment block, then replies and HANGUP lines.

    ``feed(data)`` then ``next_message()`` until ``None``; ``feed(b"")`` ends the stream.
    """

    __slots__ = (
        "_env",
        "_env_bytes",
        "_env_done",
        "_eof_reported",
        "_lines",
        "_usage",
        "_usage_first",
    )

    def __init__(self, *, expect_environment: bool = True, max_line_bytes: int = 65536) -> None:
        self._lines = _LineReader("AGI", max_line_bytes)
        self._env: list[tuple[str, str]] = []
        self._env_bytes = 0
        self._env_done = not expect_environment
        self._usage: list[str] | None = None  # collecting a 520 block
        self._usage_first = ""
        self._eof_reported = False

    def feed(self, data: bytes) -> None:
        self._lines.feed(data)

    @property
    def at_eof(self) -> bool:
        """The stream has ended and everything in it has been returned."""
        return self._lines.drained

    @property
    def environment_received(self) -> bool:
        return self._env_done

    @property
    def unsolicited_partial(self) -> bool:
        """After every complete message was taken: bytes of a line begun that can only be
        another reply (anything but the start of Asterisk's own ``HANGUP`` line)."""
        partial = self._lines.partial
        return bool(partial) and not b"HANGUP\n".startswith(partial)

    @property
    def stray_after_environment(self) -> bool:
        """Bytes other than empty lines or ``HANGUP`` already received after the environment,
        before any command was sent. Asterisk sends nothing then; lines there are the real
        rest of its block, behind a whole forged block a caller's value carried."""
        if not self._env_done:
            return False
        unread = self._lines.partial.replace(b"\r", b"").split(b"\n")
        return any(line not in (b"", b"HANGUP") for line in unread)

    def next_message(self) -> AgiEnvironment | AgiReply | AgiHangup | None:
        while True:
            line = self._lines.next_line()
            if line is None:
                self._raise_if_ended_inside_message()
                return None
            message = self._on_line(line)
            if message is not None:
                return message

    def _on_line(self, line: str) -> AgiEnvironment | AgiReply | AgiHangup | None:
        if not self._env_done:
            return self._on_env_line(line)
        if self._usage is not None:
            return self._on_usage_line(self._usage, line)
        if not line:
            return None
        if line == "HANGUP":
            return AgiHangup()
        if _is_code(line[:3]) and line[3:4] == "-":
            self._usage = []
            self._usage_first = line[4:]
            return None
        return _parse_reply_line(line)

    def _on_env_line(self, line: str) -> AgiEnvironment | None:
        env = self._env
        self._env_bytes += len(line) + 1
        if len(env) >= _ENV_MAX_LINES or self._env_bytes > _ENV_MAX_BYTES:
            msg = (
                f"AGI environment block longer than {_ENV_MAX_LINES} lines "
                f"or {_ENV_MAX_BYTES} bytes"
            )
            raise AgiProtocolError(msg)
        if env and self._continues_value(env[-1][0], line):
            # A line of the newest value, after a line feed in it.
            last_key, last_value = env[-1]
            env[-1] = (last_key, f"{last_value}\n{line}")
            return None
        if not line:
            self._env_done = True
            block = AgiEnvironment(tuple(env))
            self._env = []
            return block
        key, value = _parse_env_line(line)
        if any(seen == key for seen, _ in env):
            msg = f"AGI environment repeats {_show(key)!r}"
            raise AgiProtocolError(msg)
        env.append((key, value))
        return None

    @staticmethod
    def _continues_value(newest: str, line: str) -> bool:
        """Whether ``line`` belongs to the value of ``newest`` rather than starting a field.

        After a free-text value only the key res_agi.c writes next starts a field; any
        other line (an empty one too: agi_threadid has not come, so the block cannot end)
        is the caller's text, so a forged ``agi_extension: 900`` or a forged end of the
        block stays inside the name. After ``agi_arg_N`` only ``agi_arg_N+1`` or the empty
        line closing the block comes next.
        """
        key = line.partition(":")[0] if ":" in line else None
        follower = _ENV_NEXT.get(newest)
        if follower is not None:
            return key != follower
        number = (
            parse_decimal(newest.removeprefix("agi_arg_"))
            if newest.startswith("agi_arg_")
            else None
        )
        if number is None:
            return False
        return bool(line) and key != f"agi_arg_{number + 1}"

    def _on_usage_line(self, usage: list[str], line: str) -> AgiReply | None:
        if _is_code(line[:3]) and line[3:4] == " ":
            self._usage = None
            return AgiReply(code=int(line[:3]), extra=self._usage_first, usage=tuple(usage))
        if len(usage) >= _USAGE_MAX_LINES:
            self._usage = None
            msg = f"AGI usage block longer than {_USAGE_MAX_LINES} lines"
            raise AgiProtocolError(msg)
        usage.append(line)
        return None

    def _raise_if_ended_inside_message(self) -> None:
        lines = self._lines
        if not lines.eof or self._eof_reported:
            return
        rest = lines.take_rest()
        where = None
        if not self._env_done and (self._env or rest):
            where = f"the agi_* environment block after {len(self._env)} lines"
        elif self._usage is not None:
            where = f"a 520 usage block after {len(self._usage)} lines"
        elif rest:
            where = "a line"
        if where is None:
            return
        self._eof_reported = True
        msg = f"AGI stream ended inside {where}: {_show(rest)!r}"
        raise AgiProtocolError(msg)


class AgiCommandDecoder:
    """The Asterisk side (test doubles): command lines from a FastAGI server."""

    __slots__ = ("_eof_reported", "_lines")

    def __init__(self, *, max_line_bytes: int = AGI_MAX_LINE_BYTES) -> None:
        self._lines = _LineReader("AGI command", max_line_bytes)
        self._eof_reported = False

    def feed(self, data: bytes) -> None:
        self._lines.feed(data)

    @property
    def at_eof(self) -> bool:
        return self._lines.drained

    def next_message(self) -> AgiCommand | None:
        while True:
            line = self._lines.next_line()
            if line is None:
                if self._lines.eof and not self._eof_reported:
                    rest = self._lines.take_rest()
                    if rest:
                        self._eof_reported = True
                        msg = f"AGI stream ended inside a command line: {_show(rest)!r}"
                        raise AgiProtocolError(msg)
                return None
            if line.strip(" \t"):
                return parse_command(line)

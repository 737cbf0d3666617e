"""Escaping of caller-controlled text: for logs (``printable``), for the store
(``storable``) and for Asterisk dialplan application arguments (``dialplan_arg``).

Invariants:
- ``printable`` is lossless: two different strings never render the same, so an operator
  reading a log line can tell exactly which bytes the PBX sent. Printable characters
  (Cyrillic, CJK, ...) are shown as themselves; a backslash is doubled; a byte that was not
  valid UTF-8 (kept by the codecs as a ``surrogateescape`` surrogate, U+DC80..U+DCFF) is
  shown as ``\\xNN`` with NN >= 80; an ASCII control character as ``\\r``, ``\\n``, ``\\t``
  or ``\\xNN`` with NN < 80; every other non-printable code point (C1 controls, format
  characters such as bidi overrides, line separators, lone surrogates) as ``\\uXXXX`` or
  ``\\UXXXXXXXX``. ``\\xNN`` is therefore always a raw byte or an ASCII control, never a
  code point >= 0x80.
- ``printable_nested`` applies the same rendering to every string inside dicts (keys and
  values), lists and tuples, at any depth, and copies the containers instead of changing
  them: a caller name several levels inside a log field is as safe as one at the top.
  What ``printable`` escaped comes back as ``Escaped`` (a ``str``), which
  ``printable_nested(..., keep_printable=True)`` (the log processor) keeps as it is; any
  other string holding a backslash or something unprintable is rendered, so a literal
  ``\\x1b`` and a real ESC never look the same in a log line.
- ``storable`` returns text every supported database takes (valid UTF-8, no NUL): each
  lone surrogate (a byte that was not UTF-8, or any other) and each NUL is replaced by the
  escape ``printable`` shows for it (``\\xff``, ``\\x00``, ``\\ud800``); everything else,
  backslashes included, is kept as it is, so ordinary text is stored unchanged. The raw
  byte stays visible and recoverable, though a caller who typed the four characters
  ``\\xff`` is stored the same.
- ``dialplan_arg`` returns a string that Asterisk's argument splitter
  (``__ast_app_separate_args`` in main/app.c) reads back as exactly one argument equal
  to the input. It refuses CR, LF and NUL, which no escape can carry through a dialplan
  line or an AMI header.

No I/O here: pure functions over ``str``.
"""

from __future__ import annotations

from typing import Any

from pbx_agent.errors import UnsafeValueError

# What __ast_app_separate_args (main/app.c) treats specially in an argument list: the
# delimiter, quotes (removed, toggle quoting), backslash (removed, makes the next character
# literal), and parentheses/brackets (counted for nesting even inside quotes, so one stray
# "(" would glue every later argument to this one). A backslash before any character
# yields that character, so escaping these and nothing else is exact.
_DIALPLAN_SPECIAL = frozenset('\\",()[]')
_DIALPLAN_TABLE = str.maketrans({ch: "\\" + ch for ch in _DIALPLAN_SPECIAL})

_NAMED_CONTROLS = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    code = ord(ch)
    named = _NAMED_CONTROLS.get(ch)
    if named is not None:
        return named
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        # A raw byte that was not valid UTF-8 (surrogateescape): show the byte itself.
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class Escaped(str):
    """Text ``printable`` has rendered: the log processor shows it as it is, not twice."""

    __slots__ = ()


def printable(value: str) -> str:
    """Render ``value`` for a log line, faithfully and on one line (see the module docstring)."""
    if value.isprintable() and "\\" not in value:
        return value
    return Escaped(
        "".join(
            "\\\\" if ch == "\\" else ch if ch.isprintable() else _escape_char(ch) for ch in value
        )
    )


def _unstorable(ch: str) -> bool:
    return ch == "\0" or 0xD800 <= ord(ch) <= 0xDFFF


def storable(value: str) -> str:
    """``value`` as text the store can write (see the module docstring): SQLite and
    PostgreSQL refuse a lone surrogate, PostgreSQL a NUL, and the row would be lost."""
    if "\0" not in value:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return value
    return "".join(_escape_char(ch) if _unstorable(ch) else ch for ch in value)


def printable_nested(value: Any, *, keep_printable: bool = False) -> Any:
    """``value`` with every string in it, at any depth, rendered by ``printable``.

    Dicts (keys and values), lists and tuples are copied with their items rendered; any
    other value is returned as it is. With ``keep_printable`` a string ``printable``
    returned (``Escaped``) is kept, so text the engine escaped is not escaped twice; every
    other string is rendered, a printable one holding a backslash included (else it would
    read as an escape: ``Bob\\x1b`` and a real ESC would look the same).
    """
    if isinstance(value, str):
        if keep_printable and isinstance(value, Escaped):
            return value
        return printable(value)
    if isinstance(value, dict):
        return {
            printable_nested(key, keep_printable=keep_printable): printable_nested(
                item, keep_printable=keep_printable
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        items = [printable_nested(item, keep_printable=keep_printable) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def dialplan_arg(value: str) -> str:
    """``value`` escaped to stay one argument, with the same text, in an application's
    argument list or an AMI ``Variable:`` value (``NAME=`` + ``dialplan_arg(value)``).

    Raises ``UnsafeValueError`` for CR, LF or NUL, which no escape carries through.
    """
    if "\r" in value or "\n" in value or "\0" in value:
        msg = (
            f"dialplan argument {printable(value)!r} contains CR, LF or NUL; accepted: any "
            "other text (it is escaped)"
        )
        raise UnsafeValueError(msg)
    return value.translate(_DIALPLAN_TABLE)

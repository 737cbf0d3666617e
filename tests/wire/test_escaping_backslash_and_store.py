"""Escaping: a literal backslash never passes for an escape in a log, and text the store
cannot take (lone surrogates, NUL) is stored as visible escapes."""

from __future__ import annotations

import pytest

from pbx_agent.wire import agi, ami, esl
from pbx_agent.wire.escaping import Escaped, printable_nested, storable

RAW_BYTE = b"\xff".decode("utf-8", "surrogateescape")


def test_keep_printable_renders_a_printable_string_holding_a_backslash() -> None:
    """A literal ``Bob\\x1b[31m`` and a real ESC render differently with keep_printable."""
    literal = printable_nested("Bob\\x1b[31m", keep_printable=True)
    real = printable_nested("Bob\x1b[31m", keep_printable=True)
    assert (literal, real) == ("Bob\\\\x1b[31m", "Bob\\x1b[31m")


def test_keep_printable_keeps_ordinary_text_unchanged() -> None:
    """Cyrillic, CJK and quotes without a backslash are kept exactly as they are."""
    value = {"name": 'Иван "Ivan" 王', "legs": ["c.1"]}
    assert printable_nested(value, keep_printable=True) == value


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (f"Bob{RAW_BYTE}", "Bob\\xff"),
        ("a\x00b", "a\\x00b"),
        ("\ud800x", "\\ud800x"),
        ("Иван \\ \x1b 王", "Иван \\ \x1b 王"),
    ],
)
def test_storable_escapes_only_what_a_database_refuses(value: str, stored: str) -> None:
    """Lone surrogates and NUL become visible escapes; any other text is kept as it is."""
    assert storable(value) == stored
    assert storable(value).encode("utf-8")


def test_a_shortened_frame_shown_in_a_log_is_escaped_once() -> None:
    """A long frame cut for an error message stays marked as rendered: the log shows its
    ESC as \\x1b, not \\\\x1b (which is how the typed text \\x1b logs)."""
    for show in (ami._show, agi._show, esl._show):
        shown = show("\x1b" + "x" * 400)
        assert isinstance(shown, Escaped)
        assert printable_nested(shown, keep_printable=True).startswith("\\x1bxxx")

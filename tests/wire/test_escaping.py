"""Escaping caller-controlled text for dialplan arguments and for logs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx_agent.errors import UnsafeValueError
from pbx_agent.wire.escaping import dialplan_arg, printable, printable_nested


def ast_app_separate_args(buf: str, delim: str = ",") -> list[str]:
    """Python rendering of Asterisk's __ast_app_separate_args (main/app.c), remove_chars=1."""
    if not buf:
        return []
    args: list[str] = []
    current: list[str] = []
    paren = bracket = 0
    quote = False
    i = 0
    while i < len(buf):
        ch = buf[i]
        if ch == "(":
            paren += 1
            current.append(ch)
        elif ch == ")":
            paren = max(0, paren - 1)
            current.append(ch)
        elif ch == "[":
            bracket += 1
            current.append(ch)
        elif ch == "]":
            bracket = max(0, bracket - 1)
            current.append(ch)
        elif ch == '"' and delim != '"':
            quote = not quote  # the quote itself is removed
        elif ch == "\\":
            # The backslash is removed and the next character taken literally. (A trailing
            # backslash makes the C code read past the string end; escaping never emits one.)
            assert i + 1 < len(buf), "trailing backslash"
            i += 1
            current.append(buf[i])
        elif ch == delim and not paren and not quote and not bracket:
            args.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    # The last argument, or the empty one after a trailing delimiter.
    args.append("".join(current))
    return args


def test_reference_splitter_matches_asterisk_on_known_cases() -> None:
    """The test's reference splitter behaves like Asterisk on hand-checked inputs."""
    assert ast_app_separate_args("a,b") == ["a", "b"]
    assert ast_app_separate_args("a,") == ["a", ""]
    assert ast_app_separate_args('"a,b",c') == ["a,b", "c"]
    assert ast_app_separate_args("f(a,b),c") == ["f(a,b)", "c"]
    assert ast_app_separate_args("a\\,b") == ["a,b"]
    assert ast_app_separate_args('"(",x') == ["(,x"]


HOSTILE = st.text(
    alphabet=st.sampled_from(
        [*"ab ,|;\"'\\()[]{}$=:Ии\t", "\udcff", "\udc80", "\u202e", "\u2028", "\x7f", "\x1b"]
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(value=HOSTILE)
def test_dialplan_arg_stays_one_argument_with_the_same_text(value: str) -> None:
    """After Asterisk's splitting and unescaping, NAME=<escaped> is one item, unchanged."""
    assert ast_app_separate_args("CALLERNAME=" + dialplan_arg(value)) == ["CALLERNAME=" + value]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(HOSTILE, min_size=2, max_size=5))
def test_escaped_arguments_keep_their_count_and_order(values: list[str]) -> None:
    """Several escaped values joined by commas split back into exactly those values."""
    joined = ",".join(dialplan_arg(v) for v in values)
    assert ast_app_separate_args(joined) == values


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b"])
def test_dialplan_arg_refuses_cr_lf_nul(bad: str) -> None:
    """No escape survives a line break or NUL: refused."""
    with pytest.raises(UnsafeValueError):
        dialplan_arg(bad)


def test_dialplan_arg_leaves_ordinary_text_alone() -> None:
    """Letters, digits, spaces and Cyrillic need no escaping."""
    assert dialplan_arg("Иван Petrov 42") == "Иван Petrov 42"


def unprintable(text: str) -> str:
    """Inverse of printable, to prove it loses nothing."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = text[i + 1]
        if kind in "\\rnt":
            out.append({"\\": "\\", "r": "\r", "n": "\n", "t": "\t"}[kind])
            i += 2
        elif kind == "x":
            byte = int(text[i + 2 : i + 4], 16)
            out.append(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))
            i += 4
        elif kind == "u":
            out.append(chr(int(text[i + 2 : i + 6], 16)))
            i += 6
        else:
            assert kind == "U"
            out.append(chr(int(text[i + 2 : i + 10], 16)))
            i += 10
    return "".join(out)


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(HOSTILE, st.text(max_size=30)))
def test_printable_is_lossless_and_printable(value: str) -> None:
    """printable's output is one printable line from which the input can be rebuilt."""
    shown = printable(value)
    assert shown.isprintable()
    assert unprintable(shown) == value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("Иван", "Иван"),
        ("a\r\nb", "a\\r\\nb"),
        ("back\\slash", "back\\\\slash"),
        ("\x1b[31m", "\\x1b[31m"),
        (b"caf\xe9".decode("utf-8", "surrogateescape"), "caf\\xe9"),
        ("\x85", "\\u0085"),
        ("\u202eevil", "\\u202eevil"),
        ("\U000e0001", "\\U000e0001"),
    ],
)
def test_printable_renders_what_the_pbx_sent(value: str, shown: str) -> None:
    """Controls, raw bytes and invisible code points get distinct visible escapes."""
    assert printable(value) == shown


RAW_BYTE = b"\xff".decode("utf-8", "surrogateescape")


def test_printable_nested_renders_strings_at_any_depth() -> None:
    """Dict keys and values, list and tuple items are rendered however deep they are."""
    name = f"Иван\r\n\u202e{RAW_BYTE}"
    shown = "Иван\\r\\n\\u202e\\xff"
    value = {"caller": {"name": name, "legs": [("c.1", name)]}, name: 3}
    assert printable_nested(value) == {
        "caller": {"name": shown, "legs": [("c.1", shown)]},
        shown: 3,
    }


def test_printable_nested_copies_instead_of_changing_the_value() -> None:
    """The containers given are left as they were (they may be a command's own fields)."""
    inner = {"name": "a\nb"}
    value = {"caller": inner, "legs": ["a\nb"]}
    printable_nested(value)
    assert value == {"caller": {"name": "a\nb"}, "legs": ["a\nb"]}


def test_printable_nested_can_keep_text_that_printable_rendered() -> None:
    """keep_printable leaves what ``printable`` returned as it is, not escaped twice."""
    value = {"escaped": printable("a\r\nb"), "name": "a\r\nb", "plain": "Иван"}
    assert printable_nested(value, keep_printable=True) == {
        "escaped": "a\\r\\nb",
        "name": "a\\r\\nb",
        "plain": "Иван",
    }

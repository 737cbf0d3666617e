"""ESL argument escaping, checked against a line-by-line port of FreeSWITCH's parsers.

The port follows ``switch_separate_string`` (``separate_string_blank_delim``,
``separate_string_char_delim``, ``cleanup_separated_string``, the ``^^`` delimiter
switch) and ``switch_find_end_paren`` / ``switch_event_create_brackets`` from
FreeSWITCH 1.10 (src/switch_utils.c, src/switch_event.c), plus the whitespace strip
``switch_api_execute`` applies to the argument string.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx_agent.errors import UnsafeValueError
from pbx_agent.wire.esl import channel_variables, quote_api_arg, quote_channel_variable

# -- the port of FreeSWITCH's splitter ------------------------------------------------------------


def _unescape_char(ch: str) -> str:
    return {"n": "\n", "r": "\r", "t": "\t", "s": " "}.get(ch, ch)


def fs_cleanup(token: str, delim: str) -> str:  # noqa: C901 - mirrors the C function
    """cleanup_separated_string: strip quotes, escapes and surrounding spaces."""
    i = 0
    while i < len(token) and token[i] == " ":
        i += 1
    dest: list[str] = []
    end: int | None = None
    inside = False
    while i < len(token):
        ch = token[i]
        escaped = False
        if ch == "\\":
            nxt = token[i + 1] if i + 1 < len(token) else "\0"
            if nxt in ("'", '"', "\\") or (delim and nxt == delim):
                out: str | None = nxt
            elif _unescape_char(nxt) != nxt:
                out = _unescape_char(nxt)
            else:
                out = None
            if out is not None:
                i += 1
                dest.append(out)
                end = len(dest)
                escaped = True
        if not escaped:
            if ch == "'" and (inside or "'" in token[i + 1 :]):
                inside = not inside
                if inside:
                    end = len(dest)
            else:
                dest.append(ch)
                if ch != " " or inside:
                    end = len(dest)
        i += 1
    return "".join(dest[:end]) if end is not None else ""


def _tokens(chars: list[str], starts: list[int]) -> list[str]:
    text = "".join(chars)
    return [text[start:].split("\0", 1)[0] for start in starts]


def fs_separate_blank(buf: str, arraylen: int) -> list[str]:
    chars = list(buf)
    starts: list[int] = []
    state = "start"
    inside = False
    i = 0
    while i < len(chars) and len(starts) < arraylen:
        ch = chars[i]
        if state == "start":
            starts.append(i)
            state = "skip_initial"
        elif state == "skip_initial":
            if ch == " ":
                i += 1
            else:
                state = "find"
        elif state == "find":
            if ch == "\\":
                i += 1
            elif ch == "'":
                inside = not inside
            elif ch == " " and not inside:
                chars[i] = "\0"
                state = "skip_ending"
            i += 1
        elif ch == " ":
            i += 1
        else:
            state = "start"
    return [fs_cleanup(token, "") for token in _tokens(chars, starts)]


def fs_separate_char(buf: str, delim: str, arraylen: int) -> list[str]:
    chars = list(buf)
    starts: list[int] = []
    state = "start"
    inside = False
    i = 0
    while i < len(chars) and len(starts) < arraylen:
        ch = chars[i]
        if state == "start":
            starts.append(i)
            state = "find"
            continue
        if ch == "\\":
            i += 1
        elif ch == "'" and (inside or "'" in "".join(chars[i + 1 :]).split("\0", 1)[0]):
            inside = not inside
        elif ch == delim and not inside:
            chars[i] = "\0"
            state = "start"
        i += 1
    return [fs_cleanup(token, delim) for token in _tokens(chars, starts)]


def fs_separate_string(buf: str, delim: str, arraylen: int) -> list[str]:
    if buf.startswith("^^") and len(buf) >= 4:
        delim = buf[2]
        buf = buf[3:]
    if delim == " ":
        return fs_separate_blank(buf, arraylen)
    return fs_separate_char(buf, delim, arraylen)


def fs_strip_whitespace(text: str) -> str:
    return text.strip(" \t\r\n\v")


def fs_api_args(arg: str, arraylen: int = 10) -> list[str]:
    """What an API function such as uuid_setvar sees as its argv."""
    return fs_separate_string(fs_strip_whitespace(arg), " ", arraylen)


def fs_find_end_paren(text: str, start: int, opening: str, closing: str) -> int | None:
    i = start
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != opening:
        return None
    depth = 1
    i += 1
    while i < len(text):
        if text[i] == opening:
            depth += 1
        elif text[i] == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def fs_brackets(data: str) -> tuple[list[tuple[str, str]], str]:
    """switch_event_create_brackets(data, '{', '}', ','): the variables and the rest."""
    end = fs_find_end_paren(data, 0, "{", "}")
    assert end is not None, f"no closing brace in {data!r}"
    inner = data[data.index("{") + 1 : end]
    delim = ","
    if inner.startswith("^^") and len(inner) > 2:
        delim = inner[2]
        inner = inner[3:]
    pairs: list[tuple[str, str]] = []
    for var in fs_separate_string(inner, delim, 1024):
        parts = fs_separate_string(var, "=", 2)
        if len(parts) == 2:
            pairs.append((parts[0], parts[1]))
    return pairs, data[end + 1 :]


def test_port_reads_the_traced_originate_line() -> None:
    """The port splits a real originate command of the traces as FreeSWITCH did."""
    arg = (
        "{origination_uuid=940d5350,origination_caller_id_number=1000,"
        "origination_caller_id_name=Lab}sofia/internal/bob@127.0.0.1:5181 &playback(lab/hello.wav)"
    )
    dial, app = fs_api_args(arg)
    assert app == "&playback(lab/hello.wav)"
    pairs, rest = fs_brackets(dial)
    assert pairs[2] == ("origination_caller_id_name", "Lab")
    assert rest == "sofia/internal/bob@127.0.0.1:5181"


def test_port_applies_quotes_and_escapes() -> None:
    """Quotes group words, \\s is a space, and a lone quote is literal in cleanup."""
    assert fs_api_args("a 'b c' d\\se") == ["a", "b c", "d e"]
    assert fs_cleanup("it's", "") == "it's"
    assert fs_api_args("^^:a:b c") == ["a", "b c"]


# -- properties ----------------------------------------------------------------------------------

caller_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
    max_size=40,
)
hostile = st.sampled_from(
    [
        "",
        " ",
        "  lead",
        "trail  ",
        "it's",
        "'",
        "''",
        "\\",
        "a\\sb",
        "x,y",
        "a=b",
        "{",
        "}",
        "{x}",
        "^^:a",
        "^^",
        "a|b;c",
        "$" + "{system(id)}",
        "\t",
        "\x0b",
        "Иван Петров",
        "名字",
    ]
)
values = st.one_of(caller_text, hostile)


@given(values)
def test_quoted_value_is_one_argument_in_the_middle(value: str) -> None:
    """Between two other arguments, a quoted value reads back as itself."""
    assert fs_api_args(f"uuid {quote_api_arg(value)} tail") == ["uuid", value, "tail"]


@given(values)
def test_quoted_value_is_one_argument_at_the_start(value: str) -> None:
    """First in the line (where ^^ would switch delimiters) it still reads back."""
    assert fs_api_args(f"{quote_api_arg(value)} tail") == [value, "tail"]


@given(values)
def test_quoted_value_is_the_whole_remainder_of_uuid_setvar(value: str) -> None:
    """uuid_setvar reads three arguments, the last one being the rest of the line."""
    line = f"0a33e460 caller_name {quote_api_arg(value)}"
    assert fs_api_args(line, arraylen=3) == ["0a33e460", "caller_name", value]


def test_plain_values_are_left_as_they_are() -> None:
    """Uuids, paths and numbers need no quoting."""
    assert quote_api_arg("559d98b1-6670-4be9-adee-4406d6575018") == (
        "559d98b1-6670-4be9-adee-4406d6575018"
    )
    assert quote_api_arg("lab/bcast1400.wav") == "lab/bcast1400.wav"


@given(values, values)
def test_channel_variable_values_read_back_from_the_brace_block(first: str, second: str) -> None:
    """{a=...,b=...} splits back into exactly the two values (braces balanced)."""
    for value in (first, second):
        if value.count("{") != value.count("}") or "}" in value.split("{", 1)[0]:
            return
    block = channel_variables([("a", first), ("b", second)])
    pairs, rest = fs_brackets(block + "sofia/internal/x@h")
    assert pairs == [("a", first), ("b", second)]
    assert rest == "sofia/internal/x@h"


@given(values)
def test_channel_variables_survive_the_api_level_too(value: str) -> None:
    """An originate dial string quoted as an api argument keeps its variable intact."""
    if "{" in value or "}" in value:
        return
    dial = channel_variables({"origination_caller_id_name": value}) + "sofia/internal/x@h"
    arg = f"{quote_api_arg(dial)} &park()"
    parsed_dial, app = fs_api_args(arg)
    assert app == "&park()"
    assert fs_brackets(parsed_dial) == (
        [("origination_caller_id_name", value)],
        "sofia/internal/x@h",
    )


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_escapers_refuse_cr_lf_nul(bad: str) -> None:
    """No FreeSWITCH escape carries CR, LF or NUL: refused."""
    with pytest.raises(UnsafeValueError):
        quote_api_arg(bad)
    with pytest.raises(UnsafeValueError):
        quote_channel_variable(bad)


@pytest.mark.parametrize("bad", ["}", "{", "a}b{", "}{"])
def test_channel_variable_refuses_unbalanced_braces(bad: str) -> None:
    """Braces are counted without escapes, so unbalanced ones are refused."""
    with pytest.raises(UnsafeValueError, match="unbalanced"):
        quote_channel_variable(bad)


@pytest.mark.parametrize("bad", ["", "a b", "a=b", "a,b", "{a}"])
def test_channel_variables_refuse_odd_names(bad: str) -> None:
    """Variable names are the daemon's own: letters, digits, '_', '.', '-' only."""
    with pytest.raises(UnsafeValueError):
        channel_variables({bad: "x"})

"""Decimal numbers in text a PBX or a caller wrote: ASCII digits, or nothing.

Asterisk and FreeSWITCH print numbers with ``%d``/``%ld``, so a number on the wire is the
ASCII digits 0-9, after a ``-`` for a signed one. ``str.isdigit()`` is also true for
``"²"`` (which ``int()`` refuses with a bare ``ValueError``) and ``int()`` also reads
Arabic-Indic ``"١"`` as 1, takes ``"+1"``, ``"1_0"`` and Unicode spaces, and refuses more
than 4300 digits: none of that is a number a PBX wrote. ``parse_decimal`` answers
``None`` for all of it and never raises, so a field a caller can reach (a hang-up cause,
a variable copied from a SIP header) cannot turn into an exception in an adapter.
"""

from __future__ import annotations

__all__ = ["MAX_DIGITS", "parse_decimal"]

# 18 digits fit a signed 64-bit integer, the widest number either PBX prints.
MAX_DIGITS = 18


def parse_decimal(value: str | None, *, signed: bool = False) -> int | None:
    """``value`` as an int when it is 1 to 18 ASCII digits (after one ``-`` when ``signed``),
    spaces and tabs around it aside; otherwise ``None``."""
    if value is None:
        return None
    text = value.strip(" \t")
    digits = text[1:] if signed and text.startswith("-") else text
    if not digits or len(digits) > MAX_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return int(text)

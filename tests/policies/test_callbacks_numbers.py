"""Phone numbers for callbacks: one customer, one E.164 key; unusable caller ids say why."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx_agent.numbers import NormalizedNumber, Unusable, UnusableReason, normalize


@pytest.mark.parametrize("raw", ["8 916 123-45-67", "+79161234567", "79161234567", " 89161234567 "])
def test_one_russian_customer_in_every_written_form_is_one_number(raw: str) -> None:
    """Trunk prefix 8, international +7 and bare 7 all give the same E.164 number."""
    assert normalize(raw, "RU") == NormalizedNumber(e164="+79161234567", region="RU")


def test_number_with_country_code_ignores_the_default_region() -> None:
    """A Chinese mobile written internationally stays Chinese on a Russian site."""
    normalized = normalize("+86 138 0013 8000", "RU")
    assert isinstance(normalized, NormalizedNumber)
    assert normalized.e164 == "+8613800138000"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", UnusableReason.EMPTY),
        ("   ", UnusableReason.EMPTY),
        ("anonymous", UnusableReason.ANONYMOUS),
        ("Anonymous", UnusableReason.ANONYMOUS),
        ("restricted", UnusableReason.WITHHELD),
        ("Private", UnusableReason.WITHHELD),
        ("<unknown>", UnusableReason.UNKNOWN),
        ("0000000000", UnusableReason.PLACEHOLDER),
        ("+7 000 000-00-00", UnusableReason.PLACEHOLDER),
        ("garbage", UnusableReason.UNPARSABLE),
        ("123", UnusableReason.TOO_SHORT),
        ("+7916\x001234567", UnusableReason.CONTROL_CHARACTERS),
        ("9" * 80, UnusableReason.TOO_LONG),
    ],
)
def test_unusable_caller_ids_say_why(raw: str, reason: UnusableReason) -> None:
    """Anonymous, withheld, placeholders and garbage never become a callback number."""
    result = normalize(raw, "RU")
    assert isinstance(result, Unusable)
    assert result.reason is reason


def test_unusable_number_is_shown_escaped_for_the_log() -> None:
    """Control characters in a caller id are escaped in what the log will show."""
    result = normalize("+7916\r\n1234567", "RU")
    assert isinstance(result, Unusable)
    assert result.raw == "+7916\\r\\n1234567"


@given(st.text(max_size=200))
def test_no_string_makes_normalize_raise(raw: str) -> None:
    """Whatever the PBX hands over, the answer is a number or a reason, never an exception."""
    result = normalize(raw, "RU")
    if isinstance(result, NormalizedNumber):
        assert result.e164.startswith("+")
        assert result.e164[1:].isdigit()

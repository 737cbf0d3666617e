"""Customer phone numbers: one customer, one key.

A caller's number reaches the daemon in whatever shape the network or the PBX wrote it
(``8 916 123-45-67``, ``+79161234567``, ``79161234567``); callbacks, night routing and
caller flags must treat all of them as the same customer. ``normalize`` turns a raw
caller id into E.164 with the ``phonenumbers`` library and the site's default region, or
says why it cannot be used: anonymous, withheld, a PBX placeholder, empty, unparsable,
too short, too long.

Invariants:
- Pure: no I/O, no logging, no clock. Never raises for any input string (control
  characters, surrogate escapes, megabytes of digits): the worst answer is ``Unusable``.
- ``NormalizedNumber.e164`` is ``+`` followed by digits only, so it is safe to store,
  compare and hand to a PBX dial string builder.
- Anonymous and withheld callers are told apart from garbage so the log says which.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

# A caller id longer than this is not a phone number; it is not worth parsing.
_MAX_RAW_LENGTH = 64

# What PBXs and networks put in the caller id when there is no number to show, by the
# reason it tells. Compared case-insensitively after stripping surrounding whitespace.
_ANONYMOUS = frozenset({"anonymous", "anonymous.invalid", "sip:anonymous@anonymous.invalid"})
_WITHHELD = frozenset({"restricted", "private", "withheld", "presentation restricted", "hidden"})
_UNKNOWN = frozenset({"<unknown>", "unknown", "unavailable", "not available", "n/a", "none"})


class UnusableReason(StrEnum):
    """Why a caller id cannot be called back or counted as a customer."""

    EMPTY = "empty"
    ANONYMOUS = "anonymous"
    WITHHELD = "withheld"
    UNKNOWN = "unknown"  # the PBX says it does not know the number (``<unknown>``)
    PLACEHOLDER = "placeholder"  # ``0000000000`` and friends
    CONTROL_CHARACTERS = "control_characters"
    UNPARSABLE = "unparsable"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    INVALID_COUNTRY_CODE = "invalid_country_code"
    INVALID_LENGTH = "invalid_length"
    LOCAL_ONLY = "local_only"  # dialable only inside its own area: no E.164 form


@dataclass(frozen=True, slots=True)
class NormalizedNumber:
    """A usable customer number."""

    e164: str  # ``+79161234567``
    region: str | None  # ISO region the number belongs to (``RU``), when known

    def __str__(self) -> str:
        return self.e164


@dataclass(frozen=True, slots=True)
class Unusable:
    """A caller id that is not a usable customer number, and why."""

    reason: UnusableReason
    raw: str  # printable rendering of what was received, for the log (never the raw bytes)


@functools.lru_cache(maxsize=65_536)
def normalize(raw: str, default_region: str) -> NormalizedNumber | Unusable:
    """Return the E.164 form of ``raw`` (read in ``default_region`` when it has no
    country code), or why it cannot be used.

    Pure, and cached: parsing costs a quarter of a millisecond and the same callers call
    again (the route hook normalises every inbound caller inside a 50 ms deadline)."""
    shown = _printable(raw)
    text = raw.strip()
    refused = _refuse_before_parsing(text)
    if refused is not None:
        return Unusable(refused, shown)
    try:
        parsed = phonenumbers.parse(text, default_region.upper())
    except NumberParseException as exc:
        return Unusable(_PARSE_ERRORS.get(exc.error_type, UnusableReason.UNPARSABLE), shown)
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if possible != ValidationResult.IS_POSSIBLE:
        return Unusable(_IMPOSSIBLE.get(possible, UnusableReason.UNPARSABLE), shown)
    if set(str(parsed.national_number)) == {"0"}:
        return Unusable(UnusableReason.PLACEHOLDER, shown)
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    return NormalizedNumber(e164=e164, region=phonenumbers.region_code_for_number(parsed))


def _refuse_before_parsing(text: str) -> UnusableReason | None:
    """The reasons a caller id is refused without asking the parser."""
    if not text:
        return UnusableReason.EMPTY
    lowered = text.lower()
    for words, reason in _NO_NUMBER_WORDS:
        if lowered in words:
            return reason
    if any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in text):
        return UnusableReason.CONTROL_CHARACTERS
    if len(text) > _MAX_RAW_LENGTH:
        return UnusableReason.TOO_LONG
    digits = {ch for ch in text if ch.isdigit()}
    if digits == {"0"}:
        return UnusableReason.PLACEHOLDER
    return None


_NO_NUMBER_WORDS: tuple[tuple[frozenset[str], UnusableReason], ...] = (
    (_ANONYMOUS, UnusableReason.ANONYMOUS),
    (_WITHHELD, UnusableReason.WITHHELD),
    (_UNKNOWN, UnusableReason.UNKNOWN),
)
_PARSE_ERRORS: dict[int, UnusableReason] = {
    NumberParseException.TOO_LONG: UnusableReason.TOO_LONG,
    NumberParseException.TOO_SHORT_NSN: UnusableReason.TOO_SHORT,
    NumberParseException.TOO_SHORT_AFTER_IDD: UnusableReason.TOO_SHORT,
}
_IMPOSSIBLE: dict[int, UnusableReason] = {
    ValidationResult.TOO_SHORT: UnusableReason.TOO_SHORT,
    ValidationResult.TOO_LONG: UnusableReason.TOO_LONG,
    ValidationResult.INVALID_COUNTRY_CODE: UnusableReason.INVALID_COUNTRY_CODE,
    ValidationResult.INVALID_LENGTH: UnusableReason.INVALID_LENGTH,
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: UnusableReason.LOCAL_ONLY,
}


def _printable(raw: str) -> str:
    """``raw`` cut to a loggable length with control characters escaped."""
    cut = raw[: _MAX_RAW_LENGTH + 1]
    return cut.encode("unicode_escape", "backslashreplace").decode("ascii")

"""Whether the attached Asterisk can whisper to a channel it is sending nothing to.

Every prompt the daemon plays on Asterisk is a whisper or a barge (a ``Local`` channel running
``ChanSpy``), and the hold program is one whisper that carries all the hold audio. Asterisk
mixes a whisper into the frames it writes to the spied channel. Before the change "Audiohooks:
Allow whisper audiohooks to work without an underlying stream" (asterisk/asterisk#1966, first
in 22.11.0; cherry-picked to the 20 and 23 branches) a channel that is sent no audio hears no
whisper: a held customer, whose music stops as soon as a spy attaches (trace 04a), would hear
silence for the whole hold. The transcripts the project is built from were taken on the 22
branch just after 22.11.0-rc1, which has the change.

The version comes from AMI ``CoreSettings`` (``AsteriskVersion``; write class ``system`` or
``reporting``, which the daemon's user has for ``CoreShowChannels``). Development builds
(``GIT-22-...``) and the branches whose first release with the change is not known here are
"unknown": the daemon says so and goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class WhisperSupport(StrEnum):
    OK = "ok"  # whispers are heard by a channel that is sent nothing
    TOO_OLD = "too_old"  # they are not: held customers would hear silence
    UNKNOWN = "unknown"  # cannot tell from the version string


@dataclass(frozen=True, slots=True)
class VersionVerdict:
    version: str
    whisper: WhisperSupport
    reason: str


FIRST_WITH_FIX = (22, 11)
# [0-9], not \d: \d also matches "١", which int() reads as 1.
_RELEASE = re.compile(r"^([0-9]+)\.([0-9]+)(?:\.([0-9]+))?")
_ADVICE = (
    "check the branch's ChangeLog for 'Allow whisper audiohooks to work without an underlying "
    "stream' (asterisk#1966); without it held customers hear silence (docs/hold.md)"
)


def whisper_verdict(version: str) -> VersionVerdict:
    """What ``AsteriskVersion`` says about whispers (see the module docstring)."""
    text = version.strip()
    match = _RELEASE.match(text)
    if match is None:
        return VersionVerdict(text, WhisperSupport.UNKNOWN, f"not a release number; {_ADVICE}")
    major, minor = int(match.group(1)), int(match.group(2))
    if major == FIRST_WITH_FIX[0]:
        if (major, minor) >= FIRST_WITH_FIX:
            return VersionVerdict(text, WhisperSupport.OK, "22.11 or later")
        return VersionVerdict(
            text, WhisperSupport.TOO_OLD, "before 22.11: upgrade to 22.11 or later; " + _ADVICE
        )
    if major > 23:
        return VersionVerdict(text, WhisperSupport.OK, "a branch newer than the change")
    if major in (20, 23):
        return VersionVerdict(text, WhisperSupport.UNKNOWN, f"branch {major}: {_ADVICE}")
    return VersionVerdict(
        text,
        WhisperSupport.TOO_OLD,
        f"branch {major} ended before the change: upgrade to 22.11 or later",
    )

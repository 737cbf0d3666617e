"""Asterisk ``AMD()``'s rules over speech segments reported by the PBX.

FreeSWITCH has no human/machine classifier in its core: what it offers on the outbound
socket session a callback runs in is talk detection (``TALK``/``NOTALK`` events from the
RTP voice activity detector, ``fire_talk_events``/``fire_not_talk_events``) and
``mod_avmd``'s ``avmd::beep``. This policy runs ``AMD()``'s state machine (``classic``)
over such segments, with the same ``ClassicParams`` and the same ``AMDCAUSE``-style
reasons, so both PBXs can apply the same rule when the daemon gets no audio; a beep is a
MACHINE at once (``BEEP-<hz>``), as on the audio path.

Segments come from debounced talk events (see ``tests/traces/freeswitch`` 04: a
``NOTALK`` every ~0.8 s inside continuous speech, then ``TALK`` 20–120 ms later; the
adapter merges such gaps) and are in time order. Times are milliseconds after the
answer. Pure: no I/O, no clock; the whole history is passed on each call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pbx_agent.amd.audio import FRAME_MS
from pbx_agent.amd.beep import Tone
from pbx_agent.amd.classic import ClassicAmd
from pbx_agent.amd.detector import AmdDetector, SpeechSegment, Verdict
from pbx_agent.amd.params import ClassicParams, DetectorParams, VerdictKind

__all__ = ["ReportedBeep", "classic_on_segments", "detector_on_segments"]


@dataclass(frozen=True, slots=True)
class ReportedBeep:
    """A beep the PBX reported (``avmd::beep``), ``at_ms`` when the event arrived."""

    at_ms: int
    frequency_hz: float


def as_tone(beep: ReportedBeep) -> Tone:
    """A reported beep as the detector's tone, detected when the PBX reported it."""
    return Tone(beep.frequency_hz, beep.at_ms, beep.at_ms)


def detector_on_segments(
    segments: Iterable[SpeechSegment],
    at_ms: int,
    *,
    beeps: Sequence[ReportedBeep] = (),
    params: DetectorParams | None = None,
    final: bool = False,
) -> Verdict | None:
    """The daemon's detector's verdict (its rules, without the noise floor and the music
    check, which need audio) from what the PBX reported up to ``at_ms``; None while
    undecided, unless ``final`` (the leg ended): then the detector's last word."""
    detector = AmdDetector(params)
    verdict = detector.feed_segments(segments, at_ms, [as_tone(beep) for beep in beeps])
    if verdict is None and final:
        return detector.finish(at_ms)
    return verdict


def classic_on_segments(
    segments: Iterable[SpeechSegment],
    at_ms: int,
    *,
    beeps: Sequence[ReportedBeep] = (),
    params: ClassicParams | None = None,
) -> Verdict | None:
    """``AMD()``'s verdict from what the PBX reported up to ``at_ms``, or None (undecided)."""
    amd = ClassicAmd(params)
    intervals = [
        (s.start_ms, at_ms if s.end_ms is None else min(s.end_ms, at_ms))
        for s in segments
        if s.start_ms < at_ms
    ]
    first_beep = min(beeps, key=lambda b: b.at_ms, default=None)
    index = 0
    t = 0
    while t + FRAME_MS <= at_ms:
        end = t + FRAME_MS
        if first_beep is not None and first_beep.at_ms <= end:
            return Verdict(VerdictKind.MACHINE, f"BEEP-{round(first_beep.frequency_hz)}", end)
        while index < len(intervals) and intervals[index][1] <= t:
            index += 1
        voice = index < len(intervals) and intervals[index][0] < end
        verdict = amd.step(voice=voice)
        if verdict is not None:
            return verdict
        t = end
    return None

"""The AMD() re-implementation against the behaviour captured on Asterisk 22 (trace 06)."""

from __future__ import annotations

import numpy as np

from pbx_agent.amd import signals as s
from pbx_agent.amd.classic import ClassicAmd
from pbx_agent.amd.detector import SpeechSegment
from pbx_agent.amd.evaluate import run_scorer
from pbx_agent.amd.params import ClassicParams, VerdictKind
from pbx_agent.amd.segments import ReportedBeep, classic_on_segments


def classic(pcm: np.ndarray, params: ClassicParams | None = None):
    return run_scorer(ClassicAmd(params), pcm)


def test_hello_then_silence_is_human_800_ms_after_it_ends():
    """Trace 06b: 'Hello?' 0.34-0.76 s then silence gives HUMAN-800-800 at 1.56 s."""
    clip = s.render(s.silence(0.34), s.tone(300.0, 0.42, -20.0), seconds=5)
    verdict = classic(clip)
    assert verdict.kind is VerdictKind.HUMAN
    assert verdict.reason == "HUMAN-800-800"
    assert verdict.decided_at_ms == 1560


def test_silence_is_a_machine_after_the_initial_silence():
    """Trace 06c: silence gives MACHINE INITIALSILENCE-2500-2500 at 2.5 s."""
    verdict = classic(s.render(seconds=5))
    assert (verdict.kind, verdict.reason, verdict.decided_at_ms) == (
        VerdictKind.MACHINE, "INITIALSILENCE-2500-2500", 2500,
    )  # fmt: skip


def test_continuous_greeting_is_a_long_greeting():
    """Trace 06a: a continuous greeting gives LONGGREETING-1500-1500."""
    verdict = classic(s.render(s.silence(0.04), s.tone(300.0, 5.0, -20.0), seconds=6))
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason == "LONGGREETING-1500-1500"


def test_line_noise_above_the_fixed_threshold_is_one_long_word():
    """The fixed silence threshold (256) takes -35 dBFS noise for speech: the documented flaw."""
    verdict = classic(s.render(seconds=5, background=s.noise(5, -35.0)))
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason.startswith("LONGGREETING")


def test_second_word_after_a_pause_is_maxwords():
    """Two words separated by silence reach maximum_number_of_words (2) = MACHINE."""
    clip = s.render(
        s.silence(0.3), s.tone(300.0, 0.3, -20.0), s.silence(0.2), s.tone(300.0, 0.3, -20.0),
        s.silence(0.2), s.tone(300.0, 0.3, -20.0), seconds=5,
    )  # fmt: skip
    verdict = classic(clip)
    assert verdict.reason == "MAXWORDS-2-2"


def test_total_analysis_time_gives_notsure():
    """Past total_analysis_time without a decision: NOTSURE TOOLONG."""
    params = ClassicParams(total_analysis_time=1000, initial_silence=5000)
    verdict = classic(s.render(seconds=3), params)
    assert (verdict.kind, verdict.reason) == (VerdictKind.NOTSURE, "TOOLONG-1000")


def test_talk_segments_give_the_same_verdict_as_audio():
    """AMD()'s rules over a talk segment agree with AMD() over the same audio."""
    audio = classic(s.render(s.silence(0.34), s.tone(300.0, 0.42, -20.0), seconds=5))
    segments = classic_on_segments([SpeechSegment(340, 760)], 5000)
    assert segments == audio


def test_reported_beep_is_a_machine_on_the_segment_path():
    """An avmd beep ends the analysis: MACHINE BEEP-<hz> when it is reported."""
    verdict = classic_on_segments(
        [SpeechSegment(100, 600)], 5000, beeps=[ReportedBeep(1000, 950.6)]
    )
    assert verdict is not None
    assert (verdict.kind, verdict.reason, verdict.decided_at_ms) == (
        VerdictKind.MACHINE, "BEEP-951", 1000,
    )  # fmt: skip


def test_segments_without_enough_time_are_undecided():
    """Before any rule can fire the segment policy returns None."""
    assert classic_on_segments([SpeechSegment(300)], 500) is None

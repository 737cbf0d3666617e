"""Detector parameters: defaults and the consistency checks a profile gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pbx_agent.amd.params import ClassicParams, DetectorParams, VerdictKind


def test_defaults_never_hang_up_on_a_timeout():
    """By default a missed deadline and a NOTSURE both count as a person."""
    params = DetectorParams()
    assert params.on_deadline is VerdictKind.HUMAN
    assert params.on_notsure is VerdictKind.HUMAN
    assert params.max_analysis_ms <= params.deadline_ms


def test_deadline_before_the_analysis_ends_is_refused():
    """max_analysis_ms after deadline_ms is refused, naming both keys."""
    with pytest.raises(ValidationError, match="max_analysis_ms: after deadline_ms"):
        DetectorParams(max_analysis_ms=6000)


def test_strong_margin_below_the_speech_margin_is_refused():
    """The 'speech anyway' margin cannot be below the ordinary one."""
    with pytest.raises(ValidationError, match="strong_margin_db"):
        DetectorParams(speech_margin_db=12.0, strong_margin_db=10.0)


def test_a_long_answer_shorter_than_a_short_one_is_refused():
    """long_answer_ms below short_answer_ms is refused, naming both keys."""
    with pytest.raises(ValidationError, match="long_answer_ms: below short_answer_ms"):
        DetectorParams(long_answer_ms=400, short_answer_ms=500)


def test_the_silence_needed_rises_with_the_answer_by_default():
    """By default a long answer needs more silence than a short one; no late-onset credit."""
    params = DetectorParams()
    assert params.short_answer_ms < params.long_answer_ms
    assert params.short_answer_silence_ms < params.human_silence_ms
    assert params.late_onset_credit_ms == 0


def test_unknown_keys_are_refused():
    """A misspelt key is an error, not silently ignored."""
    with pytest.raises(ValidationError, match="human_silence"):
        DetectorParams(human_silence=700)  # type: ignore[call-arg]


def test_classic_defaults_are_the_amd_conf_sample():
    """ClassicParams carry the amd.conf sample values the brief and trace use."""
    assert ClassicParams().model_dump() == {
        "initial_silence": 2500, "greeting": 1500, "after_greeting_silence": 800,
        "total_analysis_time": 5000, "min_word_length": 100, "between_words_silence": 50,
        "maximum_number_of_words": 2, "silence_threshold": 256, "maximum_word_length": 5000,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("foreground_gate_db", 2.0),
        ("foreground_gate_db", "loud"),
        ("foreground_window_ms", 0),
        ("foreground_reach_ms", -20),
    ],
)
def test_the_callee_level_check_out_of_range_is_refused(key: str, value: float):
    """A gate under 3 dB (the callee's own syllables would be refused) or not a number, an
    empty window or a negative reach is an error naming the key."""
    with pytest.raises(ValidationError, match=key):
        DetectorParams(**{key: value})

"""The detector's rules on synthetic signals: tones, noise, syllable bursts, silence."""

from __future__ import annotations

import numpy as np
import pytest

from pbx_agent.amd import signals as s
from pbx_agent.amd.audio import SAMPLE_RATE
from pbx_agent.amd.beep import Tone
from pbx_agent.amd.detector import AmdDetector, SpeechSegment, Verdict, _Foreground
from pbx_agent.amd.evaluate import run_scorer
from pbx_agent.amd.params import DetectorParams, VerdictKind


def verdict_of(pcm: np.ndarray, params: DetectorParams | None = None) -> Verdict:
    return run_scorer(AmdDetector(params), pcm)


def hello(onset_s: float = 0.5, **background: object) -> np.ndarray:
    """A person: 'Hello?' (three syllables) after an onset, then silence."""
    noise = s.noise(6, **background) if background else None  # type: ignore[arg-type]
    return s.render(s.silence(onset_s), s.syllables(3), seconds=6, background=noise)


def test_short_answer_then_silence_is_human():
    """A short answer followed by human_silence_ms of silence is HUMAN."""
    verdict = verdict_of(hello())
    assert verdict.kind is VerdictKind.HUMAN
    assert verdict.reason == "answer-then-silence"


def test_human_is_decided_at_speech_end_plus_the_silence():
    """The verdict instant is the end of the answer plus the silence needed, frame-exact."""
    detector = AmdDetector()
    verdict = run_scorer(detector, hello(onset_s=0.5))
    speech_end_ms = 500 + 3 * (180 + 40) - 40
    needed = detector.silence_needed_ms(3 * (180 + 40) - 40, 500)
    assert speech_end_ms <= verdict.decided_at_ms - needed <= speech_end_ms + 60


def test_a_short_answer_needs_the_short_silence():
    """Up to short_answer_ms of speech ("Да?"), short_answer_silence_ms of silence decides."""
    params = DetectorParams()
    detector = AmdDetector(params)
    assert detector.silence_needed_ms(300, 500) == params.short_answer_silence_ms
    assert detector.silence_needed_ms(params.short_answer_ms, 500) == 600


def test_the_silence_needed_grows_with_the_answer():
    """Between a short and a long answer the silence needed rises linearly."""
    detector = AmdDetector(
        DetectorParams(
            short_answer_ms=500, short_answer_silence_ms=600, long_answer_ms=2000,
            human_silence_ms=1000,
        )
    )  # fmt: skip
    assert detector.silence_needed_ms(1250, 500) == 800
    assert detector.silence_needed_ms(2000, 500) == 1000
    assert detector.silence_needed_ms(2900, 500) == 1000


def test_late_onset_credit_is_off_by_default():
    """A late first word changes nothing unless late_onset_credit_ms is set."""
    assert AmdDetector().silence_needed_ms(400, 1500) == AmdDetector().silence_needed_ms(400, 300)


def test_late_onset_credit_shortens_the_silence_when_enabled():
    """With a credit, speech first heard after late_onset_ms needs that much less silence."""
    detector = AmdDetector(DetectorParams(late_onset_ms=900, late_onset_credit_ms=200))
    assert detector.silence_needed_ms(400, 900) == 400
    assert detector.silence_needed_ms(400, 880) == 600


def test_short_hello_is_decided_sooner_than_a_long_answer_ends_plus_the_long_silence():
    """'Да?' then silence is decided short_answer_silence_ms after it, not human_silence_ms."""
    params = DetectorParams()
    verdict = verdict_of(s.render(s.silence(0.5), s.syllables(1), seconds=4), params)
    assert verdict.kind is VerdictKind.HUMAN
    assert verdict.decided_at_ms <= 500 + 180 + params.short_answer_silence_ms + 60


def test_a_pause_after_a_long_sentence_is_not_taken_for_a_person():
    """2 s of speech, an 800 ms pause, more speech: a greeting, not a person waiting."""
    greeting = s.render(
        s.silence(0.2), s.syllables(9), s.silence(0.8), s.syllables(9), seconds=6
    )  # fmt: skip
    verdict = verdict_of(greeting)
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason == "long-greeting"


@pytest.mark.parametrize("level", [-45.0, -40.0, -35.0])
@pytest.mark.parametrize("colour", ["white", "pink"])
def test_steady_noise_is_not_speech(level: float, colour: str):
    """A person answering over steady noise at up to -35 dBFS is still HUMAN."""
    verdict = verdict_of(hello(level_dbfs=level, colour=colour))
    assert verdict.kind is VerdictKind.HUMAN


def test_noise_alone_is_silence_not_a_greeting():
    """Steady noise with nobody speaking is NOTSURE (silence), never a long greeting."""
    verdict = verdict_of(s.render(seconds=6, background=s.noise(6, -35.0)))
    assert verdict == Verdict(VerdictKind.NOTSURE, "silence", DetectorParams().no_speech_ms)


def test_long_speech_is_a_greeting():
    """More than max_human_speech_ms of speech is MACHINE (long-greeting)."""
    greeting = s.render(s.silence(0.1), s.syllables(12), s.silence(0.3), s.syllables(12), seconds=8)
    verdict = verdict_of(greeting)
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason == "long-greeting"


def test_several_short_phrases_with_pauses_stay_human():
    """A chatty answer ('Да, слушаю вас, кто это?') is HUMAN once the person stops."""
    chatty = s.render(
        s.silence(0.6), s.syllables(2), s.silence(0.2), s.syllables(3), s.silence(0.25),
        s.syllables(3), seconds=6,
    )  # fmt: skip
    assert verdict_of(chatty).kind is VerdictKind.HUMAN


def test_double_hello_is_human_at_the_first_pause():
    """'Алло? … Алло?' is decided HUMAN during the pause after the first one."""
    double = s.render(s.silence(0.4), s.syllables(2), s.silence(1.5), s.syllables(2), seconds=6)
    verdict = verdict_of(double)
    assert verdict.kind is VerdictKind.HUMAN
    assert verdict.decided_at_ms < 1900


GATE_OFF = DetectorParams(foreground_gate_db=60.0)


@pytest.mark.parametrize("level", [-45.0, -40.0, -35.0])
@pytest.mark.parametrize("onset_s", [0.5, 1.2])
def test_voices_behind_the_callee_are_not_their_speech(level: float, onset_s: float):
    """'Hello?' over people talking behind the callee, 13-27 dB quieter and never pausing
    for long: HUMAN. Counted as the callee's speech (the check off), those voices fill the
    pause and add up to a greeting: the person would be hung up on."""
    clip = s.render(
        s.silence(onset_s), s.syllables(3), seconds=6, background=s.voices(6, level, seed=1)
    )
    verdict = verdict_of(clip)
    assert verdict.kind is VerdictKind.HUMAN
    assert verdict.reason == "answer-then-silence"
    assert verdict_of(clip, GATE_OFF).kind is VerdictKind.MACHINE


@pytest.mark.parametrize("level", [-50.0, -35.0, -20.0])
def test_gate_60_counts_every_speech_frame_as_the_callees(level: float):
    """foreground_gate_db = 60 is documented as the check turned off: every frame the voice
    activity calls speech counts as the callee's, loud voices behind them or quiet."""
    clip = s.render(
        s.silence(0.6), s.syllables(3, level_dbfs=-12.0), s.silence(0.8),
        s.syllables(2, level_dbfs=-30.0, seed=7), seconds=6,
        background=s.voices(6, level, talkers=3, seed=4),
    )  # fmt: skip
    off, on = AmdDetector(GATE_OFF), AmdDetector()
    run_scorer(off, clip)
    run_scorer(on, clip)
    assert any(off._own_voice.speech)
    assert off._own_voice.counted == off._own_voice.speech
    if level <= -35.0:  # the same clip with the check on: the voices are not the callee's
        assert on._own_voice.counted != on._own_voice.speech


def test_voices_heard_before_the_callee_speaks_are_recounted():
    """Voices heard first count as speech until the callee is heard far louder; then the
    frames counted so far are counted again, and the voices' are no longer speech."""
    detector = AmdDetector()
    background = s.voices(6, -40.0, seed=2)
    run_scorer(detector, s.render(s.silence(1.5), s.syllables(3), seconds=6, background=background))
    own = detector._own_voice  # the check's own record
    first_second = range(50)
    assert any(own.speech[i] for i in first_second)  # the voices pass the activity check
    assert not any(own.counted[i] for i in range(40))  # ...but are not the callee's


def test_a_greeting_with_soft_words_is_still_a_greeting():
    """Soft words 18 dB under the loud ones, next to them, are the same speaker's: the
    greeting stays one long speech (MACHINE). Without the reach they would be gaps that
    make the greeting a person pausing."""
    words = [
        part
        for i in range(8)
        for part in (
            s.syllables(2, level_dbfs=-34.0, seed=i),
            s.syllables(2, level_dbfs=-16.0, seed=i + 50),
            s.silence(0.15),
        )
    ]
    greeting = s.render(s.silence(0.1), *words, seconds=8)
    verdict = verdict_of(greeting)
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason == "long-greeting"
    assert verdict_of(greeting, DetectorParams(foreground_reach_ms=0)).kind is VerdictKind.HUMAN


def test_a_soft_word_after_a_loud_hello_is_not_taken_for_the_pause_going_on():
    """'Hello!' loud, then the greeting's next word begins softly just as the pause would
    make a person: the soft start might be the callee's, so the decision waits for what
    follows it (here the greeting: MACHINE) instead of calling a person at once."""
    greeting = s.render(
        s.silence(0.3), s.syllables(2, level_dbfs=-14.0), s.silence(0.5),
        s.syllables(1, syllable_s=0.08, gap_s=0.0, level_dbfs=-30.0, seed=3),
        s.syllables(6, level_dbfs=-16.0, seed=4), s.silence(0.2),
        s.syllables(8, level_dbfs=-16.0, seed=5), seconds=6,
    )  # fmt: skip
    verdict = verdict_of(greeting)
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason == "long-greeting"


def test_quieter_speech_after_a_pause_is_a_possible_onset_only_for_the_reach():
    """Uncounted quieter speech right after a pause may be the callee's next word for up
    to foreground_reach_ms; quieter speech that goes on is the voices behind them."""
    own = _Foreground(gate_db=10.0, window=3, reach=3)
    for i in range(6):
        own.add(i * 20, speech=True, level_dbfs=-15.0)
    for i in range(6, 40):
        own.add(i * 20, speech=False, level_dbfs=-70.0)
    assert not own.maybe_own_onset()
    starts = iter(range(40 * 20, 60 * 20, 20))
    own.add(next(starts), speech=True, level_dbfs=-40.0)
    assert own.maybe_own_onset()
    for _ in range(3):
        own.add(next(starts), speech=True, level_dbfs=-40.0)
    assert not own.maybe_own_onset()  # four frames: longer than the reach


def test_voices_with_nobody_nearer_are_judged_on_their_own():
    """With no louder speaker the voices are the callee's (nothing to tell them apart by):
    non-stop talk is a greeting."""
    verdict = verdict_of(s.render(seconds=6, background=s.voices(6, -40.0, seed=3)))
    assert verdict.kind is VerdictKind.MACHINE


@pytest.mark.parametrize("freq", [440.0, 1000.0, 1400.0, 2100.0])
def test_a_beep_is_a_machine(freq: float):
    """A steady tone of 160 ms or more is MACHINE, decided within the tone."""
    verdict = verdict_of(s.render(s.silence(0.3), s.tone(freq, 0.5), seconds=4))
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason.startswith("tone-")
    assert abs(int(verdict.reason[5:-2]) - freq) <= 0.01 * freq
    assert 300 + 160 <= verdict.decided_at_ms <= 300 + 240


def test_a_short_greeting_then_a_beep_is_a_machine():
    """'Leave a message.' + beep: the beep decides before the silence can."""
    clip = s.render(s.silence(0.2), s.syllables(5), s.silence(0.4), s.tone(1000, 0.4), seconds=5)
    assert verdict_of(clip).kind is VerdictKind.MACHINE


def test_a_tone_shorter_than_the_minimum_is_not_a_beep():
    """A 100 ms tone does not count (speech has short steady stretches too)."""
    verdict = verdict_of(s.render(s.silence(0.3), s.tone(1000, 0.1), seconds=4))
    assert verdict.kind is not VerdictKind.MACHINE


def test_a_tone_below_the_band_is_not_a_beep():
    """Mains hum (50 Hz) is not a beep."""
    verdict = verdict_of(s.render(seconds=5, background=s.tone(50.0, 5, -30.0)))
    assert verdict.reason != "tone-50hz"


def test_non_stop_sound_is_a_machine():
    """max_sound_ms of sound with no pause (music, noise bursts) is MACHINE."""
    rng = np.random.default_rng(1)
    t = np.arange(6 * SAMPLE_RATE) / SAMPLE_RATE
    wobbling = rng.standard_normal(t.size) * (0.05 + 0.04 * np.sin(2 * np.pi * 2 * t))
    clip = s.render(s.silence(0.3), wobbling, seconds=6)
    params = DetectorParams(max_human_speech_ms=10000)
    verdict = verdict_of(clip, params)
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason in ("continuous-sound", "long-greeting")


def test_silence_is_notsure():
    """Digital silence is NOTSURE ('silence') at no_speech_ms: no guess either way."""
    verdict = verdict_of(s.render(seconds=6))
    assert verdict == Verdict(VerdictKind.NOTSURE, "silence", 4000)


def test_undecided_speech_gives_up_at_max_analysis():
    """Speech still going on at max_analysis_ms (with a long cap) is NOTSURE."""
    params = DetectorParams(max_human_speech_ms=10000, max_sound_ms=20000)
    verdict = verdict_of(s.render(s.syllables(40), seconds=9), params)
    assert verdict == Verdict(VerdictKind.NOTSURE, "undecided", params.max_analysis_ms)


def test_the_verdict_is_final():
    """Audio after the verdict does not change it."""
    detector = AmdDetector()
    first = run_scorer(detector, hello())
    assert detector.feed_pcm(s.render(s.tone(1000, 1.0)), 6000) == first
    assert detector.finish(9000) == first


def test_bytes_and_arrays_give_the_same_verdict():
    """feed_pcm takes AudioSocket bytes as well as sample arrays."""
    pcm = hello()
    detector = AmdDetector()
    verdict = None
    for i in range(0, pcm.size, 160):
        verdict = detector.feed_pcm(pcm[i : i + 160].tobytes(), i // 8)
        if verdict:
            break
    assert verdict == verdict_of(pcm)


def test_lost_audio_counts_as_time_without_speech():
    """A jump forward in at_ms advances the clock: speech, then no audio, is HUMAN."""
    detector = AmdDetector()
    speech = s.render(s.silence(0.3), s.syllables(3))
    assert detector.feed_pcm(speech, 0) is None
    verdict = detector.feed_pcm(s.render(s.silence(0.02)), 3000)
    assert verdict is not None
    assert verdict.kind is VerdictKind.HUMAN


def test_lost_audio_keeps_quieter_speech_after_it_apart_from_the_callee():
    """After 300 ms of lost audio, quieter speech is not "near" the callee's last word:
    lost audio counts as time for the voices-behind check too, not as no time at all."""
    detector = AmdDetector()
    hello = s.render(s.silence(0.3), s.syllables(3, level_dbfs=-14.0))
    detector.feed_pcm(hello, 0)
    before_gap = len(detector._own_voice.counted)  # the check's own record
    behind = s.render(s.syllables(2, level_dbfs=-38.0, pitch_hz=180.0))
    detector.feed_pcm(behind, hello.size // 8 + 300)
    own = detector._own_voice
    after_gap = [i for i in range(before_gap, len(own.speech)) if own.starts_ms[i] >= 1200]
    assert any(own.speech[i] for i in after_gap)  # the quieter voice is speech...
    assert not any(own.counted[i] for i in after_gap)  # ...but not the callee's


def test_finish_without_speech_is_notsure():
    """A stream that ends before anything was said is NOTSURE."""
    detector = AmdDetector()
    detector.feed_pcm(s.render(s.silence(1.0)), 0)
    assert detector.finish(1000).kind is VerdictKind.NOTSURE


def test_odd_byte_counts_are_refused():
    """PCM bytes must be whole 16-bit samples."""
    with pytest.raises(ValueError, match="even number"):
        AmdDetector().feed_pcm(b"\x00\x01\x02", 0)


def test_segments_short_talk_then_silence_is_human():
    """From PBX talk segments: a short segment and silence is HUMAN."""
    detector = AmdDetector()
    verdict = detector.feed_segments([SpeechSegment(400, 900)], 3000)
    assert verdict is not None
    assert verdict.kind is VerdictKind.HUMAN
    # Decisions fall on the 20 ms frame grid.
    assert 0 <= verdict.decided_at_ms - (900 + detector.silence_needed_ms(500, 400)) < 20


def test_segments_open_talk_is_undecided_until_too_long():
    """An open segment (no NOTALK yet) is speech still going on."""
    detector = AmdDetector()
    assert detector.feed_segments([SpeechSegment(100)], 2000) is None
    verdict = detector.feed_segments([SpeechSegment(100)], 3500)
    assert verdict is not None
    assert verdict.reason == "long-greeting"


def test_segments_with_a_reported_beep_are_a_machine():
    """An avmd beep reported with the segments is MACHINE at its time."""
    verdict = AmdDetector().feed_segments(
        [SpeechSegment(100, 1200)], 2000, [Tone(950.0, 1400, 1400)]
    )
    assert verdict is not None
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.decided_at_ms == 1400

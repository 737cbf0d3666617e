"""Music and tones told apart from voices: spectral stability, the music rule, beep tolerances."""

from __future__ import annotations

import numpy as np
import pytest

from pbx_agent.amd import signals as s
from pbx_agent.amd.beep import ToneAnalyser
from pbx_agent.amd.detector import AmdDetector, Verdict
from pbx_agent.amd.evaluate import run_scorer
from pbx_agent.amd.music import MusicTracker
from pbx_agent.amd.params import DetectorParams, VerdictKind


def verdict_of(pcm: np.ndarray, params: DetectorParams | None = None) -> Verdict:
    return run_scorer(AmdDetector(params), pcm)


def stabilities(pcm: np.ndarray) -> np.ndarray:
    analyser = ToneAnalyser()
    frames = range(0, pcm.size - 159, 160)
    # The first frames are compared with the silence before the signal.
    return np.array([analyser.analyse(pcm[i : i + 160]).stability for i in frames])[3:]


def test_a_held_tone_has_a_stable_spectrum():
    """A steady tone's spectrum 40 ms apart is the same: stability close to 1."""
    assert stabilities(s.render(s.tone(1000.0, 0.5))).min() > 0.99


def test_noise_is_not_stable():
    """Independent noise spectra are about 0.8 alike, under the music threshold."""
    values = stabilities(s.render(s.noise(1.0, -20.0)))
    assert 0.7 < values.mean() < 0.85
    assert (values >= DetectorParams().music_min_stability).mean() < 0.05


def test_speech_like_syllables_are_mostly_unstable():
    """Voiced syllables with a moving pitch leave most frames under the threshold."""
    values = stabilities(s.render(s.syllables(10)))
    assert (values >= DetectorParams().music_min_stability).mean() < 0.3


@pytest.mark.parametrize("level", [-20.0, -30.0])
def test_music_is_a_machine_within_the_window(level: float):
    """A tune is MACHINE 'music' after one music_window_ms, before max_sound_ms."""
    verdict = verdict_of(s.render(s.silence(0.2), s.melody(20, level_dbfs=level), seconds=7))
    assert verdict.kind is VerdictKind.MACHINE
    assert verdict.reason == "music"
    assert verdict.decided_at_ms <= 200 + DetectorParams().music_window_ms + 100


def test_a_person_over_a_quiet_radio_is_a_person():
    """'Hello?' over a tune at -38 dBFS that was there before the answer is HUMAN."""
    radio = s.melody(30, level_dbfs=-38.0)
    clip = s.render(s.silence(0.6), s.syllables(3), seconds=6, background=radio)
    assert verdict_of(clip).kind is VerdictKind.HUMAN


def test_music_quieter_than_music_min_dbfs_is_not_called_music():
    """A plucked tune at -38 dBFS is below the level guard; without the guard it is music."""
    clip = s.render(
        s.silence(0.3), s.melody(20, decay_per_s=8.0, level_dbfs=-38.0), seconds=6
    )  # fmt: skip
    assert verdict_of(clip).reason != "music"
    assert verdict_of(clip, DetectorParams(music_min_dbfs=-60.0)).reason == "music"


def test_the_music_tracker_reports_once():
    """MusicTracker says 'music' once, when the window first holds enough stable frames."""
    tracker = MusicTracker(window_ms=100, min_share=0.6)
    reports = [
        tracker.feed(stability=0.95, loud=True, level_dbfs=-20.0, end_ms=20 * (i + 1))
        for i in range(10)
    ]
    found = [r for r in reports if r is not None]
    assert len(found) == 1
    assert found[0].detected_at_ms == 100


def test_quiet_or_unstable_frames_never_make_music():
    """Frames under min_dbfs, not loud, or under min_stability do not count."""
    tracker = MusicTracker(window_ms=100, min_share=0.2, min_dbfs=-35.0)
    frames = [(0.95, True, -40.0), (0.95, False, -20.0), (0.5, True, -20.0)]
    reports = []
    for i in range(30):
        stability, loud, level = frames[i % 3]
        reports.append(
            tracker.feed(stability=stability, loud=loud, level_dbfs=level, end_ms=20 * (i + 1))
        )
    assert reports == [None] * 30


def test_a_high_voice_swinging_in_level_is_not_a_beep():
    """A pure 400 Hz 'oo' whose level swings by 8 dB is a voice, not a tone."""
    verdict = verdict_of(s.render(s.silence(0.3), s.glide(400, 400, 0.4, swing_db=8.0), seconds=4))
    assert not verdict.reason.startswith("tone-")


def test_a_gliding_pitch_is_not_a_beep():
    """A pure sound sliding 400 -> 440 Hz in 0.4 s (an intonation) is not a tone."""
    verdict = verdict_of(s.render(s.silence(0.3), s.glide(400, 440, 0.4), seconds=4))
    assert not verdict.reason.startswith("tone-")


def test_a_steady_pure_sound_is_still_a_beep():
    """The same 400 Hz held steady in pitch and level is a beep."""
    verdict = verdict_of(s.render(s.silence(0.3), s.glide(400, 400, 0.4), seconds=4))
    assert verdict.reason in ("tone-399hz", "tone-400hz", "tone-401hz")

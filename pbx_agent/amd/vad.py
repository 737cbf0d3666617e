"""Voice activity per 20 ms frame, with a noise floor that follows steady background noise.

Asterisk's ``AMD()`` calls a frame speech when its mean absolute amplitude reaches a fixed
256 (about −42 dBFS RMS): any line noise louder than that is one endless "word". Here a
frame is speech only when both hold:

- its level is ``speech_margin_db`` above the *noise floor*, an estimate of the steady
  background: it drops at once to a quieter frame and rises slowly
  (``floor_rise_db_per_s``), so pauses between syllables pull it down to the noise and a
  steady noise becomes the floor within a fraction of a second, while speech, which
  always has pauses, never does;
- webrtcvad (a GMM voice model) calls it voice, or it is ``strong_margin_db`` above the
  floor (webrtcvad misses some loud voiced frames after long silence).

The first frame seeds the floor (clamped to ``floor_start_max_dbfs``), so noise that is
there from the first frame never counts as speech. No I/O; one ``VoiceActivity`` per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import webrtcvad

from pbx_agent.amd.audio import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, Pcm

__all__ = ["FrameActivity", "NoiseFloor", "VoiceActivity", "level_dbfs"]

_SILENCE_DBFS = -100.0


def level_dbfs(frame: Pcm) -> float:
    """RMS level of 16-bit samples in dB relative to full scale (−100 for digital silence)."""
    if frame.size == 0:
        return _SILENCE_DBFS
    power = float(np.mean(np.square(frame.astype(np.float64)))) / (32768.0 * 32768.0)
    if power <= 1e-10:
        return _SILENCE_DBFS
    return 10.0 * math.log10(power)


class NoiseFloor:
    """Fast-down, slow-up minimum tracker of frame levels (dBFS)."""

    def __init__(self, rise_db_per_s: float, start_max_dbfs: float, min_dbfs: float) -> None:
        self._rise_per_frame = rise_db_per_s * FRAME_MS / 1000.0
        self._start_max = start_max_dbfs
        self._min = min_dbfs
        self._floor: float | None = None

    @property
    def dbfs(self) -> float:
        return self._min if self._floor is None else self._floor

    def update(self, level: float) -> float:
        if self._floor is None:
            self._floor = max(self._min, min(level, self._start_max))
        elif level < self._floor:
            self._floor = max(self._min, level)
        else:
            self._floor = min(level, self._floor + self._rise_per_frame)
        return self._floor


@dataclass(frozen=True, slots=True)
class FrameActivity:
    level_dbfs: float
    floor_dbfs: float
    voice: bool  # webrtcvad's opinion
    speech: bool  # the decision


class VoiceActivity:
    """Feed 20 ms frames (160 samples at 8 kHz) in order; get one decision per frame."""

    def __init__(
        self,
        *,
        vad_mode: int = 2,
        speech_margin_db: float = 3.5,
        strong_margin_db: float = 18.0,
        min_speech_dbfs: float = -55.0,
        floor_rise_db_per_s: float = 4.0,
        floor_start_max_dbfs: float = -30.0,
        floor_min_dbfs: float = -90.0,
    ) -> None:
        self._vad = webrtcvad.Vad(vad_mode)
        self._floor = NoiseFloor(floor_rise_db_per_s, floor_start_max_dbfs, floor_min_dbfs)
        self._margin = speech_margin_db
        self._strong = strong_margin_db
        self._min_speech = min_speech_dbfs
        self._started = False

    def classify(self, frame: Pcm) -> FrameActivity:
        if frame.size != FRAME_SAMPLES:
            msg = f"frame of {frame.size} samples refused; accepted: {FRAME_SAMPLES}"
            raise ValueError(msg)
        level = level_dbfs(frame)
        # The floor is the level *before* this frame: a loud onset is judged against the
        # background it rose from.
        floor = self._floor.dbfs if self._started else level
        voice = bool(self._vad.is_speech(frame.astype("<i2").tobytes(), SAMPLE_RATE))
        above = level - floor
        speech = level >= self._min_speech and (
            (voice and above >= self._margin) or above >= self._strong
        )
        self._floor.update(level)
        self._started = True
        return FrameActivity(level, floor, voice, speech)

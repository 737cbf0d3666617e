"""Narrow-band tone detection: voicemail beeps, special information tones, fax/modem tones.

Per 20 ms frame, the spectrum of the last 40 ms (Hann window, zero-padded FFT, parabolic
peak interpolation) gives the strongest frequency and its *purity*: the share of the
frame's energy within ``±band_hz`` of that peak. A sine has purity close to 1; speech
spreads its energy over many harmonics and formants (purity mostly well under 0.5,
though a high voice's "у"/"oo" can reach 0.9); white or pink noise is near 0.

The same spectrum gives the frame's *stability*: the cosine similarity of its magnitude
spectrum (300–3400 Hz) with the one 40 ms earlier (the previous window that does not
overlap it). A held musical note or a tone keeps its partials in place (close to 1); speech
moves its pitch and formants within tens of milliseconds (mostly under 0.8); noise
spectra are random from one window to the next (about 0.8). ``music.MusicTracker`` uses
it.

``BeepTracker`` turns frames into tones: a run of frames that are loud enough, pure
enough, whose peak stays within ``freq_tolerance_hz`` of the run's first frame and whose
level stays within ``level_tolerance_db`` of it. A run lasting ``min_duration_ms`` is a
``Tone``; frequencies outside ``min_hz``..``max_hz`` (mains hum, a DC offset) are ignored.
A generated beep holds its frequency to a hertz and its level to a fraction of a decibel;
that high "oo" can stay pure for 160 ms, but its pitch drifts by 9–25 Hz and its level
swings by 9–24 dB (measured on the development corpus), hence both tolerances. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pbx_agent.amd.audio import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, Pcm

__all__ = ["BeepTracker", "Tone", "ToneAnalyser", "ToneFrame"]

_WINDOW_SAMPLES = 2 * FRAME_SAMPLES
_FFT_SIZE = 1024
_HZ_PER_BIN = SAMPLE_RATE / _FFT_SIZE
_BAND_LOW_BIN = round(300 / _HZ_PER_BIN)
_BAND_HIGH_BIN = round(3400 / _HZ_PER_BIN)


@dataclass(frozen=True, slots=True)
class ToneFrame:
    frequency_hz: float
    purity: float  # share of the energy near the peak, 0..1
    stability: float  # spectral similarity with the window 40 ms earlier, 0..1


@dataclass(frozen=True, slots=True)
class Tone:
    frequency_hz: float
    start_ms: int
    detected_at_ms: int  # when the run reached the minimum duration


class ToneAnalyser:
    """Keeps the previous frame so each analysis sees 40 ms, and the last two band
    spectra for the stability."""

    def __init__(self, band_hz: float = 60.0) -> None:
        self._previous = np.zeros(FRAME_SAMPLES)
        self._window = np.hanning(_WINDOW_SAMPLES)
        self._band_bins = max(1, round(band_hz / _HZ_PER_BIN))
        empty = np.zeros(_BAND_HIGH_BIN - _BAND_LOW_BIN)
        self._spectra: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] = (empty, empty)

    def analyse(self, frame: Pcm) -> ToneFrame:
        samples = frame.astype(np.float64)
        block = np.concatenate([self._previous, samples])
        self._previous = samples
        block = block - block.mean()
        power: npt.NDArray[np.float64] = np.abs(np.fft.rfft(block * self._window, _FFT_SIZE)) ** 2
        band = np.sqrt(power[_BAND_LOW_BIN:_BAND_HIGH_BIN])
        stability = _cosine(band, self._spectra[0])
        self._spectra = (self._spectra[1], band)
        total = float(power.sum())
        if total <= 0.0:
            return ToneFrame(0.0, 0.0, stability)
        peak = int(np.argmax(power))
        low = max(0, peak - self._band_bins)
        near = float(power[low : peak + self._band_bins + 1].sum())
        return ToneFrame(_interpolated_hz(power, peak), near / total, stability)


def _cosine(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norms if norms > 0.0 else 0.0


def _interpolated_hz(power: npt.NDArray[np.float64], peak: int) -> float:
    if 0 < peak < power.size - 1:
        a, b, c = np.log(power[peak - 1 : peak + 2] + 1e-12)
        denominator = a - 2 * b + c
        offset = 0.5 * (a - c) / denominator if denominator else 0.0
        return float((peak + offset) * _HZ_PER_BIN)
    return float(peak * _HZ_PER_BIN)


class BeepTracker:
    """Runs of stable pure frames. ``feed`` returns a ``Tone`` once per run, when it qualifies."""

    def __init__(
        self,
        *,
        min_purity: float = 0.8,
        min_duration_ms: int = 120,
        freq_tolerance_hz: float = 10.0,
        level_tolerance_db: float = 4.0,
        min_hz: float = 300.0,
        max_hz: float = 3400.0,
    ) -> None:
        self._min_purity = min_purity
        self._min_duration = min_duration_ms
        self._tolerance = freq_tolerance_hz
        self._level_tolerance = level_tolerance_db
        self._min_hz = min_hz
        self._max_hz = max_hz
        self._run_start: int | None = None
        self._run_hz = 0.0
        self._run_level = 0.0
        self._reported = False

    def feed(self, tone: ToneFrame, loud: bool, at_ms: int, level_dbfs: float) -> Tone | None:
        """``at_ms`` is the start of the frame; ``loud`` says it stands out of the noise."""
        pure = (
            loud
            and tone.purity >= self._min_purity
            and self._min_hz <= tone.frequency_hz <= self._max_hz
        )
        if not pure:
            self._run_start = None
            return None
        if (
            self._run_start is None
            or abs(tone.frequency_hz - self._run_hz) > self._tolerance
            or abs(level_dbfs - self._run_level) > self._level_tolerance
        ):
            self._run_start = at_ms
            self._run_hz = tone.frequency_hz
            self._run_level = level_dbfs
            self._reported = False
            return None
        end = at_ms + FRAME_MS
        if not self._reported and end - self._run_start >= self._min_duration:
            self._reported = True
            return Tone(self._run_hz, self._run_start, end)
        return None

"""Synthetic test signals: tones, noise and speech-like syllable bursts, at 8 kHz.

They exercise the detector without a speech synthesiser: a "syllable" is a harmonic
complex (a voice's pitch and a few formant-like peaks) under a raised-cosine envelope,
which the voice activity detector takes for voice, and which a tone detector must not
take for a beep. Levels are RMS dBFS. Everything is seeded.
"""

from __future__ import annotations

import numpy as np

from pbx_agent.amd.audio import SAMPLE_RATE, Pcm, Signal, to_pcm

__all__ = ["glide", "melody", "noise", "render", "silence", "syllables", "tone", "voices"]


def _rms_to(signal: Signal, level_dbfs: float) -> Signal:
    rms = float(np.sqrt(np.mean(signal**2))) if signal.size else 0.0
    return signal if rms == 0 else signal * (10 ** (level_dbfs / 20) / rms)


def silence(seconds: float) -> Signal:
    return np.zeros(round(seconds * SAMPLE_RATE))


def tone(freq_hz: float, seconds: float, level_dbfs: float = -15.0) -> Signal:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return _rms_to(np.sin(2 * np.pi * freq_hz * t), level_dbfs)


def glide(
    start_hz: float, end_hz: float, seconds: float, level_dbfs: float = -15.0, swing_db: float = 0.0
) -> Signal:
    """A sine whose pitch slides from ``start_hz`` to ``end_hz`` and whose level swings by
    ``swing_db`` (peak to trough, 8 Hz): a sung or drawn-out vowel with a strong fundamental."""
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    freq = np.linspace(start_hz, end_hz, t.size)
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    envelope = 10 ** (swing_db / 2 * np.sin(2 * np.pi * 8 * t) / 20)
    return _rms_to(np.sin(phase) * envelope, level_dbfs)


def melody(
    notes: int,
    *,
    note_s: float = 0.3,
    root_hz: float = 220.0,
    harmonics: int = 4,
    decay_per_s: float = 1.5,
    level_dbfs: float = -20.0,
    seed: int = 0,
) -> Signal:
    """``notes`` notes of a tune: harmonic tones on a major scale, each dying away at
    ``decay_per_s`` (1.5: held notes; 5: plucked ones that fade before the next)."""
    rng = np.random.default_rng(seed)
    scale = (0, 2, 4, 5, 7, 9, 11, 12)
    n = round(note_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    parts: list[Signal] = []
    for _ in range(notes):
        f0 = root_hz * 2 ** (int(rng.choice(scale)) / 12)
        note = sum(
            (np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, harmonics + 1) if f0 * h < 3400),
            np.zeros(n),
        )
        parts.append(note * np.exp(-decay_per_s * t) * np.minimum(1.0, t / 0.01))
    return _rms_to(np.concatenate(parts), level_dbfs)


def noise(seconds: float, level_dbfs: float, colour: str = "white", seed: int = 0) -> Signal:
    """White or pink (1/f power) Gaussian noise."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    white = rng.standard_normal(n)
    if colour == "pink":
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        freqs[0] = freqs[1]
        white = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    elif colour != "white":
        msg = f"noise colour {colour!r} refused; accepted: white, pink"
        raise ValueError(msg)
    return _rms_to(white, level_dbfs)


def syllables(
    count: int,
    *,
    syllable_s: float = 0.18,
    gap_s: float = 0.04,
    level_dbfs: float = -18.0,
    pitch_hz: float = 120.0,
    seed: int = 0,
) -> Signal:
    """``count`` voiced syllables in a row: one phrase, ``count * (syllable_s + gap_s)`` long."""
    rng = np.random.default_rng(seed)
    parts: list[Signal] = []
    formants = (700.0, 1200.0, 2500.0)
    for _ in range(count):
        n = round(syllable_s * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        f0 = pitch_hz * rng.uniform(0.9, 1.1) * (1 + 0.08 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        voiced = np.zeros(n)
        for harmonic in range(1, int(3400 // pitch_hz)):
            centre = harmonic * pitch_hz
            weight = sum(np.exp(-(((centre - f) / 250.0) ** 2)) for f in formants) + 0.05
            voiced += weight * np.sin(harmonic * phase)
        envelope = np.sin(np.pi * t / syllable_s) ** 0.6
        parts += [voiced * envelope, silence(gap_s)]
    return _rms_to(np.concatenate(parts), level_dbfs)


def voices(seconds: float, level_dbfs: float, talkers: int = 2, seed: int = 0) -> Signal:
    """People talking behind the callee: ``talkers`` voices of syllables in phrases with
    short pauses, for ``seconds``, mixed at ``level_dbfs``."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    mixed = np.zeros(n)
    for talker in range(talkers):
        parts: list[Signal] = [silence(float(rng.uniform(0.0, 0.3)))]
        while sum(p.size for p in parts) < n:
            parts.append(
                syllables(
                    int(rng.integers(2, 7)),
                    pitch_hz=float(rng.uniform(90.0, 220.0)),
                    seed=seed * 100 + talker * 10 + len(parts),
                )
            )
            parts.append(silence(float(rng.uniform(0.05, 0.25))))
        mixed += np.concatenate(parts)[:n]
    return _rms_to(mixed, level_dbfs)


def render(*parts: Signal, seconds: float | None = None, background: Signal | None = None) -> Pcm:
    """Concatenate, pad (or cut) to ``seconds``, add ``background``, and make 16-bit PCM."""
    signal = np.concatenate(parts) if parts else np.zeros(0)
    if seconds is not None:
        n = round(seconds * SAMPLE_RATE)
        signal = np.concatenate([signal, np.zeros(max(0, n - signal.size))])[:n]
    if background is not None:
        n = min(signal.size, background.size)
        signal = signal.copy()
        signal[:n] += background[:n]
    return to_pcm(signal)

"""Audio helpers shared by the detector, the corpus generator and the evaluation.

The detector works on 8 kHz mono signed 16-bit samples (what Asterisk's AudioSocket sends).
``read_wav`` brings any PCM WAV file to that form (mono mix-down, resampling), so an
evaluation folder made by someone else with other tools is read the same way.
No I/O here except the two WAV functions, which read or write exactly the path given.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000

Pcm = npt.NDArray[np.int16]
Signal = npt.NDArray[np.float64]


def pcm_from_bytes(data: bytes) -> Pcm:
    """Little-endian 16-bit samples (AudioSocket's and WAV's byte order)."""
    if len(data) % 2:
        msg = f"PCM of {len(data)} bytes refused; accepted: an even number (16-bit samples)"
        raise ValueError(msg)
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def to_pcm(signal: Signal) -> Pcm:
    """Floats in [-1, 1] to clipped 16-bit samples."""
    scaled = np.clip(np.round(signal * 32767.0), -32768, 32767)
    return scaled.astype(np.int16)


def to_signal(pcm: Pcm) -> Signal:
    return pcm.astype(np.float64) / 32768.0


def resample(signal: Signal, rate_from: int, rate_to: int) -> Signal:
    """Band-limited resampling by FFT (whole signal; fine for clips of seconds)."""
    if rate_from == rate_to or signal.size == 0:
        return signal
    n_out = round(signal.size * rate_to / rate_from)
    spectrum = np.fft.rfft(signal)
    keep = n_out // 2 + 1
    if keep <= spectrum.size:
        spectrum = spectrum[:keep]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(keep - spectrum.size, dtype=complex)])
    out: Signal = np.fft.irfft(spectrum, n_out) * (n_out / signal.size)
    return out


class UnreadableAudioError(ValueError):
    """A file that is not a PCM WAV file this module can read; the message names it."""


def read_wav(path: Path) -> Pcm:
    """A PCM WAV file as 8 kHz mono 16-bit samples; anything else is
    ``UnreadableAudioError`` naming the file and what is wrong with it."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except EOFError:
        msg = f"{path}: not a WAV file (it ends before its RIFF header does)"
        raise UnreadableAudioError(msg) from None
    except wave.Error as exc:
        # e.g. "unknown format: 7" for u-law, "file does not start with RIFF id".
        msg = f"{path}: not a PCM WAV file ({exc}); accepted: 8, 16 or 32-bit PCM WAV"
        raise UnreadableAudioError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc.strerror or exc})"
        raise UnreadableAudioError(msg) from None
    if rate <= 0 or channels <= 0:
        msg = f"{path}: WAV header gives {rate} Hz and {channels} channel(s)"
        raise UnreadableAudioError(msg)
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0
    else:
        msg = f"{path}: {8 * width}-bit samples refused; accepted: 8, 16 or 32-bit PCM"
        raise UnreadableAudioError(msg)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return to_pcm(resample(data, rate, SAMPLE_RATE))


def write_wav(path: Path, pcm: Pcm) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.astype("<i2").tobytes())

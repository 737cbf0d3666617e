"""Music recognised as music: sound whose spectrum holds still.

A note keeps its partials at the same frequencies for as long as it lasts (a hundred
milliseconds to a second), and a tune is one note after another, so most of the frames
of music have a *stable* spectrum (``ToneFrame.stability`` at least ``min_stability``:
the magnitude spectrum 40 ms earlier is nearly the same). Speech never holds still that
long: the pitch glides and the formants move with every sound, so even a drawn-out
"Алло-о?" leaves most frames of a second unstable (at most a quarter of any second of
espeak speech on the development corpus; generated music 72–100 %). Noise spectra are
random from one window to the next (similarity about 0.8, the mean for two independent
noise spectra), and steady noise is the noise floor, not loud.

``MusicTracker`` looks at the last ``window_ms`` of frames: when at least ``min_share`` of
them are loud (above the noise floor) and stable, and no quieter than ``min_dbfs``, the
sound is music. The level guard is for a person answering with a radio behind them: what
the handset picks up from across a room is far quieter than hold music or a recorded
greeting played into the line. It says so once, with the time. Tones are stable too; the
beep detector reports them first, and either way the callee is a machine. No I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from pbx_agent.amd.audio import FRAME_MS

__all__ = ["Music", "MusicTracker"]


@dataclass(frozen=True, slots=True)
class Music:
    stable_share: float  # of the window, when it was recognised
    detected_at_ms: int


class MusicTracker:
    """Feed one frame at a time, in order; ``feed`` returns ``Music`` once, when recognised."""

    def __init__(
        self,
        *,
        window_ms: int = 1000,
        min_share: float = 0.5,
        min_stability: float = 0.9,
        min_dbfs: float = -35.0,
    ) -> None:
        self._frames = max(1, window_ms // FRAME_MS)
        self._min_share = min_share
        self._min_stability = min_stability
        self._min_dbfs = min_dbfs
        self._window: deque[bool] = deque(maxlen=self._frames)
        self._stable_count = 0
        self._reported = False

    def feed(self, *, stability: float, loud: bool, level_dbfs: float, end_ms: int) -> Music | None:
        """One frame ending at ``end_ms``: its spectral stability, whether it stands out of
        the noise, and its level."""
        stable = loud and level_dbfs >= self._min_dbfs and stability >= self._min_stability
        if len(self._window) == self._frames and self._window[0]:
            self._stable_count -= 1
        self._window.append(stable)
        self._stable_count += stable
        if self._reported or len(self._window) < self._frames:
            return None
        share = self._stable_count / self._frames
        if share >= self._min_share:
            self._reported = True
            return Music(share, end_ms)
        return None

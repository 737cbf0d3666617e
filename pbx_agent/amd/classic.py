"""Asterisk ``AMD()`` re-implemented, to score the classic heuristic on the same clips.

It follows ``apps/app_amd.c`` (``isAnsweringMachine``) frame by frame, with the silence
test of ``main/dsp.c`` (``__ast_dsp_silence_noise``): a frame is silent when the mean
absolute value of its samples is below ``silence_threshold``; the detector keeps the run
length of silence, counts "words" (``min_word_length`` of consecutive voice after at least
``between_words_silence`` of silence; the state starts *in a word*, so the first word only
counts if silence came before it), and decides:

- ``initial_silence`` of silence before any word → MACHINE ``INITIALSILENCE``;
- ``after_greeting_silence`` of silence after the greeting started → HUMAN ``HUMAN``;
- ``maximum_number_of_words`` words → MACHINE ``MAXWORDS``;
- ``greeting`` ms of voice in all → MACHINE ``LONGGREETING``;
- ``maximum_word_length`` of consecutive voice → MACHINE ``MAXWORDLENGTH``;
- ``total_analysis_time`` reached → NOTSURE ``TOOLONG``.

The reason strings are Asterisk's ``AMDCAUSE`` values. Pure: no I/O, no clock.
"""

from __future__ import annotations

import numpy as np

from pbx_agent.amd.audio import FRAME_MS, FRAME_SAMPLES, Pcm, pcm_from_bytes
from pbx_agent.amd.detector import Verdict
from pbx_agent.amd.params import ClassicParams, VerdictKind

__all__ = ["ClassicAmd"]


class ClassicAmd:
    def __init__(self, params: ClassicParams | None = None) -> None:
        self.params = params or ClassicParams()
        self._pending = np.zeros(0, dtype=np.int16)
        self._total_ms = 0
        self._dsp_silence_ms = 0  # the DSP's run of silence
        self._silence_ms = 0
        self._voice_ms = 0
        self._consecutive_voice_ms = 0
        self._words = 0
        self._in_word = True  # app_amd.c starts in STATE_IN_WORD
        self._in_initial_silence = True
        self._in_greeting = False
        self._verdict: Verdict | None = None

    @property
    def verdict(self) -> Verdict | None:
        return self._verdict

    def feed_pcm(self, pcm: bytes | Pcm, at_ms: int = 0) -> Verdict | None:
        """Audio in order; ``at_ms`` is accepted for symmetry with the detector and unused:
        ``AMD()`` counts time in the frames it reads."""
        del at_ms
        if self._verdict is not None:
            return self._verdict
        samples = pcm_from_bytes(pcm) if isinstance(pcm, bytes) else pcm.astype(np.int16)
        self._pending = np.concatenate([self._pending, samples])
        while self._pending.size >= FRAME_SAMPLES:
            frame = self._pending[:FRAME_SAMPLES]
            self._pending = self._pending[FRAME_SAMPLES:]
            verdict = self._frame(frame)
            if verdict is not None:
                return verdict
        return None

    def finish(self, at_ms: int) -> Verdict:
        """The audio ended before a decision: ``AMD()`` would see the hang-up."""
        if self._verdict is not None:
            return self._verdict
        return self._decide(VerdictKind.NOTSURE, f"HANGUP-{at_ms}")

    def _frame(self, frame: Pcm) -> Verdict | None:
        mean_abs = int(np.sum(np.abs(frame.astype(np.int64)))) // frame.size
        return self.step(voice=mean_abs >= self.params.silence_threshold)

    def step(self, *, voice: bool) -> Verdict | None:
        """One 20 ms frame already classified as voice or silence (the talk-event path)."""
        if self._verdict is not None:
            return self._verdict
        self._total_ms += FRAME_MS
        if self._total_ms >= self.params.total_analysis_time:
            return self._decide(VerdictKind.NOTSURE, f"TOOLONG-{self._total_ms}")
        if not voice:
            self._dsp_silence_ms += FRAME_MS
            return self._silent_frame()
        self._dsp_silence_ms = 0
        return self._voice_frame()

    def _silent_frame(self) -> Verdict | None:
        p = self.params
        self._silence_ms = self._dsp_silence_ms
        if self._silence_ms >= p.between_words_silence:
            self._in_word = False
            self._consecutive_voice_ms = 0
        if self._in_initial_silence and self._silence_ms >= p.initial_silence:
            return self._decide(
                VerdictKind.MACHINE, f"INITIALSILENCE-{self._silence_ms}-{p.initial_silence}"
            )
        if self._in_greeting and self._silence_ms >= p.after_greeting_silence:
            return self._decide(
                VerdictKind.HUMAN, f"HUMAN-{self._silence_ms}-{p.after_greeting_silence}"
            )
        return None

    def _voice_frame(self) -> Verdict | None:
        p = self.params
        self._consecutive_voice_ms += FRAME_MS
        self._voice_ms += FRAME_MS
        if self._consecutive_voice_ms >= p.min_word_length and not self._in_word:
            self._words += 1
            self._in_word = True
        if self._consecutive_voice_ms >= p.maximum_word_length:
            return self._decide(VerdictKind.MACHINE, f"MAXWORDLENGTH-{self._consecutive_voice_ms}")
        if self._words >= p.maximum_number_of_words:
            return self._decide(
                VerdictKind.MACHINE, f"MAXWORDS-{self._words}-{p.maximum_number_of_words}"
            )
        if self._in_greeting and self._voice_ms >= p.greeting:
            return self._decide(VerdictKind.MACHINE, f"LONGGREETING-{self._voice_ms}-{p.greeting}")
        if self._voice_ms >= p.min_word_length:
            self._silence_ms = 0
        if self._consecutive_voice_ms >= p.min_word_length and not self._in_greeting:
            self._in_initial_silence = False
            self._in_greeting = True
        return None

    def _decide(self, kind: VerdictKind, cause: str) -> Verdict:
        self._verdict = Verdict(kind, cause, self._total_ms)
        return self._verdict

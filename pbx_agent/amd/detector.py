"""Answering-machine detection: HUMAN, MACHINE or NOTSURE, as early as the evidence allows.

Theory of operation. A person who answers says something short ("Алло?", "Hello?",
"喂，你好？", at most a few phrases) and then waits for the caller. A machine plays: a
greeting that goes on, an announcement, music, a beep, a fax tone. So the detector
watches four things from the answer on (t = 0):

- speech bursts, from ``vad.VoiceActivity`` (noise floor + webrtcvad, so steady noise is
  not speech), merged across pauses shorter than ``burst_gap_ms`` and ignoring bursts
  shorter than ``min_burst_ms``; of those frames, only the callee's own voice counts
  (``_Foreground``): people talking behind the callee pass the noise floor and webrtcvad
  too, but are heard ``foreground_gate_db`` or more under the callee's loudest speech, so
  they neither fill the callee's pause nor add up to a greeting;
- tones, from ``beep.BeepTracker`` (voicemail beeps, special information tones, fax and
  modem tones): any tone is a machine;
- music, from ``music.MusicTracker``: a second of sound whose spectrum mostly holds still
  (notes), loud enough not to be a radio behind a person;
- non-stop sound: ``max_sound_ms`` of sound with no pause is a machine.

The rules, checked after every frame, first match wins:

1. a tone → MACHINE ``tone-<hz>hz``;
2. music → MACHINE ``music``;
3. more than ``max_human_speech_ms`` of speech → MACHINE ``long-greeting``;
4. ``max_sound_ms`` of sound without a pause → MACHINE ``continuous-sound``;
5. speech was heard and is followed by enough silence → HUMAN ``answer-then-silence``;
   "enough" grows with the speech heard so far (``silence_needed_ms``): 600 ms after a
   short answer (up to 0.5 s of speech), rising to 1 s after 2 s of speech or more; and
   not while quieter speech has just begun after the pause (it may be the soft start of
   the callee's next word: the decision waits up to ``foreground_reach_ms`` for it);
6. no speech at all by ``no_speech_ms`` → NOTSURE ``silence``;
7. nothing decided by ``max_analysis_ms`` → NOTSURE ``undecided``.

Rule 5 is why the detector is quick with people ("Алло?" ending at 0.9 s is decided at
1.5 s) and why it does not count words: a person may say as many short phrases as they
like as long as they stop to listen. Its sliding scale is why it is slow to call a long
speaker a person: a greeting's pauses between sentences (up to 0.7 s after a short
first phrase, up to 1 s after a long one, on the development corpus) are shorter than
the silence it asks for. Rule 3 is why it does not hang up on chatty people:
``max_human_speech_ms`` is longer than anyone's answer, shorter than almost any recorded
greeting. When unsure it says NOTSURE, which the callback flow treats as a person.

The same rules run on speech segments reported by the PBX (``feed_segments``: FreeSWITCH
TALK/NOTALK events and ``mod_avmd`` beeps), without the noise floor and music checks that
only audio allows.

Once decided, the verdict is final: later audio is ignored. The detector is pure: no I/O,
no clock; times are milliseconds after the answer, given by the caller.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pbx_agent.amd.audio import FRAME_MS, FRAME_SAMPLES, Pcm, pcm_from_bytes
from pbx_agent.amd.beep import BeepTracker, Tone, ToneAnalyser, ToneFrame
from pbx_agent.amd.music import Music, MusicTracker
from pbx_agent.amd.params import DetectorParams, VerdictKind
from pbx_agent.amd.vad import VoiceActivity

__all__ = ["AmdDetector", "SpeechSegment", "Verdict", "VerdictKind"]


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    reason: str
    decided_at_ms: int  # milliseconds after the answer


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """Speech reported by the PBX: from ``start_ms``; ``end_ms`` None while it goes on."""

    start_ms: int
    end_ms: int | None = None


@dataclass(frozen=True, slots=True)
class _FrameSummary:
    """What the rules need of one 20 ms frame of audio."""

    level_dbfs: float
    loud: bool  # speech_margin_db above the noise floor
    speech: bool
    tone: ToneFrame


@dataclass(slots=True)
class _Bursts:
    """Speech bursts so far, merged across short pauses."""

    gap_ms: int
    min_ms: int
    first_onset_ms: int | None = None
    closed_speech_ms: int = 0  # total of the finished bursts that counted
    start_ms: int | None = None  # the open burst
    last_speech_end_ms: int | None = None  # end of the last speech frame of a counted burst
    open_end_ms: int = 0

    def speech(self, start: int, end: int) -> None:
        if self.start_ms is not None and start - self.open_end_ms >= self.gap_ms:
            self._close()
        if self.start_ms is None:
            self.start_ms = start
        self.open_end_ms = end
        if self._open_counts():
            if self.first_onset_ms is None:
                self.first_onset_ms = self.start_ms
            self.last_speech_end_ms = end

    def quiet(self, now: int) -> None:
        if self.start_ms is not None and now - self.open_end_ms >= self.gap_ms:
            self._close()

    def _open_counts(self) -> bool:
        return self.start_ms is not None and self.open_end_ms - self.start_ms >= self.min_ms

    def _close(self) -> None:
        if self._open_counts() and self.start_ms is not None:
            self.closed_speech_ms += self.open_end_ms - self.start_ms
        self.start_ms = None

    def speech_ms(self) -> int:
        if self._open_counts() and self.start_ms is not None:
            return self.closed_speech_ms + self.open_end_ms - self.start_ms
        return self.closed_speech_ms

    def in_speech(self, now: int) -> bool:
        return self._open_counts() and now - self.open_end_ms < self.gap_ms


@dataclass(slots=True)
class _Foreground:
    """Which speech frames are the callee's own voice, not voices behind them.

    The callee speaks into the handset; a room, a television or a street behind them is
    heard far quieter, yet it passes the noise floor and webrtcvad as speech, fills the
    callee's pauses and adds up to a "greeting". So the callee's level is the loudest
    ``window`` frames of speech heard so far, and a speech frame counts only when its own
    level (over the same window) is within ``gate_db`` of it, or it lies within ``reach``
    frames of one that is (the soft start and end of the callee's words). Voices heard
    before the callee spoke set the level at first; once the callee is heard they fall
    below it, and ``add`` says that the frames counted so far changed.
    """

    gate_db: float
    window: int  # frames
    reach: int  # frames
    starts_ms: list[int] = field(default_factory=list)
    speech: list[bool] = field(default_factory=list)  # the voice activity's decision
    level_db: list[float] = field(default_factory=list)  # over the last ``window`` frames
    counted: list[bool] = field(default_factory=list)
    foreground_db: float | None = None
    _powers: deque[float] = field(default_factory=deque)
    _speech_run: int = 0
    _last_own: int | None = None  # index of the latest frame at the callee's level
    _quietest_own_db: float | None = None  # of the frames counted as the callee's level

    def add(self, start_ms: int, speech: bool, level_dbfs: float) -> bool:
        """One frame; True when frames before it changed (see ``counted``)."""
        self._powers.append(10.0 ** (level_dbfs / 10.0))
        if len(self._powers) > self.window:
            self._powers.popleft()
        level = 10.0 * math.log10(max(sum(self._powers) / len(self._powers), 1e-12))
        self._speech_run = self._speech_run + 1 if speech else 0
        if self._speech_run >= self.window and (
            self.foreground_db is None or level > self.foreground_db
        ):
            self.foreground_db = level
        index = len(self.speech)
        self.starts_ms.append(start_ms)
        self.speech.append(speech)
        self.level_db.append(level)
        own = self._own(index)
        floor = None if self.foreground_db is None else self.foreground_db - self.gate_db
        demoted = (
            floor is not None
            and self._quietest_own_db is not None
            and floor > self._quietest_own_db
        )
        reclaimed = own and any(
            self.speech[j] and not self.counted[j] for j in range(max(0, index - self.reach), index)
        )
        self.counted.append(False)
        if demoted or reclaimed:
            self._recount()
            return True
        if own:
            self._note_own(index)
        self.counted[index] = speech and (own or self.near_own(index))
        return False

    def maybe_own_onset(self) -> bool:
        """The latest frames are quieter speech, begun within ``reach`` frames after a
        pause: the soft start of a word by the callee as much as voices behind them."""
        latest = len(self.speech) - 1
        first = latest
        while first >= 0 and self.speech[first] and not self.counted[first]:
            first -= 1
        run = latest - first
        return 0 < run <= self.reach and first >= 0 and not self.speech[first]

    def near_own(self, index: int) -> bool:
        return self._last_own is not None and index - self._last_own <= self.reach

    def loud_enough(self, index: int) -> bool:
        """Sound at the callee's level, or close to their speech (for non-stop sound)."""
        floor = None if self.foreground_db is None else self.foreground_db - self.gate_db
        return floor is None or self.level_db[index] >= floor or self.near_own(index)

    def _own(self, index: int) -> bool:
        if not self.speech[index]:
            return False
        return self.foreground_db is None or (
            self.level_db[index] >= self.foreground_db - self.gate_db
        )

    def _note_own(self, index: int) -> None:
        self._last_own = index
        level = self.level_db[index]
        if self._quietest_own_db is None or level < self._quietest_own_db:
            self._quietest_own_db = level

    def _recount(self) -> None:
        n = len(self.speech)
        own = [self._own(i) for i in range(n)]
        self._last_own = None
        self._quietest_own_db = None
        # Distance to the nearest frame at the callee's level, in two sweeps.
        distance = [n + self.reach + 1] * n
        last = None
        for i in range(n):
            if own[i]:
                last = i
                self._note_own(i)
            if last is not None:
                distance[i] = i - last
        following = None
        for i in range(n - 1, -1, -1):
            if own[i]:
                following = i
            if following is not None:
                distance[i] = min(distance[i], following - i)
        self.counted = [self.speech[i] and distance[i] <= self.reach for i in range(n)]


class AmdDetector:
    """One call's detector. Feed audio (or PBX speech segments) in time order."""

    def __init__(self, params: DetectorParams | None = None) -> None:
        self.params = params or DetectorParams()
        p = self.params
        self._activity = VoiceActivity(
            vad_mode=p.vad_mode,
            speech_margin_db=p.speech_margin_db,
            strong_margin_db=p.strong_margin_db,
            min_speech_dbfs=p.min_speech_dbfs,
            floor_rise_db_per_s=p.floor_rise_db_per_s,
        )
        self._tones = ToneAnalyser()
        self._beeps = BeepTracker(
            min_purity=p.beep_min_purity,
            min_duration_ms=p.beep_min_ms,
            min_hz=p.beep_min_hz,
            max_hz=p.beep_max_hz,
        )
        self._music = MusicTracker(
            window_ms=p.music_window_ms,
            min_share=p.music_min_share,
            min_stability=p.music_min_stability,
            min_dbfs=p.music_min_dbfs,
        )
        self._bursts = _Bursts(p.burst_gap_ms, p.min_burst_ms)
        self._own_voice = _Foreground(
            gate_db=p.foreground_gate_db,
            window=max(1, round(p.foreground_window_ms / FRAME_MS)),
            reach=round(p.foreground_reach_ms / FRAME_MS),
        )
        self._pending = np.zeros(0, dtype=np.int16)
        self._now_ms = 0  # end of the audio consumed so far
        self._sound_start_ms: int | None = None
        self._tone: Tone | None = None
        self._music_heard: Music | None = None
        self._verdict: Verdict | None = None

    @property
    def verdict(self) -> Verdict | None:
        return self._verdict

    @property
    def now_ms(self) -> int:
        return self._now_ms

    # --- audio ---------------------------------------------------------------------------
    def feed_pcm(self, pcm: bytes | Pcm, at_ms: int) -> Verdict | None:
        """Audio whose first sample was heard ``at_ms`` after the answer (8 kHz, 16-bit).

        A jump forward in ``at_ms`` (lost audio) counts as time without speech; audio from
        before the time already consumed is taken as continuing where it left off.
        """
        if self._verdict is not None:
            return self._verdict
        samples = pcm_from_bytes(pcm) if isinstance(pcm, bytes) else pcm.astype(np.int16)
        expected = self._now_ms + self._pending.size // 8
        if at_ms > expected + FRAME_MS:
            self._pending = np.zeros(0, dtype=np.int16)
            verdict = self._advance_without_audio(at_ms)
            if verdict is not None:
                return verdict
        self._pending = np.concatenate([self._pending, samples])
        while self._pending.size >= FRAME_SAMPLES:
            frame = self._pending[:FRAME_SAMPLES]
            self._pending = self._pending[FRAME_SAMPLES:]
            verdict = self._frame(frame)
            if verdict is not None:
                return verdict
        return None

    def _frame(self, frame: Pcm) -> Verdict | None:
        activity = self._activity.classify(frame)
        tone_frame = self._tones.analyse(frame)
        loud = activity.level_dbfs - activity.floor_dbfs >= self.params.speech_margin_db
        return self._observe(_FrameSummary(activity.level_dbfs, loud, activity.speech, tone_frame))

    def _observe(self, frame: _FrameSummary) -> Verdict | None:
        # The rules see only the frame's summary, never the samples: the analysis above is
        # the costly part, and the rules can be replayed over stored summaries.
        start = self._now_ms
        end = start + FRAME_MS
        self._now_ms = end
        audible = frame.loud and frame.level_dbfs > -60.0
        tone = self._beeps.feed(frame.tone, audible, start, frame.level_dbfs)
        if tone is not None and self._tone is None:
            self._tone = tone
        music = self._music.feed(
            stability=frame.tone.stability, loud=audible, level_dbfs=frame.level_dbfs, end_ms=end
        )
        if music is not None and self._music_heard is None:
            self._music_heard = music
        own_voice = self._own_voice
        index = len(own_voice.speech)
        if own_voice.add(start, frame.speech, frame.level_dbfs):
            self._bursts = self._recounted_bursts(end)
        elif own_voice.counted[index]:
            self._bursts.speech(start, end)
        else:
            self._bursts.quiet(end)
        if frame.loud and own_voice.loud_enough(index):
            if self._sound_start_ms is None:
                self._sound_start_ms = start
        else:
            self._sound_start_ms = None
        return self._decide(end)

    def _recounted_bursts(self, now: int) -> _Bursts:
        # Which frames are the callee's changed: replay the bursts over them. Only frames
        # are replayed; the time between them (lost audio) is quiet either way.
        own_voice = self._own_voice
        bursts = _Bursts(self.params.burst_gap_ms, self.params.min_burst_ms)
        for start, counted in zip(own_voice.starts_ms, own_voice.counted, strict=True):
            if counted:
                bursts.speech(start, start + FRAME_MS)
            else:
                bursts.quiet(start + FRAME_MS)
        bursts.quiet(now)
        return bursts

    def _advance_without_audio(self, until_ms: int) -> Verdict | None:
        self._sound_start_ms = None
        while self._now_ms + FRAME_MS <= until_ms:
            # The callee's-voice check counts in frames: lost audio is silent frames to it,
            # so "near the callee's speech" stays a matter of time.
            self._own_voice.add(self._now_ms, speech=False, level_dbfs=-100.0)
            self._now_ms += FRAME_MS
            self._bursts.quiet(self._now_ms)
            verdict = self._decide(self._now_ms)
            if verdict is not None:
                return verdict
        return None

    # --- PBX speech segments -----------------------------------------------------------
    def feed_segments(
        self, segments: Iterable[SpeechSegment], at_ms: int, tones: Sequence[Tone] = ()
    ) -> Verdict | None:
        """Everything the PBX reported up to ``at_ms``: speech segments and tones (beeps).

        Segments must be in time order; the whole history is given each time (the call is
        idempotent), so a caller can keep one list and pass it on every event.
        """
        if self._verdict is not None:
            return self._verdict
        bursts = _Bursts(self.params.burst_gap_ms, self.params.min_burst_ms)
        tone = min(tones, key=lambda t: t.detected_at_ms, default=None)
        intervals = [
            (s.start_ms, at_ms if s.end_ms is None else min(s.end_ms, at_ms))
            for s in segments
            if s.start_ms < at_ms
        ]
        # Replay in frame steps so the rules see the same kind of timeline as from audio.
        self._bursts = bursts
        self._tone = None
        self._sound_start_ms = None
        t = 0
        index = 0
        while t + FRAME_MS <= at_ms:
            end = t + FRAME_MS
            while index < len(intervals) and intervals[index][1] <= t:
                index += 1
            talking = index < len(intervals) and intervals[index][0] < end
            if talking:
                bursts.speech(t, end)
            else:
                bursts.quiet(end)
            if tone is not None and tone.detected_at_ms <= end:
                self._tone = tone
            verdict = self._decide(end)
            if verdict is not None:
                return verdict
            t = end
        self._now_ms = t
        return None

    # --- end -----------------------------------------------------------------------------
    def finish(self, at_ms: int) -> Verdict:
        """The stream ended (or the caller stops listening) at ``at_ms``: a verdict now."""
        if self._verdict is not None:
            return self._verdict
        self._pending = np.zeros(0, dtype=np.int16)
        verdict = self._advance_without_audio(at_ms)
        if verdict is not None:
            return verdict
        bursts = self._bursts
        if bursts.first_onset_ms is None:
            return self._decided(VerdictKind.NOTSURE, "silence", at_ms)
        if bursts.speech_ms() > self.params.max_human_speech_ms:
            return self._decided(VerdictKind.MACHINE, "long-greeting", at_ms)
        return self._decided(VerdictKind.NOTSURE, "ended-while-undecided", at_ms)

    # --- the rules -----------------------------------------------------------------------
    def _decide(self, now: int) -> Verdict | None:  # noqa: PLR0911 (one return per rule)
        p = self.params
        bursts = self._bursts
        if self._tone is not None:
            return self._decided(
                VerdictKind.MACHINE, f"tone-{round(self._tone.frequency_hz)}hz", now
            )
        if self._music_heard is not None:
            return self._decided(VerdictKind.MACHINE, "music", now)
        speech_ms = bursts.speech_ms()
        if speech_ms > p.max_human_speech_ms:
            return self._decided(VerdictKind.MACHINE, "long-greeting", now)
        if self._sound_start_ms is not None and now - self._sound_start_ms >= p.max_sound_ms:
            return self._decided(VerdictKind.MACHINE, "continuous-sound", now)
        onset = bursts.first_onset_ms
        last_end = bursts.last_speech_end_ms
        if (
            onset is not None
            and last_end is not None
            and not bursts.in_speech(now)
            and now - last_end >= self.silence_needed_ms(speech_ms, onset)
            and not self._own_voice.maybe_own_onset()
        ):
            return self._decided(VerdictKind.HUMAN, "answer-then-silence", now)
        if onset is None and now >= p.no_speech_ms:
            return self._decided(VerdictKind.NOTSURE, "silence", now)
        if now >= p.max_analysis_ms:
            return self._decided(VerdictKind.NOTSURE, "undecided", now)
        return None

    def silence_needed_ms(self, speech_ms: int, onset_ms: int) -> int:
        """The silence after ``speech_ms`` of speech, first heard at ``onset_ms``, that makes
        the callee a person waiting for the caller."""
        p = self.params
        if speech_ms <= p.short_answer_ms:
            needed = p.short_answer_silence_ms
        elif speech_ms >= p.long_answer_ms:
            needed = p.human_silence_ms
        else:
            share = (speech_ms - p.short_answer_ms) / (p.long_answer_ms - p.short_answer_ms)
            needed = round(
                p.short_answer_silence_ms + share * (p.human_silence_ms - p.short_answer_silence_ms)
            )
        if onset_ms >= p.late_onset_ms:
            needed -= p.late_onset_credit_ms
        return max(needed, 0)

    def _decided(self, kind: VerdictKind, reason: str, now: int) -> Verdict:
        self._verdict = Verdict(kind, reason, now)
        return self._verdict

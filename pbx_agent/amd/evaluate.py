"""Scoring detectors on a labelled folder of clips.

A folder is read in one of three ways, first match wins:

1. a manifest, ``labels.csv`` (columns ``file`` and ``label``, optional ``kind``) or
   ``labels.jsonl`` (one object per line with the same keys);
2. sub-folders named for the label (``human/``, ``machine/``, also ``person``,
   ``voicemail``, ``answering_machine``...);
3. the file name starting with the label (``human-0001.wav``).

Labels are HUMAN or MACHINE (case-insensitive; ``person``/``live`` mean HUMAN,
``voicemail``/``am``/``answering_machine``/``announcement``/``music``/``beep``/``fax``
mean MACHINE). Each clip is fed to every scorer in 20 ms frames, as AudioSocket delivers
it, and the stream is finished at the clip's end.

A NOTSURE verdict counts as wrong for accuracy and recall (the call flow has to guess),
and is reported on its own. Decision times are over all clips, NOTSURE included, and
also per label (``decision_ms_by_label`` in the JSON).
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from pbx_agent.amd.audio import (
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Pcm,
    UnreadableAudioError,
    read_wav,
)
from pbx_agent.amd.beep import BeepTracker, ToneAnalyser
from pbx_agent.amd.detector import AmdDetector, SpeechSegment, Verdict
from pbx_agent.amd.params import ClassicParams, DetectorParams, VerdictKind
from pbx_agent.amd.segments import ReportedBeep, classic_on_segments, detector_on_segments
from pbx_agent.amd.vad import level_dbfs

__all__ = [
    "UNICAST_LOST_MS",
    "Clip",
    "LateStartScorer",
    "Score",
    "Scorer",
    "TalkEventScorer",
    "load_clips",
    "run_scorer",
    "score",
    "simulate_talk_events",
]

_HUMAN_WORDS = ("human", "person", "people", "live")
_MACHINE_WORDS = (
    "machine",
    "voicemail",
    "answering",
    "am",
    "announcement",
    "music",
    "beep",
    "fax",
    "tone",
    "greeting",
    "ivr",
)
_LABELS = (VerdictKind.HUMAN, VerdictKind.MACHINE)


class Scorer(Protocol):
    def feed_pcm(self, pcm: Pcm, at_ms: int) -> Verdict | None: ...
    def finish(self, at_ms: int) -> Verdict: ...


@dataclass(frozen=True, slots=True)
class Clip:
    path: Path
    label: VerdictKind
    kind: str


def _label(text: str) -> VerdictKind | None:
    word = text.strip().lower().replace("-", "_")
    if word.upper() in ("HUMAN", "MACHINE"):
        return VerdictKind(word.upper())
    if any(word.startswith(w) for w in _HUMAN_WORDS):
        return VerdictKind.HUMAN
    if any(
        word == w or word.startswith(w + "_") or (word.startswith(w) and len(w) > 2)
        for w in _MACHINE_WORDS
    ):
        return VerdictKind.MACHINE
    return None


def load_clips(folder: Path) -> list[Clip]:
    """The labelled clips of ``folder``; ValueError naming the file when a label is unknown."""
    if not folder.is_dir():
        msg = f"{folder}: not a folder; give the folder that holds the labelled clips"
        raise ValueError(msg)
    manifest_csv = folder / "labels.csv"
    manifest_jsonl = folder / "labels.jsonl"
    if manifest_csv.exists():
        with manifest_csv.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [_from_row(folder, row, manifest_csv) for row in rows]
    if manifest_jsonl.exists():
        lines = manifest_jsonl.read_text(encoding="utf-8").splitlines()
        return [
            _from_row(folder, {str(k): str(v) for k, v in json.loads(line).items()}, manifest_jsonl)
            for line in lines
            if line.strip()
        ]
    clips: list[Clip] = []
    for path in sorted(folder.rglob("*.wav")):
        relative = path.relative_to(folder)
        names = [*relative.parts[:-1], path.stem.split("-")[0].split("_")[0], path.stem]
        label = next((lab for name in names if (lab := _label(name)) is not None), None)
        if label is None:
            msg = (
                f"{path}: no label; put clips under human/ and machine/, start file names "
                "with the label, or add labels.csv (file,label)"
            )
            raise ValueError(msg)
        clips.append(Clip(path, label, relative.parts[0] if len(relative.parts) > 1 else "-"))
    if not clips:
        msg = f"{folder}: no .wav clips found"
        raise ValueError(msg)
    return clips


def _from_row(folder: Path, row: dict[str, str], manifest: Path) -> Clip:
    name = row.get("file") or row.get("path") or row.get("filename")
    raw_label = row.get("label") or row.get("class") or ""
    if not name:
        msg = f"{manifest}: a row has no 'file' column: {row}"
        raise ValueError(msg)
    label = _label(raw_label)
    if label is None:
        msg = f"{manifest}: {name}: label {raw_label!r} unknown; accepted: HUMAN or MACHINE"
        raise ValueError(msg)
    return Clip(folder / name, label, row.get("kind") or raw_label.lower())


def run_scorer(scorer: Scorer, pcm: Pcm) -> Verdict:
    """Feed a clip frame by frame; finish at its end."""
    at = 0
    for start in range(0, pcm.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        verdict = scorer.feed_pcm(pcm[start : start + FRAME_SAMPLES], at)
        if verdict is not None:
            return verdict
        at += 20
    return scorer.finish(at)


@dataclass(slots=True)
class Score:
    name: str
    confusion: Counter[tuple[VerdictKind, VerdictKind]] = field(default_factory=Counter)
    times_ms: list[int] = field(default_factory=list)
    times_by_label: dict[VerdictKind, list[int]] = field(default_factory=dict)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    wrong: list[tuple[Clip, Verdict]] = field(default_factory=list)

    def add(self, clip: Clip, verdict: Verdict) -> None:
        self.confusion[(clip.label, verdict.kind)] += 1
        self.times_ms.append(verdict.decided_at_ms)
        self.times_by_label.setdefault(clip.label, []).append(verdict.decided_at_ms)
        counts = self.by_kind.setdefault(clip.kind, Counter())
        counts["total"] += 1
        if verdict.kind == clip.label:
            counts["correct"] += 1
        else:
            self.wrong.append((clip, verdict))

    @property
    def total(self) -> int:
        return sum(self.confusion.values())

    @property
    def accuracy(self) -> float:
        correct = sum(self.confusion[(label, label)] for label in _LABELS)
        return correct / self.total if self.total else 0.0

    def recall(self, label: VerdictKind) -> float:
        n = sum(self.confusion[(label, kind)] for kind in VerdictKind)
        return self.confusion[(label, label)] / n if n else 0.0

    @property
    def notsure_rate(self) -> float:
        n = sum(self.confusion[(label, VerdictKind.NOTSURE)] for label in _LABELS)
        return n / self.total if self.total else 0.0

    @property
    def humans_called_machines(self) -> float:
        n = sum(self.confusion[(VerdictKind.HUMAN, kind)] for kind in VerdictKind)
        return self.confusion[(VerdictKind.HUMAN, VerdictKind.MACHINE)] / n if n else 0.0

    def percentile_ms(self, q: float, label: VerdictKind | None = None) -> float:
        """Decision time percentile over all clips, or over the clips labelled ``label``."""
        times = self.times_ms if label is None else self.times_by_label.get(label, [])
        if not times:
            return 0.0
        ordered = sorted(times)
        if q == 50:
            return float(statistics.median(ordered))
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return float(ordered[index])

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "clips": self.total,
            "accuracy": round(self.accuracy, 4),
            "recall": {label.value: round(self.recall(label), 4) for label in _LABELS},
            "notsure_rate": round(self.notsure_rate, 4),
            "humans_called_machines": round(self.humans_called_machines, 4),
            "decision_ms": {"median": self.percentile_ms(50), "p90": self.percentile_ms(90)},
            "decision_ms_by_label": {
                label.value: {
                    "median": self.percentile_ms(50, label),
                    "p90": self.percentile_ms(90, label),
                }
                for label in _LABELS
            },
            "confusion": {
                label.value: {kind.value: self.confusion[(label, kind)] for kind in VerdictKind}
                for label in _LABELS
            },
            "by_kind": {
                kind: {"correct": c["correct"], "total": c["total"]}
                for kind, c in sorted(self.by_kind.items())
            },
        }


def score(
    clips: Iterable[Clip],
    scorers: dict[str, Callable[[], Scorer]],
    *,
    on_clip: Callable[[Clip, dict[str, Verdict]], None] | None = None,
    on_unreadable: Callable[[Clip, UnreadableAudioError], None] | None = None,
) -> list[Score]:
    """Run every scorer (a factory: one fresh scorer per clip) on every clip. A clip that is
    not a readable WAV file raises ``UnreadableAudioError``, or, given ``on_unreadable``, is
    handed to it and left out of every score."""
    scores = {name: Score(name) for name in scorers}
    for clip in clips:
        try:
            pcm = read_wav(clip.path)
        except UnreadableAudioError as exc:
            if on_unreadable is None:
                raise
            on_unreadable(clip, exc)
            continue
        verdicts = {name: run_scorer(factory(), pcm) for name, factory in scorers.items()}
        for name, verdict in verdicts.items():
            scores[name].add(clip, verdict)
        if on_clip is not None:
            on_clip(clip, verdicts)
    return list(scores.values())


# --- FreeSWITCH's unicast stream ------------------------------------------------------------
# The daemon asks for the stream when the leg's CHANNEL_ANSWER reaches it; the park loop
# sends from the moment the command reaches it: an ESL round trip after the answer.
UNICAST_LOST_MS = 100


class LateStartScorer:
    """The detector on audio that only starts ``lost_ms`` after the answer, as FreeSWITCH's
    ``unicast`` delivers it (what came before is never heard)."""

    def __init__(
        self, params: DetectorParams | None = None, *, lost_ms: int = UNICAST_LOST_MS
    ) -> None:
        self._detector = AmdDetector(params)
        self._lost_ms = lost_ms

    def feed_pcm(self, pcm: Pcm, at_ms: int) -> Verdict | None:
        lost = self._lost_ms
        end_ms = at_ms + pcm.size * 1000 // SAMPLE_RATE
        if end_ms <= lost:
            return None
        if at_ms < lost:
            pcm = pcm[(lost - at_ms) * SAMPLE_RATE // 1000 :]
            at_ms = lost
        return self._detector.feed_pcm(pcm, at_ms)

    def finish(self, at_ms: int) -> Verdict:
        return self._detector.finish(at_ms)


# --- the FreeSWITCH path, simulated ------------------------------------------------------
# Timings measured on FreeSWITCH 1.10.12 (tests/traces/freeswitch 04 and 06): TALK 8-73 ms
# after the speech onset, the last NOTALK 0-0.8 s after the speech ends (a 0.8 s period),
# avmd::beep 160-190 ms after the beep onset. The RTP detector has a fixed energy threshold.
_TALK_DELAY_MS = 40
_NOTALK_DELAY_MS = 400
_AVMD_DELAY_MS = 170
_RTP_VAD_THRESHOLD_DBFS = -42.0


def simulate_talk_events(pcm: Pcm) -> tuple[list[SpeechSegment], list[ReportedBeep]]:
    """What FreeSWITCH would report for a clip: debounced talk segments and avmd beeps."""
    segments: list[SpeechSegment] = []
    beeps: list[ReportedBeep] = []
    analyser = ToneAnalyser()
    tracker = BeepTracker()
    start: int | None = None
    last_voice_end = 0
    t = 0
    for offset in range(0, pcm.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frame = pcm[offset : offset + FRAME_SAMPLES]
        level = level_dbfs(frame)
        voice = level >= _RTP_VAD_THRESHOLD_DBFS
        tone = tracker.feed(analyser.analyse(frame), voice, t, level)
        if tone is not None and not beeps:
            beeps.append(ReportedBeep(tone.start_ms + _AVMD_DELAY_MS, tone.frequency_hz))
        if voice:
            if start is None:
                start = t + _TALK_DELAY_MS
            last_voice_end = t + FRAME_MS
        elif start is not None and t + FRAME_MS - last_voice_end >= _NOTALK_DELAY_MS:
            segments.append(SpeechSegment(start, last_voice_end + _NOTALK_DELAY_MS))
            start = None
        t += FRAME_MS
    if start is not None:
        segments.append(SpeechSegment(start, None))
    return segments, beeps


class TalkEventScorer:
    """Scores a clip from simulated FreeSWITCH events, with ``AMD()``'s rules or the
    detector's segment rules (``rules="classic"`` or ``"detector"``)."""

    def __init__(
        self,
        rules: str,
        *,
        detector_params: DetectorParams | None = None,
        classic_params: ClassicParams | None = None,
    ) -> None:
        if rules not in ("classic", "detector"):
            msg = f"rules={rules!r} refused; accepted: classic, detector"
            raise ValueError(msg)
        self._rules = rules
        self._detector_params = detector_params
        self._classic_params = classic_params
        self._chunks: list[Pcm] = []

    def feed_pcm(self, pcm: Pcm, at_ms: int) -> Verdict | None:
        del at_ms
        self._chunks.append(pcm)
        return None

    def finish(self, at_ms: int) -> Verdict:
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        segments, beeps = simulate_talk_events(pcm)
        if self._rules == "classic":
            verdict = classic_on_segments(segments, at_ms, beeps=beeps, params=self._classic_params)
            return verdict or Verdict(VerdictKind.NOTSURE, f"HANGUP-{at_ms}", at_ms)
        verdict = detector_on_segments(
            segments, at_ms, beeps=beeps, params=self._detector_params, final=True
        )
        assert verdict is not None  # final: always a verdict
        return verdict

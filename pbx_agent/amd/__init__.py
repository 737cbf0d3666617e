"""Answering-machine detection (rule R6): a pure detector fed with audio frames or with
speech segments reported by the PBX, the classic Asterisk ``AMD()`` heuristic for
comparison, a generated development corpus and its evaluation. See ``docs/amd.md``."""

from __future__ import annotations

from pbx_agent.amd.detector import AmdDetector, SpeechSegment, Verdict
from pbx_agent.amd.params import ClassicParams, DetectorParams, VerdictKind

__all__ = [
    "AmdDetector",
    "ClassicParams",
    "DetectorParams",
    "SpeechSegment",
    "Verdict",
    "VerdictKind",
]

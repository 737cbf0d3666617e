"""Parameters of answering-machine detection, with their documented defaults.

``DetectorParams`` is what a profile carries under ``standards.amd``; ``ClassicParams`` are
Asterisk ``AMD()``'s own parameters (``amd.conf``), used by the classic re-implementation
and the talk-event policy. All times are milliseconds after the answer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from pbx_agent.config.standards import AmdRule

__all__ = ["ClassicParams", "DetectorParams", "VerdictKind", "detector_params"]


class VerdictKind(StrEnum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"


class DetectorParams(BaseModel):
    """The detector's knobs. Defaults were chosen on the ``train`` split of the generated
    corpus and checked on its ``validation`` split (``docs/amd.md``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- voice activity (vad.py) -------------------------------------------------------
    vad_mode: int = Field(2, ge=0, le=3, description="webrtcvad aggressiveness, 0..3")
    speech_margin_db: float = Field(
        6.0, ge=3.0, le=30.0, description="a voiced frame must be this far above the noise floor"
    )
    strong_margin_db: float = Field(
        18.0, ge=6.0, le=40.0, description="a frame this far above the floor is speech anyway"
    )
    min_speech_dbfs: float = Field(
        -55.0, ge=-90.0, le=-10.0, description="quieter frames are never speech"
    )
    floor_rise_db_per_s: float = Field(
        4.0, gt=0.0, le=60.0, description="how fast the noise floor follows rising noise"
    )

    # --- speech segments ---------------------------------------------------------------
    min_burst_ms: int = Field(
        60, ge=0, le=1000, description="shorter sound bursts (clicks, breaths) are ignored"
    )
    burst_gap_ms: int = Field(
        200, ge=20, le=2000, description="a pause shorter than this does not end a burst"
    )

    # --- the decision --------------------------------------------------------------------
    # The silence that makes the callee a person grows with how much they said: from
    # short_answer_silence_ms after at most short_answer_ms of speech ("Алло?", "Да?")
    # linearly to human_silence_ms after long_answer_ms or more (a recorded greeting's
    # pauses between sentences are longer after a long first sentence).
    short_answer_ms: int = Field(
        500,
        ge=0,
        le=5000,
        description="an answer with at most this much speech is a short one",
    )
    short_answer_silence_ms: int = Field(
        600,
        ge=100,
        le=5000,
        description="silence after a short answer that makes the callee a person",
    )
    long_answer_ms: int = Field(
        2000,
        ge=0,
        le=10000,
        description="from this much speech on, human_silence_ms of silence is needed",
    )
    human_silence_ms: int = Field(
        1000,
        ge=100,
        le=5000,
        description="silence after a long answer that makes the callee a person",
    )
    late_onset_ms: int = Field(
        900,
        ge=0,
        le=30000,
        description="speech first heard this late after the answer earns late_onset_credit_ms",
    )
    late_onset_credit_ms: int = Field(
        0,
        ge=0,
        le=5000,
        description=(
            "after a late onset this much less silence is needed; 0 (off) by default: "
            "machines that start late are called people (docs/amd.md)"
        ),
    )
    max_human_speech_ms: int = Field(
        3000,
        ge=300,
        le=10000,
        description="more speech than this before such a silence is a recorded greeting",
    )
    max_sound_ms: int = Field(
        3000,
        ge=300,
        le=20000,
        description="this much non-stop sound (speech or not, e.g. music) is a machine",
    )
    no_speech_ms: int = Field(
        4000,
        ge=500,
        le=30000,
        description="no speech at all this long after the answer: NOTSURE (silence)",
    )
    max_analysis_ms: int = Field(5000, ge=500, le=30000, description="no decision by then: NOTSURE")

    # --- tones (beep.py) -----------------------------------------------------------------
    beep_min_purity: float = Field(
        0.8, gt=0.0, le=1.0, description="share of a frame's energy near its peak frequency"
    )
    beep_min_ms: int = Field(160, ge=40, le=2000, description="shortest tone that counts")
    beep_min_hz: float = Field(300.0, ge=50.0, le=4000.0)
    beep_max_hz: float = Field(3400.0, ge=50.0, le=4000.0)

    # --- music (music.py) -----------------------------------------------------------------
    music_window_ms: int = Field(
        1000, ge=100, le=10000, description="how much sound the music check looks at"
    )
    music_min_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="share of that window with a loud, stable spectrum that makes it music",
    )
    music_min_stability: float = Field(
        0.9, gt=0.0, le=1.0, description="spectral similarity 40 ms apart of a stable frame"
    )
    music_min_dbfs: float = Field(
        -35.0,
        ge=-90.0,
        le=0.0,
        description="quieter frames never count as music (background music behind a person)",
    )

    # --- the session around the detector (audiosocket_server.py) ------------------------
    deadline_ms: int = Field(
        5500,
        ge=500,
        le=60000,
        description="no verdict by then (audio stalled, peer silent): use on_deadline",
    )
    on_deadline: VerdictKind = Field(
        VerdictKind.HUMAN,
        description="the verdict when the deadline passes; HUMAN never hangs up on a person",
    )
    on_notsure: VerdictKind = Field(
        VerdictKind.HUMAN, description="what the callback flow does with a NOTSURE verdict"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.strong_margin_db < self.speech_margin_db:
            msg = (
                f"standards.amd.strong_margin_db={self.strong_margin_db} is below "
                f"speech_margin_db={self.speech_margin_db}; accepted: at least speech_margin_db"
            )
            raise ValueError(msg)
        if self.beep_max_hz <= self.beep_min_hz:
            msg = (
                f"standards.amd.beep_max_hz={self.beep_max_hz} is not above "
                f"beep_min_hz={self.beep_min_hz}"
            )
            raise ValueError(msg)
        if self.long_answer_ms < self.short_answer_ms:
            msg = (
                f"standards.amd.long_answer_ms={self.long_answer_ms} is below "
                f"short_answer_ms={self.short_answer_ms}; accepted: at least short_answer_ms"
            )
            raise ValueError(msg)
        if self.max_analysis_ms > self.deadline_ms:
            msg = (
                f"standards.amd.max_analysis_ms={self.max_analysis_ms} is after "
                f"deadline_ms={self.deadline_ms}; accepted: at most deadline_ms"
            )
            raise ValueError(msg)
        return self


class ClassicParams(BaseModel):
    """Asterisk ``AMD()`` parameters with the ``amd.conf`` sample values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_silence: int = Field(2500, ge=0)
    greeting: int = Field(1500, ge=0)
    after_greeting_silence: int = Field(800, ge=0)
    total_analysis_time: int = Field(5000, ge=0)
    min_word_length: int = Field(100, ge=0)
    between_words_silence: int = Field(50, ge=0)
    maximum_number_of_words: int = Field(2, ge=0)
    silence_threshold: int = Field(256, ge=0, le=32767)
    maximum_word_length: int = Field(5000, ge=0)


def detector_params(amd: AmdRule) -> DetectorParams:
    """The detector's settings from ``standards.amd`` (on either PBX): its deadline, and
    ``notsure_action`` for a verdict that is not there in time or not sure."""
    base = DetectorParams()
    choice = VerdictKind(amd.notsure_action.upper())
    return DetectorParams(
        deadline_ms=amd.deadline_ms,
        max_analysis_ms=min(base.max_analysis_ms, amd.deadline_ms),
        no_speech_ms=min(base.no_speech_ms, amd.deadline_ms),
        on_deadline=choice,
        on_notsure=choice,
    )

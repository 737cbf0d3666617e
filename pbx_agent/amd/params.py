"""Parameters of answering-machine detection, with their documented defaults.

``DetectorTuning`` is what a profile carries under ``standards.amd.detector``: the
detector's knobs. ``DetectorParams`` adds the session around it (the deadline and what a
late or unsure verdict counts as), which ``detector_params`` takes from ``standards.amd``.
``ClassicParams`` are Asterisk ``AMD()``'s own parameters (``amd.conf``), used by the classic
re-implementation and the talk-event policy. All times are milliseconds after the answer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from pbx_agent.config.standards import AmdRule

__all__ = [
    "ClassicParams",
    "DetectorParams",
    "DetectorTuning",
    "VerdictKind",
    "classic_params",
    "detector_params",
]


class VerdictKind(StrEnum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"


class DetectorTuning(BaseModel):
    """The detector's knobs (``standards.amd.detector``). Defaults were chosen on the
    ``train`` split of the generated corpus and checked on its ``validation`` split
    (``docs/amd.md``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- voice activity (vad.py) -------------------------------------------------------
    vad_mode: int = Field(2, ge=0, le=3, description="webrtcvad aggressiveness, 0..3")
    speech_margin_db: float = Field(
        3.5, ge=3.0, le=30.0, description="a voiced frame must be this far above the noise floor"
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

    # --- the callee's own voice (detector.py, _Foreground) ------------------------------
    # Voices behind the callee (a room, a television, a street) pass the noise floor and
    # webrtcvad like the callee's; what tells them apart is level: the callee speaks into
    # the handset.
    foreground_gate_db: float = Field(
        10.0,
        ge=3.0,
        le=60.0,
        description=(
            "speech this far below the loudest of the callee's voice so far (over "
            "foreground_window_ms) is someone behind them; 60 turns the check off"
        ),
    )
    foreground_window_ms: int = Field(
        60,
        ge=20,
        le=500,
        description="the stretch of speech the callee's level (and each frame's) is measured on",
    )
    foreground_reach_ms: int = Field(
        200,
        ge=0,
        le=1000,
        description=(
            "quieter speech this close to the callee's own is theirs (soft consonants, the "
            "start and end of words)"
        ),
    )

    # --- speech segments ---------------------------------------------------------------
    min_burst_ms: int = Field(
        60, ge=0, le=1000, description="shorter sound bursts (clicks, breaths) are ignored"
    )
    burst_gap_ms: int = Field(
        300, ge=20, le=2000, description="a pause shorter than this does not end a burst"
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

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[str, object, str, str]] = []
        if self.strong_margin_db < self.speech_margin_db:
            problems.append(
                _below(
                    "strong_margin_db",
                    self.strong_margin_db,
                    "speech_margin_db",
                    self.speech_margin_db,
                )
            )
        if self.beep_max_hz <= self.beep_min_hz:
            problems.append(
                (
                    "beep_max_hz",
                    self.beep_max_hz,
                    f"above beep_min_hz ({self.beep_min_hz})",
                    "not above beep_min_hz",
                )
            )
        if self.long_answer_ms < self.short_answer_ms:
            problems.append(
                _below(
                    "long_answer_ms", self.long_answer_ms, "short_answer_ms", self.short_answer_ms
                )
            )
        _refuse(problems)
        return self


def _below(key: str, value: object, floor_key: str, floor: object) -> tuple[str, object, str, str]:
    return (
        key,
        value,
        f"at least {floor_key} ({floor})",
        f"below {floor_key}",
    )


def _refuse(problems: list[tuple[str, object, str, str]]) -> None:
    """Raise one error naming every (key, value, accepted, message), keys relative to the
    model, the way the configuration reports problems (``config.types.problems_error``)."""
    if not problems:
        return
    # Imported here: the configuration imports this module to build ``standards.amd``.
    from pbx_agent.config.types import SubProblem, problems_error  # noqa: PLC0415 - import cycle

    raise problems_error(
        [
            SubProblem(key, str(value), accepted, message)
            for key, value, accepted, message in problems
        ]
    )


class DetectorParams(DetectorTuning):
    """The detector's knobs and the session around it (``audiosocket_server.py``, the
    FreeSWITCH dialer): what the detector runs with."""

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
    def _within_deadline(self) -> Self:
        if self.max_analysis_ms > self.deadline_ms:
            _refuse(
                [
                    (
                        "max_analysis_ms",
                        self.max_analysis_ms,
                        f"at most deadline_ms ({self.deadline_ms})",
                        "after deadline_ms: the analysis would outlast the wait for it",
                    )
                ]
            )
        return self


class ClassicParams(BaseModel):
    """Asterisk ``AMD()`` parameters with the ``amd.conf`` sample values, in the order of
    ``AMD()``'s arguments (``app_amd.c``)."""

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
    """The detector's settings from ``standards.amd`` (on either PBX): the knobs of
    ``standards.amd.detector``, the deadline, and ``notsure_action`` for a verdict that is
    not there in time or not sure (``standards.amd`` refuses an analysis longer than the
    deadline; the wait for speech stops at the deadline at the latest)."""
    tuning = amd.detector
    choice = VerdictKind(amd.notsure_action.upper())
    return DetectorParams(
        **tuning.model_dump(exclude={"no_speech_ms"}),
        deadline_ms=amd.deadline_ms,
        no_speech_ms=min(tuning.no_speech_ms, amd.deadline_ms),
        on_deadline=choice,
        on_notsure=choice,
    )


def classic_params(amd: AmdRule) -> ClassicParams:
    """``AMD()``'s parameters from ``standards.amd`` (the ``asterisk`` engine's arguments,
    in ``app_amd.c``'s order, and the classic re-implementation's settings)."""
    return ClassicParams(
        initial_silence=amd.initial_silence_ms,
        greeting=amd.greeting_ms,
        after_greeting_silence=amd.after_greeting_silence_ms,
        total_analysis_time=amd.total_analysis_time_ms,
        min_word_length=amd.min_word_length_ms,
        between_words_silence=amd.between_words_silence_ms,
        maximum_number_of_words=amd.maximum_number_of_words,
        silence_threshold=amd.silence_threshold,
        maximum_word_length=amd.maximum_word_length_ms,
    )

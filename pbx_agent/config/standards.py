"""``Standards``: the resolved service rules for one call (R1-R9), as a frozen model.

One sub-model per rule, each carrying every number of the rule with the bounds config
validation accepts. Two kinds of bounds:

- hard bounds (``Field(ge=..., le=...)``): what makes sense at all for a switch (a hold
  reminder every 0.1 s does not);
- the seeds' own ranges, which are data (``silent_caller.step_range_s``,
  ``lingering.range_s``): the profile's value lies inside its range, and a value outside it
  is a problem unless the site widens the range on purpose.

Invariants, checked when a ``Standards`` is built (so every instance the engine sees holds
them): every prompt key referenced anywhere exists in ``phrases``; every feature code
leads to a script or to "farewell"; no phrase cites a criminal code article or says
"хулиганство"; phrases use no placeholder other than ``{company}``, which is filled in
before validation (``fill_company``).
"""

# the phrases are Russian and Chinese text, not look-alike Latin

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import time
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from pbx_agent.amd.params import DetectorTuning
from pbx_agent.config.types import (
    TIME_OF_DAY_ACCEPTED,
    Name,
    PromptKey,
    SecondsRange,
    SubProblem,
    TimeOfDay,
    format_range,
    key_part,
    problems_error,
    span_minutes,
)

FAREWELL = "farewell"
"""The feature-code action that starts the lingering procedure (R3) instead of a script."""


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def prompt_refs(self) -> Iterator[tuple[str, str]]:
        """(key relative to this rule, prompt key) for every prompt this rule plays."""
        for name, value in self:
            if name.endswith("prompt") and isinstance(value, str):
                yield name, value


Seconds = Annotated[float, Field(gt=0, le=3600)]


class CallbackOffer(_Rule):
    """R1: instead of waiting on, the held caller may press a digit to be called back."""

    enabled: bool = True
    digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"] = "1"
    # The offer is always made at the agent's tier limit; with this, already with the first
    # reminder (001: past the promised minute the caller is offered an alternative).
    with_first_reminder: bool = False
    prompt: PromptKey = "hold.callback_offer"
    registered_prompt: PromptKey = "hold.callback_registered"


class HoldRule(_Rule):
    """R1: hold with announcements, reminders, tier limits and the callback alternative."""

    enabled: bool = True
    reminder_first_after_s: Annotated[float, Field(ge=5, le=600)] = 60
    reminder_interval_s: Annotated[float, Field(ge=5, le=600)] = 60
    long_wait_threshold_s: Annotated[float, Field(ge=1, le=3600)] = 60
    tier_limits_s: dict[Name, Annotated[float, Field(ge=10, le=3600)]] = Field(
        default_factory=lambda: {"specialist": 120.0, "senior": 180.0}, min_length=1
    )
    callback_offer: CallbackOffer = CallbackOffer()
    announce_prompt: PromptKey = "hold.announce"
    reminder_prompt: PromptKey = "hold.reminder"
    resume_prompt: PromptKey = "hold.resume"
    resume_long_prompt: PromptKey = "hold.resume_long"
    agent_limit_prompt: PromptKey = "hold.agent_limit"

    def prompt_refs(self) -> Iterator[tuple[str, str]]:
        yield from super().prompt_refs()
        yield "callback_offer.prompt", self.callback_offer.prompt
        yield "callback_offer.registered_prompt", self.callback_offer.registered_prompt


class DeadAirRule(_Rule):
    """R1 "hold, not mute" and R8: silence in a bridged call that is not on hold."""

    enabled: bool = True
    log_after_s: Annotated[float, Field(ge=1, le=120)] = 10
    agent_reminder_after_s: Annotated[float, Field(ge=1, le=120)] = 10
    talk_over_s: Annotated[float, Field(ge=0.5, le=60)] = 3
    agent_reminder_prompt: PromptKey = "dead_air.agent_reminder"


class SilentStep(_Rule):
    """Play ``prompt`` after ``after_s`` of the caller's silence."""

    after_s: Annotated[float, Field(gt=0, le=60)]
    prompt: PromptKey


class SilentCallerRule(_Rule):
    """R2: a caller who says nothing hears the set phrases, then the call is dropped.

    Timing starts at the end of the agent's greeting, or ``greeting_max_s`` after connect if
    the agent never spoke; bursts shorter than ``min_speech_ms`` are noise, not speech.
    """

    enabled: bool = True
    steps: list[SilentStep] = Field(min_length=1)
    step_range_s: SecondsRange = (2.0, 3.0)
    hangup_after_closing_s: Annotated[float, Field(ge=0, le=30)] = 0
    greeting_max_s: Annotated[float, Field(gt=0, le=60)] = 8
    min_speech_ms: Annotated[int, Field(ge=20, le=5000)] = 250
    one_way_audio_callback: bool = False
    one_way_prompt: PromptKey = "silent.one_way"
    pre_queue: bool = False

    @model_validator(mode="after")
    def _steps_inside_range(self) -> Self:
        low, high = self.step_range_s
        problems = [
            SubProblem(
                f"steps[{i}].after_s",
                f"{step.after_s:g}",
                f"{format_range(self.step_range_s)} (silent_caller.step_range_s)",
                "silence before a silent-caller step is outside the standard's range",
            )
            for i, step in enumerate(self.steps)
            if not low <= step.after_s <= high
        ]
        if problems:
            raise problems_error(problems)
        return self

    def prompt_refs(self) -> Iterator[tuple[str, str]]:
        yield from super().prompt_refs()
        for i, step in enumerate(self.steps):
            yield f"steps[{i}].prompt", step.prompt


class LingeringRule(_Rule):
    """R3: after the farewell the caller stays on: ask, close, drop."""

    enabled: bool = True
    ask_after_s: Annotated[float, Field(gt=0, le=60)] = 2.5
    drop_after_s: Annotated[float, Field(gt=0, le=60)] = 2.5
    range_s: SecondsRange = (2.0, 3.0)
    # How long the caller may take to answer the question before the closing phrase.
    answer_wait_s: Annotated[float, Field(ge=1, le=30)] = 3
    ask_prompt: PromptKey = "linger.ask"
    closing_prompt: PromptKey = "linger.closing"

    @model_validator(mode="after")
    def _timings_inside_range(self) -> Self:
        low, high = self.range_s
        problems = [
            SubProblem(
                name,
                f"{value:g}",
                f"{format_range(self.range_s)} (lingering.range_s)",
                "lingering timing is outside the standard's range",
            )
            for name, value in (
                ("ask_after_s", self.ask_after_s),
                ("drop_after_s", self.drop_after_s),
            )
            if not low <= value <= high
        ]
        if problems:
            raise problems_error(problems)
        return self


class ScriptRule(_Rule):
    """R4: the prompts of a non-constructive-dialogue script, one per feature-code press.

    The last step is the farewell, after which the call is dropped.
    """

    steps: list[PromptKey] = Field(min_length=1, max_length=3)
    flag_number: bool = False
    record: bool = False

    def prompt_refs(self) -> Iterator[tuple[str, str]]:
        for i, key in enumerate(self.steps):
            yield f"steps[{i}]", key


class NightRoutingRule(_Rule):
    """R5: at night, a caller with more than ``threshold`` handled calls goes to the IVR.

    The window is in the site's time zone and crosses midnight when end <= start.
    """

    enabled: bool = True
    window_start: TimeOfDay = Field(default_factory=lambda: time(22, 0))
    window_end: TimeOfDay = Field(default_factory=lambda: time(8, 0))
    threshold: Annotated[int, Field(ge=1, le=100)] = 2
    trailing_hours: Annotated[int, Field(ge=1, le=168)] = 24
    count_mode: Literal["per_topic_when_known", "all"] = "per_topic_when_known"
    # The routing decision is on the call's path: past this, the call goes on normally.
    deadline_ms: Annotated[int, Field(ge=1, le=5000)] = 50
    # None: the PBX section's IVR context / extension.
    ivr_target: str | None = None
    notice_prompt: PromptKey = "night.notice"

    @model_validator(mode="after")
    def _window_not_empty(self) -> Self:
        if self.window_start == self.window_end:
            raise problems_error(
                [
                    SubProblem(
                        "window_end",
                        self.window_end.strftime("%H:%M"),
                        f"{TIME_OF_DAY_ACCEPTED}, different from window_start",
                        "the night window is empty (start equals end)",
                    )
                ]
            )
        return self


class FlagsRule(_Rule):
    """R9: numbers flagged after abuse go to a designated queue."""

    enabled: bool = True
    flagged_queue: str | None = "flagged"
    default_expiry_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class AmdRule(_Rule):
    """R6: answering-machine detection on every call the daemon originates.

    The ``*_ms``/``*_words``/``silence_threshold`` parameters are Asterisk's AMD() ones, with
    Asterisk's defaults (the ``asterisk`` engine); ``detector`` holds the daemon's detector's
    knobs (the ``daemon`` engine, and FreeSWITCH's talk-event rules). ``deadline_ms`` is when
    the daemon stops waiting for a verdict and applies ``notsure_action``; the detector's
    analysis stops there at the latest.
    """

    enabled: bool = True
    engine: Literal["daemon", "asterisk"] = "daemon"
    initial_silence_ms: Annotated[int, Field(ge=100, le=30000)] = 2500
    greeting_ms: Annotated[int, Field(ge=100, le=30000)] = 1500
    after_greeting_silence_ms: Annotated[int, Field(ge=50, le=30000)] = 800
    total_analysis_time_ms: Annotated[int, Field(ge=500, le=60000)] = 5000
    min_word_length_ms: Annotated[int, Field(ge=10, le=5000)] = 100
    between_words_silence_ms: Annotated[int, Field(ge=10, le=5000)] = 50
    maximum_number_of_words: Annotated[int, Field(ge=1, le=50)] = 2
    silence_threshold: Annotated[int, Field(ge=1, le=32767)] = 256
    maximum_word_length_ms: Annotated[int, Field(ge=100, le=60000)] = 5000
    notsure_action: Literal["human", "machine"] = "human"
    deadline_ms: Annotated[int, Field(ge=500, le=120000)] = 6000
    detector: DetectorTuning = DetectorTuning()

    @model_validator(mode="after")
    def _deadline_covers_analysis(self) -> Self:
        problems: list[SubProblem] = []
        if self.deadline_ms < self.total_analysis_time_ms:
            problems.append(
                SubProblem(
                    "deadline_ms",
                    str(self.deadline_ms),
                    f">= total_analysis_time_ms ({self.total_analysis_time_ms})",
                    "the verdict deadline would expire before the analysis may finish",
                )
            )
        if self.detector.max_analysis_ms > self.deadline_ms:
            problems.append(
                SubProblem(
                    "detector.max_analysis_ms",
                    str(self.detector.max_analysis_ms),
                    f"<= deadline_ms ({self.deadline_ms})",
                    "the detector's analysis would outlast the wait for its verdict",
                )
            )
        if problems:
            raise problems_error(problems)
        return self


class QuietHours(_Rule):
    """No callback is placed in [start, end), local time; crosses midnight when end <= start."""

    start: TimeOfDay = Field(default_factory=lambda: time(21, 0))
    end: TimeOfDay = Field(default_factory=lambda: time(9, 0))


_MIN_CALLING_MINUTES = 60


class CallbacksRule(_Rule):
    """R7: callbacks after an abnormal drop, and promised callbacks.

    ``attempt_offsets_s[i]`` is when attempt i+1 is due, counted from the drop; only the
    first ``max_attempts`` are used and all of them fall inside ``window_h``.
    """

    enabled: bool = True
    max_attempts: Annotated[int, Field(ge=1, le=3)] = 3
    window_h: Annotated[float, Field(gt=0, le=168)] = 48
    attempt_offsets_s: list[Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: [30.0, 4 * 3600.0, 24 * 3600.0], min_length=1
    )
    # The standard: each callback rings for more than 30 s.
    ring_time_s: Annotated[float, Field(gt=30, le=300)] = 40
    quiet_hours: QuietHours | None = QuietHours()
    max_concurrent: Annotated[int, Field(ge=1, le=1000)] = 2
    # Hang-up causes of the first leg to end that make a drop abnormal: Q.850 (1-127), or
    # FreeSWITCH's own cause numbers above (500 CRASH, 609 GATEWAY_DOWN, 613
    # SRTP_READ_ERROR...: pbx_agent.policies.callbacks.FREESWITCH_CAUSES).
    abnormal_causes: list[Annotated[int, Field(ge=1, le=699)]] = Field(
        default_factory=lambda: [27, 34, 38, 41, 42, 44, 47, 102]
    )
    media_timeout_abnormal: bool = True
    agent_device_drop: bool = True
    one_way_audio: bool = True
    cancel_on_inbound: bool = True
    promised_default_deadline_h: Annotated[float, Field(gt=0, le=720)] = 72
    # None: the queue the dropped call was in.
    target: str | None = None
    greeting_prompt: PromptKey = "callback.greeting"

    @property
    def first_delay_s(self) -> float:
        """How long after the drop the first attempt is due."""
        return self.attempt_offsets_s[0]

    @property
    def used_offsets_s(self) -> list[float]:
        return self.attempt_offsets_s[: self.max_attempts]

    @model_validator(mode="after")
    def _attempts_fit(self) -> Self:
        problems: list[SubProblem] = []
        offsets = self.attempt_offsets_s
        if len(offsets) < self.max_attempts:
            problems.append(
                SubProblem(
                    "attempt_offsets_s",
                    _list(offsets),
                    f"at least max_attempts ({self.max_attempts}) offsets",
                    "fewer attempt offsets than attempts",
                )
            )
        window_s = self.window_h * 3600
        for i, offset in enumerate(self.used_offsets_s):
            if i and offset <= offsets[i - 1]:
                problems.append(
                    SubProblem(
                        f"attempt_offsets_s[{i}]",
                        f"{offset:g}",
                        f"> attempt_offsets_s[{i - 1}] ({offsets[i - 1]:g})",
                        "attempt offsets must increase",
                    )
                )
            if offset >= window_s:
                problems.append(
                    SubProblem(
                        f"attempt_offsets_s[{i}]",
                        f"{offset:g}",
                        f"< window_h * 3600 ({window_s:g} s)",
                        "callback attempt falls outside the callback window",
                    )
                )
        if self.quiet_hours is not None:
            start, end = self.quiet_hours.start, self.quiet_hours.end
            calling = 24 * 60 - span_minutes(start, end) if start != end else 0
            if calling < _MIN_CALLING_MINUTES:
                problems.append(
                    SubProblem(
                        "quiet_hours",
                        f"{start:%H:%M}-{end:%H:%M}",
                        f"quiet hours leaving at least {_MIN_CALLING_MINUTES} min a day to call",
                        "quiet hours leave no time to call",
                    )
                )
        if problems:
            raise problems_error(problems)
        return self


class QualityRule(_Rule):
    """R8: the figures the daemon measures and reports against."""

    hold_share_target: Annotated[float, Field(ge=0, le=1)] = 0.05
    # Silence in a bridged call not on hold longer than this is one "unannounced silence"
    # of the figures (003 §17: 3 s), whatever dead_air.log_after_s says for the log.
    # (Talk-over's threshold is dead_air.talk_over_s.)
    dead_air_s: Annotated[float, Field(gt=0, le=60)] = 3
    # Accepted for configurations written before it was found unread: it may only repeat
    # dead_air.talk_over_s (the threshold used), never set another.
    talk_over_s: Annotated[float, Field(gt=0, le=60)] | None = None


Phrase = Annotated[str, StringConstraints(min_length=1, max_length=2000)]

# 000: citing criminal code articles, or the word "хулиганство", is not allowed. Matched on
# the text with Latin look-alike letters read as Cyrillic ("xулиганство" with a Latin x).
_NUMBER_WORD = (
    r"(?:\d|перв|втор|трет|четв[её]рт|пят|шест|седьм|восьм|девят|десят|одиннадцат|двенадцат"
    r"|двадцат|тридцат|сорок|пятьдесят|шестьдесят|семьдесят|восемьдесят|девяност|сто|двест"
    r"|двухсот|трист|трёхсот|трехсот|четырест|пятьсот|шестьсот|семьсот|восемьсот|девятьсот)"
)
# The noun "статья" in its forms, not the verb "стать" ("стать первым в очереди").
_ARTICLE = r"(?:стать(?:я|и|е|ю|[её]й|[её]ю|ям|ях|ями)|статей)\b"
_FORBIDDEN = (
    (re.compile(r"хулиган", re.IGNORECASE), "the word 'хулиганство'"),
    (
        re.compile(rf"{_ARTICLE}\s*(?:№\s*)?{_NUMBER_WORD}", re.IGNORECASE),
        "a reference to a code article",
    ),
    (
        re.compile(rf"\d+\s*-?\s*[а-яё]{{0,3}}\s+{_ARTICLE}", re.IGNORECASE),
        "a reference to a code article",
    ),
    (re.compile(r"\bст\.\s*\d", re.IGNORECASE), "a reference to a code article"),
    (re.compile(r"\b(УК|КоАП|ГК)\s*РФ\b", re.IGNORECASE), "a reference to a code (УК РФ, ...)"),
    (re.compile(rf"{_ARTICLE}\s+(?:УК|КоАП)\b", re.IGNORECASE), "a reference to a code article"),
    (
        re.compile(r"\d+\s*-?\s*[а-яё]{0,3}\s+(?:УК|КоАП)\b", re.IGNORECASE),
        "a reference to a code article",
    ),
    (
        re.compile(r"(?:уголовн|административн)[а-яё]*\s+кодекс", re.IGNORECASE),
        "a reference to a code (the criminal code, ...)",
    ),
)
_LOOKALIKES = str.maketrans("aceopxykmthbACEOPXYKMTHB", "асеорхукмтнвАСЕОРХУКМТНВ")


def forbidden_in(text: str) -> list[str]:
    """What of 000's forbidden wording ``text`` contains (empty: nothing)."""
    read = text.translate(_LOOKALIKES)
    return [what for pattern, what in _FORBIDDEN if pattern.search(read)]


_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
COMPANY_PLACEHOLDER = "{company}"


def fill_company(text: str, company: str) -> str:
    """Put the company's name in a phrase; with no name, drop the placeholder and its space."""
    if company:
        return text.replace(COMPANY_PLACEHOLDER, company)
    return re.sub(r"\s?\{company\}", "", text)


class Standards(BaseModel):
    """The resolved rules for one call: profile, then site, dialled-number and queue overrides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hold: HoldRule
    dead_air: DeadAirRule
    silent_caller: SilentCallerRule
    lingering: LingeringRule
    scripts: dict[Name, ScriptRule]
    feature_codes: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")], str]
    night_routing: NightRoutingRule
    flags: FlagsRule
    amd: AmdRule
    callbacks: CallbacksRule
    quality: QualityRule
    phrases: dict[PromptKey, Phrase]

    @field_validator("phrases")
    @classmethod
    def _phrases_allowed(cls, phrases: dict[str, str]) -> dict[str, str]:
        problems: list[SubProblem] = []
        for key in sorted(phrases):
            text = phrases[key]
            problems.extend(
                SubProblem(
                    key_part(key),
                    _clip(text),
                    "a phrase citing no legal article and without 'хулиганство'",
                    f"phrase contains {what}, which the standard forbids",
                )
                for what in forbidden_in(text)
            )
            problems.extend(
                SubProblem(
                    key_part(key),
                    _clip(text),
                    "plain text; the only placeholder is {company}",
                    f"unknown placeholder {placeholder}",
                )
                for placeholder in _PLACEHOLDER.findall(text)
            )
        if problems:
            raise problems_error(problems)
        return phrases

    def prompt_refs(self) -> Iterator[tuple[str, str]]:
        """(dotted key, prompt key) for every prompt referenced anywhere in these standards."""
        for name in _PROMPTING_RULES:
            rule: _Rule = getattr(self, name)
            for key, prompt in rule.prompt_refs():
                yield f"{name}.{key}", prompt
        for name, script in self.scripts.items():
            for key, prompt in script.prompt_refs():
                yield f"scripts.{name}.{key}", prompt

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = [
            *_missing_phrases(self.prompt_refs(), self.phrases),
            *_feature_code_problems(self.feature_codes, self.scripts),
        ]
        if self.silent_caller.one_way_audio_callback and not self.callbacks.enabled:
            problems.append(
                SubProblem(
                    "silent_caller.one_way_audio_callback",
                    "true",
                    "false while callbacks.enabled is false",
                    "one-way audio promises a callback but callbacks are disabled",
                )
            )
        elif self.silent_caller.one_way_audio_callback and not self.callbacks.one_way_audio:
            problems.append(
                SubProblem(
                    "silent_caller.one_way_audio_callback",
                    "true",
                    "false while callbacks.one_way_audio is false",
                    "the phrase promises the caller a callback the scheduler would not make "
                    "(callbacks.one_way_audio = false drops one-way-audio requests)",
                )
            )
        if problems:
            raise problems_error(problems)
        return self


# The rules that play prompts, by their field name in Standards.
_PROMPTING_RULES: dict[str, type[_Rule]] = {
    "hold": HoldRule,
    "dead_air": DeadAirRule,
    "silent_caller": SilentCallerRule,
    "lingering": LingeringRule,
    "night_routing": NightRoutingRule,
    "callbacks": CallbacksRule,
}


def reference_problems(data: Mapping[str, Any]) -> list[SubProblem]:
    """The cross-reference problems of standards data that failed validation elsewhere.

    ``Standards``' own check runs only once every rule is valid; this one checks what it
    can (each valid rule's prompts, the feature codes) so that an operator sees a missing
    phrase together with, say, an out-of-range number. Best effort, same messages.
    """
    phrases = data.get("phrases")
    scripts = data.get("scripts")
    refs: list[tuple[str, str]] = []
    for name, rule_type in _PROMPTING_RULES.items():
        try:
            rule = rule_type.model_validate(data.get(name))
        except ValidationError:
            continue
        refs.extend((f"{name}.{key}", prompt) for key, prompt in rule.prompt_refs())
    for name, raw in scripts.items() if isinstance(scripts, Mapping) else ():
        try:
            script = ScriptRule.model_validate(raw)
        except ValidationError:
            continue
        refs.extend((f"scripts.{name}.{key}", prompt) for key, prompt in script.prompt_refs())
    problems = _missing_phrases(refs, phrases) if isinstance(phrases, Mapping) else []
    feature_codes = data.get("feature_codes")
    if isinstance(feature_codes, Mapping) and isinstance(scripts, Mapping):
        problems += _feature_code_problems(feature_codes, scripts)
    return problems


def _missing_phrases(
    refs: Iterable[tuple[str, str]], phrases: Mapping[str, object]
) -> list[SubProblem]:
    return [
        SubProblem(key, prompt, "a key of standards.phrases", f"no phrase '{prompt}' in phrases")
        for key, prompt in refs
        if prompt not in phrases
    ]


def _feature_code_problems(
    feature_codes: Mapping[str, object], scripts: Mapping[str, object]
) -> list[SubProblem]:
    targets = [*sorted(scripts), FAREWELL]
    return [
        SubProblem(
            f"feature_codes.{key_part(feature)}",
            str(target),
            "one of: " + ", ".join(targets),
            "feature code leads to no script",
        )
        for feature, target in feature_codes.items()
        if target not in targets
    ]


def _list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

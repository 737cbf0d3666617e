"""A labelled development corpus for answering-machine detection, generated from a seed.

Speech comes from espeak-ng (Russian, English and Mandarin, several voice variants, speeds
and pitches), converted to 8 kHz by sox; tones, music, noise and the telephone channel are
built with numpy from the same seeded generator, so the same seed gives the same clips,
byte for byte, on any machine with the same espeak-ng.

Each clip is what the daemon hears from the moment the callback is answered (t = 0):

HUMAN
- ``human_short``: an onset delay, one short answer ("Алло?", "Hello?", "喂？"), silence
  (sometimes a second short question after a pause).
- ``human_double``: "Алло? … Алло?": the same kind of word twice with a pause between.
- ``human_chatty``: two or three phrases in a row ("Да, слушаю вас, кто это?").
MACHINE
- ``voicemail``: a voicemail greeting (2.5–8 s), with a beep after it half of the time.
- ``voicemail_short_beep``: "Leave a message." and a beep.
- ``announcement``: a network announcement ("The number you have dialled…"), preceded by
  special information tones half of the time.
- ``music``: synthetic music (notes with harmonics, chords, tremolo), sometimes with
  speech over it or after it.
- ``tone``: a bare beep or a fax/modem tone.

The channel: speech level −26…−12 dBFS, background noise (white, pink or brown; none or
−60…−30 dBFS RMS as heard in the telephone band), the telephone band (300–3400 Hz) and,
most of the time, a G.711 µ-law round trip. A fifth of the people are heard with one to
three other people talking behind them (−50…−30 dBFS: an office, a shop, a television).
``with_voices_behind`` and ``with_street_noise`` make the stress mixes: voices, or street
noise that swells, behind every person at one level.

The timings (onset delays, pauses, speaking rates, noise levels) are a ``CorpusTiming``;
``TIMINGS["default"]`` is the mix above, ``TIMINGS["shifted"]`` moves every distribution
(people answer earlier or later, machines start up to 1.2 s late, greetings are read more
slowly with longer pauses, beeps come later, noise is louder), so a detector tuned on the
default corpus can be checked on timings it was not fitted to.

The two splits do not share phrases or voice variants: ``train`` is for tuning,
``validation`` for the figures, so the figures say something about clips the parameters
were not fitted to. Each split folder holds the WAV files and ``labels.csv``
(``file,label,kind,language,voice,noise_dbfs,note``).
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TypeVar

import numpy as np

from pbx_agent.amd.audio import SAMPLE_RATE, Signal, to_pcm, write_wav
from pbx_agent.errors import PbxAgentError

__all__ = [
    "CLIP_MS",
    "TIMINGS",
    "ClipInfo",
    "CorpusTiming",
    "CorpusToolMissingError",
    "generate_corpus",
    "require_tools",
]

CLIP_MS = 8000
_TTS_TIMEOUT_S = 30.0


class CorpusToolMissingError(PbxAgentError):
    """espeak-ng or sox is not installed."""


def require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        msg = (
            f"the corpus generator needs {' and '.join(missing)}, not found on PATH; "
            "install the Debian packages: apt-get install espeak-ng sox"
        )
        raise CorpusToolMissingError(msg)


Range = tuple[float, float]


@dataclass(frozen=True, slots=True)
class CorpusTiming:
    """The generator's distributions: uniform ranges in seconds unless named otherwise."""

    person_onset: Range = (0.15, 1.0)
    person_late_share: float = 0.15  # of people, who take person_late_onset instead
    person_late_onset: Range = (1.0, 2.0)
    person_wpm: tuple[int, int] = (145, 215)
    machine_wpm: tuple[int, int] = (125, 200)
    machine_word_gap_ms: tuple[int, int] | None = None  # espeak-ng -g: extra pause between words
    repeat_pause: Range = (1.6, 3.0)  # before a second short question
    double_pause: Range = (0.8, 2.2)  # "Алло? … Алло?"
    chatty_gap: Range = (0.05, 0.35)  # between the phrases of a chatty answer
    greeting_onset: Range = (0.0, 0.6)  # voicemail, short greeting
    announcement_onset: Range = (0.0, 0.5)
    music_onset: Range = (0.0, 0.4)
    beep_gap: Range = (0.2, 0.9)  # after a voicemail greeting
    short_beep_gap: Range = (0.1, 0.7)  # after a short greeting
    announcement_repeat: Range = (0.3, 1.0)
    noise_dbfs: tuple[float, ...] = (-60.0, -50.0, -45.0, -40.0, -35.0, -30.0)
    voices_share: float = 0.2  # of people, heard with other people talking behind them
    voices_dbfs: tuple[float, ...] = (-50.0, -45.0, -40.0, -35.0, -30.0)
    street_share: float = 0.0  # of people, heard with street noise swelling behind them
    street_dbfs: tuple[float, ...] = (-40.0,)


TIMINGS: dict[str, CorpusTiming] = {
    "default": CorpusTiming(),
    "shifted": CorpusTiming(
        person_onset=(0.05, 1.2),
        person_late_share=0.1,
        person_late_onset=(1.2, 2.5),
        person_wpm=(130, 230),
        machine_wpm=(110, 185),
        machine_word_gap_ms=(0, 80),
        repeat_pause=(1.2, 2.6),
        double_pause=(0.7, 1.8),
        chatty_gap=(0.1, 0.5),
        greeting_onset=(0.0, 1.2),
        announcement_onset=(0.0, 1.0),
        music_onset=(0.0, 1.0),
        beep_gap=(0.3, 1.2),
        short_beep_gap=(0.2, 1.0),
        announcement_repeat=(0.5, 1.5),
        noise_dbfs=(-50.0, -40.0, -35.0, -30.0, -25.0),
        voices_share=0.25,
        voices_dbfs=(-45.0, -40.0, -35.0, -30.0),
    ),
}

STRESS_DBFS: Range = (-60.0, -10.0)  # levels accepted by with_voices_behind and with_street_noise


def _stress_level(what: str, level_dbfs: float) -> tuple[float]:
    low, high = STRESS_DBFS
    if not low <= level_dbfs <= high:
        msg = f"{what} at {level_dbfs:g} dBFS refused; accepted: {low:g} to {high:g} dBFS"
        raise ValueError(msg)
    return (float(level_dbfs),)


def with_voices_behind(timing: CorpusTiming, level_dbfs: float) -> CorpusTiming:
    """``timing`` with every person heard with 1-3 voices behind them at ``level_dbfs``:
    the stress mix that measures the voices-behind check level by level. The draws are
    those of ``timing`` (the other clips of a seed stay as they were)."""
    return replace(timing, voices_share=1.0, voices_dbfs=_stress_level("voices behind", level_dbfs))


def with_street_noise(timing: CorpusTiming, level_dbfs: float) -> CorpusTiming:
    """``timing`` with every person heard over street noise at ``level_dbfs`` that swells
    by 6-12 dB for 0.3-1 s at a time (traffic passing). Drawn apart like the voices: the
    machines' clips stay those of ``timing``."""
    return replace(timing, street_share=1.0, street_dbfs=_stress_level("street noise", level_dbfs))


# Phrase pools. Index i % 3 == 2 goes to the validation split, the rest to train.
_HUMAN_SHORT = {
    "ru": [
        "Алло?",
        "Да?",
        "Слушаю.",
        "Алло, да.",
        "Да, алло?",
        "Здравствуйте.",
        "Алё?",
        "Да, слушаю.",
        "Алло, кто это?",
        "Говорите.",
        "Алло, я слушаю.",
        "Да, говорите.",
    ],
    "en": [
        "Hello?",
        "Yes?",
        "Hi.",
        "Hello, speaking.",
        "Yeah?",
        "Hello, who is this?",
        "Hi there.",
        "Good morning.",
        "Yes, hello?",
        "Speaking.",
        "Hello, yes?",
        "Hey.",
    ],
    "cmn": [
        "喂？",
        "你好。",
        "喂，你好？",
        "喂，哪位？",
        "您好。",
        "喂，请讲。",
        "是我。",
        "喂，什么事？",
        "你好，哪位？",
        "喂喂？",
        "在，请说。",
        "嗯，你好。",
    ],
}
_HUMAN_CHATTY = {
    "ru": [
        ["Да,", "слушаю вас,", "кто это?"],
        ["Алло,", "да, говорите,", "я слушаю."],
        ["Здравствуйте,", "слушаю вас."],
        ["Алло,", "кто звонит?"],
        ["Да, алло,", "слушаю,", "говорите, пожалуйста."],
        ["Алло,", "это кто?", "не слышу."],
        ["Добрый день,", "я слушаю."],
        ["Да,", "это я,", "что случилось?"],
        ["Алло,", "алло,", "говорите."],
    ],
    "en": [
        ["Hello,", "yes,", "who's calling?"],
        ["Hi,", "this is Mike speaking."],
        ["Hello?", "Yes,", "I can hear you."],
        ["Good afternoon,", "Anna speaking."],
        ["Hello,", "who is this,", "please?"],
        ["Yeah,", "hello,", "what is it?"],
        ["Hi,", "sorry,", "who's this?"],
        ["Hello,", "yes,", "go ahead."],
        ["Morning,", "how can I help?"],
    ],
    "cmn": [
        ["喂，", "你好，", "请问是哪位？"],
        ["喂，", "我是小王。"],
        ["你好，", "有什么事吗？"],
        ["喂，", "听得见，", "请说。"],
        ["您好，", "请问找谁？"],
        ["喂，", "哪位呀？", "说话。"],
        ["你好，", "我在开会，", "什么事？"],
        ["喂，", "是我，", "你说。"],
        ["喂，", "你好，", "听不清。"],
    ],
}
_GREETINGS = {
    "ru": [
        (
            "Здравствуйте, вы позвонили Ивану Петрову. Сейчас я не могу ответить. "
            "Оставьте, пожалуйста, сообщение после сигнала."
        ),
        "Абонент не может ответить. Оставьте сообщение после звукового сигнала.",
        "Привет, это Маша. Я перезвоню, как только смогу. Оставь сообщение.",
        (
            "Здравствуйте. Вы позвонили в компанию Ромашка. Наш офис работает с девяти до "
            "шести. Оставьте сообщение, и мы вам перезвоним."
        ),
        "Добрый день. Вы попали на автоответчик. Говорите после сигнала.",
        "Алло! Это автоответчик семьи Смирновых. Нас нет дома, оставьте сообщение.",
        "Вы позвонили Сергею. Я сейчас за рулём и не могу ответить. Напишите мне.",
        ("Здравствуйте, это голосовая почта. Абонент сейчас недоступен, оставьте ваше сообщение."),
        (
            "Здравствуйте! Меня зовут Ольга. Пожалуйста, оставьте ваше имя и номер "
            "телефона, и я перезвоню."
        ),
    ],
    "en": [
        (
            "Hi, you've reached Sarah. I can't come to the phone right now. "
            "Please leave a message after the beep."
        ),
        ("The person you are calling is not available. Please leave your message after the tone."),
        (
            "Hello. You have reached the voicemail of John Smith. Please leave your name "
            "and number and I will call you back."
        ),
        (
            "Thank you for calling Acme Plumbing. Our office is closed. Please leave a "
            "message and we will return your call."
        ),
        "Hey, it's Tom. Leave a message.",
        ("Hello! This is the Miller family. We are not home right now, leave us a message."),
        (
            "You have reached extension two four one. I am away from my desk. Please leave "
            "a message."
        ),
        "Hi, this is Dave. Sorry I missed your call. Text me or leave a voicemail.",
        (
            "Welcome to the voice mailbox of Dr. Brown. Please state your name and the "
            "reason for your call."
        ),
    ],
    "cmn": [
        "您好，我现在不方便接听电话，请在提示音后留言。",
        "您好，您拨打的用户暂时无法接听，请在嘀声后留言。",
        "你好，我是小李，现在不在，请留言，我会尽快回电。",
        "欢迎致电华美公司，现在是非工作时间，请留下您的姓名和电话。",
        "您好，这里是王先生的语音信箱，请在提示音后留下您的信息。",
        "喂，你好，我是张华，我现在很忙，请稍后再打或者留言。",
        "您好，您已进入语音信箱，请在听到提示音后开始录音。",
        "你好，这是陈家的电话，我们现在不在家，请留言。",
        "感谢您的来电，对方暂时无法接听，请留言。",
    ],
}
_SHORT_GREETINGS = {
    "ru": [
        "Оставьте сообщение.",
        "Говорите.",
        "Оставьте сообщение после сигнала.",
        "Автоответчик.",
        "Слушаю, говорите после сигнала.",
        "Оставьте ваше сообщение.",
    ],
    "en": [
        "Leave a message.",
        "Please leave a message.",
        "Leave it at the beep.",
        "Speak after the tone.",
        "Message, please.",
        "Go ahead, leave a message.",
    ],
    "cmn": [
        "请留言。",
        "请在嘀声后留言。",
        "请讲。",
        "请留下信息。",
        "留言吧。",
        "请在提示音后讲话。",
    ],
}
_ANNOUNCEMENTS = {
    "ru": [
        "Абонент временно недоступен. Попробуйте позвонить позднее.",
        "Номер, который вы набрали, не существует. Проверьте правильность набора.",
        "Аппарат абонента выключен или находится вне зоны действия сети.",
        "Абонент занят. Пожалуйста, перезвоните позднее.",
        "На вашем счёте недостаточно средств для совершения звонка.",
        "Набранный вами номер заблокирован. Справки по телефону ноль шестьсот.",
    ],
    "en": [
        ("The number you have dialed is not in service. Please check the number and dial again."),
        "The subscriber you are calling is not available. Please try again later.",
        "We're sorry, your call cannot be completed as dialed.",
        "All circuits are busy now. Please try your call again later.",
        "The mobile phone you are calling is switched off.",
        "This number has been disconnected. No further information is available.",
    ],
    "cmn": [
        "您拨打的电话已关机。",
        "您拨打的号码是空号，请查证后再拨。",
        "您拨打的用户正忙，请稍后再拨。",
        "您拨打的电话暂时无法接通，请稍后再拨。",
        "对不起，您拨打的号码已停机。",
        "您拨打的用户不在服务区。",
    ],
}
_VARIANTS = ["m1", "f2", "m3", "f1", "m4", "f3", "m2", "f4", "m7", "klatt", "f5", "m6"]
_VOICES = {"ru": "ru", "en": ("en-us", "en-gb"), "cmn": "cmn"}

# (kind, weight): the mix of a split.
_MIX: tuple[tuple[str, float], ...] = (
    ("human_short", 0.22),
    ("human_double", 0.10),
    ("human_chatty", 0.13),
    ("voicemail", 0.20),
    ("voicemail_short_beep", 0.08),
    ("announcement", 0.12),
    ("music", 0.08),
    ("tone", 0.07),
)
_SIT_TONES = ((913.8, 985.2), (1370.6, 1428.5), (1776.7,))


@dataclass(frozen=True, slots=True)
class ClipInfo:
    file: str
    label: str  # HUMAN | MACHINE
    kind: str
    language: str
    voice: str
    noise_dbfs: float | None
    note: str


_T = TypeVar("_T")


def _split_pool(pool: Sequence[_T], split: str) -> list[_T]:
    chosen = [item for i, item in enumerate(pool) if (i % 3 == 2) == (split == "validation")]
    return chosen or list(pool)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        require_tools()
    return path or name


@cache
def _speak_cached(text: str, voice: str, speed: int, pitch: int, word_gap: int = 0) -> bytes:
    # Arguments are a list (no shell) and the text comes from the pools above.
    gap = ["-g", str(word_gap)] if word_gap else []
    espeak = subprocess.run(  # noqa: S603
        [
            _tool("espeak-ng"),
            "-v",
            voice,
            "-s",
            str(speed),
            "-p",
            str(pitch),
            *gap,
            "--stdout",
            text,
        ],
        capture_output=True,
        check=True,
        timeout=_TTS_TIMEOUT_S,
    )
    converted = subprocess.run(  # noqa: S603
        [
            _tool("sox"),
            "-D",
            "-t",
            "wav",
            "-",
            "-t",
            "raw",
            "-r",
            str(SAMPLE_RATE),
            "-e",
            "signed",
            "-b",
            "16",
            "-c",
            "1",
            "-",
        ],
        input=espeak.stdout,
        capture_output=True,
        check=True,
        timeout=_TTS_TIMEOUT_S,
    )
    return converted.stdout


def _voice(rng: np.random.Generator, language: str, variants: Sequence[str]) -> tuple[str, str]:
    """An espeak-ng voice of ``language`` and one of ``variants``: (name, variant)."""
    base = _VOICES[language]
    name = base if isinstance(base, str) else str(rng.choice(base))
    return name, str(rng.choice(variants))


def _samples(raw: bytes) -> Signal:
    return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0


class _ClipMaker:
    def __init__(self, rng: np.random.Generator, split: str, timing: CorpusTiming) -> None:
        self.rng = rng
        self.split = split
        self.timing = timing
        self.variants = _split_pool(_VARIANTS, split)
        self.last_voice = "-"

    # --- building blocks -------------------------------------------------------------
    def voice(self, language: str, *, person: bool = False) -> tuple[str, int, int, int]:
        timing = self.timing
        name, variant = _voice(self.rng, language, self.variants)
        low, high = timing.person_wpm if person else timing.machine_wpm
        speed = int(self.rng.integers(low, high))
        if language == "cmn":
            # espeak-ng reads Mandarin at about 3 syllables a second at the default rate;
            # people (and recorded greetings) speak 4-5.
            speed = round(speed * 1.4)
        pitch = int(self.rng.integers(25, 75))
        word_gap = 0
        if not person and timing.machine_word_gap_ms is not None:
            gap_low, gap_high = timing.machine_word_gap_ms
            word_gap = int(self.rng.integers(gap_low // 10, gap_high // 10 + 1))
        gap_note = f" -g{word_gap}" if word_gap else ""
        self.last_voice = f"{name}+{variant} -s{speed} -p{pitch}{gap_note}"
        return f"{name}+{variant}", speed, pitch, word_gap

    def uniform(self, bounds: Range) -> float:
        return float(self.rng.uniform(*bounds))

    def speak(self, text: str, voice: tuple[str, int, int, int]) -> Signal:
        return _trim(_samples(_speak_cached(text, *voice)))

    def onset(self) -> float:
        """How long a person takes to speak after the answer: mostly 0.15-1 s, sometimes 2."""
        if self.rng.random() < self.timing.person_late_share:
            return self.uniform(self.timing.person_late_onset)
        return self.uniform(self.timing.person_onset)

    def silence(self, seconds: float) -> Signal:
        return np.zeros(round(seconds * SAMPLE_RATE))

    def tone(self, freqs: Sequence[float], seconds: float, level_dbfs: float) -> Signal:
        t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        wave_ = sum((np.sin(2 * np.pi * f * t) for f in freqs), np.zeros_like(t))
        ramp = min(t.size // 2, int(0.005 * SAMPLE_RATE))
        envelope = np.ones_like(t)
        if ramp:
            envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
            envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
        return _set_rms(wave_ * envelope, level_dbfs)

    def beep(self) -> Signal:
        nominal = self.rng.choice([425.0, 440.0, 800.0, 850.0, 1000.0, 1004.0, 1400.0, 1800.0])
        freq = float(nominal * self.rng.uniform(0.97, 1.03))
        return self.tone([freq], self.rng.uniform(0.2, 1.0), self.rng.uniform(-22, -10))

    def music(self, seconds: float) -> Signal:
        rng = self.rng
        scale = np.array([0, 2, 4, 7, 9, 12, 14, 16])
        root = rng.uniform(180, 330)
        tempo = rng.uniform(0.15, 0.5)
        harmonics = rng.integers(1, 6)
        chord = rng.random() < 0.4
        out: list[Signal] = []
        total = 0.0
        while total < seconds:
            duration = tempo * float(rng.choice([1, 1, 2]))
            degree = int(rng.choice(scale))
            freqs = [root * 2 ** (degree / 12)]
            if chord:
                freqs += [freqs[0] * 2 ** (4 / 12), freqs[0] * 2 ** (7 / 12)]
            n = round(duration * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            note = np.zeros(n)
            for f in freqs:
                for h in range(1, int(harmonics) + 1):
                    if f * h < 3400:
                        note += np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6.28)) / h
            decay = rng.uniform(0.5, 4.0)
            note *= np.exp(-decay * t) * np.minimum(1.0, t / 0.01)
            out.append(note)
            total += duration
        music = np.concatenate(out)[: round(seconds * SAMPLE_RATE)]
        if rng.random() < 0.4:
            t = np.arange(music.size) / SAMPLE_RATE
            music *= 1 - 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(3, 7) * t)) / 2
        return _set_rms(music, rng.uniform(-30, -16))

    # --- clip kinds ---------------------------------------------------------------------
    def human_short(self, language: str) -> tuple[list[Signal], str]:
        voice = self.voice(language, person=True)
        pool = _split_pool(_HUMAN_SHORT[language], self.split)
        text = str(self.rng.choice(pool))
        parts = [self.silence(self.onset()), self.level(self.speak(text, voice))]
        note = text
        if self.rng.random() < 0.3:
            again = str(self.rng.choice(pool))
            parts += [
                self.silence(self.uniform(self.timing.repeat_pause)),
                self.level(self.speak(again, voice)),
            ]
            note += f" … {again}"
        return parts, note

    def human_double(self, language: str) -> tuple[list[Signal], str]:
        voice = self.voice(language, person=True)
        pool = _split_pool(_HUMAN_SHORT[language], self.split)
        first = str(self.rng.choice(pool[:4]))
        second = first if self.rng.random() < 0.6 else str(self.rng.choice(pool))
        parts = [
            self.silence(self.onset()),
            self.level(self.speak(first, voice)),
            self.silence(self.uniform(self.timing.double_pause)),
            self.level(self.speak(second, voice)),
        ]
        return parts, f"{first} … {second}"

    def human_chatty(self, language: str) -> tuple[list[Signal], str]:
        voice = self.voice(language, person=True)
        pool = _split_pool(_HUMAN_CHATTY[language], self.split)
        phrases = list(pool[int(self.rng.integers(len(pool)))])
        level = self.rng.uniform(-26, -12)
        parts: list[Signal] = [self.silence(self.onset())]
        for i, phrase in enumerate(phrases):
            if i:
                parts.append(self.silence(self.uniform(self.timing.chatty_gap)))
            parts.append(_set_rms(self.speak(phrase, voice), level, active=True))
        return parts, " ".join(phrases)

    def voicemail(self, language: str) -> tuple[list[Signal], str]:
        voice = self.voice(language)
        text = str(self.rng.choice(_split_pool(_GREETINGS[language], self.split)))
        parts = [
            self.silence(self.uniform(self.timing.greeting_onset)),
            self.level(self.speak(text, voice)),
        ]
        note = text
        if self.rng.random() < 0.5:
            parts += [self.silence(self.uniform(self.timing.beep_gap)), self.beep()]
            note += " +beep"
        return parts, note

    def voicemail_short_beep(self, language: str) -> tuple[list[Signal], str]:
        voice = self.voice(language)
        text = str(self.rng.choice(_split_pool(_SHORT_GREETINGS[language], self.split)))
        parts = [
            self.silence(self.uniform(self.timing.greeting_onset)),
            self.level(self.speak(text, voice)),
            self.silence(self.uniform(self.timing.short_beep_gap)),
            self.beep(),
        ]
        return parts, text + " +beep"

    def announcement(self, language: str) -> tuple[list[Signal], str]:
        voice = self.voice(language)
        text = str(self.rng.choice(_split_pool(_ANNOUNCEMENTS[language], self.split)))
        parts = [self.silence(self.uniform(self.timing.announcement_onset))]
        note = text
        if self.rng.random() < 0.5:
            level = self.rng.uniform(-24, -12)
            for freqs in _SIT_TONES:
                freq = float(self.rng.choice(freqs))
                parts.append(self.tone([freq], float(self.rng.choice([0.274, 0.380])), level))
            parts.append(self.silence(self.rng.uniform(0.05, 0.4)))
            note = "SIT + " + text
        speech = self.level(self.speak(text, voice))
        parts += [speech, self.silence(self.uniform(self.timing.announcement_repeat)), speech]
        return parts, note

    def music_clip(self, language: str) -> tuple[list[Signal], str]:
        seconds = CLIP_MS / 1000
        music = self.music(seconds)
        note = "music"
        if self.rng.random() < 0.3:
            voice = self.voice(language)
            text = str(self.rng.choice(_split_pool(_ANNOUNCEMENTS[language], self.split)))
            speech = self.level(self.speak(text, voice))
            start = round(self.rng.uniform(0.5, 2.0) * SAMPLE_RATE)
            end = min(music.size, start + speech.size)
            music[start:end] += speech[: end - start]
            note = "music + speech"
        return [self.silence(self.uniform(self.timing.music_onset)), music], note

    def tone_clip(self, language: str) -> tuple[list[Signal], str]:
        del language
        choice = self.rng.random()
        parts = [self.silence(self.rng.uniform(0.05, 1.0))]
        if choice < 0.5:
            parts.append(self.beep())
            return parts, "beep"
        if choice < 0.75:
            # Fax calling tone (CNG): 1100 Hz, 0.5 s on, 3 s off.
            cng = self.tone([1100.0], 0.5, -15)
            parts += [cng, self.silence(3.0), cng]
            return parts, "fax CNG"
        # Answer tone (CED / modem): 2100 Hz, long.
        parts.append(self.tone([2100.0], 3.3, -14))
        return parts, "answer tone 2100 Hz"

    def level(self, speech: Signal) -> Signal:
        return _set_rms(speech, self.rng.uniform(-26, -12), active=True)

    # --- channel -----------------------------------------------------------------------
    def channel(self, clip: Signal) -> tuple[Signal, float | None, str]:
        rng = self.rng
        noise_db: float | None = None
        colour = "none"
        if rng.random() < 0.7:
            noise_db = float(rng.choice(list(self.timing.noise_dbfs)))
            colour = str(rng.choice(["white", "pink", "brown"]))
            clip = clip + _heard_noise(rng, colour, clip.size, noise_db)
        clip = _telephone_band(clip)
        if rng.random() < 0.7:
            clip = _mulaw_round_trip(clip)
        return clip, noise_db, colour


class _VoicesBehind:
    """People talking in the room behind the callee (an office, a shop, a television):
    espeak-ng voices of the split reading the split's greetings and announcements, one
    after another with short pauses, mixed at a level well under the callee's."""

    def __init__(self, rng: np.random.Generator, split: str) -> None:
        self.rng = rng
        self.variants = _split_pool(_VARIANTS, split)
        self.texts = [
            (language, text)
            for pools in (_GREETINGS, _ANNOUNCEMENTS)
            for language, pool in pools.items()
            for text in _split_pool(pool, split)
        ]

    def talker(self, n: int) -> Signal:
        rng = self.rng
        parts: list[Signal] = [np.zeros(int(rng.integers(0, SAMPLE_RATE // 2)))]
        while sum(part.size for part in parts) < n:
            language, text = self.texts[int(rng.integers(len(self.texts)))]
            name, variant = _voice(rng, language, self.variants)
            speed, pitch = int(rng.integers(140, 200)), int(rng.integers(25, 75))
            parts.append(_samples(_speak_cached(text, f"{name}+{variant}", speed, pitch)))
            parts.append(np.zeros(int(rng.integers(SAMPLE_RATE // 20, SAMPLE_RATE // 2))))
        # Start somewhere inside the talk, not at its first word.
        talk = np.concatenate(parts)
        offset = int(rng.integers(0, max(1, talk.size - n)))
        return talk[offset : offset + n]

    def voices(self, n: int, level_dbfs: float, talkers: int) -> Signal:
        mixed = sum((_set_rms(self.talker(n), 0.0) for _ in range(talkers)), np.zeros(n))
        return _set_rms(mixed, level_dbfs)


def _trim(speech: Signal) -> Signal:
    loud = np.flatnonzero(np.abs(speech) > 0.003)
    if loud.size == 0:
        return speech
    return speech[loud[0] : loud[-1] + 1]


def _set_rms(signal: Signal, level_dbfs: float, *, active: bool = False) -> Signal:
    """Scale to an RMS level; ``active`` measures only the 20 ms frames that carry sound."""
    measured = signal
    if active:
        n = signal.size // 160
        if n:
            frames = signal[: n * 160].reshape(n, 160)
            energy = np.mean(frames**2, axis=1)
            loud = frames[energy > energy.max() * 1e-3]
            measured = loud.ravel() if loud.size else signal
    rms = float(np.sqrt(np.mean(measured**2))) if measured.size else 0.0
    if rms <= 0:
        return signal
    return signal * (10 ** (level_dbfs / 20) / rms)


def _noise(rng: np.random.Generator, colour: str, n: int) -> Signal:
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    freqs[0] = freqs[1]
    exponent = 0.5 if colour == "pink" else 1.0
    shaped: Signal = np.fft.irfft(spectrum / freqs**exponent, n)
    return shaped


def _heard_noise(rng: np.random.Generator, colour: str, n: int, level_dbfs: float) -> Signal:
    """Noise of ``colour`` at ``level_dbfs`` as heard in the telephone band. Scaled on the
    whole spectrum instead, brown noise (nearly all of it under 300 Hz) would be heard
    ~35 dB quieter than its level, pink ~5 dB."""
    return _set_rms(_telephone_band(_noise(rng, colour, n)), level_dbfs)


def _street_noise(rng: np.random.Generator, n: int, level_dbfs: float) -> Signal:
    """Brown noise heard at ``level_dbfs`` in the telephone band, swelling by 6-12 dB for
    0.3-1 s (a raised-cosine rise and fall) every 0.5-2.5 s: traffic passing a person."""
    steady = _heard_noise(rng, "brown", n, level_dbfs)
    swell_db = np.zeros(n)
    at = int(rng.integers(0, SAMPLE_RATE))
    while at < n:
        length = int(rng.uniform(0.3, 1.0) * SAMPLE_RATE)
        end = min(n, at + length)
        shape = float(rng.uniform(6.0, 12.0)) * np.hanning(length)[: end - at]
        swell_db[at:end] = np.maximum(swell_db[at:end], shape)
        at = end + int(rng.uniform(0.5, 2.5) * SAMPLE_RATE)
    swelled: Signal = steady * 10.0 ** (swell_db / 20.0)
    return swelled


def _telephone_band(signal: Signal) -> Signal:
    spectrum = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(signal.size, 1 / SAMPLE_RATE)
    gain = np.clip((freqs - 200) / 100, 0, 1) * np.clip((3500 - freqs) / 100, 0, 1)
    filtered: Signal = np.fft.irfft(spectrum * gain, signal.size)
    return filtered


def _mulaw_round_trip(signal: Signal) -> Signal:
    mu = 255.0
    x = np.clip(signal, -1, 1)
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round(encoded * 127) / 127
    decoded: Signal = np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu
    return decoded


def _kind_counts(size: int) -> list[str]:
    kinds: list[str] = []
    for kind, weight in _MIX:
        kinds += [kind] * round(size * weight)
    while len(kinds) < size:
        kinds.append(_MIX[len(kinds) % len(_MIX)][0])
    return kinds[:size]


def _split_seed(seed: int, split: str) -> int:
    digest = hashlib.sha256(f"{seed}:{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def generate_split(
    out: Path, seed: int, size: int, split: str, timing: CorpusTiming | None = None
) -> list[ClipInfo]:
    """Write ``size`` clips and ``labels.csv`` into ``out`` (created)."""
    require_tools()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(_split_seed(seed, split))
    maker = _ClipMaker(rng, split, timing or TIMINGS["default"])
    makers = {
        "human_short": maker.human_short,
        "human_double": maker.human_double,
        "human_chatty": maker.human_chatty,
        "voicemail": maker.voicemail,
        "voicemail_short_beep": maker.voicemail_short_beep,
        "announcement": maker.announcement,
        "music": maker.music_clip,
        "tone": maker.tone_clip,
    }
    kinds = _kind_counts(size)
    rng.shuffle(kinds)
    # Voices behind a person come from a generator of their own, so adding them left every
    # other clip of a seed as it was.
    behind = _VoicesBehind(np.random.default_rng(_split_seed(seed, f"{split}:voices")), split)
    street = np.random.default_rng(_split_seed(seed, f"{split}:street"))
    infos: list[ClipInfo] = []
    for index, kind in enumerate(kinds):
        language = str(rng.choice(["ru", "en", "cmn"]))
        maker.last_voice = "-"
        parts, note = makers[kind](language)
        clip = np.concatenate(parts)
        total = round(CLIP_MS * SAMPLE_RATE / 1000)
        clip = np.concatenate([clip, np.zeros(max(0, total - clip.size))])[:total]
        if kind.startswith("human") and behind.rng.random() < maker.timing.voices_share:
            level = float(behind.rng.choice(list(maker.timing.voices_dbfs)))
            talkers = int(behind.rng.integers(1, 4))
            clip = clip + behind.voices(clip.size, level, talkers)
            people = "1 voice" if talkers == 1 else f"{talkers} voices"
            note = f"{note} +{people} behind at {level:g} dBFS"
        if kind.startswith("human") and street.random() < maker.timing.street_share:
            level = float(street.choice(list(maker.timing.street_dbfs)))
            clip = clip + _street_noise(street, clip.size, level)
            note = f"{note} +street noise at {level:g} dBFS"
        clip, noise_db, colour = maker.channel(clip)
        name = f"{split}-{index:04d}-{kind}.wav"
        write_wav(out / name, to_pcm(clip))
        label = "HUMAN" if kind.startswith("human") else "MACHINE"
        infos.append(
            ClipInfo(name, label, kind, language, maker.last_voice, noise_db, f"{note} [{colour}]")
        )
    with (out / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "kind", "language", "voice", "noise_dbfs", "note"])
        for info in infos:
            noise = "" if info.noise_dbfs is None else f"{info.noise_dbfs:g}"
            writer.writerow(
                [info.file, info.label, info.kind, info.language, info.voice, noise, info.note]
            )
    return infos


def generate_corpus(
    out: Path,
    seed: int,
    size: int,
    validation_share: float = 0.3,
    timing: CorpusTiming | None = None,
) -> dict[str, list[ClipInfo]]:
    """``out/train`` and ``out/validation``; ``size`` clips in all, with ``timing`` (the
    default mix when None)."""
    if size < 2:
        msg = f"--size {size} refused; accepted: at least 2 clips"
        raise ValueError(msg)
    if not 0 < validation_share < 1:
        msg = f"validation share {validation_share} refused; accepted: between 0 and 1"
        raise ValueError(msg)
    n_validation = max(1, round(size * validation_share))
    return {
        "train": generate_split(out / "train", seed, size - n_validation, "train", timing),
        "validation": generate_split(out / "validation", seed, n_validation, "validation", timing),
    }

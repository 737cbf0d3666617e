"""The ``hold_program`` FastAGI hook: continuous music for a held customer on Asterisk, with
the hold policy's announcements at their exact offsets.

Why this mechanism (measured on Asterisk 22, ``tests/traces/asterisk-22/README.md`` §04;
the full argument is in ``docs/hold.md``):

- AMI has no "play a file to a channel" action. A ``Local`` channel whose ``;2`` half runs
  ``ChanSpy(<held>,qwE)`` is heard by the held party (04a), **but** the moment any spy
  attaches, Asterisk stops the held party's music on hold and never restarts it (04a, 04d):
  a whisper over MOH leaves silence until Unhold.
- ``musiconhold.conf`` ``announcement=`` (04b) plays a fixed file when MOH starts and between
  files: not at the policy's times, and the same words every time.
- One whisper channel that carries *all* of the hold audio works (04e): the announcement,
  then music, then the next announcement, with no silent second. But ``MusicOnHold()`` inside
  it is not heard (-120 dBFS for the whole step): music must be played as files.

So the adapter originates, per held leg, ``Local/hold@pbxagent-hold`` whose ``;2`` half
spies on the held channel with ``qwE`` and whose ``;1`` half runs this hook. The hook plays
the program's announcements with ``STREAM FILE`` and fills every gap with the music file,
played from a sample offset so that the segment ends exactly when the next announcement is
due: ``STREAM FILE <music> "" <offset>`` plays from ``offset`` to the end of the file
(res_agi.c ``handle_streamfile``: ``ast_seekstream(fs, sample_offset, SEEK_SET)``), so for a
gap of ``g`` seconds and a file of ``L`` seconds the hook first plays the last ``g mod L``
seconds, then whole files: the end of one play and the start of the next are the file's own
loop point, so the music never jumps inside a segment. The offset is counted in samples of
the file Asterisk opens, which is why the music must exist in exactly one format: an 8 kHz
16-bit mono ``.wav`` whose header gives the length (``read_wav_info``). The file is chosen
by the held channel's music on hold class (``hold-music-<class>``, else ``hold-music``), read
again before every segment: Asterisk reports the class just after the program was started.

Timing: each announcement's time is ``command.started_at + at_s`` on the daemon's clock
(the moment the hold began). Before every segment the hook reads the clock again, so the
round trips of the AGI commands never accumulate. A gap shorter than ``MIN_SEGMENT_S`` is
not worth a music segment: the announcement starts up to that much early instead.
Prompts another rule hands to the program (``program.injected``) are played at the next
segment boundary, so they wait at most one music file (keep the music file short, 10-30 s).
When a repeated reminder is overdue and the next one is already due too (after such a
prompt, or a stall), the older one is skipped: the customer never hears the same reminder
twice in a row.

The program ends when the adapter hangs its channel up (``StopHoldProgram`` at the end of
the hold): the running ``STREAM FILE`` returns ``-1`` at once and the hook returns; when the
adapter marks the program stopped the hook issues no further command. Invariants: exactly
one program per held leg (the adapter's); no ``MusicOnHold()`` and no ``SET MUSIC``; every
value sent goes through the AGI encoder.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog

from pbx_agent.errors import ChannelHungUp, ConfigError
from pbx_agent.model.hooks import HookSession, HookSpec

if TYPE_CHECKING:
    from pbx_agent.clock import Clock
    from pbx_agent.config import Config
    from pbx_agent.daemon import Daemon
    from pbx_agent.model.commands import StartHoldProgram
    from pbx_agent.model.events import LegId
    from pbx_agent.pbx.asterisk import HoldProgram

log = structlog.get_logger("pbx_agent.asterisk")

HOOK_NAME = "hold_program"
# A music segment shorter than this is not played: the announcement starts that much early.
MIN_SEGMENT_S = 0.05
# The longest hold the hook serves before its deadline ends it (the FastAGI server's deadline).
DEFAULT_MAX_HOLD_S = 4 * 3600.0
# Asterisk's format_wav plays 8 kHz 16-bit mono PCM (.wav); wav16 is 16 kHz (.wav16).
ASTERISK_WAV_RATES = (8000, 16000)
_HEADER_READ_BYTES = 1 << 16
# The music file: <sounds_dir>/hold-music.wav on the daemon's side, <asterisk prefix>hold-music
# on Asterisk's (the same file, copied into Asterisk's sounds directory). A held channel whose
# music on hold class (CHANNEL(musicclass), reported as MusicOnHoldStart's Class) is <class>
# hears hold-music-<class> instead, when that file exists beside the default one.
MUSIC_STEM = "hold-music"
# musiconhold.conf section names as a file name can carry them.
MUSIC_CLASS_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
# Assumed when the daemon cannot read the music file's header (the lab, a missing copy).
DEFAULT_MUSIC_LENGTH_S = 30.0


# ------------------------------------------------------------------------------ WAV headers


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a RIFF/WAVE header says about a PCM file."""

    sample_rate: int
    channels: int
    bits_per_sample: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def parse_wav_header(data: bytes, *, what: str = "WAV file") -> WavInfo:
    """Read the ``fmt `` and ``data`` chunks of a RIFF/WAVE file's first bytes.

    Raises ``ConfigError`` naming ``what`` when the bytes are not a PCM WAVE file Asterisk's
    ``wav`` format can play (16-bit mono PCM at 8 or 16 kHz).
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        msg = f"{what}: not a RIFF/WAVE file; accepted: a 8 kHz 16-bit mono PCM .wav"
        raise ConfigError(msg)
    pos = 12
    fmt: tuple[int, int, int, int, int] | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if body + 16 > len(data):
                break
            tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from(
                "<HHIIHH", data, body
            )
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if fmt is None:
                msg = (
                    f"{what}: the data chunk comes before the fmt chunk; accepted: a standard .wav"
                )
                raise ConfigError(msg)
            return _checked(what, fmt, size)
        pos = body + size + (size & 1)  # chunks are word-aligned
    msg = f"{what}: no fmt and data chunks in the header; accepted: a standard PCM .wav"
    raise ConfigError(msg)


def _checked(what: str, fmt: tuple[int, int, int, int, int], data_size: int) -> WavInfo:
    tag, channels, rate, block_align, bits = fmt
    extensible = 0xFFFE
    if tag not in (1, extensible) or bits != 16 or channels != 1:
        msg = (
            f"{what}: format tag {tag}, {channels} channel(s), {bits} bits; accepted: "
            "16-bit mono PCM (Asterisk's wav format)"
        )
        raise ConfigError(msg)
    if rate not in ASTERISK_WAV_RATES:
        msg = f"{what}: sample rate {rate} Hz; accepted: 8000 (.wav) or 16000 (.wav16)"
        raise ConfigError(msg)
    frames = data_size // max(block_align, 1)
    if frames <= 0:
        msg = f"{what}: no audio in the data chunk; accepted: a file with sound in it"
        raise ConfigError(msg)
    return WavInfo(sample_rate=rate, channels=channels, bits_per_sample=bits, frames=frames)


def read_wav_info(path: Path) -> WavInfo:
    """The header of the WAV file at ``path`` (read once, at start-up)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_READ_BYTES)
    except OSError as exc:
        msg = f"{path}: cannot be read ({exc.strerror}); accepted: a readable .wav file"
        raise ConfigError(msg) from exc
    return parse_wav_header(head, what=str(path))


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class HoldMusic:
    """The music file of hold programs: the name Asterisk plays and its known length."""

    sound: str  # as Asterisk names it: no extension ("pbx-agent/hold-music")
    length_s: float
    sample_rate: int = 8000

    def __post_init__(self) -> None:
        if not self.sound or self.length_s < 1:
            msg = (
                f"hold music {self.sound!r} of {self.length_s:g} s; accepted: a named file of "
                "at least 1 s"
            )
            raise ConfigError(msg)

    @classmethod
    def from_wav(cls, sound: str, path: Path) -> HoldMusic:
        """``sound`` as Asterisk plays it, its length read from the same file at ``path``."""
        info = read_wav_info(path)
        return cls(sound=sound, length_s=info.duration_s, sample_rate=info.sample_rate)


@dataclass(frozen=True, slots=True)
class Cue:
    """One announcement of a program: ``prompt`` due at epoch time ``at``."""

    at: float
    prompt: str
    repeated: bool  # one of the repetitions after the fixed announcements


class CueSchedule:
    """The announcements of a ``StartHoldProgram``, fixed ones then the repetition, by index."""

    def __init__(self, command: StartHoldProgram) -> None:
        self._start = command.started_at
        self._fixed = command.announcements
        self._repeat = command.repeat
        every = command.repeat_every_s
        self._every = every if every is not None and every > 0 else None
        self._last_fixed = self._fixed[-1].at_s if self._fixed else 0.0

    def cue(self, index: int) -> Cue | None:
        if index < len(self._fixed):
            entry = self._fixed[index]
            return Cue(self._start + entry.at_s, entry.prompt, repeated=False)
        if self._repeat is None or self._every is None:
            return None
        k = index - len(self._fixed) + 1
        return Cue(self._start + self._last_fixed + k * self._every, self._repeat, repeated=True)


@dataclass(frozen=True, slots=True)
class MusicSegment:
    """One ``STREAM FILE`` of the music: from ``offset_samples`` to the end of the file."""

    offset_samples: int
    duration_s: float


def music_segment(gap_s: float | None, music: HoldMusic) -> MusicSegment | None:
    """The next music segment for a gap of ``gap_s`` before the next announcement.

    ``None`` gap (nothing more to announce): the whole file. The tail ``gap mod length``
    comes first, whole files after it, so the segments join at the file's loop point; a
    piece shorter than ``MIN_SEGMENT_S`` is left out (``None`` when nothing is worth playing).
    """
    length = music.length_s
    if gap_s is None:
        return MusicSegment(0, length)
    if gap_s < MIN_SEGMENT_S:
        return None
    tail = gap_s % length
    if tail < MIN_SEGMENT_S:
        if gap_s < length:
            return None
        return MusicSegment(0, length)
    offset = round((length - tail) * music.sample_rate)
    return MusicSegment(max(offset, 0), tail)


# ------------------------------------------------------------------------------ the hook


class ProgramSource(Protocol):
    """Where the hook finds the program its session was started for (the adapter)."""

    def program(self, program_id: str) -> HoldProgram | None: ...


PromptDone = Callable[["LegId", str, bool], None]


class HoldProgramHook:
    """Plays one hold program per FastAGI session (``agi://.../hold_program?program=<id>``)."""

    name = HOOK_NAME

    def __init__(
        self,
        programs: ProgramSource,
        *,
        music: HoldMusic | Mapping[str, HoldMusic],
        sounds: Callable[[str], str],
        clock: Clock,
        on_prompt_done: PromptDone | None = None,
        max_hold_s: float = DEFAULT_MAX_HOLD_S,
    ) -> None:
        self._programs = programs
        self._music = {"": music} if isinstance(music, HoldMusic) else dict(music)
        if "" not in self._music:
            msg = "hold music: no default (class '') music file; accepted: a default entry"
            raise ConfigError(msg)
        self._sounds = sounds
        self._clock = clock
        self._on_prompt_done = on_prompt_done
        self.max_hold_s = max_hold_s

    def spec(self) -> HookSpec:
        """The hook as the FastAGI server registers it. Its deadline is the longest hold;
        there is no safe default to apply: when the hook ends, the helper channel ends."""
        return HookSpec(name=HOOK_NAME, handler=self, deadline_s=self.max_hold_s)

    def music_for(self, music_class: str) -> HoldMusic:
        return self._music.get(music_class) or self._music[""]

    def correct_music(self, wrong: HoldMusic, right: HoldMusic) -> None:
        """Remember a music length the switch revealed, for every later program."""
        for music_class, music in list(self._music.items()):
            if music == wrong:
                self._music[music_class] = right

    async def __call__(self, session: HookSession) -> None:
        program_id = session.params.get("program", "")
        program = self._programs.program(program_id)
        if program is None:
            log.error(
                "hold_program_unknown",
                program=program_id,
                channel=session.channel,
                reason="no running hold program has this id (daemon restarted?)",
            )
            return
        await _Runner(self, program, session).run()

    # used by _Runner
    def sound(self, prompt: str) -> str:
        return self._sounds(prompt)

    def now(self) -> float:
        return self._clock.now()

    def prompt_done(self, leg: LegId, prompt: str, ok: bool) -> None:
        if self._on_prompt_done is not None:
            self._on_prompt_done(leg, prompt, ok)


class _Runner:
    """One program's playback on one session."""

    def __init__(self, hook: HoldProgramHook, program: HoldProgram, session: HookSession) -> None:
        self.hook = hook
        self.program = program
        self.session = session
        self.schedule = CueSchedule(program.command)
        self.music = hook.music_for(program.music_class)
        self.index = 0
        self.music_failed = False
        self.fields = {"program": program.id, "leg": program.leg, "channel": session.channel}

    @property
    def over(self) -> bool:
        return self.program.stopped.is_set() or self.session.hung_up

    async def run(self) -> None:
        log.info("hold_program_started", music=self.music.sound, **self.fields)
        try:
            await self.session.answer()
            while not self.over:
                if not self.program.injected.empty():
                    prompt = self.program.injected.get_nowait()
                    ok = await self._play(prompt)
                    self.hook.prompt_done(self.program.leg, prompt, ok)
                    continue
                cue = self._due_cue()
                if cue is not None:
                    await self._announce(cue)
                    continue
                if not await self._fill_gap():
                    break
        except ChannelHungUp:
            # The daemon hung the program's channel up at the end of the hold (the usual
            # way a program ends) while a command was running or about to be sent.
            pass
        finally:
            log.info("hold_program_ended", hung_up=self.session.hung_up, **self.fields)

    def _due_cue(self) -> Cue | None:
        """The announcement to play now, skipping a repeated one the next already overtook."""
        now = self.hook.now()
        while True:
            cue = self.schedule.cue(self.index)
            if cue is None or cue.at - MIN_SEGMENT_S > now:
                return None
            following = self.schedule.cue(self.index + 1)
            if cue.repeated and following is not None and following.at - MIN_SEGMENT_S <= now:
                log.info(
                    "hold_cue_skipped",
                    prompt=cue.prompt,
                    late_s=round(now - cue.at, 3),
                    **self.fields,
                )
                self.index += 1
                continue
            return cue

    async def _announce(self, cue: Cue) -> None:
        late = self.hook.now() - cue.at
        log.info("hold_cue", prompt=cue.prompt, late_ms=round(late * 1000), **self.fields)
        self.index += 1
        await self._play(cue.prompt)

    async def _play(self, prompt: str) -> bool:
        result = await self.session.play(self.hook.sound(prompt))
        if result.failed and not self.over:
            log.warning("hold_prompt_failed", prompt=prompt, **self.fields)
        return not result.failed

    def _choose_music(self) -> None:
        """The held channel's class may become known after the program started (Asterisk
        reports ``MusicOnHoldStart`` just after ``Hold``): the next segment plays its music."""
        music = self.hook.music_for(self.program.music_class)
        if music != self.music:
            log.info(
                "hold_music_class",
                music_class=self.program.music_class,
                music=music.sound,
                **self.fields,
            )
            self.music = music

    async def _fill_gap(self) -> bool:
        """Music until the next announcement; False when the session is over."""
        self._choose_music()
        cue = self.schedule.cue(self.index)
        gap = None if cue is None else cue.at - self.hook.now()
        if self.music_failed:
            # Silence is all that is left: wait for the announcement, at least keep its time.
            try:
                await self.session.wait_for_digit(gap if gap is not None else self.music.length_s)
            except ChannelHungUp:
                return False
            return not self.over
        segment = music_segment(gap, self.music)
        if segment is None:
            return True  # the announcement is due within MIN_SEGMENT_S
        result = await self.session.play(self.music.sound, offset_samples=segment.offset_samples)
        if result.failed and not self.over:
            self.music_failed = True
            log.error(
                "hold_music_failed",
                music=self.music.sound,
                reason="the music file could not be played; announcements go on in silence",
                **self.fields,
            )
        elif not self.over and result.digit is None:
            self._check_music_length(segment, result.offset_samples)
        return not self.over

    def _check_music_length(self, segment: MusicSegment, endpos: int) -> None:
        """A segment that ran to its end stopped at the file's real end (``endpos``).

        If that is not the length the daemon assumed (its local copy of the music is
        missing or differs from the switch's), every segment would end early or late and,
        with an offset past the real end, return at once: the program would spin through
        STREAM FILE commands while the caller hears nothing. So the length is corrected
        from what the switch reports.
        """
        rate = self.music.sample_rate
        assumed = round(self.music.length_s * rate)
        if endpos <= 0 or abs(endpos - assumed) <= rate // 4:
            return
        real_s = endpos / rate
        if endpos < segment.offset_samples or real_s < 1:
            # Played nothing (the offset was past the end) or a file too short to fill gaps
            # with: fall back to playing it from the start.
            real_s = max(real_s, 1.0)
        log.warning(
            "hold_music_length_corrected",
            music=self.music.sound,
            assumed_s=round(self.music.length_s, 3),
            real_s=round(real_s, 3),
            **self.fields,
        )
        corrected = HoldMusic(self.music.sound, real_s, rate)
        self.hook.correct_music(self.music, corrected)
        self.music = corrected


# ------------------------------------------------------------------------------ wiring


class _DaemonPrograms:
    """The daemon's adapter, looked up at call time (hooks are built before it starts)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def program(self, program_id: str) -> HoldProgram | None:
        adapter = self._daemon.adapter
        return adapter.program(program_id) if adapter is not None else None


@dataclass(frozen=True, slots=True)
class MusicFiles:
    """The hold music files in a sounds folder: class '' is the default ``hold-music.wav``,
    every ``hold-music-<class>.wav`` is the music of that class; ``misnamed`` are the files
    that look meant as class music but whose class no musiconhold.conf section can have."""

    by_class: Mapping[str, Path]
    misnamed: tuple[Path, ...] = ()


def hold_music_files(sounds_dir: Path) -> MusicFiles:
    """The default hold music file (present or not) and the class music files beside it."""
    by_class: dict[str, Path] = {"": sounds_dir / f"{MUSIC_STEM}.wav"}
    misnamed: list[Path] = []
    try:
        found = sorted(sounds_dir.glob(f"{MUSIC_STEM}-*.wav"))
    except OSError:
        found = []
    for path in found:
        music_class = path.stem[len(MUSIC_STEM) + 1 :]
        if MUSIC_CLASS_NAME.fullmatch(music_class):
            by_class[music_class] = path
        else:
            misnamed.append(path)
    return MusicFiles(by_class, tuple(misnamed))


def hold_music_for(config: Config) -> dict[str, HoldMusic]:
    """The site's hold music by class: the Asterisk name of each file and its length read
    from the local copy. The default ('') is always there (assumed 30 s when unreadable); a
    class file that cannot be read is left out, so that class hears the default music."""
    prefix = config.prompts.pbx_prefix.asterisk
    files = hold_music_files(config.prompts.sounds_dir)
    for path in files.misnamed:
        log.warning(
            "hold_music_class_ignored",
            path=str(path),
            reason="the part after 'hold-music-' is not a music on hold class name",
            accepted=f"hold-music-<class>.wav, <class> matching {MUSIC_CLASS_NAME.pattern}",
        )
    music: dict[str, HoldMusic] = {}
    for music_class, path in files.by_class.items():
        stem = path.stem
        sound = f"{prefix}{stem}"
        try:
            music[music_class] = HoldMusic.from_wav(sound, path)
        except ConfigError as exc:
            if music_class:
                log.error(
                    "hold_music_class_ignored",
                    path=str(path),
                    music_class=music_class,
                    error=str(exc),
                    reason="this class hears the default hold music instead",
                )
                continue
            log.warning(
                "hold_music_unmeasured",
                sound=sound,
                path=str(path),
                error=str(exc),
                assumed_length_s=DEFAULT_MUSIC_LENGTH_S,
                advice="put the hold music (8 kHz 16-bit mono .wav, the same file Asterisk "
                "plays) at this path, or announcements will be off by the difference in length",
            )
            music[music_class] = HoldMusic(sound, DEFAULT_MUSIC_LENGTH_S)
    classes = sorted(c for c in music if c)
    if classes:
        log.info("hold_music_classes", classes=classes)
    return music


def hold_program_hook_factory(daemon: Daemon) -> HookSpec | None:
    """For ``pbx_agent.daemon.HOOK_FACTORIES``: the ``hold_program`` hook, on Asterisk."""
    from pbx_agent.model.events import PromptFinished  # noqa: PLC0415 - only for wiring
    from pbx_agent.prompts import sound_name  # noqa: PLC0415 - the composition root's helper

    config = daemon.config
    if config.pbx.kind not in ("asterisk", "simulated"):
        return None
    clock = daemon.clock
    if clock is None:
        msg = "the hold_program hook needs the daemon's clock; build hooks after start()"
        raise ConfigError(msg)

    def prompt_done(leg: LegId, prompt: str, ok: bool) -> None:
        daemon.engine.handle(PromptFinished(leg, prompt, ok))

    hook = HoldProgramHook(
        _DaemonPrograms(daemon),
        music=hold_music_for(config),
        sounds=lambda key: sound_name(config, key, "asterisk"),
        clock=clock,
        on_prompt_done=prompt_done,
    )
    return hook.spec()


__all__ = [
    "HOOK_NAME",
    "MIN_SEGMENT_S",
    "Cue",
    "CueSchedule",
    "HoldMusic",
    "HoldProgramHook",
    "MusicFiles",
    "MusicSegment",
    "ProgramSource",
    "WavInfo",
    "hold_music_files",
    "hold_music_for",
    "hold_program_hook_factory",
    "music_segment",
    "parse_wav_header",
    "read_wav_info",
]

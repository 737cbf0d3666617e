"""The hold program's timing: WAV lengths, music segments sized from sample offsets, and the
hook's sequence of plays against a session that plays sounds the way res_agi does (from the
offset to the end of the file) on a manual clock."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from pbx_agent.clock import ManualClock
from pbx_agent.config import Config
from pbx_agent.errors import ChannelHungUp, ConfigError
from pbx_agent.model.commands import HoldAnnouncement, StartHoldProgram
from pbx_agent.model.events import CallId, LegId
from pbx_agent.model.hooks import PlayResult
from pbx_agent.pbx.asterisk import HoldProgram
from pbx_agent.pbx.asterisk_hold import (
    MIN_SEGMENT_S,
    CueSchedule,
    HoldMusic,
    HoldProgramHook,
    hold_music_files,
    hold_music_for,
    music_segment,
    parse_wav_header,
    read_wav_info,
)

T0 = 1_795_339_200.0
MUSIC = HoldMusic("pbx-agent/hold-music", 20.0)
LENGTHS = {"zh/hold-announce": 2.5, "zh/hold-reminder": 3.0, "zh/hold-callback_offer": 4.0}


def wav_bytes(seconds: float, rate: int = 8000, channels: int = 1, bits: int = 16) -> bytes:
    frames = int(seconds * rate)
    block = channels * bits // 8
    data_size = frames * block
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + data_size)
        + b"WAVE"
        + b"LIST"
        + struct.pack("<I", 4)
        + b"INFO"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
        + b"\0" * min(data_size, 64)
    )


# ------------------------------------------------------------------ WAV headers


def test_wav_length_from_the_header() -> None:
    """The music's length comes from its data chunk; other chunks before fmt are skipped."""
    info = parse_wav_header(wav_bytes(12.5))
    assert (info.sample_rate, info.channels, info.bits_per_sample) == (8000, 1, 16)
    assert info.duration_s == 12.5


def test_read_wav_info_from_a_file(tmp_path: Path) -> None:
    """The file on disk is read once for its header."""
    path = tmp_path / "hold-music.wav"
    path.write_bytes(wav_bytes(3.0, rate=16000))
    assert read_wav_info(path).duration_s == 3.0
    assert HoldMusic.from_wav("pbx-agent/hold-music", path).sample_rate == 16000


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (b"not a wav file at all", "RIFF/WAVE"),
        (wav_bytes(1.0, channels=2), "16-bit mono"),
        (wav_bytes(1.0, bits=8), "16-bit mono"),
        (wav_bytes(1.0, rate=44100), "8000"),
        (wav_bytes(0.0), "no audio"),
    ],
)
def test_unplayable_wav_is_a_config_error(data: bytes, names: str) -> None:
    """A file Asterisk's wav format cannot play is refused, saying what is accepted."""
    with pytest.raises(ConfigError, match=names):
        parse_wav_header(data, what="hold music")


def test_missing_music_file_is_a_config_error(tmp_path: Path) -> None:
    """A music path that does not exist is reported with the path."""
    with pytest.raises(ConfigError, match=r"hold-music\.wav"):
        read_wav_info(tmp_path / "hold-music.wav")


# ------------------------------------------------------------------ music segments


def test_a_gap_shorter_than_the_file_plays_the_files_tail() -> None:
    """7.5 s before the next announcement: play the last 7.5 s of a 20 s file (offset 100000)."""
    segment = music_segment(7.5, MUSIC)
    assert segment is not None
    assert segment.offset_samples == round(12.5 * 8000)
    assert segment.duration_s == 7.5


def test_a_long_gap_plays_the_tail_first_then_whole_files() -> None:
    """47.5 s: the last 7.5 s first, so the two following whole files join at the loop point."""
    first = music_segment(47.5, MUSIC)
    assert first is not None and first.offset_samples == 100_000
    assert music_segment(40.0, MUSIC) == music_segment(20.0, MUSIC)
    whole = music_segment(40.0, MUSIC)
    assert whole is not None and (whole.offset_samples, whole.duration_s) == (0, 20.0)


def test_a_sliver_is_not_played() -> None:
    """Less than MIN_SEGMENT_S before the announcement: no music at all."""
    assert music_segment(MIN_SEGMENT_S / 2, MUSIC) is None


def test_no_next_announcement_plays_whole_files() -> None:
    """After the last announcement (no repetition) the music loops whole."""
    assert music_segment(None, MUSIC) == music_segment(20.0, MUSIC)


@given(gap=st.floats(MIN_SEGMENT_S, 3600), length=st.floats(1, 600))
def test_segments_fill_the_gap_exactly(gap: float, length: float) -> None:
    """Playing segments one after another ends within MIN_SEGMENT_S of the gap, never past it."""
    music = HoldMusic("m", length)
    left = gap
    for _ in range(10_000):
        segment = music_segment(left, music)
        if segment is None:
            break
        assert 0 <= segment.offset_samples < length * 8000
        assert segment.duration_s <= left + 1e-6
        left -= segment.duration_s
    assert -1e-6 <= left < MIN_SEGMENT_S


# ------------------------------------------------------------------ cue schedule


def command(
    *announcements: tuple[float, str], repeat: str | None = None, every: float | None = None
) -> StartHoldProgram:
    return StartHoldProgram(
        leg=LegId("c.1"),
        started_at=T0,
        announcements=tuple(HoldAnnouncement(at, p) for at, p in announcements),
        repeat=repeat,
        repeat_every_s=every,
    )


def test_schedule_lists_fixed_then_repeated_announcements() -> None:
    """Fixed announcements in order, then the repetition from the last fixed offset."""
    schedule = CueSchedule(command((0, "a"), (10, "r"), repeat="r", every=10))
    cues = [schedule.cue(i) for i in range(4)]
    assert [(c.at - T0, c.prompt, c.repeated) for c in cues if c] == [
        (0, "a", False),
        (10, "r", False),
        (20, "r", True),
        (30, "r", True),
    ]


def test_schedule_without_repetition_ends() -> None:
    """No repeat: after the fixed announcements there is nothing more."""
    schedule = CueSchedule(command((0, "a")))
    assert schedule.cue(1) is None


# ------------------------------------------------------------------ the hook


@dataclass
class PlayingSession:
    """A FastAGI session as res_agi behaves: STREAM FILE plays from the offset to the end of
    the file and returns; the clock moves by what was played. The channel can be hung up at a
    given time (the adapter's Hangup at the end of the hold)."""

    clock: ManualClock
    lengths: dict[str, float]
    hang_up_at: float | None = None
    params: dict[str, str] = field(default_factory=lambda: {"program": "p1"})
    plays: list[tuple[float, str, int]] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    hung_up: bool = False
    hook: str = "hold_program"
    leg: LegId = field(default_factory=lambda: LegId("pbxagent-hold-1"))
    call: CallId = field(default_factory=lambda: CallId("pbxagent-hold-1"))
    channel: str = "Local/hold@pbxagent-hold-00000001;1"
    caller_number: str = ""
    caller_name: str = ""
    dialed: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    answered: bool = False

    async def get_variable(self, name: str) -> str | None:
        return None

    async def set_variable(self, name: str, value: str) -> None:
        return None

    async def answer(self) -> None:
        self.answered = True

    async def play(
        self, sound: str, *, escape_digits: str = "", offset_samples: int = 0
    ) -> PlayResult:
        await asyncio.sleep(0)
        if self.hung_up:
            return PlayResult(None, 0, failed=True)
        self.plays.append((round(self.clock.now() - T0, 3), sound, offset_samples))
        length = self.lengths.get(sound)
        if length is None:
            return PlayResult(None, 0, failed=True)
        duration = max(length - offset_samples / 8000, 0)
        end = self.clock.now() + duration
        if self.hang_up_at is not None and end >= self.hang_up_at:
            self.clock.advance_to(self.hang_up_at)
            self.hung_up = True
            return PlayResult(None, offset_samples, failed=True)
        self.clock.advance_to(end)
        return PlayResult(None, int(length * 8000))

    async def wait_for_digit(self, timeout_s: float) -> str | None:
        await asyncio.sleep(0)
        self.waits.append(timeout_s)
        end = self.clock.now() + timeout_s
        if self.hang_up_at is not None and end >= self.hang_up_at:
            self.clock.advance_to(self.hang_up_at)
            self.hung_up = True
            raise ChannelHungUp("WAIT FOR DIGIT", "the channel went away (result=-1)")
        self.clock.advance_to(end)
        return None

    async def hangup(self) -> None:
        self.hung_up = True


class Programs:
    def __init__(self, program: HoldProgram) -> None:
        self.running = program

    def program(self, program_id: str) -> HoldProgram | None:
        return self.running if program_id == self.running.id else None


def make_program(cmd: StartHoldProgram) -> HoldProgram:
    return HoldProgram("p1", cmd.leg, "PJSIP/alice-00000001", cmd, "pbxagent-hold-1")


def zh_command() -> StartHoldProgram:
    return command(
        (0, "hold.announce"),
        (10, "hold.reminder"),
        (20, "hold.reminder"),
        repeat="hold.reminder",
        every=10,
    )


def sounds(prompt: str) -> str:
    return "zh/" + prompt.replace(".", "-")


async def run_hook(
    cmd: StartHoldProgram,
    *,
    hang_up_at: float,
    start_delay: float = 0.1,
    lengths: dict[str, float] | None = None,
    inject: list[str] | None = None,
) -> tuple[PlayingSession, list[tuple[LegId, str, bool]]]:
    clock = ManualClock(start=T0 + start_delay)
    all_lengths = {**LENGTHS, MUSIC.sound: MUSIC.length_s, **(lengths or {})}
    session = PlayingSession(clock, all_lengths, hang_up_at=T0 + hang_up_at)
    program = make_program(cmd)
    for prompt in inject or []:
        program.injected.put_nowait(prompt)
    done: list[tuple[LegId, str, bool]] = []
    hook = HoldProgramHook(
        Programs(program),
        music=MUSIC,
        sounds=sounds,
        clock=clock,
        on_prompt_done=lambda leg, prompt, ok: done.append((leg, prompt, ok)),
    )
    await asyncio.wait_for(hook(session), 5)
    return session, done


async def test_announcements_start_at_their_exact_offsets_with_music_between() -> None:
    """zh: announce at once, music sized to end at 10 s, the reminder at 10 s, again at 20 s."""
    session, _ = await run_hook(zh_command(), hang_up_at=25)
    assert session.plays == [
        (0.1, "zh/hold-announce", 0),
        (2.6, "pbx-agent/hold-music", round((20 - 7.4) * 8000)),
        (10.0, "zh/hold-reminder", 0),
        (13.0, "pbx-agent/hold-music", round((20 - 7.0) * 8000)),
        (20.0, "zh/hold-reminder", 0),
        (23.0, "pbx-agent/hold-music", round((20 - 7.0) * 8000)),
    ]


async def test_music_never_uses_music_on_hold() -> None:
    """Every sound the program plays is a file (STREAM FILE), never MusicOnHold/SET MUSIC."""
    session, _ = await run_hook(zh_command(), hang_up_at=25)
    assert {sound for _, sound, _ in session.plays} <= {
        "zh/hold-announce",
        "zh/hold-reminder",
        MUSIC.sound,
    }
    assert session.answered


async def test_long_gaps_loop_whole_files_after_the_tail() -> None:
    """ru: 60 s to the first reminder after a 2.5 s announcement: tail then whole files."""
    ru = command((0, "hold.announce"), (60, "hold.reminder"), repeat="hold.reminder", every=60)
    session, _ = await run_hook(ru, hang_up_at=61, start_delay=0.0)
    assert session.plays == [
        (0.0, "zh/hold-announce", 0),
        (2.5, MUSIC.sound, round((20 - 17.5) * 8000)),
        (20.0, MUSIC.sound, 0),
        (40.0, MUSIC.sound, 0),
        (60.0, "zh/hold-reminder", 0),
    ]


async def test_nothing_is_played_after_the_channel_is_hung_up() -> None:
    """The adapter hangs the program's channel up at the end of the hold: the hook stops."""
    session, _ = await run_hook(zh_command(), hang_up_at=12)
    assert [t for t, _, _ in session.plays] == [0.1, 2.6, 10.0]
    assert session.hung_up


async def test_injected_prompt_plays_at_the_next_boundary_and_is_reported() -> None:
    """A prompt handed to the program plays at the next segment boundary; its end is reported."""
    session, done = await run_hook(zh_command(), hang_up_at=9, inject=["hold.callback_offer"])
    assert session.plays[0][1] == "zh/hold-callback_offer"
    assert done == [(LegId("c.1"), "hold.callback_offer", True)]


async def test_an_overtaken_repeated_reminder_is_skipped() -> None:
    """A stall long enough for two repeated reminders to be due plays only the latest one."""
    cmd = command((0, "hold.announce"), repeat="hold.reminder", every=10)
    # The announcement takes 25 s (a long injected text): reminders at 10 and 20 are both due.
    session, _ = await run_hook(
        cmd, hang_up_at=27, start_delay=0.0, lengths={"zh/hold-announce": 25.0}
    )
    assert [(t, s) for t, s, _ in session.plays[:2]] == [
        (0.0, "zh/hold-announce"),
        (25.0, "zh/hold-reminder"),
    ]


async def test_missing_music_keeps_the_announcements_on_time_in_silence() -> None:
    """If the music file cannot be played, the hook waits silently and still announces on time."""
    clock = ManualClock(start=T0)
    session = PlayingSession(clock, dict(LENGTHS), hang_up_at=T0 + 15)
    hook = HoldProgramHook(
        Programs(make_program(zh_command())), music=MUSIC, sounds=sounds, clock=clock
    )
    await asyncio.wait_for(hook(session), 5)
    assert [(t, s) for t, s, _ in session.plays if s != MUSIC.sound] == [
        (0.0, "zh/hold-announce"),
        (10.0, "zh/hold-reminder"),
    ]
    assert session.waits and session.waits[0] == pytest.approx(7.5)


async def test_unknown_program_plays_nothing() -> None:
    """A session for a program the daemon does not know ends at once."""
    clock = ManualClock(start=T0)
    session = PlayingSession(clock, dict(LENGTHS), params={"program": "nope"})
    hook = HoldProgramHook(
        Programs(make_program(zh_command())), music=MUSIC, sounds=sounds, clock=clock
    )
    await hook(session)
    assert session.plays == []


def test_spec_registers_the_hook_with_the_longest_hold_as_deadline() -> None:
    """The FastAGI registration: name hold_program, deadline = max_hold_s, no safe default."""
    hook = HoldProgramHook(
        Programs(make_program(zh_command())),
        music=MUSIC,
        sounds=sounds,
        clock=ManualClock(),
        max_hold_s=7200,
    )
    spec = hook.spec()
    assert (spec.name, spec.deadline_s, spec.on_timeout) == ("hold_program", 7200, None)


def test_music_class_picks_its_file_or_the_default() -> None:
    """A class with its own file gets it; an unknown class the default."""
    other = HoldMusic("pbx-agent/jazz", 30.0)
    hook = HoldProgramHook(
        Programs(make_program(zh_command())),
        music={"": MUSIC, "jazz": other},
        sounds=sounds,
        clock=ManualClock(),
    )
    assert hook.music_for("jazz") is other
    assert hook.music_for("rock") is MUSIC


async def test_a_class_learned_after_the_start_plays_from_the_next_segment() -> None:
    """Asterisk names the held channel's class (MusicOnHoldStart) after the program started:
    the first music segment after that is the class's file, from the same offset logic."""
    clock = ManualClock(start=T0)
    jazz = HoldMusic("pbx-agent/hold-music-jazz", 20.0)
    lengths = {**LENGTHS, MUSIC.sound: MUSIC.length_s, jazz.sound: jazz.length_s}
    session = PlayingSession(clock, lengths, hang_up_at=T0 + 15)
    program = make_program(zh_command())
    assert program.music_class == ""
    hook = HoldProgramHook(
        Programs(program), music={"": MUSIC, "jazz": jazz}, sounds=sounds, clock=clock
    )
    original = session.play

    async def play(sound: str, *, escape_digits: str = "", offset_samples: int = 0) -> PlayResult:
        result = await original(sound, escape_digits=escape_digits, offset_samples=offset_samples)
        program.music_class = "jazz"  # the adapter, at MusicOnHoldStart, during the announcement
        return result

    session.play = play  # type: ignore[method-assign]
    with capture_logs() as logs:
        await asyncio.wait_for(hook(session), 5)
    assert [(t, s) for t, s, _ in session.plays] == [
        (0.0, "zh/hold-announce"),
        (2.5, jazz.sound),
        (10.0, "zh/hold-reminder"),
        (13.0, jazz.sound),
    ]
    assert [(e["music_class"], e["music"]) for e in logs if e["event"] == "hold_music_class"] == [
        ("jazz", jazz.sound)
    ]


def test_a_program_takes_the_commands_class_until_the_switch_names_one() -> None:
    program = make_program(replace(zh_command(), music_class="sales"))
    assert program.music_class == "sales"


def test_music_files_are_the_default_and_one_per_class(tmp_path: Path) -> None:
    for name in ("hold-music.wav", "hold-music-jazz.wav", "hold-music-a b.wav", "other.wav"):
        (tmp_path / name).write_bytes(wav_bytes(2.0))
    files = hold_music_files(tmp_path)
    assert dict(files.by_class) == {
        "": tmp_path / "hold-music.wav",
        "jazz": tmp_path / "hold-music-jazz.wav",
    }
    assert files.misnamed == (tmp_path / "hold-music-a b.wav",)


def test_site_music_reads_each_class_and_leaves_out_an_unplayable_one(tmp_path: Path) -> None:
    """Each class file's length comes from its header; a class file Asterisk could not play is
    left out (that class hears the default), with the reason logged."""
    (tmp_path / "hold-music.wav").write_bytes(wav_bytes(12.0))
    (tmp_path / "hold-music-jazz.wav").write_bytes(wav_bytes(25.0))
    (tmp_path / "hold-music-rock.wav").write_bytes(wav_bytes(5.0, rate=44100))
    config = Config.model_validate(
        {"site": {"profile": "ru"}, "prompts": {"sounds_dir": str(tmp_path)}}, context={}
    )
    with capture_logs() as logs:
        music = hold_music_for(config)
    prefix = config.prompts.pbx_prefix.asterisk
    assert music == {
        "": HoldMusic(f"{prefix}hold-music", 12.0),
        "jazz": HoldMusic(f"{prefix}hold-music-jazz", 25.0),
    }
    ignored = [e for e in logs if e["event"] == "hold_music_class_ignored"]
    assert [e["music_class"] for e in ignored] == ["rock"]
    assert "44100 Hz" in ignored[0]["error"]


def test_site_music_without_a_readable_default_assumes_its_length(tmp_path: Path) -> None:
    config = Config.model_validate(
        {"site": {"profile": "ru"}, "prompts": {"sounds_dir": str(tmp_path)}}, context={}
    )
    with capture_logs() as logs:
        music = hold_music_for(config)
    assert list(music) == [""]
    assert music[""].length_s == 30.0
    assert [e["event"] for e in logs] == ["hold_music_unmeasured"]

"""`pbx-agent prompts render` with espeak-ng and SoX, and check-config's prompt file check.

The rendering tests need the OS packages espeak-ng and sox (.ci/run installs them when it
runs as root) and are skipped without them; the checks use WAV files written here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from pbx_agent import cli
from pbx_agent.config import Config, load_config
from pbx_agent.pbx.asterisk_hold import read_wav_info
from pbx_agent.prompts import file_stem
from pbx_agent.sounds import (
    VOICES,
    SoundToolMissingError,
    find_tools,
    phrases_to_render,
    prompt_file_problems,
    render_prompts,
)

TOOLS = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None
needs_tools = pytest.mark.skipif(not TOOLS, reason="espeak-ng and sox are not installed")


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_COMMAND_MODULES", ("prompts", "check_config"))
    for name in [n for n in os.environ if n.upper().startswith("PBX_AGENT_")]:
        monkeypatch.delenv(name)


def site(tmp_path: Path, profile: str = "ru") -> Config:
    return load_config(
        None,
        env={"PBX_AGENT_SITE__PROFILE": profile, "PBX_AGENT_PROMPTS__SOUNDS_DIR": str(tmp_path)},
    )


def write_wav(path: Path, rate: int = 8000, seconds: float = 0.2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * int(rate * seconds))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ru profile rendered once (wav and ulaw); tests work on copies."""
    if not TOOLS:
        pytest.skip("espeak-ng and sox are not installed")
    out = tmp_path_factory.mktemp("sounds")
    render_prompts(load_config(None, env={}), out, formats=("wav", "ulaw"))
    return out


@pytest.fixture
def copy(rendered: Path, tmp_path: Path) -> Path:
    shutil.copytree(rendered, tmp_path / "sounds")
    return tmp_path / "sounds"


@needs_tools
def test_every_phrase_is_rendered_as_8khz_mono_pcm_under_its_stable_name(rendered: Path) -> None:
    """One .wav (8 kHz, mono, 16-bit, with sound) and one .ulaw per phrase key."""
    texts, _ = phrases_to_render(load_config(None, env={}))
    for key in texts:
        wav = rendered / "ru" / f"{file_stem(key)}.wav"
        info = read_wav_info(wav)
        assert (info.sample_rate, info.channels, info.bits_per_sample) == (8000, 1, 16), key
        assert info.duration_s > 0.3, key
        assert (rendered / "ru" / f"{file_stem(key)}.ulaw").stat().st_size > 2400, key
    manifest = json.loads((rendered / "ru" / "prompts.json").read_text(encoding="utf-8"))
    assert manifest["voice"] == "ru"
    assert manifest["prompts"]["hold.announce"]["text"] == texts["hold.announce"]


@needs_tools
def test_rendering_again_leaves_unchanged_files_alone(copy: Path) -> None:
    """Same phrases, same files: nothing is written the second time."""
    result = render_prompts(load_config(None, env={}), copy, formats=("wav", "ulaw"))
    assert result.written == []
    assert len(result.unchanged) == 2 * len(phrases_to_render(load_config(None, env={}))[0])


@needs_tools
def test_a_recording_that_replaced_a_file_is_kept_and_its_synthesised_twin_removed(
    copy: Path,
) -> None:
    """The admin's hold-resume.wav stays; hold-resume.ulaw goes (Asterisk would prefer it)."""
    recording = copy / "ru" / "hold-resume.wav"
    write_wav(recording, seconds=1.0)
    before = recording.read_bytes()
    result = render_prompts(load_config(None, env={}), copy, formats=("wav", "ulaw"))
    assert result.kept == [recording]
    assert result.removed == [copy / "ru" / "hold-resume.ulaw"]
    assert recording.read_bytes() == before
    forced = render_prompts(only(copy, "hold.resume"), copy, formats=("wav", "ulaw"), force=True)
    assert recording in forced.written
    assert recording.read_bytes() != before


def only(folder: Path, key: str) -> Config:
    """The default site, with every other phrase pointed at a recording of its own (so only
    ``key`` is rendered: keeps the test short)."""
    others = [k for k in phrases_to_render(load_config(None, env={}))[0] if k != key]
    toml = folder / "only.toml"
    toml.write_text(
        "[prompts.files]\n" + "".join(f'"{k}" = "custom/{file_stem(k)}"\n' for k in others),
        encoding="utf-8",
    )
    return load_config(toml, env={})


@needs_tools
def test_a_changed_phrase_is_rendered_again(copy: Path) -> None:
    """A site that rewords a phrase gets that file, and only that one, rendered anew."""
    toml = copy / "site.toml"
    toml.write_text(
        '[standards.phrases]\n"hold.resume" = "Благодарим за ожидание."\n', encoding="utf-8"
    )
    result = render_prompts(load_config(toml, env={}), copy, formats=("wav", "ulaw"))
    assert sorted(p.name for p in result.written) == ["hold-resume.ulaw", "hold-resume.wav"]


@needs_tools
def test_a_changed_phrase_rendered_in_fewer_formats_leaves_no_old_twin(copy: Path) -> None:
    """Reworded and rendered as wav only: the ulaw rendered earlier says the old phrase (and
    Asterisk prefers it on G.711 calls), so it is removed, and a later render in both
    formats renders the ulaw again instead of calling it unchanged."""
    toml = copy / "site.toml"
    toml.write_text(
        '[standards.phrases]\n"hold.resume" = "Благодарим за ожидание."\n', encoding="utf-8"
    )
    config = load_config(toml, env={})
    result = render_prompts(config, copy, formats=("wav",))
    assert [p.name for p in result.removed] == ["hold-resume.ulaw"]
    assert not (copy / "ru" / "hold-resume.ulaw").exists()
    again = render_prompts(config, copy, formats=("wav", "ulaw"))
    assert sorted(p.name for p in again.written) == ["hold-resume.ulaw", "hold-resume.wav"]


@needs_tools
def test_the_command_renders_the_zh_profile_with_the_mandarin_voice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prompts render --profile zh --out DIR --formats wav: every zh phrase as a .wav."""
    status = cli.main(
        ["prompts", "render", "--profile", "zh", "--out", str(tmp_path), "--formats", "wav"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    texts, _ = phrases_to_render(site(tmp_path, "zh"))
    assert sorted(p.name for p in (tmp_path / "zh").glob("*.wav")) == sorted(
        f"{file_stem(k)}.wav" for k in texts
    )
    manifest = json.loads((tmp_path / "zh" / "prompts.json").read_text(encoding="utf-8"))
    assert manifest["voice"] == "cmn-latn-pinyin"


@needs_tools
def test_the_mandarin_voice_reads_hanzi_as_mandarin_not_english() -> None:
    """espeak-ng's plain "cmn" voice reads the pinyin it makes of hanzi as English (1.51,
    Debian 12): it switches language, "(en)", and says tone numbers as English words. The
    voice the renderer uses gives Mandarin phonemes only."""
    phrase = "您好，听不到您的声音"
    phonemes = subprocess.run(
        ["espeak-ng", "-v", VOICES["zh"], "-q", "-x", "--stdin"],
        input=phrase.encode("utf-8"), capture_output=True, check=True, timeout=30,
    ).stdout.decode("utf-8")  # fmt: skip
    assert phonemes.strip()
    assert "(en)" not in phonemes


@needs_tools
def test_phrases_rendered_with_an_earlier_voice_are_rendered_again(copy: Path) -> None:
    """A folder whose manifest names another voice (an older release's) is rendered anew."""
    manifest_path = copy / "ru" / "prompts.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["voice"] = "ru-old"
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    result = render_prompts(load_config(None, env={}), copy, formats=("wav", "ulaw"))
    assert result.unchanged == [] and result.kept == []
    assert len(result.written) == 2 * len(manifest["prompts"])


def test_a_missing_tool_is_named_with_its_package() -> None:
    """Without espeak-ng and sox the error says which packages to install."""
    with pytest.raises(SoundToolMissingError, match="apt-get install espeak-ng sox"):
        find_tools(which=lambda _name: None)


def test_the_command_exits_1_naming_the_package_when_sox_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """prompts render with no sox on PATH: exit 1, the message names the sox package."""
    real = shutil.which
    # Only sox is missing, whether or not this machine has espeak-ng.
    monkeypatch.setattr(
        shutil, "which", lambda name: None if name == "sox" else real(name) or f"/usr/bin/{name}"
    )
    status = cli.main(["prompts", "render", "--out", str(tmp_path)])
    assert status == 1
    assert "apt-get install sox" in capsys.readouterr().err


def test_render_into_a_folder_that_cannot_be_made_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: real(name) or f"/usr/bin/{name}")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    status = cli.main(["prompts", "render", "--out", str(blocker / "sounds")])
    err = capsys.readouterr().err
    assert status == 1
    assert "cannot write the sounds to" in err
    assert "Traceback" not in err


def test_check_config_reports_each_missing_prompt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The profile's folder exists but a phrase has no file: check-config names it."""
    config = site(tmp_path)
    texts, _ = phrases_to_render(config)
    for key in texts:
        if key != "hold.announce":
            write_wav(tmp_path / "ru" / f"{file_stem(key)}.wav")
    write_wav(tmp_path / "hold-music.wav", seconds=1.0)
    problems = prompt_file_problems(config)
    assert problems is not None
    assert [(p.key, p.message) for p in problems] == [
        ("prompts.sounds_dir (hold.announce)", "no sound file for the phrase 'hold.announce'")
    ]
    toml = tmp_path / "site.toml"
    toml.write_text(f'[prompts]\nsounds_dir = "{tmp_path}"\n', encoding="utf-8")
    assert cli.main(["check-config", str(toml)]) == 1
    out = capsys.readouterr().out
    assert "1 problem" in out
    assert str(tmp_path / "ru" / "hold-announce.wav") in out


def test_check_config_reports_a_file_asterisk_cannot_play_as_wav(tmp_path: Path) -> None:
    """A 16 kHz .wav (Asterisk's wav format is 8 kHz) and missing hold music are reported."""
    config = site(tmp_path)
    for key in phrases_to_render(config)[0]:
        write_wav(
            tmp_path / "ru" / f"{file_stem(key)}.wav", rate=16000 if key == "hold.resume" else 8000
        )
    problems = prompt_file_problems(config)
    assert problems is not None
    assert [p.key for p in problems] == [
        "prompts.sounds_dir (hold.resume)",
        "prompts.sounds_dir (hold music)",
    ]
    assert "16000 Hz" in problems[0].message


def test_check_config_checks_every_class_music_and_names_a_misnamed_one(tmp_path: Path) -> None:
    """hold-music-<class>.wav files are checked like the default one; a file whose class no
    musiconhold.conf section can have is reported (it would never be played)."""
    config = site(tmp_path)
    for key in phrases_to_render(config)[0]:
        write_wav(tmp_path / "ru" / f"{file_stem(key)}.wav")
    write_wav(tmp_path / "hold-music.wav", seconds=1.0)
    write_wav(tmp_path / "hold-music-sales.wav", seconds=1.0)
    write_wav(tmp_path / "hold-music-vip.wav", seconds=1.0, rate=16000)
    write_wav(tmp_path / "hold-music-new sales.wav", seconds=1.0)
    problems = prompt_file_problems(config)
    assert problems is not None
    assert [(p.key, p.value) for p in problems] == [
        ("prompts.sounds_dir (hold music, class vip)", str(tmp_path / "hold-music-vip.wav")),
        ("prompts.sounds_dir (hold music)", str(tmp_path / "hold-music-new sales.wav")),
    ]
    assert "16000 Hz" in problems[0].message
    assert "never played" in problems[1].message


def test_check_config_skips_the_prompt_check_when_the_sounds_are_elsewhere(tmp_path: Path) -> None:
    """No folder for the profile under sounds_dir: nothing to check on this host."""
    assert prompt_file_problems(site(tmp_path / "absent")) is None

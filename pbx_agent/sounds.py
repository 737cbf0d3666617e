"""The prompt sound files: rendering them from the profile's phrases, and finding missing ones.

Every phrase the daemon can ask the switch to say must exist as a file the switch can play,
under the stable name ``pbx_agent.prompts`` gives it (``<profile>/<key with . as ->``).
``render_prompts`` writes them with espeak-ng (speech) and SoX (8 kHz mono 16-bit PCM and
the other formats a switch prefers), both from the OS packages; an administrator can
replace any file with a studio recording of the same name.

Formats (``FORMATS``): ``wav`` (8 kHz 16-bit mono PCM, which both Asterisk's ``wav`` format
and FreeSWITCH play), ``ulaw`` and ``alaw`` (raw G.711: Asterisk picks, among the files
named alike, the one that needs no transcoding for the call's codec), ``wav16``/``sln16``
(16 kHz, for wideband calls). Default: ``wav``, ``ulaw``, ``alaw``.

Re-rendering never destroys a recording: the renderer keeps a manifest
(``<profile>/prompts.json``: each key's text and the SHA-256 of each file it wrote), and a
file whose content no longer matches what it wrote is left alone (``kept``) unless
``force``. A phrase whose text changed is rendered again.

A phrase a queue or dialled number overrides with a different text plays from the same file
name, so the switch would say the site's text: such keys are reported as conflicts (give
the queue its own key instead, e.g. ``[queues.x.hold] reminder_prompt = "hold.reminder_x"``
with ``"hold.reminder_x"`` in its phrases).

The hold music (``hold-music.wav`` under ``prompts.sounds_dir``, see ``docs/hold.md``) is not a
phrase; ``render_music`` writes a quiet synthesised loop for sites that have no licensed
music yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbx_agent.config import Config, ConfigError, ConfigProblem
from pbx_agent.config.settings import PhraseConflict
from pbx_agent.errors import PbxAgentError
from pbx_agent.prompts import file_stem, sound_path

# espeak-ng voice per profile.
# zh: "cmn-latn-pinyin", not "cmn": espeak-ng 1.51 (Debian 12, the Dockerfile's base) turns
# each hanzi into pinyin and "cmn" then reads that as English, tone numbers as English digit
# words ("nin two hao three"); the pinyin voice reads the same text as Mandarin.
VOICES: Mapping[str, str] = {"ru": "ru", "zh": "cmn-latn-pinyin"}
# Speaking rate (words per minute): a little slower than espeak-ng's 175 for the phone.
RATE_WPM = 150
MUSIC_STEM = "hold-music"  # as pbx_agent.pbx.asterisk_hold names it
MANIFEST = "prompts.json"
TOOL_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SoundFormat:
    suffix: str
    sox_args: tuple[str, ...]  # output options for SoX
    what: str


FORMATS: Mapping[str, SoundFormat] = {
    "wav": SoundFormat(
        ".wav", ("-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "wav"),
        "8 kHz 16-bit mono PCM (Asterisk wav, FreeSWITCH)",
    ),
    "ulaw": SoundFormat(
        ".ulaw", ("-r", "8000", "-c", "1", "-t", "ul"), "raw G.711 mu-law (Asterisk ulaw)"
    ),
    "alaw": SoundFormat(
        ".alaw", ("-r", "8000", "-c", "1", "-t", "al"), "raw G.711 A-law (Asterisk alaw)"
    ),
    "wav16": SoundFormat(
        ".wav16", ("-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "wav"),
        "16 kHz 16-bit mono PCM (Asterisk wav16)",
    ),
    "sln16": SoundFormat(
        ".sln16", ("-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw"),
        "raw 16 kHz signed linear (Asterisk sln16)",
    ),
}  # fmt: skip
DEFAULT_FORMATS: tuple[str, ...] = ("wav", "ulaw", "alaw")

# The OS packages that provide the tools (Debian/Ubuntu names).
PACKAGES: Mapping[str, str] = {"espeak-ng": "espeak-ng", "sox": "sox"}


class SoundToolMissingError(PbxAgentError):
    """A program the renderer needs is not installed."""


class SoundRenderError(PbxAgentError):
    """A tool ran but did not produce the file."""


Runner = Callable[[Sequence[str], bytes | None], None]


def _run(argv: Sequence[str], stdin: bytes | None) -> None:
    try:
        subprocess.run(  # noqa: S603 - argv is built here from fixed options and paths
            list(argv),
            input=stdin,
            capture_output=True,
            check=True,
            timeout=TOOL_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode("utf-8", "replace").strip().splitlines()
        msg = f"{argv[0]} failed (exit {exc.returncode}): {detail[-1] if detail else 'no output'}"
        raise SoundRenderError(msg) from exc
    except subprocess.TimeoutExpired as exc:
        msg = f"{argv[0]} did not finish within {TOOL_TIMEOUT_S:g} s"
        raise SoundRenderError(msg) from exc


def find_tools(which: Callable[[str], str | None] | None = None) -> dict[str, str]:
    """The paths of espeak-ng and sox; ``SoundToolMissingError`` names the packages to install."""
    lookup = which or shutil.which
    found = {tool: lookup(tool) for tool in PACKAGES}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        packages = " ".join(PACKAGES[t] for t in missing)
        msg = (
            f"{', '.join(missing)} not found: the prompts are rendered with espeak-ng and SoX "
            f"from the OS packages; install them (Debian/Ubuntu: apt-get install {packages}) "
            "or record the files yourself"
        )
        raise SoundToolMissingError(msg)
    return {tool: path for tool, path in found.items() if path is not None}


# ---------------------------------------------------------------------- which phrases


def phrases_to_render(config: Config) -> tuple[dict[str, str], list[PhraseConflict]]:
    """Every phrase to render, by key, and the layers that word a key differently
    (``load_config`` refuses those, so a loaded configuration has none)."""
    return config.phrase_texts()


# ---------------------------------------------------------------------- rendering


@dataclass(slots=True)
class RenderResult:
    directory: Path
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # replaced by a recording: left alone
    removed: list[Path] = field(default_factory=list)  # synthesised siblings of a recording
    skipped: list[str] = field(default_factory=list)  # keys a site points at its own file
    conflicts: list[PhraseConflict] = field(default_factory=list)


def render_prompts(
    config: Config,
    out: Path,
    *,
    formats: Iterable[str] = DEFAULT_FORMATS,
    force: bool = False,
    tools: Mapping[str, str] | None = None,
    run: Runner = _run,
    workers: int | None = None,
) -> RenderResult:
    """Render every phrase of ``config``'s profile into ``out/<profile>/`` (phrases in
    parallel, one espeak-ng and one SoX per format each)."""
    chosen = [FORMATS[name] for name in formats]
    found = dict(tools) if tools is not None else find_tools()
    profile = config.site.profile
    directory = out / profile
    directory.mkdir(parents=True, exist_ok=True)
    texts, conflicts = phrases_to_render(config)
    result = RenderResult(directory=directory, conflicts=conflicts)
    manifest = _read_manifest(directory)
    entries: dict[str, Any] = manifest.get("prompts", {})
    if manifest.get("voice", VOICES[profile]) != VOICES[profile]:
        # Rendered with another voice (an older release): every phrase is rendered again;
        # the hashes stay, so recordings put in by hand are still known from ours.
        entries = {key: {**entry, "text": None} for key, entry in entries.items()}
    to_render = _plan(config, texts, entries, directory, chosen, force, result)

    def render_one(job: _Job) -> None:
        key, text, targets, hashes = job
        with tempfile.TemporaryDirectory(prefix="pbx-agent-tts-") as tmp:
            speech = Path(tmp) / "speech.wav"
            run(
                [
                    found["espeak-ng"], "-v", VOICES[profile], "-s", str(RATE_WPM),
                    "-b", "1", "-w", str(speech), "--stdin",
                ],
                text.encode("utf-8"),
            )  # fmt: skip
            for fmt, target in zip(chosen, targets, strict=True):
                # Normalised to -3 dBFS peak: espeak-ng's level varies between voices.
                run(
                    [found["sox"], str(speech), *fmt.sox_args, str(target), "gain", "-n", "-3"],
                    None,
                )
                if not target.exists():
                    msg = f"sox wrote no {target.name} for {key!r}"
                    raise SoundRenderError(msg)
                hashes[target.name] = _sha256(target)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        # list() re-raises the first failure here.
        list(pool.map(render_one, to_render))
    for key, text, targets, hashes in to_render:
        entries[key] = {"text": text, "files": hashes}
        result.written.extend(targets)
    manifest = {"profile": profile, "voice": VOICES[profile], "prompts": entries}
    (directory / MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return result


_Job = tuple[str, str, list[Path], dict[str, str]]  # key, text, files, their hashes


def _plan(
    config: Config,
    texts: Mapping[str, str],
    entries: dict[str, Any],
    directory: Path,
    chosen: Sequence[SoundFormat],
    force: bool,
    result: RenderResult,
) -> list[_Job]:
    """Which phrases to render; records in ``result`` those skipped, kept or unchanged."""
    to_render: list[_Job] = []
    for key, text in texts.items():
        if key in config.prompts.files:
            result.skipped.append(key)
            continue
        hashes: dict[str, str] = dict(entries.get(key, {}).get("files", {}))
        targets = [directory / f"{file_stem(key)}{fmt.suffix}" for fmt in chosen]
        recorded = [] if force else _recorded_by_hand(targets, hashes)
        if recorded:
            result.kept.extend(recorded)
            # A synthesised sibling would be played instead of the recording (Asterisk
            # prefers the format that needs no transcoding), so it goes.
            for sibling in targets:
                if sibling not in recorded and sibling.exists():
                    sibling.unlink()
                    result.removed.append(sibling)
                    hashes.pop(sibling.name, None)
            entries[key] = {"text": text, "files": hashes}
        elif not force and entries.get(key, {}).get("text") == text and _all_match(targets, hashes):
            result.unchanged.extend(targets)
        else:
            if entries.get(key, {}).get("text") != text:
                _drop_stale_formats(directory, targets, hashes, result)
            to_render.append((key, text, targets, hashes))
    return to_render


def _drop_stale_formats(
    directory: Path, targets: Sequence[Path], hashes: dict[str, str], result: RenderResult
) -> None:
    """The phrase's text changed and only some formats are rendered now: the other formats
    rendered earlier say the old text (and Asterisk may prefer them), so they go; a file
    that is not the one rendered (a recording put there by hand) stays, but is no longer
    counted as the phrase's."""
    for name in list(hashes):
        stale = directory / name
        if stale in targets:
            continue
        if Path(name).name != name:  # not a file of this folder: nothing we rendered
            hashes.pop(name)
            continue
        if stale.exists() and _sha256(stale) == hashes[name]:
            stale.unlink()
            result.removed.append(stale)
        hashes.pop(name)


def render_music(
    out: Path,
    *,
    seconds: int = 20,
    tools: Mapping[str, str] | None = None,
    run: Runner = _run,
) -> Path:
    """A quiet synthesised loop (a slow C-Am-F-G arpeggio) as ``out/hold-music.wav``:
    8 kHz 16-bit mono, ends where it starts so it loops cleanly."""
    found = dict(tools) if tools is not None else find_tools()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{MUSIC_STEM}.wav"
    chords = (("C4", "E4", "G4", "E4"), ("A3", "C4", "E4", "C4"), ("F3", "A3", "C4", "A3"),
              ("G3", "B3", "D4", "B3"))  # fmt: skip
    note_s = 0.625
    notes = [n for chord in chords for n in chord]
    count = max(len(notes), round(seconds / note_s) // len(notes) * len(notes))
    with tempfile.TemporaryDirectory(prefix="pbx-agent-music-") as tmp:
        parts: list[str] = []
        for index in range(count):
            part = Path(tmp) / f"{index:04d}.wav"
            note = notes[index % len(notes)]
            run(
                [
                    found["sox"], "-n", "-r", "8000", "-c", "1", "-b", "16", str(part),
                    "synth", f"{note_s}", "pluck", note, "fade", "0.01", f"{note_s}", "0.2",
                ],
                None,
            )  # fmt: skip
            parts.append(str(part))
        run([found["sox"], *parts, str(target), "vol", "0.35"], None)
    return target


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_match(targets: Sequence[Path], hashes: Mapping[str, str]) -> bool:
    return all(t.exists() and hashes.get(t.name) == _sha256(t) for t in targets)


def _recorded_by_hand(targets: Sequence[Path], hashes: Mapping[str, str]) -> list[Path]:
    """The files of a key that exist and are not what the renderer wrote (recordings)."""
    return [t for t in targets if t.exists() and hashes.get(t.name) != _sha256(t)]


# ---------------------------------------------------------------------- checking


def prompt_file_problems(config: Config) -> list[ConfigProblem] | None:
    """Problems for every phrase without a playable ``.wav`` (8 kHz 16-bit mono PCM) under
    ``prompts.sounds_dir``, and for a missing or unplayable hold music file. None when the
    profile's folder is not there to check (the sounds live on another host, or were never
    rendered here)."""
    # Imported here: the hold program module pulls in the Asterisk adapter.
    from pbx_agent.pbx.asterisk_hold import (  # noqa: PLC0415
        MUSIC_CLASS_NAME,
        hold_music_files,
        read_wav_info,
    )

    folder = config.prompts.sounds_dir / config.site.profile
    if not folder.is_dir():
        return None
    texts, _ = phrases_to_render(config)
    profile = config.site.profile
    accepted = (
        f"an 8 kHz 16-bit mono PCM .wav (pbx-agent prompts render --profile {profile}, "
        "or a recording)"
    )
    problems: list[ConfigProblem] = []
    wanted = [(f"prompts.sounds_dir ({key})", sound_path(config, key), f"the phrase '{key}'")
              for key in texts if key not in config.prompts.files]  # fmt: skip
    music = hold_music_files(config.prompts.sounds_dir)
    for music_class, path in music.by_class.items():
        if music_class:
            key = f"prompts.sounds_dir (hold music, class {music_class})"
            what = f"the hold music of class '{music_class}'"
        else:
            key = "prompts.sounds_dir (hold music)"
            what = "the hold music (docs/hold.md; prompts render --with-music writes one)"
        wanted.append((key, path, what))
    for key, path, what in wanted:
        if not path.exists():
            problems.append(ConfigProblem(key, str(path), accepted, f"no sound file for {what}"))
            continue
        try:
            info = read_wav_info(path)
        except ConfigError as exc:
            problems.append(ConfigProblem(key, str(path), accepted, f"not playable: {exc}"))
            continue
        if info.sample_rate != 8000:
            problems.append(
                ConfigProblem(
                    key,
                    str(path),
                    accepted,
                    f"{info.sample_rate} Hz: Asterisk plays a .wav only at 8000 Hz (16 kHz "
                    "files are .wav16)",
                )
            )
    problems.extend(
        ConfigProblem(
            "prompts.sounds_dir (hold music)",
            str(path),
            f"hold-music-<class>.wav, <class> matching {MUSIC_CLASS_NAME.pattern}",
            "not a music on hold class name after 'hold-music-': the file is never played",
        )
        for path in music.misnamed
    )
    return problems

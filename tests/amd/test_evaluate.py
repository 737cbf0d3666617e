"""Evaluation: reading labelled folders, the figures, and the `amd` command line."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx_agent.amd import corpus as corpus_module
from pbx_agent.amd import signals as s
from pbx_agent.amd.audio import SAMPLE_RATE, UnreadableAudioError, read_wav, write_wav
from pbx_agent.amd.classic import ClassicAmd
from pbx_agent.amd.corpus import (
    TIMINGS,
    CorpusToolMissingError,
    _ClipMaker,
    _street_noise,
    generate_corpus,
)
from pbx_agent.amd.detector import AmdDetector
from pbx_agent.amd.evaluate import (
    LateStartScorer,
    load_clips,
    run_scorer,
    score,
    simulate_talk_events,
)
from pbx_agent.amd.params import VerdictKind
from pbx_agent.cli import main

HAVE_TOOLS = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def person() -> object:
    return s.render(s.silence(0.5), s.syllables(3), seconds=4)


def voicemail_beep() -> object:
    return s.render(s.silence(0.2), s.syllables(6), s.silence(0.3), s.tone(1000, 0.5), seconds=4)


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """Two sub-folders, human/ and machine/, two clips each."""
    for label, make in (("human", person), ("machine", voicemail_beep)):
        (tmp_path / label).mkdir()
        for i in range(2):
            write_wav(tmp_path / label / f"{i}.wav", make())  # type: ignore[arg-type]
    return tmp_path


def test_labels_come_from_sub_folders(labelled: Path):
    """human/ and machine/ sub-folders label their clips."""
    clips = load_clips(labelled)
    assert sorted(c.label.value for c in clips) == ["HUMAN", "HUMAN", "MACHINE", "MACHINE"]


def test_labels_come_from_a_manifest(tmp_path: Path):
    """labels.csv (file,label) wins, and accepts other spellings of the labels."""
    write_wav(tmp_path / "a.wav", person())  # type: ignore[arg-type]
    write_wav(tmp_path / "b.wav", voicemail_beep())  # type: ignore[arg-type]
    (tmp_path / "labels.csv").write_text("file,label\na.wav,person\nb.wav,voicemail\n")
    assert [c.label for c in load_clips(tmp_path)] == [VerdictKind.HUMAN, VerdictKind.MACHINE]


def test_labels_come_from_file_names(tmp_path: Path):
    """Without a manifest or folders, the file name's first word is the label."""
    write_wav(tmp_path / "human-01.wav", person())  # type: ignore[arg-type]
    write_wav(tmp_path / "machine_02.wav", voicemail_beep())  # type: ignore[arg-type]
    assert [c.label for c in load_clips(tmp_path)] == [VerdictKind.HUMAN, VerdictKind.MACHINE]


def test_an_unknown_label_names_the_file(tmp_path: Path):
    """A manifest label that is neither HUMAN nor MACHINE is refused, naming the clip."""
    (tmp_path / "labels.csv").write_text("file,label\nx.wav,maybe\n")
    with pytest.raises(ValueError, match=r"x\.wav: label 'maybe' unknown"):
        load_clips(tmp_path)


def test_unlabelled_files_are_refused(tmp_path: Path):
    """A clip whose label cannot be found is an error that says how to label it."""
    write_wav(tmp_path / "clip.wav", person())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels\.csv"):
        load_clips(tmp_path)


def test_wav_files_are_read_at_8khz_mono(tmp_path: Path):
    """A 16 kHz stereo file is resampled and mixed down to 8 kHz mono."""
    path = tmp_path / "x.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(np.zeros((16000, 2), dtype="<i2").tobytes())
    assert read_wav(path).size == 8000


def test_scores_side_by_side(labelled: Path):
    """Every scorer sees every clip; the detector beats AMD() on people."""
    detector, classic = score(load_clips(labelled), {"d": AmdDetector, "c": ClassicAmd})
    assert detector.total == classic.total == 4
    assert detector.accuracy == 1.0
    assert detector.recall(VerdictKind.HUMAN) == 1.0
    assert detector.as_dict()["confusion"] == {
        "HUMAN": {"HUMAN": 2, "MACHINE": 0, "NOTSURE": 0},
        "MACHINE": {"HUMAN": 0, "MACHINE": 2, "NOTSURE": 0},
    }


def test_decision_times_are_also_given_per_label(labelled: Path):
    """The JSON figures split the decision times by label: people and machines apart."""
    (detector,) = score(load_clips(labelled), {"d": AmdDetector})
    human = run_scorer(AmdDetector(), person()).decided_at_ms  # type: ignore[arg-type]
    machine = run_scorer(AmdDetector(), voicemail_beep()).decided_at_ms  # type: ignore[arg-type]
    assert human != machine
    assert detector.as_dict()["decision_ms_by_label"] == {
        "HUMAN": {"median": human, "p90": human},
        "MACHINE": {"median": machine, "p90": machine},
    }


def test_the_unicast_scorer_never_hears_what_came_before_the_stream():
    """FreeSWITCH's unicast starts after the answer: a beep that ends before the stream
    starts is not heard, the same beep later is (and its time is still after the answer)."""
    early = s.render(s.tone(1000.0, 0.3), seconds=1.5)
    late = s.render(s.silence(0.5), s.tone(1000.0, 0.3), seconds=1.5)
    missed = run_scorer(LateStartScorer(lost_ms=400), early)  # type: ignore[arg-type]
    assert (missed.kind, missed.reason) == (VerdictKind.NOTSURE, "silence")
    heard = run_scorer(LateStartScorer(lost_ms=400), late)  # type: ignore[arg-type]
    assert (heard.kind, heard.reason) == (VerdictKind.MACHINE, "tone-1000hz")
    assert heard.decided_at_ms > 500
    at_once = run_scorer(LateStartScorer(lost_ms=0), early)  # type: ignore[arg-type]
    assert (at_once.reason, at_once.decided_at_ms) == ("tone-1000hz", 180)


def test_talk_event_simulation_reports_segments_and_a_beep():
    """The FreeSWITCH simulation turns audio into talk segments and one avmd beep."""
    segments, beeps = simulate_talk_events(voicemail_beep())  # type: ignore[arg-type]
    assert segments
    assert segments[0].start_ms >= 200
    assert len(beeps) == 1
    assert abs(beeps[0].frequency_hz - 1000) < 20


def test_evaluate_command_prints_the_table(labelled: Path, capsys: pytest.CaptureFixture[str]):
    """`amd evaluate DIR` prints accuracy, recall, NOTSURE, timings for all scorers."""
    assert main(["amd", "evaluate", str(labelled)]) == 0
    out = capsys.readouterr().out
    for needle in ("accuracy", "recall HUMAN", "NOTSURE rate", "decision median", "p90",
                   "detector", "classic", "fs-unicast", "fs-classic"):  # fmt: skip
        assert needle in out


def test_evaluate_command_prints_json(labelled: Path, capsys: pytest.CaptureFixture[str]):
    """`--json` gives the same figures machine-readably."""
    assert main(["amd", "evaluate", str(labelled), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["clips"] == 4
    assert payload["scorers"]["detector"]["accuracy"] == 1.0
    assert set(payload["scorers"]) == {
        "detector", "classic", "fs-unicast", "fs-detector", "fs-classic"
    }  # fmt: skip


def test_evaluate_command_scores_the_configured_settings(
    labelled: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
):
    """`--config FILE` scores the site's standards.amd: the detector's knobs from
    standards.amd.detector, AMD()'s parameters beside them; the file is named in the output."""
    config = tmp_path_factory.mktemp("site") / "pbx-agent.toml"
    # Every frame quieter than -10 dBFS is not speech: the detector hears nobody. A silence
    # threshold at the maximum makes AMD() hear nobody either.
    config.write_text(
        "[standards.amd]\nsilence_threshold = 32767\n"
        "[standards.amd.detector]\nmin_speech_dbfs = -10.0\n",
        encoding="utf-8",
    )
    assert main(["amd", "evaluate", str(labelled), "--json"]) == 0
    defaults = json.loads(capsys.readouterr().out)
    assert main(["amd", "evaluate", str(labelled), "--json", "--config", str(config)]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert (defaults["config"], tuned["config"]) == (None, str(config))
    assert defaults["scorers"]["detector"]["confusion"]["HUMAN"]["NOTSURE"] == 0
    # The people are silence to it (NOTSURE); the voicemails still end in a beep.
    assert tuned["scorers"]["detector"]["confusion"]["HUMAN"]["NOTSURE"] == 2
    assert defaults["scorers"]["classic"] != tuned["scorers"]["classic"]
    assert main(["amd", "evaluate", str(labelled), "--config", str(config)]) == 0
    assert f"standards.amd of {config}" in capsys.readouterr().out


def test_evaluate_command_refuses_a_bad_config(
    labelled: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
):
    """A configuration with a problem is exit status 2, the problem named with its key."""
    config = tmp_path_factory.mktemp("site") / "pbx-agent.toml"
    config.write_text("[standards.amd.detector]\nburst_gap = 100\n", encoding="utf-8")
    assert main(["amd", "evaluate", str(labelled), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "standards.amd.detector.burst_gap" in err
    assert "burst_gap_ms" in err


def test_evaluate_command_refuses_a_missing_folder(tmp_path: Path, capsys):
    """A folder that does not exist is exit status 2 with a message."""
    assert main(["amd", "evaluate", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_corpus_names_the_packages_when_tools_are_missing(monkeypatch, tmp_path: Path):
    """Without espeak-ng/sox the generator says which Debian packages to install."""
    monkeypatch.setattr(corpus_module.shutil, "which", lambda _name: None)
    with pytest.raises(CorpusToolMissingError, match="apt-get install espeak-ng sox"):
        generate_corpus(tmp_path, seed=1, size=4)


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are not installed")
def test_corpus_is_reproducible_from_its_seed(tmp_path: Path):
    """The same seed gives the same clips and labels, byte for byte."""
    first = generate_corpus(tmp_path / "a", seed=7, size=6)
    second = generate_corpus(tmp_path / "b", seed=7, size=6)
    assert first == second
    for split, clips in first.items():
        for clip in clips:
            a = (tmp_path / "a" / split / clip.file).read_bytes()
            assert a == (tmp_path / "b" / split / clip.file).read_bytes()
    assert (tmp_path / "a" / "validation" / "labels.csv").exists()


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are not installed")
def test_corpus_splits_do_not_share_phrases(tmp_path: Path):
    """Train and validation are built from disjoint phrase pools."""
    splits = generate_corpus(tmp_path, seed=3, size=30)
    notes = {split: {c.note.split(" [")[0] for c in clips} for split, clips in splits.items()}
    shared = (notes["train"] & notes["validation"]) - {"music", "beep", "fax CNG",
                                                        "answer tone 2100 Hz"}  # fmt: skip
    assert not shared


# labels.csv of seed 7, 6 clips, as generated before the timings became a CorpusTiming: the
# default timing must keep drawing the same numbers, so published figures stay reproducible.
_SEED_7_TRAIN_LABELS = """\
file,label,kind,language,voice,noise_dbfs,note
train-0000-voicemail.wav,MACHINE,voicemail,en,en-gb+m2 -s171 -p59,-30,"Hey, it's Tom. Leave a message. [white]"
train-0001-human_short.wav,HUMAN,human_short,en,en-us+m4 -s152 -p30,,Speaking. … Hi there. [none]
train-0002-voicemail.wav,MACHINE,voicemail,en,en-us+m4 -s190 -p55,-40,"Hi, this is Dave. Sorry I missed your call. Text me or leave a voicemail. +beep [pink]"
train-0003-human_chatty.wav,HUMAN,human_chatty,cmn,cmn+m4 -s267 -p72,-45,喂， 我是小王。 [pink]
"""


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are not installed")
def test_the_default_timing_draws_what_the_generator_always_drew(tmp_path: Path):
    """Seed 7 gives the same labels.csv as before timings were configurable."""
    generate_corpus(tmp_path, seed=7, size=6)
    labels = (tmp_path / "train" / "labels.csv").read_text(encoding="utf-8")
    assert labels.replace("\r\n", "\n") == _SEED_7_TRAIN_LABELS


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are not installed")
def test_the_shifted_timing_makes_other_clips_from_the_same_seed(tmp_path: Path):
    """TIMINGS['shifted'] changes the clips (slower greetings with word gaps), not the seed."""
    default = generate_corpus(tmp_path / "d", seed=7, size=6)
    shifted = generate_corpus(tmp_path / "s", seed=7, size=6, timing=TIMINGS["shifted"])
    assert [c.kind for c in default["train"]] == [c.kind for c in shifted["train"]]
    machine = next(c for c in shifted["train"] if c.label == "MACHINE")
    assert " -g" in machine.voice
    differing = [
        c.file
        for c in default["train"]
        if (tmp_path / "d" / "train" / c.file).read_bytes()
        != (tmp_path / "s" / "train" / c.file).read_bytes()
    ]
    assert differing


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are not installed")
def test_voices_behind_people_leave_every_other_clip_as_it_was(tmp_path: Path):
    """Voices behind a person are drawn apart: with them on every person, the machines'
    clips are byte for byte those of a corpus without them, and each person's note says
    how many voices were heard at what level."""
    quiet = dataclasses.replace(TIMINGS["default"], voices_share=0.0)
    crowded = dataclasses.replace(TIMINGS["default"], voices_share=1.0)
    without = generate_corpus(tmp_path / "q", seed=7, size=8, timing=quiet)
    with_voices = generate_corpus(tmp_path / "c", seed=7, size=8, timing=crowded)
    for split, clips in with_voices.items():
        assert [c.file for c in clips] == [c.file for c in without[split]]
        for clip in clips:
            a = (tmp_path / "q" / split / clip.file).read_bytes()
            b = (tmp_path / "c" / split / clip.file).read_bytes()
            if clip.label == "HUMAN":
                assert " behind at " in clip.note
                assert a != b
            else:
                assert " behind at " not in clip.note
                assert a == b
    assert any(c.label == "HUMAN" for clips in with_voices.values() for c in clips)


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are not installed")
def test_corpus_command_takes_the_shifted_timing(tmp_path: Path, capsys):
    """`amd corpus --timing shifted` writes what generate_corpus does with those timings."""
    argv = ["amd", "corpus", "--out", str(tmp_path / "cli"), "--seed", "7", "--size", "6"]
    assert main([*argv, "--timing", "shifted"]) == 0
    expected = generate_corpus(tmp_path / "api", seed=7, size=6, timing=TIMINGS["shifted"])
    for split, clips in expected.items():
        for clip in clips:
            cli = (tmp_path / "cli" / split / clip.file).read_bytes()
            assert cli == (tmp_path / "api" / split / clip.file).read_bytes()
    assert "validation: 2 clips" in capsys.readouterr().out


def test_corpus_command_refuses_an_unknown_timing(tmp_path: Path, capsys):
    """A misspelt --timing is refused before anything is written, naming the choices."""
    argv = ["amd", "corpus", "--out", str(tmp_path / "c"), "--seed", "1", "--timing", "shfited"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "choose from 'default', 'shifted'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


STRESS_OPTIONS = [
    ("--voices-behind", "behind at -35 dBFS"),
    ("--street-noise", "street noise at -35 dBFS"),
]


@pytest.mark.skipif(not HAVE_TOOLS, reason="espeak-ng and sox are not installed")
@pytest.mark.parametrize(("option", "note"), STRESS_OPTIONS)
def test_corpus_command_puts_the_stress_behind_every_person(
    tmp_path: Path, capsys, option: str, note: str
):
    """`amd corpus --voices-behind -35` / `--street-noise -35`: every person has it behind
    them at -35 dBFS (the stress mixes measured level by level in docs/amd.md), the
    machines are the seed's own."""
    argv = ["amd", "corpus", "--out", str(tmp_path / "cli"), "--seed", "7", "--size", "8"]
    assert main([*argv, option, "-35"]) == 0
    plain = generate_corpus(tmp_path / "plain", seed=7, size=8)
    labels = load_clips(tmp_path / "cli" / "train")
    notes = (tmp_path / "cli" / "train" / "labels.csv").read_text(encoding="utf-8")
    people = [c for c in labels if c.label == VerdictKind.HUMAN]
    assert people
    assert notes.count(note) == len(people)
    for clip in plain["train"]:
        cli = (tmp_path / "cli" / "train" / clip.file).read_bytes()
        same = cli == (tmp_path / "plain" / "train" / clip.file).read_bytes()
        assert same == (clip.label == "MACHINE")
    assert "validation: 2 clips" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--voices-behind", "--street-noise"])
@pytest.mark.parametrize("level", ["-5", "-75", "nan"])
def test_corpus_command_refuses_a_stress_level_out_of_range(
    tmp_path: Path, capsys, option: str, level: str
):
    """A level outside -60..-10 dBFS is refused with the accepted range, nothing written."""
    argv = ["amd", "corpus", "--out", str(tmp_path / "c"), "--seed", "1"]
    assert main([*argv, f"{option}={level}"]) == 2
    assert "accepted: -60 to -10 dBFS" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("option", ["--voices-behind", "--street-noise"])
def test_corpus_command_refuses_a_level_that_is_not_a_number(tmp_path: Path, capsys, option: str):
    argv = ["amd", "corpus", "--out", str(tmp_path / "c"), "--seed", "1"]
    with pytest.raises(SystemExit) as exc:
        main([*argv, option, "loud"])
    assert exc.value.code == 2
    assert f"{option}: invalid float value: 'loud'" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_corpus_noise_is_heard_at_its_labelled_level(colour: str):
    """labels.csv's noise_dbfs is the level heard in the telephone band, whatever the
    colour: brown noise scaled on its whole spectrum would lose ~35 dB to the band and make
    a "noisy" clip a quiet one."""
    for seed in range(40):
        maker = _ClipMaker(np.random.default_rng(seed), "train", TIMINGS["default"])
        clip, level, heard = maker.channel(np.zeros(8 * SAMPLE_RATE))
        if heard != colour:
            continue
        assert level is not None
        rms_db = 20 * math.log10(float(np.sqrt(np.mean(clip**2))))
        assert abs(rms_db - level) < 1.0, (colour, level, rms_db)
        return
    pytest.fail(f"no seed under 40 drew {colour} noise")


def test_street_noise_is_heard_at_its_level_and_swells_6_to_12_db():
    """The street noise's quiet stretches are at the level asked for (in the telephone
    band), and it swells 6-12 dB above them for 0.3-1 s at a time."""
    noise = _street_noise(np.random.default_rng(3), 20 * SAMPLE_RATE, -40.0)
    frames = noise[: noise.size // 400 * 400].reshape(-1, 400)  # 50 ms
    level = 10 * np.log10(np.mean(frames**2, axis=1))
    quiet = np.median(level)
    assert abs(quiet - -40.0) < 2.0
    above = level - quiet
    assert 5.0 < above.max() < 14.0
    swelling = above > 3.0
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, swelling.astype(int), 0])))[::2]
    assert len(runs) >= 5
    assert all(2 <= run <= 20 for run in runs)  # 0.1-1 s above +3 dB, in 50 ms frames


def test_evaluate_command_names_unreadable_clips_and_scores_the_rest(
    labelled: Path, capsys: pytest.CaptureFixture[str]
):
    """An empty file, text saved as .wav and a u-law WAV are each named on stderr with what is
    wrong; the other clips are scored; the exit status says something was left out."""
    (labelled / "human" / "empty.wav").write_bytes(b"")
    (labelled / "human" / "esc\x1b[2Jape.wav").write_bytes(b"")
    (labelled / "machine" / "text.wav").write_text("not audio", encoding="utf-8")
    ulaw = labelled / "machine" / "ulaw.wav"
    # A WAVE_FORMAT_MULAW (7) header: 8 kHz mono, 8-bit, one second of silence.
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", 8000) + b"\xff" * 8000
    ulaw.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert main(["amd", "evaluate", str(labelled), "--json"]) == 1
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["clips"] == 4
    assert payload["scorers"]["detector"]["accuracy"] == 1.0
    assert sorted(Path(row["file"]).name for row in payload["unreadable"]) == [
        "empty.wav", "esc\x1b[2Jape.wav", "text.wav", "ulaw.wav"
    ]  # fmt: skip
    assert "esc\\x1b[2Jape.wav: not a WAV file" in captured.err
    assert "empty.wav: not a WAV file" in captured.err
    assert "text.wav: not a PCM WAV file" in captured.err
    assert "ulaw.wav: not a PCM WAV file (unknown format: 7)" in captured.err
    assert "Traceback" not in captured.err
    assert main(["amd", "evaluate", str(labelled)]) == 1
    assert "Not scored (4 unreadable clips" in capsys.readouterr().out


def test_unreadable_clips_raise_without_a_handler(tmp_path: Path):
    """score() without on_unreadable stops at the first unreadable clip with its name."""
    (tmp_path / "human").mkdir()
    (tmp_path / "human" / "x.wav").write_bytes(b"RIFF")
    with pytest.raises(UnreadableAudioError, match=r"x\.wav: not a WAV file"):
        score(load_clips(tmp_path), {"d": AmdDetector})

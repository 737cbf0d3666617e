"""``pbx-agent amd``: the answering-machine detection corpus and its evaluation.

- ``amd corpus --out DIR --seed N [--size N] [--timing T] [--voices-behind DBFS]
  [--street-noise DBFS]`` generates the labelled development corpus (``DIR/train`` and
  ``DIR/validation``; needs espeak-ng and sox); ``--voices-behind`` and ``--street-noise``
  put voices or swelling street noise behind every person at one level.
- ``amd evaluate DIR [--json] [--errors] [--config FILE]`` scores, on the same clips in the
  same run, the daemon's detector, the classic Asterisk ``AMD()`` heuristic, and the two
  FreeSWITCH talk-event paths (simulated from the audio with the timings measured on a real
  FreeSWITCH): accuracy, recall per class, NOTSURE rate, decision time median and p90, and
  the confusion matrix. The settings are the configuration's ``standards.amd`` (the
  detector's knobs under ``standards.amd.detector``, ``AMD()``'s parameters beside them), so
  a site scores the tuning it runs; the embedded defaults have ``amd.conf``'s values.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pbx_agent.amd.audio import UnreadableAudioError
from pbx_agent.amd.classic import ClassicAmd
from pbx_agent.amd.corpus import (
    TIMINGS,
    CorpusToolMissingError,
    generate_corpus,
    with_street_noise,
    with_voices_behind,
)
from pbx_agent.amd.detector import AmdDetector
from pbx_agent.amd.evaluate import (
    Clip,
    LateStartScorer,
    Score,
    TalkEventScorer,
    load_clips,
    score,
)
from pbx_agent.amd.params import VerdictKind, classic_params, detector_params
from pbx_agent.cli.common import add_config_option, load_or_report
from pbx_agent.config.standards import AmdRule
from pbx_agent.wire.escaping import printable

_SCORERS = {
    "detector": "daemon detector (AudioSocket audio)",
    "classic": "Asterisk AMD() heuristic, standards.amd's parameters",
    "fs-unicast": "daemon detector on FreeSWITCH unicast audio (from 100 ms after the answer)",
    "fs-detector": "detector rules on FreeSWITCH talk events + avmd (simulated)",
    "fs-classic": "AMD() rules on FreeSWITCH talk events + avmd (simulated)",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "amd",
        help="answering-machine detection: generate the corpus, evaluate detectors",
        description="Answering-machine detection tools (rule R6).",
    )
    sub = parser.add_subparsers(dest="amd_command", metavar="SUBCOMMAND")
    sub.required = True

    corpus = sub.add_parser(
        "corpus",
        help="generate the labelled development corpus (espeak-ng + sox)",
        description="Write DIR/train and DIR/validation: WAV clips and labels.csv.",
    )
    corpus.add_argument("--out", required=True, type=Path, metavar="DIR")
    corpus.add_argument("--seed", required=True, type=int, metavar="N")
    corpus.add_argument(
        "--size", type=int, default=900, metavar="N", help="clips in all (default 900)"
    )
    corpus.add_argument(
        "--validation-share",
        type=float,
        default=0.3,
        metavar="F",
        help="share of the clips in the validation split (default 0.3)",
    )
    corpus.add_argument(
        "--timing",
        choices=sorted(TIMINGS),
        default="default",
        help=(
            "the generator's timings: 'default' (the development mix) or 'shifted' (every "
            "distribution moved, to check a tuning on timings it was not fitted to)"
        ),
    )
    corpus.add_argument(
        "--voices-behind",
        type=float,
        metavar="DBFS",
        help=(
            "every person heard with 1-3 voices behind them at this level (-60 to -10): "
            "the stress mix that measures the voices-behind check level by level; the "
            "machines' clips are those of the same seed without it"
        ),
    )
    corpus.add_argument(
        "--street-noise",
        type=float,
        metavar="DBFS",
        help=(
            "every person heard over street noise at this level (-60 to -10) swelling by "
            "6-12 dB for 0.3-1 s at a time; the machines' clips are those of the same seed "
            "without it"
        ),
    )
    corpus.set_defaults(handler=handle_corpus)

    evaluate = sub.add_parser(
        "evaluate",
        help="score the detector and the classic heuristic on a labelled folder",
        description=(
            "Run every scorer on every clip of DIR (labels.csv, human/ + machine/ "
            "sub-folders, or file names starting with the label) and print the figures. "
            "A clip that is not a PCM WAV file is named on stderr and left out of the "
            "figures; the exit status is then 1."
        ),
    )
    evaluate.add_argument("dir", type=Path, metavar="DIR")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of tables")
    evaluate.add_argument(
        "--errors", action="store_true", help="also list the detector's wrong clips"
    )
    add_config_option(evaluate)
    evaluate.set_defaults(handler=handle_evaluate)


def handle_corpus(args: argparse.Namespace) -> int:
    try:
        timing = TIMINGS[args.timing]
        if args.voices_behind is not None:
            timing = with_voices_behind(timing, args.voices_behind)
        if args.street_noise is not None:
            timing = with_street_noise(timing, args.street_noise)
        splits = generate_corpus(
            args.out, args.seed, args.size, args.validation_share, timing=timing
        )
    except CorpusToolMissingError as exc:
        sys.stderr.write(f"pbx-agent amd corpus: {exc}\n")
        return 2
    except ValueError as exc:
        sys.stderr.write(f"pbx-agent amd corpus: {exc}\n")
        return 2
    for split, clips in splits.items():
        humans = sum(1 for clip in clips if clip.label == VerdictKind.HUMAN)
        sys.stdout.write(
            f"{args.out / split}: {len(clips)} clips ({humans} HUMAN, "
            f"{len(clips) - humans} MACHINE), labels.csv\n"
        )
    return 0


def _scorer_factories(amd: AmdRule) -> dict[str, Any]:
    detector, classic = detector_params(amd), classic_params(amd)
    return {
        "detector": lambda: AmdDetector(detector),
        "classic": lambda: ClassicAmd(classic),
        "fs-unicast": lambda: LateStartScorer(detector),
        "fs-detector": lambda: TalkEventScorer("detector", detector_params=detector),
        "fs-classic": lambda: TalkEventScorer("classic", classic_params=classic),
    }


def handle_evaluate(args: argparse.Namespace) -> int:
    try:
        clips = load_clips(args.dir)
    except ValueError as exc:
        sys.stderr.write(f"pbx-agent amd evaluate: {exc}\n")
        return 2
    config = load_or_report(args.config)
    if config is None:
        return 2
    unreadable: list[dict[str, str]] = []

    def skip(clip: Clip, exc: UnreadableAudioError) -> None:
        unreadable.append({"file": str(clip.path), "error": str(exc)})
        # A file name may hold control characters: shown escaped, on one line.
        sys.stderr.write(f"pbx-agent amd evaluate: {printable(str(exc))}; not scored\n")

    scores = score(clips, _scorer_factories(config.standards_for().amd), on_unreadable=skip)
    # The figures of the clips read are printed; a clip left out is exit status 1.
    status = 1 if unreadable else 0
    if args.json:
        payload: dict[str, object] = {"dir": str(args.dir), "clips": len(clips) - len(unreadable)}
        payload["unreadable"] = unreadable
        payload["config"] = args.config  # null: the embedded defaults
        payload["scorers"] = {s.name: s.as_dict() for s in scores}
        if args.errors:
            payload["detector_errors"] = _errors(scores[0])
        sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
        return status
    sys.stdout.write(render_table(args.dir, scores, settings=args.config))
    if unreadable:
        sys.stdout.write(f"\nNot scored ({len(unreadable)} unreadable clips, named above)\n")
    if args.errors:
        sys.stdout.write("\nDetector errors:\n")
        for row in _errors(scores[0]):
            sys.stdout.write(
                f"  {row['file']}: {row['label']} -> {row['verdict']} "
                f"({row['reason']}, {row['decided_at_ms']} ms)\n"
            )
    return status


def _errors(detector_score: Score) -> list[dict[str, object]]:
    return [
        {
            "file": clip.path.name,
            "label": clip.label.value,
            "kind": clip.kind,
            "verdict": verdict.kind.value,
            "reason": verdict.reason,
            "decided_at_ms": verdict.decided_at_ms,
        }
        for clip, verdict in detector_score.wrong
    ]


def render_table(folder: Path, scores: list[Score], *, settings: str | None = None) -> str:
    """The figures side by side, one column per scorer; ``settings`` names the
    configuration file whose ``standards.amd`` they ran with (None: the embedded defaults)."""
    names = [s.name for s in scores]
    width = max(12, *(len(n) for n in names))
    total = scores[0].total if scores else 0
    lines = [f"{folder}: {total} clips, standards.amd of {settings or 'the embedded defaults'}", ""]

    def row(label: str, values: list[str]) -> str:
        return f"{label:<26}" + "".join(f"{v:>{width + 2}}" for v in values)

    lines.append(row("", names))
    lines.append(row("accuracy", [f"{s.accuracy:.1%}" for s in scores]))
    lines.extend(
        row(f"recall {label.value}", [f"{s.recall(label):.1%}" for s in scores])
        for label in (VerdictKind.HUMAN, VerdictKind.MACHINE)
    )
    lines.append(row("NOTSURE rate", [f"{s.notsure_rate:.1%}" for s in scores]))
    lines.append(row("people called machines", [f"{s.humans_called_machines:.1%}" for s in scores]))
    lines.append(row("decision median (ms)", [f"{s.percentile_ms(50):.0f}" for s in scores]))
    lines.append(row("decision p90 (ms)", [f"{s.percentile_ms(90):.0f}" for s in scores]))
    lines.append("")
    lines.append("Confusion (rows: label; columns: verdict HUMAN / MACHINE / NOTSURE)")
    for s in scores:
        lines.append(f"  {s.name} ({_SCORERS.get(s.name, s.name)})")
        for label in (VerdictKind.HUMAN, VerdictKind.MACHINE):
            counts = " ".join(f"{s.confusion[(label, kind)]:>6}" for kind in VerdictKind)
            lines.append(f"    {label.value:<8}{counts}")
    kinds = sorted({kind for s in scores for kind in s.by_kind})
    if len(kinds) > 1:
        lines.append("")
        lines.append("Correct per kind of clip")
        lines.append(row("", names))
        lines.extend(row(f"  {kind}", [_kind_cell(s, kind) for s in scores]) for kind in kinds)
    return "\n".join(lines) + "\n"


def _kind_cell(result: Score, kind: str) -> str:
    counts = result.by_kind.get(kind)
    return f"{counts['correct']}/{counts['total']}" if counts else "-"

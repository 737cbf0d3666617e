"""What the answering-machine detector costs: CPU per call and per second of audio.

    .venv/bin/python bench/amd_bench.py [--quick] [--json OUT]

Each callee (synthetic, from ``pbx_agent.amd.signals``: a person, a person with voices
behind them, a greeting and its beep, music, silence) is fed to a fresh ``AmdDetector``
in 20 ms frames, as the AudioSocket server does, until the verdict; the CPU time of that
(``time.process_time``) is divided by the audio it took. The same is run with the
voices-behind check off (``foreground_gate_db = 60``) to show that check's share. A
real-time factor of 0.01 means one core keeps up with about 100 callbacks being answered
at once. Figures are printed; nothing passes or fails here.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import machine, median, write_json

from pbx_agent.amd import signals as s
from pbx_agent.amd.audio import FRAME_MS, FRAME_SAMPLES
from pbx_agent.amd.detector import AmdDetector
from pbx_agent.amd.params import DetectorParams

CALLEES: dict[str, Callable[[int], np.ndarray]] = {
    "person": lambda seed: s.render(s.silence(0.5), s.syllables(3, seed=seed), seconds=6),
    "person, voices behind at -38 dBFS": lambda seed: s.render(
        s.silence(0.5),
        s.syllables(3, seed=seed),
        seconds=6,
        background=s.voices(6, -38.0, talkers=2, seed=seed),
    ),
    "greeting + beep": lambda seed: s.render(
        s.silence(0.2), s.syllables(12, seed=seed), s.silence(0.3), s.tone(1000, 0.5), seconds=8
    ),
    "music": lambda seed: s.render(s.melody(20, seed=seed), seconds=6),
    "silence": lambda _seed: s.render(seconds=6),
}


def run_call(pcm: np.ndarray, params: DetectorParams) -> tuple[float, int, str]:
    """CPU seconds to the verdict, the audio it took (ms), and the verdict."""
    detector = AmdDetector(params)
    started = time.process_time()
    at = 0
    verdict = None
    for start in range(0, pcm.size - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        verdict = detector.feed_pcm(pcm[start : start + FRAME_SAMPLES], at)
        at += FRAME_MS
        if verdict is not None:
            break
    if verdict is None:
        verdict = detector.finish(at)
    return time.process_time() - started, at, f"{verdict.kind.value} {verdict.reason}"


def bench(calls: int) -> dict[str, Any]:
    settings = {"default": DetectorParams(), "voices-behind check off": DetectorParams(
        foreground_gate_db=60.0
    )}  # fmt: skip
    results: dict[str, Any] = {}
    for name, make in CALLEES.items():
        clips = [make(seed) for seed in range(calls)]
        row: dict[str, Any] = {}
        for label, params in settings.items():
            runs = [run_call(pcm, params) for pcm in clips]
            cpu_ms = [r[0] * 1000 for r in runs]
            audio_ms = [r[1] for r in runs]
            row[label] = {
                "calls": len(runs),
                "cpu_ms_per_call_median": round(median(cpu_ms), 2),
                "audio_ms_per_call_median": median(audio_ms),
                "real_time_factor": round(sum(cpu_ms) / sum(audio_ms), 4),
                "verdicts": sorted({r[2] for r in runs}),
            }
        results[name] = row
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 calls per callee, not 60")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    calls = 10 if args.quick else 60
    results = bench(calls)
    print(f"AMD detector, {calls} calls per callee, one process")
    print(f"  {'callee':<36} {'setting':<26} {'CPU ms/call':>11} {'audio ms':>9} {'RTF':>8}")
    for name, row in results.items():
        for label, figures in row.items():
            print(
                f"  {name:<36} {label:<26} {figures['cpu_ms_per_call_median']:>11} "
                f"{figures['audio_ms_per_call_median']:>9.0f} {figures['real_time_factor']:>8}"
            )
    if args.json:
        write_json(args.json, {"machine": machine(), "calls": calls, "callees": results})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

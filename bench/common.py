"""Helpers shared by the benchmark scripts: figures, the machine, results on disk."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"


def at_least(low: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse ``type``: a number (``kind``) no smaller than ``low``, else a clear
    usage error (a size of 0 ran the default, or ended in a traceback)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            msg = f"{text!r} is not a number"
            raise argparse.ArgumentTypeError(msg) from None
        if not value >= low:  # also refuses nan
            msg = f"{text!r}: must be at least {low:g}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def quantiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max of durations in seconds, in milliseconds."""
    if not samples_s:
        return {"n": 0}
    ordered = sorted(samples_s)
    if len(ordered) == 1:
        only = round(ordered[0] * 1000, 3)
        return {"n": 1, "p50_ms": only, "p90_ms": only, "p99_ms": only, "max_ms": only}
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50_ms": round(q[49] * 1000, 3),
        "p90_ms": round(q[89] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def rss_bytes() -> int:
    """This process's resident set size now (not the peak)."""
    with Path("/proc/self/statm").open() as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def machine() -> dict[str, Any]:
    """What the figures ran on, for the results file and BENCHMARKS.md."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": commit,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def pin_to_one_core() -> int | None:
    """Run this process on one CPU (the least loaded is not knowable: the last one)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
    except (AttributeError, OSError):
        return None
    return cpus[-1]


def null_stream() -> TextIO:
    """Where the daemon's log lines go: rendered exactly as in production, then dropped."""
    return Path(os.devnull).open("w")


def raise_priority(niceness: int) -> int | None:
    """Give this process (and the processes it starts) priority over the rest of a shared
    machine, when allowed; returns the niceness in force, None when it could not be set."""
    if niceness == 0:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except (AttributeError, OSError):
        return None
    return os.getpriority(os.PRIO_PROCESS, 0)


def py_spy() -> str | None:
    """The py-spy sampling profiler next to this interpreter or on PATH, if installed."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def summarize_stacks(
    raw: str, top: int = 15, include: tuple[str, ...] = ("pbx_agent",)
) -> dict[str, list[tuple[str, float]]]:
    """Collapsed stacks (py-spy ``--format raw``) to the frames with the most samples:
    ``self`` (the frame on top of the stack) and ``inclusive`` (anywhere in it, frames whose
    text contains one of ``include``), as percentages of all samples."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        leaf = frames[-1] if frames else "(no Python frame)"
        own[leaf] = own.get(leaf, 0) + n
        for frame in set(frames):
            if any(part in frame for part in include):
                inclusive[frame] = inclusive.get(frame, 0) + n
    if total == 0:
        return {"self": [], "inclusive": []}

    def best(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [(frame, round(100 * n / total, 1)) for frame, n in ranked]

    return {"samples": [("all", float(total))], "self": best(own), "inclusive": best(inclusive)}


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

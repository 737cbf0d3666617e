"""Smoke tests of the benchmarks in ``bench/``: they run on tiny workloads and report what
they measured. No figure is compared with a threshold here: the machine is shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pbx_agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import ami_corpus  # noqa: E402
import run as bench_run  # noqa: E402


def run_script(*argv: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_corpus_copies_of_a_transcript_share_no_uniqueid() -> None:
    """Every copy of a transcript gets its own Uniqueids, so each is tracked as its own call."""
    stream, copies = ami_corpus.build_stream(3_000, concurrent=40)
    owners: dict[str, set[str]] = {}
    for block in stream.split(b"\r\n\r\n"):
        fields = dict(line.split(": ", 1) for line in block.decode().split("\r\n") if ": " in line)
        if "Uniqueid" in fields and "Linkedid" in fields:
            owners.setdefault(fields["Uniqueid"], set()).add(fields["Linkedid"])
    assert sum(copies.values()) > len(copies)  # some transcripts were copied more than once
    assert all(len(linked) == 1 for linked in owners.values())
    calls = set().union(*owners.values())
    # Without fresh ids the 22 transcripts hold about 30 calls between them, however often
    # they are copied.
    assert len(calls) > 2 * len(copies)


def test_parse_benchmark_feeds_every_parser_the_same_events(tmp_path: Path) -> None:
    """The codec, the daemon's path and panoramisk each count every event of the stream."""
    out = tmp_path / "parse.json"
    done = run_script(
        str(BENCH / "parse_bench.py"), "--events", "2000", "--rounds", "1", "--json", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    counts = {v: result["rounds"][0][v]["events"] for v in ("codec", "daemon", "panoramisk")}
    assert counts == {"codec": 2000, "daemon": 2000, "panoramisk": 2000}
    assert result["daemon_path"]["peak_live_calls"] > 0


def test_summary_lists_each_figure_beside_its_goal() -> None:
    """The runner's closing table has one row per figure, each with the issue's goal."""
    results = {
        "parse": {
            "codec_events_per_s": 60_000,
            "codec_vs_panoramisk": 2.9,
            "panoramisk_events_per_s": 21_000,
            "daemon_events_per_s": 17_000,
            "daemon_vs_panoramisk": 0.8,
        },
        "claims": {"skipped": "PostgreSQL not reachable"},
    }
    rows = bench_run.summary(results)
    assert [row[2] for row in rows] == [">= 2x panoramisk", ">= 2x panoramisk", "duplicates 0"]
    assert "2.90x" in rows[0][1]
    assert "skipped" in rows[2][1]


def test_amd_benchmark_times_each_callee_to_its_verdict(tmp_path: Path) -> None:
    """Each callee is run to its own verdict, with the voices-behind check on and off; with
    it off, the person with voices behind them is (wrongly) a machine: the bench measures
    the detector it says it does."""
    out = tmp_path / "amd.json"
    done = run_script(str(BENCH / "amd_bench.py"), "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    callees = json.loads(out.read_text())["callees"]
    assert callees["person"]["default"]["verdicts"] == ["HUMAN answer-then-silence"]
    assert callees["greeting + beep"]["default"]["verdicts"][0].startswith("MACHINE tone-")
    behind = callees["person, voices behind at -38 dBFS"]
    assert behind["default"]["verdicts"] == ["HUMAN answer-then-silence"]
    assert all(v.startswith("MACHINE") for v in behind["voices-behind check off"]["verdicts"])
    assert all(row["default"]["real_time_factor"] > 0 for row in callees.values())
    rows = bench_run.summary({"amd": json.loads(out.read_text())})
    assert len(rows) == len(callees)
    assert all(goal == "none set" for _, _, goal in rows)


def test_bench_command_is_registered() -> None:
    """``pbx-agent bench --full --only parse`` parses to the bench handler."""
    args = build_parser().parse_args(["bench", "--full", "--only", "parse"])
    assert args.command == "bench"
    assert args.full
    assert args.only == "parse"


@pytest.mark.slow
def test_live_benchmark_times_holds_and_prompts_on_a_small_load(tmp_path: Path) -> None:
    """A small live run matches holds to their actions and prompts to their instants."""
    script = (
        "import asyncio, json, sys\n"
        "import live_bench as lb\n"
        "w = lb.Workload(calls=30, rate=300, measure_s=3, hold_rate=4, silent_rate=2,\n"
        "                memory_calls=60, warmup_s=0.5, arrivals_per_s=100,\n"
        "                memory_arrivals_per_s=100)\n"
        "r = asyncio.run(lb.bench(w, niceness=0, profile=False))\n"
        "json.dump(r, open(sys.argv[1], 'w'), default=str)\n"
    )
    out = tmp_path / "live.json"
    done = run_script("-c", script, str(out), timeout_s=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["hold_to_originate"]["n"] > 0
    assert result["silent_prompt_error"]["n"] > 0
    assert set(result["rss_bytes"]) == {"0", "30", "60"}
    assert result["kept_per_call"]


@pytest.mark.parametrize(
    ("script", "argv", "said"),
    [
        ("parse_bench.py", ["--events", "0"], "--events: '0': must be at least 1"),
        ("parse_bench.py", ["--rounds", "x"], "--rounds: 'x' is not a number"),
        ("route_bench.py", ["--quick", "--decisions", "1"], "--decisions: '1': must be at least 2"),
        ("claims_bench.py", ["--quick", "--jobs", "0"], "--jobs: '0': must be at least 1"),
        ("claims_bench.py", ["--quick", "--seconds", "nan"], "--seconds: 'nan': must be at least"),
    ],
)
def test_a_size_a_benchmark_cannot_run_is_a_usage_error(
    script: str, argv: list[str], said: str
) -> None:
    """A size of 0 ran the default workload (or a full 1,000,000-row run) and others ended
    in a traceback: each is now refused before anything runs, saying why."""
    done = run_script(str(BENCH / script), *argv, timeout_s=60)
    assert done.returncode == 2
    assert said in done.stderr
    assert "Traceback" not in done.stderr

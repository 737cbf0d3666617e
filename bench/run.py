"""Runs every benchmark of the daemon and prints its figures against the goals of issue 9.

    ./pbx bench --quick          # a quick look, under 2 minutes
    ./pbx bench --full           # the figures BENCHMARKS.md records (about 12 minutes)
    .venv/bin/python bench/run.py --full --only parse,live

Each benchmark runs in its own process, one after the other (they would distort each
other's figures on a 2-core machine), and writes its JSON; the run's results are gathered in
``bench/results/<UTC time>-<mode>.json`` and ``bench/results/latest-<mode>.json`` (the folder
is git-ignored), with the machine they ran on. PostgreSQL (127.0.0.1:5432, or ``--pg`` / the
``PBX_AGENT_TEST_PG`` DSN) must let the account create databases; each benchmark creates its
own and drops it. Figures are printed; nothing here passes or fails on a threshold, except
that the exit status is non-zero when a benchmark crashed or found a duplicate callback.

| name   | issue item | script                                   |
| ------ | ---------- | ---------------------------------------- |
| parse  | 1          | parse_bench.py (vs panoramisk 1.4)       |
| live   | 2, 3, 4    | live_bench.py (+ fake_load.py, 2nd proc) |
| route  | 5          | route_bench.py (+ route_profile.py)      |
| claims | 6          | claims_bench.py                          |
| amd    | (issue 10) | amd_bench.py: detector CPU, no goal set  |
| unicast| (issue 10) | unicast_bench.py: FS legs at once, no goal |
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import BENCH, RESULTS, ROOT, machine, write_json

DEFAULT_PG = os.environ.get("PBX_AGENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ORDER = ("parse", "live", "route", "claims", "amd", "unicast")


def commands(mode: str, out: Path, pg: str, profile: bool) -> dict[str, tuple[list[str], float]]:
    """Each benchmark's command line and the time it may take (seconds)."""
    quick = mode == "quick"
    py = sys.executable
    parse = [py, str(BENCH / "parse_bench.py"), "--json", str(out / "parse.json")]
    parse += ["--events", "30000", "--rounds", "3"] if quick else ["--rounds", "7"]
    if profile:
        parse.append("--profile")
    live = [py, str(BENCH / "live_bench.py"), "--json", str(out / "live.json")]
    if quick:
        live.append("--quick")
    if not profile:
        live.append("--no-profile")
    route = [py, str(BENCH / "route_bench.py"), "--json", str(out / "route.json")]
    if quick:
        route.append("--quick")
    claims = [py, str(BENCH / "claims_bench.py"), "--json", str(out / "claims.json"), "--pg", pg]
    if quick:
        claims.append("--quick")
    if profile:
        claims.append("--profile")
    route += ["--pg", pg]
    amd = [py, str(BENCH / "amd_bench.py"), "--json", str(out / "amd.json")]
    if quick:
        amd.append("--quick")
    unicast = [py, str(BENCH / "unicast_bench.py"), "--json", str(out / "unicast.json")]
    if quick:
        unicast.append("--quick")
    return {
        "amd": (amd, 300 if quick else 900),
        "unicast": (unicast, 300 if quick else 900),
        "parse": (parse, 300 if quick else 1200),
        "live": (live, 300 if quick else 1800),
        "route": (route, 300 if quick else 1800),
        "claims": (claims, 300 if quick else 1200),
    }


def run_one(name: str, argv: list[str], timeout_s: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
    print(f"\n### {name}: {' '.join(Path(a).name if '/' in a else a for a in argv[1:])}")
    sys.stdout.flush()
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout_s:.0f} s"}
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
    return {"status": status, "seconds": round(time.monotonic() - started, 1)}


def profile_route(out: Path, pg: str) -> dict[str, Any]:
    """route_profile.py: route_bench.py's quick workload, its one-at-a-time decision phase
    under cProfile (both databases): where a route decision's time goes."""
    path = out / "route-profile.json"
    argv = [sys.executable, str(BENCH / "route_profile.py"), "--pg", pg, "--json", str(path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
    print("\n### route, profiled (route_profile.py: the decision phase under cProfile)")
    sys.stdout.flush()
    try:
        subprocess.run(argv, cwd=ROOT, env=env, timeout=600, check=False, stdout=subprocess.DEVNULL)
        profiled: dict[str, Any] = json.loads(path.read_text())
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return {"note": f"no profile: {exc}"}
    return profiled


def figure(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def summary(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, measured, goal) rows for the table printed at the end."""
    rows: list[tuple[str, str, str]] = []
    parse, live = results.get("parse") or {}, results.get("live") or {}
    route, claims = results.get("route") or {}, results.get("claims") or {}
    if parse:
        rows.append(
            (
                "1 AMI events/s, codec alone",
                (
                    f"{parse['codec_events_per_s']:,} ({parse['codec_vs_panoramisk']:.2f}x "
                    f"panoramisk {parse['panoramisk_events_per_s']:,})"
                ),
                ">= 2x panoramisk",
            )
        )
        rows.append(
            (
                "1 AMI events/s, codec+translator+engine",
                f"{parse['daemon_events_per_s']:,} ({parse['daemon_vs_panoramisk']:.2f}x)",
                ">= 2x panoramisk",
            )
        )
    if live:
        h, s = live["hold_to_originate"], live["silent_prompt_error"]
        rows.append(
            (
                "2 hold -> action p50 / p99",
                f"{h.get('p50_ms')} / {h.get('p99_ms')} ms",
                "p99 <= 2 ms",
            )
        )
        u = live.get("unhold_to_hangup") or {}
        rows.append(
            (
                "2 unhold -> hold program stopped p50 / p99",
                f"{u.get('p50_ms')} / {u.get('p99_ms')} ms",
                "<= 100 ms",
            )
        )
        rows.append(
            (
                "3 silent-caller prompt error p50 / p99",
                f"{s.get('p50_ms')} / {s.get('p99_ms')} ms",
                "|p99| <= 50 ms",
            )
        )
        rss = live["rss_bytes"]
        rows.append(
            (
                "4 memory per call (RSS " + "/".join(rss) + " calls)",
                f"{live['bytes_per_call']:,} B ("
                + ", ".join(f"{v / 2**20:.0f}" for v in rss.values())
                + f" MiB); objects {live.get('kept_bytes_per_call', 0):,} B",
                "<= 5 KB",
            )
        )
    for r in route.get("results", []):
        seq = r["sequential"]
        rows.append(
            (
                f"5 route decisions {r['database']} ({r['rows']:,} rows)",
                f"{seq['decisions_per_s']:,.0f}/s, p99 {seq['p99_ms']} ms",
                ">= 2,000/s, p99 <= 5 ms",
            )
        )
    if claims and "skipped" not in claims:
        c = claims["claim_transaction"]
        rows.append(
            (
                f"6 callback claims ({claims['workload']['jobs']:,} jobs, 4 daemons)",
                (
                    f"{claims['claims_per_s']:,.0f}/s, p99 {c.get('p99_ms')} ms, "
                    f"duplicates {claims['duplicates']}"
                ),
                "duplicates 0",
            )
        )
    elif claims:
        rows.append(("6 callback claims", f"skipped: {claims['skipped']}", "duplicates 0"))
    for callee, settings in (results.get("amd") or {}).get("callees", {}).items():
        figures = settings["default"]
        rows.append(
            (
                f"AMD detector, {callee}",
                (
                    f"{figures['cpu_ms_per_call_median']} ms CPU per call, "
                    f"real-time factor {figures['real_time_factor']}"
                ),
                "none set",
            )
        )
    rows.extend(
        (
            f"unicast receiver, {row['legs']} legs at once",
            (
                f"{row['correct']}/{row['legs']} right, lag p50 {row['lag']['p50_ms']:.0f} ms "
                f"max {row['lag']['max_ms']:.0f} ms, {row['receiver_cpu_per_s']} core"
            ),
            "none set",
        )
        for row in (results.get("unicast") or {}).get("rounds", [])
    )
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a quick look (the default)")
    mode.add_argument("--full", action="store_true", help="the figures for BENCHMARKS.md")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--pg", default=DEFAULT_PG, help="admin DSN of the PostgreSQL server")
    parser.add_argument(
        "--profile", action="store_true", help="profile in quick mode too (always on in full)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    mode_name = "full" if args.full else "quick"
    wanted = [n.strip() for n in args.only.split(",")] if args.only else list(ORDER)
    unknown = set(wanted) - set(ORDER)
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {','.join(ORDER)}"
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.results / f"{stamp}-{mode_name}"
    out.mkdir(parents=True, exist_ok=True)
    about = machine()
    print(
        f"pbx-agent benchmarks, {mode_name} mode: {about['cpu']} x{about['cpus']}, "
        f"{about['memory_gib']} GiB, Python {about['python']}, load {about['load_avg_at_start']}"
    )
    started = time.monotonic()
    plan = commands(mode_name, out, args.pg, profile=args.full or args.profile)
    runs: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for name in ORDER:
        if name not in wanted:
            continue
        argv_, timeout_s = plan[name]
        runs[name] = run_one(name, argv_, timeout_s)
        path = out / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
        if name == "route" and (args.full or args.profile) and name in results:
            results[name]["profile"] = profile_route(out, args.pg)
    about["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    combined = {
        "mode": mode_name,
        "machine": about,
        "seconds": round(time.monotonic() - started, 1),
        "runs": runs,
        "results": results,
    }
    write_json(args.results / f"{stamp}-{mode_name}.json", combined)
    write_json(args.results / f"latest-{mode_name}.json", combined)
    print(f"\n=== summary ({mode_name}, {combined['seconds']} s) ===")
    for label, measured, goal in summary(results):
        print(f"  {label:<46} {measured:<52} goal {goal}")
    for name, run in runs.items():
        if run["status"] != "ok":
            print(f"  {name}: {run['status']}")
    print(f"\nresults: {args.results / f'{stamp}-{mode_name}.json'}")
    crashed = any(r["status"] != "ok" for r in runs.values())
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

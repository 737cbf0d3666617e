"""``pbx-agent report``: the figures computed from a seeded store, and their renderings."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog

from pbx_agent import cli
from pbx_agent.errors import ConfigError
from pbx_agent.reporting import (
    Report,
    build_report,
    parse_moment,
    render_csv,
    render_json,
    render_table,
)
from pbx_agent.store import Store
from tests.report.seed import SINCE, UNTIL, seed


@pytest.fixture
async def report(store: Store) -> Report:
    await seed(store)
    return await build_report(store, SINCE, UNTIL, hold_target=0.05, timezone="UTC")


async def test_share_of_calls_with_hold_is_measured_against_the_target(report: Report) -> None:
    """3 of the 20 calls served had a hold (holds rows or had_hold): 15 %, over the 5 %
    target. The 5 calls no agent is known to have taken count as calls, not in the share."""
    assert report.calls.calls == 25
    assert report.calls.served == 20
    assert report.calls.with_hold == 3
    assert report.calls.hold_share == pytest.approx(0.15)
    assert report.calls.target_met is False


async def test_holds_over_the_tier_limit_are_counted_by_agent(report: Report) -> None:
    """Agent 1001 first (2 over its limit), then 1002; durations from start to end."""
    holds = report.holds
    assert holds.holds == 4
    assert holds.over_limit == 2
    assert [(a.agent, a.tier, a.holds, a.over_limit, a.longest_s) for a in holds.by_agent] == [
        ("1001", "specialist", 3, 2, 200.0),
        ("1002", "senior", 1, 0, 40.0),
    ]
    assert holds.median_s == 40.0
    assert holds.longest_s == 200.0
    assert holds.callback_offers_taken == 1


async def test_silences_and_talk_over_come_from_the_dead_air_facts(report: Report) -> None:
    """R8 (003 §17, "抢话"): two silences over 3 s, one talk-over, with the longest of each."""
    v = report.conversation
    assert (v.silences, v.longest_silence_s) == (2, 12.5)
    assert (v.talk_overs, v.longest_talk_over_s) == (1, 5.7)


async def test_drops_and_routings_come_from_the_decisions_of_the_period(report: Report) -> None:
    """Silent (one before the queue), lingering and script drops; night IVR and flagged."""
    drops = report.drops
    assert drops.silent_caller == 2
    assert drops.silent_caller_before_queue == 1
    assert drops.lingering == 1
    assert drops.scripts == {"abuse": 1, "prank": 1}
    assert report.routing.night_ivr == 3
    assert report.routing.flagged_queue == 1


async def test_callbacks_made_answered_exhausted_and_overdue(report: Report) -> None:
    """Attempts that reached the switch, a person reached, jobs finished, promises late."""
    cb = report.callbacks
    assert cb.made == 5
    assert cb.answered == 1
    assert cb.machine == 1
    assert cb.attempts["no_answer"] == 2
    assert cb.attempts["not_placed"] == 1
    assert (cb.done, cb.exhausted, cb.cancelled, cb.overdue) == (1, 1, 1, 1)
    assert cb.overdue_open == 1
    assert cb.jobs_created == {
        "abnormal_drop": 2,
        "one_way_audio": 0,
        "requested": 1,
        "promised": 2,
    }


async def test_an_empty_period_has_no_share_rather_than_zero(store: Store) -> None:
    """No calls: the share is unknown, not 0 % (which would read as the target met)."""
    figures = await build_report(store, SINCE, UNTIL)
    assert figures.calls.hold_share is None
    assert figures.calls.target_met is None
    assert "no calls" in render_table(figures)


async def test_the_table_reads_as_a_manager_would_ask(report: Report) -> None:
    """The terminal table states the share against the target and lists agents."""
    text = render_table(report, ZoneInfo("UTC"))
    assert "15.0% (3 of 20 served; target <= 5%: NOT MET)" in text
    assert re.search(
        r"^Silences over the limit, not on hold +2 \(longest 12 s\)$", text, re.MULTILINE
    )
    assert re.search(r"^Holds over the tier limit +2$", text, re.MULTILINE)
    assert re.search(r"^Callback attempts made +5$", text, re.MULTILINE)
    assert re.search(r"^1001 +specialist +3 +2 +3:20$", text, re.MULTILINE)


async def test_json_and_csv_carry_the_same_figures(report: Report) -> None:
    """JSON nests the figures; CSV has one figure per row with section and key."""
    data = json.loads(render_json(report))
    assert data["calls"]["hold_share"] == pytest.approx(0.15)
    assert data["holds"]["by_agent"][0]["agent"] == "1001"
    assert data["since"] == SINCE.isoformat()
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    by = {(r["section"], r["figure"], r["key"]): r["value"] for r in rows}
    assert by["calls", "hold_share", ""] == "0.15"
    assert by["holds", "agent_over_limit", "1001"] == "2"
    assert by["callbacks", "exhausted", ""] == "1"
    assert by["callbacks", "attempts", "machine"] == "1"


def test_period_starts_are_lengths_back_or_iso_times() -> None:
    """24h, 7d, an ISO date in the site's zone, an explicit offset; anything else refused."""
    now = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
    zone = ZoneInfo("Europe/Moscow")
    assert parse_moment("24h", now=now, zone=zone) == datetime(2026, 6, 9, 12, 0, tzinfo=UTC)
    assert parse_moment("7d", now=now, zone=zone) == datetime(2026, 6, 3, 12, 0, tzinfo=UTC)
    assert parse_moment("2026-06-10", now=now, zone=zone) == datetime(2026, 6, 9, 21, 0, tzinfo=UTC)
    assert parse_moment("2026-06-10T08:00+00:00", now=now, zone=zone).hour == 8
    with pytest.raises(ConfigError, match="24h"):
        parse_moment("yesterday", now=now, zone=zone)
    for too_far in ("1000000d", "99999999999d"):  # OverflowError before year 1
        with pytest.raises(ConfigError, match="before the calendar starts"):
            parse_moment(too_far, now=now, zone=zone)


BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("until", "span", "elapsed"),
    [
        (datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN), "90m", timedelta(minutes=90)),  # forward
        (datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN), "24h", timedelta(hours=24)),
        (datetime(2026, 10, 25, 3, 0, tzinfo=BERLIN), "1h", timedelta(hours=1)),  # back
        (datetime(2026, 10, 25, 12, 0, tzinfo=BERLIN), "24h", timedelta(hours=24)),
    ],
)
def test_hours_and_minutes_back_are_elapsed_time_across_a_clock_change(
    until: datetime, span: str, elapsed: timedelta
) -> None:
    """``--since 90m --until`` a local time just after Berlin's clocks went forward is 90
    minutes of calls (it was 30: the length was counted on the wall clock)."""
    since = parse_moment(span, now=until, zone=BERLIN)
    assert until.astimezone(UTC) - since.astimezone(UTC) == elapsed


def test_days_back_are_calendar_days_across_a_clock_change() -> None:
    """``7d`` is the same wall time a week before: 167 h across the spring change."""
    zone = ZoneInfo("Europe/Berlin")
    end = datetime(2026, 3, 30, 12, 0, tzinfo=zone)
    since = parse_moment("7d", now=end, zone=zone)
    assert since.timetuple()[:5] == (2026, 3, 23, 12, 0)
    assert end.astimezone(UTC) - since.astimezone(UTC) == timedelta(hours=167)


async def test_a_period_empty_as_instants_is_refused_whatever_the_wall_times(
    store: Store,
) -> None:
    """02:00 and 03:00 local on Berlin's spring night are one instant (02:00 does not exist):
    the period is empty and refused (compared as wall times it passed: an all-zero report)."""
    zone = ZoneInfo("Europe/Berlin")
    until = datetime(2026, 3, 29, 3, 0, tzinfo=zone)
    since = until - timedelta(hours=1)  # wall time 02:00, inside the skipped hour
    assert since.astimezone(UTC) == until.astimezone(UTC)
    with pytest.raises(ConfigError, match="the period is empty"):
        await build_report(store, since, until)


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """The command configures structlog for the process (warnings to stderr): put the test
    run's configuration back, or later tests would not see info events."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("logging_restored")
async def test_the_command_prints_json_for_a_period(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pbx-agent report --since ... --until ... --format json` against a seeded SQLite file."""
    config = await _site_with_store(tmp_path, monkeypatch, seeded=True)
    args = [
        "report",
        "--config",
        str(config),
        "--since",
        SINCE.isoformat(),
        "--until",
        UNTIL.isoformat(),
        "--format",
        "json",
    ]
    status = await _run_cli(args)
    out = capsys.readouterr().out
    assert status == 0, out
    data = json.loads(out)
    assert data["calls"]["with_hold"] == 3
    assert data["routing"]["night_ivr"] == 3


async def _site_with_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, seeded: bool
) -> Path:
    """A site file (UTC) whose SQLite store is upgraded, and seeded when asked."""
    for name in [n for n in os.environ if n.upper().startswith("PBX_AGENT_")]:
        monkeypatch.delenv(name)
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.sqlite3'}"
    store = Store.open(url)
    await store.upgrade()
    if seeded:
        await seed(store)
    await store.close()
    config = tmp_path / "site.toml"
    config.write_text(f'[site]\ntimezone = "UTC"\n[store]\nurl = "{url}"\n', encoding="utf-8")
    return config


async def _run_cli(args: list[str]) -> int:
    # The command runs its own event loop: keep it off this test's loop.
    return await asyncio.to_thread(cli.main, args)


async def test_report_out_to_a_missing_folder_says_so_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = await _site_with_store(tmp_path, monkeypatch, seeded=False)
    missing = tmp_path / "no-such-folder" / "report.csv"
    status = await _run_cli(["report", "--config", str(config), "--out", str(missing)])
    err = capsys.readouterr().err
    assert status == 1
    assert f"cannot write the report to {missing}" in err
    assert "Traceback" not in err

"""``pbx-agent report``: agent ids, tiers and script names the PBX sent cannot reach the
terminal raw or forge a report line, in the table, the CSV or the JSON."""

from __future__ import annotations

import csv
import io
import json

from pbx_agent.reporting import Report, build_report, render_csv, render_json, render_table
from pbx_agent.store import Decision, HoldRecord, Store
from tests.report.seed import IN, SINCE, UNTIL

AGENT = "alice\x1b]0;owned\x07\x1b[2J\u202e\x9b"  # OSC title, clear screen, bidi, C1 CSI
AGENT_SHOWN = "alice\\x1b]0;owned\\x07\\x1b[2J\\u202e\\u009b"
TIER = "vip\r\nCallbacks done                           9999"
TIER_SHOWN = "vip\\r\\nCallbacks done                           9999"
SCRIPT = "abuse\x1b[31m\nnote: forged"
SCRIPT_SHOWN = "abuse\\x1b[31m\\nnote: forged"


async def hostile_report(store: Store) -> Report:
    await store.holds.add(HoldRecord(call_id="c.1", started_at=IN, agent=AGENT, tier=TIER))
    await store.decisions.record(
        Decision(at=IN, rule="R4", action="script_drop", reason="r", details={"script": SCRIPT})
    )
    return await build_report(store, SINCE, UNTIL, timezone="UTC")


def unprintable(text: str) -> set[str]:
    return {ch for ch in text if not ch.isprintable() and ch != "\n"}


async def test_the_table_shows_agent_ids_tiers_and_scripts_escaped(store: Store) -> None:
    """No control character reaches the terminal; the escaped text is on one line."""
    text = render_table(await hostile_report(store))
    assert unprintable(text) == set()
    assert f"{AGENT_SHOWN}  {TIER_SHOWN}" in text
    assert f"({SCRIPT_SHOWN} 1)" in text
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith("Callbacks done") and "9999" in line]


async def test_the_csv_has_one_line_per_figure_and_no_raw_controls(store: Store) -> None:
    """Agent ids and script names are escaped keys: no CR, LF or ESC inside a field."""
    text = render_csv(await hostile_report(store))
    assert unprintable(text) == set()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(text.splitlines()) == len(rows) + 1
    keys = {(r["figure"], r["key"]) for r in rows}
    assert ("agent_holds", AGENT_SHOWN) in keys
    assert ("script", SCRIPT_SHOWN) in keys


async def test_the_json_keeps_the_exact_text_with_no_raw_controls(store: Store) -> None:
    """C1 controls and bidi overrides are written as \\u escapes; parsed back, it is exact."""
    text = render_json(await hostile_report(store))
    assert unprintable(text) == set()
    data = json.loads(text)
    assert data["holds"]["by_agent"][0]["agent"] == AGENT
    assert data["holds"]["by_agent"][0]["tier"] == TIER
    assert data["drops"]["scripts"] == {SCRIPT: 1}

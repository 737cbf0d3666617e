"""The FreeSWITCH transcripts as the translator sees them: each event with the time it arrived."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import TypeVar

from pbx_agent.model import events as ev
from pbx_agent.pbx.freeswitch_events import FreeswitchTranslator
from pbx_agent.wire.esl import EslDecoder, EslEvent, EslMessage

TRACES = Path(__file__).resolve().parents[1] / "traces" / "freeswitch"
_ORIGINATION_UUID = re.compile(r"origination_uuid=([0-9a-f-]{36})")


@functools.cache
def _received(name: str) -> tuple[tuple[float, EslMessage], ...]:
    lines = (TRACES / f"{name}.timeline.jsonl").read_text("utf-8").splitlines()[1:]
    decoder = EslDecoder()
    out: list[tuple[float, EslMessage]] = []
    for record in map(json.loads, lines):
        if record["dir"] != "recv":
            continue
        decoder.feed(record["data"].encode("utf-8", "surrogateescape"))
        while (message := decoder.next_message()) is not None:
            out.append((float(record["t"]), message))
    return tuple(out)


def timed_events(name: str) -> list[tuple[float, EslEvent]]:
    """Every event of the transcript ``name``, with its arrival time (s after connect)."""
    return [(t, m.event()) for t, m in _received(name) if m.is_event]


def bgapi_jobs(name: str) -> list[str]:
    """The Job-UUIDs FreeSWITCH gave the ``bgapi`` commands, in order."""
    return [m["Job-UUID"] for _, m in _received(name) if m.get("Job-UUID") and not m.is_event]


def originated_uuids(name: str) -> list[str]:
    """The ``origination_uuid`` of every originate the test client sent, in order."""
    sent = (TRACES / f"{name}.sent.txt").read_text("utf-8").split("#=== BEGIN RAW ===\n", 1)[1]
    return [
        found.group(1)
        for line in sent.splitlines()
        if line.startswith("bgapi originate") and (found := _ORIGINATION_UUID.search(line))
    ]


def replay(
    name: str, translator: FreeswitchTranslator | None = None, *, until: float | None = None
) -> list[tuple[float, ev.PbxEvent]]:
    """Feed the transcript to ``translator`` at the recorded times, polling when it asks;
    the neutral events with the time each came out."""
    translator = translator or FreeswitchTranslator()
    out: list[tuple[float, ev.PbxEvent]] = []

    def poll_until(t: float) -> None:
        while (due := translator.next_deadline()) is not None and due <= t:
            out.extend((due, e) for e in translator.poll(due))

    last = 0.0
    for t, event in timed_events(name):
        if until is not None and t > until:
            break
        poll_until(t)
        out.extend((t, e) for e in translator.feed(event, t))
        last = t
    poll_until(last + 5.0)
    return out


T = TypeVar("T")


def of_type(events: list[tuple[float, ev.PbxEvent]], kind: type[T]) -> list[tuple[float, T]]:
    return [(t, e) for t, e in events if isinstance(e, kind)]

"""Reading the Asterisk 22 transcripts (tests/traces/asterisk-22) for comparisons."""

from __future__ import annotations

import json
from pathlib import Path

from pbx_agent.wire.ami import AmiBanner, AmiDecoder, AmiMessage

TRACES = Path(__file__).resolve().parents[1] / "traces" / "asterisk-22"
MARK = b"#=== BEGIN RAW ===\n"
# Periodic RTP reports: timing noise, never part of a scripted sequence.
NOISE = frozenset({"RTCPReceived", "RTCPSent"})


def trace_path(prefix: str, suffix: str = "recv.txt") -> Path:
    (path,) = TRACES.glob(f"{prefix}-*.{suffix}")
    return path


def raw(prefix: str, suffix: str = "recv.txt") -> bytes:
    data = trace_path(prefix, suffix).read_bytes()
    return data.split(MARK, 1)[1]


def messages(prefix: str, *, sent: bool = False) -> list[AmiMessage]:
    """Every AMI message of a transcript (received by default), banner left out."""
    decoder = AmiDecoder(expect_banner=not sent)
    decoder.feed(raw(prefix, "sent.txt" if sent else "recv.txt"))
    decoder.feed(b"")
    out: list[AmiMessage] = []
    while (message := decoder.next_message()) is not None:
        if not isinstance(message, AmiBanner):
            out.append(message)
    return out


def all_recv_messages() -> list[tuple[str, AmiMessage]]:
    """(scenario, message) for every AMI transcript (05a is FastAGI, not AMI)."""
    out: list[tuple[str, AmiMessage]] = []
    for path in sorted(TRACES.glob("*.recv.txt")):
        prefix = path.name.split("-", 1)[0]
        if prefix == "05a":
            continue
        out.extend((prefix, message) for message in messages(prefix))
    return out


def names(message: AmiMessage) -> tuple[str, ...]:
    return tuple(name for name, _ in message.fields)


def signature(message: AmiMessage) -> tuple[str, tuple[str, ...]]:
    return message.name, names(message)


def event_signatures(
    events: list[AmiMessage], *, skip: frozenset[str] = NOISE
) -> list[tuple[str, tuple[str, ...]]]:
    """(Event name, field names) of each event, in order, noise left out."""
    return [
        signature(event) for event in events if event.kind == "event" and event.name not in skip
    ]


def agi_lines(prefix: str = "05a", *, sent: bool = False) -> list[str]:
    """The FastAGI transcript as lines (LF-framed, LF removed)."""
    text = raw(prefix, "sent.txt" if sent else "recv.txt").decode("utf-8")
    return text.split("\n")[:-1]


def timeline(prefix: str) -> list[dict[str, object]]:
    path = trace_path(prefix, "timeline.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return rows[1:]

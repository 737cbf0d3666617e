"""A realistic AMI event stream for the benchmarks, built from the captured Asterisk 22
transcripts (``tests/traces/asterisk-22/*.recv.txt``).

Each transcript is one "session" (a call, a hold with a whisper, an originate...). The
stream plays many copies of them at once: up to ``concurrent`` sessions are live, their
events interleaved round-robin, a finished session replaced by a fresh copy of a transcript
picked at random (seeded). Every copy gets its own Uniqueids, Linkedids, bridge ids and
channel-name suffixes, so the daemon tracks each copy as a separate call, as it would on a
busy switch. Only events are kept (no banner, no responses): they are what a busy switch
sends. The bytes are the transcripts' own, re-encoded with the project's encoder after the
ids were rewritten.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pbx_agent.wire.ami import AmiDecoder, AmiMessage, encode_message

TRACES = Path(__file__).resolve().parent.parent / "tests" / "traces" / "asterisk-22"
RAW_MARK = b"#=== BEGIN RAW ===\n"
CHUNK = 4096

_EPOCH_ID = re.compile(r"^\d{9,11}\.\d+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CHANNEL_SUFFIX = re.compile(r"((?:PJSIP|Local|SIP|IAX2|DAHDI)/[^\s,;]*?-)([0-9a-f]{8})")
_ID_HEADERS = ("uniqueid", "linkedid", "bridgeid")
_SESSION_EVENTS = frozenset({"FullyBooted", "SuccessfulAuth", "RequestBadFormat"})


@dataclass(frozen=True, slots=True)
class Session:
    """One transcript's events, as (name, value) field tuples."""

    name: str
    events: tuple[tuple[tuple[str, str], ...], ...]


def load_sessions(traces: Path = TRACES) -> list[Session]:
    """Every AMI transcript that carries events (the FastAGI one is not AMI)."""
    sessions: list[Session] = []
    for path in sorted(traces.glob("*.recv.txt")):
        if "fastagi-session" in path.name:
            continue
        raw = path.read_bytes().split(RAW_MARK, 1)[1]
        decoder = AmiDecoder(expect_banner=raw.startswith(b"Asterisk Call Manager/"))
        decoder.feed(raw)
        decoder.feed(b"")
        events: list[tuple[tuple[str, str], ...]] = []
        while True:
            message = decoder.next_message()
            if message is None:
                break
            if _live_traffic(message):
                events.append(message.fields)
        if events:
            sessions.append(Session(path.name.removesuffix(".recv.txt"), tuple(events)))
    return sessions


def _live_traffic(message: object) -> bool:
    """An event a busy switch keeps sending: not the login's greeting events, not the items
    of a list action (they answer one action of the capture's own client)."""
    return (
        isinstance(message, AmiMessage)
        and message.kind == "event"
        and message.name not in _SESSION_EVENTS
        and message.action_id is None
    )


class _Renamer:
    """Fresh ids for one copy of a session: the same original id maps to the same new one."""

    def __init__(self, copy: int, ids: Iterator[int]) -> None:
        self.copy = copy
        self._ids = ids
        self._map: dict[str, str] = {}

    def _fresh(self, old: str) -> str:
        new = self._map.get(old)
        if new is None:
            n = next(self._ids)
            if _UUID.match(old):
                new = f"{n:08x}-0000-4000-8000-{self.copy:012x}"
            else:
                new = f"{1_795_000_000 + self.copy // 1000}.{n}"
            self._map[old] = new
        return new

    def _suffix(self, match: re.Match[str]) -> str:
        old = match.group(2)
        new = self._map.get("chan:" + old)
        if new is None:
            new = f"{next(self._ids) & 0xFFFFFFFF:08x}"
            self._map["chan:" + old] = new
        return match.group(1) + new

    def fields(self, fields: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for name, value in fields:
            new = value
            if name.lower().endswith(_ID_HEADERS) and (
                _EPOCH_ID.match(value) or _UUID.match(value)
            ):
                new = self._fresh(value)
            elif "/" in value and "-" in value:
                new = _CHANNEL_SUFFIX.sub(self._suffix, value)
            out.append((name, new))
        return out


def build_stream(
    total_events: int = 100_000, *, concurrent: int = 200, seed: int = 9
) -> tuple[bytes, dict[str, int]]:
    """``total_events`` events from ``concurrent`` interleaved session copies, as bytes,
    and how many copies of each transcript went in."""
    sessions = load_sessions()
    rng = random.Random(seed)
    ids = itertools.count(1)
    copies = itertools.count(1)
    used: dict[str, int] = {}
    live: deque[tuple[_Renamer, Iterator[tuple[tuple[str, str], ...]]]] = deque()
    parts: list[bytes] = []

    def start() -> None:
        session = rng.choice(sessions)
        used[session.name] = used.get(session.name, 0) + 1
        live.append((_Renamer(next(copies), ids), iter(session.events)))

    for _ in range(concurrent):
        start()
    while len(parts) < total_events:
        renamer, events = live.popleft()
        fields = next(events, None)
        if fields is None:
            start()
            continue
        parts.append(encode_message(renamer.fields(fields)))
        live.append((renamer, events))
    return b"".join(parts), dict(sorted(used.items()))


def chunks(stream: bytes, size: int = CHUNK) -> list[bytes]:
    """The stream cut into fixed-size reads, as a socket would hand it over."""
    return [stream[i : i + size] for i in range(0, len(stream), size)]

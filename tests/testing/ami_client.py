"""A raw AMI client for testing the fake Asterisk over real loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from pbx_agent.wire.ami import AmiBanner, AmiDecoder, AmiMessage, encode_action

# Values that differ from run to run (times, ids, ports) and are compared by name only.
VOLATILE = frozenset(
    {
        "Uptime",
        "LastReload",
        "EventTV",
        "SessionTV",
        "SessionID",
        "LocalAddress",
        "RemoteAddress",
        "Timestamp",
        "CoreStartupDate",
        "CoreStartupTime",
        "CoreReloadDate",
        "CoreReloadTime",
        "CoreProcessedCalls",
        "Uniqueid",
        "Linkedid",
        "DestUniqueid",
        "DestLinkedid",
        "Duration",
        "Seconds",
        "BridgeUniqueid",
        "BridgeId",
        "BridgeID",
        "CommandId",
    }
)


def normalized(message: AmiMessage) -> tuple[tuple[str, str], ...]:
    """The message with volatile values (and RTP statistics) replaced by '*'."""
    rtp_stats = (message.get("Variable") or "").startswith(("RTPAUDIOQOS", "BRIDGEPVTCALLID"))
    out = []
    for name, value in message.fields:
        if name in VOLATILE or (name == "Value" and rtp_stats and value):
            out.append((name, "*"))
        else:
            out.append((name, value))
    return tuple(out)


class AmiTestClient:
    """Reads everything the fake sends; every wait has a deadline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = AmiDecoder(expect_banner=True)
        self.banner: AmiBanner | None = None
        self.received = bytearray()
        self._ready: list[AmiMessage] = []

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> AmiTestClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 2.0)
        return cls(reader, writer)

    async def login(self, secret: str = "not-a-real-secret", **fields: str) -> AmiMessage:
        self.send("Login", [("Username", "lab"), ("Secret", secret), *fields.items()], "login")
        return await self.response("login")

    def send(
        self, action: str, fields: Iterable[tuple[str, str]] = (), action_id: str | None = None
    ) -> None:
        self.writer.write(encode_action(action, fields, action_id=action_id))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def _fill(self, timeout_s: float) -> bool:
        """Read once; False at end of stream."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
        self.received += data
        self.decoder.feed(data)
        while (message := self.decoder.next_message()) is not None:
            if isinstance(message, AmiBanner):
                self.banner = message
            else:
                self._ready.append(message)
        return bool(data)

    async def next(self, timeout_s: float = 2.0) -> AmiMessage:
        while not self._ready:
            if not await self._fill(timeout_s):
                msg = "AMI stream ended"
                raise ConnectionError(msg)
        return self._ready.pop(0)

    async def until(self, predicate: object, timeout_s: float = 2.0) -> list[AmiMessage]:
        """Messages up to and including the first one ``predicate`` accepts."""
        assert callable(predicate)
        out: list[AmiMessage] = []
        while True:
            message = await self.next(timeout_s)
            out.append(message)
            if predicate(message):
                return out

    async def response(self, action_id: str, timeout_s: float = 2.0) -> AmiMessage:
        messages = await self.until(
            lambda m: m.kind == "response" and m.action_id == action_id, timeout_s
        )
        return messages[-1]

    async def event(self, name: str, timeout_s: float = 2.0) -> AmiMessage:
        messages = await self.until(lambda m: m.kind == "event" and m.name == name, timeout_s)
        return messages[-1]

    async def read_to_eof(self, timeout_s: float = 2.0) -> list[AmiMessage]:
        out: list[AmiMessage] = []
        while True:
            if self._ready:
                out.extend(self._ready)
                self._ready.clear()
            if not await self._fill(timeout_s):
                out.extend(self._ready)
                self._ready.clear()
                return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

"""An AudioSocket client that behaves like Asterisk's ``AudioSocket()`` application, for the
fake Asterisk and for tests: it connects to the daemon's AudioSocket server and streams a
callee's voice until the server lets the call go.

What Asterisk 22 does (``apps/app_audiosocket.c``, ``res/res_audiosocket.c``) and this
client copies:

- it connects to ``host:port`` within 2 s (``MAX_CONNECT_TIMEOUT_MSEC``); a service that
  refuses or does not answer makes ``AudioSocket()`` return -1;
- it sends the UUID frame first (``ast_audiosocket_init``), then the channel's audio as
  20 ms signed-linear frames, as long as the channel is up (a silent callee is silence
  frames, not no frames);
- a hang-up frame from the server, or the server closing the socket, ends the application
  gracefully: it returns 0 and the dialplan goes on;
- the channel hanging up ends it with -1, the socket closed without a frame.

The callee's voice is synthetic (``pbx_agent.amd.signals``), see ``CalleeVoice``. Frames are
sent in ``tick_ms`` batches paced on the event loop's clock (``pace`` = 0 sends as fast as
the socket takes them), so the lab's time-lapse loop speeds calls up like everything else.
``STALL`` sends the UUID frame and then nothing: a leg whose media stopped.

Invariants: every await is bounded (connect, each write, the whole call by ``max_s`` of
loop time); the reader task is owned and awaited before ``stream_call`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pbx_agent.amd import signals
from pbx_agent.wire.audiosocket import (
    AUDIO_FRAME_BYTES,
    AudioSocketDecoder,
    AudioSocketHangup,
    AudioSocketProtocolError,
    encode_audio,
    encode_uuid,
)

__all__ = ["AudioSocketRun", "CalleeVoice", "callee_audio", "stream_call"]

CONNECT_TIMEOUT_S = 2.0  # Asterisk's MAX_CONNECT_TIMEOUT_MSEC
_WRITE_TIMEOUT_S = 2.0
_FRAME_MS = 20


class CalleeVoice(StrEnum):
    """Who answers a callback, as heard through ``AudioSocket()``."""

    HUMAN = "human"  # "Алло?": three syllables after 0.4 s, then listening
    # the same over steady pink noise at -38 dBFS and two people talking behind at -32
    NOISY_HUMAN = "noisy_human"
    MACHINE = "machine"  # two sentences of a recorded greeting, then the beep
    SILENCE = "silence"  # answers and says nothing
    STALL = "stall"  # the UUID frame, then no audio at all


def callee_audio(voice: CalleeVoice, *, seed: int = 0) -> bytes:
    """The callee's first seconds as 8 kHz 16-bit little-endian samples (empty for the
    silent voices; the client pads with silence frames)."""
    if voice in (CalleeVoice.HUMAN, CalleeVoice.NOISY_HUMAN):
        background = (
            signals.noise(6.0, -38.0, "pink", seed=seed)
            + signals.voices(6.0, -32.0, talkers=2, seed=seed)
            if voice is CalleeVoice.NOISY_HUMAN
            else None
        )
        pcm = signals.render(
            signals.silence(0.4),
            signals.syllables(3, seed=seed),
            seconds=6.0,
            background=background,
        )
    elif voice is CalleeVoice.MACHINE:
        pcm = signals.render(
            signals.silence(0.1),
            signals.syllables(12, seed=seed),
            signals.silence(0.3),
            signals.syllables(12, seed=seed + 1),
            signals.silence(0.5),
            signals.tone(1000.0, 0.5),
            seconds=8.0,
        )
    else:
        return b""
    return pcm.astype("<i2").tobytes()


@dataclass(frozen=True, slots=True)
class AudioSocketRun:
    """One ``AudioSocket()`` run as the client saw it."""

    stream: str
    service: str
    # hangup-frame | server-closed | channel-gone | gave-up | refused
    ended_by: str
    audio_ms: int  # audio sent after the UUID frame
    started_at: float  # loop time at the start of the connect
    ended_at: float
    connected: bool = True

    @property
    def result(self) -> int:
        """What ``AudioSocket()`` returns: 0 lets the dialplan go on, -1 hangs up."""
        return -1 if self.ended_by in ("refused", "channel-gone") else 0

    @property
    def held_s(self) -> float:
        """How long the call stayed in ``AudioSocket()`` (loop seconds)."""
        return self.ended_at - self.started_at


async def stream_call(
    service: str,
    stream: str,
    audio: bytes,
    *,
    stall: bool = False,
    alive: Callable[[], bool] = lambda: True,
    pace: float = 1.0,
    tick_ms: int = 100,
    max_s: float = 30.0,
) -> AudioSocketRun:
    """Run ``AudioSocket(<stream>,<service>)`` for a callee saying ``audio`` (then silence)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    host, _, port = service.rpartition(":")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except (OSError, TimeoutError, ValueError):
        return AudioSocketRun(stream, service, "refused", 0, started, loop.time(), connected=False)
    released = asyncio.Event()
    listener = asyncio.create_task(_listen(reader, released), name=f"audiosocket:{stream}")
    frames = _Frames(audio, frames_per_tick=max(1, tick_ms // _FRAME_MS))
    try:
        await _write(writer, encode_uuid(uuid.UUID(stream)))
        ended_by = await _stream(writer, frames, released, alive, stall, pace, started + max_s)
    except (OSError, TimeoutError):
        # The server closed while audio was being sent; its hang-up frame may still be
        # in the receive buffer, ahead of the close: the listener says which.
        released.set()
    try:
        if released.is_set():
            await asyncio.wait([listener], timeout=_WRITE_TIMEOUT_S)
            ended_by = listener.result() if listener.done() else "server-closed"
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_WRITE_TIMEOUT_S):
                await writer.wait_closed()
    return AudioSocketRun(stream, service, ended_by, frames.sent_ms, started, loop.time())


class _Frames:
    """The callee's audio cut into 20 ms frames, silence once it is over."""

    def __init__(self, audio: bytes, *, frames_per_tick: int) -> None:
        self._audio = audio
        self._offset = 0
        self.frames_per_tick = frames_per_tick
        self.sent_ms = 0

    def next_batch(self) -> bytes:
        batch = []
        for _ in range(self.frames_per_tick):
            chunk = self._audio[self._offset : self._offset + AUDIO_FRAME_BYTES]
            self._offset += AUDIO_FRAME_BYTES
            batch.append(encode_audio(chunk.ljust(AUDIO_FRAME_BYTES, b"\0")))
        self.sent_ms += self.frames_per_tick * _FRAME_MS
        return b"".join(batch)


async def _stream(
    writer: asyncio.StreamWriter,
    frames: _Frames,
    released: asyncio.Event,
    alive: Callable[[], bool],
    stall: bool,
    pace: float,
    give_up_at: float,
) -> str:
    """Send audio until the server lets go (``released``), the channel goes or time is up."""
    loop = asyncio.get_running_loop()
    tick_s = pace * frames.frames_per_tick * _FRAME_MS / 1000
    while not released.is_set():
        if not alive():
            return "channel-gone"
        if loop.time() >= give_up_at:
            return "gave-up"
        if not stall:
            await _write(writer, frames.next_batch())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(tick_s):
                await released.wait()
    return "hangup-frame"


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    async with asyncio.timeout(_WRITE_TIMEOUT_S):
        await writer.drain()


async def _listen(reader: asyncio.StreamReader, released: asyncio.Event) -> str:
    """Read what the server sends (it may play audio back) until its hang-up frame or close."""
    decoder = AudioSocketDecoder()
    try:
        while True:
            message = decoder.next_message()
            if isinstance(message, AudioSocketHangup):
                return "hangup-frame"
            if message is not None:
                continue
            if decoder.at_eof:
                return "server-closed"
            try:
                data = await reader.read(4096)
            except OSError:
                return "server-closed"
            decoder.feed(data)
    except AudioSocketProtocolError:
        return "server-closed"
    finally:
        released.set()

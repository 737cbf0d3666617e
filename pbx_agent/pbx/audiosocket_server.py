"""The AudioSocket server: Asterisk streams an answered callback leg's audio to the daemon,
which runs answering-machine detection on it and reports one verdict per call.

The callback context runs ``Answer()`` … ``AudioSocket(<attempt id>,<daemon>:<port>)``;
``AudioSocket()`` connects, sends the attempt id as its UUID frame, then the leg's audio
as 20 ms signed-linear frames. See ``pbx_agent.wire.audiosocket`` for the bytes.

Theory of operation. Each TCP connection is one session, served by one task that the
server tracks and cancels on ``close()``. The session reads the UUID frame under
``uuid_timeout_s`` (a peer that connects and says nothing, or starts with anything else,
is dropped: without an id there is nobody to report to). From that moment the verdict
deadline runs (``DetectorParams.deadline_ms``, wall time). Audio frames go to a fresh
``AmdDetector``, stamped with the audio's own time (samples received / 8 kHz), so a
verdict's ``decided_at_ms`` is milliseconds of the callee's audio after the answer.

Invariants:
- ``on_verdict(uuid, verdict)`` is called exactly once per identified session: with the
  detector's verdict; with the configured default (``on_deadline``, reason ``deadline``)
  when the deadline passes first (audio stalled, too slow, undecided); with the
  detector's ``finish`` verdict when the peer hangs up, closes or vanishes; with the
  default (reason ``protocol-error``) when the peer breaks the protocol.
- The call is never held for the daemon: once the verdict is out the session sends the
  hang-up frame (``AudioSocket()`` returns and the dialplan goes on) unless
  ``hangup_after_verdict`` is False, and closes. Every read and write has a deadline.
- One session's trouble never touches another; a failing ``on_verdict`` is logged and
  contained; past ``max_sessions`` new connections are closed at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from pbx_agent.amd.detector import AmdDetector, Verdict
from pbx_agent.amd.params import DetectorParams
from pbx_agent.errors import ProtocolError
from pbx_agent.pbx.listener import SessionListener
from pbx_agent.pbx.verdicts import deliver_verdict
from pbx_agent.wire.audiosocket import (
    AudioSocketAudio,
    AudioSocketDecoder,
    AudioSocketDtmf,
    AudioSocketError,
    AudioSocketHangup,
    AudioSocketMessage,
    AudioSocketProtocolError,
    AudioSocketUuid,
    encode_hangup,
)

__all__ = ["AudioSocketServer", "VerdictCallback"]

log = structlog.get_logger()

VerdictCallback = Callable[[uuid.UUID, Verdict], Awaitable[None] | None]

_READ_CHUNK = 8192
# How many attempt ids the server remembers to refuse a second stream for one of them.
CLAIMS_KEPT = 10_000
# A session lets the other sessions run after this many frames from one read.
_YIELD_EVERY = 64


class _PeerGoneError(Exception):
    """The peer closed or reset the connection."""


@dataclass(frozen=True, slots=True)
class _SessionConfig:
    params: DetectorParams
    uuid_timeout_s: float
    write_timeout_s: float
    hangup_after_verdict: bool
    max_payload_bytes: int
    deliver: Callable[[uuid.UUID, Verdict], Awaitable[None]]
    claim: Callable[[uuid.UUID], bool]  # False: another stream has (had) this attempt id


class AudioSocketServer(SessionListener):
    """Listens for ``AudioSocket()`` connections and reports one AMD verdict per call.

    Use as ``async with AudioSocketServer(on_verdict) as server:``, or ``start()``/``close()``.
    """

    def __init__(
        self,
        on_verdict: VerdictCallback,
        *,
        params: DetectorParams | None = None,
        host: str = "127.0.0.1",
        port: int = 9092,
        uuid_timeout_s: float = 2.0,
        write_timeout_s: float = 1.0,
        callback_timeout_s: float = 1.0,
        hangup_after_verdict: bool = True,
        max_sessions: int = 200,
        max_payload_bytes: int = 8000,
    ) -> None:
        super().__init__(
            host=host,
            port=port,
            event="audiosocket",
            serves="AudioSocket streams",
            setting="asterisk.audiosocket_bind",
            exposure="feed verdicts",
            max_sessions=max_sessions,
        )
        self._on_verdict = on_verdict
        self.params = params or DetectorParams()
        self._callback_timeout_s = callback_timeout_s
        self._config = _SessionConfig(
            params=self.params,
            uuid_timeout_s=uuid_timeout_s,
            write_timeout_s=write_timeout_s,
            hangup_after_verdict=hangup_after_verdict,
            max_payload_bytes=max_payload_bytes,
            deliver=self._deliver,
            claim=self._claim,
        )
        # Attempt ids streamed so far (the newest CLAIMS_KEPT): one verdict per attempt.
        self._claimed: OrderedDict[uuid.UUID, None] = OrderedDict()

    def _claim(self, stream_id: uuid.UUID) -> bool:
        if stream_id in self._claimed:
            return False
        self._claimed[stream_id] = None
        while len(self._claimed) > CLAIMS_KEPT:
            self._claimed.popitem(last=False)
        return True

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        await _Session(self._config, reader, writer, peer).run()

    async def _deliver(self, stream_id: uuid.UUID, verdict: Verdict) -> None:
        await deliver_verdict(
            self._on_verdict,
            stream_id,
            verdict,
            timeout_s=self._callback_timeout_s,
            stream=str(stream_id),
        )


class _Session:
    def __init__(
        self,
        config: _SessionConfig,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        self._config = config
        self._reader = reader
        self._writer = writer
        self._peer = peer
        self._decoder = AudioSocketDecoder(max_payload_bytes=config.max_payload_bytes)
        self._detector = AmdDetector(config.params)
        self._audio_ms = 0
        self._digits = 0  # DTMF frames of this stream (logged once, counted)
        self._unyielded = 0  # messages handled since the session last let others run

    async def run(self) -> None:
        stream_id = await self._read_uuid()
        if stream_id is None:
            return
        if not self._config.claim(stream_id):
            # A second stream for one attempt (a replay, a stray peer): only the first is
            # judged; this one gets no verdict and cannot overwrite the first's.
            log.warning(
                "audiosocket_stream_refused",
                stream=str(stream_id),
                peer=self._peer,
                reason="this attempt id already has a stream",
            )
            return
        params = self._config.params
        log.info("audiosocket_stream_started", stream=str(stream_id), peer=self._peer)
        deadline = asyncio.timeout(params.deadline_ms / 1000)
        verdict: Verdict | None = None
        try:
            async with deadline:
                verdict = await self._listen()
        except asyncio.CancelledError:
            # The server is closing: the attempt still gets its one verdict, the default.
            closing = Verdict(params.on_deadline, "closed", self._audio_ms)
            await asyncio.shield(self._config.deliver(stream_id, closing))
            raise
        except TimeoutError:
            if not deadline.expired():
                raise
            verdict = Verdict(params.on_deadline, "deadline", params.deadline_ms)
            log.warning(
                "amd_deadline",
                stream=str(stream_id),
                deadline_ms=params.deadline_ms,
                audio_ms=self._audio_ms,
                default=params.on_deadline.value,
            )
        except ProtocolError as exc:
            verdict = Verdict(params.on_deadline, "protocol-error", self._audio_ms)
            log.warning("audiosocket_protocol_error", stream=str(stream_id), error=str(exc))
        await self._config.deliver(stream_id, verdict)
        if self._digits > 1:
            log.info("audiosocket_dtmf_total", stream=str(stream_id), frames=self._digits)
        # The peer already ended the stream, or broke it: nothing to say back.
        ended_by_peer = verdict.reason.startswith("peer-") or verdict.reason == "protocol-error"
        if self._config.hangup_after_verdict and not ended_by_peer:
            await self._send_hangup(stream_id)

    async def _read_uuid(self) -> uuid.UUID | None:
        try:
            async with asyncio.timeout(self._config.uuid_timeout_s):
                message = await self._next_message()
        except TimeoutError:
            log.warning("audiosocket_uuid_timeout", peer=self._peer)
            return None
        except _PeerGoneError:
            log.info("audiosocket_peer_gone", peer=self._peer, stage="before the UUID frame")
            return None
        except AudioSocketProtocolError as exc:
            log.warning("audiosocket_protocol_error", peer=self._peer, error=str(exc))
            return None
        if not isinstance(message, AudioSocketUuid):
            log.warning(
                "audiosocket_no_uuid",
                peer=self._peer,
                first=type(message).__name__,
                expected="a UUID frame (0x01) first",
            )
            return None
        return message.uuid

    async def _listen(self) -> Verdict:
        """Feed audio to the detector until it decides or the stream ends."""
        detector = self._detector
        while True:
            try:
                message = await self._next_message()
            except _PeerGoneError:
                verdict = detector.finish(self._audio_ms)
                return Verdict(verdict.kind, f"peer-gone:{verdict.reason}", verdict.decided_at_ms)
            if isinstance(message, AudioSocketAudio):
                at_ms = self._audio_ms
                self._audio_ms += message.duration_ms
                verdict_or_none = detector.feed_pcm(message.pcm, at_ms)
                if verdict_or_none is not None:
                    return verdict_or_none
            elif isinstance(message, AudioSocketHangup):
                verdict = detector.finish(self._audio_ms)
                log.info("audiosocket_peer_hangup", audio_ms=self._audio_ms)
                return Verdict(verdict.kind, f"peer-hangup:{verdict.reason}", verdict.decided_at_ms)
            elif isinstance(message, AudioSocketError):
                log.warning("audiosocket_peer_error", code=message.code.hex())
                verdict = detector.finish(self._audio_ms)
                return Verdict(verdict.kind, f"peer-error:{verdict.reason}", verdict.decided_at_ms)
            elif isinstance(message, AudioSocketDtmf):
                # A keypress means a person (or a very clever machine); the detector judges
                # only the audio, the callback flow may use the digit. Logged once: a peer
                # sending thousands must not flood the log.
                self._digits += 1
                if self._digits == 1:
                    log.info("audiosocket_dtmf", digit=message.digit, audio_ms=self._audio_ms)
            else:
                msg = f"AudioSocket: second UUID frame {message.uuid} in one stream"
                raise AudioSocketProtocolError(msg)

    async def _next_message(self) -> AudioSocketMessage:
        while True:
            message = self._decoder.next_message()
            if message is not None:
                self._unyielded += 1
                if self._unyielded >= _YIELD_EVERY:
                    # A full buffer holds thousands of small frames: other calls run too.
                    self._unyielded = 0
                    await asyncio.sleep(0)
                return message
            self._unyielded = 0
            if self._decoder.at_eof:
                raise _PeerGoneError
            try:
                data = await self._reader.read(_READ_CHUNK)
            except (ConnectionError, OSError) as exc:
                raise _PeerGoneError from exc
            self._decoder.feed(data)

    async def _send_hangup(self, stream_id: uuid.UUID) -> None:
        try:
            self._writer.write(encode_hangup())
            async with asyncio.timeout(self._config.write_timeout_s):
                await self._writer.drain()
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.info("audiosocket_hangup_not_sent", stream=str(stream_id), error=repr(exc))

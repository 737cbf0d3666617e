"""A fake FreeSWITCH that speaks the Event Socket over real loopback TCP, as 1.10.12 does.

Two sides, as the real switch has them:

- **Inbound ESL server** (``FakeFreeSwitch``, port 8021 in production): the greeting
  ``auth/request``; ``-ERR command not found`` before ``auth``; ``+OK accepted``, or
  ``-ERR invalid`` followed by the goodbye notice and a close for a bad password; ``api``
  (answered in order, on the socket) and ``bgapi`` (``+OK Job-UUID``, then the API event
  and a BACKGROUND_JOB whose body is the result, honouring a client-chosen ``Job-UUID``);
  ``event plain|json ...``, ``noevents``, ``nixevent``, ``filter``, ``myevents``,
  ``sendmsg``, ``sendevent``, ``log``/``nolog``, ``exit``; HEARTBEAT (and RE_SCHEDULE)
  every ``heartbeat_interval_s``.
- **Outbound-socket client** (``FakeFreeSwitch.outbound_call``): a call that reaches
  ``socket 127.0.0.1:8084 async full`` connects to the daemon, answers ``connect`` with
  the channel data block, ``myevents``, ``linger``, ``getvar``, ``sendmsg`` (acknowledged
  at once in async mode, completion by CHANNEL_EXECUTE_COMPLETE carrying our
  ``Event-UUID``), sends the linger and disconnect notices after a hangup (trace 05a).

The channels and their events come from ``fake_freeswitch_model``. Scripted helpers drive
calls (``inbound_call``, ``bridge``, ``hold``, ``talk``, ``hangup``, ``die``,
``avmd_beep``, ``dtmf``) and originate outcomes are configured per endpoint user
(``set_originate_outcome``, trace 07a). Every command received is recorded
(``commands``); faults are injected with ``drop_connections``, ``freeze``/``thaw`` (no
replies, no events, no heartbeat: a half-open switch) and ``send_raw``;
``after_channel_list`` (a callable, used once) runs switch activity right after the next
``show channels`` listing, its events sent with the listing's api/response in one write
(FreeSWITCH sends the events it queued meanwhile right behind the reply).

Hold music as trace 03b shows it: a ``uuid_broadcast`` that reaches the leg hearing hold
music leaves that music on after unhold. ``uuid_displace`` keeps a per-channel set of
displaced files (``-ERR`` for a second one of the same file, ``stop`` by path, the end after
``playback_s``) and records every command (``displacements``); ``uuid_record`` is recorded
(``recordings``). ``extensions`` maps an extension to a scripted stand-in for what the
dialplan does there, run when a leg is transferred or originated to it.

The core ``unicast`` call-command (``switch_ivr_parse_event``, ``switch_ivr_activate_unicast``,
``switch_ivr_park`` in ``src/switch_ivr.c``): ``sendmsg <uuid>`` (or an outbound session's
plain ``sendmsg``) with ``call-command: unicast`` answers ``+OK`` like any sendmsg, whatever
becomes of it. Empty or missing headers take FreeSWITCH's defaults (``local-ip``/``remote-ip``
127.0.0.1, ``local-port`` 8025, ``remote-port`` 8026, ``transport`` udp); ports are read as
``atoi`` into a 16-bit port. A ``transport`` other than udp/tcp (any case) is refused; either
way the socket is an IPv4 UDP one bound to ``local-ip:local-port`` (0: an ephemeral port);
a failed bind or an unresolvable address streams nothing. While the leg is parked (a park
application, or an async outbound-socket session) each 20 ms frame of the party on the leg
(``set_callee_audio``: 8 kHz 16-bit little-endian, from the leg's answer on, silence after
it and before the answer) goes out as one 320-byte datagram from the bound socket to
``remote-ip:remote-port``; what the switch read before the unicast, and while another
application or a bridge held the leg, is lost (the stream goes on from wherever the audio
is then). Leaving park (transfer, bridge out of a park, the socket application returning)
or hanging up closes the socket; a failed send does too. Datagrams arriving on the socket
(audio FreeSWITCH would write into the channel) are counted and dropped. Every request is
kept in ``unicasts`` (``UnicastStream``: what was asked, what was bound, frames sent, why it
was refused or ended); ``stall_unicast`` makes a leg's stream activate and send nothing.
Frames are paced on the event loop's clock, 20 ms x ``time_scale`` each, at most five per
tick (each its own datagram, in order) so tiny time scales lag rather than skip.
Not modelled there: ``flags: native`` (refused: nothing is sent), comfort noise (FreeSWITCH
sends bytes 0xff; the fake sends zeros, also for a leg whose far end died), read rates other
than 8 kHz, and a second unicast while one is active on the channel (FreeSWITCH overwrites
its private pointer and binds a second socket the park loop never uses; the fake refuses
it: recorded, nothing bound).

Not modelled (no transcript): ``event xml`` output (the fake answers ``-ERR``), the
PRIVATE_COMMAND events of uuid_broadcast, media itself (except the unicast stream above).
``uuid_transfer`` is approximate: the leg leaves its bridge (the peer hangs up) and parks at
the new destination. Durations (ringing, playback, linger) are multiplied by ``time_scale``
so tests run fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

from pbx_agent.testing.fake_callcenter import FakeCallcenter
from pbx_agent.testing.fake_freeswitch_model import (
    SIP_FAILURE,
    ChannelModel,
    FakeChannel,
    SwitchIdentity,
    new_uuid,
)
from pbx_agent.wire.esl import (
    EslCommand,
    EslCommandDecoder,
    EslEvent,
    EslProtocolError,
    encode_api_response,
    encode_auth_request,
    encode_channel_data_reply,
    encode_command_reply,
    encode_disconnect_notice,
    encode_event,
)

__all__ = [
    "FakeFreeSwitch",
    "OriginateOutcome",
    "OutboundCall",
    "ReceivedCommand",
    "UnicastStream",
]

_READ_CHUNK = 65536


class OriginateOutcome(StrEnum):
    """What a dialled endpoint does with an originate or a bridge (trace 07a)."""

    ANSWER = "answer"  # 200 OK
    BUSY = "busy"  # 486 -> USER_BUSY
    REJECT = "reject"  # 603 -> CALL_REJECTED
    NO_ANSWER = "no_answer"  # 180 until originate_timeout -> NO_ANSWER
    EARLY_NO_ANSWER = "early_no_answer"  # 183 until originate_timeout -> NO_ANSWER
    UNREACHABLE = "unreachable"  # nothing listening -> NORMAL_TEMPORARY_FAILURE


_FAILURE_CAUSE = {
    OriginateOutcome.BUSY: "USER_BUSY",
    OriginateOutcome.REJECT: "CALL_REJECTED",
    OriginateOutcome.UNREACHABLE: "NORMAL_TEMPORARY_FAILURE",
    OriginateOutcome.NO_ANSWER: "NO_ANSWER",
    OriginateOutcome.EARLY_NO_ANSWER: "NO_ANSWER",
}

_STATUS_TEXT = (
    "UP 0 years, 0 days, 0 hours, 9 minutes, 55 seconds, 926 milliseconds, 972 microseconds\n"
    "FreeSWITCH (Version 1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit) is ready\n"
    "{since} session(s) since startup\n"
    "{count} session(s) - peak 2, last 5min 2 \n"
    "0 session(s) per Sec out of max 30, peak 2, last 5min 2 \n"
    "100 session(s) max\n"
    "min idle cpu 0.00/96.80\n"
    "Current Stack Size/Max 240K/8192K\n"
)
_VERSION_TEXT = (
    "FreeSWITCH Version 1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit "
    "(git a88d069 2024-08-02 21:02:27Z 64bit)\n"
)


# What ``myevents`` subscribes to (mod_event_socket.c): no CALLSTATE, no PLAYBACK_*.
MYEVENTS = frozenset(
    {
        "CHANNEL_ANSWER",
        "CHANNEL_APPLICATION",
        "CHANNEL_BRIDGE",
        "CHANNEL_CREATE",
        "CHANNEL_DATA",
        "CHANNEL_DESTROY",
        "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_ORIGINATE",
        "CHANNEL_UUID",
        "CHANNEL_OUTGOING",
        "CHANNEL_PARK",
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_STATE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_UNPARK",
        "DETECTED_SPEECH",
        "DTMF",
        "NOTALK",
        "TALK",
    }
)


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    """One command a client sent, in arrival order; ``socket`` is inbound-N or outbound-N."""

    socket: str
    command: EslCommand


# -- FreeSWITCH's argument splitting (switch_separate_string), so the fake reads what the
# -- daemon's escapers write exactly as the real switch would.


def _unescape(ch: str) -> str:
    return {"n": "\n", "r": "\r", "t": "\t", "s": " "}.get(ch, ch)


def _cleanup(token: str, delim: str) -> str:
    i = 0
    while i < len(token) and token[i] == " ":
        i += 1
    dest: list[str] = []
    end: int | None = None
    inside = False
    while i < len(token):
        ch = token[i]
        if ch == "\\" and i + 1 < len(token):
            nxt = token[i + 1]
            if nxt in ("'", '"', "\\") or (delim and nxt == delim) or _unescape(nxt) != nxt:
                dest.append(nxt if nxt in ("'", '"', "\\", delim) else _unescape(nxt))
                end = len(dest)
                i += 2
                continue
        if ch == "'" and (inside or "'" in token[i + 1 :]):
            inside = not inside
            if inside:
                end = len(dest)
        else:
            dest.append(ch)
            if ch != " " or inside:
                end = len(dest)
        i += 1
    return "".join(dest[:end]) if end is not None else ""


def split_arguments(text: str, delim: str = " ", limit: int = 64) -> list[str]:
    """switch_separate_string: quotes, backslash escapes, ``^^X`` delimiter switch."""
    if text.startswith("^^") and len(text) >= 4:
        delim, text = text[2], text[3:]
    parts: list[str] = []
    start: int | None = None
    inside = False
    i = 0
    while i < len(text) and len(parts) < limit:
        ch = text[i]
        if start is None:
            if delim == " " and ch == " ":
                i += 1
                continue
            start = i
            if len(parts) == limit - 1:
                break
        if ch == "\\":
            i += 2
            continue
        quote_toggles = delim == " " or inside or "'" in text[i + 1 :]
        if ch == "'" and quote_toggles:
            inside = not inside
        elif ch == delim and not inside:
            parts.append(text[start:i])
            start = None
        i += 1
    if start is not None:
        parts.append(text[start:])
    return [_cleanup(part, "" if delim == " " else delim) for part in parts]


def parse_dial_string(dial: str) -> tuple[dict[str, str], str]:
    """``{a=b,c=d}endpoint`` -> the variables and the first endpoint."""
    variables: dict[str, str] = {}
    rest = dial.strip()
    if rest.startswith("{"):
        depth = 0
        for index, ch in enumerate(rest):
            depth += 1 if ch == "{" else -1 if ch == "}" else 0
            if depth == 0:
                block, rest = rest[1:index], rest[index + 1 :]
                break
        else:
            block, rest = rest[1:], ""
        for item in split_arguments(block, ",", 1024):
            pair = split_arguments(item, "=", 2)
            if len(pair) == 2:
                variables[pair[0]] = pair[1]
    for separator in ("|", ","):
        rest = rest.split(separator, 1)[0]
    if rest.startswith("["):
        rest = rest[rest.find("]") + 1 :]
    return variables, rest


# -- subscriptions -------------------------------------------------------------------------


@dataclass(slots=True)
class _Subscription:
    event_format: str | None = None  # None: not listening
    everything: bool = False
    names: set[str] = field(default_factory=set)
    subclasses: set[str] = field(default_factory=set)
    filters: list[tuple[str, str]] = field(default_factory=list)
    only_uuid: str | None = None  # myevents

    def wants(self, event: EslEvent) -> bool:
        if self.event_format is None:
            return False
        if self.only_uuid is not None and event.unique_id != self.only_uuid:
            return False
        if self.filters and not any(event.get(h) == v for h, v in self.filters):
            return False
        if self.everything:
            return True
        if event.name == "CUSTOM":
            return "CUSTOM" in self.names and (
                not self.subclasses or (event.subclass or "") in self.subclasses
            )
        return event.name in self.names


class _Socket:
    """One ESL socket of the fake: inbound (a client connected) or outbound (we dialled)."""

    def __init__(self, switch: FakeFreeSwitch, label: str, writer: asyncio.StreamWriter) -> None:
        self.switch = switch
        self.label = label
        self.writer = writer
        self.subscription = _Subscription()
        self.authed = False
        self.closed = False
        # Sync outbound sockets: events wait while an application blocks the socket and
        # follow its reply (trace 05b).
        self.held: list[bytes] | None = None

    def send(self, data: bytes) -> None:
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(data)

    def deliver(self, event: EslEvent) -> None:
        if self.subscription.wants(event):
            data = encode_event(event, self.subscription.event_format or "plain")
            if self.held is not None:
                self.held.append(data)
            else:
                self.send(data)

    def release(self, first: bytes) -> None:
        """Send ``first`` (the blocked reply), then the events held meanwhile."""
        held, self.held = self.held or [], None
        self.send(first)
        for data in held:
            self.send(data)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()

    def abort(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


@dataclass(slots=True)
class _RunningApp:
    """An application still running on a channel (playback, sleep), so a DTMF
    terminator or a hangup can end it early."""

    channel: FakeChannel
    app: str
    arg: str
    app_uuid: str
    handle: asyncio.TimerHandle | None = None
    done: Callable[[str, str | None], None] | None = None  # (response, terminator used)


# -- unicast (switch_ivr.c) ------------------------------------------------------------------

_UNICAST_DEFAULTS = {
    "local-ip": "127.0.0.1",
    "local-port": "8025",
    "remote-ip": "127.0.0.1",
    "remote-port": "8026",
    "transport": "udp",
}
_UNICAST_FRAME_S = 0.02  # one packet time of the legs' PCMU
_UNICAST_FRAME_BYTES = 320  # 160 samples of L16 at the read rate, 8000 Hz
_UNICAST_SILENCE = bytes(_UNICAST_FRAME_BYTES)
_UNICAST_BATCH = 5  # frames sent per tick at most when the stream is behind
_UNICAST_MIN_TICK_S = 0.001  # receivers get the loop between two batches
_UNICAST_DRAIN = 64  # datagrams read per readable callback at most


def _endpoint_user(endpoint: str) -> str:
    """``sofia/internal/bob@127.0.0.1:5181`` -> ``bob``."""
    return endpoint.rsplit("/", maxsplit=1)[-1].split("@", maxsplit=1)[0]


def _c_port(text: str) -> int:
    """``(switch_port_t) atoi(text)``: leading blanks, a sign, digits; 16 bits kept."""
    rest = text.lstrip(" \t\n\r\f\v")
    sign = -1 if rest[:1] == "-" else 1
    rest = rest[1:] if rest[:1] in ("-", "+") else rest
    digits = ""
    for ch in rest:
        if not ("0" <= ch <= "9"):
            break
        digits += ch
    return (sign * int(digits or "0")) % 65536


def _ipv4_address(host: str, port: int) -> tuple[str, int]:
    """The IPv4 socket address of ``host`` (a literal, or a name the system resolves)."""
    infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    address = infos[0][4]
    return str(address[0]), int(address[1])


@dataclass(slots=True, eq=False)
class UnicastStream:
    """One ``call-command: unicast`` the fake received, and what became of it.

    ``requested_local`` and ``remote`` are the headers after FreeSWITCH's defaults, ports
    as ``atoi`` reads them; ``local`` is the address actually bound (None when nothing was).
    ``refused`` says why nothing was bound (what the real switch only logs); ``ended`` why an
    active stream stopped: ``hangup``, ``unpark``, ``closed`` (the fake closed),
    ``send-failed: ...`` (as FreeSWITCH deactivates on a failed send) or ``failed: ...``
    (a fault of the fake itself, kept out of the event loop). ``audio_offset`` is the byte
    offset in the callee's audio of the first datagram sent after the answer: from it on,
    while the leg stayed parked, the datagrams are that audio followed by zeros.
    """

    uuid: str
    requested_local: tuple[str, int]
    remote: tuple[str, int]
    transport: str
    flags: str
    local: tuple[str, int] | None = None
    refused: str | None = None
    active: bool = False
    ended: str | None = None
    closed: bool = False
    frames_sent: int = 0
    audio_offset: int | None = None
    datagrams_received: int = 0


class _UnicastSession:
    """An active unicast: the bound socket, where it sends, the task that paces it."""

    def __init__(
        self,
        switch: FakeFreeSwitch,
        channel: FakeChannel,
        record: UnicastStream,
        sock: socket.socket,
        remote: tuple[str, int],
    ) -> None:
        self.switch = switch
        self.channel = channel
        self.record = record
        self.sock = sock
        self.remote = remote
        self.loop = asyncio.get_running_loop()
        self.fd = sock.fileno()
        self.task: asyncio.Task[None] | None = None
        self.ended = False
        # Pacing on the loop's clock: the answer, the frame (since the answer) read next,
        # and when it has been read and goes out.
        self.frame_s = _UNICAST_FRAME_S * switch.time_scale
        self.answered_at: float | None = None
        self.index = 0
        self.next_at = self.loop.time() + self.frame_s
        self.loop.add_reader(self.fd, self.readable)

    def answered(self, at: float, now: float) -> None:
        """The leg answered at ``at``: frames from now on are its audio from there."""
        self.answered_at = at
        self.realign(now)

    def realign(self, now: float) -> None:
        """Skip to the frame being read at ``now`` (what was read before is lost)."""
        if self.answered_at is None:
            self.next_at = now + self.frame_s
            return
        self.index = max(0, int((now - self.answered_at) // self.frame_s))
        self.next_at = self.answered_at + (self.index + 1) * self.frame_s

    def send_due(self, now: float, frame_of: Callable[[int | None], bytes]) -> None:
        """Send the frames read by ``now``, at most a batch; ``frame_of(None)``: before
        the answer."""
        record = self.record
        for _ in range(_UNICAST_BATCH):
            if self.next_at > now or self.ended:
                return
            index = self.index if self.answered_at is not None else None
            sent = record.frames_sent
            self.send(frame_of(index))
            if index is not None:
                if record.audio_offset is None and record.frames_sent > sent:
                    record.audio_offset = index * _UNICAST_FRAME_BYTES
                self.index += 1
            self.next_at += self.frame_s

    def readable(self) -> None:
        """What the far end sends (FreeSWITCH would write it into the channel): counted."""
        for _ in range(_UNICAST_DRAIN):
            try:
                self.sock.recvfrom(65536)
            except OSError:  # BlockingIOError once drained; ICMP errors are not ours
                return
            self.record.datagrams_received += 1

    def send(self, frame: bytes) -> None:
        """One frame, one datagram; a failed send deactivates the stream (switch_ivr_park)."""
        try:
            self.sock.sendto(frame, self.remote)
        except BlockingIOError:
            return  # a full buffer drops the datagram, as UDP does
        except OSError as exc:
            self.end(f"send-failed: {exc}")
            return
        self.record.frames_sent += 1

    def end(self, reason: str) -> None:
        """Deactivate: stop the reader and the task, close the socket (idempotent)."""
        if self.ended:
            return
        self.ended = True
        self.record.active = False
        self.record.ended = reason
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.fd)
        self.sock.close()
        self.record.closed = True
        if self.switch._unicast.get(self.channel.uuid) is self:  # noqa: SLF001
            del self.switch._unicast[self.channel.uuid]  # noqa: SLF001
        task = self.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()


class FakeFreeSwitch:
    """The fake switch: an inbound ESL server plus a channel model and scripted calls.

    Use as ``async with FakeFreeSwitch() as fs:``; connect to ``fs.port``.
    """

    def __init__(
        self,
        password: str = "ClueCon",  # noqa: S107 - the traces' scrubbed password
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval_s: float = 20.0,
        time_scale: float = 1.0,
        playback_s: float = 6.0,
        ring_s: float = 0.02,
        identity: SwitchIdentity | None = None,
    ) -> None:
        self.password = password
        self.host = host
        self._port = port
        self.heartbeat_interval_s = heartbeat_interval_s
        self.time_scale = time_scale
        self.playback_s = playback_s
        self.ring_s = ring_s
        self.model = ChannelModel(self._deliver, identity=identity)
        self.callcenter = FakeCallcenter()
        self.model.on_hangup = self._channel_hung_up
        self.model.on_reported = self._channel_reported
        self.commands: list[ReceivedCommand] = []
        self.sockets: list[_Socket] = []
        self.frozen = False
        self.default_outcome = OriginateOutcome.ANSWER
        self.outcomes: dict[str, OriginateOutcome] = {}
        self.missing_sounds: set[str] = set()
        # Outbound-socket commands answered with ``-ERR <text>`` instead of being run (verb ->
        # text): FreeSWITCH refuses e.g. ``resume`` only off a session ("-ERR not controlling
        # a session"), which no outbound socket is; this lets tests see the daemon's side.
        self.refuse_outbound: dict[str, str] = {}
        self.connections_accepted = 0
        self.after_channel_list: Callable[[], object] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._labels = 0
        self._running: dict[str, _RunningApp] = {}
        self._outbound: dict[str, OutboundCall] = {}
        # uuid_displace commands as received: (uuid, start|stop, path, rest of the line).
        self.displacements: list[tuple[str, str, str, str]] = []
        self.recordings: list[tuple[str, str, str]] = []
        # What the dialplan does at an extension a leg is transferred or originated to
        # (``uuid_transfer``, ``originate ... <exten>``): a scripted stand-in, by extension.
        self.extensions: dict[str, Callable[[FakeChannel], Coroutine[Any, Any, None]]] = {}
        # call-command unicast: every request in order, the active stream of each channel,
        # what the party at each endpoint user says, and the legs (or users) whose media stalls.
        self.unicasts: list[UnicastStream] = []
        self.callee_audio: dict[str, bytes] = {}
        self._unicast: dict[str, _UnicastSession] = {}
        self._unicast_stalled: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self.host, self._port)
        self._heartbeat = asyncio.create_task(self._heartbeats(), name="fake-fs-heartbeat")

    async def close(self) -> None:
        for session in list(self._unicast.values()):
            session.end("closed")
        if self._server is not None:
            self._server.close()
        for sock in list(self.sockets):
            sock.abort()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        tasks = [*self._tasks, *([self._heartbeat] if self._heartbeat else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for running in self._running.values():
            if running.handle is not None:
                running.handle.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def later(self, delay_s: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay_s * self.time_scale, callback)

    # -- fault injection ----------------------------------------------------------------------

    def drop_connections(self) -> None:
        """Reset every socket (a crash or a network cut)."""
        for sock in list(self.sockets):
            sock.abort()

    def freeze(self) -> None:
        """Go silent: no replies, no events, no heartbeat; sockets stay open (half-open)."""
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are to every authenticated inbound socket."""
        for sock in self.sockets:
            if sock.authed and sock.label.startswith("inbound"):
                sock.send(data)

    def heartbeat(self) -> None:
        """Fire HEARTBEAT and RE_SCHEDULE now, as the core does every 20 s."""
        ident = self.model.identity
        headers = self.model.core("HEARTBEAT")
        headers += [
            ("Event-Info", "System Ready"),
            ("Up-Time", "0 years, 0 days, 0 hours, 10 minutes, 0 seconds, 4 milliseconds"),
            ("FreeSWITCH-Version", ident.version),
            ("Uptime-msec", "600004"),
            ("Session-Count", str(len(self.model.channels))),
            ("Max-Sessions", "100"),
            ("Session-Per-Sec", "30"),
            ("Session-Per-Sec-Last", "0"),
            ("Session-Per-Sec-Max", "2"),
            ("Session-Per-Sec-FiveMin", "2"),
            ("Session-Since-Startup", str(self.model.sessions)),
            ("Session-Peak-Max", "2"),
            ("Session-Peak-FiveMin", "2"),
            ("Idle-CPU", "97.200000"),
        ]
        self._deliver(EslEvent(tuple(headers)))
        schedule = self.model.core("RE_SCHEDULE")
        schedule += [
            ("Task-ID", "1"),
            ("Task-Desc", "heartbeat"),
            ("Task-Group", "core"),
            ("Task-Runtime", str(int(self.model.now()) + 20)),
        ]
        self._deliver(EslEvent(tuple(schedule)))

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if not self.frozen:
                self.heartbeat()

    # -- configuration of outcomes ------------------------------------------------------------

    def set_originate_outcome(self, user: str, outcome: OriginateOutcome | str) -> None:
        """What dialling ``user`` (``sofia/internal/<user>@...``) does."""
        self.outcomes[user] = OriginateOutcome(outcome)

    def set_callee_audio(self, user: str, audio: bytes) -> None:
        """The party reached at endpoint user ``user`` (as ``set_originate_outcome``; for an
        inbound leg, its caller) says ``audio`` (8 kHz 16-bit little-endian mono) from the
        moment the leg answers, then silence. Legs without audio are silent."""
        if len(audio) % 2:
            msg = f"callee audio for {user!r} has {len(audio)} bytes: not whole 16-bit samples"
            raise ValueError(msg)
        self.callee_audio[user] = bytes(audio)

    def stall_unicast(self, target: str, *, stalled: bool = True) -> None:
        """The media of ``target`` (a channel uuid, or an endpoint user: every leg to it)
        stalls: a unicast on it activates (binds, is recorded) but sends nothing; with
        ``stalled=False`` it flows again from where the audio is then."""
        if stalled:
            self._unicast_stalled.add(target)
        else:
            self._unicast_stalled.discard(target)

    def unicast(self, uuid: str) -> UnicastStream | None:
        """The active unicast stream of channel ``uuid``, if any."""
        session = self._unicast.get(uuid)
        return session.record if session is not None else None

    def channel(self, uuid: str) -> FakeChannel | None:
        return self.model.channels.get(uuid)

    def running_app(self, ch: FakeChannel) -> str | None:
        """The application still running on ``ch`` (playback, sleep), if any."""
        running = self._running.get(ch.uuid)
        return running.app if running is not None else None

    def commands_for(self, verb: str) -> list[EslCommand]:
        return [c.command for c in self.commands if c.command.verb == verb]

    # -- event fan-out -------------------------------------------------------------------------

    def _deliver(self, event: EslEvent) -> None:
        if self.frozen:
            return
        for sock in list(self.sockets):
            sock.deliver(event)

    def _api_event(self, command: str, args: str) -> None:
        headers = self.model.core("API")
        headers.append(("API-Command", command))
        if args:
            headers.append(("API-Command-Argument", args))
        self._deliver(EslEvent(tuple(headers)))

    # -- inbound sockets ------------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._labels += 1
        self.connections_accepted += 1
        sock = _Socket(self, f"inbound-{self._labels}", writer)
        self.sockets.append(sock)
        try:
            sock.send(encode_auth_request())
            await self._serve_commands(sock, reader, self._inbound_command)
        except asyncio.CancelledError:
            # Python 3.11's start_server callback logs a cancelled handler as an error;
            # the fake is closing, so the handler simply ends.
            return
        finally:
            self.sockets.remove(sock)
            sock.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve_commands(
        self,
        sock: _Socket,
        reader: asyncio.StreamReader,
        handler: Callable[[_Socket, EslCommand], Coroutine[Any, Any, None]],
    ) -> None:
        decoder = EslCommandDecoder()
        while not sock.closed:
            try:
                data = await reader.read(_READ_CHUNK)
            except (ConnectionError, OSError):
                return
            decoder.feed(data)
            while not sock.closed:
                try:
                    command = decoder.next_command()
                except EslProtocolError:
                    if decoder.broken:
                        sock.abort()
                        return
                    continue
                if command is None:
                    break
                self.commands.append(ReceivedCommand(sock.label, command))
                if self.frozen:
                    continue
                await handler(sock, command)
            if not data:
                return

    async def _inbound_command(self, sock: _Socket, command: EslCommand) -> None:
        verb = command.verb
        if verb in ("exit", "..."):
            self._goodbye(sock, "+OK bye")
            return
        if not sock.authed:
            if verb == "auth":
                if command.args == self.password:
                    sock.authed = True
                    sock.send(encode_command_reply("+OK accepted"))
                else:
                    self._goodbye(sock, "-ERR invalid")
                return
            sock.send(encode_command_reply("-ERR command not found"))
            return
        await self._common_command(sock, command)

    def _goodbye(self, sock: _Socket, reply: str) -> None:
        sock.send(encode_command_reply(reply))
        sock.send(encode_disconnect_notice())
        sock.close()

    async def _common_command(self, sock: _Socket, command: EslCommand) -> None:
        """The commands an authenticated socket (inbound, or outbound ``full``) may send."""
        verb = command.verb
        if verb == "api":
            name, _, rest = command.args.partition(" ")
            self._api_event(name, rest)
            response = encode_api_response(await self.run_api(name, rest))
            after = self.after_channel_list if name == "show" else None
            if after is None:
                sock.send(response)
                return
            self.after_channel_list = None
            sock.held = []
            try:
                after()
            finally:
                held, sock.held = sock.held, None
            sock.send(response + b"".join(held))
            return
        handler = self._simple_commands.get(verb)
        if handler is None or (verb == "filter" and not command.args):
            sock.send(encode_command_reply("-ERR command not found"))
            return
        handler(sock, command)

    @property
    def _simple_commands(self) -> dict[str, Callable[[_Socket, EslCommand], None]]:
        return {
            "bgapi": self._cmd_bgapi,
            "event": lambda sock, cmd: self._subscribe(sock, cmd.args),
            "myevents": self._cmd_myevents,
            "noevents": self._cmd_noevents,
            "nixevent": self._cmd_nixevent,
            "filter": self._cmd_filter,
            "sendmsg": self._cmd_sendmsg,
            "sendevent": self._cmd_sendevent,
            "log": lambda sock, cmd: sock.send(
                encode_command_reply(f"+OK log level {cmd.args or 7} [{cmd.args or 7}]")
            ),
            "nolog": lambda sock, _cmd: sock.send(encode_command_reply("+OK no longer logging")),
            "linger": lambda sock, cmd: sock.send(
                encode_command_reply(
                    f"+OK will linger {cmd.args} seconds" if cmd.args else "+OK will linger"
                )
            ),
        }

    def _cmd_bgapi(self, sock: _Socket, command: EslCommand) -> None:
        job = command.get("Job-UUID") or new_uuid()
        name, _, rest = command.args.partition(" ")
        sock.send(encode_command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
        self._api_event(name, rest)
        self.spawn(self._background_job(job, name, rest), f"fake-fs-bgapi-{job}")

    @staticmethod
    def _cmd_myevents(sock: _Socket, command: EslCommand) -> None:
        words = command.args.split()
        formats = ("plain", "json")
        sub = sock.subscription
        sub.event_format = words[-1] if words and words[-1] in formats else "plain"
        sub.only_uuid = words[0] if words and words[0] not in formats else None
        sub.names |= MYEVENTS
        sock.send(encode_command_reply("+OK Events Enabled"))

    @staticmethod
    def _cmd_noevents(sock: _Socket, _command: EslCommand) -> None:
        sub = sock.subscription
        sub.event_format = None
        sub.names.clear()
        sub.subclasses.clear()
        sub.everything = False
        sock.send(encode_command_reply("+OK no longer listening for events"))

    @staticmethod
    def _cmd_nixevent(sock: _Socket, command: EslCommand) -> None:
        for name in command.args.split():
            sock.subscription.names.discard(name)
        sock.send(encode_command_reply("+OK events nixed"))

    @staticmethod
    def _cmd_filter(sock: _Socket, command: EslCommand) -> None:
        parts = command.args.split(" ")
        filters = sock.subscription.filters
        if parts[0] == "delete" and len(parts) >= 3:
            header, value = parts[1], " ".join(parts[2:])
            with contextlib.suppress(ValueError):
                filters.remove((header, value))
            sock.send(encode_command_reply(f"+OK filter deleted. [{header}][{value}]"))
        elif len(parts) >= 2:
            header, value = parts[0], " ".join(parts[1:])
            filters.append((header, value))
            sock.send(encode_command_reply(f"+OK filter added. [{header}]=[{value}]"))
        else:
            sock.send(encode_command_reply("-ERR invalid filter"))

    def _cmd_sendmsg(self, sock: _Socket, command: EslCommand) -> None:
        target = command.args.strip()
        ch = self.channel(target) if target else None
        if ch is None:
            sock.send(encode_command_reply(f"-ERR invalid session id [{target}]"))
            return
        sock.send(encode_command_reply("+OK"))
        self._sendmsg(ch, command)

    def _cmd_sendevent(self, sock: _Socket, command: EslCommand) -> None:
        """Our own event comes back with the client's headers first (trace 01d)."""
        event_uuid = new_uuid()
        headers = [*command.headers]
        headers.insert(1 if headers else 0, ("Command", command.line))
        headers.append(("Event-UUID", event_uuid))
        core = self.model.core(command.args.split(" ")[0] or "CUSTOM")
        body = None
        if command.body:
            body = command.body.decode("utf-8", "surrogateescape")
            core.append(("Content-Length", str(len(command.body))))
        sock.send(encode_command_reply(f"+OK {event_uuid}"))
        self._deliver(EslEvent((*headers, *core), body))

    def _subscribe(self, sock: _Socket, args: str) -> None:
        words = args.split()
        if not words:
            sock.send(encode_command_reply("-ERR no keywords supplied"))
            return
        event_format = words[0] if words[0] in ("plain", "json", "xml") else "plain"
        names = words[1:] if words[0] in ("plain", "json", "xml") else words
        if event_format == "xml":
            sock.send(encode_command_reply("-ERR the fake FreeSWITCH does not send xml events"))
            return
        if not names:
            sock.send(encode_command_reply("-ERR no keywords supplied"))
            return
        sub = sock.subscription
        sub.event_format = event_format
        custom = False
        for name in names:
            # As mod_event_socket reads it: every word after CUSTOM is a subclass.
            if custom:
                sub.subclasses.add(name)
            elif name == "ALL":
                sub.everything = True
            elif name == "CUSTOM":
                custom = True
                sub.names.add(name)
            else:
                sub.names.add(name)
        sock.send(encode_command_reply(f"+OK event listener enabled {event_format}"))

    # -- api ------------------------------------------------------------------------------------

    async def _background_job(self, job: str, name: str, args: str) -> None:
        result = await self.run_api(name, args)
        headers = self.model.core("BACKGROUND_JOB")
        headers += [("Job-UUID", job), ("Job-Command", name)]
        if args:
            headers.append(("Job-Command-Arg", args))
        headers.append(("Content-Length", str(len(result.encode()))))
        self._deliver(EslEvent(tuple(headers), result))

    async def run_api(self, name: str, args: str) -> str:  # noqa: C901, PLR0911, PLR0912
        """Run one API command as mod_commands does and return its output."""
        argv = split_arguments(args) if args else []
        if name == "status":
            return _STATUS_TEXT.format(since=self.model.sessions, count=len(self.model.channels))
        if name == "version":
            return _VERSION_TEXT
        if name == "global_getvar":
            return self.model.identity.hostname if args == "hostname" else ""
        if name in ("reloadxml", "hupall"):
            return "+OK [Success]\n"
        if name == "msleep":
            # Blocks the socket like any slow api command does on the real switch.
            await asyncio.sleep(int(args) / 1000 * self.time_scale if args.isdigit() else 0)
            return "+OK\n"
        if name == "show":
            if args.replace(" ", "") == "channelsasjson":
                return self._channels_json()
            return "-ERR the fake FreeSWITCH only shows channels as json\n"
        if name == "originate":
            return await self._originate(argv)
        if name == "callcenter_config" and self.callcenter.loaded:
            return self.callcenter.api(args)
        if name == "uuid_exists":
            return "true" if argv and self.channel(argv[0]) else "false"
        if not name.startswith("uuid_"):
            return f"-ERR {name} Command not found!\n"
        if not argv:
            return f"-USAGE: {name} <uuid> ...\n"
        target = argv[1] if name == "uuid_hold" and argv[0] in ("off", "toggle") else argv[0]
        ch = self.channel(target)
        if ch is None or not ch.alive:
            return "-ERR No such channel!\n"
        return self._uuid_api(name, ch, argv)

    def _uuid_api(  # noqa: C901, PLR0911, PLR0912 - one branch per command
        self, name: str, ch: FakeChannel, argv: list[str]
    ) -> str:
        if name == "uuid_kill":
            cause = argv[1] if len(argv) > 1 else "NORMAL_CLEARING"
            self.hangup(ch, cause, disposition="send_bye")
            return "+OK\n"
        if name == "uuid_answer":
            self.answer(ch)
            return "+OK\n"
        if name == "uuid_setvar":
            if len(argv) < 2:
                return "-USAGE: uuid_setvar <uuid> <var> [value]\n"
            if len(argv) > 2:
                ch.variables[argv[1]] = argv[2]
            else:
                ch.variables.pop(argv[1], None)
            return "+OK\n"
        if name == "uuid_getvar":
            if len(argv) < 2:
                return "-USAGE: uuid_getvar <uuid> <var>\n"
            return ch.variables.get(argv[1], "_undef_")
        if name == "uuid_broadcast":
            if len(argv) < 2:
                return "-USAGE: uuid_broadcast <uuid> <path> [aleg|bleg|both]\n"
            legs = argv[2] if len(argv) > 2 else "aleg"
            targets = [ch] if legs in ("aleg", "both") else []
            if legs in ("bleg", "both") and ch.peer is not None:
                targets.append(ch.peer)
            for target in targets:
                if target.moh:
                    # Trace 03b: the file replaces the music for its length, then the music
                    # resumes and unhold never stops it again.
                    target.moh_broken = True
                self.play(target, argv[1], new_uuid())
            return "+OK Message sent\n"
        if name == "uuid_break":
            self._finish_app(ch.uuid, "FILE PLAYED", None)
            return "+OK\n"
        if name == "uuid_displace":
            return self._displace(ch, argv)
        if name == "uuid_record":
            if len(argv) < 3 or argv[1] not in ("start", "stop"):
                return "-USAGE: <uuid> [start|stop] <path> [<limit>]\n"
            self.recordings.append((ch.uuid, argv[1], argv[2]))
            return "+OK Success\n"
        if name == "uuid_hold":
            if argv[0] == "off":
                if ch.held:
                    self.model.unhold(ch)
            elif argv[0] == "toggle":
                self.model.unhold(ch) if ch.held else self.model.hold(ch)
            elif not ch.held:
                self.model.hold(ch)
            return "+OK\n"
        if name == "uuid_transfer":
            rest = [a for a in argv[1:] if a not in ("-bleg", "-both")]
            if not rest:
                return "-USAGE: uuid_transfer <uuid> [-bleg|-both] <dest-exten>\n"
            self._transfer(ch, rest[0])
            return "+OK\n"
        return f"-ERR {name} Command not found!\n"

    def _displace(self, ch: FakeChannel, argv: list[str]) -> str:
        """uuid_displace <uuid> start|stop <path> [limit] [mux] (mod_commands.c): a media bug
        keyed by the path; one of the same file per channel; it ends with the file."""
        if len(argv) < 3 or argv[1] not in ("start", "stop"):
            return "-USAGE: <uuid> [start|stop] <path> [<limit>] [mux]\n"
        action, path = argv[1], argv[2]
        self.displacements.append((ch.uuid, action, path, " ".join(argv[3:])))
        if action == "stop":
            if ch.displacing.pop(path, None) is None:
                return "-ERR Cannot stop displace session!\n"
            return "+OK Success\n"
        if path in ch.displacing or path in self.missing_sounds or not ch.answered:
            return "-ERR Cannot displace session!\n"
        token = f"{argv[4] if len(argv) > 4 else ''}#{new_uuid()}"
        ch.displacing[path] = token

        def ended() -> None:
            if ch.displacing.get(path) == token:
                del ch.displacing[path]

        self.later(self.playback_s, ended)
        return "+OK Success\n"

    def _channels_json(self) -> str:
        rows = []
        for ch in self.model.channels.values():
            if ch.destroyed:
                continue
            rows.append(
                {
                    "uuid": ch.uuid,
                    "direction": ch.direction,
                    "created": "",
                    "created_epoch": str(ch.created_us // 1_000_000),
                    "name": ch.name,
                    "state": ch.state,
                    "cid_name": ch.caller_name,
                    "cid_num": ch.caller_number,
                    "ip_addr": "127.0.0.1",
                    "dest": ch.destination,
                    "application": ch.application,
                    "application_data": ch.application_data,
                    "dialplan": ch.dialplan,
                    "context": ch.context,
                    "read_codec": "PCMU" if ch.media else "",
                    "read_rate": "8000" if ch.media else "",
                    "write_codec": "PCMU" if ch.media else "",
                    "write_rate": "8000" if ch.media else "",
                    "secure": "",
                    "hostname": self.model.identity.hostname,
                    "presence_id": "",
                    "presence_data": "",
                    "accountcode": "",
                    "callstate": ch.call_state,
                    "callee_name": ch.callee_name,
                    "callee_num": ch.callee_number,
                    "callee_direction": "",
                    "call_uuid": ch.call_uuid,
                    "sent_callee_name": "",
                    "sent_callee_num": "",
                    "initial_cid_name": ch.orig_caller_name or ch.caller_name,
                    "initial_cid_num": ch.orig_caller_number or ch.caller_number,
                    "initial_ip_addr": "127.0.0.1",
                    "initial_dest": ch.destination,
                    "initial_dialplan": ch.dialplan,
                    "initial_context": ch.context,
                }
            )
        if not rows:
            return '{"row_count":0}\n'
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":")) + "\n"

    # -- originate ---------------------------------------------------------------------------------

    def _outcome_for(self, endpoint: str) -> OriginateOutcome:
        return self.outcomes.get(_endpoint_user(endpoint), self.default_outcome)

    async def _originate(self, argv: list[str]) -> str:
        if len(argv) < 2:
            return "-USAGE: originate <call url> <exten>|&<application_name>(<app_args>)\n"
        variables, endpoint = parse_dial_string(argv[0])
        caller_name = variables.get("origination_caller_id_name", argv[4] if len(argv) > 4 else "")
        caller_number = variables.get(
            "origination_caller_id_number", argv[5] if len(argv) > 5 else "0000000000"
        )
        ch = self.model.outbound(
            endpoint,
            uuid=variables.get("origination_uuid"),
            caller_number=caller_number,
            caller_name=caller_name,
            variables=variables,
        )
        cause = await self._ring(ch, variables)
        if cause is not None:
            return f"-ERR {cause}\n"
        self.spawn(self._run_target(ch, argv[1]), f"fake-fs-app-{ch.uuid}")
        return f"+OK {ch.uuid}\n"

    async def _ring(self, ch: FakeChannel, variables: dict[str, str]) -> str | None:
        """Ring ``ch`` per its endpoint's outcome; the failure cause, or None once answered."""
        outcome = self._outcome_for(ch.name)
        if outcome in (OriginateOutcome.NO_ANSWER, OriginateOutcome.EARLY_NO_ANSWER):
            self.model.progress(ch, early_media=outcome is OriginateOutcome.EARLY_NO_ANSWER)
            timeout = float(variables.get("originate_timeout", "60"))
            await asyncio.sleep(timeout * self.time_scale)
        else:
            await asyncio.sleep(self.ring_s * self.time_scale)
        if not ch.alive:
            return ch.hangup_cause or "ORIGINATOR_CANCEL"
        if outcome is OriginateOutcome.ANSWER:
            self.model.answer(ch)
            return None
        cause = _FAILURE_CAUSE[outcome]
        status, phrase, disposition = SIP_FAILURE[cause]
        if outcome is not OriginateOutcome.UNREACHABLE:
            ch.network_addr = "127.0.0.1"  # the far end answered with a SIP error
        extra = {"sip_invite_failure_status": status, "sip_invite_failure_phrase": phrase}
        if disposition == "recv_refuse":
            extra |= {
                "sip_term_status": status,
                "proto_specific_hangup_cause": f"sip:{status}",
            }
        self.model.hangup(ch, cause, disposition=disposition, extra=extra)
        self.model.reporting(ch)
        self.later(0.02, lambda: self.model.destroy(ch))
        return cause

    async def _run_target(self, ch: FakeChannel, target: str) -> None:
        """What the answered leg does next: ``&app(args)`` or a dialplan extension."""
        if not target.startswith("&"):
            ch.destination = target
            self.model.set_state(ch, "CS_EXECUTE")
            self.model.park(ch, new_uuid())
            self._run_extension(ch, target)
            return
        app, _, arg = target[1:].partition("(")
        arg = arg.removesuffix(")")
        if app == "park":
            self.model.park(ch, new_uuid())
        elif app == "bridge":
            await self.bridge(ch, arg)
        else:
            self.run_app(ch, app, arg, new_uuid(), hangup_after=True)

    # -- scripted calls --------------------------------------------------------------------------

    def inbound_call(
        self,
        caller_number: str,
        caller_name: str = "",
        destination: str = "9000",
        *,
        uuid: str | None = None,
        answer: bool = True,
        variables: dict[str, str] | None = None,
    ) -> FakeChannel:
        """A caller dials in; the dialplan answers and parks the call (unless answer=False)."""
        ch = self.model.inbound(
            caller_number, caller_name, destination, uuid=uuid, variables=variables
        )
        if answer:
            self.answer(ch)
            self.model.park(ch, new_uuid())
        return ch

    def answer(self, ch: FakeChannel) -> None:
        if not ch.answered and ch.alive:
            self.model.answer(ch)

    async def bridge(
        self, a: FakeChannel, dial: str, *, caller_number: str | None = None
    ) -> FakeChannel | None:
        """A runs ``bridge(<dial>)``: a B-leg is placed and, if it answers, joined to A."""
        self._unpark(a)
        app_uuid = new_uuid()
        self.model.execute(a, "bridge", dial, app_uuid)
        self.model.set_call_state(a, "RING_WAIT")
        variables, endpoint = parse_dial_string(dial)
        number = variables.get("origination_caller_id_number", caller_number or "")
        b = self.model.outbound(
            endpoint,
            uuid=variables.get("origination_uuid"),
            caller_number=number,
            caller_name="",
            variables=variables,
            originator=a,
        )
        cause = await self._ring(b, variables)
        if cause is not None or not a.alive:
            a.variables["originate_disposition"] = cause or "ORIGINATOR_CANCEL"
            a.variables["DIALSTATUS"] = cause or "CANCEL"
            if a.alive:
                self.model.execute_complete(a, "bridge", dial, "_none_", app_uuid)
            return None
        a.variables["bridge_app_uuid"] = app_uuid
        self.model.bridge(a, b)
        return b

    def hold(self, ch: FakeChannel) -> None:
        """ch's phone presses hold: CHANNEL_HOLD on ch, hold music to its peer (03a)."""
        self.model.hold(ch)

    def unhold(self, ch: FakeChannel) -> None:
        self.model.unhold(ch)

    def talk(self, speaker: FakeChannel, *, talking: bool = True) -> None:
        """The party behind ``speaker`` starts (or stops) talking.

        FreeSWITCH's VAD runs where audio is sent, so TALK/NOTALK fire on the leg the
        speech goes to: the peer when bridged (trace 04), else the speaker's own leg.
        """
        target = speaker.peer if speaker.peer is not None and speaker.peer.alive else speaker
        self.model.talk(target, talking=talking)

    def dtmf(self, ch: FakeChannel, digit: str) -> None:
        """The caller behind ``ch`` presses a key; it ends a playback it terminates."""
        self.model.dtmf(ch, digit)
        running = self._running.get(ch.uuid)
        if running is not None and running.app == "playback":
            terminators = ch.variables.get("playback_terminators", "*")
            if terminators != "none" and (digit in terminators or terminators == "any"):
                self._finish_app(ch.uuid, "FILE PLAYED", digit)

    def avmd_beep(self, ch: FakeChannel, frequency: float = 950.593238) -> None:
        """avmd hears a voicemail beep (trace 06): two copies with one Event-Sequence."""
        self.model.avmd(
            ch,
            "avmd::beep",
            [
                ("Beep-Status", "DETECTED"),
                ("Frequency", f"{frequency:f}"),
                ("Frequency-variance", "0.000009"),
                ("Amplitude", "24178.296969"),
                ("Amplitude-variance", "0.000000"),
                ("Detection-time", "7920004"),
                ("Detector-resolution", "2"),
                ("Detector-offset", "0"),
                ("Detector-index", "1"),
            ],
        )

    def hangup(
        self, ch: FakeChannel, cause: str = "NORMAL_CLEARING", *, disposition: str = "recv_bye"
    ) -> None:
        """``ch`` ends (its phone hangs up, or uuid_kill); a bridged peer follows (02c/02d)."""
        if not ch.alive:
            return
        survivor = ch.peer if ch.peer is not None and ch.peer.alive else None
        if survivor is None:
            self.model.end_alone(ch, cause, disposition=disposition)
            return
        app = None
        if survivor.application == "bridge":
            app_uuid = survivor.variables.get("bridge_app_uuid") or new_uuid()
            app = ("bridge", survivor.application_data, app_uuid)
        self.model.end_bridged(ch, cause, disposition=disposition, survivor_app=app)

    def die(self, ch: FakeChannel, *, media_timeout: bool = True) -> None:
        """The far end behind ``ch`` vanishes without a BYE (trace 07b).

        With ``media_timeout`` (``media_timeout=4000`` on the legs) FreeSWITCH ends ``ch``
        with MEDIA_TIMEOUT and the survivor carries ``variable_bridge_hangup_cause``;
        without, nothing happens at all: the call stays up, silent.
        """
        ch.dead_media = True
        if media_timeout:
            self.hangup(ch, "MEDIA_TIMEOUT", disposition="send_bye")

    def _transfer(self, ch: FakeChannel, destination: str) -> None:
        peer = ch.peer
        if peer is not None and peer.alive:
            self.model.unbridge(ch, peer, b_cause="NORMAL_CLEARING")
            self.model.end_alone(peer, "NORMAL_CLEARING")
        if self._in_park(ch):
            self._end_unicast(ch, "unpark")
        self.model.unpark(ch)
        ch.destination = destination
        self.model.park(ch, new_uuid())
        self._run_extension(ch, destination)

    def _run_extension(self, ch: FakeChannel, extension: str) -> None:
        script = self.extensions.get(extension)
        if script is not None:
            self.spawn(script(ch), f"fake-fs-extension-{extension}-{ch.uuid}")

    def application_event(self, ch: FakeChannel, headers: list[tuple[str, str]]) -> None:
        """The ``event`` application on ``ch`` (``bind_meta_app ... event::k=v``): a
        CHANNEL_APPLICATION with the channel's data and the given headers."""
        self.model.fire("CHANNEL_APPLICATION", ch, suffix=headers)

    def callcenter_bridge_start(
        self, member: FakeChannel, agent: FakeChannel, *, queue: str, agent_name: str
    ) -> None:
        """mod_callcenter's CUSTOM callcenter::info ``bridge-agent-start`` on the agent leg
        (the module's tables say the agent is in this call from then on)."""
        self.callcenter.bridged(agent_name, queue, agent.uuid)
        core = [("Event-Subclass", "callcenter::info"), *self.model.core("CUSTOM")]
        self.model.fire(
            "CUSTOM",
            agent,
            core=core,
            suffix=[
                ("CC-Queue", queue),
                ("CC-Action", "bridge-agent-start"),
                ("CC-Agent", agent_name),
                ("CC-Agent-UUID", agent.uuid),
                ("CC-Member-Session-UUID", member.uuid),
                ("CC-Member-CID-Number", member.caller_number),
            ],
        )

    def _channel_hung_up(self, ch: FakeChannel) -> None:
        """Right after CHANNEL_HANGUP: running applications end, parks return."""
        self._end_unicast(ch, "hangup")
        self.callcenter.channel_gone(ch.uuid)
        self._finish_app(ch.uuid, "FILE PLAYED", None)
        self.model.unpark(ch)
        call = self._outbound.get(ch.uuid)
        if call is not None:
            call.channel_hung_up()

    def _channel_reported(self, ch: FakeChannel) -> None:
        call = self._outbound.get(ch.uuid)
        if call is not None:
            call.channel_reported()

    # -- applications ----------------------------------------------------------------------------

    def play(self, ch: FakeChannel, path: str, app_uuid: str) -> None:
        """uuid_broadcast: playback on ``ch`` (EXECUTE, PLAYBACK_START ... STOP, COMPLETE)."""
        self.run_app(ch, "playback", path, app_uuid)

    def run_app(  # noqa: C901, PLR0911 - one branch per application
        self,
        ch: FakeChannel,
        app: str,
        arg: str,
        app_uuid: str,
        done: Callable[[], None] | None = None,
        *,
        hangup_after: bool = False,
    ) -> None:
        """Execute a dialplan application on ``ch`` as FreeSWITCH's session thread would.

        ``done`` runs when the application completes (the sync outbound socket replies
        then); ``hangup_after``: nothing follows in the dialplan, so the leg hangs up.
        """

        def completed(_response: str, _terminator: str | None) -> None:
            if done is not None:
                done()
            if hangup_after and ch.alive:
                self.hangup(ch, "NORMAL_CLEARING", disposition="send_bye")

        if not ch.alive:
            completed("_none_", None)
            return
        self._finish_app(ch.uuid, "FILE PLAYED", None)
        self.model.execute(ch, app, arg, app_uuid)
        running = _RunningApp(ch, app, arg, app_uuid, done=completed)
        if app == "playback":
            if arg in self.missing_sounds:
                self.model.execute_complete(ch, app, arg, "FILE NOT FOUND", app_uuid)
                completed("FILE NOT FOUND", None)
                return
            self.model.playback_start(ch, arg)
            self._running[ch.uuid] = running
            running.handle = self.later(
                self.playback_s, lambda: self._finish_app(ch.uuid, "FILE PLAYED", None)
            )
            return
        if app == "sleep":
            self._running[ch.uuid] = running
            delay = int(arg) / 1000 if arg.isdigit() else 0.0
            running.handle = self.later(delay, lambda: self._finish_app(ch.uuid, "_none_", None))
            return
        response = "_none_"
        if app == "answer":
            self.answer(ch)
        elif app == "set":
            name, _, value = arg.partition("=")
            ch.variables[name] = value
        elif app == "park":
            self.model.park(ch)
            ch.parked_app_uuid = app_uuid
            return
        elif app in ("avmd_start", "avmd_stop"):
            subclass = "avmd::start" if app == "avmd_start" else "avmd::stop"
            fields = (
                [("Start-time", str(int(self.model.now() * 1_000_000)))]
                if app == "avmd_start"
                else [("Beep-Status", "NOTDETECTED"), ("Total-time", "0")]
            )
            self.model.avmd(ch, subclass, fields)
        elif app == "hangup":
            self.model.execute_complete(ch, app, arg, response, app_uuid)
            self.hangup(ch, arg or "NORMAL_CLEARING", disposition="send_bye")
            completed(response, None)
            return
        elif app not in _KNOWN_APPS:
            # FreeSWITCH cannot execute it and hangs the channel up (trace 05b).
            self.hangup(ch, "DESTINATION_OUT_OF_ORDER", disposition="send_bye")
            completed(response, None)
            return
        self.model.execute_complete(ch, app, arg, response, app_uuid)
        completed(response, None)

    def _finish_app(self, uuid: str, response: str, terminator: str | None) -> None:
        running = self._running.pop(uuid, None)
        if running is None:
            return
        if running.handle is not None:
            running.handle.cancel()
        ch = running.channel
        if running.app == "playback":
            if terminator is not None:
                ch.variables["playback_terminator_used"] = terminator
            status = "break" if terminator is not None or not ch.alive else "done"
            self.model.playback_stop(ch, running.arg, samples=8000, status=status)
        self.model.execute_complete(ch, running.app, running.arg, response, running.app_uuid)
        if running.done is not None:
            running.done(response, terminator)

    # -- sendmsg ---------------------------------------------------------------------------------

    def _sendmsg(
        self,
        ch: FakeChannel,
        command: EslCommand,
        done: Callable[[], None] | None = None,
    ) -> None:
        """call-command execute / hangup / unicast on ``ch``; ``done`` runs when it has
        completed."""
        call_command = (command.get("call-command") or "").lower()
        if call_command == "execute":
            app = command.get("execute-app-name") or ""
            arg = command.get("execute-app-arg") or ""
            app_uuid = command.get("Event-UUID") or new_uuid()
            self.run_app(ch, app, arg, app_uuid, done)
            return
        if call_command == "hangup":
            cause = command.get("hangup-cause") or "NORMAL_CLEARING"
            self.hangup(ch, cause, disposition="send_bye")
        elif call_command == "unicast":
            self._activate_unicast(ch, command)
        if done is not None:
            done()

    # -- unicast ---------------------------------------------------------------------------------

    def _activate_unicast(self, ch: FakeChannel, command: EslCommand) -> UnicastStream:
        """switch_ivr_activate_unicast: bind the socket now; the park loop sends the frames."""

        def header(name: str) -> str:
            return command.get(name) or _UNICAST_DEFAULTS.get(name, "")

        local_ip, remote_ip = header("local-ip"), header("remote-ip")
        transport, flags = header("transport"), header("flags")
        record = UnicastStream(
            uuid=ch.uuid,
            requested_local=(local_ip, _c_port(header("local-port"))),
            remote=(remote_ip, _c_port(header("remote-port"))),
            transport=transport,
            flags=flags,
            closed=True,
        )
        self.unicasts.append(record)
        if not ch.alive:
            record.refused = "the channel has hung up"
        elif transport.lower() not in ("udp", "tcp"):
            record.refused = f"Invalid transport {transport}"
        elif "native" in flags:
            record.refused = "flags native: raw codec frames are not modelled"
        elif ch.uuid in self._unicast:
            record.refused = "a unicast is already active on this channel"
        if record.refused is not None:
            return record
        try:
            local = _ipv4_address(*record.requested_local)
            remote = _ipv4_address(*record.remote)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            record.refused = f"Failure creating unicast connection: {exc}"
            return record
        try:
            sock.settimeout(0.0)  # non-blocking
            sock.bind(local)
            bound = sock.getsockname()
            session = _UnicastSession(self, ch, record, sock, remote)
        except OSError as exc:
            sock.close()
            record.refused = f"Failure creating unicast connection: {exc}"
            return record
        record.local = (str(bound[0]), int(bound[1]))
        record.active, record.closed = True, False
        self._unicast[ch.uuid] = session
        session.task = self.spawn(self._unicast_stream(session), f"fake-fs-unicast-{ch.uuid}")
        return record

    def _end_unicast(self, ch: FakeChannel, reason: str) -> None:
        session = self._unicast.get(ch.uuid)
        if session is not None:
            session.end(reason)

    def _unpark(self, ch: FakeChannel) -> None:
        """The park application ends (bridge): so does its unicast (switch_ivr_park)."""
        if ch.parked_app_uuid is not None:
            self._end_unicast(ch, "unpark")
        self.model.unpark(ch)

    def _in_park(self, ch: FakeChannel) -> bool:
        """``ch`` runs switch_ivr_park: a park application, or an async outbound socket."""
        if not ch.alive:
            return False
        if ch.parked_app_uuid is not None:
            return True
        call = self._outbound.get(ch.uuid)
        return call is not None and call.parked

    def _unicast_flowing(self, ch: FakeChannel) -> bool:
        """The park loop reads and sends frames now: parked, not inside another application
        (a playback blocks the loop), not bridged, not stalled."""
        return (
            self._in_park(ch)
            and ch.uuid not in self._running
            and (ch.peer is None or not ch.peer.alive)
            and ch.uuid not in self._unicast_stalled
            and _endpoint_user(ch.name) not in self._unicast_stalled
        )

    def _callee_frame(self, ch: FakeChannel, index: int | None) -> bytes:
        """Frame ``index`` (since the answer) of what the party on ``ch`` says."""
        if index is None or ch.dead_media:
            return _UNICAST_SILENCE
        audio = self.callee_audio.get(_endpoint_user(ch.name), b"")
        start = index * _UNICAST_FRAME_BYTES
        return audio[start : start + _UNICAST_FRAME_BYTES].ljust(_UNICAST_FRAME_BYTES, b"\0")

    async def _unicast_stream(self, session: _UnicastSession) -> None:
        """The park loop's sending: one datagram per 20 ms frame (x time_scale), in order."""
        loop, ch = session.loop, session.channel
        try:
            while not session.ended:
                now = loop.time()
                if not ch.alive:
                    session.end("hangup")
                    return
                if session.answered_at is None and ch.answered:
                    since = max(0.0, self.model.now() - ch.answered_us / 1_000_000)
                    session.answered(now - since, now)
                if self._unicast_flowing(ch):
                    session.send_due(now, lambda index: self._callee_frame(ch, index))
                    delay = session.next_at - loop.time()
                else:
                    # What the switch reads meanwhile never reaches the socket.
                    session.realign(now)
                    delay = session.frame_s
                await asyncio.sleep(max(delay, _UNICAST_MIN_TICK_S))
        except Exception as exc:  # noqa: BLE001 - a fake's fault must not reach the loop
            session.end(f"failed: {exc}")
        finally:
            session.end("closed")

    # -- outbound socket -------------------------------------------------------------------------

    async def outbound_call(
        self,
        host: str,
        port: int,
        *,
        caller_number: str = "gina",
        caller_name: str = "",
        destination: str = "9000",
        variables: dict[str, str] | None = None,
        mode: str = "async",
        uuid: str | None = None,
        connect_timeout_s: float = 5.0,
    ) -> OutboundCall:
        """A call reaches ``socket host:port [async] full``: connect to the daemon (05a/05b)."""
        ch = self.model.inbound(
            caller_number, caller_name, destination, uuid=uuid, variables=dict(variables or {})
        )
        return await self.connect_socket(
            ch, host, port, mode=mode, connect_timeout_s=connect_timeout_s
        )

    async def connect_socket(
        self,
        ch: FakeChannel,
        host: str,
        port: int,
        *,
        mode: str = "async",
        connect_timeout_s: float = 5.0,
    ) -> OutboundCall:
        """``ch``'s dialplan reaches ``socket host:port [async] full`` (05a/05b)."""
        data = f"{host}:{port} {'async ' if mode == 'async' else ''}full"
        ch.variables.update(
            {"current_application_data": data, "current_application": "socket", "socket_host": host}
        )
        ch.application, ch.application_data = "socket", data
        async with asyncio.timeout(connect_timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
        self._labels += 1
        sock = _Socket(self, f"outbound-{self._labels}", writer)
        sock.authed = True
        call = OutboundCall(self, ch, sock, mode=mode)
        self._outbound[ch.uuid] = call
        self.sockets.append(sock)
        call.task = self.spawn(call.serve(reader), f"fake-fs-outbound-{ch.uuid}")
        return call


_KNOWN_APPS = frozenset(
    {
        "answer",
        "set",
        "park",
        "avmd_start",
        "avmd_stop",
        "hangup",
        "playback",
        "sleep",
        "bridge",
        "transfer",
        "export",
        "unset",
        "displace_session",
        "ring_ready",
        "pre_answer",
        "echo",
        "log",
        "info",
        "respond",
        "stop_displace_session",
    }
)


class OutboundCall:
    """The fake's side of one outbound-socket session: one call driven by the daemon."""

    def __init__(
        self, switch: FakeFreeSwitch, channel: FakeChannel, sock: _Socket, *, mode: str
    ) -> None:
        self.switch = switch
        self.channel = channel
        self.sock = sock
        self.mode = mode
        self.linger: int | None = None  # seconds; -1 until the daemon closes
        self.task: asyncio.Task[None] | None = None
        self.connected = False
        self.closed_by_daemon = False
        self.dialplan_continued = asyncio.Event()
        self.finished = asyncio.Event()
        # `resume` sent (LFLAG_RESUME): when the socket closes, an async session's channel
        # goes on with its dialplan; without it (and without socket_resume=true) it stays
        # parked (mod_event_socket.c: socket_function, listener_run).
        self.resume = False
        self.hang_up_during_next_execute = False
        self._hung_up = False

    @property
    def parked(self) -> bool:
        """In async mode the socket application parks the channel until it hangs up or the
        daemon closes the socket (mod_event_socket); sync mode never parks."""
        return self.mode == "async" and not self._hung_up and not self.finished.is_set()

    @property
    def commands(self) -> list[EslCommand]:
        """What the daemon sent on this socket, in order."""
        return [c.command for c in self.switch.commands if c.socket == self.sock.label]

    def send_raw(self, data: bytes) -> None:
        self.sock.send(data)

    def close(self) -> None:
        """FreeSWITCH drops the socket abruptly."""
        self.sock.abort()

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """The caller hangs up."""
        self.switch.hangup(self.channel, cause, disposition="recv_bye")

    def press(self, digit: str) -> None:
        """The caller presses a key."""
        self.switch.dtmf(self.channel, digit)

    async def wait_finished(self, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self.finished.wait()

    async def serve(self, reader: asyncio.StreamReader) -> None:
        try:
            await self.switch._serve_commands(self.sock, reader, self._answer)  # noqa: SLF001
        finally:
            if not self.sock.closed:
                self.closed_by_daemon = True
            self.sock.close()
            if self.sock in self.switch.sockets:
                self.switch.sockets.remove(self.sock)
            ch = self.channel
            resumes = self.resume or ch.variables.get("socket_resume", "").lower() in (
                "true",
                "yes",
                "on",
                "1",
            )
            if ch.alive and self.closed_by_daemon and (resumes or self.mode != "async"):
                # The socket application returns (its park ends) and the dialplan goes on.
                if self.mode == "async":
                    self.switch._end_unicast(ch, "unpark")  # noqa: SLF001
                app_uuid = new_uuid()
                self.switch.model.execute_complete(
                    ch, "socket", ch.application_data, "_none_", app_uuid
                )
                self.dialplan_continued.set()
            self.finished.set()

    async def _answer(self, sock: _Socket, command: EslCommand) -> None:
        refused = self.switch.refuse_outbound.get(command.verb)
        if refused is not None:
            sock.send(encode_command_reply(f"-ERR {refused}"))
        else:
            await self._command(sock, command)

    async def _command(self, sock: _Socket, command: EslCommand) -> None:
        verb, args = command.verb, command.args
        ch = self.channel
        model = self.switch.model
        if verb == "connect":
            self.connected = True
            mode = "async" if self.mode == "async" else "static"
            sock.send(
                encode_channel_data_reply(model.channel_data(ch), socket_mode=mode, control="full")
            )
        elif verb == "myevents":
            sub = sock.subscription
            sub.event_format = args if args in ("plain", "json") else "plain"
            sub.only_uuid = ch.uuid
            sub.names |= MYEVENTS
            sock.send(encode_command_reply("+OK Events Enabled"))
            if ch.alive:
                model.park(ch)
        elif verb == "linger":
            self.linger = int(args) if args.strip().isdigit() else -1
            reply = f"+OK will linger {args} seconds" if args else "+OK will linger"
            sock.send(encode_command_reply(reply))
        elif verb == "resume":
            self.resume = True
            ch.variables["socket_resume"] = "true"
            sock.send(encode_command_reply("+OK"))
        elif verb == "nolinger":
            self.linger = None
            sock.send(encode_command_reply("+OK will not linger"))
        elif verb == "getvar":
            value = ch.variables.get(args.strip())
            sock.send(encode_command_reply(value or "-ERR command not found"))
        elif verb == "sendmsg" and args.strip() in ("", ch.uuid):
            self._sendmsg(sock, command)
        elif verb in ("exit", "..."):
            sock.send(encode_command_reply("+OK bye"))
            self.closed_by_daemon = True
            sock.close()
        else:
            await self.switch._common_command(sock, command)  # noqa: SLF001

    def _sendmsg(self, sock: _Socket, command: EslCommand) -> None:
        ch = self.channel
        if not ch.alive:
            sock.send(encode_command_reply("-ERR invalid session id"))
            return
        is_execute = (command.get("call-command") or "").lower() == "execute"
        if self.mode == "async":
            sock.send(encode_command_reply("+OK"))
            self.switch._sendmsg(ch, command)  # noqa: SLF001
        else:
            # Sync mode: the reply waits for the application, its events after it (05b).
            reply = encode_command_reply("+OK")
            sock.held = []
            self.switch._sendmsg(ch, command, done=lambda: sock.release(reply))  # noqa: SLF001
        if self.hang_up_during_next_execute and is_execute:
            self.hang_up_during_next_execute = False
            self.switch.later(0.001, self.hangup)

    def channel_hung_up(self) -> None:
        """Right after CHANNEL_HANGUP: the park inside the socket app ends (05a)."""
        if self._hung_up:
            return
        self._hung_up = True
        ch = self.channel
        model = self.switch.model
        model.fire("CHANNEL_UNPARK", ch)
        model.execute_complete(ch, "socket", ch.application_data, "_none_", new_uuid())

    def channel_reported(self) -> None:
        """After CHANNEL_HANGUP_COMPLETE: the linger notice, later the goodbye (05a)."""
        ch = self.channel
        if self.linger is None:
            self._final_notice()
            return
        self.sock.send(
            encode_disconnect_notice(
                session_uuid=ch.uuid, linger=True, channel_name=ch.name, linger_time=self.linger
            )
        )
        # Nothing more of the channel reaches the socket after the linger notice (05a).
        self.sock.subscription.event_format = None
        if self.linger >= 0:
            self.switch.later(self.linger, self._final_notice)

    def _final_notice(self) -> None:
        if self.sock.closed:
            return
        self.sock.send(encode_disconnect_notice(session_uuid=self.channel.uuid))
        self.sock.close()

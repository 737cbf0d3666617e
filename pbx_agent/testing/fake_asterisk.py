"""A fake Asterisk 22 for tests and the lab: an AMI server and a FastAGI client over real
loopback TCP, speaking the wire protocols exactly as the captured transcripts show.

Usage::

    async with FakeAsterisk() as pbx:                 # AMI on 127.0.0.1:<free port>
        host, port = pbx.ami_address
        call = await pbx.inbound_call(caller="79161234567", caller_name="Иван")
        await call.answer()
        agent = await call.connect_agent(endpoint="agent-1001", queue="support")
        await call.hold(by=agent)
        await call.talk(1.0)
        await call.hangup()
        setvar = await pbx.wait_for_action("Setvar")

Theory of operation
-------------------
``FakeAsterisk`` accepts any number of AMI clients. Each client gets the banner, logs in
(a wrong secret is refused after ``auth_failure_delay_s`` and the connection closed, 01a),
and then receives the events of its event mask plus the replies to its actions, in order,
through one writer task per client. The switching core (``asterisk_switch.Switch``) turns
scripted happenings (``inbound_call``, ``Leg.answer``, ``Leg.hangup``...) and the daemon's
actions (Originate, Hangup, Setvar...) into event sequences; every event goes to every
logged-in client whose mask accepts it, and into ``events``.

Every action received is recorded in ``received`` (with its arrival time on the fake's
clock) before anything else happens to it, so a test sees actions the fake was told to
ignore and actions sent while it is frozen.

Fault injection: ``drop_connections()`` closes every client socket; ``freeze()`` keeps the
sockets but answers nothing and sends no event (a half-open peer) until ``thaw()``;
``lose_events()`` goes on answering actions but delivers no event until
``deliver_events()`` (events lost, the daemon's view goes stale);
``send_raw(data)`` writes bytes as they are to every client; ``chunking`` splits each
message into the given chunk sizes (cycled), e.g. inside a UTF-8 character;
``ignore_actions`` names actions that are recorded and never answered; ``refuse_actions``
names actions answered ``Permission denied`` (a user without the action's class);
``write_classes`` (None: all, as the transcripts' lab user) are the user's ``write =``
classes for Originate's own check: without ``system``, an ``Application`` naming AGI, System
or Exec, or ``Data`` holding SHELL or EVAL, is answered ``Originate Access Forbidden``
(``action_originate`` in main/manager.c);
``after_channel_list`` (a
callable, used once) runs switch activity right after the next ``CoreShowChannels`` listing,
its events sent with ``CoreShowChannelsComplete`` in one segment (Asterisk sends the events
it queued meanwhile right behind the list); ``restart()`` drops
the clients and comes back on the same port with the channels that are still up.

Every task the fake starts is owned: client tasks, writer tasks and the switch's tasks are
cancelled and awaited by ``stop()``. Reads from a logged-in client have no deadline, as in
Asterisk (a manager session may stay idle for ever); a client that has not logged in
within ``auth_timeout_s`` is disconnected (Asterisk's ``authtimeout``), and a write that
does not drain within ``write_timeout_s`` drops that client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

from pbx_agent.clock import Clock, LoopClock
from pbx_agent.testing import ami_templates as tpl
from pbx_agent.testing.ami_templates import Field, render
from pbx_agent.testing.asterisk_model import (
    AmdVerdict,
    Channel,
    DialOutcome,
    Dialplan,
    DialScript,
    QueueMember,
    parse_caller_id,
    separate_args,
)
from pbx_agent.testing.asterisk_switch import OriginatedCall, OriginateRequest, Switch
from pbx_agent.testing.audiosocket_client import (
    AudioSocketRun,
    CalleeVoice,
    callee_audio,
    stream_call,
)
from pbx_agent.testing.fastagi_driver import (
    AgiResult,
    FastAgiSession,
    environment,
    split_agi_url,
)
from pbx_agent.wire.ami import AmiMessage, AmiProtocolError, encode_banner, encode_message

__all__ = [
    "AgiResult",
    "AmdVerdict",
    "DialOutcome",
    "DialScript",
    "FakeAsterisk",
    "Leg",
    "OriginatedCall",
    "ReceivedAction",
]


@dataclass(frozen=True, slots=True)
class ReceivedAction:
    """One action as the fake received it."""

    message: AmiMessage
    at: float  # the fake's clock (epoch seconds)
    connection: int  # which client connection sent it (1, 2, ...)

    @property
    def name(self) -> str:
        return self.message.name


class Leg:
    """A handle on one channel, to script what its far end does."""

    def __init__(self, pbx: FakeAsterisk, channel: Channel) -> None:
        self._pbx = pbx
        self.channel = channel

    def __repr__(self) -> str:
        return f"Leg({self.channel.name!r}, uniqueid={self.channel.uniqueid!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Leg) and other.channel is self.channel

    def __hash__(self) -> int:
        return id(self.channel)

    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def uniqueid(self) -> str:
        return self.channel.uniqueid

    @property
    def linkedid(self) -> str:
        return self.channel.linkedid

    @property
    def endpoint(self) -> str:
        return self.channel.endpoint

    @property
    def alive(self) -> bool:
        return self.channel.alive

    @property
    def state(self) -> str:
        return tpl.STATE_DESC.get(self.channel.state, "Unknown")

    @property
    def on_hold(self) -> bool:
        """Music on hold is playing to this leg."""
        return self.channel.moh_class_playing is not None

    @property
    def talk_detection(self) -> bool:
        return self.channel.talk_detect is not None

    @property
    def music_class(self) -> str:
        return self.channel.music_class

    def variable(self, name: str) -> str | None:
        return self._pbx.switch.get_variable(self.channel, name)

    def peer(self) -> Leg | None:
        peer = self.channel.peer()
        return None if peer is None else self._pbx.leg(peer)

    async def answer(self) -> None:
        """The dialplan answers the call (02a): Newexten Answer, Newstate Up."""
        self._pbx.switch.answer(self.channel)

    async def connect_agent(
        self,
        endpoint: str,
        *,
        queue: str | None = None,
        member_name: str = "",
        ring_s: float = 0.0,
        music_class: str | None = "default",
    ) -> Leg:
        """Dial (or, with ``queue``, Queue) an agent's phone, which answers; the two are
        bridged (trace 02b). Returns the agent's leg."""
        agent = await self._pbx.switch.dial(
            self.channel,
            endpoint,
            queue=queue,
            member_name=member_name,
            ring_s=ring_s,
            music_class=music_class,
        )
        return self._pbx.leg(agent)

    async def hold(self, by: Leg | None = None) -> None:
        """``by`` (default: this leg's bridge peer) puts this leg on hold (04c)."""
        presser = by.channel if by is not None else self.channel.peer()
        if presser is None:
            msg = f"{self.name} is not bridged: nobody can put it on hold"
            raise RuntimeError(msg)
        self._pbx.switch.hold(presser, self.channel)

    async def unhold(self, by: Leg | None = None) -> None:
        """``by`` (default: whoever holds this leg) takes this leg off hold (04c)."""
        presser = by.channel if by is not None else self._holder()
        if presser is None:
            msg = f"{self.name} is not on hold"
            raise RuntimeError(msg)
        self._pbx.switch.unhold(presser)

    def _holder(self) -> Channel | None:
        for ch in self._pbx.switch.channels.values():
            if ch.holding is self.channel:
                return ch
        return None

    async def talk(self, duration_s: float, *, silence_threshold_ms: int | None = None) -> None:
        """The far end speaks for ``duration_s``; returns when the speech ends. With
        TALK_DETECT set, ChannelTalkingStart comes 20 ms in and ChannelTalkingStop one
        silence threshold after the end, unless the next ``talk`` starts sooner (03a/03b).
        ``silence_threshold_ms`` overrides the threshold TALK_DETECT was set with."""
        await self._pbx.switch.talk(self.channel, duration_s, silence_threshold_ms)

    async def dtmf(self, digits: str, *, duration_ms: int = 200) -> None:
        """The far end presses ``digits`` (RFC 4733, 05b): DTMFBegin / DTMFEnd each."""
        await self._pbx.switch.dtmf(self.channel, digits, duration_ms, "Received")

    async def hangup(self, cause: int = 16, *, tech_cause: int | None = None) -> None:
        """The far end hangs up (a BYE): 02b / 08a when bridged, 05b when not."""
        self._pbx.switch.remote_hangup(self.channel, cause, tech_cause)

    async def die(self, *, rtp_timeout: bool = True, after_s: float | None = None) -> None:
        """The far end vanishes without a BYE. With ``rtp_timeout`` the endpoint has one:
        after ``after_s`` (default: the switch's ``rtp_timeout_s``, scaled) Asterisk hangs up
        (08b: SoftHangupRequest 1, Hangup 44 here, 16 on a bridged survivor). Without it
        nothing happens at all (08c) until something hangs the channel up."""
        self.channel.media_dead = True
        if not rtp_timeout:
            return
        switch = self._pbx.switch
        await switch.sleep(switch.scaled(switch.rtp_timeout_s) if after_s is None else after_s)
        switch.rtp_timeout(self.channel)

    async def wait_hangup(self, timeout_s: float = 5.0) -> None:
        """Wait until the channel's Hangup event has been sent."""
        await asyncio.wait_for(self._pbx.switch.hangup_waiter(self.channel).wait(), timeout_s)

    def set_amd(self, verdict: AmdVerdict) -> None:
        """What AMD() concludes on this channel (EXEC AMD, an AMD() dialplan step)."""
        self.channel.amd = verdict


class _AmiClient:
    """One AMI client connection."""

    def __init__(
        self,
        pbx: FakeAsterisk,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.pbx = pbx
        self.number = number
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.username = ""
        self.events_on = True
        self.event_mask: frozenset[str] | None = None  # None: every class
        self.outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.connected_at = pbx.clock.now()
        self.session_id = f"0x{0x7F08C0001460 + number * 0x1000:x}"
        local = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        remote = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        self.local_address = f"IPV4/TCP/{local[0]}/{local[1]}"
        self.remote_address = f"IPV4/TCP/{remote[0]}/{remote[1]}"
        self.closing = False
        # While set, what is sent is kept here (to leave later in one segment).
        self.held: list[bytes] | None = None

    def wants(self, fields: Sequence[Field]) -> bool:
        if not self.authenticated or not self.events_on:
            return False
        if self.event_mask is None:
            return True
        privilege = next((value for name, value in fields if name == "Privilege"), "")
        classes = {part.strip().lower() for part in privilege.split(",")} - {"all"}
        return bool(classes & self.event_mask)

    def send(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
        elif not self.closing and not self.pbx.frozen:
            self.outgoing.put_nowait(data)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.outgoing.put_nowait(None)


_ActionHandler = Callable[["_AmiClient", AmiMessage], Awaitable[None]]


class FakeAsterisk:
    """An Asterisk 22 as its AMI and FastAGI peers see it (see the module docstring)."""

    def __init__(
        self,
        *,
        username: str = "lab",
        secret: str = "not-a-real-secret",  # noqa: S107 - the transcripts' lab literal
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        auth_failure_delay_s: float = 0.05,
        auth_timeout_s: float = 30.0,
        write_timeout_s: float = 5.0,
    ) -> None:
        self.username = username
        self.secret = secret
        self.host = host
        self._port = port
        self._clock = clock
        self._time_scale = time_scale
        # Real Asterisk waits ~1 s before refusing a bad login (01a); short for tests.
        self.auth_failure_delay_s = auth_failure_delay_s
        self.auth_timeout_s = auth_timeout_s
        self.write_timeout_s = write_timeout_s
        self.frozen = False
        self.events_lost = False
        # CoreSettings' AsteriskVersion: the transcripts' build (22 branch after 22.11.0-rc1).
        self.asterisk_version = tpl.ASTERISK_VERSION
        self.chunking: int | Sequence[int] | None = None
        # With TCP_NODELAY each chunk leaves as its own segment; a pause can widen the gap.
        self.chunk_pause_s = 0.0
        self.ignore_actions: set[str] = set()
        self.refuse_actions: set[str] = set()
        self.write_classes: set[str] | None = None
        self.after_channel_list: Callable[[], object] | None = None
        # RTCPReceived noise for every answered PJSIP channel at this interval (switch clock
        # seconds; real Asterisk: ~5 s); None (the default) sends none.
        self.rtcp_interval_s: float | None = None
        self.received: list[ReceivedAction] = []
        self.events: list[AmiMessage] = []
        # How many of the newest actions, events, AGI results and originations the records
        # above keep (None: all, as a test wants). The built-in simulator runs for days: it
        # keeps a bounded tail (indexes into the records then shift as the oldest go).
        self.history_limit: int | None = None
        self._switch: Switch | None = None
        self._server: asyncio.Server | None = None
        self._clients: dict[int, _AmiClient] = {}
        self._client_numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._action_arrived = asyncio.Condition()
        self._started_at = 0.0
        self._agi_database: dict[tuple[str, str], str] = {}
        self.agi_results: list[AgiResult] = []
        # AudioSocket(): who speaks when a number the switch dialled answers (by the number
        # dialled), how fast the audio is sent (0: as fast as the socket takes it), and
        # every run, in the order they ended.
        self.callee_voices: dict[str, CalleeVoice] = {}
        self.default_callee_voice = CalleeVoice.SILENCE
        self.audiosocket_pace = 1.0
        self.audiosocket_runs: list[AudioSocketRun] = []

    # ------------------------------------------------------------------ life cycle

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            self._clock = LoopClock()
        return self._clock

    @property
    def switch(self) -> Switch:
        if self._switch is None:
            self._switch = Switch(
                clock=self.clock, emit=self._broadcast, time_scale=self._time_scale
            )
            self._switch.agi_launcher = self._launch_agi
            self._switch.audiosocket_launcher = self._launch_audiosocket
            self._switch.sound_lengths["custom/announcement"] = 7.2  # 04a/04b
        return self._switch

    async def start(self) -> None:
        self._started_at = self.clock.now()
        _ = self.switch
        self._server = await asyncio.start_server(self._on_connect, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self.switch.spawn(self._rtcp_noise(), name="rtcp noise")

    async def _rtcp_noise(self) -> None:
        """RTCPReceived for each answered PJSIP channel every ``rtcp_interval_s`` (02b)."""
        while True:
            interval = self.rtcp_interval_s
            await self.switch.sleep(interval or 1.0)
            if not interval:
                continue
            for index, ch in enumerate(list(self.switch.channels.values())):
                if ch.tech.value == "PJSIP" and ch.is_up and not ch.media_dead:
                    values = {
                        "To": "127.0.0.1:10169",
                        "From": f"127.0.0.1:{4100 + 2 * index}",
                        **dict(tpl.RTCP_RR_VALUES),
                    }
                    self.switch.emit(
                        render("RTCPReceived", channels={"{Chan}": ch.snapshot()}, values=values)
                    )

    async def stop(self) -> None:
        await self._close_server()
        if self._switch is not None:
            await self._switch.aclose()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), self.write_timeout_s)
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def time_scale(self) -> float:
        """Factor on the switch's own durations (sounds, Originate Timeout, AGI waits...)."""
        return self.switch.time_scale if self._switch is not None else self._time_scale

    @time_scale.setter
    def time_scale(self, value: float) -> None:
        self._time_scale = value
        if self._switch is not None:
            self._switch.time_scale = value

    @property
    def ami_address(self) -> tuple[str, int]:
        return self.host, self._port

    @property
    def dialplan(self) -> Dialplan:
        return self.switch.dialplan

    # ------------------------------------------------------------------ fault injection

    def drop_connections(self) -> None:
        """Close every client's TCP connection (a crash or a network cut)."""
        for client in list(self._clients.values()):
            client.closing = True
            client.writer.close()
            client.outgoing.put_nowait(None)

    def freeze(self) -> None:
        """Keep the sockets open but answer nothing and send nothing, Ping included."""
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def lose_events(self) -> None:
        """Answer actions as usual but deliver no event: the clients' view goes stale."""
        self.events_lost = True

    def deliver_events(self) -> None:
        self.events_lost = False

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` as is to every connected client."""
        for client in self._clients.values():
            if not client.closing:
                client.outgoing.put_nowait(data)

    async def restart(self) -> None:
        """Drop every client and listen again on the same port; live channels stay."""
        await self._close_server()
        self.frozen = False
        self._server = await asyncio.start_server(self._on_connect, self.host, self._port)

    @property
    def connections(self) -> int:
        return sum(1 for client in self._clients.values() if not client.closing)

    async def wait_for_login(self, count: int = 1, timeout_s: float = 5.0) -> None:
        """Wait until ``count`` clients are logged in."""
        await self.switch.wait_until(
            lambda: sum(1 for c in self._clients.values() if c.authenticated) >= count, timeout_s
        )

    # ------------------------------------------------------------------ recorded actions

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the fake (action handlers, background tasks): a test can
        assert there are none."""
        return self.switch.task_errors

    @property
    def actions(self) -> list[AmiMessage]:
        return [received.message for received in self.received]

    async def wait_for_action(
        self,
        name: str,
        *,
        timeout_s: float = 2.0,
        after: int = 0,
        where: Callable[[AmiMessage], bool] | None = None,
    ) -> AmiMessage:
        """The first recorded action named ``name`` (case-insensitive) at index ``after`` or
        later that ``where`` accepts, waiting up to ``timeout_s`` for it to arrive."""

        def find() -> AmiMessage | None:
            for received in self.received[after:]:
                message = received.message
                if message.name.lower() == name.lower() and (where is None or where(message)):
                    return message
            return None

        async def wait() -> AmiMessage:
            async with self._action_arrived:
                while True:
                    found = find()
                    if found is not None:
                        return found
                    await self._action_arrived.wait()

        return await asyncio.wait_for(wait(), timeout_s)

    def events_named(self, name: str) -> list[AmiMessage]:
        return [event for event in self.events if event.get("Event") == name]

    # ------------------------------------------------------------------ scripting

    def leg(self, channel: Channel | str) -> Leg:
        if isinstance(channel, str):
            found = self.switch.find(channel)
            if found is None:
                msg = f"no channel named or with uniqueid {channel!r}"
                raise KeyError(msg)
            channel = found
        return Leg(self, channel)

    @property
    def legs(self) -> list[Leg]:
        return [Leg(self, ch) for ch in self.switch.channels.values()]

    async def inbound_call(
        self,
        caller: str,
        caller_name: str = "",
        *,
        exten: str = "100",
        context: str = "from-pstn",
        endpoint: str = "trunk",
        variables: Mapping[str, str] | None = None,
    ) -> Leg:
        """A call arrives (02b): Newchannel in state 4 Ring, VarSet SIPDOMAIN; if the
        dialplan has (context, exten), it runs."""
        ch = self.switch.inbound_channel(
            endpoint=endpoint,
            caller=caller,
            caller_name=caller_name,
            exten=exten,
            context=context,
            variables=variables,
        )
        return Leg(self, ch)

    def user_event(
        self, name: str, fields: Mapping[str, str] | None = None, leg: Leg | None = None
    ) -> None:
        """Emit a UserEvent (with the channel snapshot when ``leg`` is given)."""
        self.switch.user_event(name, fields or {}, None if leg is None else leg.channel)

    async def feature(
        self,
        leg: Leg,
        name: str,
        fields: Mapping[str, str] | None = None,
        *,
        digits: str = "",
    ) -> None:
        """What a features.conf application-map entry running ``UserEvent(<name>,...)``
        produces when the far end of ``leg`` dials its code: the DTMF, then the UserEvent."""
        if digits:
            await leg.dtmf(digits, duration_ms=100)
        self.user_event(name, fields, leg)

    def script_dial(self, target: str, script: DialScript) -> None:
        """How ``target`` (``PJSIP/x``, ``x``, or the number before ``@``) answers."""
        self.switch.dial_scripts[target] = script

    def add_queue_member(self, queue: str, endpoint: str, member_name: str = "") -> None:
        self.switch.queues.setdefault(queue, []).append(QueueMember(endpoint, member_name))

    @property
    def originated(self) -> list[OriginatedCall]:
        return self.switch.originated

    async def wait_originated(self, count: int = 1, timeout_s: float = 5.0) -> OriginatedCall:
        """Wait until ``count`` Originates have reached their outcome; returns the last."""

        def finished() -> list[OriginatedCall]:
            return [o for o in self.switch.originated if o.done.is_set()]

        await self.switch.wait_until(lambda: len(finished()) >= count, timeout_s)
        return finished()[count - 1]

    def script_callee_voice(self, target: str, voice: CalleeVoice) -> None:
        """Who speaks when ``target`` (the number dialled, as in ``script_dial``) answers and
        the dialplan runs ``AudioSocket()`` on the leg."""
        self.callee_voices[target] = voice

    async def _launch_audiosocket(self, ch: Channel, stream: str, service: str) -> int:
        voice = self.callee_voices.get(ch.dnid, self.default_callee_voice)
        run = await stream_call(
            service,
            stream,
            callee_audio(voice),
            stall=voice is CalleeVoice.STALL,
            alive=lambda: ch.alive,
            pace=self.audiosocket_pace,
        )
        self.audiosocket_runs.append(run)
        self.switch.changed()
        return run.result

    # ------------------------------------------------------------------ FastAGI

    async def agi(
        self,
        leg: Leg,
        url: str,
        *,
        args: Sequence[str] = (),
        digits: Iterable[str | None] = (),
        idle_timeout_s: float = 10.0,
    ) -> AgiResult:
        """The dialplan runs ``AGI(<url>[,args])`` on ``leg``: connect to the daemon's FastAGI
        server, send the environment (05a), answer its commands until it closes the socket.
        ``digits`` answer successive WAIT FOR DIGIT / GET DATA waits (None: time out)."""
        ch = leg.channel
        data = ",".join([url, *args])
        self.switch.newexten(ch, "AGI", data)
        return await self._run_agi(ch, url, tuple(args), list(digits), idle_timeout_s)

    async def _launch_agi(self, ch: Channel, url: str, args: tuple[str, ...]) -> str:
        result = await self._run_agi(ch, url, args, [], 10.0)
        return result.status

    async def _run_agi(
        self,
        ch: Channel,
        url: str,
        args: tuple[str, ...],
        digits: list[str | None],
        idle_timeout_s: float,
    ) -> AgiResult:
        session = FastAgiSession(
            switch=self.switch,
            channel=ch,
            url=url,
            args=args,
            digits=digits,
            idle_timeout_s=idle_timeout_s,
            database=self._agi_database,
        )
        result = await session.run()
        self.agi_results.append(result)
        self._keep_recent(self.agi_results)
        return result

    def _keep_recent(self, records: list[Any]) -> None:
        """Drop the oldest of ``records`` beyond ``history_limit`` (in batches, so each
        append stays cheap)."""
        limit = self.history_limit
        if limit is not None and len(records) > 2 * limit:
            del records[: len(records) - limit]

    def agi_environment(
        self, leg: Leg, url: str, args: Sequence[str] = ()
    ) -> list[tuple[str, str]]:
        return environment(leg.channel, url, args)

    async def agi_raw(
        self, url: str, payload: bytes, *, read_timeout_s: float = 0.5, close: bool = True
    ) -> bytes:
        """Connect to a FastAGI server, send ``payload`` as is (half an environment, garbage),
        then close (``close``) or half-close, and return what the server wrote back."""
        host, port = split_agi_url(url)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
        try:
            writer.write(payload)
            await asyncio.wait_for(writer.drain(), 2.0)
            if close:
                return b""
            if writer.can_write_eof():
                writer.write_eof()
            chunks: list[bytes] = []
            with contextlib.suppress(TimeoutError):
                while True:
                    data = await asyncio.wait_for(reader.read(4096), read_timeout_s)
                    if not data:
                        break
                    chunks.append(data)
            return b"".join(chunks)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    # ------------------------------------------------------------------ event fan-out

    def _broadcast(self, fields: list[Field]) -> None:
        data = encode_message(fields)
        self.events.append(AmiMessage(tuple(fields)))
        self._keep_recent(self.events)
        if self.events_lost:
            return
        for client in self._clients.values():
            if client.wants(fields):
                client.send(data)

    # ------------------------------------------------------------------ connections

    def _own(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # asyncio.start_server runs this in its own task; the fake tracks it to stop it.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = _AmiClient(self, next(self._client_numbers), reader, writer)
        self._clients[client.number] = client
        writer_task = self._own(self._write_loop(client), f"ami-writer-{client.number}")
        client.send(encode_banner())
        try:
            await self._read_loop(client)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            client.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer_task, self.write_timeout_s)
            writer.close()
            self._clients.pop(client.number, None)

    async def _write_loop(self, client: _AmiClient) -> None:
        writer = client.writer
        try:
            while True:
                data = await client.outgoing.get()
                if data is None or writer.is_closing():
                    return
                for chunk in self._chunks(data):
                    writer.write(chunk)
                    await asyncio.wait_for(writer.drain(), self.write_timeout_s)
                    if self.chunking is not None:
                        await asyncio.sleep(self.chunk_pause_s)  # 0: yield, let it go out
        except (ConnectionError, TimeoutError):
            client.closing = True
            writer.close()

    def _chunks(self, data: bytes) -> list[bytes]:
        if self.chunking is None:
            return [data]
        sizes = [self.chunking] if isinstance(self.chunking, int) else list(self.chunking)
        chunks: list[bytes] = []
        offset = 0
        for size in itertools.cycle(sizes):
            if offset >= len(data):
                break
            chunks.append(data[offset : offset + max(1, size)])
            offset += max(1, size)
        return chunks

    async def _read_loop(self, client: _AmiClient) -> None:
        from pbx_agent.wire.ami import AmiDecoder  # noqa: PLC0415 - keeps the import list short

        decoder = AmiDecoder(expect_banner=False)
        while not client.closing:
            if client.authenticated:
                data = await client.reader.read(65536)
            else:
                remaining = self.auth_timeout_s - (self.clock.now() - client.connected_at)
                try:
                    data = await asyncio.wait_for(client.reader.read(65536), max(0.0, remaining))
                except TimeoutError:
                    return
            if not data:
                return
            decoder.feed(data)
            while not client.closing:
                try:
                    message = decoder.next_message()
                except AmiProtocolError:
                    self._reply(client, None, "Error", [("Message", "Missing action in request")])
                    continue
                if message is None:
                    break
                if isinstance(message, AmiMessage):
                    await self._on_message(client, message)

    async def _on_message(self, client: _AmiClient, message: AmiMessage) -> None:
        if message.kind != "action":
            self._reply(client, message, "Error", [("Message", "Missing action in request")])
            return
        self.received.append(ReceivedAction(message, self.clock.now(), client.number))
        self._keep_recent(self.received)
        if self._switch is not None:
            self._keep_recent(self._switch.originated)
        async with self._action_arrived:
            self._action_arrived.notify_all()
        if self.frozen or message.name.lower() in {name.lower() for name in self.ignore_actions}:
            return
        action = message.name.lower()
        if not client.authenticated and action not in ("login", "logoff", "challenge"):
            self._reply(client, message, "Error", [("Message", tpl.MSG_PERMISSION_DENIED)])
            return
        if action in {name.lower() for name in self.refuse_actions}:
            self._reply(client, message, "Error", [("Message", tpl.MSG_PERMISSION_DENIED)])
            return
        handler = self._action_handlers().get(action)
        if handler is None:
            self._unknown_action(client, message)
            return
        try:
            await handler(client, message)
        except Exception as exc:  # noqa: BLE001 - a bug in the fake must not look like a hang
            self.switch.task_errors.append(exc)
            self._reply(client, message, "Error", [("Message", f"Fake Asterisk failed: {exc!r}")])

    def _action_handlers(self) -> dict[str, _ActionHandler]:
        return {
            "login": self._login,
            "logoff": self._logoff,
            "ping": self._ping,
            "events": self._events,
            "command": self._command,
            "corestatus": self._core_status,
            "coresettings": self._core_settings,
            "coreshowchannels": self._core_show_channels,
            "status": self._status,
            "getvar": self._getvar,
            "setvar": self._setvar,
            "hangup": self._hangup,
            "redirect": self._redirect,
            "originate": self._originate,
            "userevent": self._user_event,
            "playdtmf": self._play_dtmf,
            "mixmonitor": self._mix_monitor,
            "stopmixmonitor": self._stop_mix_monitor,
            "queuestatus": self._queue_status,
        }

    def _reply(
        self,
        client: _AmiClient,
        action: AmiMessage | None,
        response: str,
        fields: Iterable[Field] = (),
    ) -> None:
        """A response: Response, ActionID (when the action had one), then ``fields``."""
        out: list[Field] = [("Response", response)]
        action_id = action.action_id if action is not None else None
        if action_id is not None:
            out.append(("ActionID", action_id))
        out.extend(fields)
        client.send(encode_message(out))

    def _list_item(self, client: _AmiClient, fields: list[Field]) -> None:
        client.send(encode_message(fields))

    def _unknown_action(self, client: _AmiClient, message: AmiMessage) -> None:
        self._reply(
            client, message, "Error", [("Message", tpl.unknown_action_message(message.name))]
        )
        now = self._event_tv(self.clock.now())
        self._broadcast(
            render(
                "RequestBadFormat",
                values={
                    "EventTV": now,
                    "Severity": "Error",
                    "Service": "AMI",
                    "EventVersion": "1",
                    "SessionID": client.session_id,
                    "LocalAddress": client.local_address,
                    "RemoteAddress": client.remote_address,
                    "RequestType": f"Action: {message.name}",
                    "SessionTV": self._event_tv(client.connected_at),
                    "AccountID": client.username,
                },
            )
        )

    @staticmethod
    def _event_tv(epoch: float) -> str:
        stamp = datetime.fromtimestamp(epoch, tz=UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"

    def _channel_arg(self, client: _AmiClient, message: AmiMessage, missing: str) -> Channel | None:
        """The action's Channel, or None after replying with the right error."""
        name = message.get("Channel")
        if not name:
            self._reply(client, message, "Error", [("Message", missing)])
            return None
        ch = self.switch.find(name)
        if ch is None:
            self._reply(client, message, "Error", [("Message", tpl.MSG_NO_SUCH_CHANNEL)])
        return ch

    # ------------------------------------------------------------------ actions

    async def _login(self, client: _AmiClient, message: AmiMessage) -> None:
        if message.get("Username") != self.username or message.get("Secret") != self.secret:
            await self.switch.sleep(self.auth_failure_delay_s)
            self._reply(client, message, "Error", [("Message", tpl.MSG_AUTH_FAILED)])
            client.close()
            return
        client.authenticated = True
        client.username = self.username
        self.switch.changed()
        self._set_event_mask(client, message.get("Events"))
        self._reply(client, message, "Success", [("Message", tpl.MSG_AUTH_ACCEPTED)])
        uptime = str(int(self.clock.now() - self._started_at))
        boot = render(
            "FullyBooted",
            values={"Uptime": uptime, "LastReload": uptime, "Status": "Fully Booted"},
        )
        now = self._event_tv(self.clock.now())
        auth = render(
            "SuccessfulAuth",
            values={
                "EventTV": now,
                "Severity": "Informational",
                "Service": "AMI",
                "EventVersion": "1",
                "AccountID": self.username,
                "SessionID": client.session_id,
                "LocalAddress": client.local_address,
                "RemoteAddress": client.remote_address,
                "UsingPassword": "0",
                "SessionTV": now,
            },
        )
        # Sent to this session only, like Asterisk's own greeting events (01c), and only
        # when its event mask takes them (none with Events: off, 01b).
        for event in (boot, auth):
            if client.wants(event):
                client.send(encode_message(event))

    @staticmethod
    def _set_event_mask(client: _AmiClient, value: str | None) -> None:
        mask = (value or "on").strip().lower()
        if mask in ("off", "no", "false", "0", "none"):
            client.events_on = False
        elif mask in ("on", "yes", "true", "1", "all"):
            client.events_on = True
            client.event_mask = None
        else:
            client.events_on = True
            client.event_mask = frozenset(part.strip() for part in mask.split(",") if part.strip())

    async def _logoff(self, client: _AmiClient, message: AmiMessage) -> None:
        self._reply(client, message, "Goodbye", [("Message", tpl.MSG_GOODBYE)])
        client.close()

    async def _ping(self, client: _AmiClient, message: AmiMessage) -> None:
        self._reply(
            client,
            message,
            "Success",
            [("Ping", "Pong"), ("Timestamp", f"{self.clock.now():.6f}")],
        )

    async def _events(self, client: _AmiClient, message: AmiMessage) -> None:
        self._set_event_mask(client, message.get("EventMask"))
        self._reply(client, message, "Success", [("Events", "On" if client.events_on else "Off")])

    async def _command(self, client: _AmiClient, message: AmiMessage) -> None:
        command = (message.get("Command") or "").strip()
        if command == "core show version":
            lines = [tpl.VERSION_BANNER_LINE]
        elif command == "core show channels count":
            count = len(self.switch.channels)
            lines = [f"{count} active channel{'s' if count != 1 else ''}"]
        else:
            self._reply(
                client,
                message,
                "Error",
                [("Message", tpl.MSG_COMMAND_OUTPUT), ("Output", tpl.unknown_cli_output(command))],
            )
            return
        fields = [("Message", tpl.MSG_COMMAND_OUTPUT), *(("Output", line) for line in lines)]
        self._reply(client, message, "Success", fields)

    async def _core_status(self, client: _AmiClient, message: AmiMessage) -> None:
        started = datetime.fromtimestamp(self._started_at, tz=UTC)
        self._reply(
            client,
            message,
            "Success",
            [
                ("CoreStartupDate", started.strftime("%Y-%m-%d")),
                ("CoreStartupTime", started.strftime("%H:%M:%S")),
                ("CoreReloadDate", started.strftime("%Y-%m-%d")),
                ("CoreReloadTime", started.strftime("%H:%M:%S")),
                ("CoreCurrentCalls", str(len(self.switch.channels))),
                ("CoreProcessedCalls", str(self.switch.processed_calls)),
            ],
        )

    async def _core_settings(self, client: _AmiClient, message: AmiMessage) -> None:
        """CoreSettings: the fields and order of main/manager.c's action_coresettings."""
        self._reply(
            client,
            message,
            "Success",
            [
                ("AMIversion", tpl.AMI_VERSION),
                ("AsteriskVersion", self.asterisk_version),
                ("SystemName", ""),
                ("CoreMaxCalls", "0"),
                ("CoreMaxLoadAvg", "0.000000"),
                ("CoreRunUser", ""),
                ("CoreRunGroup", ""),
                ("CoreMaxFilehandles", "0"),
                ("CoreRealTimeEnabled", "No"),
                ("CoreCDRenabled", "Yes"),
                ("CoreHTTPenabled", "No"),
            ],
        )

    def _action_id(self, message: AmiMessage) -> dict[str, str]:
        action_id = message.action_id
        return {} if action_id is None else {"ActionID": action_id}

    async def _core_show_channels(self, client: _AmiClient, message: AmiMessage) -> None:
        self._reply(
            client,
            message,
            "Success",
            [("EventList", "start"), ("Message", tpl.MSG_CHANNELS_FOLLOW)],
        )
        channels = list(self.switch.channels.values())
        now = self.clock.now()
        for ch in channels:
            seconds = int(now - ch.created_at)
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            values = {
                **self._action_id(message),
                "Application": ch.application,
                "ApplicationData": ch.app_data,
                "Duration": duration,
                "BridgeId": ch.bridge.uniqueid if ch.bridge is not None else "",
            }
            self._list_item(
                client, render("CoreShowChannel", channels={"{Chan}": ch.snapshot()}, values=values)
            )
        complete = {
            **self._action_id(message),
            "EventList": "Complete",
            "ListItems": str(len(channels)),
        }
        after, self.after_channel_list = self.after_channel_list, None
        if after is None:
            self._list_item(client, render("CoreShowChannelsComplete", values=complete))
            return
        client.held = []
        try:
            self._list_item(client, render("CoreShowChannelsComplete", values=complete))
            after()
        finally:
            held, client.held = client.held, None
        client.send(b"".join(held))

    async def _status(self, client: _AmiClient, message: AmiMessage) -> None:
        name = message.get("Channel")
        if name:
            ch = self.switch.find(name)
            if ch is None:
                self._reply(client, message, "Error", [("Message", tpl.MSG_NO_SUCH_CHANNEL)])
                return
            channels = [ch]
        else:
            channels = list(self.switch.channels.values())
        self._reply(
            client,
            message,
            "Success",
            [("EventList", "start"), ("Message", tpl.MSG_STATUS_FOLLOWS)],
        )
        now = self.clock.now()
        for ch in channels:
            values = {
                **self._action_id(message),
                "Type": ch.tech.value,
                "DNID": ch.dnid,
                "EffectiveConnectedLineNum": ch.connected_num or "<unknown>",
                "EffectiveConnectedLineName": ch.connected_name or "<unknown>",
                "TimeToHangup": "0",
                "BridgeID": ch.bridge.uniqueid if ch.bridge is not None else "",
                "Application": ch.application,
                "Data": ch.app_data,
                "Nativeformats": "(ulaw)",
                "Readformat": "ulaw",
                "Readtrans": "",
                "Writeformat": "ulaw",
                "Writetrans": "",
                "Callgroup": "0",
                "Pickupgroup": "0",
                "Seconds": str(int(now - ch.created_at)),
            }
            self._list_item(
                client, render("Status", channels={"{Chan}": ch.snapshot()}, values=values)
            )
        count = str(len(channels))
        complete = {
            **self._action_id(message),
            "EventList": "Complete",
            "ListItems": count,
            "Items": count,
        }
        self._list_item(client, render("StatusComplete", values=complete))

    async def _getvar(self, client: _AmiClient, message: AmiMessage) -> None:
        variable = message.get("Variable")
        if not variable:
            self._reply(client, message, "Error", [("Message", tpl.MSG_NO_VARIABLE_SPECIFIED)])
            return
        ch = None
        if message.get("Channel"):
            ch = self._channel_arg(client, message, tpl.MSG_NO_SUCH_CHANNEL)
            if ch is None:
                return
        value = self.switch.get_variable(ch, variable)
        self._reply(client, message, "Success", [("Variable", variable), ("Value", value or "")])

    async def _setvar(self, client: _AmiClient, message: AmiMessage) -> None:
        variable = message.get("Variable")
        if not variable:
            self._reply(client, message, "Error", [("Message", tpl.MSG_NO_VARIABLE_SPECIFIED)])
            return
        ch = None
        if message.get("Channel"):
            ch = self._channel_arg(client, message, tpl.MSG_NO_SUCH_CHANNEL)
            if ch is None:
                return
        self._reply(client, message, "Success", [("Message", tpl.MSG_VARIABLE_SET)])
        self.switch.set_variable(ch, variable, message.get("Value") or "")

    async def _hangup(self, client: _AmiClient, message: AmiMessage) -> None:
        ch = self._channel_arg(client, message, tpl.MSG_NO_CHANNEL_SPECIFIED)
        if ch is None:
            return
        cause_text = (message.get("Cause") or "").strip()
        cause = int(cause_text) if cause_text.isdigit() else None
        self._reply(client, message, "Success", [("Message", tpl.MSG_CHANNEL_HUNGUP)])
        self.switch.ami_hangup(ch, cause)

    async def _redirect(self, client: _AmiClient, message: AmiMessage) -> None:
        ch = self._channel_arg(client, message, tpl.MSG_CHANNEL_NOT_SPECIFIED)
        if ch is None:
            return
        priority_text = (message.get("Priority") or "1").strip()
        priority = int(priority_text) if priority_text.isdigit() else 1
        self._reply(client, message, "Success", [("Message", tpl.MSG_REDIRECT_OK)])
        self.switch.redirect(
            ch, message.get("Context") or ch.context, message.get("Exten") or ch.exten, priority
        )

    async def _originate(self, client: _AmiClient, message: AmiMessage) -> None:
        dial_string = message.get("Channel")
        if not dial_string:
            self._reply(client, message, "Error", [("Message", tpl.MSG_CHANNEL_NOT_SPECIFIED)])
            return
        if "/" not in dial_string:
            self._reply(client, message, "Error", [("Message", "Invalid channel")])
            return
        forbidden = self._originate_forbidden(message)
        if forbidden is not None:
            self._reply(client, message, "Error", [("Message", forbidden)])
            return
        request = _originate_request(message, dial_string)
        is_async = (message.get("Async") or "").strip().lower() in ("true", "yes", "1", "on")
        if is_async:
            self._reply(client, message, "Success", [("Message", tpl.MSG_ORIGINATE_QUEUED)])
            self.switch.start_originate(request)
            return
        # Without Async the session waits for the outcome, as Asterisk's does.
        record = self.switch.start_originate(request)
        await record.done.wait()
        if record.outcome is DialOutcome.ANSWER:
            self._reply(client, message, "Success", [("Message", tpl.MSG_ORIGINATE_QUEUED)])
        else:
            self._reply(client, message, "Error", [("Message", tpl.MSG_ORIGINATE_FAILED)])

    def _originate_forbidden(self, message: AmiMessage) -> str | None:
        """manager.c refuses applications that can reach a shell to a user without the
        ``system`` write class, whatever its other classes."""
        if self.write_classes is None or "system" in self.write_classes:
            return None
        app = (message.get("Application") or "").lower()
        data = message.get("Data") or ""
        if any(word in app for word in ("system", "exec", "agi")):
            return tpl.MSG_ORIGINATE_FORBIDDEN_APP
        if "SHELL" in data or "EVAL" in data:
            return tpl.MSG_ORIGINATE_FORBIDDEN_DATA
        return None

    async def _user_event(self, client: _AmiClient, message: AmiMessage) -> None:
        name = message.get("UserEvent") or ""
        # manager.c action_userevent: every header but Action and UserEvent, in order.
        body = [(k, v) for k, v in message.fields if k.lower() not in ("action", "userevent")]
        self._reply(client, message, "Success", [("Message", tpl.MSG_EVENT_SENT)])
        self._broadcast(render("UserEvent", values={"UserEvent": name}, extra=body))

    async def _play_dtmf(self, client: _AmiClient, message: AmiMessage) -> None:
        ch = self._channel_arg(client, message, tpl.MSG_CHANNEL_NOT_SPECIFIED)
        if ch is None:
            return
        digit = message.get("Digit")
        if not digit:
            self._reply(client, message, "Error", [("Message", tpl.MSG_NO_DIGIT)])
            return
        duration_text = (message.get("Duration") or "").strip()
        duration = int(duration_text) if duration_text.isdigit() else 100
        self._reply(client, message, "Success", [("Message", tpl.MSG_DTMF_QUEUED)])
        self.switch.spawn(
            self.switch.dtmf(ch, digit[0], duration, "Sent"), name=f"PlayDTMF {ch.name}"
        )

    async def _mix_monitor(self, client: _AmiClient, message: AmiMessage) -> None:
        ch = self._channel_arg(client, message, tpl.MSG_NO_CHANNEL_SPECIFIED)
        if ch is None:
            return
        self._reply(client, message, "Success")
        self.switch.ev("MixMonitorStart", ch)

    async def _stop_mix_monitor(self, client: _AmiClient, message: AmiMessage) -> None:
        ch = self._channel_arg(client, message, tpl.MSG_NO_CHANNEL_SPECIFIED)
        if ch is None:
            return
        self._reply(client, message, "Success")
        self.switch.ev("MixMonitorStop", ch)

    async def _queue_status(self, client: _AmiClient, message: AmiMessage) -> None:
        wanted = message.get("Queue")
        self._reply(
            client,
            message,
            "Success",
            [("EventList", "start"), ("Message", tpl.MSG_QUEUE_STATUS_FOLLOWS)],
        )
        items = 0
        action_id = self._action_id(message)
        for queue, members in sorted(self.switch.queues.items()):
            if wanted and queue != wanted:
                continue
            waiting = [
                ch
                for ch in self.switch.channels.values()
                if ch.queue == queue and ch.queue_member is None and ch.bridge is None
            ]
            items += 1
            self._list_item(client, _queue_params(queue, len(waiting), action_id))
            for member in members:
                items += 1
                self._list_item(client, self._queue_member(queue, member, action_id))
            for position, ch in enumerate(waiting, start=1):
                items += 1
                self._list_item(client, self._queue_entry(queue, position, ch, action_id))
        complete = {**action_id, "EventList": "Complete", "ListItems": str(items)}
        self._list_item(client, render("QueueStatusComplete", values=complete))

    def _queue_member(
        self, queue: str, member: QueueMember, action_id: dict[str, str]
    ) -> list[Field]:
        busy = any(
            ch.endpoint == member.endpoint and ch.alive for ch in self.switch.channels.values()
        )
        values = {
            "Queue": queue,
            "Name": member.member_name or member.interface,
            "Location": member.interface,
            "StateInterface": member.interface,
            "Membership": "static",
            "Penalty": "0",
            "CallsTaken": "0",
            "LastCall": "0",
            "LastPause": "0",
            "LoginTime": str(int(self._started_at)),
            "InCall": "1" if busy else "0",
            "Status": "2" if busy else "1",
            "Paused": "0",
            "PausedReason": "",
            "Wrapuptime": "0",
            **action_id,
        }
        return render("QueueMember", values=values)

    def _queue_entry(
        self, queue: str, position: int, ch: Channel, action_id: dict[str, str]
    ) -> list[Field]:
        values = {
            "Queue": queue,
            "Position": str(position),
            "Channel": ch.name,
            "Uniqueid": ch.uniqueid,
            "CallerIDNum": ch.caller_num or "unknown",
            "CallerIDName": ch.caller_name or "unknown",
            "ConnectedLineNum": ch.connected_num or "unknown",
            "ConnectedLineName": ch.connected_name or "unknown",
            "Wait": str(int(self.clock.now() - ch.queue_joined_at)),
            "Priority": "0",
            **action_id,
        }
        return render("QueueEntry", values=values)


def _queue_params(queue: str, calls: int, action_id: dict[str, str]) -> list[Field]:
    values = {
        "Queue": queue,
        "Max": "0",
        "Strategy": "ringall",
        "Calls": str(calls),
        "Holdtime": "0",
        "TalkTime": "0",
        "Completed": "0",
        "Abandoned": "0",
        "ServiceLevel": "0",
        "ServicelevelPerf": "0.0",
        "ServicelevelPerf2": "0.0",
        "Weight": "0",
        **action_id,
    }
    return render("QueueParams", values=values)


def _originate_request(message: AmiMessage, dial_string: str) -> OriginateRequest:
    caller_name, caller_num = parse_caller_id(message.get("CallerID") or "")
    variables: list[tuple[str, str]] = []
    for header in message.get_all("Variable"):
        # manager.c splits each Variable header with the dialplan argument splitter.
        for item in separate_args(header.lstrip()):
            name, sep, value = item.partition("=")
            if sep and name:
                variables.append((name, value))
    timeout_text = (message.get("Timeout") or "").strip()
    priority_text = (message.get("Priority") or "1").strip()
    application = message.get("Application") or None
    return OriginateRequest(
        dial_string=dial_string,
        action_id=message.action_id,
        context=message.get("Context") or None,
        exten=message.get("Exten") or None,
        priority=int(priority_text) if priority_text.isdigit() else 1,
        application=application,
        data=message.get("Data") or "",
        timeout_ms=int(timeout_text) if timeout_text.isdigit() else 30000,
        caller_name=caller_name,
        caller_num=caller_num,
        variables=tuple(variables),
        channel_id=message.get("ChannelId") or None,
        other_channel_id=message.get("OtherChannelId") or None,
    )

"""The fake Asterisk's switching core: what happens to channels, and the AMI events each
happening produces, in the order and with the fields of the captured transcripts.

Theory of operation
-------------------
``Switch`` owns the channels and bridges (``asterisk_model``) and an ``emit`` callback
(the AMI server broadcasts what it is given). Every change is a method that mutates the
model and emits the matching events synchronously, so a sequence is never interleaved with
another; a method awaits only where the real switch lets time pass (ringing, playback,
speech, an RTP timeout), using the injected clock. Background work (an Originate's outcome,
a whisper program, a dialplan) runs in tasks the switch owns and cancels on ``aclose``.

The sequences follow the transcripts in ``tests/traces/asterisk-22``: 02b for an answered
Dial and a caller hang-up, 08a for a callee hang-up, 08b for an RTP timeout, 08c for an AMI
Hangup of a bridged channel, 04c for hold, 04a for a whisper ChanSpy on a held channel,
03a/03b for talk detection, 05b for FastAGI, 06* for AMD and 07* for Originate outcomes.
Where the transcripts do not show a case, the comment at that place says what was chosen.

Durations that are the switch's own (sound lengths, an Originate's Timeout, an AGI ``WAIT FOR
DIGIT`` timeout, the RTP timeout, the time ChanSpy takes to attach) are multiplied by
``time_scale`` so tests can run them fast; durations a test passes to a scripted helper
(``talk(2.0)``, ``ring_s=``, an AMD verdict's ``after_s``) are used as given.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pbx_agent.clock import Clock, TimerHandle
from pbx_agent.testing import ami_templates as tpl
from pbx_agent.testing.ami_templates import (
    STATE_DOWN,
    STATE_RING,
    STATE_RINGING,
    STATE_UP,
    BridgeSnapshot,
    Field,
    render,
)
from pbx_agent.testing.asterisk_model import (
    TALK_ONSET_MS,
    AmdVerdict,
    Bridge,
    Channel,
    DialOutcome,
    Dialplan,
    DialplanStep,
    DialScript,
    QueueMember,
    Tech,
    builtin_variable,
    lab_dialplan,
    parse_talk_detect,
    read_function,
    separate_args,
    split_function,
    substitute,
)

Emit = Callable[[list[Field]], None]
# Dialplan applications whose Newexten the switch emits as part of their own sequence.
SELF_ANNOUNCING = frozenset({"dial", "queue"})
_Application = Callable[["Channel", str, list[str]], Awaitable[bool]]

# Applications that return by themselves: a channel originated straight into one of them
# hangs up when it returns (07f). Others (MusicOnHold, Echo, Park...) run until hung up.
FINITE_APPLICATIONS = frozenset(
    {"playback", "wait", "amd", "agi", "chanspy", "noop", "verbose", "set", "userevent", "answer"}
)


class AgiLink(Protocol):
    """What the switch needs from a running FastAGI session on a channel."""

    def channel_hung_up(self) -> None: ...


# An AGI launcher runs one FastAGI session for a channel and returns AGISTATUS.
AgiLauncher = Callable[[Channel, str, tuple[str, ...]], Awaitable[str]]
# An AudioSocket launcher streams a channel's audio to ``host:port`` under a UUID and returns
# what AudioSocket() returns (0: the service let go, -1: refused or the channel hung up).
AudioSocketLauncher = Callable[[Channel, str, str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    """An Originate action, parsed."""

    dial_string: str
    action_id: str | None
    context: str | None
    exten: str | None
    priority: int
    application: str | None
    data: str
    timeout_ms: int
    caller_name: str
    caller_num: str
    variables: tuple[tuple[str, str], ...]
    channel_id: str | None
    other_channel_id: str | None


@dataclass(slots=True)
class OriginatedCall:
    """One Originate the switch ran and its outcome (``done`` once OriginateResponse is out)."""

    request: OriginateRequest
    outcome: DialOutcome | None = None
    channel: Channel | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _DialPlan:
    """What one Dial()/Queue() dials."""

    endpoint: str
    queue: str | None
    member_name: str
    music_class: str | None  # the pre-dial handler's class, None for none

    @property
    def interface(self) -> str:
        return f"PJSIP/{self.endpoint}"

    @property
    def dial_string(self) -> str:
        # DialBegin's DialString: the resource for Dial(), the member interface for Queue().
        return self.endpoint if self.queue is None else self.interface

    @property
    def outgoing_app(self) -> str:
        return "AppDial" if self.queue is None else "AppQueue"


class Switch:
    """Channels, bridges and the event sequences of a running Asterisk (see module doc)."""

    def __init__(self, *, clock: Clock, emit: Emit, time_scale: float = 1.0) -> None:
        self.clock = clock
        self._emit = emit
        self.time_scale = time_scale
        self.channels: dict[str, Channel] = {}  # live channels by name, in creation order
        self.globals: dict[str, tuple[str, str]] = {}
        self.dialplan: Dialplan = lab_dialplan()
        self.queues: dict[str, list[QueueMember]] = {}
        self.dial_scripts: dict[str, DialScript] = {}
        self.default_dial_script = DialScript()
        self.unknown_endpoints: set[str] = {"nobody"}
        # Sound files: length in seconds (before time_scale); missing ones fail to play.
        # 05a: beep played to endpos=3404 (8 kHz samples); hello-world took 1.40 s.
        # Asterisk's core sounds: hello-world and beep as measured (02a, 06a); silence/N is N s.
        self.sound_lengths: dict[str, float] = {
            "hello-world": 1.4,
            "beep": 3404 / 8000,
            **{f"silence/{n}": float(n) for n in range(1, 11)},
        }
        self.default_sound_s = 1.0
        self.missing_sounds: set[str] = {"no-such-file"}
        self.default_amd = AmdVerdict.initial_silence()
        self.spy_attach_s = 0.1  # 04a: ChanSpyStart 104 ms after the Local channel is up
        self.rtp_timeout_s = 11.0  # 08b: rtp_timeout=10 fires ~11 s after the far end died
        self.agi_launcher: AgiLauncher | None = None
        self.audiosocket_launcher: AudioSocketLauncher | None = None
        self.originated: list[OriginatedCall] = []
        self.task_errors: list[BaseException] = []
        self.processed_calls = 0
        self._uniqueid_seq = itertools.count(0)
        self._pjsip_seq = itertools.count(0)
        self._local_seq = itertools.count(0)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dialplan_tasks: dict[Channel, asyncio.Task[Any]] = {}
        self._agi_links: dict[Channel, AgiLink] = {}
        self._hangup_waiters: dict[Channel, asyncio.Event] = {}
        self._digit_queues: dict[Channel, asyncio.Queue[str]] = {}
        self._after_agi: dict[Channel, Callable[[], None]] = {}
        self._pulse = asyncio.Event()
        self._device_channels: dict[str, dict[Channel, str]] = {}
        self._device_last: dict[str, str] = {}
        # Talk detection: when the current burst's ChannelTalkingStart was sent, and the
        # timer that sends its ChannelTalkingStop unless more speech comes first.
        self._talk_started: dict[Channel, float] = {}
        self._talk_stops: dict[Channel, TimerHandle] = {}

    # ------------------------------------------------------------------ infrastructure

    def emit(self, fields: list[Field]) -> None:
        self._emit(fields)
        self.changed()

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on the switch's clock (a ManualClock waits for ``advance``)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        handle = self.clock.call_at(self.clock.now() + seconds, wake)
        try:
            await done
        finally:
            handle.cancel()

    async def sleep_unless_gone(self, ch: Channel, seconds: float) -> None:
        """``sleep``, cut short when ``ch`` hangs up."""
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        gone = asyncio.ensure_future(self.hangup_waiter(ch).wait())
        try:
            await asyncio.wait({sleeper, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            gone.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.task_errors.append(task.exception())  # type: ignore[arg-type]

    async def aclose(self) -> None:
        for stop in self._talk_stops.values():
            stop.cancel()
        self._talk_stops.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def changed(self) -> None:
        """Wake everything waiting in ``wait_until``."""
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Wait (real time) until ``predicate()`` holds; re-checked at every ``changed()``."""

        async def wait() -> None:
            while not predicate():
                await self._pulse.wait()

        await asyncio.wait_for(wait(), timeout_s)

    # ------------------------------------------------------------------ channel factory

    def _new_uniqueid(self) -> str:
        return f"{int(self.clock.now())}.{next(self._uniqueid_seq)}"

    def new_pjsip_channel(
        self,
        endpoint: str,
        *,
        state: int,
        context: str,
        exten: str,
        linkedid: str | None = None,
        uniqueid: str | None = None,
    ) -> Channel:
        uid = uniqueid or self._new_uniqueid()
        ch = Channel(
            name=f"PJSIP/{endpoint}-{next(self._pjsip_seq):08x}",
            tech=Tech.PJSIP,
            endpoint=endpoint,
            uniqueid=uid,
            linkedid=linkedid or uid,
            created_at=self.clock.now(),
            state=state,
            context=context,
            exten=exten,
            bridge_call_id=str(uuid.uuid4()),
        )
        self.channels[ch.name] = ch
        self.processed_calls += 1
        return ch

    def find(self, name_or_uniqueid: str) -> Channel | None:
        ch = self.channels.get(name_or_uniqueid)
        if ch is not None:
            return ch
        for candidate in self.channels.values():
            if candidate.uniqueid == name_or_uniqueid:
                return candidate
        return None

    # ------------------------------------------------------------------ event helpers

    def ev(self, layout: str, ch: Channel | None = None, **values: str) -> None:
        channels = {"{Chan}": ch.snapshot()} if ch is not None else {}
        self.emit(render(layout, channels=channels, values=values))

    def newchannel(self, ch: Channel) -> None:
        self.ev("Newchannel", ch)

    def newstate(self, ch: Channel, state: int) -> None:
        ch.state = state
        if state == STATE_UP and ch.answered_at is None:
            ch.answered_at = self.clock.now()
        self.ev("Newstate", ch)

    def device_state(self, ch: Channel, state: str) -> None:
        """A channel's share of its device's state. DeviceStateChange is sent when the
        device's aggregate changes (a device with two calls stays INUSE while one ends)."""
        if ch.tech is Tech.LOCAL:
            # Each half of a Local pair reports on its own (04a: INUSE twice, NOT_INUSE twice).
            self.ev("DeviceStateChange", Device=ch.device, State=state)
            return
        channels = self._device_channels.setdefault(ch.device, {})
        if state == "NOT_INUSE":
            channels.pop(ch, None)
        else:
            channels[ch] = state
        states = set(channels.values())
        aggregate = next(
            (name for name in ("INUSE", "ONHOLD", "RINGING") if name in states), "NOT_INUSE"
        )
        if self._device_last.get(ch.device) != aggregate:
            self._device_last[ch.device] = aggregate
            self.ev("DeviceStateChange", Device=ch.device, State=aggregate)

    def varset(self, ch: Channel, name: str, value: str, *, store: bool = True) -> None:
        if store:
            ch.put_var(name, value)
        self.ev("VarSet", ch, Variable=name, Value=value)

    def newexten(self, ch: Channel, application: str, data: str) -> None:
        """A dialplan step: the next priority of the current extension."""
        if ch.dialplan_steps > 0:
            ch.priority += 1
        ch.dialplan_steps += 1
        ch.application = application
        ch.app_data = data
        self.ev("Newexten", ch, Extension=ch.exten, Application=application, AppData=data)

    def goto(self, ch: Channel, context: str, exten: str, priority: int = 1) -> None:
        ch.context = context
        ch.exten = exten
        ch.priority = priority
        ch.dialplan_steps = 0

    def qos(self, ch: Channel, *, start: int = 0) -> None:
        """The RTP statistics VarSets an answered PJSIP channel gets as it hangs up (02b)."""
        if ch.tech is Tech.PJSIP and ch.answered_at is not None and not ch.qos_reported:
            for name, value in tpl.RTP_QOS_VARIABLES[start:]:
                self.varset(ch, name, value)
            ch.qos_reported = True

    def bridge_snapshot(self, bridge: Bridge) -> BridgeSnapshot:
        return BridgeSnapshot(
            uniqueid=bridge.uniqueid,
            technology=bridge.technology,
            num_channels=len(bridge.members),
        )

    def bridge_event(self, layout: str, bridge: Bridge, ch: Channel | None = None) -> None:
        channels = {"{Chan}": ch.snapshot()} if ch is not None else {}
        self.emit(render(layout, channels=channels, bridge=self.bridge_snapshot(bridge)))

    def hangup_event(self, ch: Channel, cause: int, tech_cause: int | None = None) -> None:
        values = {"Cause": str(cause), "Cause-txt": tpl.cause_text(cause)}
        if tech_cause is not None:
            values["TechCause"] = str(tech_cause)
        self.ev("Hangup", ch, **values)

    def hangup_request(
        self, ch: Channel, cause: int | None = None, tech_cause: int | None = None
    ) -> None:
        values: dict[str, str] = {}
        if cause is not None:
            values["Cause"] = str(cause)
        if tech_cause is not None:
            values["TechCause"] = str(tech_cause)
        self.ev("HangupRequest", ch, **values)

    def soft_hangup_request(self, ch: Channel, cause: int, tech_cause: int | None = None) -> None:
        values = {"Cause": str(cause)}
        if tech_cause is not None:
            values["TechCause"] = str(tech_cause)
        self.ev("SoftHangupRequest", ch, **values)

    def user_event(self, name: str, fields: Mapping[str, str], ch: Channel | None = None) -> None:
        extra = list(fields.items())
        if ch is None:
            self.emit(render("UserEvent", values={"UserEvent": name}, extra=extra))
        else:
            self.emit(
                render(
                    "UserEvent/channel",
                    channels={"{Chan}": ch.snapshot()},
                    values={"UserEvent": name},
                    extra=extra,
                )
            )

    # ------------------------------------------------------------------ variables

    def get_variable(self, ch: Channel | None, name: str) -> str | None:
        """Getvar / GET VARIABLE: functions, built-ins, channel variables, then globals."""
        if ch is not None:
            func = split_function(name)
            if func is not None:
                return read_function(ch, *func)
            builtin = builtin_variable(ch, name)
            if builtin is not None:
                return builtin
            value = ch.get_var(name)
            if value is not None:
                return value
        entry = self.globals.get(name.lower())
        return None if entry is None else entry[1]

    def set_variable(self, ch: Channel | None, name: str, value: str) -> None:
        """Setvar / SET VARIABLE / Set(): functions change state silently, variables VarSet."""
        if ch is None:
            self.globals[name.lower()] = (name, value)
            values = {"Channel": "none", "Uniqueid": "none", "Variable": name, "Value": value}
            self.emit(render("VarSet/global", values=values))
            return
        func = split_function(name)
        if func is not None:
            self._write_function(ch, *func, value)
            return
        # Inheritance prefixes are not part of the variable's name (pbx_builtin_setvar_helper).
        self.varset(ch, name.lstrip("_"), value)

    def _write_function(self, ch: Channel, function: str, argument: str, value: str) -> None:
        setters: dict[tuple[str, str], Callable[[], None]] = {
            ("TALK_DETECT", "set"): lambda: setattr(ch, "talk_detect", parse_talk_detect(value)),
            ("TALK_DETECT", "remove"): lambda: setattr(ch, "talk_detect", None),
            ("CHANNEL", "musicclass"): lambda: setattr(ch, "music_class", value),
            ("CHANNEL", "language"): lambda: setattr(ch, "language", value),
            ("CHANNEL", "accountcode"): lambda: setattr(ch, "account_code", value),
            ("CALLERID", "num"): lambda: setattr(ch, "caller_num", value),
            ("CALLERID", "name"): lambda: setattr(ch, "caller_name", value),
        }
        setter = setters.get((function, argument.strip().lower()))
        # Any other function: accepted and ignored, as the real switch does for most.
        if setter is not None:
            setter()

    # ------------------------------------------------------------------ inbound calls

    def inbound_channel(
        self,
        *,
        endpoint: str,
        caller: str,
        caller_name: str,
        exten: str,
        context: str,
        variables: Mapping[str, str] | None = None,
    ) -> Channel:
        """A call arriving from a SIP peer (02b): born in state 4 Ring, no Newstate Ring."""
        ch = self.new_pjsip_channel(endpoint, state=STATE_RING, context=context, exten=exten)
        ch.caller_num = caller
        ch.caller_name = caller_name
        ch.dnid = exten
        self.newchannel(ch)
        self.varset(ch, "SIPDOMAIN", "127.0.0.1")
        for name, value in (variables or {}).items():
            self.varset(ch, name, value)
        if self.dialplan.get(context, exten) is not None:
            self.start_dialplan(ch)
        return ch

    def answer(self, ch: Channel) -> None:
        """The dialplan's Answer() (02a): Newexten, then Newstate Up and the device in use."""
        self.newexten(ch, "Answer", "")
        if not ch.is_up:
            self.newstate(ch, STATE_UP)
            self.device_state(ch, "INUSE")

    # ------------------------------------------------------------------ Dial / Queue

    async def dial(
        self,
        caller: Channel,
        endpoint: str,
        *,
        queue: str | None = None,
        member_name: str = "",
        ring_s: float = 0.0,
        music_class: str | None = "default",
        timeout_s: int = 30,
    ) -> Channel:
        """Dial() (or Queue()) from ``caller`` to ``PJSIP/<endpoint>``, answered: trace 02b.

        DialBegin -> (ringing) -> Newstate Up -> DialEnd ANSWER -> Newstate Up (caller) ->
        BridgeCreate -> BridgeEnter x2, with the VarSet flood around it. With ``queue``, the
        caller runs Queue() instead of Dial(), the dialled channel runs AppQueue, and
        AgentCalled / AgentConnect are added (the queue events are not in the transcripts).
        ``music_class`` runs the pre-dial handler of 02b that sets CHANNEL(musicclass) on
        the dialled channel; None skips it (08a).
        """
        plan = _DialPlan(endpoint, queue, member_name, music_class if queue is None else None)
        if queue is None:
            options = f",b(set-moh^s^1({music_class}))" if music_class else ""
            self.newexten(caller, "Dial", f"{plan.interface},{timeout_s}{options}")
        else:
            self.newexten(caller, "Queue", queue)
            caller.queue = queue
            caller.queue_joined_at = self.clock.now()
        callee = self._dial_begin(caller, plan)
        if ring_s > 0:
            # 02c: 180 Ringing.
            self.newstate(callee, STATE_RINGING)
            self.device_state(callee, "RINGING")
            ring_ms = int((self.clock.now() - caller.dial_started_at) * 1000)
            self.varset(caller, "RINGTIME", str(ring_ms // 1000))
            self.varset(caller, "RINGTIME_MS", str(ring_ms))
            self._dial_event("DialState", caller, callee, "RINGING")
            self.device_state(caller, "INUSE")
            await self.sleep_unless_gone(callee, ring_s)
            if not callee.alive:
                return callee  # the caller gave up while it rang (remote_hangup, 02c)
        self._dial_answered(caller, callee, plan, ring_s)
        return callee

    def _dial_event(self, event: str, caller: Channel, callee: Channel, status: str) -> None:
        self.emit(
            render(
                event,
                channels={"{Chan}": caller.snapshot(), "{Dest}": callee.snapshot()},
                values={"DialStatus": status},
            )
        )

    def _dial_begin(self, caller: Channel, plan: _DialPlan) -> Channel:
        """From the caller's VarSet flood to DialBegin (02b)."""
        for name in tpl.DIAL_RESET_VARIABLES:
            self.varset(caller, name, "")
        caller.dial_owner = True
        caller.dial_started_at = self.clock.now()
        callee = self.new_pjsip_channel(
            plan.endpoint,
            state=STATE_DOWN,
            context=caller.context,
            exten="s",
            linkedid=caller.linkedid,
        )
        callee.dial_peer = caller
        caller.dial_peer = callee
        if plan.queue is not None:
            callee.queue = plan.queue
            callee.queue_member = QueueMember(plan.endpoint, plan.member_name)
        self.newchannel(callee)
        self.varset(callee, "DIALEDPEERNUMBER", plan.endpoint)
        # Dial gives the outgoing channel the dialled extension as its caller id and the
        # caller as its connected line (02b: bob shows CallerIDNum 603, ConnectedLine alice).
        callee.caller_num = caller.exten
        callee.connected_num = caller.caller_num
        callee.connected_name = caller.caller_name
        callee.exten = caller.exten
        self.newexten(callee, plan.outgoing_app, "(Outgoing Line)")
        self.ev("NewCallerid", callee, **{"CID-CallingPres": tpl.CALLING_PRES_ALLOWED})
        self.ev("NewConnectedLine", callee)
        if plan.music_class:
            self._pre_dial_handler(callee, plan.music_class)
        self.emit(
            render(
                "DialBegin",
                channels={"{Chan}": caller.snapshot(), "{Dest}": callee.snapshot()},
                values={"DialString": plan.dial_string},
            )
        )
        if plan.queue is not None:
            self._agent_event("AgentCalled", caller, callee)
        caller.connected_num = callee.caller_num
        caller.connected_name = callee.caller_name
        self.ev("NewConnectedLine", caller)
        return callee

    def _dial_answered(
        self, caller: Channel, callee: Channel, plan: _DialPlan, ring_s: float
    ) -> None:
        """From the callee's Newstate Up to the bridge (02b)."""
        self.goto(callee, caller.context, caller.exten)
        callee.dialplan_steps = 1
        self.newstate(callee, STATE_UP)
        if plan.music_class:
            # Back from the pre-dial handler, the channel announces its application again.
            self.ev(
                "Newexten",
                callee,
                Extension=callee.exten,
                Application=plan.outgoing_app,
                AppData="(Outgoing Line)",
            )
        self.varset(caller, "DIALSTATUS", "ANSWER")
        self.varset(caller, "DIALEDPEERNAME", callee.name)
        self.varset(caller, "DIALEDPEERNUMBER", plan.endpoint)
        # Device states are published asynchronously; their place varies between runs. This
        # follows 02b with a pre-dial handler and 08a without one.
        if plan.music_class:
            self.device_state(callee, "INUSE")
        callee.exten = ""
        self._dial_event("DialEnd", caller, callee, "ANSWER")
        caller_was_up = caller.is_up
        if not caller_was_up:
            self.newstate(caller, STATE_UP)
        if not plan.music_class:
            self.device_state(callee, "INUSE")
        if not caller_was_up:
            self.device_state(caller, "INUSE")
        if plan.queue is not None:
            self._agent_event(
                "AgentConnect",
                caller,
                callee,
                HoldTime=str(int(self.clock.now() - caller.queue_joined_at)),
                RingTime=str(int(ring_s)),
            )
        self.bridge_pair(caller, callee, plan.outgoing_app)

    def _pre_dial_handler(self, callee: Channel, music_class: str) -> None:
        """Dial's b(set-moh^s^1(<class>)) on the dialled channel (02b)."""
        self.varset(callee, "LOCAL(ARG1)", music_class, store=False)
        self.varset(callee, "LOCAL(ARGC)", "1", store=False)
        self.goto(callee, "set-moh", "s")
        self.newexten(callee, "Set", f"CHANNEL(musicclass)={music_class}")
        callee.music_class = music_class
        self.newexten(callee, "Return", "")
        for name in ("ARGC", "ARG1", "GOSUB_RETVAL"):
            self.varset(callee, name, "", store=False)
        # DialBegin still shows the handler's context (02b: set-moh,s,2); at Newstate Up the
        # channel is back in the caller's extension.

    def _agent_event(self, event: str, caller: Channel, agent: Channel, **values: str) -> None:
        member = agent.queue_member or QueueMember(agent.endpoint)
        fields = {
            "Queue": caller.queue or "",
            "Interface": member.interface,
            "MemberName": member.member_name or member.interface,
            **values,
        }
        self.emit(
            render(
                event,
                channels={"{Chan}": caller.snapshot(), "{Dest}": agent.snapshot()},
                values=fields,
            )
        )

    def bridge_pair(self, owner: Channel, peer: Channel, peer_app: str = "AppDial") -> Bridge:
        """BridgeCreate, the dialled channel's last Newexten, BridgeEnter x2, BRIDGEPEER x3."""
        bridge = Bridge(uniqueid=str(uuid.uuid4()))
        self.bridge_event("BridgeCreate", bridge)
        self.ev("Newexten", peer, Extension="", Application=peer_app, AppData="(Outgoing Line)")
        for member in (peer, owner):
            bridge.members.append(member)
            member.bridge = bridge
            self.bridge_event("BridgeEnter", bridge, member)
        # Asterisk re-announces the peer variables as the bridge settles (3 rounds in 02b).
        for _ in range(3):
            for ch, other in ((owner, peer), (peer, owner)):
                self.varset(ch, "BRIDGEPEER", other.name)
                self.varset(ch, "BRIDGEPVTCALLID", ch.bridge_call_id)
        bridge.technology = "native_rtp"
        return bridge

    def _clear_bridge_peers(self, first: Channel, second: Channel) -> None:
        for ch in (first, second):
            self.varset(ch, "BRIDGEPEER", "")
            self.varset(ch, "BRIDGEPVTCALLID", "")

    def _leave(self, ch: Channel) -> None:
        bridge = ch.bridge
        if bridge is None:
            return
        if ch in bridge.members:
            bridge.members.remove(ch)
        ch.bridge = None
        self.bridge_event("BridgeLeave", bridge, ch)

    def _destroy(self, bridge: Bridge) -> None:
        self.bridge_event("BridgeDestroy", bridge)

    def _dial_end_vars(self, owner: Channel) -> None:
        now = self.clock.now()
        answered = owner.dial_peer.answered_at if owner.dial_peer is not None else None
        answered_ms = int((now - answered) * 1000) if answered is not None else 0
        dialed_ms = int((now - owner.dial_started_at) * 1000)
        self.varset(owner, "ANSWEREDTIME", str(answered_ms // 1000))
        self.varset(owner, "ANSWEREDTIME_MS", str(answered_ms))
        self.varset(owner, "DIALEDTIME", str(dialed_ms // 1000))
        self.varset(owner, "DIALEDTIME_MS", str(dialed_ms))
        self.varset(owner, "DIALSTATUS", "ANSWER")

    def _agent_complete(self, owner: Channel, peer: Channel, reason: str) -> None:
        agent, caller = (peer, owner) if peer.queue_member is not None else (owner, peer)
        if agent.queue_member is None or caller.queue is None:
            return
        answered = agent.answered_at or self.clock.now()
        self._agent_event(
            "AgentComplete",
            caller,
            agent,
            HoldTime=str(int(answered - caller.queue_joined_at)),
            TalkTime=str(int(self.clock.now() - answered)),
            Reason=reason,
        )

    # ------------------------------------------------------------------ hold, talk, DTMF

    def renegotiate(self, ch: Channel) -> None:
        """The bridge re-announces its peers whenever it is reconfigured (hold, unhold, a spy
        coming or going): one BRIDGEPEER / BRIDGEPVTCALLID round, Dial owner first (04*)."""
        bridge = ch.bridge
        if bridge is None or len(bridge.members) != 2:
            return
        first, second = sorted(bridge.members, key=lambda member: not member.dial_owner)
        for member, other in ((first, second), (second, first)):
            self.varset(member, "BRIDGEPEER", other.name)
            self.varset(member, "BRIDGEPVTCALLID", member.bridge_call_id)

    def hold(self, presser: Channel, held: Channel) -> None:
        """The presser's phone sends a sendonly re-INVITE (04c): Hold on the presser, MOH on
        the other leg, with that leg's CHANNEL(musicclass)."""
        presser.holding = held
        self.ev("Hold", presser, MusicClass=presser.moh_suggest)
        self.renegotiate(presser)
        if presser.bridge is not None:
            presser.bridge.technology = "simple_bridge"
        self.device_state(held, "ONHOLD")
        held.moh_class_playing = held.music_class
        self.ev("MusicOnHoldStart", held, Class=held.music_class)

    def unhold(self, presser: Channel) -> None:
        """sendrecv again (04c). No MusicOnHoldStop if a spy already killed the music (04a)."""
        held = presser.holding
        presser.holding = None
        self.renegotiate(presser)
        bridge = presser.bridge
        if bridge is not None and bridge.native_allowed:
            bridge.technology = "native_rtp"
        self.ev("Unhold", presser)
        if held is not None and held.alive and held.moh_class_playing is not None:
            held.moh_class_playing = None
            self.ev("MusicOnHoldStop", held)
            self.device_state(held, "INUSE")

    async def talk(self, ch: Channel, duration_s: float, silence_threshold_ms: int | None) -> None:
        """Speech from ``ch``'s far end for ``duration_s``; returns when the speech ends.

        With TALK_DETECT set (03a/03b): ChannelTalkingStart ~20 ms after onset, and
        ChannelTalkingStop one silence threshold after the end unless more speech starts
        first (a shorter gap does not split a burst, 03a); Stop's Duration runs from Start to
        the end of the last speech, without the threshold. No events without TALK_DETECT.
        """
        detect = ch.talk_detect
        if detect is None or ch.media_dead:
            await self.sleep(duration_s)
            return
        threshold_ms = detect.silence_ms if silence_threshold_ms is None else silence_threshold_ms
        # Times are computed from the start, not read after each wait: with an injected
        # clock a wait may end after the clock has been moved past its deadline.
        speech_end = self.clock.now() + duration_s
        remaining = duration_s
        pending = self._talk_stops.pop(ch, None)
        if pending is not None:
            pending.cancel()  # still inside the burst: no new Start, the Stop moves on
        else:
            onset_s = min(TALK_ONSET_MS / 1000, duration_s)
            started_at = self.clock.now() + onset_s
            await self.sleep(onset_s)
            remaining -= onset_s
            if not ch.alive or ch.talk_detect is None:
                return
            self._talk_started[ch] = started_at
            self.ev("ChannelTalkingStart", ch)
        await self.sleep(remaining)
        if not ch.alive or ch.talk_detect is None:
            return
        started = self._talk_started.get(ch, speech_end)

        def stop() -> None:
            self._talk_stops.pop(ch, None)
            self._talk_started.pop(ch, None)
            if ch.alive and ch.talk_detect is not None:
                duration_ms = max(0, round((speech_end - started) * 1000))
                self.ev("ChannelTalkingStop", ch, Duration=str(duration_ms))

        self._talk_stops[ch] = self.clock.call_at(speech_end + threshold_ms / 1000, stop)

    def digit_queue(self, ch: Channel) -> asyncio.Queue[str]:
        queue = self._digit_queues.get(ch)
        if queue is None:
            queue = self._digit_queues[ch] = asyncio.Queue()
        return queue

    async def dtmf(self, ch: Channel, digits: str, duration_ms: int, direction: str) -> None:
        """RFC 4733 digits (05b): DTMFBegin, then DTMFEnd with DurationMs."""
        for digit in digits:
            self.ev("DTMFBegin", ch, Digit=digit, Direction=direction)
            await self.sleep(duration_ms / 1000)
            if not ch.alive:
                return
            self.ev("DTMFEnd", ch, Digit=digit, DurationMs=str(duration_ms), Direction=direction)
            if direction == "Received":
                self.digit_queue(ch).put_nowait(digit)

    # ------------------------------------------------------------------ hang-ups

    def _gone(self, ch: Channel) -> None:
        """Forget a channel whose Hangup event was just sent."""
        ch.alive = False
        self.channels.pop(ch.name, None)
        task = self._dialplan_tasks.pop(ch, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        waiter = self._hangup_waiters.pop(ch, None)
        if waiter is not None:
            waiter.set()
        self._digit_queues.pop(ch, None)
        self._after_agi.pop(ch, None)
        stop = self._talk_stops.pop(ch, None)
        if stop is not None:
            stop.cancel()
        self._talk_started.pop(ch, None)

    def hangup_waiter(self, ch: Channel) -> asyncio.Event:
        event = self._hangup_waiters.get(ch)
        if event is None:
            event = self._hangup_waiters[ch] = asyncio.Event()
            if not ch.alive:
                event.set()
        return event

    def _finish(self, ch: Channel, cause: int, tech_cause: int | None = None) -> None:
        """Hangup (with the QoS noise first) and the device going idle."""
        self._end_spying(ch)
        self.qos(ch)
        self.hangup_event(ch, cause, tech_cause)
        self._gone(ch)
        self.device_state(ch, "NOT_INUSE")

    def _end_spying(self, ch: Channel) -> None:
        """ChanSpyStop when either end of a spy goes away."""
        if ch.spying_on is not None:
            self._spy_stop(ch)
        for spy in list(ch.spied_by):
            self._spy_stop(spy)

    def _spy_stop(self, spy: Channel) -> None:
        target = spy.spying_on
        if target is None:
            return
        spy.spying_on = None
        if spy in target.spied_by:
            target.spied_by.remove(spy)
        if target.alive:
            self.renegotiate(target)
        self.emit(
            render(
                "ChanSpyStop",
                channels={"{Spyer}": spy.snapshot(), "{Spyee}": target.snapshot()},
            )
        )
        if target.alive:
            self.renegotiate(target)

    def remote_hangup(self, ch: Channel, cause: int = 16, tech_cause: int | None = None) -> None:
        """The far end hangs up (a BYE). Bridged: 02b (the Dial owner) or 08a (the dialled
        leg). Not bridged: 05b (HangupRequest without a cause; the AGI, if any, is told)."""
        if not ch.alive or ch.hangup_requested:
            return
        peer = ch.peer()
        if peer is not None:
            self._bye_in_bridge(ch, peer, cause, tech_cause)
            return
        ringing = ch.dial_peer if ch.dial_owner else None
        if ringing is not None and ringing.alive and not ringing.is_up:
            self._caller_cancels(ch, ringing)
            return
        ch.hangup_requested = True
        if ch.tech is Tech.LOCAL:
            self._local_hangup(ch)
            return
        # 05b: a BYE on a channel that is not bridged: the RTP statistics, HangupRequest
        # without a cause, and the channel ends with cause 0 once its application (the
        # AGI) has returned.
        self.qos(ch)
        self.hangup_request(ch)
        self._end_unbridged(ch, soft_cause=tpl.SOFTHANGUP_APPUNLOAD, cause=0)

    def _caller_cancels(self, caller: Channel, callee: Channel) -> None:
        """The caller hangs up while the dialled phone rings (02c): CANCEL, cause 127 with
        the SIP status 487 on the caller and 500 on the cancelled callee."""
        caller.hangup_requested = True
        self.hangup_request(caller, 127, 487)
        self.emit(
            render(
                "DialEnd",
                channels={"{Chan}": caller.snapshot(), "{Dest}": callee.snapshot()},
                values={"DialStatus": "CANCEL"},
            )
        )
        self.varset(caller, "DIALSTATUS", "CANCEL")
        self.soft_hangup_request(caller, tpl.SOFTHANGUP_APPUNLOAD, 487)
        self.hangup_event(callee, 127, 500)
        self._gone(callee)
        self.hangup_event(caller, 127, 487)
        self._gone(caller)
        self.device_state(callee, "NOT_INUSE")
        self.device_state(caller, "NOT_INUSE")

    def _end_unbridged(self, ch: Channel, *, soft_cause: int | None, cause: int) -> None:
        """SoftHangupRequest and Hangup now, or when the channel's AGI session returns."""

        def teardown() -> None:
            if not ch.alive:
                return
            if soft_cause is not None:
                self.soft_hangup_request(ch, soft_cause)
            self._finish(ch, cause)

        link = self._agi_links.get(ch)
        if link is not None:
            self._after_agi[ch] = teardown
            link.channel_hung_up()
            return
        teardown()

    def _bye_in_bridge(
        self, ch: Channel, peer: Channel, cause: int, tech_cause: int | None
    ) -> None:
        bridge = ch.bridge
        assert bridge is not None
        # The leaving channel's RTP statistics, each mirrored on the peer as ...BRIDGED (02b).
        for name, value in tpl.RTP_QOS_VARIABLES:
            if ch.tech is Tech.PJSIP:
                self.varset(ch, name, value)
            if peer.tech is Tech.PJSIP:
                self.varset(peer, name + "BRIDGED", value)
        self.hangup_request(ch, cause, tech_cause)
        self._clear_bridge_peers(ch, peer)
        if ch.dial_owner or not peer.dial_owner:
            # 02b: the caller (who ran Dial) hangs up.
            self._leave(ch)
            self._dial_end_vars(ch)
            self.soft_hangup_request(ch, tpl.SOFTHANGUP_APPUNLOAD)
            self._end_spying(ch)
            self.hangup_event(ch, cause, tech_cause)
            self._gone(ch)
            self.device_state(ch, "NOT_INUSE")
            self._leave(peer)
            self._destroy(bridge)
            self._agent_complete(ch, peer, "caller")
            self._finish(peer, 16)
        else:
            # 08a: the dialled leg hangs up.
            self._leave(ch)
            self._leave(peer)
            self._end_spying(ch)
            self.hangup_event(ch, cause, tech_cause)
            self._gone(ch)
            self._destroy(bridge)
            self._agent_complete(peer, ch, "agent")
            self._dial_end_vars(peer)
            self.soft_hangup_request(peer, tpl.SOFTHANGUP_APPUNLOAD)
            self.device_state(ch, "NOT_INUSE")
            self._finish(peer, 16)

    def rtp_timeout(self, ch: Channel) -> None:
        """The far end vanished and rtp_timeout fired (08b): SoftHangupRequest Cause 1, the
        dead leg ends with cause 44, a bridged survivor with 16 like a normal hang-up."""
        if not ch.alive:
            return
        peer = ch.peer()
        self.soft_hangup_request(ch, tpl.SOFTHANGUP_DEV)
        if peer is None:
            self._finish(ch, 44)
            return
        bridge = ch.bridge
        assert bridge is not None
        self._clear_bridge_peers(ch, peer)
        self._leave(ch)
        if ch.tech is Tech.PJSIP and ch.answered_at is not None:
            name, value = tpl.RTP_QOS_VARIABLES[0]
            self.varset(ch, name, value)
        owner, dialled = (ch, peer) if ch.dial_owner else (peer, ch)
        if ch is dialled:
            # 08b, exactly.
            self._leave(peer)
            self._destroy(bridge)
            self._agent_complete(owner, dialled, "agent")
            self._dial_end_vars(owner)
            self.soft_hangup_request(owner, tpl.SOFTHANGUP_APPUNLOAD)
            self._end_spying(ch)
            self.qos(ch, start=1)
            self.hangup_event(ch, 44)
            self._gone(ch)
            self.qos(peer)
            self.device_state(ch, "NOT_INUSE")
            self._end_spying(peer)
            self.hangup_event(peer, 16)
            self._gone(peer)
            self.device_state(peer, "NOT_INUSE")
            return
        # The Dial owner died (not captured): it leaves first, as in 02b.
        self._dial_end_vars(ch)
        self._end_spying(ch)
        self.qos(ch, start=1)
        self.hangup_event(ch, 44)
        self._gone(ch)
        self.device_state(ch, "NOT_INUSE")
        self._leave(peer)
        self._destroy(bridge)
        self._agent_complete(ch, peer, "caller")
        self._finish(peer, 16)

    def ami_hangup(self, ch: Channel, cause: int | None) -> None:
        """The AMI Hangup action. Bridged: 08c (both legs end, cause 16 unless given).
        Not bridged: 01c/03b (SoftHangupRequest 16, Hangup with the given cause or 0)."""
        if not ch.alive:
            return
        if ch.tech is Tech.LOCAL:
            ch.hangup_requested = True
            self._local_hangup(ch, soft=True)
            return
        peer = ch.peer()
        if peer is None:
            if ch.hangup_requested and ch in self._after_agi:
                return
            ch.hangup_requested = True
            self.soft_hangup_request(ch, tpl.SOFTHANGUP_APPUNLOAD)
            self._end_unbridged(ch, soft_cause=None, cause=0 if cause is None else cause)
            return
        bridge = ch.bridge
        assert bridge is not None
        self._clear_bridge_peers(ch, peer)
        final_cause = 16 if cause is None else cause
        if ch.dial_owner or not peer.dial_owner:
            # 08c, exactly.
            self._leave(ch)
            self._dial_end_vars(ch)
            self._leave(peer)
            self.soft_hangup_request(ch, tpl.SOFTHANGUP_APPUNLOAD)
            self._destroy(bridge)
            self._agent_complete(ch, peer, "caller")
            self._end_spying(peer)
            self.qos(peer)
            self.hangup_event(peer, 16)
            self._gone(peer)
            self._end_spying(ch)
            self.qos(ch)
            self.device_state(peer, "NOT_INUSE")
            self.hangup_event(ch, final_cause)
            self._gone(ch)
            self.device_state(ch, "NOT_INUSE")
            return
        # The dialled leg hung up from AMI (not captured): as 08a without the BYE's events.
        self._leave(ch)
        self._leave(peer)
        self._destroy(bridge)
        self._agent_complete(peer, ch, "agent")
        self._finish(ch, final_cause)
        self._dial_end_vars(peer)
        self.soft_hangup_request(peer, tpl.SOFTHANGUP_APPUNLOAD)
        self._finish(peer, 16)

    def dialplan_hangup(self, ch: Channel, cause: int = 16) -> None:
        """The dialplan's Hangup() (02a, 07a): SoftHangupRequest 16, Hangup with the cause."""
        if not ch.alive:
            return
        peer = ch.peer()
        if peer is not None:
            self.ami_hangup(ch, cause)
            return
        ch.hangup_requested = True
        self.soft_hangup_request(ch, tpl.SOFTHANGUP_APPUNLOAD)
        self._finish(ch, cause)

    def redirect(self, ch: Channel, context: str, exten: str, priority: int) -> None:
        """AMI Redirect (not captured): the channel leaves its bridge, whose other party is
        hung up as when a Dial ends, and runs the new extension (after its AGI returns,
        which is told with ``HANGUP`` as Asterisk does for an async goto)."""
        peer = ch.peer()
        if peer is not None and ch.bridge is not None:
            bridge = ch.bridge
            self._clear_bridge_peers(ch, peer)
            self._leave(ch)
            self._leave(peer)
            self._destroy(bridge)
            if peer.dial_owner:
                self._dial_end_vars(peer)
                self.soft_hangup_request(peer, tpl.SOFTHANGUP_APPUNLOAD)
            self.finish(peer, 16)
        ch.dial_owner = False
        ch.dial_peer = None
        ch.dialplan_generation += 1
        self.goto(ch, context, exten, priority)
        link = self._agi_links.get(ch)
        if link is not None:
            self._after_agi[ch] = lambda: self.start_dialplan(ch)
            link.channel_hung_up()
            return
        task = self._dialplan_tasks.pop(ch, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.start_dialplan(ch)

    def application_ended(self, ch: Channel) -> None:
        """An originated channel's Application returned (07f): Hangup cause 0, no request."""
        if not ch.alive:
            return
        if ch.tech is Tech.LOCAL:
            self._local_hangup(ch)
            return
        self._finish(ch, 0)

    # ------------------------------------------------------------------ AGI bookkeeping

    def agi_started(self, ch: Channel, link: AgiLink) -> None:
        self._agi_links[ch] = link

    def defer_until_agi_end(self, ch: Channel, action: Callable[[], None]) -> None:
        """Run ``action`` when the channel's FastAGI session returns (a hang-up waits)."""
        self._after_agi[ch] = action

    def finish(self, ch: Channel, cause: int, tech_cause: int | None = None) -> None:
        if ch.alive:
            self._finish(ch, cause, tech_cause)

    def agi_finished(self, ch: Channel) -> str:
        """The FastAGI connection closed: AGISTATUS, then a pending hang-up completes."""
        self._agi_links.pop(ch, None)
        status = "FAILURE" if ch.hangup_requested else "SUCCESS"
        if ch.alive:
            self.varset(ch, "AGISTATUS", status)
        teardown = self._after_agi.pop(ch, None)
        if teardown is not None:
            teardown()
        return status

    def agi_link(self, ch: Channel) -> AgiLink | None:
        return self._agi_links.get(ch)

    # ------------------------------------------------------------------ sounds, AMD

    def sound_length(self, name: str) -> float | None:
        """Seconds a sound plays (before time_scale), or None if the file does not exist."""
        if name in self.missing_sounds:
            return None
        return self.sound_lengths.get(name, self.default_sound_s)

    async def playback(self, ch: Channel, files: str) -> bool:
        """Playback(): every '&'-separated file in turn; PLAYBACKSTATUS as it ends."""
        ok = True
        for name in files.split("&"):
            length = self.sound_length(name.split(",")[0])
            if length is None:
                ok = False
                break
            await self.sleep(self.scaled(length))
            if not ch.alive:
                return False
        if ch.alive:
            self.varset(ch, "PLAYBACKSTATUS", "SUCCESS" if ok else "FAILED")
        return ok

    async def run_amd(self, ch: Channel) -> AmdVerdict:
        """AMD(): the scripted verdict after its delay, as two VarSets in the same ms (06*)."""
        verdict = ch.amd or self.default_amd
        await self.sleep(verdict.after_s)
        if ch.alive:
            self.varset(ch, "AMDSTATUS", verdict.status)
            self.varset(ch, "AMDCAUSE", verdict.cause)
        return verdict

    # ------------------------------------------------------------------ dialplan

    def start_dialplan(self, ch: Channel) -> None:
        task = self.spawn(self.run_dialplan(ch), name=f"dialplan {ch.name}")
        self._dialplan_tasks[ch] = task

    async def run_dialplan(self, ch: Channel) -> None:
        """Run the channel's extension from its current priority; falling off the end hangs
        up like Hangup(). An extension the dialplan does not have leaves the channel idle."""
        steps = self.dialplan.get(ch.context, ch.exten)
        if steps is None:
            return
        generation = ch.dialplan_generation
        index = max(0, ch.priority - 1) if ch.dialplan_steps == 0 else ch.priority
        for step in steps[index:]:
            if not ch.alive or ch.hangup_requested or ch.dialplan_generation != generation:
                return
            data = substitute(step.data, None, ch)
            if step.application.lower() not in SELF_ANNOUNCING:
                self.newexten(ch, step.application, data)
            carry_on = await self.run_application(ch, step.application, data)
            if not carry_on:
                return
        if (
            ch.alive
            and not ch.hangup_requested
            and ch.bridge is None
            and ch.dialplan_generation == generation
        ):
            self.dialplan_hangup(ch)

    async def run_application(self, ch: Channel, application: str, data: str) -> bool:
        """One dialplan application; False when the channel's dialplan must stop here.
        NoOp, Verbose, Return and applications the fake does not model do nothing."""
        handler = self._applications().get(application.lower())
        if handler is None:
            return True
        return await handler(ch, data, separate_args(data))

    def _applications(self) -> dict[str, _Application]:
        return {
            "answer": self._app_answer,
            "playback": self._app_playback,
            "wait": self._app_wait,
            "hangup": self._app_hangup,
            "amd": self._app_amd,
            "set": self._app_set,
            "userevent": self._app_user_event,
            "chanspy": self._app_chanspy,
            "agi": self._app_agi,
            "dial": self._app_dial,
            "queue": self._app_queue,
            "audiosocket": self._app_audiosocket,
            "tryexec": self._app_tryexec,
            "execif": self._app_execif,
        }

    async def _app_answer(self, ch: Channel, _data: str, _args: list[str]) -> bool:
        if not ch.is_up:
            self.newstate(ch, STATE_UP)
            self.device_state(ch, "INUSE")
        return True

    async def _app_playback(self, ch: Channel, _data: str, args: list[str]) -> bool:
        await self.playback(ch, args[0] if args else "")
        return True

    async def _app_wait(self, _ch: Channel, _data: str, args: list[str]) -> bool:
        await self.sleep(self.scaled(float(args[0] or 0) if args else 0.0))
        return True

    async def _app_hangup(self, ch: Channel, _data: str, args: list[str]) -> bool:
        self.dialplan_hangup(ch, int(args[0]) if args and args[0] else 16)
        return False

    async def _app_amd(self, ch: Channel, _data: str, _args: list[str]) -> bool:
        await self.run_amd(ch)
        return True

    async def _app_set(self, ch: Channel, data: str, _args: list[str]) -> bool:
        name, _, value = data.partition("=")
        self.set_variable(ch, name, value)
        return True

    async def audiosocket(self, ch: Channel, args: list[str]) -> int:
        """AudioSocket(<uuid>,<host:port>) (app_audiosocket.c): -1 unless the channel is up
        and the service answers; 0 once the service sends its hang-up frame or closes."""
        if self.audiosocket_launcher is None or not ch.is_up or len(args) < 2:
            return -1
        return await self.audiosocket_launcher(ch, args[0], args[1])

    async def _app_audiosocket(self, ch: Channel, _data: str, args: list[str]) -> bool:
        if await self.audiosocket(ch, args) != 0:
            self.dialplan_hangup(ch)  # an application returning -1 ends the channel
            return False
        return True

    async def _app_tryexec(self, ch: Channel, data: str, _args: list[str]) -> bool:
        """TryExec(<app>(<args>)) (app_exec.c): runs the application, sets TRYSTATUS
        (SUCCESS, FAILED, NOAPP) and always carries on, whatever the application returned."""
        application, inner = _nested_application(data)
        if application.lower() == "audiosocket":
            ok = await self.audiosocket(ch, separate_args(inner)) == 0
            status = "SUCCESS" if ok else "FAILED"
        elif application.lower() in self._applications():
            await self.run_application(ch, application, inner)
            status = "SUCCESS"
        else:
            status = "NOAPP"
        if ch.alive:
            self.varset(ch, "TRYSTATUS", status)
        return ch.alive and not ch.hangup_requested

    async def _app_execif(self, ch: Channel, data: str, _args: list[str]) -> bool:
        """ExecIf($[<expr>]?<app>(<args>)[:<app>(<args>)]) (app_exec.c), with the one kind of
        expression the shipped dialplans use: two quoted strings compared with = or !=."""
        expression, _, branches = data.partition("?")
        when_true, when_false = _split_outside_parentheses(branches, ":")
        chosen = when_true if _condition(expression) else when_false
        if not chosen:
            return True
        application, inner = _nested_application(chosen)
        return await self.run_application(ch, application, inner)

    async def _app_user_event(self, ch: Channel, _data: str, args: list[str]) -> bool:
        fields = {}
        for item in args[1:]:
            key, _, value = item.partition(":")
            fields[key.strip()] = value.strip()
        self.user_event(args[0] if args else "", fields, ch)
        return True

    async def _app_chanspy(self, ch: Channel, _data: str, args: list[str]) -> bool:
        await self.chanspy(ch, args[0] if args else "", args[1] if len(args) > 1 else "")
        return True

    async def _app_agi(self, ch: Channel, _data: str, args: list[str]) -> bool:
        await self.run_agi(ch, args[0] if args else "", tuple(args[1:]))
        return ch.alive and not ch.hangup_requested

    async def _app_dial(self, ch: Channel, _data: str, args: list[str]) -> bool:
        return await self._dial_application(ch, "dial", args)

    async def _app_queue(self, ch: Channel, _data: str, args: list[str]) -> bool:
        return await self._dial_application(ch, "queue", args)

    async def _dial_application(self, ch: Channel, app: str, args: list[str]) -> bool:
        """Dial(PJSIP/x[,timeout[,options]]) or Queue(name) from the dialplan."""
        # dial() announces the step itself (its Newexten), so the dialplan runner does not.
        if app == "queue":
            members = self.queues.get(args[0] if args else "", [])
            if not members:
                self.newexten(ch, "Queue", ",".join(args))
                self.varset(ch, "QUEUESTATUS", "JOINEMPTY")
                return True
            member = members[0]
            await self.dial(ch, member.endpoint, queue=args[0], member_name=member.member_name)
            return False
        target = args[0] if args else ""
        endpoint = target.split("/", 1)[1] if "/" in target else target
        await self.dial(ch, endpoint, music_class=None)
        return False

    async def run_agi(self, ch: Channel, url: str, args: tuple[str, ...]) -> str:
        if self.agi_launcher is None:
            if ch.alive:
                self.varset(ch, "AGISTATUS", "FAILURE")
            return "FAILURE"
        return await self.agi_launcher(ch, url, args)

    # ------------------------------------------------------------------ ChanSpy

    async def chanspy(self, spy: Channel, target_name: str, options: str) -> None:
        """ChanSpy(<channel>,<options>) (04a): attaches after a moment; attaching stops the
        target's music on hold for good. Runs until the spy goes away, or with option E
        until the target does (without E ChanSpy would look for another channel: here the
        spy just stays until it is hung up)."""
        await self.sleep(self.scaled(self.spy_attach_s))
        target = self.find(target_name)
        if target is None or not target.alive or not spy.alive:
            return
        spy.spying_on = target
        target.spied_by.append(spy)
        if target.bridge is not None:
            target.bridge.native_allowed = False
            target.bridge.technology = "simple_bridge"
        self.emit(
            render(
                "ChanSpyStart",
                channels={"{Spyer}": spy.snapshot(), "{Spyee}": target.snapshot()},
            )
        )
        # 04a: the spy kills the held leg's music; the bridge reconfigures around it.
        moh_was_playing = target.moh_class_playing is not None
        if moh_was_playing:
            target.moh_class_playing = None
            self.ev("MusicOnHoldStop", target)
        self.renegotiate(target)
        self.renegotiate(target)
        if moh_was_playing:
            self.device_state(target, "INUSE")
        self.renegotiate(target)
        while spy.alive and spy.spying_on is target and target.alive:
            await self._wait_either(spy, target)
        if "E" not in options:
            await self.hangup_waiter(spy).wait()

    async def _wait_either(self, first: Channel, second: Channel) -> None:
        waits = [
            asyncio.ensure_future(self.hangup_waiter(first).wait()),
            asyncio.ensure_future(self.hangup_waiter(second).wait()),
        ]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    # ------------------------------------------------------------------ Local channels

    def _local_hangup(self, ch: Channel, *, soft: bool = False) -> None:
        """One half of a Local pair ends; the other half follows (04a). A FastAGI session
        running on either half is told at once (its current command returns -1, then the
        ``HANGUP`` line), as Asterisk interrupts an AGI command on a hung-up channel."""
        partner = ch.local_partner
        for half in (ch, partner):
            link = self._agi_links.get(half) if half is not None else None
            if link is not None:
                link.channel_hung_up()
        if soft:
            self.soft_hangup_request(ch, tpl.SOFTHANGUP_APPUNLOAD)
        if partner is not None and partner.alive:
            self.hangup_request(partner, 0)
        self._end_spying(ch)
        self.hangup_event(ch, 0)
        self._gone(ch)
        self.device_state(ch, "NOT_INUSE")
        if partner is not None and partner.alive:
            partner.hangup_requested = True
            self._end_spying(partner)
            self.soft_hangup_request(partner, tpl.SOFTHANGUP_APPUNLOAD)
            self.hangup_event(partner, 0)
            self._gone(partner)
            self.device_state(partner, "NOT_INUSE")

    # ------------------------------------------------------------------ Originate

    def dial_script(self, dial_string: str) -> DialScript:
        resource = dial_string.split("/", 1)[1] if "/" in dial_string else dial_string
        for key in (dial_string, resource, resource.split("@", 1)[0]):
            script = self.dial_scripts.get(key)
            if script is not None:
                return script
        if resource.split("@", 1)[0] in self.unknown_endpoints:
            return DialScript(DialOutcome.NO_SUCH_ENDPOINT)
        return self.default_dial_script

    def start_originate(self, req: OriginateRequest) -> OriginatedCall:
        """Run one Originate in the background (07a-07f, 04a); ``done`` is set when its
        OriginateResponse has been sent."""
        record = OriginatedCall(request=req)
        self.originated.append(record)
        self.spawn(self._originate(req, record), name=f"originate {req.dial_string}")
        return record

    async def _originate(self, req: OriginateRequest, record: OriginatedCall) -> None:
        try:
            if req.dial_string.lower().startswith("local/"):
                await self._originate_local(req, record)
            else:
                await self._originate_pjsip(req, record)
        finally:
            record.done.set()
            self.changed()

    def _originate_response(
        self,
        record: OriginatedCall,
        *,
        success: bool,
        channel: str,
        uniqueid: str,
        reason: int,
    ) -> None:
        """OriginateResponse: the outcome is known (``record.done`` is set now, the call
        itself may go on for long)."""
        req = record.request
        values = {
            "Response": "Success" if success else "Failure",
            "Channel": channel,
            "Reason": str(reason),
            "Uniqueid": uniqueid,
            "CallerIDNum": req.caller_num or "<unknown>",
            "CallerIDName": req.caller_name or "<unknown>",
        }
        if req.action_id is not None:
            values["ActionID"] = req.action_id
        if req.application is not None:
            layout = "OriginateResponse/app"
            values["Application"] = req.application
            values["Data"] = req.data
        else:
            layout = "OriginateResponse/exten"
            values["Context"] = req.context or ""
            values["Exten"] = req.exten or ""
        self.emit(render(layout, values=values))
        record.done.set()
        self.changed()

    def _outgoing(self, ch: Channel, req: OriginateRequest, app: str = "AppDial2") -> None:
        """The first events of a channel the switch places (07a, 04a)."""
        self.newexten(ch, app, "(Outgoing Line)")
        for name, value in req.variables:
            self.set_variable(ch, name, value)
        ch.caller_num = req.caller_num
        ch.caller_name = req.caller_name
        self.ev("NewCallerid", ch, **{"CID-CallingPres": tpl.CALLING_PRES_ALLOWED})
        ch.connected_num = req.caller_num
        ch.connected_name = req.caller_name
        self.ev("NewConnectedLine", ch)

    def _dest_event(self, layout: str, ch: Channel, **values: str) -> None:
        self.emit(render(layout, channels={"{Dest}": ch.snapshot()}, values=values))

    async def _originate_pjsip(self, req: OriginateRequest, record: OriginatedCall) -> None:
        resource = req.dial_string.split("/", 1)[1] if "/" in req.dial_string else ""
        script = self.dial_script(req.dial_string)
        unknown = "<unknown>" if req.channel_id is None else req.channel_id
        if script.outcome is DialOutcome.NO_SUCH_ENDPOINT or not resource:
            record.outcome = DialOutcome.NO_SUCH_ENDPOINT
            self._originate_response(
                record, success=False, channel=req.dial_string, uniqueid=unknown, reason=0
            )
            return
        # PJSIP/<number>@<endpoint> names the channel after the endpoint, like the real one.
        endpoint = resource.split("@", 1)[-1]
        ch = self.new_pjsip_channel(
            endpoint,
            state=STATE_DOWN,
            context="from-internal",
            exten="s",
            uniqueid=req.channel_id,
        )
        ch.amd = script.amd
        ch.dnid = resource.split("@", 1)[0]
        record.channel = ch
        self.newchannel(ch)
        self._outgoing(ch, req)
        self._dest_event("DialBegin", ch, DialString=resource)
        timeout_s = self.scaled(req.timeout_ms / 1000)
        rings = script.outcome is DialOutcome.NO_ANSWER or script.ring_s > 0
        if rings:
            self._dest_event("DialState", ch, DialStatus="RINGING")
            self.newstate(ch, STATE_RINGING)
            self.device_state(ch, "RINGING")
        ring_s = timeout_s if script.outcome is DialOutcome.NO_ANSWER else script.ring_s
        if ring_s >= timeout_s:
            await self.sleep(timeout_s)
            record.outcome = DialOutcome.NO_ANSWER
            self._originate_response(
                record, success=False, channel=req.dial_string, uniqueid=unknown, reason=3
            )
            self._finish(ch, 19, 480)
            return
        await self.sleep(ring_s)
        record.outcome = script.outcome
        if script.outcome in (DialOutcome.BUSY, DialOutcome.DECLINE):
            busy = script.outcome is DialOutcome.BUSY
            cause, tech_cause = (17, 486) if busy else (21, 603)
            self.hangup_request(ch, cause, tech_cause)
            # DialEnd before OriginateResponse as in 07c and 07f (07b had them swapped).
            self._dest_event("DialEnd", ch, DialStatus="BUSY" if busy else "NOANSWER")
            self._originate_response(
                record, success=False, channel=req.dial_string, uniqueid=unknown, reason=0
            )
            self.hangup_event(ch, cause, tech_cause)
            self._gone(ch)
            if rings:
                self.device_state(ch, "NOT_INUSE")
            return
        # "OriginateResponse (Success, Reason 4) and Newstate Up arrive in the same ms, in
        # either order": after DialEnd into a context (07a), before Newstate for an
        # Application (07f).
        if req.application is not None:
            self._originate_response(
                record, success=True, channel=ch.name, uniqueid=ch.uniqueid, reason=4
            )
        self.newstate(ch, STATE_UP)
        self._dest_event("DialEnd", ch, DialStatus="ANSWER")
        if req.application is None:
            self._originate_response(
                record, success=True, channel=ch.name, uniqueid=ch.uniqueid, reason=4
            )
        self.device_state(ch, "INUSE")
        await self._after_answer(ch, req)

    async def _after_answer(self, ch: Channel, req: OriginateRequest) -> None:
        """An answered originated channel runs its Application or its extension."""
        if req.application is not None:
            ch.application = req.application
            ch.app_data = req.data
            await self.run_application(ch, req.application, req.data)
            if req.application.lower() in FINITE_APPLICATIONS:
                self.application_ended(ch)
            return
        self.goto(ch, req.context or "default", req.exten or "s", req.priority)
        if self.dialplan.get(ch.context, ch.exten) is not None:
            self.start_dialplan(ch)
        elif ch.amd is not None:
            # The operator's dialplan is not known here; an endpoint scripted with an AMD
            # verdict behaves as if its context ran AMD() first (traces 06*).
            self.newexten(ch, "AMD", "")
            await self.run_amd(ch)

    async def _originate_local(self, req: OriginateRequest, record: OriginatedCall) -> None:
        """Local/<exten>@<context>[/n] (04a): two halves, ;2 runs the extension, ;1 the
        Originate's Application (or its own extension)."""
        target = req.dial_string.split("/", 1)[1]
        flags = ""
        if "/" in target:
            target, flags = target.split("/", 1)
        exten, _, context = target.partition("@")
        one, two = self._local_pair(req, exten, context or "default")
        record.channel = one
        self._announce_local(req, one, two, flags)
        steps = self.dialplan.get(two.context, two.exten)
        announced = self._local_first_steps(two, steps)
        self.newstate(one, STATE_UP)
        self._dest_event("DialEnd", one, DialStatus="ANSWER")
        self.device_state(one, "INUSE")
        record.outcome = DialOutcome.ANSWER
        self._originate_response(
            record, success=True, channel=one.name, uniqueid=one.uniqueid, reason=4
        )
        self.newstate(two, STATE_UP)
        self.device_state(two, "INUSE")
        if steps is not None and announced:
            self._dialplan_tasks[two] = self.spawn(
                self._local_second_half(two, steps, announced), name=f"dialplan {two.name}"
            )
        if req.application is not None:
            one.application = req.application
            one.app_data = req.data
            await self.run_application(one, req.application, req.data)
            if req.application.lower() in FINITE_APPLICATIONS:
                self.application_ended(one)
        elif req.context is not None:
            self.goto(one, req.context, req.exten or "s", req.priority)
            if self.dialplan.get(one.context, one.exten) is not None:
                self.start_dialplan(one)

    def _local_pair(
        self, req: OriginateRequest, exten: str, context: str
    ) -> tuple[Channel, Channel]:
        seq = next(self._local_seq)
        base = f"Local/{exten}@{context}-{seq:08x}"
        uid1 = req.channel_id or self._new_uniqueid()
        uid2 = req.other_channel_id or self._new_uniqueid()
        halves = []
        for suffix, uid, state in ((";1", uid1, STATE_DOWN), (";2", uid2, STATE_RING)):
            ch = Channel(
                name=base + suffix,
                tech=Tech.LOCAL,
                endpoint=f"{exten}@{context}",
                uniqueid=uid,
                linkedid=uid1,
                created_at=self.clock.now(),
                state=state,
                context=context,
                exten=exten,
            )
            self.channels[ch.name] = ch
            halves.append(ch)
        one, two = halves
        one.local_partner = two
        two.local_partner = one
        return one, two

    def _announce_local(
        self, req: OriginateRequest, one: Channel, two: Channel, flags: str
    ) -> None:
        """Newchannel x2 to DialBegin (04a)."""
        self.newchannel(one)
        self.newchannel(two)
        self._outgoing(one, req, app="AppDial2")
        for name, value in req.variables:
            self.set_variable(two, name, value)
        two.caller_num = one.caller_num
        two.caller_name = one.caller_name
        self.ev("NewCallerid", two, **{"CID-CallingPres": tpl.CALLING_PRES_ALLOWED})
        two.connected_num = one.caller_num
        two.connected_name = one.caller_name
        self.ev("NewConnectedLine", two)
        self.emit(
            render(
                "LocalBridge",
                channels={"{LocalOne}": one.snapshot(), "{LocalTwo}": two.snapshot()},
                values={
                    "Context": two.context,
                    "Exten": two.exten,
                    "LocalOptimization": "No" if "n" in flags else "Yes",
                },
            )
        )
        dial_string = f"{two.exten}@{two.context}" + (f"/{flags}" if flags else "")
        self._dest_event("DialBegin", one, DialString=dial_string)

    def _local_first_steps(self, two: Channel, steps: tuple[DialplanStep, ...] | None) -> int:
        """;2 announces its first steps before ;1 is answered (04a: NoOp, ChanSpy, then Up);
        returns how many were announced (the last one is not run yet)."""
        announced = 0
        for step in steps or ():
            data = substitute(step.data, None, two)
            self.newexten(two, step.application, data)
            announced += 1
            if step.application.lower() == "set":
                name, _, value = data.partition("=")
                self.set_variable(two, name, value)
            elif step.application.lower() not in ("noop", "verbose"):
                break
        return announced

    async def _local_second_half(
        self, two: Channel, steps: tuple[DialplanStep, ...], already_announced: int
    ) -> None:
        """Carry on ;2's extension from the step whose Newexten was already sent."""
        current = steps[already_announced - 1]
        data = substitute(current.data, None, two)
        carry_on = await self.run_application(two, current.application, data)
        if not carry_on or not two.alive:
            return
        for step in steps[already_announced:]:
            if not two.alive or two.hangup_requested:
                return
            data = substitute(step.data, None, two)
            if step.application.lower() not in SELF_ANNOUNCING:
                self.newexten(two, step.application, data)
            if not await self.run_application(two, step.application, data):
                return
        if two.alive:
            self._local_hangup(two)


_CONDITION = re.compile(r'^\$\[\s*"([^"]*)"\s*(!=|=)\s*"([^"]*)"\s*\]$')


def _condition(expression: str) -> bool:
    """``$["a" = "b"]`` / ``$["a" != "b"]`` after substitution; nothing else is modelled."""
    match = _CONDITION.match(expression.strip())
    if match is None:
        msg = f'the fake evaluates only $["a" = "b"] and !=, not {expression!r}'
        raise ValueError(msg)
    left, operator, right = match.groups()
    return (left == right) is (operator == "=")


def _split_outside_parentheses(text: str, delimiter: str) -> tuple[str, str]:
    """Split at the first ``delimiter`` outside parentheses (``host:port`` inside stays)."""
    depth = 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == delimiter and depth == 0:
            return text[:index], text[index + 1 :]
    return text, ""


def _nested_application(text: str) -> tuple[str, str]:
    """``App(a,b)`` -> ("App", "a,b"), as ExecIf and TryExec take their application apart."""
    name, _, rest = text.partition("(")
    end = rest.rfind(")")
    return name.strip(), rest[:end] if end >= 0 else rest

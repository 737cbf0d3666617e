"""The lab's FreeSWITCH: ``LabPbx``/``LabLeg`` (``pbx_agent.lab.drivers``) on the fake
FreeSWITCH, so every PBX-neutral scenario runs on it too (``pbx-agent lab --pbx freeswitch``).

What a real FreeSWITCH would do, and how it is imitated here:

- An agent answers: the caller's leg runs ``bridge`` to the agent's phone (its variables
  ask for talk events) and ``mod_callcenter`` says ``bridge-agent-start`` with the queue.
- Speech (trace 04): ``TALK`` on the leg the speech is sent to, a ``NOTALK`` one 0.8 s period
  after the last ``TALK``, followed 40 ms later by ``TALK`` while the speech goes on: the
  daemon must debounce it exactly as on the real switch, and cannot know where in the last
  period the speech ended.
- Feature codes: the agent's ``bind_meta_app`` runs ``event pbx_agent_feature=<name>`` on the
  agent's channel: a ``CHANNEL_APPLICATION`` event.
- The shipped dialplan (``dialplan/freeswitch/pbx-agent-standards.xml``) at the extensions
  the daemon transfers legs to: ``pbxagent_linger`` and ``pbxagent_callback`` bridge the leg
  to a *listener* (a helper leg marked ``pbx_agent_helper=listen``), so that the switch's
  talk detection hears the lone party; ``pbxagent_requeue`` and
  ``pbxagent_callback_connect`` bridge it to the next member of the queue; a scripted callee
  speaks (and a machine beeps, ``avmd::beep``) once bridged to the listener.
  ``pbxagent_callback_audio`` parks the leg: the daemon's ``unicast`` command then streams the
  scripted callee's audio (the same synthetic voices as the fake Asterisk's AudioSocket
  stream: "Алло?", the same over noise and voices behind, a greeting and its beep).
- A dialplan hook: the caller's channel reaches ``socket 127.0.0.1:<port> async full`` with
  ``pbx_agent_hook`` and its ``pbx_agent_*`` parameters set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from pbx_agent.policies.callbacks import FREESWITCH_CAUSES
from pbx_agent.testing.audiosocket_client import CalleeVoice, callee_audio
from pbx_agent.testing.fake_freeswitch import (
    FakeFreeSwitch,
    OriginateOutcome,
    parse_dial_string,
    split_arguments,
)
from pbx_agent.testing.fake_freeswitch_model import FakeChannel

# The VAD's period during continuous speech and the delays around it (trace 04).
VAD_PERIOD_S = 0.8
VAD_BLIP_S = 0.04
# The bridge of pbxagent_linger and pbxagent_callback in dialplan/freeswitch/
# pbx-agent-standards.xml, word for word (a test checks they agree).
LISTENER_DIAL = (
    "{pbx_agent_helper=listen,sip_h_X-PbxAgent-Helper=listen,fire_talk_events=true,"
    "fire_not_talk_events=true,ignore_early_media=true,originate_timeout=5}"
    "sofia/pbxagent/pbxagent_listen@127.0.0.1:5097"
)
AGENT_DIAL = "{fire_talk_events=true,fire_not_talk_events=true}sofia/internal/%s@127.0.0.1"
HOOK_TIMEOUT_S = 60.0
_OUTCOMES = {
    "answer": OriginateOutcome.ANSWER,
    "busy": OriginateOutcome.BUSY,
    "decline": OriginateOutcome.REJECT,
    "rejected": OriginateOutcome.REJECT,
    "no_answer": OriginateOutcome.NO_ANSWER,
    "failed": OriginateOutcome.UNREACHABLE,
}
_CAUSE_NAMES = {number: name for name, number in reversed(list(FREESWITCH_CAUSES.items()))}


@dataclass(frozen=True, slots=True)
class _Member:
    endpoint: str
    name: str


class FreeswitchLeg:
    def __init__(self, pbx: FreeswitchLabPbx, channel: FakeChannel) -> None:
        self._pbx = pbx
        self.channel = channel

    @property
    def id(self) -> str:
        return self.channel.uuid

    @property
    def alive(self) -> bool:
        return self.channel.alive

    async def answer(self) -> None:
        fake = self._pbx.fake
        if not self.channel.answered:
            fake.answer(self.channel)
            fake.model.park(self.channel)

    async def connect_agent(
        self, endpoint: str, *, queue: str | None = None, member_name: str = ""
    ) -> FreeswitchLeg:
        agent = await self._pbx.bridge_to_agent(self.channel, _Member(endpoint, member_name), queue)
        return FreeswitchLeg(self._pbx, agent)

    async def hold(self, by: object) -> None:
        assert isinstance(by, FreeswitchLeg)
        self._pbx.fake.hold(by.channel)

    async def unhold(self, by: object) -> None:
        assert isinstance(by, FreeswitchLeg)
        self._pbx.fake.unhold(by.channel)

    async def talk(self, seconds: float) -> None:
        """Speak for ``seconds``; the VAD reports it with its 0.8 s blips (trace 04)."""
        await speak(self._pbx.fake, self.channel, seconds)

    async def dtmf(self, digits: str) -> None:
        for digit in digits:
            self._pbx.fake.dtmf(self.channel, digit)
            await asyncio.sleep(0.1)

    async def hangup(self, cause: int = 16) -> None:
        name = _CAUSE_NAMES.get(cause, "NORMAL_CLEARING")
        self._pbx.fake.hangup(self.channel, name, disposition="recv_bye")

    async def die(self) -> None:
        self._pbx.fake.die(self.channel, media_timeout=True)

    async def feature(self, name: str) -> None:
        self._pbx.fake.application_event(self.channel, [("pbx_agent_feature", name)])

    async def run_hook(self, hook: str, params: Mapping[str, str] | None = None) -> dict[str, str]:
        channel = self.channel
        channel.variables["pbx_agent_hook"] = hook
        for name, value in (params or {}).items():
            channel.variables[f"pbx_agent_{name}"] = value
        before = dict(channel.variables)
        call = await self._pbx.fake.connect_socket(
            channel, self._pbx.outbound_host, self._pbx.outbound_port
        )
        await call.wait_finished(HOOK_TIMEOUT_S)
        return {k: v for k, v in channel.variables.items() if before.get(k) != v}


async def speak(fake: FakeFreeSwitch, channel: FakeChannel, seconds: float) -> None:
    """``channel``'s party speaks for ``seconds`` (returns when the speech ends).

    As FreeSWITCH's detector does (trace 04): ``TALK`` at the onset; ``NOTALK`` one period
    (0.8 s) after the last ``TALK``, and ``TALK`` again 40 ms later if the speech goes on; so
    the final ``NOTALK`` comes 0-0.8 s after the speech ends, one period after the last TALK.
    """
    if not channel.alive:
        return
    fake.talk(channel, talking=True)
    last_talk = 0.0
    elapsed = 0.0
    while last_talk + VAD_PERIOD_S < seconds:
        await asyncio.sleep(last_talk + VAD_PERIOD_S - elapsed)
        elapsed = last_talk + VAD_PERIOD_S
        if not channel.alive:
            return
        fake.talk(channel, talking=False)
        await asyncio.sleep(VAD_BLIP_S)
        elapsed += VAD_BLIP_S
        if not channel.alive:
            return
        fake.talk(channel, talking=True)
        last_talk = elapsed
    await asyncio.sleep(max(0.0, seconds - elapsed))

    def final_notalk() -> None:
        if channel.alive:
            fake.talk(channel, talking=False)

    fake.later(max(0.0, last_talk + VAD_PERIOD_S - seconds), final_notalk)


class FreeswitchLabPbx:
    name = "freeswitch"

    def __init__(self, fake: FakeFreeSwitch, outbound_host: str, outbound_port: int) -> None:
        self.fake = fake
        self.outbound_host = outbound_host
        self.outbound_port = outbound_port
        self.queues: dict[str, list[_Member]] = {}
        self.voices: dict[str, str] = {}
        fake.extensions.update(
            {
                "pbxagent_linger": self._linger,
                "pbxagent_requeue": self._requeue,
                "pbxagent_callback": self._callback,
                "pbxagent_callback_audio": self._callback_audio,
                "pbxagent_callback_connect": self._callback_connect,
            }
        )

    async def inbound_call(
        self, caller: str, caller_name: str = "", *, exten: str = "100"
    ) -> FreeswitchLeg:
        channel = self.fake.inbound_call(caller, caller_name, exten, answer=False)
        return FreeswitchLeg(self, channel)

    def script_callee(
        self,
        number: str,
        outcome: str,
        *,
        machine: bool | None = None,
        ring_s: float = 0.0,
        voice: str | None = None,
    ) -> None:
        del ring_s  # the fake rings every leg alike; no_answer rings until originate_timeout
        self.fake.set_originate_outcome(number.lstrip("+"), _OUTCOMES.get(outcome, outcome))
        if voice is None and machine is not None:
            voice = "machine" if machine else "human"
        if voice is not None:
            self.voices[number.lstrip("+")] = voice
            if voice in set(CalleeVoice):
                self.fake.set_callee_audio(number.lstrip("+"), callee_audio(CalleeVoice(voice)))

    def originated_numbers(self) -> list[str]:
        numbers = []
        for command in self.fake.commands_for("bgapi"):
            name, _, rest = command.args.partition(" ")
            if name != "originate":
                continue
            argv = split_arguments(rest)
            if argv:
                numbers.append(parse_dial_string(argv[0])[1])
        return numbers

    async def cut_connection(self) -> None:
        self.fake.drop_connections()

    def send_malformed_frame(self) -> None:
        body = b"Event-Name: CHANNEL_CREATE\nthis line has no colon\n\n"
        head = f"Content-Length: {len(body)}\nContent-Type: text/event-plain\n\n".encode()
        self.fake.send_raw(head + body)

    def add_queue_member(self, queue: str, endpoint: str, name: str = "") -> None:
        self.queues.setdefault(queue, []).append(_Member(endpoint, name or endpoint))

    def agent_bridged_to(self, endpoint: str, uuid: str) -> bool:
        """The agent's phone (``endpoint``, e.g. ``agent-1001``) is bridged with leg ``uuid``."""
        return any(
            ch.alive and f"/{endpoint}@" in ch.name and ch.peer is not None and ch.peer.uuid == uuid
            for ch in self.fake.model.channels.values()
        )

    def leg_gone(self, uuid: str) -> bool:
        channel = self.fake.channel(uuid)
        return channel is None or not channel.alive

    # -- the shipped dialplan, imitated --------------------------------------------------

    async def bridge_to_agent(
        self, channel: FakeChannel, member: _Member, queue: str | None
    ) -> FakeChannel:
        agent = await self.fake.bridge(channel, AGENT_DIAL % member.endpoint)
        if agent is None:
            msg = f"the agent {member.endpoint} did not answer"
            raise AssertionError(msg)
        if queue:
            self.fake.callcenter_bridge_start(
                channel, agent, queue=queue, agent_name=member.name or member.endpoint
            )
        return agent

    def _next_member(self, queue: str) -> _Member:
        members = self.queues.get(queue) or [_Member("agent-1001", "Alice")]
        member = members.pop(0)
        members.append(member)
        return member

    async def _linger(self, channel: FakeChannel) -> None:
        await self.fake.bridge(channel, LISTENER_DIAL)

    async def _requeue(self, channel: FakeChannel) -> None:
        queue = channel.variables.get("PBXAGENT_REQUEUE_QUEUE") or "support"
        await self.bridge_to_agent(channel, self._next_member(queue), queue)

    async def _callback(self, channel: FakeChannel) -> None:
        self.fake.run_app(channel, "avmd_start", "", "avmd-start")
        listener = await self.fake.bridge(channel, LISTENER_DIAL)
        if listener is None:
            return
        voice = self.voices.get(channel.caller_number) or self.voices.get(channel.destination)
        await asyncio.sleep(0.3)
        if voice in ("human", "noisy_human"):
            # Talk events carry no level: line noise and voices behind a person are not
            # played here (on a real FreeSWITCH they keep "talking" on; docs/amd.md).
            await speak(self.fake, channel, 0.8)  # "Алло?"
        elif voice == "machine":
            await speak(self.fake, channel, 4.5)  # the greeting
            await asyncio.sleep(0.5)
            if channel.alive:
                self.fake.avmd_beep(channel)

    async def _callback_audio(self, channel: FakeChannel) -> None:
        """sched_transfer, then park: the fake parks every leg originated into an extension
        before its script runs, and a parked leg streams once the daemon asks for it."""
        del channel

    async def _callback_connect(self, channel: FakeChannel) -> None:
        queue = channel.variables.get("pbx_agent_callback_target") or "support"
        await self.bridge_to_agent(channel, self._next_member(queue), queue)


__all__ = ["FreeswitchLabPbx", "FreeswitchLeg", "speak"]

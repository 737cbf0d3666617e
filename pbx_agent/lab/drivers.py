"""What a lab scenario can make a (fake) PBX do, whichever PBX it is.

Scenarios are written once against ``LabPbx``/``LabLeg`` and run on every fake PBX that
implements them (``pbx-agent lab --pbx asterisk|freeswitch``). Each method produces the
real event sequence of that switch (the fakes are built from captured transcripts).
``AsteriskLabPbx`` is below; ``FreeswitchLabPbx`` is in ``pbx_agent.lab.freeswitch_driver``
(re-exported here), with the shipped FreeSWITCH dialplan it imitates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pbx_agent.lab.freeswitch_driver import FreeswitchLabPbx, FreeswitchLeg
from pbx_agent.testing.audiosocket_client import CalleeVoice
from pbx_agent.testing.fake_asterisk import AmdVerdict, DialOutcome, DialScript, FakeAsterisk, Leg


class LabLeg(Protocol):
    @property
    def id(self) -> str:
        """The leg id the daemon sees (Uniqueid / Unique-ID)."""
        ...

    @property
    def alive(self) -> bool: ...

    async def answer(self) -> None: ...
    async def connect_agent(
        self, endpoint: str, *, queue: str | None = None, member_name: str = ""
    ) -> LabLeg: ...
    async def hold(self, by: LabLeg) -> None:
        """``by`` puts this leg on hold."""
        ...

    async def unhold(self, by: LabLeg) -> None: ...
    async def talk(self, seconds: float) -> None:
        """The party behind this leg speaks for ``seconds`` (returns when the speech ends)."""
        ...

    async def dtmf(self, digits: str) -> None: ...
    async def hangup(self, cause: int = 16) -> None: ...
    async def die(self) -> None:
        """The device vanishes; the switch notices through its media timeout."""
        ...

    async def feature(self, name: str) -> None:
        """The agent behind this leg presses the feature code ``name``."""
        ...

    async def run_hook(self, hook: str, params: Mapping[str, str] | None = None) -> dict[str, str]:
        """The dialplan calls the daemon's hook on this leg; returns the variables it set."""
        ...


class LabPbx(Protocol):
    name: str

    async def inbound_call(
        self, caller: str, caller_name: str = "", *, exten: str = "100"
    ) -> LabLeg: ...

    def script_callee(
        self,
        number: str,
        outcome: str,
        *,
        machine: bool | None = None,
        ring_s: float = 0.0,
        voice: str | None = None,
    ) -> None:
        """How ``number`` answers when the daemon calls it: ``answer``, ``busy``, ``decline``,
        ``no_answer``; ``machine`` decides the machine-detection verdict of an answer;
        ``voice`` who is heard (``human``, ``noisy_human``, ``machine``, ``silence``;
        default: from ``machine``), by whichever detector the daemon uses."""
        ...

    def originated_numbers(self) -> list[str]:
        """The numbers the daemon has asked the switch to call, in order."""
        ...

    async def cut_connection(self) -> None:
        """Drop the daemon's event connection (a network cut); the switch keeps its calls."""
        ...

    def send_malformed_frame(self) -> None:
        """Write a frame that breaks the wire protocol to the daemon's event connection."""
        ...


class AsteriskLeg:
    def __init__(self, pbx: AsteriskLabPbx, leg: Leg) -> None:
        self._pbx = pbx
        self.leg = leg

    @property
    def id(self) -> str:
        return self.leg.uniqueid

    @property
    def alive(self) -> bool:
        return self.leg.alive

    async def answer(self) -> None:
        await self.leg.answer()

    async def connect_agent(
        self, endpoint: str, *, queue: str | None = None, member_name: str = ""
    ) -> AsteriskLeg:
        agent = await self.leg.connect_agent(endpoint, queue=queue, member_name=member_name)
        return AsteriskLeg(self._pbx, agent)

    async def hold(self, by: LabLeg) -> None:
        assert isinstance(by, AsteriskLeg)
        await self.leg.hold(by=by.leg)

    async def unhold(self, by: LabLeg) -> None:
        assert isinstance(by, AsteriskLeg)
        await self.leg.unhold(by=by.leg)

    async def talk(self, seconds: float) -> None:
        await self.leg.talk(seconds)

    async def dtmf(self, digits: str) -> None:
        await self.leg.dtmf(digits)

    async def hangup(self, cause: int = 16) -> None:
        await self.leg.hangup(cause)

    async def die(self) -> None:
        await self.leg.die(rtp_timeout=True)

    async def feature(self, name: str) -> None:
        await self._pbx.fake.feature(self.leg, "PbxAgentFeature", {"Feature": name})

    async def run_hook(self, hook: str, params: Mapping[str, str] | None = None) -> dict[str, str]:
        query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
        url = f"agi://{self._pbx.agi_host}:{self._pbx.agi_port}/{hook}" + (
            f"?{query}" if query else ""
        )
        result = await self._pbx.fake.agi(self.leg, url)
        return dict(result.variables_set)


class AsteriskLabPbx:
    name = "asterisk"

    def __init__(self, fake: FakeAsterisk, agi_host: str, agi_port: int) -> None:
        self.fake = fake
        self.agi_host = agi_host
        self.agi_port = agi_port

    async def inbound_call(
        self, caller: str, caller_name: str = "", *, exten: str = "100"
    ) -> AsteriskLeg:
        leg = await self.fake.inbound_call(caller=caller, caller_name=caller_name, exten=exten)
        return AsteriskLeg(self, leg)

    def script_callee(
        self,
        number: str,
        outcome: str,
        *,
        machine: bool | None = None,
        ring_s: float = 0.0,
        voice: str | None = None,
    ) -> None:
        if voice is None and machine is not None:
            voice = CalleeVoice.MACHINE if machine else CalleeVoice.HUMAN
        amd = None
        if voice is not None:
            # The same callee as AMD() would judge it (traces 06a-06c).
            amd = {
                CalleeVoice.MACHINE: AmdVerdict.machine_long_greeting(),
                CalleeVoice.SILENCE: AmdVerdict.initial_silence(),
            }.get(CalleeVoice(voice), AmdVerdict.human())
            self.fake.script_callee_voice(number, CalleeVoice(voice))
        self.fake.script_dial(number, DialScript(DialOutcome(outcome), ring_s=ring_s, amd=amd))

    def originated_numbers(self) -> list[str]:
        return [o.request.dial_string for o in self.fake.originated]

    async def cut_connection(self) -> None:
        self.fake.drop_connections()

    def send_malformed_frame(self) -> None:
        self.fake.send_raw(b"Event: Newchannel\r\nthis line has no colon\r\n\r\n")


__all__ = [
    "AsteriskLabPbx",
    "AsteriskLeg",
    "FreeswitchLabPbx",
    "FreeswitchLeg",
    "LabLeg",
    "LabPbx",
]

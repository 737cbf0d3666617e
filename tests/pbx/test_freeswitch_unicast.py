"""Callbacks on FreeSWITCH judged on the callee's audio: the leg parks in
``pbxagent_callback_audio``, the adapter sends ``unicast`` on its answer and the receiver runs
the detector on the stream (fake FreeSWITCH over loopback TCP and UDP, the shipped dialplan's
callback extensions imitated by the lab driver)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent.amd.params import DetectorParams
from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.lab.freeswitch_driver import FreeswitchLabPbx
from pbx_agent.model import events as ev
from pbx_agent.pbx.esl_client import EslSettings
from pbx_agent.pbx.freeswitch import FreeswitchAdapter, FreeswitchOptions
from pbx_agent.pbx.freeswitch_dialer import FreeswitchDetection, FreeswitchDialer
from pbx_agent.pbx.unicast_server import UnicastAudioServer
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch

from .test_freeswitch_dialer import NUMBER, Rig, Sink, dial

REQUEST = "7d2c9a41-5e3b-4f80-9b1a-3c6e8f0d2a11"


@dataclass
class AudioRig(Rig):
    """The dialer's rig with the unicast receiver attached."""

    server: UnicastAudioServer | None = None

    def unicast_commands(self) -> list[Any]:
        return [c for c in self.fs.commands_for("sendmsg") if c.get("call-command") == "unicast"]

    @property
    def receiver(self) -> UnicastAudioServer:
        assert self.server is not None
        return self.server


@contextlib.asynccontextmanager
async def rig(*, audio: bool = True, **server_options: Any) -> AsyncIterator[AudioRig]:
    async with FakeFreeSwitch(playback_s=1.0, time_scale=0.5) as fs:
        clock = LoopClock()
        engine = Engine(clock=clock, policies=[])
        adapter = FreeswitchAdapter(
            EslSettings(port=fs.port, password="ClueCon", reconnect_initial_s=0.05),
            FreeswitchOptions(sounds=lambda key: f"{key}.wav"),
            handle_event=engine.handle,
            clock=clock,
        )
        engine.executor = adapter
        dialer = FreeswitchDialer(
            FreeswitchDetection(params=DetectorParams(), deadline_ms=6000, audio=audio)
        )
        sink = Sink()
        dialer.report_to(sink)
        engine.subscribe((ev.OriginateOutcome, ev.MachineDetected), dialer.on_event)
        options = {"first_audio_timeout_s": 1.5, **server_options}
        server = UnicastAudioServer(
            adapter.unicast_verdict, params=DetectorParams(), now=clock.now, **options
        )
        adapter.attach_unicast(server)
        await dialer.start()
        await adapter.start()
        dialer.attach(adapter)
        lab = FreeswitchLabPbx(fs, "127.0.0.1", 1)
        try:
            yield AudioRig(fs, lab, adapter, dialer, sink, server)
        finally:
            await dialer.close()
            await server.close()
            await engine.close()
            await adapter.close()


async def test_a_person_is_heard_on_the_stream_and_goes_to_the_queue() -> None:
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="human")
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][:2] == (REQUEST, "human")
        assert r.sink.verdicts[0][2] == "answer-then-silence"
        await r.until(lambda: any("uuid_transfer" in line for line in r.api()), "the transfer")
        assert f"uuid_transfer {REQUEST} pbxagent_callback_connect XML default" in r.api()
        originate = r.fs.commands_for("bgapi")[-1].args
        assert "pbxagent_callback_audio" in originate
        [command] = r.unicast_commands()
        assert command.args == REQUEST
        [stream] = r.fs.unicasts
        assert stream.local is not None
        assert stream.local[0] == "127.0.0.1"
        assert stream.remote[0] == "127.0.0.1"
        assert command.get("remote-port") == str(stream.remote[1])
        assert command.get("local-port") == "0"
        assert stream.frames_sent > 20
        await r.until(lambda: stream.ended is not None, "the stream's end")
        assert stream.ended == "unpark"
        assert r.receiver.active_sessions == 0


async def test_a_greeting_and_its_beep_are_a_machine_and_are_hung_up() -> None:
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1] == "machine"
        await r.until(lambda: r.fs.channel(REQUEST) is None, "the hang-up")
        assert f"uuid_kill {REQUEST} NORMAL_CLEARING" in r.api()


async def test_a_person_in_noise_with_voices_behind_is_still_a_person() -> None:
    """What talk events cannot do: the noise floor and the voices-behind check need audio."""
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="noisy_human")
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1] == "human"


async def test_a_stream_that_never_comes_connects_the_callee_soon() -> None:
    """A firewall, a wrong unicast_address: nothing arrives; the deadline's verdict (a person) at once."""
    async with rig(first_audio_timeout_s=0.3) as r:
        r.lab.script_callee(NUMBER, "answer", voice="human")
        r.fs.stall_unicast(NUMBER)
        with capture_logs() as logs:
            await r.dialer.place_callback(dial(REQUEST))
            await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1:] == ("human", "no-audio")
        await r.until(lambda: any("uuid_transfer" in line for line in r.api()), "the transfer")
    assert any(entry["event"] == "unicast_no_audio" for entry in logs)


async def test_a_callee_hanging_up_during_detection_is_judged_once() -> None:
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="silence")
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.fs.unicasts) and r.fs.unicasts[0].active, "the stream")
        channel = r.fs.channel(REQUEST)
        assert channel is not None
        r.fs.hangup(channel)
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        await asyncio.sleep(0.3)
        assert len(r.sink.verdicts) == 1
        assert r.sink.verdicts[0][2].startswith("peer-hangup:")
        assert r.receiver.active_sessions == 0


async def test_a_refused_unicast_connects_the_callee_at_once() -> None:
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        real = r.adapter.client.command

        async def refusing(line: str, *args: Any, **kwargs: Any) -> Any:
            if line.startswith("sendmsg "):
                line = "sendmsg 00000000-0000-4000-8000-000000000000"  # no such session
            return await real(line, *args, **kwargs)

        r.adapter.client.command = refusing  # type: ignore[method-assign]
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1:] == ("human", "unicast-refused")
        assert r.receiver.active_sessions == 0


async def test_no_free_port_connects_the_callee_at_once() -> None:
    async with rig(max_sessions=0) as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1:] == ("human", "no-audio-stream")
        assert r.unicast_commands() == []


async def test_talk_events_chosen_the_leg_is_bridged_to_the_listener_instead() -> None:
    async with rig(audio=False) as r:
        r.lab.script_callee(NUMBER, "answer", voice="human")
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        originate = r.fs.commands_for("bgapi")[-1].args
        assert " pbxagent_callback " in f"{originate} ".replace("'", " ")
        assert "pbxagent_callback_audio" not in originate
        assert r.unicast_commands() == []
        assert r.sink.verdicts[0][1] == "human"


async def test_a_leg_id_that_is_not_a_plain_uuid_never_reaches_a_sendmsg_line() -> None:
    odd = REQUEST.upper()
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        await r.dialer.place_callback(dial(odd))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1:] == ("human", "no-audio-stream")
        assert r.unicast_commands() == []


async def test_an_attempt_that_is_never_answered_leaves_nothing_waiting() -> None:
    async with rig() as r:
        r.lab.script_callee(NUMBER, "busy")
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.outcomes), "the outcome")
        assert r.sink.outcomes == [(REQUEST, "busy")]
        await asyncio.sleep(0.1)
        assert r.adapter._unicast_legs == {}
        assert r.sink.verdicts == []
        assert r.receiver.active_sessions == 0


async def test_a_read_rate_the_receiver_cannot_take_connects_the_callee_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An 11025 Hz leg (no codec of FreeSWITCH's, but a header is input): refused by name."""
    from pbx_agent.testing.fake_freeswitch_model import ChannelModel  # noqa: PLC0415

    real_basic = ChannelModel.basic

    def odd_rate(ch: Any) -> list[tuple[str, str]]:
        return [(k, "11025" if k == "Channel-Read-Codec-Rate" else v) for k, v in real_basic(ch)]

    monkeypatch.setattr(ChannelModel, "basic", staticmethod(odd_rate))
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        with capture_logs() as logs:
            await r.dialer.place_callback(dial(REQUEST))
            await r.until(lambda: bool(r.sink.verdicts), "the verdict")
        assert r.sink.verdicts[0][1:] == ("human", "no-audio-stream")
        assert r.unicast_commands() == []
    [warning] = [e for e in logs if e["event"] == "unicast_not_started"]
    assert "'11025' refused; accepted: 8000, 16000, 24000, 32000, 48000 Hz" in warning["error"]


async def test_a_hang_up_while_the_socket_opens_is_judged_at_once() -> None:
    """No sendmsg for a leg already gone, and no waiting for the no-audio default."""
    async with rig(first_audio_timeout_s=5.0) as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        real_open = r.receiver.open

        async def open_then_hang_up(leg: str, **kwargs: Any) -> int:
            # The hang-up reaches the adapter while the socket is being bound.
            channel = r.fs.channel(leg)
            assert channel is not None
            r.fs.hangup(channel)
            await asyncio.sleep(0.05)
            return await real_open(leg, **kwargs)

        r.receiver.open = open_then_hang_up  # type: ignore[method-assign]
        await r.dialer.place_callback(dial(REQUEST))
        await r.until(lambda: bool(r.sink.verdicts), "the verdict", timeout=2.0)
        assert r.sink.verdicts[0][2].startswith("peer-hangup:")
        assert r.unicast_commands() == []
        assert r.receiver.active_sessions == 0

"""The composition root on FreeSWITCH: the daemon attached to the fake FreeSWITCH over
loopback TCP (Event Socket and outbound-socket hooks), as ``pbx.kind = "freeswitch"`` builds it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent.amd.detector import Verdict
from pbx_agent.amd.params import VerdictKind
from pbx_agent.clock import Clock, LoopClock, ManualClock
from pbx_agent.config import Config
from pbx_agent.config.settings import deep_merge
from pbx_agent.daemon import Daemon
from pbx_agent.pbx.freeswitch import FreeswitchAdapter
from pbx_agent.pbx.freeswitch_dialer import FreeswitchDialer
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, overrides: Mapping[str, Any] | None = None, clock: Clock | None = None
) -> AsyncIterator[tuple[FakeFreeSwitch, Daemon]]:
    async with FakeFreeSwitch("lab-password", time_scale=0.05, playback_s=4.0) as fs:
        data = {
            "pbx": {"kind": "freeswitch"},
            "freeswitch": {
                "esl_port": fs.port,
                "password": "lab-password",
                "outbound_bind": f"127.0.0.1:{_free_port()}",
            },
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'fs.sqlite3'}"},
            "metrics": {"enabled": False},
        }
        config = Config.model_validate(deep_merge(data, overrides or {}), context={})
        daemon = Daemon(config, clock=clock or LoopClock())
        await daemon.start()
        try:
            yield fs, daemon
        finally:
            await daemon.stop()


async def test_the_daemon_attaches_to_freeswitch(tmp_path: Path) -> None:
    """pbx.kind = freeswitch: the Event Socket adapter, the outbound server and the dialer."""
    with capture_logs() as logs:
        async with running(tmp_path) as (fs, daemon):
            assert isinstance(daemon.adapter, FreeswitchAdapter)
            assert isinstance(daemon.dialer, FreeswitchDialer)
            assert daemon.esl_outbound is not None
            assert daemon.adapter.client.connected
            subscription = fs.commands_for("event")[0].args
    started = next(e for e in logs if e["event"] == "daemon_started")
    assert started["pbx"] == "freeswitch"
    assert subscription.startswith("plain ")
    assert subscription.endswith("CUSTOM avmd::beep callcenter::info")


async def test_a_wrong_password_stops_the_daemon_at_start(tmp_path: Path) -> None:
    """A refused Event Socket password is fatal at start, as for Asterisk's AMI secret."""
    from pbx_agent.errors import PbxAuthenticationFailed  # noqa: PLC0415

    with pytest.raises(PbxAuthenticationFailed):
        async with running(tmp_path, {"freeswitch": {"password": "wrong"}}):
            pass


async def test_an_outbound_session_that_hangs_up_mid_command_ends_cleanly(
    tmp_path: Path,
) -> None:
    """The caller hangs up while the entry hook's first command runs: the session ends, no
    command follows the hang-up, and the next call is served."""
    overrides = {"standards": {"silent_caller": {"pre_queue": True}}}
    clock = ManualClock(time.time())
    with capture_logs() as logs:
        async with running(tmp_path, overrides, clock) as (fs, daemon):
            assert daemon.esl_outbound is not None
            port = daemon.esl_outbound.port
            first = await fs.outbound_call(
                "127.0.0.1",
                port,
                caller_number="79161234567",
                variables={"pbx_agent_hook": "entry"},
            )
            first.hang_up_during_next_execute = True  # during the answer
            await first.wait_finished(5.0)
            clock.advance(10)  # the hook's first silence is over: it would speak now
            await asyncio.sleep(0.1)
            after = [c.line for c in first.commands]
            second = await fs.outbound_call(
                "127.0.0.1",
                port,
                caller_number="79161234568",
                variables={"pbx_agent_hook": "route"},
            )
            await second.wait_finished(5.0)
    assert not first.channel.alive
    hung = after.index("sendmsg")  # the answer, during which the caller hung up
    assert after[hung + 1 :] == []
    names = [e["event"] for e in logs]
    assert "hook_hung_up" in names
    assert "freeswitch_pre_queue_unheard" in names
    assert names.count("esl_outbound_session_crashed") == 0
    assert second.connected


async def test_callbacks_are_judged_on_their_audio_by_default(tmp_path: Path) -> None:
    """freeswitch.amd_audio = unicast: the adapter gets the unicast receiver, with the
    detector's settings of standards.amd."""
    from pbx_agent.pbx.unicast_server import UnicastAudioServer  # noqa: PLC0415

    async with running(tmp_path) as (_fs, daemon):
        assert isinstance(daemon.adapter, FreeswitchAdapter)
        assert isinstance(daemon.adapter.unicast, UnicastAudioServer)
        assert daemon.adapter.unicast.host == "127.0.0.1"


async def test_a_verdict_from_the_stream_is_counted_once(tmp_path: Path) -> None:
    """The receiver's verdict reaches the engine as MachineDetected, which the metrics count:
    one verdict, one count in pbx_agent_amd_results_total."""
    async with running(tmp_path) as (_fs, daemon):
        assert isinstance(daemon.adapter, FreeswitchAdapter)
        receiver = daemon.adapter.unicast
        assert receiver is not None
        leg = "0b0e3c1e-1111-4222-8333-944445555666"
        result = receiver._on_verdict(leg, Verdict(VerdictKind.MACHINE, "tone-1000hz", 2100))
        if asyncio.iscoroutine(result):
            await result
        registry = daemon.metrics.registry
        sample = registry.get_sample_value("pbx_agent_amd_results_total", {"result": "machine"})
    assert sample == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"freeswitch": {"amd_audio": "talk_events"}},
        {"standards": {"amd": {"enabled": False}}},
    ],
)
async def test_no_receiver_when_talk_events_are_chosen_or_nothing_is_detected(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    async with running(tmp_path, overrides) as (_fs, daemon):
        assert isinstance(daemon.adapter, FreeswitchAdapter)
        assert daemon.adapter.unicast is None


async def test_an_address_that_cannot_be_bound_falls_back_to_talk_events(tmp_path: Path) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this host: said once at start, and callbacks
    go on with talk events."""
    with capture_logs() as logs:
        async with running(tmp_path, {"freeswitch": {"unicast_bind": "192.0.2.1"}}) as (_, d):
            assert isinstance(d.adapter, FreeswitchAdapter)
            assert d.adapter.unicast is None
    [error] = [e for e in logs if e["event"] == "unicast_unavailable"]
    assert error["bind"] == "192.0.2.1"
    assert "talk events" in error["fallback"]

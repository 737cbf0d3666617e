"""The composition root's callback wiring, with the daemon attached to the fake Asterisk:
the policy, the promise hook, the AudioSocket server as standards.amd chooses, a port that
cannot be bound, and shadow mode (decided and logged, nothing written, nothing dialled)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from pbx_agent.config import Config
from pbx_agent.config.settings import deep_merge
from pbx_agent.daemon import Daemon
from pbx_agent.pbx.asterisk_dialer import AsteriskDialer
from pbx_agent.policies.callbacks import JobKind
from pbx_agent.services.callbacks import PROMISE_HOOK
from pbx_agent.store import NewJob, Store
from pbx_agent.testing.fake_asterisk import FakeAsterisk

NUMBER = "79161234567"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config_for(pbx: FakeAsterisk, folder: Path, **overrides: Any) -> Config:
    host, port = pbx.ami_address
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "site": {"timezone": "UTC"},
        "pbx": {"kind": "asterisk"},
        "asterisk": {
            "ami_host": host,
            "ami_port": port,
            "username": "lab",
            "secret": "not-a-real-secret",
            "fastagi_bind": f"127.0.0.1:{free_port()}",
            "audiosocket_bind": f"127.0.0.1:{free_port()}",
        },
        "store": {"url": f"sqlite+aiosqlite:///{folder / 'pbx-agent.sqlite3'}"},
        "scheduler": {"poll_interval_s": 0.1},
        "metrics": {"enabled": False},
        "standards": {
            "callbacks": {
                "quiet_hours": {
                    "start": (now + timedelta(hours=6)).strftime("%H:00"),
                    "end": (now + timedelta(hours=7)).strftime("%H:00"),
                }
            }
        },
    }
    merged: Mapping[str, Any] = deep_merge(base, overrides)
    return Config.model_validate(merged, context={})


@contextlib.asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(config)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.stop()


async def add_due_job(url: str) -> None:
    store = Store.open(url)
    await store.upgrade()
    now = datetime.now(UTC)
    await store.callbacks.create(
        NewJob(
            number="+" + NUMBER,
            kind=JobKind.ABNORMAL_DROP,
            reason="caller_leg_failed",
            created_at=now,
            anchor_at=now,
            window_ends_at=now + timedelta(hours=48),
            next_attempt_at=now,
        )
    )
    await store.close()


async def test_callbacks_policy_and_promise_hook_are_registered(tmp_path: Path) -> None:
    """R7 runs on every call and the dialplan can register promises."""
    async with FakeAsterisk() as pbx, running(config_for(pbx, tmp_path)) as daemon:
        assert "callbacks" in [p.name for p in daemon.engine.policies]
        assert PROMISE_HOOK in daemon.hooks.names()
        assert daemon.callbacks is not None


async def test_the_daemons_detector_listens_where_the_dialplan_is_told(tmp_path: Path) -> None:
    """engine = daemon: the AudioSocket server runs and the dialer passes its address."""
    async with FakeAsterisk() as pbx:
        config = config_for(pbx, tmp_path)
        async with running(config) as daemon:
            assert daemon.audiosocket is not None
            assert isinstance(daemon.dialer, AsteriskDialer)
            assert config.asterisk is not None
            assert daemon.dialer.audiosocket == config.asterisk.audiosocket_bind
            assert daemon.dialer.detection.engine == "daemon"


async def test_amd_application_needs_no_audiosocket_server(tmp_path: Path) -> None:
    """engine = asterisk: AMD() in the dialplan, no AudioSocket server."""
    async with FakeAsterisk() as pbx:
        config = config_for(pbx, tmp_path, standards={"amd": {"engine": "asterisk"}})
        async with running(config) as daemon:
            assert daemon.audiosocket is None
            assert isinstance(daemon.dialer, AsteriskDialer)
            assert daemon.dialer.detection.engine == "asterisk"


async def test_a_busy_audiosocket_port_is_logged_and_detection_is_off(tmp_path: Path) -> None:
    """The port is taken: the daemon says so and runs callbacks without detection."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with FakeAsterisk() as pbx:
            config = config_for(pbx, tmp_path, asterisk={"audiosocket_bind": f"127.0.0.1:{port}"})
            with capture_logs() as logs:
                async with running(config) as daemon:
                    assert daemon.audiosocket is None
                    assert isinstance(daemon.dialer, AsteriskDialer)
                    assert daemon.dialer.detection.engine == "none"
    assert [e["bind"] for e in logs if e["event"] == "audiosocket_unavailable"] == [
        f"127.0.0.1:{port}"
    ]


async def test_the_scheduler_dials_a_due_job_through_the_configured_trunk(tmp_path: Path) -> None:
    """Outside shadow mode a due job is Originated at once, on asterisk.callback_channel
    with asterisk.callback_caller_id."""
    async with FakeAsterisk() as pbx:
        config = config_for(
            pbx,
            tmp_path,
            asterisk={
                "callback_channel": "PJSIP/{number}@carrier",
                "callback_caller_id": '"Support" <74950000000>',
            },
        )
        await add_due_job(config.store.url)
        async with running(config):
            originate = await pbx.wait_for_action("Originate", timeout_s=5.0)
    assert originate["Channel"] == f"PJSIP/{NUMBER}@carrier"
    assert originate["CallerID"] == '"Support" <74950000000>'


async def test_shadow_mode_dials_nothing(tmp_path: Path) -> None:
    """Shadow mode: a due job stays undialled; the log says the scheduler is off."""
    async with FakeAsterisk() as pbx:
        config = config_for(pbx, tmp_path, shadow=True)
        await add_due_job(config.store.url)
        with capture_logs() as logs:
            async with running(config):
                await asyncio.sleep(0.5)
        assert not [a for a in pbx.received if a.name == "Originate"]
    assert any(e["event"] == "callback_scheduler_off" for e in logs), [e["event"] for e in logs]


async def test_shadow_mode_logs_a_drop_but_writes_no_job(tmp_path: Path) -> None:
    """Shadow mode: an abnormal drop is decided and logged, no callback job is written."""
    async with FakeAsterisk() as pbx:
        config = config_for(pbx, tmp_path, shadow=True)
        with capture_logs() as logs:
            async with running(config) as daemon:
                caller = await pbx.inbound_call(NUMBER)
                await caller.answer()
                await caller.connect_agent("agent-1001", queue="support")
                async with asyncio.timeout(5.0):
                    while not any(c.agent for c in daemon.engine.model.calls.values()):
                        await asyncio.sleep(0.02)
                await caller.hangup(cause=44)
                async with asyncio.timeout(5.0):
                    while not shadowed(logs, "request_callback"):
                        await asyncio.sleep(0.02)
                assert daemon.store is not None
                assert await daemon.store.callbacks.list_jobs() == []
    [shadow] = shadowed(logs, "request_callback")
    assert shadow["number"] == NUMBER


def shadowed(logs: Sequence[MutableMapping[str, Any]], action: str) -> list[Any]:
    return [e for e in logs if e["event"] == "callback_shadow" and e["action"] == action]

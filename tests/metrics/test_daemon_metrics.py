"""The daemon, built by the composition root, against the fake Asterisk over loopback:
its metrics scraped over HTTP while it runs, and a refused AMI action named by its class."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from pbx_agent.config import Config
from pbx_agent.daemon import Daemon
from pbx_agent.pbx.ami_permissions import WRITE_CLASSES
from pbx_agent.testing.fake_asterisk import FakeAsterisk, Leg
from pbx_agent.wire.ami import AmiMessage
from tests.metrics.http import sample


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RestrictedAsterisk(FakeAsterisk):
    """An Asterisk whose AMI user lacks the write class of some actions: it answers them
    ``Response: Error`` / ``Message: Permission denied``, as manager.c does."""

    def __init__(self, denied: set[str]) -> None:
        super().__init__()
        self.denied = {name.lower() for name in denied}

    async def _on_message(self, client: Any, message: AmiMessage) -> None:
        if message.kind == "action" and message.name.lower() in self.denied:
            self._reply(client, message, "Error", [("Message", "Permission denied")])
            return
        await super()._on_message(client, message)


def config_for(fake: FakeAsterisk, folder: Path, metrics_port: int) -> Config:
    host, port = fake.ami_address
    return Config.model_validate(
        {
            "pbx": {"kind": "asterisk"},
            "asterisk": {
                "ami_host": host,
                "ami_port": port,
                "username": "lab",
                "secret": "not-a-real-secret",
                "fastagi_bind": f"127.0.0.1:{free_port()}",
                "audiosocket_bind": f"127.0.0.1:{free_port()}",
            },
            "store": {"url": f"sqlite+aiosqlite:///{folder / 'd.sqlite3'}"},
            "metrics": {"enabled": True, "bind": f"127.0.0.1:{metrics_port}"},
        },
        context={},
    )


@asynccontextmanager
async def running(fake: FakeAsterisk, folder: Path) -> AsyncIterator[tuple[Daemon, int]]:
    port = free_port()
    daemon = Daemon(config_for(fake, folder, port))
    await daemon.start()
    try:
        yield daemon, port
    finally:
        await daemon.stop()


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def scrape(port: int, path: str = "/metrics") -> str:
    """A real HTTP client (urllib) in a thread, as Prometheus would scrape."""

    def fetch() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode("utf-8"))

    return await asyncio.to_thread(fetch)


async def connected_call(fake: FakeAsterisk) -> tuple[Leg, Leg]:
    caller = await fake.inbound_call(caller="79161234567", caller_name="Иван")
    await caller.answer()
    agent = await caller.connect_agent(endpoint="agent-1001", queue="support")
    await until(lambda: caller.talk_detection and agent.talk_detection, "TALK_DETECT on both legs")
    return caller, agent


async def test_a_running_daemon_serves_its_decisions_links_and_event_handling(
    tmp_path: Path,
) -> None:
    """Scraped over HTTP: the PBX link up, the store up, an agent's abuse press counted as R4
    decisions, and the AMI events it handled timed."""
    async with FakeAsterisk() as fake, running(fake, tmp_path) as (daemon, port):
        await until(lambda: daemon.adapter is not None and daemon.adapter.client.connected, "AMI")
        before = await scrape(port)
        _, agent = await connected_call(fake)
        await fake.feature(agent, "PbxAgentFeature", {"Feature": "pbxagent_abuse"})
        await until(
            lambda: (
                daemon.metrics.registry.get_sample_value(
                    "pbx_agent_decisions_total", {"rule": "R4", "action": "play_prompt"}
                )
                == 1
            ),
            "the first abuse step",
        )
        after = await scrape(port)
        health = await scrape(port, "/healthz")
    assert sample(before, "pbx_agent_pbx_connected", pbx="asterisk") == 1.0
    assert sample(before, "pbx_agent_decisions_total", rule="R4", action="play_prompt") is None
    assert sample(after, "pbx_agent_decisions_total", rule="R4", action="play_prompt") == 1.0
    assert sample(after, "pbx_agent_store_up") == 1.0
    handled = sample(after, "pbx_agent_event_handling_seconds_count", pbx="asterisk")
    assert handled is not None and handled > 0
    assert '"status": "ok"' in health


async def test_a_refused_action_is_logged_with_the_manager_class_it_needs(
    tmp_path: Path,
) -> None:
    """Permission denied on Originate: ami_permission_denied names the 'originate' class."""
    fake = RestrictedAsterisk({"Originate"})
    with capture_logs() as logs:
        async with fake, running(fake, tmp_path) as (daemon, _port):
            await until(
                lambda: daemon.adapter is not None and daemon.adapter.client.connected, "AMI"
            )
            _, agent = await connected_call(fake)
            await fake.feature(agent, "PbxAgentFeature", {"Feature": "pbxagent_abuse"})
            await until(
                lambda: any(e["event"] == "ami_permission_denied" for e in logs), "the refusal"
            )
            await daemon.engine.drain()
    (denied,) = [e for e in logs if e["event"] == "ami_permission_denied"][:1]
    assert denied["ami_action"] == "Originate"
    assert WRITE_CLASSES["Originate"] == ("originate",)
    assert "'originate'" in denied["error"]
    assert "[lab]" in denied["error"]
    failed = [
        e for e in logs if e["event"] == "command_failed" and e.get("action") == "play_prompt"
    ]
    assert failed and "'originate'" in failed[0]["error"]

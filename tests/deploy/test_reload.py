"""SIGHUP reload in process: what it applies at once, what waits for a restart, and what it
refuses (the subprocess tests in test_operations.py send the real signal)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import ManualClock
from pbx_agent.config import load_config
from pbx_agent.daemon import Daemon, changed_keys
from pbx_agent.hooks.route import RouteDecider
from pbx_agent.testing.fake_asterisk import FakeAsterisk


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_BINDS: dict[Path, tuple[int, int]] = {}


def write(path: Path, pbx: FakeAsterisk, extra: str = "") -> Path:
    """The daemon's file; rewriting it keeps the same binds (only ``extra`` changes)."""
    host, port = pbx.ami_address
    agi, audiosocket = _BINDS.setdefault(path, (free_port(), free_port()))
    path.write_text(
        f"""
[asterisk]
ami_host = "{host}"
ami_port = {port}
username = "lab"
secret = "not-a-real-secret"
fastagi_bind = "127.0.0.1:{agi}"
audiosocket_bind = "127.0.0.1:{audiosocket}"

[store]
url = "sqlite+aiosqlite:///{path.parent / "agent.sqlite3"}"

[metrics]
enabled = false
{extra}
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def running(path: Path, *, shadow: bool = False) -> AsyncIterator[Daemon]:
    config = load_config(path, env={})
    if shadow:
        config = config.model_copy(update={"shadow": True})
    daemon = Daemon(config, config_path=path)
    try:
        await daemon.start()
        yield daemon
    finally:
        await daemon.stop()


async def test_reload_applies_the_standards_and_names_what_needs_a_restart(
    tmp_path: Path,
) -> None:
    """A new reminder interval reaches the calls at once; a new scheduler poll interval is
    named as waiting for a restart; both are in the log."""
    async with FakeAsterisk() as pbx:
        path = write(tmp_path / "pbx-agent.toml", pbx)
        async with running(path) as daemon:
            before = daemon.engine.standards_for(None, None).hold.reminder_interval_s
            assert before != 45
            write(
                path,
                pbx,
                "[standards.hold]\nreminder_interval_s = 45\n[scheduler]\npoll_interval_s = 7\n",
            )
            with capture_logs() as logs:
                daemon.reload()
            assert daemon.engine.standards_for(None, None).hold.reminder_interval_s == 45
            events = {e["event"]: e for e in logs}
            assert events["config_reloaded"]["applied"] == ["standards.hold.reminder_interval_s"]
            assert events["config_reload_needs_restart"]["keys"] == ["scheduler.poll_interval_s"]


async def test_a_new_route_deadline_is_named_as_waiting_for_a_restart(tmp_path: Path) -> None:
    """The route hook's deadline is the hook servers' (fixed at start): a reload that
    changes it says so instead of reporting it applied alone."""
    async with FakeAsterisk() as pbx:
        path = write(tmp_path / "pbx-agent.toml", pbx)
        async with running(path) as daemon:
            write(path, pbx, "[standards.night_routing]\ndeadline_ms = 300\n")
            with capture_logs() as logs:
                daemon.reload()
            events = {e["event"]: e for e in logs}
            key = "standards.night_routing.deadline_ms"
            assert events["config_reload_needs_restart"]["keys"] == [key]


async def test_a_reload_gives_the_entry_hook_the_deadline_of_the_new_steps(
    tmp_path: Path,
) -> None:
    """Longer silent-caller steps applied by a reload would otherwise be cut short by the
    deadline worked out at start: the hook's deadline follows them."""
    from pbx_agent.hooks.entry import entry_deadline_s  # noqa: PLC0415

    async with FakeAsterisk() as pbx:
        path = write(tmp_path / "pbx-agent.toml", pbx)
        async with running(path) as daemon:
            spec = daemon.hooks.get("entry")
            assert spec is not None
            before = spec.deadline()
            write(path, pbx, "[standards.silent_caller]\nhangup_after_closing_s = 30\n")
            daemon.reload()
            slower = entry_deadline_s(daemon.config.standards_for(None, None).silent_caller)
            assert slower > before
            assert spec.deadline() == pytest.approx(slower)


async def test_reload_keeps_the_shadow_mode_the_daemon_was_started_in(tmp_path: Path) -> None:
    """`run --shadow` is not in the file: a reload must not leave shadow mode by itself."""
    async with FakeAsterisk() as pbx:
        path = write(tmp_path / "pbx-agent.toml", pbx)
        async with running(path, shadow=True) as daemon:
            write(path, pbx, "[standards.hold]\nreminder_interval_s = 45\n")
            with capture_logs() as logs:
                daemon.reload()
            assert daemon.config.shadow is True
            assert daemon.engine.shadow is True
            assert "config_reloaded" in [e["event"] for e in logs]


async def test_reload_changing_the_profile_is_refused(tmp_path: Path) -> None:
    """The profile changes every phrase and its sound file: nothing is applied, the log
    says to restart."""
    async with FakeAsterisk() as pbx:
        path = write(tmp_path / "pbx-agent.toml", pbx)
        async with running(path) as daemon:
            phrases = dict(daemon.engine.standards_for(None, None).phrases)
            write(path, pbx, '[site]\nprofile = "zh"\n')
            with capture_logs() as logs:
                daemon.reload()
            assert dict(daemon.engine.standards_for(None, None).phrases) == phrases
            assert daemon.config.site.profile == "ru"
            rejected = [e for e in logs if e["event"] == "config_reload_rejected"]
            assert rejected and "site.profile" in rejected[0]["problems"][0]


async def test_reload_of_a_file_that_breaks_a_check_is_rejected_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that raises instead of reporting (a bug) ended in asyncio's traceback on
    stderr with no config_reload_rejected line; the running configuration must stay."""

    def broken(_path: object) -> object:
        msg = "a check that fails"
        raise RuntimeError(msg)

    async with FakeAsterisk() as pbx:
        path = write(tmp_path / "pbx-agent.toml", pbx)
        async with running(path) as daemon:
            before = daemon.config
            monkeypatch.setattr("pbx_agent.daemon.load_config", broken)
            with capture_logs() as logs:
                daemon.reload()
            assert daemon.config is before
            [rejected] = [e for e in logs if e["event"] == "config_reload_rejected"]
            assert "RuntimeError: a check that fails" in rejected["problems"][0]


def test_changed_keys_lists_leaves_not_sections() -> None:
    old = load_config(None, env={})
    new = load_config(
        None,
        env={
            "PBX_AGENT_STANDARDS__NIGHT_ROUTING__THRESHOLD": "3",
            "PBX_AGENT_AGENTS__DEFAULT_TIER": "senior",
        },
    )
    assert changed_keys(old, new) == ["agents.default_tier", "standards.night_routing.threshold"]
    assert changed_keys(old, old) == []


async def test_the_route_decision_reads_the_standards_it_is_given_at_each_call() -> None:
    """The daemon hands the route hook a resolver through its current configuration, so a
    reload reaches night routing without rebuilding the hook."""
    current = [load_config(None, env={})]
    decider = RouteDecider(
        current[0],
        lookup=None,  # type: ignore[arg-type]
        clock=ManualClock(0),
        pbx="asterisk",
        standards=lambda queue, dialed: current[0].standards_for(queue, dialed),  # noqa: PLW0108
    )
    assert decider.rules_for(None, None).night.threshold == 2
    current[0] = load_config(None, env={"PBX_AGENT_STANDARDS__NIGHT_ROUTING__THRESHOLD": "5"})
    assert decider.rules_for(None, None).night.threshold == 5


async def test_the_scheduler_knows_a_customer_on_a_live_call(tmp_path: Path) -> None:
    """The callback scheduler asks the daemon whether the customer is on a call with us
    (any form of their number); not once they hang up."""
    import asyncio  # noqa: PLC0415

    async with FakeAsterisk() as pbx:
        path = write(tmp_path / "pbx-agent.toml", pbx)
        async with running(path) as daemon:
            caller = await pbx.inbound_call(caller="89161234567")
            await caller.answer()
            async with asyncio.timeout(5):
                while not daemon.engine.model.calls:
                    await asyncio.sleep(0.01)
            assert daemon._customer_on_call("+79161234567")
            assert not daemon._customer_on_call("+79031234567")
            await caller.hangup()
            async with asyncio.timeout(5):
                while daemon._customer_on_call("+79161234567"):
                    await asyncio.sleep(0.01)


def test_a_queue_the_configuration_does_not_know_is_named_once_in_the_log() -> None:
    """`entry?queue=suport` (a typo) gets the site's standards, and operations are told
    once per name, the name cut short and with the queues that are known."""
    config = load_config(None, env={"PBX_AGENT_QUEUES__SUPPORT__HOLD__REMINDER_INTERVAL_S": "45"})
    daemon = Daemon(config)
    garbage = "suport\r\nX" + "x" * 200
    with capture_logs() as logs:
        for _ in range(3):
            assert daemon.hook_standards("suport", None) == config.standards_for(None, None)
            daemon.hook_standards(garbage, None)
        assert daemon.hook_standards("support", None).hold.reminder_interval_s == 45
        daemon.hook_standards(None, None)
    named = [e for e in logs if e["event"] == "hook_queue_unknown"]
    assert [e["queue"] for e in named] == ["suport", garbage[:64]]
    assert named[0]["known"] == ["support"]

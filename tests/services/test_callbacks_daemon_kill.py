"""A real daemon (``pbx-agent run``, a subprocess) killed with SIGKILL after it recorded a
callback attempt as dialling and sent the Originate, before Asterisk's reply; then
restarted. The fake Asterisk records every Originate and answers none of them.

What must hold: exactly one Originate for that attempt across both daemons (the restarted
one settles the attempt as ``unknown`` when the dead daemon's lease runs out and never
dials it again), and the job is still there, scheduled for its next attempt."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pbx_agent.policies.callbacks import AttemptOutcome, CallbackAttempt, JobKind, JobStatus
from pbx_agent.store import NewJob, Store
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from tests.store.databases import db_url

__all__ = ["db_url"]

pytestmark = pytest.mark.slow

NUMBER = "+79161234567"
LEASE_S = 2
TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def daemon_config(path: Path, url: str, ami: tuple[str, int]) -> Path:
    """Asterisk at the fake; a short lease; quiet hours far from now; attempts 1 h apart."""
    now = datetime.now(UTC)
    quiet_start = (now + timedelta(hours=6)).strftime("%H:00")
    quiet_end = (now + timedelta(hours=7)).strftime("%H:00")
    host, port = ami
    path.write_text(
        f"""
[site]
profile = "ru"
timezone = "UTC"
default_region = "RU"

[pbx]
kind = "asterisk"

[asterisk]
ami_host = "{host}"
ami_port = {port}
username = "lab"
secret = "not-a-real-secret"
fastagi_bind = "127.0.0.1:{free_port()}"
audiosocket_bind = "127.0.0.1:{free_port()}"
# The Originate is never answered: the daemon must still be waiting for it when killed.
action_timeout_s = 60

[store]
url = "{url}"

[scheduler]
poll_interval_s = 0.2
lease_s = {LEASE_S}

[metrics]
enabled = false

[logging]
format = "json"

[standards.callbacks]
attempt_offsets_s = [0, 3600, 7200]
quiet_hours = {{ start = "{quiet_start}", end = "{quiet_end}" }}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
async def seeded(db_url: str) -> AsyncIterator[tuple[Store, int]]:
    """A migrated store with one callback job due now."""
    store = Store.open(db_url)
    await store.upgrade()
    now = datetime.now(UTC)
    job = await store.callbacks.create(
        NewJob(
            number=NUMBER,
            kind=JobKind.ABNORMAL_DROP,
            reason="caller_leg_failed on the caller leg cause 44",
            created_at=now,
            anchor_at=now,
            window_ends_at=now + timedelta(hours=48),
            next_attempt_at=now,
            trigger_call_id="1795339557.35",
            trigger_cause="44",
            target="support",
        )
    )
    try:
        yield store, job.id
    finally:
        await store.close()


async def start_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from pbx_agent.cli import main; sys.exit(main())",
            "run",
            "--config",
            str(config),
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def eventually(predicate: object, what: str, log: Path) -> None:
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not await predicate():  # type: ignore[operator]
                await asyncio.sleep(0.1)
    except TimeoutError:
        tail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"timed out waiting for {what}\n--- daemon log\n{tail}")


async def attempts(store: Store, job_id: int) -> list[CallbackAttempt]:
    return await store.callbacks.attempts(job_id)


async def test_daemon_killed_after_dialling_neither_redials_nor_loses_the_job(
    seeded: tuple[Store, int], tmp_path: Path
) -> None:
    """SIGKILL between "dialling" and the Originate reply, restart: one Originate, the job
    kept, attempt 1 settled as unknown and attempt 2 scheduled by the rules."""
    store, job_id = seeded
    log = tmp_path / "daemon.log"
    async with FakeAsterisk() as pbx:
        pbx.ignore_actions.add("Originate")
        url = store.db.engine.url.render_as_string(hide_password=False)
        config = daemon_config(tmp_path / "pbx-agent.toml", url, pbx.ami_address)

        def originates() -> list[str]:
            return [a.message.get("ChannelId") or "" for a in pbx.received if a.name == "Originate"]

        first = await start_daemon(config, log)
        try:

            async def originate_sent() -> bool:
                return bool(originates())

            await eventually(originate_sent, "the first daemon's Originate", log)
            [dialling] = await attempts(store, job_id)
            assert dialling.outcome is AttemptOutcome.DIALLING
            assert originates() == [dialling.request_id]
        finally:
            first.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(first.wait(), TIMEOUT_S) == -signal.SIGKILL

        second = await start_daemon(config, log)
        try:

            async def settled() -> bool:
                found = await attempts(store, job_id)
                return bool(found) and found[0].outcome is not AttemptOutcome.DIALLING

            await eventually(settled, "the restarted daemon to settle the attempt", log)
            await asyncio.sleep(LEASE_S)  # ten more scheduling cycles of the restarted daemon
            [settled_attempt] = await attempts(store, job_id)
            job = await store.callbacks.get(job_id)
        finally:
            second.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(second.wait(), TIMEOUT_S)

    assert originates() == [dialling.request_id]
    assert settled_attempt.request_id == dialling.request_id
    assert settled_attempt.outcome is AttemptOutcome.UNKNOWN
    assert job is not None
    assert (job.status, job.attempts_made) == (JobStatus.SCHEDULED, 1)
    assert job.next_attempt_at is not None
    assert job.next_attempt_at >= job.anchor_at + timedelta(hours=1)
    assert code == 0, log.read_text(errors="replace")[-4000:]

"""Which Asterisk the daemon is attached to, and whether its whispers reach a silent channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from pbx_agent.clock import LoopClock
from pbx_agent.engine import Engine
from pbx_agent.pbx.asterisk import AsteriskAdapter
from pbx_agent.pbx.asterisk_version import WhisperSupport, whisper_verdict
from pbx_agent.testing.fake_asterisk import FakeAsterisk
from tests.pbx.test_asterisk_adapter import OPTIONS, ami_settings


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("22.11.0", WhisperSupport.OK),
        ("22.11.0-rc1", WhisperSupport.OK),
        ("22.12.1", WhisperSupport.OK),
        ("24.0.0", WhisperSupport.OK),
        ("22.10.1", WhisperSupport.TOO_OLD),
        ("22.0.0", WhisperSupport.TOO_OLD),
        ("21.12.0", WhisperSupport.TOO_OLD),
        ("18.26.4", WhisperSupport.TOO_OLD),
        ("20.16.0", WhisperSupport.UNKNOWN),
        ("23.3.0", WhisperSupport.UNKNOWN),
        ("GIT-22-22.0.0-pre1-541-g69535d4837", WhisperSupport.UNKNOWN),
        ("certified-20.7-cert5", WhisperSupport.UNKNOWN),
        ("", WhisperSupport.UNKNOWN),
    ],
)
def test_the_version_string_says_whether_whispers_reach_a_silent_channel(
    version: str, expected: WhisperSupport
) -> None:
    """22.11 and later: yes; older branches: no; builds it cannot place: unknown."""
    assert whisper_verdict(version).whisper is expected


def test_a_too_old_version_says_what_to_do() -> None:
    """The reason names the release to upgrade to."""
    assert "22.11" in whisper_verdict("22.10.1").reason


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk() as fake:
        yield fake


async def logged_at_login(pbx: FakeAsterisk) -> tuple[list[dict[str, object]], bool]:
    """The asterisk_version* events of a login, and whether the link was up after them."""
    engine = Engine(clock=LoopClock(), policies=[])
    adapter = AsteriskAdapter(ami_settings(pbx), OPTIONS, handle_event=engine.handle)
    engine.executor = adapter
    with capture_logs() as logs:
        await adapter.start()
        try:
            async with asyncio.timeout(3):
                while not any(str(e["event"]).startswith("asterisk_version") for e in logs):
                    await asyncio.sleep(0.01)
            connected = adapter.client.connected
        finally:
            await engine.close()
            await adapter.close()
    return [e for e in logs if str(e["event"]).startswith("asterisk_version")], connected


async def test_an_asterisk_older_than_22_11_is_a_warning_at_login(pbx: FakeAsterisk) -> None:
    """CoreSettings says 22.10.1: asterisk_version at warning level, whisper too_old."""
    pbx.asterisk_version = "22.10.1"
    [event], _ = await logged_at_login(pbx)
    assert event["event"] == "asterisk_version"
    assert event["log_level"] == "warning"
    assert (event["version"], event["whisper"]) == ("22.10.1", "too_old")
    assert any(a.name == "CoreSettings" for a in pbx.actions)


async def test_a_current_asterisk_is_reported_at_info_level(pbx: FakeAsterisk) -> None:
    """CoreSettings says 22.11.0: asterisk_version at info level, whisper ok."""
    pbx.asterisk_version = "22.11.0"
    [event], _ = await logged_at_login(pbx)
    assert (event["log_level"], event["whisper"]) == ("info", "ok")


async def test_a_refused_coresettings_is_reported_and_the_daemon_goes_on(
    pbx: FakeAsterisk,
) -> None:
    """No reply to CoreSettings within the action timeout: asterisk_version_unknown, and the
    link stays up."""
    pbx.ignore_actions.add("CoreSettings")
    [event], connected = await logged_at_login(pbx)
    assert event["event"] == "asterisk_version_unknown"
    assert "CoreSettings" in str(event["reason"])
    assert connected

"""playback_last_offset_pos of non-ASCII digits is an unknown offset, not a failed hook."""

from __future__ import annotations

import pytest

from pbx_agent.model.hooks import HookSession, PlayResult
from pbx_agent.testing.fake_freeswitch import FakeFreeSwitch
from pbx_agent.testing.fake_freeswitch_model import ChannelModel, FakeChannel
from tests.pbx.test_esl_outbound import call, fs, serving

__all__ = ["fs"]


@pytest.mark.parametrize("position", ["\u00b2", "\u0661\u0660"])
async def test_a_playback_offset_of_non_ascii_digits_keeps_the_start_offset(
    fs: FakeFreeSwitch, monkeypatch: pytest.MonkeyPatch, position: str
) -> None:
    """'²' raised ValueError out of play (hook_failed); now the offset is the one asked for."""
    real_stop = ChannelModel.playback_stop

    def odd_stop(
        self: ChannelModel, ch: FakeChannel, path: str, *, samples: int, status: str = "done"
    ) -> None:
        real_stop(self, ch, path, samples=samples, status=status)
        ch.variables["playback_last_offset_pos"] = position

    monkeypatch.setattr(ChannelModel, "playback_stop", odd_stop)
    results: list[PlayResult] = []

    async def handler(session: HookSession) -> None:
        results.append(await session.play("ivr/hold", offset_samples=1600))

    async with serving(handler) as server:
        outbound = await call(fs, server)
        await outbound.wait_finished()
    assert results == [PlayResult(digit=None, offset_samples=1600)]

"""A Channel-Read-Codec-Rate of non-ASCII digits is refused like 11025: a verdict at once."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from pbx_agent.testing.fake_freeswitch_model import ChannelModel
from tests.pbx.test_freeswitch_unicast import NUMBER, REQUEST, dial, rig


@pytest.mark.parametrize("rate", ["8000\u00b2", "\u0668\u0660\u0660\u0660"])
async def test_a_read_rate_of_non_ascii_digits_connects_the_callee_at_once(
    monkeypatch: pytest.MonkeyPatch, rate: str
) -> None:
    """'8000²' raised a bare ValueError out of _start_unicast: the leg got no verdict."""
    real_basic = ChannelModel.basic

    def odd_rate(ch: Any) -> list[tuple[str, str]]:
        return [(k, rate if k == "Channel-Read-Codec-Rate" else v) for k, v in real_basic(ch)]

    monkeypatch.setattr(ChannelModel, "basic", staticmethod(odd_rate))
    async with rig() as r:
        r.lab.script_callee(NUMBER, "answer", voice="machine")
        with capture_logs() as logs:
            await r.dialer.place_callback(dial(REQUEST))
            await r.until(lambda: bool(r.sink.verdicts), "the verdict", timeout=2.0)
        assert r.sink.verdicts[0][1:] == ("human", "no-audio-stream")
        assert r.unicast_commands() == []
    [warning] = [e for e in logs if e["event"] == "unicast_not_started"]
    assert "refused; accepted: 8000, 16000, 24000, 32000, 48000 Hz" in warning["error"]

"""The reconnect loop both switch links share (pbx_agent.pbx.link)."""

from __future__ import annotations

import pytest

from pbx_agent.pbx.ami_client import AmiClient, AmiSettings
from pbx_agent.pbx.esl_client import EslClient, EslSettings
from pbx_agent.pbx.link import SwitchLink


def _links() -> list[SwitchLink]:
    return [
        AmiClient(
            AmiSettings(
                host="127.0.0.1",
                port=1,
                username="u",
                secret="s",
                reconnect_initial_s=0.5,
                reconnect_max_s=30.0,
            )
        ),
        EslClient(EslSettings(port=1, reconnect_initial_s=0.5, reconnect_max_s=30.0)),
    ]


@pytest.mark.parametrize("link", _links(), ids=["ami", "esl"])
def test_the_delay_doubles_from_the_initial_with_jitter(link: SwitchLink) -> None:
    for attempt, nominal in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0)]:
        delays = [link._backoff(attempt) for _ in range(50)]
        assert all(0.8 * nominal <= d <= 1.2 * nominal for d in delays), (attempt, delays)


@pytest.mark.parametrize("link", _links(), ids=["ami", "esl"])
def test_the_delay_stays_at_the_maximum_however_long_the_switch_is_away(
    link: SwitchLink,
) -> None:
    """2.0 ** 1024 overflows a float: the AMI loop used to die after ~1000 failed attempts
    (about 8 hours of an unreachable Asterisk at 30 s each) and never reconnect."""
    for attempt in (30, 1023, 1024, 10_000, 10**9):
        assert 24.0 <= link._backoff(attempt) <= 36.0

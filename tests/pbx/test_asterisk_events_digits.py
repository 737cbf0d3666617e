"""AMI numbers in non-ASCII digits read as unknown: the hang-up is still reported."""

from __future__ import annotations

import pytest

from pbx_agent.model import events as ev
from pbx_agent.pbx.asterisk_events import AsteriskTranslator, parse_cause
from pbx_agent.wire.ami import AmiMessage
from tests.pbx.test_asterisk_events import trace_messages


def _with(name: str, key: str, value: str) -> list[ev.PbxEvent]:
    translator = AsteriskTranslator()
    out: list[ev.PbxEvent] = []
    for message in trace_messages("02a-call-answer-playback-hangup"):
        if message.kind != "event":
            continue
        fed = message
        if message.name == name:
            fed = AmiMessage(tuple((k, value if k == key else v) for k, v in message.fields))
        out.extend(translator.feed(fed))
    return out


@pytest.mark.parametrize("cause", ["\u00b2", "16\u00b9", "\u0661\u0666"])
def test_a_hangup_whose_cause_is_not_ascii_digits_still_hangs_up_the_leg(cause: str) -> None:
    """Cause '²' raised ValueError after the channel was dropped: no LegHungUp ever came."""
    hung = [e for e in _with("Hangup", "Cause", cause) if isinstance(e, ev.LegHungUp)]
    assert len(hung) == 1


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0666", "1" * 5000])
def test_parse_cause_reads_non_ascii_digits_as_unknown(value: str) -> None:
    """Cause, SoftHangupRequest/HangupRequest causes and talking Duration share it."""
    assert parse_cause(value) is None
    assert parse_cause("16") == 16

"""The fake Asterisk's message layouts against the real transcripts."""

from __future__ import annotations

import functools
import itertools

import pytest

from pbx_agent.testing import ami_templates as tpl
from pbx_agent.testing.asterisk_model import parse_caller_id, separate_args
from tests.testing.asterisk_traces import all_recv_messages, names

# Layout variants per event name: "Event" or "Event/variant".
_VARIANTS: dict[str, list[str]] = {}
for _layout in tpl.EVENT_LAYOUTS:
    _VARIANTS.setdefault(_layout.split("/", 1)[0], []).append(_layout)


def _optional_items(layout: str) -> list[str]:
    return [
        item.replace("?", "") for item in tpl.EVENT_LAYOUTS[layout] if item.endswith(("?", "?}"))
    ]


@functools.cache
def _possible_field_lists(event: str) -> frozenset[tuple[str, ...]]:
    """Every field-name list the fake can render for this event."""
    out: set[tuple[str, ...]] = set()
    for layout in _VARIANTS.get(event, []):
        optional = _optional_items(layout)
        for size in range(len(optional) + 1):
            for present in itertools.combinations(optional, size):
                out.add(tuple(tpl.layout_field_names(layout, present)))
    return frozenset(out)


_TRACE_EVENTS = [
    (scenario, message) for scenario, message in all_recv_messages() if message.kind == "event"
]
_MODELLED = [
    (scenario, message)
    for scenario, message in _TRACE_EVENTS
    if message.name in _VARIANTS and message.name != "UserEvent"
]


def test_every_captured_event_the_fake_sends_has_a_layout_with_its_exact_fields() -> None:
    """Each captured event the fake models matches one of its layouts, field for field."""
    mismatches = [
        (scenario, message.name, names(message))
        for scenario, message in _MODELLED
        if names(message) not in _possible_field_lists(message.name)
    ]
    assert mismatches == []


def test_the_comparison_covers_the_events_the_daemon_reads() -> None:
    """The transcripts exercise the layouts of every call event the adapter consumes."""
    covered = {message.name for _, message in _MODELLED}
    assert covered >= {
        "Newchannel",
        "Newstate",
        "VarSet",
        "Newexten",
        "DialBegin",
        "DialState",
        "DialEnd",
        "BridgeCreate",
        "BridgeEnter",
        "BridgeLeave",
        "BridgeDestroy",
        "Hold",
        "Unhold",
        "MusicOnHoldStart",
        "MusicOnHoldStop",
        "ChannelTalkingStart",
        "ChannelTalkingStop",
        "DTMFBegin",
        "DTMFEnd",
        "HangupRequest",
        "SoftHangupRequest",
        "Hangup",
        "OriginateResponse",
        "ChanSpyStart",
        "ChanSpyStop",
        "LocalBridge",
        "CoreShowChannel",
        "Status",
        "AGIExecStart",
        "AGIExecEnd",
        "FullyBooted",
        "SuccessfulAuth",
        "RequestBadFormat",
    }


def test_privileges_are_those_captured() -> None:
    """Every captured event's Privilege header is the one the fake sends."""
    wrong = {
        (message.name, message.get("Privilege"))
        for _, message in _MODELLED
        if message.get("Privilege") is not None
        and message.get("Privilege") != tpl.PRIVILEGE[message.name]
    }
    assert wrong == set()


def test_cause_texts_are_those_captured() -> None:
    """Hangup's Cause-txt is Asterisk's text for each captured cause."""
    captured = {
        (int(message["Cause"]), message["Cause-txt"])
        for _, message in _TRACE_EVENTS
        if message.name == "Hangup"
    }
    assert {(cause, tpl.cause_text(cause)) for cause, _ in captured} == captured


def test_render_refuses_a_missing_required_field() -> None:
    """A layout field the caller forgot is a bug in the fake, reported at once."""
    with pytest.raises(tpl.TemplateError, match="Duration"):
        tpl.render("ChannelTalkingStop", channels={"{Chan}": _snapshot()})


def test_render_leaves_out_an_optional_field_without_a_value() -> None:
    """HangupRequest has a Cause only when one is given (05b vs 02b)."""
    fields = tpl.render("HangupRequest", channels={"{Chan}": _snapshot()})
    assert [name for name, _ in fields][-1] == "Linkedid"


def test_unknown_cli_command_output_names_the_first_two_words() -> None:
    """The Command error text matches 01c."""
    assert tpl.unknown_cli_output("this is not a cli command") == (
        "No such command 'this is not a cli command' "
        "(type 'core show help this is' for other possible commands)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1,B=2", ["A=1", "B=2"]),
        ("NAME=a\\,b", ["NAME=a,b"]),
        ('NAME="a,b"', ["NAME=a,b"]),
        ("F=x(1,2)", ["F=x(1,2)"]),
        ("a,", ["a", ""]),
        ("", []),
    ],
)
def test_separate_args_splits_like_asterisk(text: str, expected: list[str]) -> None:
    """Originate's Variable values are split as __ast_app_separate_args does."""
    assert separate_args(text) == expected


def test_caller_id_parsing_reads_name_and_number() -> None:
    """CallerID: "Dialer" <7000> (07a) gives the name and the number."""
    assert parse_caller_id('"Dialer" <7000>') == ("Dialer", "7000")
    assert parse_caller_id("7000") == ("", "7000")


def _snapshot() -> tpl.ChannelSnapshot:
    return tpl.ChannelSnapshot(
        channel="PJSIP/alice-00000000",
        state=tpl.STATE_UP,
        caller_num="alice",
        caller_name="",
        connected_num="",
        connected_name="",
        language="en",
        account_code="",
        context="from-ua",
        exten="600",
        priority=1,
        uniqueid="1795339236.0",
        linkedid="1795339236.0",
    )

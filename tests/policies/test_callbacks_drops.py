"""R7 abnormal-drop classifier: who ended first and with what cause (traces 08a-08c, FreeSWITCH 07)."""

from __future__ import annotations

import pytest

from pbx_agent.model import calls as cm
from pbx_agent.model.commands import CancelCallbacks, Note, RequestCallback
from pbx_agent.model.events import CallId, Direction, LegId, Role
from pbx_agent.policies.callbacks import (
    FREESWITCH_CAUSES,
    MEDIA_TIMEOUT_CAUSE,
    CallbackDropPolicy,
    DropReason,
    DropRules,
    cause_number,
    classify_drop,
)

T0 = 1_795_339_509.0
RULES = DropRules()


def end(
    leg: str,
    role: Role,
    cause: int | None,
    *,
    order: int,
    cause_text: str = "",
    answered: bool = True,
    media_timeout: bool = False,
    peer_cause: str = "",
) -> cm.LegEnd:
    return cm.LegEnd(
        leg=LegId(leg),
        role=role,
        answered=answered,
        cause=cause,
        cause_text=cause_text,
        tech_cause="",
        media_timeout=media_timeout,
        peer_cause=peer_cause,
        ended_at=T0 + order * 0.001,
        order=order,
        was_bridged=True,
    )


def test_both_legs_normal_clearing_is_a_normal_hangup() -> None:
    """08a: the callee sends BYE, both legs end with 16: no callback."""
    verdict = classify_drop(
        [
            end("erin", Role.AGENT, 16, order=0, cause_text="Normal Clearing"),
            end("alice", Role.CALLER, 16, order=1, cause_text="Normal Clearing"),
        ],
        RULES,
    )
    assert not verdict.abnormal
    assert verdict.reason is DropReason.NORMAL_HANGUP
    assert verdict.cause == 16


def test_an_agent_who_transferred_the_customer_does_not_decide_the_end() -> None:
    """Agent A hung up normally after transferring; the customer's leg then failed while
    talking to B: the call ended abnormally."""
    verdict = classify_drop(
        [
            end("agent-a", Role.AGENT, 16, order=0),
            end("alice", Role.CALLER, 44, order=1),
            end("agent-b", Role.AGENT, 16, order=2),
        ],
        RULES,
    )
    assert (verdict.abnormal, verdict.reason) == (True, DropReason.CALLER_LEG_FAILED)


def test_a_ringing_member_who_never_answered_does_not_decide_the_end() -> None:
    """A ringall queue member's leg ended unanswered (26) before the customer's failed."""
    verdict = classify_drop(
        [
            end("member-2", Role.AGENT, 26, order=0, answered=False),
            end("agent-1", Role.AGENT, 16, order=2),
            end("alice", Role.CALLER, 44, order=1),
        ],
        RULES,
    )
    assert (verdict.abnormal, verdict.reason) == (True, DropReason.CALLER_LEG_FAILED)


def test_a_dead_agent_phone_followed_by_a_normal_conversation_is_a_normal_end() -> None:
    """Agent A's phone died (44), the customer was served by B, and both hung up normally:
    the customer was served, no callback."""
    verdict = classify_drop(
        [
            end("agent-a", Role.AGENT, 44, order=0),
            end("alice", Role.CALLER, 16, order=1),
            end("agent-b", Role.AGENT, 16, order=2),
        ],
        RULES,
    )
    assert (verdict.abnormal, verdict.reason) == (False, DropReason.NORMAL_HANGUP)


def test_agent_leg_cleared_by_rtp_timeout_first_is_an_agent_device_drop() -> None:
    """08b: the dead leg ends first with 44, the survivor with 16: abnormal, cause 44."""
    verdict = classify_drop(
        [
            end("alice", Role.CALLER, 16, order=1, cause_text="Normal Clearing"),
            end("erin", Role.AGENT, 44, order=0, cause_text="Requested channel not available"),
        ],
        RULES,
    )
    assert verdict.abnormal
    assert verdict.reason is DropReason.AGENT_DEVICE_DROPPED
    assert verdict.cause == 44
    assert verdict.leg == "erin"


def test_customer_leg_cleared_by_rtp_timeout_first_is_a_caller_leg_failure() -> None:
    """08b mirrored: the customer's phone dies, its leg ends first with 44."""
    verdict = classify_drop(
        [
            end("alice", Role.CALLER, 44, order=0),
            end("erin", Role.AGENT, 16, order=1),
        ],
        RULES,
    )
    assert verdict.abnormal
    assert verdict.reason is DropReason.CALLER_LEG_FAILED
    assert verdict.role is Role.CALLER


def test_survivor_cause_alone_does_not_make_the_drop_abnormal_when_it_ended_first() -> None:
    """The first leg decides: a customer hanging up normally first is normal whatever follows."""
    verdict = classify_drop(
        [end("alice", Role.CALLER, 16, order=0), end("erin", Role.AGENT, 44, order=1)],
        RULES,
    )
    assert not verdict.abnormal
    assert verdict.reason is DropReason.NORMAL_HANGUP


def test_call_cleared_by_hand_without_rtp_timeout_is_normal() -> None:
    """08c: with no rtp_timeout the dead leg stays up until an AMI Hangup: both 16, normal."""
    verdict = classify_drop(
        [end("alice", Role.CALLER, 16, order=0), end("bob", Role.AGENT, 16, order=1)], RULES
    )
    assert not verdict.abnormal


def test_agent_device_drop_can_be_switched_off() -> None:
    """With agent_device_drop false an agent leg failure is noted but asks for no callback."""
    rules = DropRules(agent_device_drop=False)
    verdict = classify_drop(
        [end("erin", Role.AGENT, 44, order=0), end("alice", Role.CALLER, 16, order=1)], rules
    )
    assert not verdict.abnormal
    assert verdict.reason is DropReason.AGENT_DROP_NOT_COUNTED


def test_freeswitch_media_timeout_on_the_dead_leg_is_abnormal() -> None:
    """FreeSWITCH 07b: the B-leg ends MEDIA_TIMEOUT (q850 16) first."""
    verdict = classify_drop(
        [
            end("b", Role.AGENT, 16, order=0, cause_text="MEDIA_TIMEOUT", media_timeout=True),
            end(
                "a",
                Role.CALLER,
                16,
                order=1,
                cause_text="NORMAL_CLEARING",
                peer_cause="MEDIA_TIMEOUT",
            ),
        ],
        RULES,
    )
    assert verdict.abnormal
    assert verdict.cause == MEDIA_TIMEOUT_CAUSE
    assert verdict.cause_text == "MEDIA_TIMEOUT"


def test_freeswitch_survivor_bridge_hangup_cause_blames_its_peer() -> None:
    """If the survivor's hang-up is seen first, its bridge_hangup_cause names the dead peer."""
    verdict = classify_drop(
        [
            end(
                "a",
                Role.CALLER,
                16,
                order=0,
                cause_text="NORMAL_CLEARING",
                peer_cause="MEDIA_TIMEOUT",
            ),
            end("b", Role.AGENT, 16, order=1, cause_text="MEDIA_TIMEOUT"),
        ],
        RULES,
    )
    assert verdict.abnormal
    assert verdict.reason is DropReason.AGENT_DEVICE_DROPPED
    assert verdict.cause_text == "MEDIA_TIMEOUT"


def test_media_timeout_can_be_configured_as_normal() -> None:
    """media_timeout_abnormal false: a media timeout asks for no callback."""
    verdict = classify_drop(
        [
            end("a", Role.CALLER, 16, order=0, cause_text="MEDIA_TIMEOUT", media_timeout=True),
            end("b", Role.AGENT, 16, order=1),
        ],
        DropRules(media_timeout_abnormal=False),
    )
    assert not verdict.abnormal


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("USER_BUSY", 17),
        ("CALL_REJECTED", 21),
        ("NO_ANSWER", 19),
        ("NORMAL_TEMPORARY_FAILURE", 41),
        ("ALLOTTED_TIMEOUT", 602),
        ("MEDIA_TIMEOUT", 604),
        ("ORIGINATOR_CANCEL", 487),
        ("NORMAL_CLEARING", 16),
    ],
)
def test_freeswitch_cause_names_map_to_their_numbers(name: str, number: int) -> None:
    """One number space: FreeSWITCH names become Q.850 (or FreeSWITCH's own > 127) numbers."""
    assert cause_number(16, name) == number
    assert FREESWITCH_CAUSES[name] == number


def test_asterisk_cause_text_leaves_the_number_alone() -> None:
    """Asterisk's Cause-txt is prose, not a FreeSWITCH name: the Q.850 number stands."""
    assert cause_number(44, "Requested channel not available") == 44


def test_freeswitch_temporary_failure_first_is_abnormal() -> None:
    """NORMAL_TEMPORARY_FAILURE is 41, in the default abnormal list."""
    verdict = classify_drop(
        [
            end("a", Role.CALLER, None, order=0, cause_text="NORMAL_TEMPORARY_FAILURE"),
            end("b", Role.AGENT, None, order=1, cause_text="NORMAL_CLEARING"),
        ],
        RULES,
    )
    assert verdict.abnormal
    assert verdict.cause == 41


def test_busy_is_not_an_abnormal_drop() -> None:
    """A party's choice (17 busy) is not a failure."""
    verdict = classify_drop(
        [end("a", Role.CALLER, 17, order=0), end("b", Role.AGENT, 16, order=1)], RULES
    )
    assert not verdict.abnormal


def test_configured_cause_list_is_used() -> None:
    """A site that counts 127 as abnormal gets a callback for it."""
    verdict = classify_drop(
        [end("a", Role.CALLER, 127, order=0), end("b", Role.AGENT, 16, order=1)],
        DropRules(abnormal_causes=frozenset({127})),
    )
    assert verdict.abnormal
    assert verdict.cause == 127


def test_a_freeswitch_cause_above_127_can_be_configured_as_abnormal() -> None:
    """[standards.callbacks] abnormal_causes = [..., 613]: FreeSWITCH's SRTP_READ_ERROR on
    the customer's leg is a drop (its own numbers, above Q.850's 127, are accepted)."""
    from pbx_agent.config.settings import resolve_standards  # noqa: PLC0415

    standards = resolve_standards("ru", "", {"callbacks": {"abnormal_causes": [44, 613]}})
    verdict = classify_drop(
        [
            end("alice", Role.CALLER, None, order=0, cause_text="SRTP_READ_ERROR"),
            end("bob", Role.AGENT, 16, order=1),
        ],
        DropRules.from_standards(standards),
    )
    assert (verdict.abnormal, verdict.cause) == (True, 613)


def test_unknown_cause_is_not_abnormal() -> None:
    """Cause 0 (an AMI Hangup without Cause) tells nothing: no callback, reason says so."""
    verdict = classify_drop(
        [end("a", Role.CALLER, 0, order=0), end("b", Role.AGENT, 16, order=1)], RULES
    )
    assert not verdict.abnormal
    assert verdict.reason is DropReason.CAUSE_UNKNOWN


def test_call_without_an_agent_conversation_is_not_a_drop() -> None:
    """A failure in the IVR or queue (no agent answered) is not an interrupted conversation."""
    verdict = classify_drop([end("a", Role.CALLER, 38, order=0)], RULES)
    assert not verdict.abnormal
    assert verdict.reason is DropReason.NO_CONVERSATION


def test_agent_conversation_requirement_can_be_lifted() -> None:
    """require_agent_conversation false: a customer leg failing in the IVR counts."""
    verdict = classify_drop(
        [end("a", Role.CALLER, 38, order=0)], DropRules(require_agent_conversation=False)
    )
    assert verdict.abnormal


def test_unanswered_customer_leg_is_not_a_drop() -> None:
    """A caller who was never answered was not in a conversation."""
    verdict = classify_drop(
        [end("a", Role.CALLER, 38, order=0, answered=False), end("b", Role.AGENT, 16, order=1)],
        RULES,
    )
    assert verdict.reason is DropReason.NO_CONVERSATION


def test_helper_leg_ending_first_is_ignored() -> None:
    """The daemon's own whisper channel ending first says nothing about the parties."""
    verdict = classify_drop(
        [
            end("w", Role.HELPER, 44, order=0),
            end("a", Role.CALLER, 16, order=1),
            end("b", Role.AGENT, 16, order=2),
        ],
        RULES,
    )
    assert not verdict.abnormal


def test_one_way_audio_counts_only_where_configured() -> None:
    """The R2 one-way-audio drop asks for a callback in the zh profile, not otherwise."""
    legs = [end("a", Role.CALLER, 16, order=0), end("b", Role.AGENT, 16, order=1)]
    zh = classify_drop(legs, DropRules(one_way_audio=True), one_way_audio=True)
    ru = classify_drop(legs, DropRules(one_way_audio=False), one_way_audio=True)
    assert zh.abnormal
    assert zh.reason is DropReason.ONE_WAY_AUDIO
    assert not ru.abnormal


def test_verdict_description_names_reason_role_and_cause() -> None:
    """The logged reason carries the cause that drove the decision."""
    verdict = classify_drop(
        [
            end("erin", Role.AGENT, 44, order=0, cause_text="Requested channel not available"),
            end("alice", Role.CALLER, 16, order=1),
        ],
        RULES,
    )
    assert verdict.describe() == (
        "agent_device_dropped on the agent leg cause 44 (Requested channel not available)"
    )


# ------------------------------------------------------------------ the per-call policy


def call_with(direction: Direction = Direction.INBOUND, origin: str | None = None) -> cm.Call:
    caller = cm.Leg(
        id=LegId("alice"),
        call=CallId("alice"),
        channel="PJSIP/alice-0001",
        endpoint="PJSIP/alice",
        caller_number="8 916 123-45-67",
        caller_name="",
        dialed="600",
        direction=direction,
        origin=origin,
        created_at=T0,
        role=Role.CALLER,
    )
    return cm.Call(id=CallId("alice"), started_at=T0, legs={caller.id: caller}, caller=caller.id)


def test_policy_cancels_callbacks_when_a_customer_calls_in_and_reaches_an_agent() -> None:
    """An inbound customer call that reaches an agent asks the service to cancel pending
    callbacks to the number, once."""
    policy = CallbackDropPolicy()
    call = call_with()
    state = policy.start(call, T0)
    assert state is not None
    state, commands = policy.step(state, cm.CallStarted(call.id), call, T0)
    assert commands == []
    connected = cm.PartiesConnected(call.id, LegId("alice"), LegId("bob"))
    state, commands = policy.step(state, connected, call, T0 + 40)
    assert commands == [
        CancelCallbacks(
            number="8 916 123-45-67",
            reason="the customer called in and reached an agent",
            trigger_call=call.id,
        )
    ]
    _, again = policy.step(state, connected, call, T0 + 90)  # a transfer: no second cancel
    assert again == []


def test_a_customer_who_gives_up_in_the_queue_keeps_the_callback() -> None:
    """Called in, never reached an agent, hung up: the pending callback is not cancelled."""
    policy = CallbackDropPolicy()
    call = call_with()
    state = policy.start(call, T0)
    assert state is not None
    state, commands = policy.step(state, cm.CallStarted(call.id), call, T0)
    legs = (end("alice", Role.CALLER, 16, order=0),)
    _, more = policy.step(state, cm.CallEnded(call.id, legs, T0 + 25), call, T0 + 25)
    assert not any(isinstance(c, CancelCallbacks) for c in [*commands, *more])


def test_policy_does_not_cancel_on_a_callback_attempt() -> None:
    """The daemon's own callback call (origin set) is not the customer calling in."""
    policy = CallbackDropPolicy()
    call = call_with(direction=Direction.OUTBOUND, origin="callback")
    state = policy.start(call, T0)
    assert state is not None
    connected = cm.PartiesConnected(call.id, LegId("alice"), LegId("bob"))
    _, commands = policy.step(state, connected, call, T0)
    assert commands == []


def test_policy_requests_a_callback_after_an_abnormal_end() -> None:
    """CallEnded with the agent's leg failing first becomes a RequestCallback with the cause."""
    policy = CallbackDropPolicy()
    call = call_with()
    state = policy.start(call, T0)
    assert state is not None
    legs = (end("bob", Role.AGENT, 44, order=0), end("alice", Role.CALLER, 16, order=1))
    _, commands = policy.step(state, cm.CallEnded(call.id, legs, T0), call, T0)
    assert len(commands) == 1
    command = commands[0]
    assert isinstance(command, RequestCallback)
    assert command.cause == "44"
    assert command.reason.startswith("agent_device_dropped")


def test_policy_notes_the_cause_when_no_callback_is_needed() -> None:
    """A normal end is a logged ``no_callback`` decision with its cause."""
    policy = CallbackDropPolicy()
    call = call_with()
    state = policy.start(call, T0)
    assert state is not None
    legs = (end("alice", Role.CALLER, 16, order=0), end("bob", Role.AGENT, 16, order=1))
    _, commands = policy.step(state, cm.CallEnded(call.id, legs, T0), call, T0)
    assert commands == [
        Note(
            action="no_callback",
            reason="normal_hangup on the caller leg cause 16",
            fields={"cause": 16, "cause_text": ""},
        )
    ]

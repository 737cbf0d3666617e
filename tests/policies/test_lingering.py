"""R3 lingering after the farewell: the agent is freed, the daemon asks, closes, drops or requeues."""

from __future__ import annotations

import pytest

from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.policies.lingering import LingeringPolicy
from tests.policies.call_driver import AGENT, CALL, CALLER, T0, CallDriver, standards

FAREWELL = "pbxagent_farewell"
PRESS = T0 + 60


def pressed(profile: str = "ru", **overrides: object) -> CallDriver:
    """A connected call whose agent presses the farewell feature code at PRESS."""
    d = CallDriver(LingeringPolicy(prompt_guard_s=30), standards(profile, **overrides))
    d.connect(at=T0)
    d.handle(ev.FeatureRequested(AGENT, FAREWELL), at=PRESS)
    return d


def freed(profile: str = "ru") -> CallDriver:
    """``pressed``, and the switch carried out the press: the caller left the agent's bridge
    for the linger destination and the agent's leg hung up."""
    d = pressed(profile)
    d.handle_all([ev.LegLeftBridge(CALLER, "b1"), ev.LegHungUp(AGENT, 16)])
    return d


def redirects(d: CallDriver) -> list[cmd.Redirect]:
    return [c for _, c in d.of_type(cmd.Redirect)]


def test_farewell_moves_the_caller_to_linger_and_frees_the_agent_at_once() -> None:
    """At the press: the caller goes to the linger destination, then the agent's leg is hung up."""
    d = pressed()
    assert [(i.at, type(i.command).__name__) for i in d.issued[:2]] == [
        (PRESS, "Redirect"),
        (PRESS, "HangupLeg"),
    ]
    redirect, hangup = d.issued[0].command, d.issued[1].command
    assert isinstance(redirect, cmd.Redirect)
    assert isinstance(hangup, cmd.HangupLeg)
    assert (redirect.leg, redirect.target, hangup.leg) == (CALLER, "linger", AGENT)


def test_question_is_asked_to_the_caller_alone_after_ask_after_s() -> None:
    """ru: 2.5 s after the farewell, "Я Вам могу еще чем-нибудь помочь?" to the caller only."""
    d = pressed()
    d.after(10)
    ((at, play),) = d.of_type(cmd.PlayPrompt)
    assert (at, play.prompt) == (pytest.approx(PRESS + 2.5, abs=1e-6), "linger.ask")
    assert (play.leg, play.audience) == (CALLER, cmd.Audience.LEG)


def test_silent_caller_hears_the_closing_phrase_and_is_dropped() -> None:
    """Silence after the question: closing phrase after answer_wait_s, drop 2.5 s after it."""
    d = pressed()
    d.after(3)
    d.prompt_finished("linger.ask", after_s=1.8)
    asked = PRESS + 2.5 + 1.8
    d.after(5)
    d.prompt_finished("linger.closing", after_s=4.0)
    closed = asked + 3.0 + 4.0
    d.after(10)
    assert d.prompts() == [
        (pytest.approx(PRESS + 2.5, abs=1e-6), "linger.ask"),
        (pytest.approx(asked + 3.0, abs=1e-6), "linger.closing"),
    ]
    ((at, hangup),) = d.of_type(cmd.HangupCall)
    assert (at, hangup.call) == (pytest.approx(closed + 2.5, abs=1e-6), CALL)
    (note,) = d.notes("lingering_drop")
    assert note.fields["silences_s"] == [2.5, 3.0, 2.5]


def test_caller_speech_after_the_question_sends_them_back_to_the_queue_with_priority() -> None:
    """Any speech continues the conversation: back to the queue ahead of new callers."""
    d = pressed()
    d.after(3)
    d.prompt_finished("linger.ask", after_s=1.8)
    d.speech(CALLER, d.now + 0.5, d.now + 0.9)
    d.after(30)
    assert [r.target for r in redirects(d)] == ["linger", "requeue"]
    assert dict(redirects(d)[1].params) == {"PBXAGENT_REQUEUE_PRIORITY": "10"}
    assert [p for _, p in d.prompts()] == ["linger.ask"]
    assert d.of_type(cmd.HangupCall) == []


def test_requeue_names_the_queue_the_caller_came_from() -> None:
    """When the queue is known the requeue destination is told which one."""
    d = CallDriver(LingeringPolicy(requeue_priority=7), standards())
    d.connect(at=T0)
    d.handle(ev.AgentConnected(CALLER, AGENT, "agent-1001", "support"))
    d.handle(ev.FeatureRequested(AGENT, FAREWELL), at=PRESS)
    d.speech(CALLER, PRESS + 1.0, PRESS + 2.0)
    assert dict(redirects(d)[1].params) == {
        "PBXAGENT_REQUEUE_PRIORITY": "7",
        "PBXAGENT_REQUEUE_QUEUE": "support",
    }


def test_caller_speech_before_the_question_requeues_without_asking() -> None:
    """A caller who speaks right after the farewell has a question: no prompt, back to the queue."""
    d = pressed()
    d.speech(CALLER, PRESS + 0.5, PRESS + 1.5)
    d.after(30)
    assert d.prompts() == []
    assert [r.target for r in redirects(d)] == ["linger", "requeue"]


def test_the_callers_goodbye_over_the_press_is_not_taken_for_a_question() -> None:
    """ "Спасибо, до свидания" from 1 s before the press to 0.1 s after it (the detector's
    Duration: 1100 ms): only the 100 ms after the press could be an answer, and that is noise.
    The caller is asked, not sent back to the queue."""
    d = CallDriver(LingeringPolicy(prompt_guard_s=30), standards("ru"))
    d.connect(at=T0)
    d.handle(ev.TalkingStarted(CALLER), at=PRESS - 1.0 + 0.02)
    d.handle(ev.FeatureRequested(AGENT, FAREWELL), at=PRESS)
    d.handle(ev.TalkingStopped(CALLER, 300, 1100), at=PRESS + 0.1 + 0.3)
    d.after(10)
    assert [r.target for r in redirects(d)] == ["linger"]
    assert [p for _, p in d.prompts()] == ["linger.ask"]


def test_the_caller_still_talking_well_after_the_press_is_heard() -> None:
    """Speech that began before the press and goes on 1 s after it is an answer: requeued."""
    d = CallDriver(LingeringPolicy(prompt_guard_s=30), standards("ru"))
    d.connect(at=T0)
    d.handle(ev.TalkingStarted(CALLER), at=PRESS - 0.5)
    d.handle(ev.FeatureRequested(AGENT, FAREWELL), at=PRESS)
    d.handle(ev.TalkingStopped(CALLER, 300, 1500), at=PRESS + 1.0 + 0.3)
    d.after(10)
    assert d.prompts() == []
    assert [r.target for r in redirects(d)] == ["linger", "requeue"]


def test_caller_speech_after_the_closing_phrase_requeues_instead_of_dropping() -> None:
    """Speech in the last 2-3 s still continues the conversation."""
    d = pressed()
    d.after(3)
    d.prompt_finished("linger.ask", after_s=1.8)
    d.after(4)
    d.prompt_finished("linger.closing", after_s=4.0)
    d.speech(CALLER, d.now + 1.0, d.now + 1.5)
    d.after(30)
    assert d.of_type(cmd.HangupCall) == []
    assert redirects(d)[-1].target == "requeue"


def test_noise_after_the_question_is_not_taken_as_an_answer() -> None:
    """A burst shorter than the noise floor neither requeues nor moves the closing phrase."""
    d = pressed()
    d.after(3)
    d.prompt_finished("linger.ask", after_s=1.8)
    asked = d.now
    d.speech(CALLER, asked + 0.5, asked + 0.6)
    d.after(10)
    assert [r.target for r in redirects(d)] == ["linger"]
    assert d.prompts()[1] == (pytest.approx(asked + 3.0, abs=1e-6), "linger.closing")


def test_requeued_caller_is_handled_again_after_the_next_agent_says_farewell() -> None:
    """Back from the queue with a new agent, a second farewell starts the procedure again."""
    d = pressed()
    d.speech(CALLER, PRESS + 0.5, PRESS + 1.5)
    second = ev.LegId("c.3")
    d.handle_all(
        [
            ev.LegHungUp(AGENT, 16),
            ev.LegLeftBridge(CALLER, "b1"),
            ev.LegCreated(
                second,
                CALL,
                "PJSIP/agent-1002-00000003",
                "PJSIP/agent-1002",
                "100",
                "",
                "",
                ev.Direction.OUTBOUND,
            ),
            ev.LegJoinedBridge(second, "b2"),
            ev.LegJoinedBridge(CALLER, "b2"),
        ]
    )
    d.handle(ev.FeatureRequested(second, FAREWELL), at=PRESS + 120)
    assert [r.target for r in redirects(d)] == ["linger", "requeue", "linger"]
    assert [c.leg for _, c in d.of_type(cmd.HangupLeg)] == [AGENT, second]


def test_caller_hanging_up_after_the_farewell_ends_the_procedure() -> None:
    """The caller closing the call is what the standard wants: noted, nothing more is played."""
    d = pressed()
    d.handle(ev.LegHungUp(CALLER, 16), at=PRESS + 1.2)
    d.after(30)
    assert d.prompts() == []
    (note,) = d.notes("lingering_caller_left")
    assert note.fields["after_farewell_s"] == pytest.approx(1.2, abs=1e-6)


def test_farewell_code_from_the_caller_is_ignored() -> None:
    """Only the agent may end the conversation with the farewell code."""
    d = CallDriver(LingeringPolicy(), standards())
    d.connect(at=T0)
    d.handle(ev.FeatureRequested(CALLER, FAREWELL), at=PRESS)
    d.after(30)
    assert d.issued == []


def test_script_feature_codes_are_not_a_farewell() -> None:
    """An R4 script's code does not start the lingering procedure."""
    d = CallDriver(LingeringPolicy(), standards())
    d.connect(at=T0)
    d.handle(ev.FeatureRequested(AGENT, "pbxagent_abuse"), at=PRESS)
    assert d.issued == []


def test_farewell_before_the_parties_are_connected_is_ignored() -> None:
    """No conversation, no lingering."""
    d = CallDriver(LingeringPolicy(), standards())
    d.handle_all(
        [
            ev.LegCreated(
                CALLER,
                CALL,
                "PJSIP/alice-00000001",
                "PJSIP/alice",
                "7916",
                "",
                "100",
                ev.Direction.INBOUND,
            ),
            ev.LegCreated(
                AGENT,
                CALL,
                "PJSIP/agent-1001-00000002",
                "PJSIP/agent-1001",
                "100",
                "",
                "",
                ev.Direction.OUTBOUND,
            ),
            ev.FeatureRequested(AGENT, FAREWELL),
        ]
    )
    assert d.issued == []


def test_question_that_fails_to_play_sends_the_caller_back_to_the_queue() -> None:
    """The caller is neither left in silence nor dropped without the closing phrase."""
    d = pressed()
    d.until_prompt()
    d.prompt_finished("linger.ask", after_s=0.2, ok=False)
    d.after(30)
    assert redirects(d)[-1].target == "requeue"
    assert d.of_type(cmd.HangupCall) == []


def test_disabled_rule_leaves_the_call_to_the_agent() -> None:
    """``lingering.enabled = false``: the press is noted and nothing is done."""
    d = pressed(lingering={"enabled": False})
    assert d.actions() == ["lingering_disabled"]


def test_caller_connected_to_an_agent_while_lingering_stops_the_procedure() -> None:
    """If the dialplan hands the caller to an agent itself, the daemon stops speaking to them."""
    d = pressed()
    second = ev.LegId("c.3")
    d.handle_all(
        [
            ev.LegHungUp(AGENT, 16),
            ev.LegLeftBridge(CALLER, "b1"),
            ev.LegCreated(
                second,
                CALL,
                "PJSIP/agent-1002-00000003",
                "PJSIP/agent-1002",
                "100",
                "",
                "",
                ev.Direction.OUTBOUND,
            ),
            ev.LegJoinedBridge(second, "b2"),
            ev.LegJoinedBridge(CALLER, "b2"),
        ]
    )
    d.after(30)
    assert d.prompts() == []
    assert d.notes("lingering_stopped")


def test_losing_the_pbx_link_while_lingering_never_drops_the_caller() -> None:
    """The link drops before the question: nothing is said and nobody is dropped on a
    silence the daemon could not hear."""
    d = freed()
    d.lose_link(at=PRESS + 1.0)
    d.after(60)
    assert d.prompts() == []
    assert d.of_type(cmd.HangupCall) == []
    (note,) = d.notes("lingering_unheard")
    assert note.fields["farewell_at"] == PRESS


def test_caller_lingering_when_the_link_is_back_goes_back_to_the_queue() -> None:
    """Lost after the question: the caller may have answered, so once the link is back they
    go back to the queue with priority rather than wait in silence or be dropped."""
    d = freed()
    d.after(3)
    d.lose_link(at=PRESS + 3.0)
    d.restore_link(at=PRESS + 4.0)
    d.after(60)
    assert [p for _, p in d.prompts()] == ["linger.ask"]
    assert [(at, r.target) for at, r in d.of_type(cmd.Redirect)] == [
        (PRESS, "linger"),
        (PRESS + 4.0, "requeue"),
    ]
    assert dict(redirects(d)[1].params) == {"PBXAGENT_REQUEUE_PRIORITY": "10"}
    assert d.of_type(cmd.HangupCall) == []


def test_a_farewell_lost_with_the_link_leaves_the_caller_with_the_agent() -> None:
    """The link dropped as the farewell was pressed and took its redirect and hang-up with
    it: when it is back the caller is still with the agent, so nothing is said or requeued."""
    d = pressed()
    d.lose_link(at=PRESS + 0.05)
    d.restore_link(at=PRESS + 1.0)
    d.after(60)
    assert d.prompts() == []
    assert [r.target for r in redirects(d)] == ["linger"]
    assert d.of_type(cmd.HangupCall) == []

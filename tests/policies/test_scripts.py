"""R4 scripts: each press of a script's code says its next step; the last one drops the call."""

from __future__ import annotations

import pytest

from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.policies.scripts import ScriptsPolicy
from tests.policies.call_driver import AGENT, CALL, CALLER, T0, CallDriver, standards

ABUSE = "pbxagent_abuse"


def connected(profile: str = "ru", **overrides: object) -> CallDriver:
    d = CallDriver(ScriptsPolicy(prompt_guard_s=30), standards(profile, **overrides))
    d.connect(at=T0)
    return d


def press(d: CallDriver, feature: str, *, at: float, plays_s: float | None = 5.0) -> None:
    """The agent presses ``feature`` at ``at``; the step then plays for ``plays_s``."""
    before = len(d.prompts())
    d.handle(ev.FeatureRequested(AGENT, feature), at=at)
    prompts = d.prompts()
    if plays_s is not None and len(prompts) > before:
        d.prompt_finished(prompts[-1][1], after_s=plays_s)


def test_each_press_says_the_next_abuse_step_to_both_parties() -> None:
    """ru abuse: warning, warning, farewell, each at its press, heard by caller and agent."""
    d = connected()
    for at in (T0 + 10, T0 + 30, T0 + 50):
        press(d, ABUSE, at=at)
    assert d.prompts() == [
        (T0 + 10, "abuse.warning"),
        (T0 + 30, "abuse.warning"),
        (T0 + 50, "abuse.farewell"),
    ]
    assert {(c.leg, c.audience) for _, c in d.of_type(cmd.PlayPrompt)} == {
        (CALLER, cmd.Audience.BOTH)
    }


def test_abuse_farewell_drops_the_call_and_flags_the_number() -> None:
    """After the third step has played: the number is flagged (R9) and both legs hung up."""
    d = connected()
    for at in (T0 + 10, T0 + 30, T0 + 50):
        press(d, ABUSE, at=at)
    ((flag_at, flag),) = d.of_type(cmd.FlagNumber)
    ((hangup_at, hangup),) = d.of_type(cmd.HangupCall)
    assert (flag.number, flag.set_by, flag.trigger_call) == ("79161234567", "R4", CALL)
    assert "abuse" in flag.reason
    assert hangup.call == CALL
    assert flag_at == hangup_at == pytest.approx(T0 + 55, abs=1e-6)


def test_drop_comes_only_after_the_farewell_has_played() -> None:
    """The caller hears the whole farewell before the line is cut."""
    d = connected()
    press(d, ABUSE, at=T0 + 10)
    press(d, ABUSE, at=T0 + 30)
    press(d, ABUSE, at=T0 + 50, plays_s=None)
    d.after(10)
    assert d.of_type(cmd.HangupCall) == []


def test_recording_starts_at_the_first_warning_and_only_once() -> None:
    """abuse is recorded from its first step (evidence); later steps do not restart it."""
    d = connected()
    for at in (T0 + 10, T0 + 30, T0 + 50):
        press(d, ABUSE, at=at)
    ((at, recording),) = d.of_type(cmd.StartRecording)
    assert (at, recording.call) == (T0 + 10, CALL)
    assert d.actions().index("start_recording") < d.actions().index("play_prompt")


def test_script_not_marked_for_recording_records_nothing_and_flags_nothing() -> None:
    """ru off-topic: question, farewell, drop; no recording, no flag."""
    d = connected()
    press(d, "pbxagent_offtopic", at=T0 + 10)
    press(d, "pbxagent_offtopic", at=T0 + 30)
    assert [p for _, p in d.prompts()] == ["offtopic.question", "offtopic.farewell"]
    assert d.of_type(cmd.StartRecording) == []
    assert d.of_type(cmd.FlagNumber) == []
    assert len(d.of_type(cmd.HangupCall)) == 1


def test_prank_is_one_phrase_then_the_drop() -> None:
    """ru prank: a single step, after which the call is dropped and the number flagged."""
    d = connected()
    press(d, "pbxagent_prank", at=T0 + 10, plays_s=4.0)
    assert [p for _, p in d.prompts()] == ["prank.farewell"]
    assert [at for at, _ in d.of_type(cmd.HangupCall)] == [pytest.approx(T0 + 14, abs=1e-6)]
    assert len(d.of_type(cmd.FlagNumber)) == 1


@pytest.mark.parametrize(
    ("feature", "prompts"),
    [
        ("pbxagent_guessing", ["guessing.question", "guessing.number", "guessing.farewell"]),
        ("pbxagent_circling", ["circling.options", "circling.warning", "circling.farewell"]),
        ("pbxagent_outage", ["outage.info", "outage.warning", "outage.farewell"]),
    ],
)
def test_three_step_ru_scripts_play_in_order_and_drop(feature: str, prompts: list[str]) -> None:
    """Every three-step script of seed 000 plays its steps in order and ends the call."""
    d = connected()
    for i in range(3):
        press(d, feature, at=T0 + 10 + 20 * i)
    assert [p for _, p in d.prompts()] == prompts
    assert len(d.of_type(cmd.HangupCall)) == 1


def test_zh_abuse_ends_after_two_warnings() -> None:
    """zh §10: two reminders, then the call ends."""
    d = connected("zh")
    for at in (T0 + 10, T0 + 30, T0 + 50):
        press(d, ABUSE, at=at)
    assert [p for _, p in d.prompts()] == ["abuse.warning", "abuse.warning", "abuse.farewell"]
    assert len(d.of_type(cmd.HangupCall)) == 1


def test_press_while_a_step_plays_is_ignored() -> None:
    """A double press never skips a warning."""
    d = connected()
    press(d, ABUSE, at=T0 + 10, plays_s=None)
    press(d, ABUSE, at=T0 + 11, plays_s=None)
    assert [p for _, p in d.prompts()] == ["abuse.warning"]
    assert d.notes("script_press_ignored")


def test_steps_are_counted_per_script() -> None:
    """An off-topic press after an abuse warning starts the off-topic script at its first step."""
    d = connected()
    press(d, ABUSE, at=T0 + 10)
    press(d, "pbxagent_offtopic", at=T0 + 30)
    press(d, ABUSE, at=T0 + 50)
    assert [p for _, p in d.prompts()] == [
        "abuse.warning",
        "offtopic.question",
        "abuse.warning",
    ]
    assert d.of_type(cmd.HangupCall) == []


def test_step_that_fails_to_play_does_not_count_and_the_agent_is_told() -> None:
    """A warning the caller did not hear is not a warning: the next press repeats it."""
    d = connected()
    d.handle(ev.FeatureRequested(AGENT, ABUSE), at=T0 + 10)
    d.prompt_finished("abuse.warning", after_s=0.1, ok=False)
    ((_, alert),) = d.of_type(cmd.AlertAgent)
    assert (alert.leg, alert.alert) == (AGENT, "script_step_failed")
    press(d, ABUSE, at=T0 + 20)
    press(d, ABUSE, at=T0 + 40)
    assert [p for _, p in d.prompts()] == ["abuse.warning"] * 3
    assert d.of_type(cmd.HangupCall) == []


def test_step_without_an_end_report_does_not_count_after_the_guard() -> None:
    """A lost end-of-prompt report frees the script after the guard; the step is not counted."""
    d = connected()
    d.handle(ev.FeatureRequested(AGENT, "pbxagent_prank"), at=T0 + 10)
    d.after(31)
    assert d.notes("script_step_failed")
    assert d.of_type(cmd.HangupCall) == []


def test_every_step_is_logged_with_its_press_and_end_times() -> None:
    """Evidence: each step's press and end, and the whole history on the drop."""
    d = connected()
    for at in (T0 + 10, T0 + 30, T0 + 50):
        press(d, ABUSE, at=at, plays_s=4.0)
    played = d.notes("script_step_played")
    assert [(n.fields["pressed_at"], n.fields["played_at"]) for n in played] == [
        (T0 + 10, T0 + 14),
        (T0 + 30, T0 + 34),
        (T0 + 50, T0 + 54),
    ]
    (drop,) = d.notes("script_drop")
    assert [s["step"] for s in drop.fields["steps"]] == [1, 2, 3]


def test_caller_pressing_a_script_code_is_ignored() -> None:
    """Only the agent can run a script."""
    d = connected()
    d.handle(ev.FeatureRequested(CALLER, ABUSE), at=T0 + 10)
    assert d.issued == []


def test_farewell_code_is_not_a_script() -> None:
    """The farewell belongs to R3."""
    d = connected()
    d.handle(ev.FeatureRequested(AGENT, "pbxagent_farewell"), at=T0 + 10)
    assert d.issued == []


def test_flags_disabled_drop_without_flagging() -> None:
    """With R9 off an abuse drop flags nothing."""
    d = connected(flags={"enabled": False})
    for at in (T0 + 10, T0 + 30, T0 + 50):
        press(d, ABUSE, at=at)
    assert d.of_type(cmd.FlagNumber) == []
    assert len(d.of_type(cmd.HangupCall)) == 1


def test_withheld_number_is_dropped_and_the_missing_flag_noted() -> None:
    """No number to flag: the drop still happens and the reason is logged."""
    d = CallDriver(ScriptsPolicy(), standards())
    d.run_until(T0)
    d.handle_all(
        [
            ev.LegCreated(
                CALLER,
                CALL,
                "PJSIP/alice-00000001",
                "PJSIP/alice",
                "",
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
            ev.LegJoinedBridge(AGENT, "b1"),
            ev.LegJoinedBridge(CALLER, "b1"),
        ]
    )
    press(d, "pbxagent_prank", at=T0 + 10)
    assert d.of_type(cmd.FlagNumber) == []
    assert d.notes("flag_skipped")
    assert len(d.of_type(cmd.HangupCall)) == 1


def test_press_before_the_parties_are_connected_is_ignored() -> None:
    """No caller in the conversation: nothing to say, noted."""
    d = CallDriver(ScriptsPolicy(), standards())
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
            ev.LegVariable(AGENT, "PBXAGENT_ROLE", "agent"),
            ev.FeatureRequested(AGENT, ABUSE),
        ]
    )
    assert d.prompts() == []
    assert d.notes("script_press_ignored")


def test_standards_with_fewer_steps_mid_call_make_the_next_press_the_farewell() -> None:
    """Two warnings said, then the call's standards change (a new queue, a reload) to a
    two-step abuse script: the next press says its farewell and drops the call."""
    d = connected()
    press(d, ABUSE, at=T0 + 10)
    press(d, ABUSE, at=T0 + 30)
    assert d.call is not None
    d.call.standards = standards(
        "ru", scripts={"abuse": {"steps": ["abuse.warning", "abuse.farewell"]}}
    )
    press(d, ABUSE, at=T0 + 50)
    assert [p for _, p in d.prompts()][-1] == "abuse.farewell"
    assert [c.call for _, c in d.of_type(cmd.HangupCall)] == [CALL]


def test_a_press_while_the_agent_consults_a_colleague_is_ignored() -> None:
    """The agent left the caller's bridge (an attended transfer's consultation): nothing is
    said, nothing dropped (the drop would end the colleague's leg too)."""
    d = connected()
    d.handle(ev.LegLeftBridge(AGENT, "b1"), at=T0 + 5)
    d.handle(ev.LegJoinedBridge(AGENT, "b2"), at=T0 + 5)
    press(d, "pbxagent_prank", at=T0 + 10)
    assert d.prompts() == []
    assert d.notes("script_press_ignored")
    assert d.of_type(cmd.HangupCall) == []


def test_an_agent_who_left_during_the_farewell_is_not_dropped_with_the_caller() -> None:
    """The farewell plays, the agent steps away to consult: only the caller's leg is ended."""
    d = connected()
    press(d, "pbxagent_prank", at=T0 + 10, plays_s=None)
    d.handle(ev.LegLeftBridge(AGENT, "b1"), at=T0 + 12)
    d.handle(ev.LegJoinedBridge(AGENT, "b2"), at=T0 + 12)
    d.prompt_finished(d.prompts()[-1][1], after_s=5.0)
    assert d.of_type(cmd.HangupCall) == []
    assert [c.leg for _, c in d.of_type(cmd.HangupLeg)] == [CALLER]

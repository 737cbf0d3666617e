"""R1 hold policy: announcements, reminders, thanks, tier limits, the callback offer and the
hold record, driven through the real call model with explicit times (no event loop)."""

from __future__ import annotations

import pytest

from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.commands import Audience, HoldAnnouncement
from pbx_agent.model.events import Direction, LegId
from pbx_agent.policies.hold import HoldPolicy
from tests.engine.builders import created
from tests.policies.r1_runner import AGENT, CALL, CALLER, T0, R1Runner, of, pbx_and_service


def runner(profile: str = "ru", number: str = "79161234567", **kwargs: object) -> R1Runner:
    r = R1Runner(HoldPolicy(), profile=profile, **kwargs)  # type: ignore[arg-type]
    r.connect(number=number)
    return r


def program(commands: list[cmd.Command]) -> cmd.StartHoldProgram:
    (started,) = of(commands, cmd.StartHoldProgram)
    return started


def offsets(started: cmd.StartHoldProgram, prompt: str) -> list[float]:
    return [a.at_s for a in started.announcements if a.prompt == prompt]


def hold_facts(r: R1Runner) -> list[dict[str, object]]:
    return [
        dict(c.fields) for _, c in r.issued if isinstance(c, cmd.RecordFact) and c.kind == "hold"
    ]


# ------------------------------------------------------------------ hold starts


def test_held_customer_hears_the_announcement_at_once() -> None:
    """Hold of the customer starts a program on the customer's leg with the announce phrase at 0 s."""
    r = runner()
    started = program(r.agent_holds(5))
    assert started.leg == CALLER
    assert started.started_at == T0 + 5
    assert started.announcements[0] == HoldAnnouncement(0.0, "hold.announce")


def test_zh_reminds_every_ten_seconds() -> None:
    """zh (§18): the reminder comes at 10 s, 20 s, ... and then repeats every 10 s."""
    r = runner("zh")
    started = program(r.agent_holds(0))
    reminders = offsets(started, "hold.reminder")
    assert reminders[:3] == [10.0, 20.0, 30.0]
    assert reminders == [10.0 * k for k in range(1, len(reminders) + 1)]
    assert started.repeat == "hold.reminder"
    assert started.repeat_every_s == 10


def test_ru_reminds_after_the_promised_minute_with_the_alternative() -> None:
    """ru (001): at 60 s the reminder, then the callback offer right after it."""
    r = runner("ru")
    started = program(r.agent_holds(0))
    at_60 = [a.prompt for a in started.announcements if a.at_s == 60]
    assert at_60 == ["hold.reminder", "hold.callback_offer"]
    assert started.repeat_every_s == 60


def test_zh_offers_the_callback_only_at_the_tier_limit() -> None:
    """zh: no offer with the 10 s reminders; one at the specialist's 120 s limit, after that reminder."""
    r = runner("zh")
    started = program(r.agent_holds(0))
    assert offsets(started, "hold.callback_offer") == [120.0]
    at_120 = [a.prompt for a in started.announcements if a.at_s == 120]
    assert at_120 == ["hold.reminder", "hold.callback_offer"]


def test_the_program_repeats_from_the_last_fixed_reminder_on_its_grid() -> None:
    """After the fixed announcements the reminder repeats on the same grid (ru: 60 s steps)."""
    r = runner("ru")
    started = program(r.agent_holds(0))
    assert started.announcements[-1].at_s % 60 == 0
    assert started.announcements[-1].prompt in ("hold.reminder", "hold.callback_offer")


def test_nothing_plays_for_the_customer_after_the_hold_ended() -> None:
    """At resume the program is stopped and the policy issues nothing for that hold afterwards."""
    r = runner("zh")
    r.agent_holds(0)
    ended = r.agent_resumes(25)
    assert of(ended, cmd.StopHoldProgram) == [
        cmd.StopHoldProgram(CALLER, reason="the hold ended (released)")
    ]
    assert r.advance(600) == []
    assert r.timers == {}


# ------------------------------------------------------------------ hold ends: thanks


def test_short_hold_is_thanked_for_both_parties_after_the_program_stops() -> None:
    """A hold shorter than the threshold ends with the thanks phrase, heard by both parties."""
    r = runner("zh")
    r.agent_holds(0)
    ended = pbx_and_service(r.agent_resumes(19.9))
    assert isinstance(ended[0], cmd.StopHoldProgram)
    thanks = of(ended, cmd.PlayPrompt)
    assert [(p.leg, p.prompt, p.audience) for p in thanks] == [
        (CALLER, "hold.resume", Audience.BOTH)
    ]
    assert ended.index(thanks[0]) > 0


def test_long_hold_is_thanked_with_the_apology() -> None:
    """zh §1: a wait of about 20 s or more gets the long thanks with an apology."""
    r = runner("zh")
    r.agent_holds(0)
    thanks = of(r.agent_resumes(20), cmd.PlayPrompt)
    assert [p.prompt for p in thanks] == ["hold.resume_long"]


def test_ru_long_wait_is_past_the_promised_minute() -> None:
    """ru: "Спасибо за длительное ожидание" once the promised minute is over."""
    r = runner("ru")
    r.agent_holds(0)
    assert [p.prompt for p in of(r.agent_resumes(59), cmd.PlayPrompt)] == ["hold.resume"]
    r.agent_holds(100)
    assert [p.prompt for p in of(r.agent_resumes(160), cmd.PlayPrompt)] == ["hold.resume_long"]


# ------------------------------------------------------------------ tier limit


def test_specialist_limit_alerts_the_agent_at_two_minutes() -> None:
    """At the specialist's 120 s limit the agent (only) is alerted, with a phrase and a desktop event."""
    r = runner("ru")
    r.agent_holds(10)
    assert of(r.advance(129.999), cmd.AlertAgent) == []
    (alert,) = of(r.advance(130), cmd.AlertAgent)
    assert alert.leg == AGENT
    assert alert.alert == "hold_limit"
    assert alert.prompt == "hold.agent_limit"
    assert dict(alert.fields)["limit_s"] == "120"
    assert dict(alert.fields)["tier"] == "specialist"


def test_senior_tier_from_the_configuration_has_three_minutes() -> None:
    """An agent configured as senior is alerted at 180 s, not 120 s."""
    r = runner("ru", tiers={"agent-1001": "senior"})
    r.agent_holds(0)
    assert of(r.advance(179.9), cmd.AlertAgent) == []
    assert len(of(r.advance(180), cmd.AlertAgent)) == 1


@pytest.mark.parametrize(
    "naming",
    [
        ev.LegVariable(AGENT, "PBXAGENT_AGENT", "1001"),
        ev.AgentConnected(CALLER, AGENT, "1001", "support"),
    ],
    ids=["agent-variable", "queue-agent"],
)
def test_senior_tier_keyed_by_agent_id_applies_once_the_agent_is_named(naming: ev.PbxEvent) -> None:
    """agents.tiers is keyed by agent id; the id comes after the leg was first tiered by its
    endpoint name (the default tier): the configured tier still applies (180 s, not 120 s)."""
    r = runner("ru", tiers={"1001": "senior"})
    r.at(1, naming)
    assert r.call().legs[AGENT].tier == "senior"
    r.agent_holds(2)
    assert of(r.advance(181.9), cmd.AlertAgent) == []
    assert len(of(r.advance(182), cmd.AlertAgent)) == 1


def test_tier_variable_wins_over_the_configured_tier_of_the_agent_id() -> None:
    """PBXAGENT_TIER set by the dialplan is kept when the agent id is learnt later."""
    r = runner("ru", tiers={"1001": "senior"})
    r.at(1, ev.LegVariable(AGENT, "PBXAGENT_TIER", "specialist"))
    r.at(1.5, ev.LegVariable(AGENT, "PBXAGENT_AGENT", "1001"))
    assert r.call().legs[AGENT].tier == "specialist"


def test_tier_from_the_channel_variable() -> None:
    """The leg's tier variable (PBXAGENT_TIER=senior) sets the agent's limit."""
    r = runner("ru")
    r.at(1, ev.LegVariable(AGENT, "PBXAGENT_TIER", "senior"))
    started = program(r.agent_holds(2))
    assert 180.0 in offsets(started, "hold.callback_offer")
    assert of(r.advance(181.9), cmd.AlertAgent) == []
    assert len(of(r.advance(182), cmd.AlertAgent)) == 1


def test_unknown_tier_gets_the_strictest_limit() -> None:
    """A tier that has no limit in the standards is held to the smallest one."""
    r = runner("ru")
    r.at(1, ev.LegVariable(AGENT, "PBXAGENT_TIER", "trainee"))
    r.agent_holds(2)
    assert of(r.advance(121.9), cmd.AlertAgent) == []
    assert len(of(r.advance(122), cmd.AlertAgent)) == 1


def test_limit_alert_never_comes_after_the_hold_ended() -> None:
    """A hold that ends before the limit cancels the limit timer."""
    r = runner("ru")
    r.agent_holds(0)
    ended = r.agent_resumes(119)
    assert cmd.CancelTimer(f"limit:{CALLER}") in ended
    assert of(r.advance(1000), cmd.AlertAgent) == []


# ------------------------------------------------------------------ callback offer


def test_offer_digit_requests_a_callback_to_be_dialled_soon() -> None:
    """Pressing the offer digit after the offer requests a callback for the caller's number:
    the customer's request, dialled like a drop's (not a promise kept days later)."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(121)
    taken = r.at(121, ev.DigitPressed(CALLER, "1"))
    (request,) = of(taken, cmd.RequestCallback)
    assert request.number == "79161234567"
    assert request.trigger_call == CALL
    assert request.promised_deadline is None


def test_taking_the_offer_plays_the_registered_phrase_at_once() -> None:
    """The running program is replaced by one that confirms the callback and then plays music only."""
    r = runner("zh")
    r.agent_holds(0)
    taken = pbx_and_service(r.at(125, ev.DigitPressed(CALLER, "1")))
    kinds = [type(c) for c in taken]
    assert kinds.index(cmd.StopHoldProgram) < kinds.index(cmd.StartHoldProgram)
    (restarted,) = of(taken, cmd.StartHoldProgram)
    assert restarted.announcements == (HoldAnnouncement(0.0, "hold.callback_registered"),)
    assert restarted.repeat is None
    assert restarted.started_at == T0 + 125


def test_taking_the_offer_tells_the_agent() -> None:
    """The agent's desktop learns that the customer asked to be called back."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(121)
    (alert,) = of(r.at(125, ev.DigitPressed(CALLER, "1")), cmd.AlertAgent)
    assert (alert.leg, alert.alert, alert.prompt) == (AGENT, "callback_offer_taken", None)


def test_ru_offer_is_taken_from_the_first_reminder() -> None:
    """ru: the offer comes with the first reminder, so the digit counts from 60 s."""
    r = runner("ru")
    r.agent_holds(0)
    assert r.at(59.9, ev.DigitPressed(CALLER, "1")) == []
    assert len(of(r.at(60, ev.DigitPressed(CALLER, "1")), cmd.RequestCallback)) == 1


def test_digit_before_the_offer_is_ignored() -> None:
    """A digit pressed before the offer was announced does nothing."""
    r = runner("zh")
    r.agent_holds(0)
    assert r.at(30, ev.DigitPressed(CALLER, "1")) == []


def test_other_digits_and_a_second_press_are_ignored() -> None:
    """Only the configured digit counts, and only once per hold."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(121)
    assert r.at(121, ev.DigitPressed(CALLER, "2")) == []
    assert len(of(r.at(122, ev.DigitPressed(CALLER, "1")), cmd.RequestCallback)) == 1
    assert r.at(123, ev.DigitPressed(CALLER, "1")) == []


def test_digit_after_the_hold_ended_is_ignored() -> None:
    """The offer is valid only while the hold lasts."""
    r = runner("zh")
    r.agent_holds(0)
    r.agent_resumes(130)
    assert r.at(131, ev.DigitPressed(CALLER, "1")) == []


def test_agent_digits_do_not_take_the_offer() -> None:
    """The agent pressing the digit is not the customer's answer."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(121)
    assert r.at(125, ev.DigitPressed(AGENT, "1")) == []


def test_caller_without_a_number_is_not_offered_a_callback() -> None:
    """An anonymous caller hears no offer (nobody could call back) and the digit does nothing."""
    r = runner("zh", number="anonymous")
    started = program(r.agent_holds(0))
    assert offsets(started, "hold.callback_offer") == []
    r.advance(121)
    assert r.at(125, ev.DigitPressed(CALLER, "1")) == []


def test_disabled_offer_is_never_announced() -> None:
    """callback_offer.enabled = false: no offer in the program."""
    r = runner("ru", overrides=[{"hold": {"callback_offer": {"enabled": False}}}])
    started = program(r.agent_holds(0))
    assert offsets(started, "hold.callback_offer") == []


# ------------------------------------------------------------------ several holds, hang-ups, transfers


def test_each_of_several_holds_is_announced_thanked_and_recorded() -> None:
    """Two holds in one call: two programs from 0 s, two thanks, two records."""
    r = runner("zh")
    first = program(r.agent_holds(10))
    r.agent_resumes(15)
    second = program(r.agent_holds(40))
    r.agent_resumes(70)
    assert (first.started_at, second.started_at) == (T0 + 10, T0 + 40)
    thanks = [c.prompt for _, c in r.issued if isinstance(c, cmd.PlayPrompt)]
    assert thanks == ["hold.resume", "hold.resume_long"]
    facts = hold_facts(r)
    assert [(f["started_at"], f["ended_at"]) for f in facts] == [
        (T0 + 10, T0 + 15),
        (T0 + 40, T0 + 70),
    ]


def test_customer_hanging_up_on_hold_stops_the_program_without_thanks() -> None:
    """The held customer hangs up: the program stops, nothing is played, the hold is recorded."""
    r = runner("zh")
    r.agent_holds(0)
    out = r.at(42, ev.LegHungUp(CALLER, 16, "Normal Clearing"))
    assert of(out, cmd.StopHoldProgram)
    assert of(out, cmd.PlayPrompt) == []
    (fact,) = hold_facts(r)
    assert fact["ended_how"] == "hung_up"
    assert fact["ended_at"] == T0 + 42


def test_agent_hanging_up_on_hold_stops_the_customers_program() -> None:
    """The agent hangs up while the customer is on hold: the customer's program stops, no thanks."""
    r = runner("zh")
    r.agent_holds(0)
    out = r.at(30, ev.LegHungUp(AGENT, 16, "Normal Clearing"))
    assert [s.leg for s in of(out, cmd.StopHoldProgram)] == [CALLER]
    assert of(out, cmd.PlayPrompt) == []
    assert of(r.advance(500), cmd.AlertAgent) == []


def test_transfer_while_on_hold_stops_the_program_and_thanks_nobody() -> None:
    """The holding agent leaves the bridge (a transfer): the program stops; the new agent gets nothing."""
    r = runner("zh")
    r.agent_holds(0)
    out = r.at(50, ev.LegLeftBridge(AGENT, "b1"))
    assert of(out, cmd.StopHoldProgram) and of(out, cmd.PlayPrompt) == []
    (fact,) = hold_facts(r)
    assert fact["ended_how"] == "holder_left"
    second = LegId("c.3")
    r.at(
        55,
        created(
            str(second),
            "c.3",
            endpoint="PJSIP/agent-2002",
            number="200",
            name="",
            direction=Direction.OUTBOUND,
        ),
    )
    r.at(55, ev.LegAnswered(second))
    after = r.at(56, ev.LegJoinedBridge(second, "b1"))
    assert pbx_and_service(after) == []
    assert r.call().agent == second


def test_both_parties_holding_each_other() -> None:
    """Agent holds customer, customer holds agent: one program (the customer's), no thanks while the
    customer still holds, two records."""
    r = runner("zh")
    program(r.agent_holds(0))
    mutual = r.at(5, ev.HoldPressed(CALLER))
    assert of(mutual, cmd.StartHoldProgram) == []
    assert [n.action for n in of(mutual, cmd.Note)] == ["hold_not_announced"]
    released = r.at(20, ev.HoldReleased(AGENT))
    assert of(released, cmd.StopHoldProgram)
    assert of(released, cmd.PlayPrompt) == []
    assert [n.action for n in of(released, cmd.Note)] == ["hold_resume_skipped"]
    resumed = r.at(25, ev.HoldReleased(CALLER))
    # The conversation resumes only now: the thanks owed for the 20 s hold is said now.
    assert [(p.leg, p.prompt, p.audience) for p in of(resumed, cmd.PlayPrompt)] == [
        (CALLER, "hold.resume_long", Audience.BOTH)
    ]
    assert [(f["held_role"], f["announced"]) for f in hold_facts(r)] == [
        ("caller", True),
        ("agent", False),
    ]


def test_a_thanks_owed_is_not_said_when_the_customer_hangs_up_instead() -> None:
    """The customer's phone held the agent and then the customer hung up: no thanks."""
    r = runner("zh")
    program(r.agent_holds(0))
    r.at(5, ev.HoldPressed(CALLER))
    r.at(20, ev.HoldReleased(AGENT))
    gone = r.at(25, ev.LegHungUp(CALLER, 16))
    assert of(gone, cmd.PlayPrompt) == []


def test_agent_held_by_the_customer_gets_no_program_and_no_thanks() -> None:
    """A hold of the agent by the customer's phone is recorded but not announced."""
    r = runner("zh")
    started = r.at(0, ev.HoldPressed(CALLER))
    assert of(started, cmd.StartHoldProgram) == []
    ended = r.at(30, ev.HoldReleased(CALLER))
    assert of(ended, cmd.PlayPrompt) == [] and of(ended, cmd.StopHoldProgram) == []
    (fact,) = hold_facts(r)
    assert fact["held_role"] == "agent"


def test_disabled_hold_rule_records_the_hold_without_announcing() -> None:
    """hold.enabled = false: no program, no thanks, but the hold still counts in the figures."""
    r = runner("ru", overrides=[{"hold": {"enabled": False}}])
    assert of(r.agent_holds(0), cmd.StartHoldProgram) == []
    assert of(r.agent_resumes(10), cmd.PlayPrompt) == []
    assert hold_facts(r)[0]["announced"] is False


# ------------------------------------------------------------------ the record


def test_hold_record_carries_the_figures() -> None:
    """The record names call, agent, tier, times, reminders played, over-limit and the offer."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(120)
    r.at(125, ev.DigitPressed(CALLER, "1"))
    r.agent_resumes(130)
    (fact,) = hold_facts(r)
    assert fact["call_id"] == str(CALL)
    assert fact["agent"] == "agent-1001"
    assert fact["tier"] == "specialist"
    assert fact["held_leg"] == str(CALLER)
    assert (fact["started_at"], fact["ended_at"]) == (T0, T0 + 130)
    # Reminders at 10..120 s played; the program was replaced at 125 s, so none at 130 s.
    assert fact["reminders"] == 12
    assert fact["over_limit"] is True
    assert fact["callback_offer_taken"] is True


@pytest.mark.parametrize(("ended_s", "reminders"), [(9.9, 0), (10.0, 0), (10.1, 1), (35.0, 3)])
def test_reminders_counted_are_those_started_before_the_end(ended_s: float, reminders: int) -> None:
    """A reminder due exactly when the hold ends never started; earlier ones did."""
    r = runner("zh")
    r.agent_holds(0)
    r.agent_resumes(ended_s)
    assert hold_facts(r)[0]["reminders"] == reminders


def test_a_hold_under_the_limit_is_not_over_limit() -> None:
    """A short hold is recorded with over_limit false."""
    r = runner("ru")
    r.agent_holds(0)
    r.agent_resumes(30)
    assert hold_facts(r)[0]["over_limit"] is False


def test_every_hold_ends_in_exactly_one_record_when_the_call_ends_on_hold() -> None:
    """Both parties hang up during a hold: one record, one stop, nothing else."""
    r = runner("zh")
    r.agent_holds(0)
    r.at(12, ev.LegHungUp(CALLER, 16))
    r.at(12, ev.LegHungUp(AGENT, 16))
    assert len(hold_facts(r)) == 1
    assert len([c for _, c in r.issued if isinstance(c, cmd.StopHoldProgram)]) == 1


# ------------------------------------------------------------------ a program that ends by itself


def lost(r: R1Runner, t: float) -> list[cmd.Command]:
    """The adapter reports that the customer's hold program ended without being stopped."""
    return r.at(t, ev.PromptFinished(CALLER, cmd.HOLD_PROGRAM_PROMPT, ok=False))


def test_a_program_that_dies_is_restarted_on_its_own_timeline() -> None:
    """The program's channel died at 15 s: a new one starts with the announcements still due."""
    r = runner("zh")
    first = program(r.agent_holds(0))
    restarted = program(lost(r, 15))
    assert restarted.started_at == first.started_at
    assert restarted.announcements[0].at_s == 20.0
    assert [a.at_s for a in restarted.announcements] == [
        a.at_s for a in first.announcements if a.at_s > 15
    ]
    assert (restarted.repeat, restarted.repeat_every_s) == (first.repeat, first.repeat_every_s)


def test_restart_after_the_fixed_announcements_keeps_the_repetition_grid() -> None:
    """Past the last fixed reminder, the restart's one fixed announcement is the next repetition."""
    r = runner("ru")
    r.agent_holds(0)
    r.advance(200)
    restarted = program(lost(r, 200))
    assert restarted.announcements == (HoldAnnouncement(240.0, "hold.reminder"),)
    assert restarted.repeat_every_s == 60


def test_a_program_that_keeps_dying_is_given_up_after_two_restarts() -> None:
    """Two restarts, then a note: the switch's own hold handling is all that is left."""
    r = runner("zh")
    r.agent_holds(0)
    assert len(of(lost(r, 1), cmd.StartHoldProgram)) == 1
    assert len(of(lost(r, 2), cmd.StartHoldProgram)) == 1
    third = lost(r, 3)
    assert of(third, cmd.StartHoldProgram) == []
    assert [n.action for n in of(third, cmd.Note)] == ["hold_program_lost"]
    assert lost(r, 4) == []


def test_a_lost_program_after_the_hold_ended_is_ignored() -> None:
    """The report of a program that died after the hold ended starts nothing."""
    r = runner("zh")
    r.agent_holds(0)
    r.agent_resumes(10)
    assert lost(r, 11) == []


def test_the_registered_callback_program_is_the_one_restarted() -> None:
    """After the offer was taken, a restart continues the current program, not the original plan."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(121)
    r.at(121, ev.DigitPressed(CALLER, "1"))
    (restarted,) = of(lost(r, 121.5), cmd.StartHoldProgram)
    # Music only: the confirmation was due at once and is past; no reminders come back.
    assert (restarted.announcements, restarted.repeat) == ((), None)
    assert restarted.started_at == T0 + 121


def test_the_held_parties_music_class_goes_with_every_program() -> None:
    """The class the PBX reported for the held leg (MusicOnHoldStart, just after Hold on
    Asterisk) is in the restarted and the callback programs; the first one has none yet."""
    r = runner("zh")
    first = program(r.agent_holds(0))
    assert first.music_class == ""
    r.at(0.001, ev.MusicOnHoldStarted(CALLER, "sales"))
    assert program(lost(r, 15)).music_class == "sales"
    r.advance(121)
    taken = r.at(121, ev.DigitPressed(CALLER, "1"))
    assert program(taken).music_class == "sales"


def test_a_hold_not_announced_is_still_measured_against_the_tier_limit() -> None:
    """hold.enabled = false for a queue: no program, but a 10-minute hold by a specialist
    (limit 120 s) is recorded as over the limit, for the figures (R8)."""
    r = runner("ru", overrides=[{"hold": {"enabled": False}}])
    assert of(r.agent_holds(0), cmd.StartHoldProgram) == []
    r.advance(600)
    r.agent_resumes(600)
    (fact,) = hold_facts(r)
    assert (fact["limit_s"], fact["over_limit"], fact["announced"]) == (120.0, True, False)


SUPERVISOR = LegId("c.3")


def three_way() -> R1Runner:
    """The customer, the agent and a second agent (a supervisor) in one bridge."""
    r = runner("ru")
    r.at(1, created(str(SUPERVISOR), "c.1", endpoint="PJSIP/agent-2002", number="200",
                    name="", direction=Direction.OUTBOUND))  # fmt: skip
    r.at(1, ev.LegAnswered(SUPERVISOR))
    r.at(1, ev.LegJoinedBridge(SUPERVISOR, "b1"))
    return r


def test_the_second_holder_letting_go_leaves_the_first_hold_running() -> None:
    """Agent and supervisor both hold the customer; the supervisor releases first: the
    program goes on, the limit alert still comes, one record of the whole hold at the end."""
    r = three_way()
    r.at(10, ev.HoldPressed(AGENT))
    r.at(20, ev.HoldPressed(SUPERVISOR))
    released = r.at(30, ev.HoldReleased(SUPERVISOR))
    assert of(released, cmd.StopHoldProgram) == [] and of(released, cmd.PlayPrompt) == []
    assert len(of(r.advance(130), cmd.AlertAgent)) == 1
    ended = r.at(200, ev.HoldReleased(AGENT))
    assert len(of(ended, cmd.StopHoldProgram)) == 1
    assert [p.prompt for p in of(ended, cmd.PlayPrompt)] == ["hold.resume_long"]
    (fact,) = hold_facts(r)
    assert (fact["duration_s"], fact["over_limit"]) == (190.0, True)


def test_the_first_holder_letting_go_hands_the_hold_to_the_other() -> None:
    """The agent releases while the supervisor still holds: no thanks yet, the program goes
    on; the supervisor's release ends the hold, timed from the agent's press."""
    r = three_way()
    r.at(10, ev.HoldPressed(AGENT))
    r.at(20, ev.HoldPressed(SUPERVISOR))
    released = r.at(30, ev.HoldReleased(AGENT))
    assert of(released, cmd.StopHoldProgram) == [] and of(released, cmd.PlayPrompt) == []
    ended = r.at(50, ev.HoldReleased(SUPERVISOR))
    assert len(of(ended, cmd.StopHoldProgram)) == 1
    assert [p.prompt for p in of(ended, cmd.PlayPrompt)] == ["hold.resume"]
    (fact,) = hold_facts(r)
    assert fact["duration_s"] == 40.0


def test_a_hold_handed_over_by_a_holder_who_hung_up_alerts_the_one_still_holding() -> None:
    """The agent holds the customer, the supervisor holds too, the agent hangs up: at the
    limit the supervisor, who holds the customer now, is alerted, and the record is theirs."""
    r = three_way()
    r.at(10, ev.HoldPressed(AGENT))
    r.at(20, ev.HoldPressed(SUPERVISOR))
    r.at(30, ev.LegHungUp(AGENT, 16))
    (alert,) = of(r.advance(131), cmd.AlertAgent)
    assert alert.leg == SUPERVISOR
    r.at(150, ev.HoldReleased(SUPERVISOR))
    (fact,) = hold_facts(r)
    assert (fact["holder_leg"], fact["agent"]) == (str(SUPERVISOR), "agent-2002")


def still_bridged() -> tuple[ev.LiveLeg, ...]:
    """The switch's list after a reconnect: the customer and the agent still bridged."""
    return (
        ev.LiveLeg(created(str(CALLER), str(CALL), number="79161234567"), True, "b1"),
        ev.LiveLeg(
            created(str(AGENT), str(CALL), endpoint="PJSIP/agent-1001", number="100", name="",
                    direction=Direction.OUTBOUND),
            True,
            "b1",
        ),
    )  # fmt: skip


def test_a_thanks_owed_is_void_when_the_customers_hold_ends_by_a_resync() -> None:
    """Mutual hold, the agent lets go (thanks owed), then the link is lost and resynced:
    the customer's hold ends link_lost and the thanks is void; it is not said minutes later
    at an unrelated release of the customer's phone."""
    r = runner("zh")
    program(r.agent_holds(0))
    r.at(5, ev.HoldPressed(CALLER))
    r.at(20, ev.HoldReleased(AGENT))
    r.at(22, ev.PbxResynced("asterisk", still_bridged()))
    r.at(300, ev.HoldPressed(CALLER))
    assert of(r.at(302, ev.HoldReleased(CALLER)), cmd.PlayPrompt) == []


def test_a_hold_during_a_lost_link_is_not_over_the_limit_for_the_outage() -> None:
    """The link goes 20 s into a hold and comes back 5 minutes later: the limit (120 s)
    is not passed for the outage's time (no alert, nobody to alert anyway), and the record
    is the 20 s seen, ended link_lost, not a 320 s hold over the limit."""
    r = runner("zh")
    program(r.agent_holds(0))
    r.at(20, ev.PbxConnectionChanged("asterisk", connected=False, reason="closed"))
    after = r.advance(300)
    assert of(after, cmd.AlertAgent) == []
    assert [c for c in after if isinstance(c, cmd.Note) and c.action.startswith("hold_limit")] == []
    r.at(320, ev.PbxResynced("asterisk", still_bridged()))
    (fact,) = hold_facts(r)
    assert (fact["ended_how"], fact["duration_s"], fact["over_limit"]) == ("link_lost", 20, False)


def test_the_agent_coming_back_cancels_the_callback_the_customer_asked_for() -> None:
    """The customer pressed the offer digit but stayed on the line and the agent resumed:
    they are served now, the callback is cancelled (it would ring them mid-call)."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(121)
    r.at(121, ev.DigitPressed(CALLER, "1"))
    (cancel,) = of(r.agent_resumes(130), cmd.CancelCallbacks)
    assert (cancel.number, cancel.trigger_call, cancel.requested_only) == (
        "79161234567",
        CALL,
        True,
    )


def test_a_hold_ended_by_the_customer_hanging_up_keeps_the_callback_asked_for() -> None:
    """The customer took the offer and hung up: the callback goes ahead."""
    r = runner("zh")
    r.agent_holds(0)
    r.advance(121)
    r.at(121, ev.DigitPressed(CALLER, "1"))
    assert of(r.at(125, ev.LegHungUp(CALLER, 16)), cmd.CancelCallbacks) == []


def test_a_hold_handed_to_a_senior_is_measured_by_the_seniors_limit() -> None:
    """A specialist (120 s) and a senior (180 s) hold the customer; the specialist lets go:
    no alert at 120 s, the record's limit is the senior's, a 160 s hold is within it."""
    r = R1Runner(HoldPolicy(), profile="ru", tiers={"agent-2002": "senior"})
    r.connect()
    r.at(1, created(str(SUPERVISOR), "c.1", endpoint="PJSIP/agent-2002", number="200",
                    name="", direction=Direction.OUTBOUND))  # fmt: skip
    r.at(1, ev.LegAnswered(SUPERVISOR))
    r.at(1, ev.LegJoinedBridge(SUPERVISOR, "b1"))
    r.at(10, ev.HoldPressed(AGENT))
    r.at(20, ev.HoldPressed(SUPERVISOR))
    r.at(30, ev.HoldReleased(AGENT))
    assert of(r.advance(135), cmd.AlertAgent) == []
    r.at(170, ev.HoldReleased(SUPERVISOR))
    (fact,) = hold_facts(r)
    assert (fact["tier"], fact["limit_s"], fact["over_limit"]) == ("senior", 180.0, False)

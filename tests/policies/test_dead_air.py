"""R1 "hold, not mute" and R8 talk-over: silence and overlap in a bridged call, from talk
detection on both legs, with explicit times (no event loop)."""

from __future__ import annotations

from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.policies.dead_air import DeadAirPolicy, Phase
from tests.engine.builders import created
from tests.policies.r1_runner import AGENT, CALL, CALLER, T0, R1Runner, of


def runner(profile: str = "ru") -> R1Runner:
    r = R1Runner(DeadAirPolicy(), profile=profile)
    r.connect()
    return r


def notes(commands: list[cmd.Command], action: str = "dead_air") -> list[cmd.Note]:
    return [n for n in of(commands, cmd.Note) if n.action == action]


def facts(r: R1Runner, kind: str) -> list[dict[str, object]]:
    return [dict(c.fields) for _, c in r.issued if isinstance(c, cmd.RecordFact) and c.kind == kind]


def talk(r: R1Runner, leg: object, start: float, end: float, report_delay: float = 0.3) -> None:
    """The party on ``leg`` speaks from ``start`` to ``end``; the detector reports the end
    ``report_delay`` later (TALK_DETECT's silence threshold, trace 03)."""
    r.at(start, ev.TalkingStarted(leg))  # type: ignore[arg-type]
    r.at(end + report_delay, ev.TalkingStopped(leg, int(report_delay * 1000)))  # type: ignore[arg-type]


def lose_link(r: R1Runner, t: float) -> list[cmd.Command]:
    """The daemon's link to the switch drops at ``T0 + t``: no talk events until it is back."""
    return r.at(t, ev.PbxConnectionChanged("asterisk", connected=False, reason="test"))


def restore_link(r: R1Runner, t: float) -> list[cmd.Command]:
    """The link is back at ``T0 + t``; the switch lists both parties still in their bridge."""
    agent = created(str(AGENT), str(CALL), endpoint="PJSIP/agent-1001", number="100")
    listing = (
        ev.LiveLeg(created(str(CALLER), str(CALL)), answered=True, bridge="b1"),
        ev.LiveLeg(agent, answered=True, bridge="b1"),
    )
    return r.at(t, ev.PbxResynced("asterisk", listing))


# ------------------------------------------------------------------ dead air


def test_silence_past_the_limit_logs_dead_air_with_the_agent() -> None:
    """ru: ten seconds without speech in a bridged call not on hold is logged, naming the agent."""
    r = runner("ru")
    talk(r, AGENT, 1, 4)
    assert notes(r.advance(13.999)) == []
    (note,) = notes(r.advance(14))
    assert note.fields["agent"] == "agent-1001"
    assert note.fields["silent_since"] == T0 + 4


def test_zh_logs_after_three_seconds() -> None:
    """zh §17: more than 3 s of unannounced silence is logged."""
    r = runner("zh")
    talk(r, CALLER, 1, 2)
    assert notes(r.advance(4.999)) == []
    assert len(notes(r.advance(5))) == 1


def test_silence_counts_from_the_real_end_of_speech_not_its_late_report() -> None:
    """The detector reports the end 2.5 s late (Asterisk's default); the silence began at the end."""
    r = runner("zh")
    talk(r, AGENT, 1, 2, report_delay=2.5)
    assert notes(r.advance(4.999)) == []
    assert len(notes(r.advance(5))) == 1


def test_the_agent_is_reminded_past_ten_seconds() -> None:
    """Past 10 s of silence a short reminder is whispered to the agent only (plus a desktop event)."""
    r = runner("zh")
    talk(r, CALLER, 1, 2)
    assert of(r.advance(11.999), cmd.AlertAgent) == []
    (alert,) = of(r.advance(12), cmd.AlertAgent)
    assert (alert.leg, alert.alert, alert.prompt) == (AGENT, "dead_air", "dead_air.agent_reminder")


def test_speech_before_the_log_limit_is_no_dead_air_log_but_counts_in_the_figures() -> None:
    """ru logs dead air after 10 s; a 9.9 s silence is not logged, but it is longer than the
    figures' 3 s (003 §17: unannounced silence over 3 s) and is recorded for them."""
    r = runner("ru")
    talk(r, AGENT, 1, 2)
    out = r.at(11.9, ev.TalkingStarted(CALLER))
    assert cmd.CancelTimer("log") in out
    assert notes(r.advance(60)) == []
    (fact,) = facts(r, "dead_air")
    assert (fact["silent_s"], fact["logged"]) == (9.9, False)


def test_a_pause_within_the_figures_3_s_is_not_recorded() -> None:
    """A 2.9 s pause in the conversation is no unannounced silence."""
    r = runner("ru")
    talk(r, AGENT, 1, 2)
    r.at(4.9, ev.TalkingStarted(CALLER))
    r.advance(60)
    assert facts(r, "dead_air") == []


def test_each_silence_is_logged_once_and_recorded_with_its_length_when_it_ends() -> None:
    """The logged silence is recorded when speech resumes, with its full length and the reminder."""
    r = runner("ru")
    talk(r, AGENT, 1, 2)
    r.advance(30)
    r.at(30, ev.TalkingStarted(CALLER))
    assert len(notes([c for _, c in r.issued])) == 1
    (fact,) = facts(r, "dead_air")
    assert fact["silent_s"] == 28.0
    assert fact["agent_reminded"] is True
    assert fact["ended_by"] == "talking"


def test_silence_right_after_connect_counts_from_the_connection() -> None:
    """Nobody says a word after the parties are connected: the silence starts at the connection."""
    r = runner("zh")
    assert len(notes(r.advance(3))) == 1


def test_hold_is_not_dead_air() -> None:
    """Going on hold ends the silence; a long hold logs nothing."""
    r = runner("zh")
    talk(r, AGENT, 1, 2)
    r.at(3, ev.HoldPressed(AGENT))
    assert notes(r.advance(300)) == []
    assert r.states[CALL].phase is Phase.ON_HOLD


def test_silence_after_the_hold_counts_from_its_end() -> None:
    """After resume nobody speaks: dead air is measured from the moment the hold ended."""
    r = runner("zh")
    r.at(1, ev.HoldPressed(AGENT))
    r.at(50, ev.HoldReleased(AGENT))
    assert notes(r.advance(52.9)) == []
    (note,) = notes(r.advance(53))
    assert note.fields["silent_since"] == T0 + 50


def test_a_prompt_the_daemon_played_restarts_the_silence() -> None:
    """A prompt that finished counts as sound: the silence starts again at its end."""
    r = runner("zh")
    talk(r, AGENT, 1, 2)
    r.at(4, ev.PromptFinished(CALLER, "silent.prompt1"))
    assert notes(r.advance(6.9)) == []
    assert len(notes(r.advance(7))) == 1


def test_nothing_after_the_parties_separate() -> None:
    """Once the caller and agent are no longer bridged, silence is not dead air."""
    r = runner("zh")
    talk(r, AGENT, 1, 2)
    r.at(2.5, ev.LegLeftBridge(AGENT, "b1"))
    assert r.advance(100) == []


def test_no_reminder_to_an_agent_who_hung_up() -> None:
    """The call ending cancels both timers."""
    r = runner("zh")
    r.at(1, ev.LegHungUp(AGENT, 16))
    r.at(1, ev.LegHungUp(CALLER, 16))
    assert r.advance(100) == []


def test_disabled_rule_logs_nothing() -> None:
    """dead_air.enabled = false: silence is not watched."""
    r = R1Runner(DeadAirPolicy(), profile="zh", overrides=[{"dead_air": {"enabled": False}}])
    r.connect()
    assert r.advance(60) == []


def test_a_silence_across_a_lost_pbx_link_is_neither_logged_nor_reminded() -> None:
    """ru: the link drops 1 s into a silence and is back 30 s later, when the caller is heard
    again: no dead-air log, no reminder to the agent, nothing recorded for the figures."""
    r = runner("ru")
    talk(r, AGENT, 1, 2)
    lose_link(r, 3)
    r.advance(32)
    restore_link(r, 32)
    r.at(32.5, ev.TalkingStarted(CALLER))
    issued = [c for _, c in r.issued]
    assert notes(issued) == []
    assert of(issued, cmd.AlertAgent) == []
    assert facts(r, "dead_air") == []


def test_silence_after_the_link_is_back_counts_from_then() -> None:
    """zh: nobody is heard after the link returns: dead air is measured from its return."""
    r = runner("zh")
    talk(r, AGENT, 1, 2)
    lose_link(r, 2.5)
    restore_link(r, 20)
    assert notes(r.advance(22.9)) == []
    (note,) = notes(r.advance(23))
    assert note.fields["silent_since"] == T0 + 20


def test_a_silence_heard_before_the_link_was_lost_is_recorded_up_to_the_loss() -> None:
    """ru: 5 s of silence were heard when the link dropped: the figures get those 5 s (over
    their 3 s), ended by the loss, not a silence stretched over the outage."""
    r = runner("ru")
    talk(r, AGENT, 1, 2)
    lose_link(r, 7)
    r.advance(60)
    (fact,) = facts(r, "dead_air")
    assert (fact["silent_s"], fact["ended_by"]) == (5.0, "link_lost")


# ------------------------------------------------------------------ talk-over


def test_both_speaking_longer_than_the_limit_is_talk_over() -> None:
    """The customer and the agent speak at once for more than 3 s: recorded when it ends."""
    r = runner("zh")
    r.at(1, ev.TalkingStarted(AGENT))
    r.at(2, ev.TalkingStarted(CALLER))
    r.at(6.3, ev.TalkingStopped(CALLER, 300))
    (fact,) = facts(r, "talk_over")
    assert (fact["started_at"], fact["ended_at"]) == (T0 + 2, T0 + 6)
    assert fact["overlap_s"] == 4.0
    assert fact["agent"] == "agent-1001"


def test_short_overlap_is_not_talk_over() -> None:
    """Three seconds or less of both speaking is an ordinary interruption."""
    r = runner("zh")
    r.at(1, ev.TalkingStarted(AGENT))
    r.at(2, ev.TalkingStarted(CALLER))
    r.at(5.3, ev.TalkingStopped(AGENT, 300))
    assert facts(r, "talk_over") == []


def test_overlap_ends_at_the_real_end_of_speech() -> None:
    """An end reported 2.5 s late does not lengthen the overlap past the limit."""
    r = runner("zh")
    r.at(1, ev.TalkingStarted(AGENT))
    r.at(2, ev.TalkingStarted(CALLER))
    r.at(6.5, ev.TalkingStopped(CALLER, 2500))  # speech ended at 4.0: 2 s of overlap
    assert facts(r, "talk_over") == []


def test_overlap_cut_by_the_call_ending_is_measured_to_the_end() -> None:
    """Both still speaking when the call ends: the overlap lasts until then."""
    r = runner("zh")
    r.at(1, ev.TalkingStarted(AGENT))
    r.at(2, ev.TalkingStarted(CALLER))
    r.at(10, ev.LegHungUp(CALLER, 16))
    (fact,) = facts(r, "talk_over")
    assert fact["overlap_s"] == 8.0


def test_an_overlap_is_measured_only_up_to_a_lost_pbx_link() -> None:
    """Both speaking when the link drops: the overlap heard (5 s) is recorded then; the end
    of speech reported after the reconnect does not stretch it over the outage."""
    r = runner("zh")
    r.at(1, ev.TalkingStarted(AGENT))
    r.at(2, ev.TalkingStarted(CALLER))
    lose_link(r, 7)
    restore_link(r, 30)
    r.at(30.3, ev.TalkingStopped(CALLER, 300))
    (fact,) = facts(r, "talk_over")
    assert (fact["ended_at"], fact["overlap_s"]) == (T0 + 7, 5.0)

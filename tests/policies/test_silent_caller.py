"""R2 silent caller, as a policy: prompts, drop, cancellation, noise and timing, per profile."""

from __future__ import annotations

import pytest

from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.policies.silent_caller import SilentCallerPolicy
from tests.engine.builders import created
from tests.policies.call_driver import AGENT, CALL, CALLER, T0, CallDriver, standards


def driver(profile: str = "ru", **overrides: object) -> CallDriver:
    return CallDriver(SilentCallerPolicy(prompt_guard_s=30), standards(profile, **overrides))


def greeted(profile: str = "ru", **overrides: object) -> CallDriver:
    """Connected at T0; the agent greets from T0+0.5 to T0+2.0."""
    d = driver(profile, **overrides)
    d.connect(at=T0)
    d.speech(AGENT, T0 + 0.5, T0 + 2.0)
    return d


GREETING_END = T0 + 2.0


def test_first_prompt_is_due_the_profile_silence_after_the_real_end_of_the_greeting() -> None:
    """ru: 2.5 s after the greeting really ended (not after its late report) the caller is prompted."""
    d = greeted()
    d.run_until(GREETING_END + 10)
    (at, prompt), *_ = d.prompts()
    assert prompt == "silent.prompt"
    assert at == pytest.approx(GREETING_END + 2.5, abs=1e-9)


def test_prompts_are_heard_by_both_parties() -> None:
    """The agent hears what the caller is told: the prompt's audience is both parties."""
    d = greeted()
    d.after(5)
    (_, play), *_ = d.of_type(cmd.PlayPrompt)
    assert (play.leg, play.audience) == (CALLER, cmd.Audience.BOTH)


def test_silent_caller_hears_the_closing_phrase_and_both_legs_are_hung_up() -> None:
    """ru: prompt, 2.5 s more silence after it ends, closing phrase, then the call is dropped."""
    d = greeted()
    d.until_prompt()
    d.prompt_finished("silent.prompt", after_s=2.0)
    done_first = GREETING_END + 2.5 + 2.0
    d.until_prompt()
    assert d.prompts() == [
        (pytest.approx(GREETING_END + 2.5, abs=1e-6), "silent.prompt"),
        (pytest.approx(done_first + 2.5, abs=1e-6), "silent.closing"),
    ]
    d.prompt_finished("silent.closing", after_s=2.2)
    hangups = d.of_type(cmd.HangupCall)
    assert [(at, c.call) for at, c in hangups] == [
        (pytest.approx(done_first + 2.5 + 2.2, abs=1e-6), CALL)
    ]


def test_drop_is_logged_with_every_silence_measured() -> None:
    """The drop's log entry carries the silence before each prompt and after the closing one."""
    d = greeted()
    d.until_prompt()
    d.prompt_finished("silent.prompt", after_s=2.0)
    d.until_prompt()
    d.prompt_finished("silent.closing", after_s=2.2)
    (note,) = d.notes("silent_caller_drop")
    assert note.fields["silences_s"] == [2.5, 2.5, 0.0]
    assert note.fields["greeting_ended_at"] == pytest.approx(GREETING_END, abs=1e-6)


def test_each_step_is_logged_with_its_silence() -> None:
    """Every prompt is preceded by a step note naming the step and the silence before it."""
    d = greeted()
    d.after(5)
    (note,) = d.notes("silent_caller_step")
    assert (note.fields["step"], note.fields["of"], note.fields["silence_s"]) == (1, 2, 2.5)


def test_caller_speech_before_the_first_prompt_cancels_the_procedure() -> None:
    """A caller who answers the greeting is never prompted."""
    d = greeted()
    d.speech(CALLER, GREETING_END + 1.0, GREETING_END + 2.0)
    d.after(30)
    assert d.prompts() == []
    assert d.notes("silent_caller_cancelled")
    assert d.of_type(cmd.HangupCall) == []


def test_caller_speech_after_the_first_prompt_cancels_the_procedure() -> None:
    """The caller speaks after "Говорите, пожалуйста": no closing phrase, no drop."""
    d = greeted()
    d.until_prompt()
    d.prompt_finished("silent.prompt", after_s=2.0)
    d.speech(CALLER, d.now + 1.0, d.now + 1.6)
    d.after(30)
    assert [p for _, p in d.prompts()] == ["silent.prompt"]
    assert d.of_type(cmd.HangupCall) == []


def test_caller_speech_while_a_prompt_plays_cancels_the_procedure() -> None:
    """Speech over the prompt counts: the caller is there."""
    d = greeted()
    d.after(2.6)
    d.speech(CALLER, d.now + 0.5, d.now + 1.5)
    d.prompt_finished("silent.prompt", after_s=2.5)
    d.after(30)
    assert [p for _, p in d.prompts()] == ["silent.prompt"]
    assert d.of_type(cmd.HangupCall) == []


def test_caller_speech_during_the_greeting_cancels_the_procedure() -> None:
    """A caller who talks over the greeting is not silent."""
    d = driver()
    d.connect(at=T0)
    d.speech(CALLER, T0 + 0.2, T0 + 1.2)
    d.speech(AGENT, T0 + 1.5, T0 + 3.0)
    d.after(30)
    assert d.prompts() == []


def test_caller_speech_after_the_closing_phrase_cancels_the_drop() -> None:
    """zh waits 3 s after the closing phrase; speech in that pause keeps the call."""
    d = greeted("zh", silent_caller={"one_way_audio_callback": False})
    for prompt in ("silent.prompt1", "silent.prompt2", "silent.closing"):
        d.after(4.0)
        d.prompt_finished(prompt, after_s=2.0)
    d.speech(CALLER, d.now + 1.0, d.now + 1.5)
    d.after(30)
    assert d.of_type(cmd.HangupCall) == []


def test_noise_burst_shorter_than_min_speech_neither_cancels_nor_moves_the_prompt() -> None:
    """A 100 ms click (min 250 ms) is noise: the prompt still comes 2.5 s after the greeting."""
    d = greeted()
    d.speech(CALLER, GREETING_END + 0.8, GREETING_END + 0.9)
    d.after(10)
    (at, prompt), *_ = d.prompts()
    assert (at, prompt) == (pytest.approx(GREETING_END + 2.5, abs=1e-6), "silent.prompt")
    (noise,) = d.notes("silent_caller_noise")
    assert noise.fields["duration_ms"] == 100


def test_noise_burst_still_being_judged_at_the_due_instant_delays_the_prompt_until_judged() -> None:
    """No prompt over a sound: a burst across the due instant holds it until its end is reported."""
    d = greeted()
    due = GREETING_END + 2.5
    d.speech(CALLER, due - 0.1, due, report_delay_s=0.3)
    d.after(10)
    (at, _), *_ = d.prompts()
    assert at == pytest.approx(due + 0.3, abs=1e-6)
    (step,) = d.notes("silent_caller_step")
    assert step.fields["late_s"] == pytest.approx(0.3, abs=1e-6)


def test_burst_length_comes_from_the_real_end_when_the_detector_gives_none() -> None:
    """Without ``speech_ms`` the burst is measured from its start to its real end."""
    d = greeted()
    d.handle(ev.TalkingStarted(CALLER), at=GREETING_END + 0.5)
    d.handle(ev.TalkingStopped(CALLER, 300, None), at=GREETING_END + 0.5 + 0.6 + 0.3)
    d.after(10)
    assert d.prompts() == []
    assert d.notes("silent_caller_cancelled")[0].fields["speech_ms"] == 600


def test_greeting_is_presumed_over_after_greeting_max_s_when_the_agent_never_speaks() -> None:
    """No talk from the agent: the silence counts from connect + greeting_max_s (8 s)."""
    d = driver()
    d.connect(at=T0)
    d.after(20)
    (at, _), *_ = d.prompts()
    assert at == pytest.approx(T0 + 8 + 2.5, abs=1e-6)
    assert d.notes("silent_caller_greeting_presumed")


def test_agent_speech_between_steps_restarts_the_silence_from_its_end() -> None:
    """The prompt never cuts into the agent's words: the count starts again when they stop."""
    d = greeted()
    d.after(3)
    d.prompt_finished("silent.prompt", after_s=2.0)
    agent_end = d.now + 2.0
    d.speech(AGENT, d.now + 1.0, agent_end)
    d.after(10)
    assert d.prompts()[1] == (pytest.approx(agent_end + 2.5, abs=1e-6), "silent.closing")


def test_agent_still_talking_when_a_prompt_ends_holds_the_next_step_until_they_stop() -> None:
    """The agent starts talking over "Говорите, пожалуйста" and goes on after it ends: the
    closing phrase is not said over their words; the count starts when they stop."""
    d = greeted()
    first = d.until_prompt()
    agent_end = first + 7.0
    d.handle(ev.TalkingStarted(AGENT), at=first + 1.0)
    d.prompt_finished("silent.prompt", after_s=2.0)
    d.run_until(agent_end + 0.3)
    assert [p for _, p in d.prompts()] == ["silent.prompt"]
    d.handle(ev.TalkingStopped(AGENT, 300, 6000), at=agent_end + 0.3)
    d.after(10)
    assert d.prompts()[1] == (pytest.approx(agent_end + 2.5, abs=1e-6), "silent.closing")


def test_agent_talking_after_the_closing_phrase_delays_the_drop_until_they_stop() -> None:
    """zh waits 3 s after the closing phrase; an agent still speaking then is not cut off:
    the drop comes 3 s after the end of their words."""
    d = greeted("zh", silent_caller={"one_way_audio_callback": False})
    for prompt in ("silent.prompt1", "silent.prompt2"):
        d.after(4.0)
        d.prompt_finished(prompt, after_s=2.0)
    closing = d.until_prompt()
    d.handle(ev.TalkingStarted(AGENT), at=closing + 1.0)
    d.prompt_finished("silent.closing", after_s=2.0)
    agent_end = closing + 8.0
    d.run_until(agent_end + 0.3)
    assert d.of_type(cmd.HangupCall) == []
    d.handle(ev.TalkingStopped(AGENT, 300, 7000), at=agent_end + 0.3)
    d.after(10)
    assert [at for at, _ in d.of_type(cmd.HangupCall)] == [pytest.approx(agent_end + 3, abs=1e-6)]


def test_agent_starting_to_talk_in_the_pause_after_the_closing_phrase_delays_the_drop() -> None:
    """The agent speaks again after the closing phrase, before the drop: the drop waits."""
    d = greeted("zh", silent_caller={"one_way_audio_callback": False})
    for prompt in ("silent.prompt1", "silent.prompt2", "silent.closing"):
        d.after(4.0)
        d.prompt_finished(prompt, after_s=2.0)
    agent_end = d.now + 4.0
    d.speech(AGENT, d.now + 1.0, agent_end)
    d.after(10)
    assert [at for at, _ in d.of_type(cmd.HangupCall)] == [pytest.approx(agent_end + 3, abs=1e-6)]


def test_long_greeting_with_pauses_counts_from_its_last_part() -> None:
    """A greeting split by a pause longer than the detector's threshold is one greeting."""
    d = driver()
    d.connect(at=T0)
    d.speech(AGENT, T0 + 0.5, T0 + 1.5)
    d.speech(AGENT, T0 + 2.2, T0 + 3.4)
    d.after(10)
    assert d.prompts()[0][0] == pytest.approx(T0 + 3.4 + 2.5, abs=1e-6)


def test_zh_plays_three_steps_4_s_apart_and_hangs_up_3_s_after_the_last() -> None:
    """zh §19: three phrases after 3-5 s of silence each, then 3 s, then hang up."""
    d = greeted("zh", silent_caller={"one_way_audio_callback": False})
    done_at = []
    for prompt in ("silent.prompt1", "silent.prompt2", "silent.closing"):
        d.after(4.0)
        d.prompt_finished(prompt, after_s=2.0)
        done_at.append(d.now)
    d.after(10)
    starts = [GREETING_END + 4.0, done_at[0] + 4.0, done_at[1] + 4.0]
    assert [at for at, _ in d.prompts()] == [pytest.approx(s, abs=1e-6) for s in starts]
    assert [at for at, _ in d.of_type(cmd.HangupCall)] == [
        pytest.approx(done_at[2] + 3.0, abs=1e-6)
    ]


def test_zh_one_way_audio_says_the_callback_phrase_and_requests_a_callback() -> None:
    """zh §4: the last phrase promises a callback, and R7 is asked to make it."""
    d = greeted("zh")
    for prompt in ("silent.prompt1", "silent.prompt2", "silent.one_way"):
        d.after(4.0)
        d.prompt_finished(prompt, after_s=2.0)
    d.after(10)
    ((_, callback),) = d.of_type(cmd.RequestCallback)
    assert callback.number == "79161234567"
    assert callback.trigger_call == CALL
    assert callback.reason.split(" ", 1)[0] == "one_way_audio"
    assert len(d.of_type(cmd.HangupCall)) == 1


def test_without_one_way_audio_callbacks_the_zh_drop_asks_for_no_callback() -> None:
    """one_way_audio_callback off: the zh drop says the plain closing phrase, asks for nothing.
    (Callbacks disabled with it on is refused by the configuration itself.)"""
    d = greeted("zh", silent_caller={"one_way_audio_callback": False})
    for prompt in ("silent.prompt1", "silent.prompt2", "silent.closing"):
        d.after(4.0)
        d.prompt_finished(prompt, after_s=2.0)
    d.after(10)
    assert d.of_type(cmd.RequestCallback) == []
    played = [prompt for _, prompt in d.prompts()]
    assert "silent.one_way" not in played
    assert played[-1] == "silent.closing"


def test_one_way_audio_from_a_withheld_number_notes_that_no_callback_is_possible() -> None:
    """No number, no callback: the decision is logged instead."""
    d = driver("zh")
    d.run_until(T0)
    d.handle(
        ev.LegCreated(
            CALLER, CALL, "PJSIP/alice-00000001", "PJSIP/alice", "", "", "100", ev.Direction.INBOUND
        )
    )
    d.handle_all(
        [
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
    for prompt in ("silent.prompt1", "silent.prompt2", "silent.one_way"):
        d.until_prompt()
        d.prompt_finished(prompt, after_s=2.0)
    d.after(10)
    assert d.of_type(cmd.RequestCallback) == []
    assert d.notes("no_callback")
    assert len(d.of_type(cmd.HangupCall)) == 1


def test_prompt_that_fails_to_play_abandons_the_procedure_without_a_drop() -> None:
    """A caller is never dropped without hearing the phrase: a failed prompt ends the procedure."""
    d = greeted()
    d.until_prompt()
    d.prompt_finished("silent.prompt", after_s=1.0, ok=False)
    d.after(30)
    assert [p for _, p in d.prompts()] == ["silent.prompt"]
    assert d.of_type(cmd.HangupCall) == []
    assert d.notes("silent_caller_abandoned")


def test_prompt_that_never_reports_its_end_abandons_after_the_guard() -> None:
    """A lost end-of-prompt report counts as a failed prompt once the guard expires."""
    d = greeted()
    d.after(5)
    d.after(60)
    (note,) = d.notes("silent_caller_abandoned")
    assert "30 s" in note.reason
    assert d.of_type(cmd.HangupCall) == []


def test_end_of_an_unrelated_prompt_does_not_advance_the_procedure() -> None:
    """Only the end of the step's own prompt on the caller's leg moves it on."""
    d = greeted()
    d.after(3)
    d.handle(ev.PromptFinished(CALLER, "hold.announce"), at=d.now + 1)
    d.after(10)
    assert len(d.prompts()) == 1


def test_hold_stops_the_procedure() -> None:
    """The agent putting the caller on hold takes over: no more prompts."""
    d = greeted()
    d.handle(ev.HoldPressed(AGENT), at=GREETING_END + 1.0)
    d.after(30)
    assert d.prompts() == []
    assert d.notes("silent_caller_stopped")


def test_agent_feature_code_stops_the_procedure() -> None:
    """An agent's feature code (a script, the farewell) takes over from the procedure."""
    d = greeted()
    d.handle(ev.FeatureRequested(AGENT, "pbxagent_prank"), at=GREETING_END + 1.0)
    d.after(30)
    assert d.prompts() == []


def test_separation_before_the_end_waits_for_the_next_agent() -> None:
    """Parties separated mid-procedure (a transfer): it begins again with the next agent."""
    d = greeted()
    d.handle(ev.LegLeftBridge(AGENT, "b1"), at=GREETING_END + 1.0)
    d.after(30)
    assert d.prompts() == []
    second = ev.LegId("c.3")
    d.handle_all(
        [
            ev.LegHungUp(AGENT, 16),
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
            ev.LegJoinedBridge(second, "b1"),
        ]
    )
    reconnected = d.now
    d.after(30)
    assert d.prompts()[0][0] == pytest.approx(reconnected + 8 + 2.5, abs=1e-6)


def test_caller_hanging_up_ends_the_procedure() -> None:
    """Nothing is played to a caller who has gone."""
    d = greeted()
    d.handle(ev.LegHungUp(CALLER, 16), at=GREETING_END + 1.0)
    d.after(30)
    assert d.prompts() == []


def test_losing_the_pbx_link_stops_the_procedure_without_a_drop() -> None:
    """The link drops after the greeting; the caller may have started talking meanwhile (that
    talk start is lost with the link): no prompt, no closing phrase, no drop."""
    d = greeted()
    d.lose_link(at=GREETING_END + 0.3)
    d.restore_link(at=GREETING_END + 0.8)
    d.after(60)
    assert d.prompts() == []
    assert d.of_type(cmd.HangupCall) == []
    (note,) = d.notes("silent_caller_unheard")
    assert note.fields["silences_s"] == []


def test_losing_the_pbx_link_after_the_first_prompt_cancels_the_closing_and_the_drop() -> None:
    """Lost while counting towards the closing phrase: it is never said and the caller stays."""
    d = greeted()
    d.until_prompt()
    d.prompt_finished("silent.prompt", after_s=2.0)
    d.lose_link(at=d.now + 1.0)
    d.after(60)
    assert [p for _, p in d.prompts()] == ["silent.prompt"]
    assert d.of_type(cmd.HangupCall) == []


def test_the_procedure_is_not_run_again_when_the_link_is_back() -> None:
    """After the outage the agent speaks again and the caller is not heard: no prompt, since
    the daemon cannot tell a caller listening to the agent from a silent one."""
    d = greeted()
    d.lose_link(at=GREETING_END + 0.3)
    d.restore_link(at=GREETING_END + 0.8)
    d.speech(AGENT, GREETING_END + 2.0, GREETING_END + 5.0)
    d.after(60)
    assert d.prompts() == []


def test_a_connection_made_while_the_link_was_down_is_not_checked() -> None:
    """The caller waited for an agent when the link dropped and was bridged meanwhile: the
    resync shows them connected, but the greeting and the first words went unheard."""
    d = driver()
    d.run_until(T0)
    d.handle_all(
        [
            created(CALLER, CALL),
            created(
                AGENT,
                CALL,
                endpoint="PJSIP/agent-1001",
                number="100",
                name="",
                direction=ev.Direction.OUTBOUND,
            ),
            ev.LegAnswered(CALLER),
        ]
    )
    d.lose_link(at=T0 + 1.0)
    d.restore_link(at=T0 + 5.0, bridges={CALLER: "b1", AGENT: "b1"})
    d.after(60)
    assert d.prompts() == []
    (note,) = d.notes("silent_caller_unheard")
    assert note.fields["link_lost_at"] == T0 + 1.0


def test_disabled_rule_plays_nothing() -> None:
    """``silent_caller.enabled = false``: the policy stays out of the call."""
    d = greeted(silent_caller={"enabled": False})
    d.after(30)
    assert d.issued == []


def test_calls_without_resolved_standards_are_sat_out() -> None:
    """No standards for the call (tests that set none): the policy does not start."""
    d = CallDriver(SilentCallerPolicy(), None)
    d.connect(at=T0)
    d.after(30)
    assert (d.started, d.issued) == (False, [])


def test_caller_already_talking_when_the_bridge_forms_is_judged_when_they_stop() -> None:
    """Speech begun before the bridge counts once its end is reported."""
    d = driver()
    d.run_until(T0)
    d.handle_all(
        [
            ev.LegCreated(
                CALLER,
                CALL,
                "PJSIP/alice-00000001",
                "PJSIP/alice",
                "79161234567",
                "",
                "100",
                ev.Direction.INBOUND,
            ),
            ev.TalkingStarted(CALLER),
        ]
    )
    d.connect(at=T0 + 0.5)
    d.handle(ev.TalkingStopped(CALLER, 300, 1200), at=T0 + 1.5)
    d.after(30)
    assert d.prompts() == []


def test_asterisk_default_threshold_still_prompts_at_the_configured_instant() -> None:
    """With TALK_DETECT's default 2.5 s threshold the end arrives exactly when the step is due."""
    d = driver()
    d.connect(at=T0)
    d.speech(AGENT, T0 + 0.5, T0 + 2.0, report_delay_s=2.5)
    d.after(10)
    assert d.prompts()[0][0] == pytest.approx(T0 + 2.0 + 2.5, abs=1e-6)

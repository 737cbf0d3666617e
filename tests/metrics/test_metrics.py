"""Metrics fed by decisions, neutral events and AMI events (no network, no event loop)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from pbx_agent.engine import Decision
from pbx_agent.metrics import Metrics
from pbx_agent.model import events as ev
from pbx_agent.model.events import LegId
from pbx_agent.pbx.ami_client import AmiClient, AmiSettings
from pbx_agent.pbx.esl_client import EslClient, EslSettings
from pbx_agent.wire.ami import AmiMessage
from pbx_agent.wire.esl import EslEvent


def metrics(**kwargs: Any) -> Metrics:
    return Metrics(CollectorRegistry(), process_collectors=False, **kwargs)


def value(m: Metrics, name: str, **labels: str) -> float:
    found = m.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def decision(rule: str, action: str, reason: str = "", **fields: Any) -> Decision:
    return Decision(
        at=1.0, call_id="c1", rule=rule, policy="p", action=action, reason=reason, fields=fields
    )


def hold_fact(**fact: Any) -> Decision:
    base = {"held_role": "caller", "tier": "specialist", "duration_s": 75.0, "reminders": 0}
    return decision("R1", "record_fact", kind="hold", fields={**base, **fact})


def test_every_decision_counts_by_rule_and_action() -> None:
    """Each decision adds one to pbx_agent_decisions_total{rule, action}."""
    m = metrics()
    m.on_decision(decision("R4", "play_prompt"))
    m.on_decision(decision("R4", "play_prompt"))
    m.on_decision(decision("R2", "silent_caller_step"))
    assert value(m, "pbx_agent_decisions_total", rule="R4", action="play_prompt") == 2
    assert value(m, "pbx_agent_decisions_total", rule="R2", action="silent_caller_step") == 1


def test_a_customer_hold_counts_with_its_duration_and_reminders() -> None:
    """The hold fact gives a hold, its duration and the reminders that played."""
    m = metrics()
    m.on_decision(hold_fact(duration_s=75.0, reminders=2))
    assert value(m, "pbx_agent_holds_total", tier="specialist") == 1
    assert value(m, "pbx_agent_hold_duration_seconds_count") == 1
    assert value(m, "pbx_agent_hold_duration_seconds_sum") == 75.0
    assert value(m, "pbx_agent_hold_duration_seconds_bucket", le="60.0") == 0
    assert value(m, "pbx_agent_hold_duration_seconds_bucket", le="90.0") == 1
    assert value(m, "pbx_agent_hold_reminders_total") == 2


def test_a_hold_over_the_tier_limit_counts_by_tier() -> None:
    """over_limit in the hold fact counts in holds_over_limit by the agent's tier."""
    m = metrics()
    m.on_decision(hold_fact(over_limit=True, tier="senior"))
    m.on_decision(hold_fact(over_limit=False, tier="senior"))
    assert value(m, "pbx_agent_holds_over_limit_total", tier="senior") == 1
    assert value(m, "pbx_agent_holds_total", tier="senior") == 2


def test_a_hold_of_the_agent_by_the_customer_is_not_a_standard_hold() -> None:
    """Only the customer's holds are counted as holds (as in the store)."""
    m = metrics()
    m.on_decision(hold_fact(held_role="agent"))
    assert value(m, "pbx_agent_holds_total", tier="specialist") == 0
    assert value(m, "pbx_agent_decisions_total", rule="R1", action="record_fact") == 1


def test_drops_count_per_rule_with_stage_and_script() -> None:
    """Silent-caller drops by stage, lingering drops, script steps and drops by script."""
    m = metrics()
    m.on_decision(decision("R2", "silent_caller_drop"))
    m.on_decision(decision("R2", "silent_caller_drop", stage="entry"))
    m.on_decision(decision("R3", "lingering_drop"))
    m.on_decision(decision("R4", "script_step_played", script="abuse"))
    m.on_decision(decision("R4", "script_step_played", script="abuse"))
    m.on_decision(decision("R4", "script_drop", script="abuse"))
    assert value(m, "pbx_agent_silent_caller_drops_total", stage="call") == 1
    assert value(m, "pbx_agent_silent_caller_drops_total", stage="entry") == 1
    assert value(m, "pbx_agent_linger_drops_total") == 1
    assert value(m, "pbx_agent_script_steps_total", script="abuse") == 2
    assert value(m, "pbx_agent_script_drops_total", script="abuse") == 1


def test_routes_count_by_route_and_reason() -> None:
    """Night IVR, flagged queue and agent routes count with their machine-readable reason."""
    m = metrics()
    m.on_decision(decision("R5", "night_ivr", "night_repeat_caller"))
    m.on_decision(decision("R9", "flagged_queue", "flagged"))
    m.on_decision(decision("R5", "route_agent", "store_unavailable"))
    assert value(m, "pbx_agent_routes_total", route="ivr", reason="night_repeat_caller") == 1
    assert value(m, "pbx_agent_routes_total", route="flagged", reason="flagged") == 1
    assert value(m, "pbx_agent_routes_total", route="agent", reason="store_unavailable") == 1


def test_a_free_text_reason_is_folded_into_other() -> None:
    """A reason that is not a machine-readable word never becomes a label value."""
    m = metrics()
    m.on_decision(decision("R5", "route_agent", "the caller +7 916 123 45 67 said so"))
    assert value(m, "pbx_agent_routes_total", route="agent", reason="other") == 1


def test_callback_outcomes_and_machine_verdicts_count_from_events() -> None:
    """OriginateOutcome counts attempts by outcome; MachineDetected counts verdicts."""
    m = metrics()
    m.on_event(ev.OriginateOutcome("r1", "busy"), 0.0)
    m.on_event(ev.OriginateOutcome("r2", "answered", LegId("l2")), 0.0)
    m.on_event(ev.OriginateOutcome("r3", "exploded"), 0.0)
    m.on_event(ev.MachineDetected(LegId("l2"), "machine", "LONGGREETING"), 0.0)
    assert value(m, "pbx_agent_callback_attempts_total", outcome="busy") == 1
    assert value(m, "pbx_agent_callback_attempts_total", outcome="answered") == 1
    assert value(m, "pbx_agent_callback_attempts_total", outcome="other") == 1
    assert value(m, "pbx_agent_amd_results_total", result="machine") == 1


def test_a_lost_pbx_link_counts_as_a_disconnect() -> None:
    """PbxConnectionChanged(connected=False) counts; a reconnect does not."""
    m = metrics()
    m.on_event(ev.PbxConnectionChanged("asterisk", connected=False, reason="reset"), 0.0)
    m.on_event(ev.PbxConnectionChanged("asterisk", connected=True), 0.0)
    assert value(m, "pbx_agent_pbx_disconnects_total", pbx="asterisk") == 1


def test_pbx_link_state_is_read_at_scrape_time() -> None:
    """pbx_agent_pbx_connected and the health report follow the watched callable."""
    m = metrics()
    up = [True]
    m.watch_pbx("asterisk", lambda: up[0])
    assert value(m, "pbx_agent_pbx_connected", pbx="asterisk") == 1
    assert m.health().pbx == {"asterisk": True}
    up[0] = False
    assert value(m, "pbx_agent_pbx_connected", pbx="asterisk") == 0
    assert not m.health().healthy


def test_ami_events_are_timed_and_their_lag_measured_from_the_switch_timestamp() -> None:
    """The wrapped event callback observes the handling time and now - Timestamp."""
    clock = iter([10.0, 10.002])  # perf_counter at start and end of the handling
    m = metrics(wall=lambda: 1_700_000_000.25, monotonic=lambda: next(clock))
    handled: list[AmiMessage] = []
    client = AmiClient(
        AmiSettings(host="127.0.0.1", port=1, username="u", secret="s"), on_event=handled.append
    )
    m.instrument_ami(client, "asterisk")
    assert client.on_event is not None
    message = AmiMessage((("Event", "Newchannel"), ("Timestamp", "1700000000.100000")))
    client.on_event(message)
    assert handled == [message]
    assert value(m, "pbx_agent_event_handling_seconds_count", pbx="asterisk") == 1
    assert abs(value(m, "pbx_agent_event_handling_seconds_sum", pbx="asterisk") - 0.002) < 1e-9
    assert abs(value(m, "pbx_agent_event_lag_seconds_sum", pbx="asterisk") - 0.15) < 1e-6


def test_an_event_without_a_timestamp_is_timed_but_has_no_lag() -> None:
    """Without timestampevents the lag histogram stays empty, the handling is still timed."""
    m = metrics()
    client = AmiClient(
        AmiSettings(host="127.0.0.1", port=1, username="u", secret="s"), on_event=lambda _m: None
    )
    m.instrument_ami(client, "asterisk")
    assert client.on_event is not None
    client.on_event(AmiMessage((("Event", "Hangup"),)))
    assert value(m, "pbx_agent_event_handling_seconds_count", pbx="asterisk") == 1
    assert value(m, "pbx_agent_event_lag_seconds_count", pbx="asterisk") == 0


def test_a_decision_listener_never_raises_on_odd_fields() -> None:
    """Malformed hold facts (strings, missing keys) are counted without failing the engine."""
    m = metrics()
    m.on_decision(decision("R1", "record_fact", kind="hold", fields="not a mapping"))
    m.on_decision(hold_fact(duration_s="long", reminders="many", tier=None))
    assert value(m, "pbx_agent_holds_total", tier="unknown") == 2
    assert value(m, "pbx_agent_hold_duration_seconds_count") == 0


def test_a_verdict_reported_outside_the_events_counts_the_same() -> None:
    """count_machine_verdict (the daemon's own detector) folds case and unknown words."""
    m = metrics()
    m.count_machine_verdict("HUMAN")
    m.count_machine_verdict("fax")
    assert value(m, "pbx_agent_amd_results_total", result="human") == 1
    assert value(m, "pbx_agent_amd_results_total", result="other") == 1


def test_esl_events_are_timed_and_their_lag_measured_from_event_date_timestamp() -> None:
    """FreeSWITCH stamps events in microseconds; the lag is now - that stamp."""
    m = metrics(wall=lambda: 1_795_339_816.5)
    client = EslClient(
        EslSettings(host="127.0.0.1", port=1, password="p"), on_event=lambda _e: None
    )
    m.instrument_esl(client, "freeswitch")
    assert client.on_event is not None
    client.on_event(
        EslEvent((("Event-Name", "HEARTBEAT"), ("Event-Date-Timestamp", "1795339816376462")))
    )
    assert value(m, "pbx_agent_event_handling_seconds_count", pbx="freeswitch") == 1
    assert abs(value(m, "pbx_agent_event_lag_seconds_sum", pbx="freeswitch") - 0.123538) < 1e-5


def test_one_event_in_eight_is_timed() -> None:
    """Sixteen events: two are timed (the histograms keep their shape at a tenth of the cost)."""
    m = metrics()
    seen: list[AmiMessage] = []
    client = AmiClient(
        AmiSettings(host="127.0.0.1", port=1, username="u", secret="s"), on_event=seen.append
    )
    m.instrument_ami(client, "asterisk")
    assert client.on_event is not None
    for _ in range(16):
        client.on_event(AmiMessage((("Event", "RTCPSent"),)))
    assert len(seen) == 16
    assert value(m, "pbx_agent_event_handling_seconds_count", pbx="asterisk") == 2


def test_silences_and_talk_overs_count_from_the_dead_air_facts() -> None:
    """R8: each dead_air fact is one silence over the limit, each talk_over fact one overlap."""
    m = metrics()
    m.on_decision(decision("R1", "record_fact", kind="dead_air", fields={"silent_s": 4.0}))
    m.on_decision(decision("R1", "record_fact", kind="dead_air", fields={"silent_s": 9.0}))
    m.on_decision(decision("R1", "record_fact", kind="talk_over", fields={"overlap_s": 5.0}))
    assert value(m, "pbx_agent_silences_total") == 2
    assert value(m, "pbx_agent_talk_overs_total") == 1
    assert value(m, "pbx_agent_holds_total", tier="specialist") == 0

"""Night repeat callers (R5) and flagged callers (R9): the pure routing decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx_agent.config.settings import resolve_standards
from pbx_agent.numbers import normalize
from pbx_agent.policies.night_routing import (
    FlagInfo,
    PastInteraction,
    Route,
    RouteInputs,
    RouteRules,
    decide_route,
    fallback,
    first_instant,
    is_night,
    needs_flag,
    needs_history,
    repeat_count,
)

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NUMBER = normalize("+79161234567", "RU")


def rules(zone: ZoneInfo = MOSCOW, **overrides: Any) -> RouteRules:
    standards = resolve_standards("ru", "МТС", overrides)
    return RouteRules.from_standards(standards, zone, "pbxagent-ivr")


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold).astimezone(UTC)  # type: ignore[misc]


def history(
    now: datetime, *hours_ago: float, topic: str | None = None
) -> tuple[PastInteraction, ...]:
    return tuple(PastInteraction(now - timedelta(hours=h), topic) for h in hours_ago)


def inputs(now: datetime, *hours_ago: float, **kwargs: Any) -> RouteInputs:
    return RouteInputs(NUMBER, interactions=history(now, *hours_ago), history_read=True, **kwargs)


# ------------------------------------------------------------------------------ the window


def test_one_second_before_the_window_opens_is_day() -> None:
    """21:59:59 local is outside the default 22:00-08:00 window."""
    assert not is_night(local(MOSCOW, 2026, 6, 10, 21, 59, 59), rules())


def test_the_window_opens_at_its_start_time() -> None:
    """22:00:00 local is night."""
    assert is_night(local(MOSCOW, 2026, 6, 10, 22, 0, 0), rules())


def test_the_window_runs_through_midnight() -> None:
    """23:59:59 and 00:00:00 local are both night (the window crosses midnight)."""
    assert is_night(local(MOSCOW, 2026, 6, 10, 23, 59, 59), rules())
    assert is_night(local(MOSCOW, 2026, 6, 11, 0, 0, 0), rules())


def test_the_window_closes_at_its_end_time() -> None:
    """07:59:59 is night, 08:00:00 is day (the end is excluded)."""
    assert is_night(local(MOSCOW, 2026, 6, 11, 7, 59, 59), rules())
    assert not is_night(local(MOSCOW, 2026, 6, 11, 8, 0, 0), rules())


def test_midday_is_day() -> None:
    """The middle of the day is never night."""
    assert not is_night(local(MOSCOW, 2026, 6, 11, 13, 0), rules())


def test_a_window_inside_one_day_does_not_wrap() -> None:
    """01:00-05:00 covers 03:00 but not 23:00 or 05:00."""
    r = rules(night_routing={"window_start": "01:00", "window_end": "05:00"})
    assert is_night(local(MOSCOW, 2026, 6, 11, 3, 0), r)
    assert not is_night(local(MOSCOW, 2026, 6, 11, 23, 0), r)
    assert not is_night(local(MOSCOW, 2026, 6, 11, 5, 0), r)


def test_the_window_is_read_in_the_sites_zone() -> None:
    """23:00 UTC is 02:00 in Moscow (night) even though the UTC time is what is stored."""
    assert is_night(datetime(2026, 6, 10, 23, 0, tzinfo=UTC), rules())
    assert not is_night(datetime(2026, 6, 10, 18, 59, tzinfo=UTC), rules())


def test_a_start_in_the_skipped_spring_hour_starts_the_night_when_the_clock_jumps() -> None:
    """Berlin skips 02:00-03:00 on 2026-03-29: a window from 02:30 starts at 03:00 CEST."""
    r = rules(BERLIN, night_routing={"window_start": "02:30", "window_end": "06:00"})
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 CET becomes 03:00 CEST
    assert first_instant(jump.date(), r.night.window_start, BERLIN) == jump
    assert not is_night(jump - timedelta(seconds=1), r)
    assert is_night(jump, r)


def test_the_night_keeps_its_local_end_across_the_spring_change() -> None:
    """On the short night the window still ends at 08:00 local (CEST), 9 hours after 22:00 CET."""
    r = rules(BERLIN)
    assert is_night(local(BERLIN, 2026, 3, 29, 7, 59, 59), r)
    assert not is_night(local(BERLIN, 2026, 3, 29, 8, 0, 0), r)
    assert is_night(local(BERLIN, 2026, 3, 28, 22, 0, 0), r)


def test_the_repeated_autumn_hour_is_night_twice_when_inside_the_window() -> None:
    """Berlin repeats 02:00-03:00 on 2026-10-25: both 02:30s are inside 22:00-08:00."""
    r = rules(BERLIN)
    first = local(BERLIN, 2026, 10, 25, 2, 30, fold=0)
    second = local(BERLIN, 2026, 10, 25, 2, 30, fold=1)
    assert second - first == timedelta(hours=1)
    assert is_night(first, r)
    assert is_night(second, r)


def test_an_end_in_the_repeated_autumn_hour_ends_the_night_once() -> None:
    """A window ending at 02:30 ends at its first occurrence; the clock going back to 02:00
    does not start the night again."""
    r = rules(BERLIN, night_routing={"window_start": "22:00", "window_end": "02:30"})
    assert is_night(local(BERLIN, 2026, 10, 25, 2, 15, fold=0), r)
    assert not is_night(local(BERLIN, 2026, 10, 25, 2, 30, fold=0), r)
    assert not is_night(local(BERLIN, 2026, 10, 25, 2, 15, fold=1), r)


@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=datetime(2030, 12, 31),  # noqa: DTZ001
        timezones=st.just(UTC),
    )
)
def test_away_from_clock_changes_night_is_the_wall_clock_window(now: datetime) -> None:
    """Wherever no clock change is near, night is exactly 22:00 <= local time < 08:00."""
    wall = now.astimezone(BERLIN)
    if wall.utcoffset() != (now + timedelta(hours=12)).astimezone(BERLIN).utcoffset() or (
        wall.utcoffset() != (now - timedelta(hours=12)).astimezone(BERLIN).utcoffset()
    ):
        return
    expected = wall.hour >= 22 or wall.hour < 8
    assert is_night(now, rules(BERLIN)) is expected


# ------------------------------------------------------------------------------ counting


def test_more_than_the_threshold_at_night_goes_to_the_ivr_with_the_notice() -> None:
    """Three interactions in the last 24 h (threshold 2) at night: the IVR, after the notice."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    decision = decide_route(inputs(now, 1, 5, 20), now, rules())
    assert decision.route is Route.IVR
    assert decision.target == "pbxagent-ivr"
    assert decision.reason == "night_repeat_caller"
    assert decision.notice == "night.notice"
    assert decision.fields["count"] == 3
    assert decision.fields["threshold"] == 2


def test_exactly_the_threshold_is_not_enough() -> None:
    """Two interactions is not "more than 2": the agent answers."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    decision = decide_route(inputs(now, 1, 5), now, rules())
    assert decision.route is Route.AGENT
    assert decision.reason == "night_below_threshold"
    assert decision.fields["count"] == 2


def test_the_same_repeat_caller_by_day_goes_to_an_agent() -> None:
    """By day the history does not matter."""
    now = local(MOSCOW, 2026, 6, 11, 12, 0)
    decision = decide_route(inputs(now, 1, 2, 3, 4), now, rules())
    assert decision.route is Route.AGENT
    assert decision.reason == "day"


def test_an_interaction_exactly_at_the_trailing_edge_counts() -> None:
    """An interaction that started exactly 24 h ago is still in the window."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    assert decide_route(inputs(now, 1, 2, 24), now, rules()).route is Route.IVR


def test_an_interaction_just_past_the_trailing_edge_does_not_count() -> None:
    """24 h and one microsecond ago is out of the window."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    decision = decide_route(inputs(now, 1, 2, 24 + 1 / 3_600_000_000), now, rules())
    assert decision.route is Route.AGENT
    assert decision.fields["count"] == 2


def test_the_trailing_window_is_elapsed_hours_across_a_clock_change() -> None:
    """Across the autumn change, 24 h back is 24 elapsed hours, not the same wall time."""
    r = rules(BERLIN)
    now = local(BERLIN, 2026, 10, 25, 23, 0)  # CET; 24 h earlier is 00:00 CEST that day
    # 23:30 CEST the evening before: 23.5 h earlier by the wall clock, 24.5 h in fact.
    earlier = PastInteraction(local(BERLIN, 2026, 10, 24, 23, 30))
    assert now - earlier.started_at == timedelta(hours=24, minutes=30)
    result = RouteInputs(NUMBER, interactions=(earlier, *history(now, 1, 2)), history_read=True)
    assert decide_route(result, now, r).fields["count"] == 2


def test_the_trailing_window_follows_the_configured_hours() -> None:
    """trailing_hours = 6 leaves an interaction 7 h ago out."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    r = rules(night_routing={"trailing_hours": 6})
    assert decide_route(inputs(now, 1, 2, 7), now, r).fields["count"] == 2


def test_the_threshold_is_configurable() -> None:
    """threshold = 1: two interactions are enough."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    r = rules(night_routing={"threshold": 1})
    assert decide_route(inputs(now, 1, 2), now, r).route is Route.IVR


def test_per_topic_counting_needs_the_same_question_more_than_the_threshold() -> None:
    """Three interactions on three different topics are not the same question."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    past = (
        *history(now, 1, topic="tariff"),
        *history(now, 2, topic="roaming"),
        *history(now, 3, topic="balance"),
    )
    decision = decide_route(RouteInputs(NUMBER, interactions=past, history_read=True), now, rules())
    assert decision.route is Route.AGENT
    assert decision.fields["count"] == 1


def test_per_topic_counting_sends_the_same_question_asked_three_times_to_the_ivr() -> None:
    """Three interactions on one topic among others: the IVR, and the topic is named."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    past = (*history(now, 1, 2, 3, topic="tariff"), *history(now, 4, topic="roaming"))
    decision = decide_route(RouteInputs(NUMBER, interactions=past, history_read=True), now, rules())
    assert decision.route is Route.IVR
    assert decision.fields["count_topic"] == "tariff"


def test_without_known_topics_every_interaction_counts() -> None:
    """per_topic_when_known with no topic recorded counts over all interactions."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    since = now - timedelta(days=1)
    assert repeat_count(history(now, 1, 2, 3), since, "per_topic_when_known") == (3, None)


def test_interactions_without_a_topic_form_their_own_group() -> None:
    """Two untopiced and two on 'tariff': neither group exceeds 2, nothing is counted twice."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    past = (*history(now, 1, 2), *history(now, 3, 4, topic="tariff"))
    assert repeat_count(past, now - timedelta(days=1), "per_topic_when_known") == (2, "tariff")


def test_count_mode_all_ignores_topics() -> None:
    """count_mode = 'all': three different topics still make three interactions."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    past = (
        *history(now, 1, topic="tariff"),
        *history(now, 2, topic="roaming"),
        *history(now, 3, topic="balance"),
    )
    r = rules(night_routing={"count_mode": "all"})
    decision = decide_route(RouteInputs(NUMBER, interactions=past, history_read=True), now, r)
    assert decision.route is Route.IVR
    assert decision.fields["count"] == 3


def test_the_disabled_night_rule_sends_repeat_callers_to_an_agent() -> None:
    """night_routing.enabled = false: nobody goes to the IVR."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    decision = decide_route(inputs(now, 1, 2, 3), now, rules(night_routing={"enabled": False}))
    assert decision.route is Route.AGENT
    assert decision.reason == "night_rule_disabled"


def test_unread_history_at_night_goes_to_an_agent() -> None:
    """If the history was not read, nobody is sent to the IVR on a guess."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    decision = decide_route(RouteInputs(NUMBER), now, rules())
    assert decision.route is Route.AGENT
    assert decision.reason == "history_unknown"


def test_the_ivr_target_can_be_configured() -> None:
    """night_routing.ivr_target replaces the PBX's IVR destination."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    r = rules(night_routing={"ivr_target": "self-service"})
    assert decide_route(inputs(now, 1, 2, 3), now, r).target == "self-service"


def test_history_is_needed_only_at_night_with_the_rule_enabled() -> None:
    """The hook reads the history only when the decision depends on it."""
    night = local(MOSCOW, 2026, 6, 10, 23, 0)
    day = local(MOSCOW, 2026, 6, 10, 12, 0)
    assert needs_history(night, rules())
    assert not needs_history(day, rules())
    assert not needs_history(night, rules(night_routing={"enabled": False}))


# ------------------------------------------------------------------------------ numbers


def test_the_8_and_plus7_forms_of_one_number_are_one_caller() -> None:
    """8 916 ... and +7 916 ... normalise to the same key the history is read by."""
    assert normalize("89161234567", "RU") == normalize("+79161234567", "RU") == NUMBER


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("anonymous", "number_anonymous"), ("", "number_empty"), ("12", "number_too_short")],
)
def test_a_caller_without_a_usable_number_goes_to_an_agent(raw: str, reason: str) -> None:
    """Anonymous, empty or unparsable numbers go to an agent and say why."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    decision = decide_route(RouteInputs(normalize(raw, "RU")), now, rules())
    assert decision.route is Route.AGENT
    assert decision.reason == reason


# ------------------------------------------------------------------------------ flags


def flag(**kwargs: Any) -> FlagInfo:
    values: dict[str, Any] = {
        "reason": "abuse",
        "set_by": "abuse_script",
        "set_at": datetime(2026, 6, 1, tzinfo=UTC),
    }
    values.update(kwargs)
    return FlagInfo(**values)


def test_a_flagged_caller_goes_to_the_flagged_queue_by_day() -> None:
    """Flags route at any hour: by day too."""
    now = local(MOSCOW, 2026, 6, 10, 12, 0)
    decision = decide_route(RouteInputs(NUMBER, flag=flag()), now, rules())
    assert decision.route is Route.FLAGGED
    assert decision.target == "flagged"
    assert decision.fields["flag_set_by"] == "abuse_script"


def test_a_flag_wins_over_the_night_rule() -> None:
    """A flagged repeat caller at night goes to the flagged queue, not the IVR."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    decision = decide_route(inputs(now, 1, 2, 3, flag=flag()), now, rules())
    assert decision.route is Route.FLAGGED


def test_an_expired_flag_no_longer_routes() -> None:
    """A flag past its expiry is ignored."""
    now = local(MOSCOW, 2026, 6, 10, 12, 0)
    decision = decide_route(RouteInputs(NUMBER, flag=flag(expires_at=now)), now, rules())
    assert decision.route is Route.AGENT
    assert decision.fields["flagged"] is False


def test_the_flagged_queue_is_configurable() -> None:
    """flags.flagged_queue names the designated queue."""
    now = local(MOSCOW, 2026, 6, 10, 12, 0)
    r = rules(flags={"flagged_queue": "seniors"})
    assert decide_route(RouteInputs(NUMBER, flag=flag()), now, r).target == "seniors"


def test_disabled_flags_do_not_route_and_say_so() -> None:
    """flags.enabled = false: the flag is noted and the other rules decide."""
    now = local(MOSCOW, 2026, 6, 10, 23, 0)
    r = rules(flags={"enabled": False})
    decision = decide_route(inputs(now, 1, 2, 3, flag=flag()), now, r)
    assert decision.route is Route.IVR
    assert decision.fields["flag_ignored"] == "flags disabled"
    assert not needs_flag(r)


def test_the_fallback_is_the_agent_with_its_reason() -> None:
    """When the inputs could not be had the call goes to an agent, saying why."""
    decision = fallback("store_unavailable", error="boom")
    assert (decision.route, decision.target, decision.reason) == (
        Route.AGENT,
        "",
        "store_unavailable",
    )
    assert decision.fields == {"error": "boom"}


def test_a_naive_now_is_refused() -> None:
    """Times without a zone would make the window ambiguous: refused with a clear message."""
    with pytest.raises(ValueError, match="naive"):
        decide_route(RouteInputs(NUMBER), datetime(2026, 6, 10, 23, 0), rules())  # noqa: DTZ001


def test_the_parts_of_one_call_are_one_contact_per_topic() -> None:
    """Three agents on one call (two of them on the tariff): one contact over all, and one
    in each topic it touched; other calls count one each."""
    now = datetime(2026, 6, 10, 23, 0, tzinfo=UTC)
    since = now - timedelta(hours=24)
    past = [
        PastInteraction(now - timedelta(hours=3), "tariff", "call-1"),
        PastInteraction(now - timedelta(hours=2.9), "tariff", "call-1"),
        PastInteraction(now - timedelta(hours=2.8), "roaming", "call-1"),
        PastInteraction(now - timedelta(hours=1), "tariff", "call-2"),
        PastInteraction(now - timedelta(hours=0.5), "tariff", None),
    ]
    assert repeat_count(past, since, "all") == (3, None)
    assert repeat_count(past, since, "per_topic_when_known") == (3, "tariff")
    assert repeat_count(past[:3], since, "per_topic_when_known")[0] == 1

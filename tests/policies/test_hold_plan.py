"""The hold program's plan: announcement first, reminders on one grid, offers where promised."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx_agent.config.settings import resolve_standards
from pbx_agent.config.standards import HoldRule
from pbx_agent.policies.hold import callable_number, hold_plan, tier_limit

ZH = resolve_standards("zh", "").hold


def rule(first: float, every: float, with_first: bool) -> HoldRule:
    return HoldRule.model_validate(
        {
            "reminder_first_after_s": first,
            "reminder_interval_s": every,
            "callback_offer": {"with_first_reminder": with_first},
        }
    )


@given(
    first=st.floats(5, 600),
    every=st.floats(5, 600),
    limit=st.one_of(st.none(), st.floats(10, 3600)),
    offer=st.booleans(),
    with_first=st.booleans(),
)
def test_plan_shape(
    first: float, every: float, limit: float | None, offer: bool, with_first: bool
) -> None:
    """Announce at 0; offsets never decrease; reminders on the first + k*interval grid; the plan
    ends on that grid; the offer is where promised and only when allowed."""
    plan = hold_plan(rule(first, every, with_first), limit_s=limit, offer=offer)
    announcements = plan.announcements
    assert announcements[0].at_s == 0
    assert announcements[0].prompt == "hold.announce"
    assert [a.at_s for a in announcements] == sorted(a.at_s for a in announcements)
    reminders = [a.at_s for a in announcements if a.prompt == "hold.reminder"]
    assert reminders == [first + k * every for k in range(len(reminders))]
    assert announcements[-1].at_s == reminders[-1]
    offers = [a.at_s for a in announcements if a.prompt == "hold.callback_offer"]
    expected: set[float] = set()
    if offer and with_first:
        expected.add(first)
    if offer and limit is not None:
        expected.add(limit)
    assert offers == sorted(expected)
    assert all(o <= reminders[-1] for o in offers)
    assert plan.repeat == "hold.reminder"
    assert plan.repeat_every_s == every


def test_offer_at_a_limit_off_the_grid_stands_alone() -> None:
    """A limit between two reminders puts the offer there, and reminders go on on their grid."""
    plan = hold_plan(rule(60, 60, False), limit_s=150, offer=True)
    assert [(a.at_s, a.prompt) for a in plan.announcements] == [
        (0, "hold.announce"),
        (60, "hold.reminder"),
        (120, "hold.reminder"),
        (150, "hold.callback_offer"),
        (180, "hold.reminder"),
    ]


def test_offsets_include_the_repetitions() -> None:
    """Reminders after the fixed ones repeat from the last fixed offset."""
    plan = hold_plan(ZH, limit_s=None, offer=False)
    assert plan.offsets("hold.reminder", 45) == [10, 20, 30, 40]


def test_tier_limits() -> None:
    """Known tiers get their own limit; an unknown one the strictest."""
    assert tier_limit(ZH, "senior") == (180, True)
    assert tier_limit(ZH, "specialist") == (120, True)
    assert tier_limit(ZH, None) == (120, False)
    assert tier_limit(ZH, "trainee") == (120, False)


def test_callable_numbers() -> None:
    """A caller id with at least three digits can be called back; anonymous ones cannot."""
    assert callable_number("+79161234567")
    assert not callable_number("anonymous")
    assert not callable_number("")

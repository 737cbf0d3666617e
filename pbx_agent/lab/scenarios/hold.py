"""Scenarios for R1 (hold with announcements, hold not mute): what a held customer hears and
when, what the agent is told, and what is recorded.

On the fake Asterisk the hold program runs for real: the adapter originates the helper
channel, the fake runs the shipped ``pbxagent-hold`` extension (ChanSpy, which stops the held
leg's music as on Asterisk) and the FastAGI hook streams the announcements and the music.
The daemon's log shows every announcement as ``hold_cue`` with how late it started. The
fake plays every sound for its own length (1 s for the music unless told otherwise) and
ignores STREAM FILE's sample offset, so the hook plays more, shorter music segments than on
Asterisk; announcements still start within one segment of their time.
"""

from __future__ import annotations

from typing import Any

from pbx_agent.lab.drivers import AsteriskLabPbx, LabLeg
from pbx_agent.lab.scenario import LabContext, Scenario

CALLER = "79161234567"
ZH = {"site": {"profile": "zh"}}

# The helper extensions of dialplan/asterisk/pbx-agent-hold.conf, for the fake switch.
HELPER_CONTEXTS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("pbxagent-hold", "hold"): [
        ("NoOp", "pbx-agent hold program for ${PBXAGENT_SPY_TARGET}"),
        ("ChanSpy", "${PBXAGENT_SPY_TARGET},qwE"),
        ("Hangup", ""),
    ],
    ("pbxagent-whisper", "whisper"): [
        ("NoOp", "pbx-agent whisper to ${PBXAGENT_SPY_TARGET}"),
        ("ChanSpy", "${PBXAGENT_SPY_TARGET},qwE"),
        ("Hangup", ""),
    ],
    ("pbxagent-whisper", "barge"): [
        ("NoOp", "pbx-agent barge on ${PBXAGENT_SPY_TARGET}"),
        ("ChanSpy", "${PBXAGENT_SPY_TARGET},qBE"),
        ("Hangup", ""),
    ],
}


def _install_dialplan(ctx: LabContext) -> None:
    if isinstance(ctx.pbx, AsteriskLabPbx):
        for (context, exten), steps in HELPER_CONTEXTS.items():
            ctx.pbx.fake.dialplan.add(context, exten, steps)


async def _connected_call(ctx: LabContext) -> tuple[LabLeg, LabLeg]:
    _install_dialplan(ctx)
    caller = await ctx.pbx.inbound_call(CALLER, "Иван")
    await caller.answer()
    agent = await caller.connect_agent("agent-1001", queue="support", member_name="Alice")
    model = ctx.daemon.engine.model
    await ctx.until(
        lambda: any(c.agent is not None and caller.id in c.legs for c in model.calls.values()),
        what="the caller and the agent to be connected",
    )
    return caller, agent


def _decisions(ctx: LabContext, policy: str, action: str) -> list[Any]:
    return [d for d in ctx.decisions if d.policy == policy and d.action == action]


def _hold_fact(ctx: LabContext) -> dict[str, Any]:
    facts = [d.fields["fields"] for d in _decisions(ctx, "hold", "record_fact")]
    if not facts:
        msg = "no hold record was written"
        raise AssertionError(msg)
    return dict(facts[-1])


def _cues(ctx: LabContext, prompt: str) -> list[dict[str, Any]]:
    """This scenario's announcements of ``prompt`` (the log is shared by all scenarios)."""
    return [
        e for e in _own_events(ctx) if e.get("event") == "hold_cue" and e.get("prompt") == prompt
    ]


def _own_events(ctx: LabContext) -> list[dict[str, Any]]:
    first = next(
        (
            i
            for i in range(len(ctx.log_events) - 1, -1, -1)
            if ctx.log_events[i].get("event") == "lab_scenario_started"
        ),
        0,
    )
    return ctx.log_events[first:]


async def _programs_ended(ctx: LabContext) -> None:
    """Every hold program of this scenario has ended (the fake lets a stream that was playing
    when its channel was hung up run to its end, which Asterisk does not)."""

    def count(name: str) -> int:
        return sum(1 for e in _own_events(ctx) if e.get("event") == name)

    await ctx.until(
        lambda: count("hold_program_ended") >= count("hold_program_started"),
        what="every hold program to end",
    )


def _thanked_with(ctx: LabContext) -> list[str]:
    return [d.fields.get("prompt", "") for d in _decisions(ctx, "hold", "play_prompt")]


async def short_hold(ctx: LabContext) -> None:
    """ru: an 8 s hold. Announced at once, no reminder, thanked without the apology."""
    caller, agent = await _connected_call(ctx)
    await agent.talk(1.5)
    await caller.hold(by=agent)
    await ctx.until(lambda: bool(_cues(ctx, "hold.announce")), what="the hold announcement")
    await ctx.sleep(8)
    await caller.unhold(by=agent)
    await ctx.until(lambda: bool(_thanked_with(ctx)), what="the thanks")
    if _thanked_with(ctx) != ["hold.resume"]:
        msg = f"a short hold is thanked with hold.resume, got {_thanked_with(ctx)}"
        raise AssertionError(msg)
    await ctx.sleep(3)
    await _programs_ended(ctx)
    await agent.hangup()
    fact = _hold_fact(ctx)
    ctx.note(f"hold of {fact['duration_s']:.1f} s, {fact['reminders']} reminders, thanked")


async def long_hold(ctx: LabContext) -> None:
    """zh: a 35 s hold. Reminders at 10, 20, 30 s; thanked with the apology."""
    caller, agent = await _connected_call(ctx)
    await caller.hold(by=agent)
    await ctx.sleep(35)
    await caller.unhold(by=agent)
    await ctx.until(lambda: bool(_thanked_with(ctx)), what="the thanks")
    await ctx.until_decided("hold", "record_fact")
    # The hold ends when the switch's Unhold reaches the daemon, a moment after the script's
    # 35 s (more on a loaded machine at time-lapse speed): the rule is one reminder at every
    # full 10 s the hold lasted, none after it ended.
    lasted = float(_hold_fact(ctx)["duration_s"])
    reminders = _cues(ctx, "hold.reminder")
    if len(reminders) != int(lasted // 10):
        msg = (
            f"a {lasted:.1f} s zh hold has {int(lasted // 10)} reminders (every 10 s), "
            f"the program played {len(reminders)}"
        )
        raise AssertionError(msg)
    if _thanked_with(ctx) != ["hold.resume_long"]:
        msg = f"a hold of 20 s or more is thanked with the apology, got {_thanked_with(ctx)}"
        raise AssertionError(msg)
    await _programs_ended(ctx)
    await agent.hangup()
    lateness = ", ".join(f"{c.get('late_ms')} ms" for c in reminders)
    ctx.note(f"3 reminders, late by {lateness}; thanked with the apology")


async def over_limit_hold(ctx: LabContext) -> None:
    """zh: the specialist's 120 s limit passes. The agent is alerted, the customer hears the
    callback offer, presses 1 and is promised a callback."""
    caller, agent = await _connected_call(ctx)
    await caller.hold(by=agent)
    await ctx.until_decided("hold", "alert_agent", timeout=130)
    await ctx.until(lambda: bool(_cues(ctx, "hold.callback_offer")), what="the callback offer")
    await ctx.sleep(4)
    await caller.dtmf("1")
    await ctx.until_decided("hold", "request_callback")
    await ctx.until(
        lambda: bool(_cues(ctx, "hold.callback_registered")), what="the registered-callback phrase"
    )
    await ctx.sleep(3)
    await caller.unhold(by=agent)
    await ctx.until_decided("hold", "record_fact")
    fact = _hold_fact(ctx)
    if not (fact["over_limit"] and fact["callback_offer_taken"]):
        msg = f"the hold record should say over limit and offer taken: {fact}"
        raise AssertionError(msg)
    await _programs_ended(ctx)
    await agent.hangup()
    ctx.note(f"alerted at the limit; callback promised; hold {fact['duration_s']:.0f} s")


async def hangup_on_hold(ctx: LabContext) -> None:
    """ru: the customer hangs up while on hold. The program ends, nobody is thanked."""
    caller, agent = await _connected_call(ctx)
    await caller.hold(by=agent)
    await ctx.sleep(5)
    await caller.hangup()
    await ctx.until_decided("hold", "record_fact")
    await _programs_ended(ctx)
    adapter = ctx.daemon.adapter
    # Only this call's: the simulator plays several scenarios at once on one daemon.
    left = (
        [] if adapter is None else [p for p in adapter.hold_programs.values() if p.leg == caller.id]
    )
    if left:
        msg = f"hold programs still registered after the hang-up: {left}"
        raise AssertionError(msg)
    ctx.note(f"hold ended by {_hold_fact(ctx)['ended_how']}, program gone")


async def dead_air(ctx: LabContext) -> None:
    """zh: the agent greets, the customer asks, then nobody speaks (the agent looks something up
    without putting the call on hold). Logged past 3 s, the agent is reminded past 10 s; the
    silence is recorded when the customer speaks again. (A customer who never speaks after the
    greeting is the silent-caller rule's case, not dead air.)"""
    caller, agent = await _connected_call(ctx)
    await ctx.sleep(1)  # talk detection is set on both legs when they connect
    await agent.talk(1.5)
    await caller.talk(2.0)
    await ctx.until_decided("dead_air", "dead_air", timeout=20)
    await ctx.until_decided("dead_air", "alert_agent", timeout=20)
    await caller.talk(1.0)
    await ctx.until(
        lambda: any(
            d.fields.get("kind") == "dead_air" for d in _decisions(ctx, "dead_air", "record_fact")
        ),
        what="the silence record",
    )
    await caller.hangup()
    ctx.note("dead air logged, agent reminded, silence recorded")


SCENARIOS = [
    Scenario(
        name="hold_short",
        title="short hold: announced, thanked",
        rule="R1",
        run=short_hold,
        expect=(
            ("hold", "start_hold_program"),
            ("hold", "stop_hold_program"),
            ("hold", "play_prompt"),
            ("hold", "record_fact"),
        ),
        forbid=(("hold", "alert_agent"),),
        expect_events=("hold_program_started", "hold_cue", "hold_program_ended"),
    ),
    Scenario(
        name="hold_long",
        title="long hold (zh): reminders every 10 s, thanks with apology",
        rule="R1",
        run=long_hold,
        expect=(
            ("hold", "start_hold_program"),
            ("hold", "stop_hold_program"),
            ("hold", "play_prompt"),
            ("hold", "record_fact"),
        ),
        config=ZH,
    ),
    Scenario(
        name="hold_over_limit",
        title="hold past the tier limit: agent alerted, callback offer taken",
        rule="R1",
        run=over_limit_hold,
        expect=(
            ("hold", "start_hold_program"),
            ("hold", "alert_agent"),
            ("hold", "request_callback"),
            ("hold", "stop_hold_program"),
            ("hold", "start_hold_program"),
            ("hold", "alert_agent"),
            ("hold", "record_fact"),
        ),
        config=ZH,
    ),
    Scenario(
        name="hold_hangup",
        title="customer hangs up while on hold: program ends, no thanks",
        rule="R1",
        run=hangup_on_hold,
        expect=(("hold", "start_hold_program"), ("hold", "record_fact")),
        forbid=(("hold", "play_prompt"),),
    ),
    Scenario(
        name="dead_air",
        title="dead air (zh): logged past 3 s, agent reminded past 10 s",
        rule="R1",
        run=dead_air,
        expect=(("dead_air", "dead_air"), ("dead_air", "alert_agent"), ("dead_air", "record_fact")),
        forbid=(("silent_caller", "hangup_call"),),
        config=ZH,
    ),
]

"""R1 Hold, with announcements: what the held customer hears, when the agent is alerted, and
what is recorded about every hold.

Theory of operation
-------------------
The call model says when a hold begins and ends (``HoldStarted`` / ``HoldEnded``: the holder
pressed hold, or the PBX reported only music). This policy turns each hold into commands.
At ``HoldStarted`` of the customer (the held leg's role is ``CALLER``) it starts one *hold
program* for the held leg: continuous music with announcements at exact offsets from the
start of the hold (``hold_plan``)::

    0 s                       the announce phrase ("please stay on the line")
    reminder_first_after_s    the reminder phrase (ru: "поиск информации займет еще ...")
    ... every reminder_interval_s, up to the first reminder at or after the tier limit
    tier limit                the callback offer (and with the first reminder, if
                              ``callback_offer.with_first_reminder``: ru)
    then                      the reminder again every reminder_interval_s, until the hold ends

Because the whole schedule is in the program, reminders are exactly on time and nothing of
it can play after the hold ended: ``StopHoldProgram`` ends the program at ``HoldEnded``.
The agent's tier limit (``hold.tier_limits_s[tier]``, the tier of the agent leg: from the
configuration or the leg's tier variable) is a timer: when it fires, the agent is alerted
(``AlertAgent``: a phrase only the agent hears and an event for the agent's desktop).

Transitions, per hold (keyed by the held leg)::

    event                      condition                      commands
    -------------------------  -----------------------------  ------------------------------
    HoldStarted                held is the customer           StartHoldProgram,
                                                              StartTimer(limit)
    HoldStarted                held is anyone else            Note(hold_not_announced)
    TimerFired(limit)          hold still on                  AlertAgent(hold_limit)
    DigitReceived(offer        held customer, offer already   RequestCallback(requested),
      digit)                   announced, not taken yet       StopHoldProgram, StartHoldProgram
                                                              (registered phrase, then music),
                                                              AlertAgent(callback_offer_taken)
    HoldEnded(released)        customer held                  StopHoldProgram, CancelTimer,
                                                              [CancelCallbacks: offer taken],
                                                              PlayPrompt(thanks, BOTH),
                                                              RecordFact(hold)
    HoldEnded (one of two      the other still holds          Note(hold_still_held); the hold
      holders)                                                is the other's (agent, tier,
                                                              limit)
    HoldEnded(released)        the customer's phone still     the same without the thanks
                               holds the agent                (Note hold_resume_skipped); it
                                                              is said when that hold ends
                                                              released (not when hung up)
    HoldEnded(holder_left,     customer held                  StopHoldProgram, CancelTimer,
      held_left, hung_up)                                     RecordFact(hold); no thanks:
                                                              the parties are not together
    HoldEnded                  anyone else held               RecordFact(hold)
    PromptDone(hold_program,   customer held, fewer than      StartHoldProgram (the same
      ok=False)                MAX_PROGRAM_RESTARTS restarts  program, on its own timeline)
    PromptDone(hold_program,   restarts used up               Note(hold_program_lost)
      ok=False)

The thanks is ``resume_long_prompt`` when the hold lasted ``long_wait_threshold_s`` or more,
else ``resume_prompt``, played to both parties so the agent does not talk over it.

Holds of anyone but the customer (the customer's phone holding the agent, a leg of another
role) get no program, no limit and no thanks: the standard is about what the customer hears
and how long the customer waits. They are still recorded (``held_role`` tells them apart;
the share of calls with hold counts ``held_role == "caller"``).

The callback offer is accepted only once it has been announced and only while the hold lasts.
Taking it requests a callback (dialled like a drop's, soon; cancelled if the agent comes
back to the customer on this hold) and replaces the program by one that plays the
registered phrase at once and then music without reminders (a phrase injected into a running
program would wait for the current music segment to end). A caller without a callable
number is never offered a callback.

A program that ends by itself (the adapter reports ``PromptFinished(leg, "hold_program",
ok=False)``: its helper failed) would leave the customer in silence, so it is started again,
without the announcements already due (``resumed_program``).

Invariants: pure (no I/O, no clock, no logging); at most one program per held leg; every
hold that started ends in exactly one ``RecordFact("hold", ...)``, whatever ended it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model.commands import Audience, HoldAnnouncement
from pbx_agent.model.events import LegId, Role

if TYPE_CHECKING:
    from pbx_agent.config import Config
    from pbx_agent.config.standards import HoldRule, Standards


# A program that keeps ending by itself is restarted this many times per hold, then given up.
MAX_PROGRAM_RESTARTS = 2

# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class HoldPlan:
    """What a hold program plays: fixed announcements, then ``repeat`` every ``repeat_every_s``
    counted from the last fixed one."""

    announcements: tuple[HoldAnnouncement, ...]
    repeat: str | None
    repeat_every_s: float | None

    def offsets(self, prompt: str, until_s: float) -> list[float]:
        """Offsets (s from the hold's start) at which ``prompt`` starts before ``until_s``."""
        found = [a.at_s for a in self.announcements if a.prompt == prompt and a.at_s < until_s]
        if self.repeat == prompt and self.repeat_every_s and self.announcements:
            last = self.announcements[-1].at_s
            k = 1
            while last + k * self.repeat_every_s < until_s:
                found.append(last + k * self.repeat_every_s)
                k += 1
        return found


def hold_plan(rule: HoldRule, *, limit_s: float | None, offer: bool) -> HoldPlan:
    """The announcements of a hold of the customer (see the module docstring).

    ``limit_s``: the agent's tier limit (None: no limit known); ``offer``: the callback offer
    may be made (enabled, and the caller has a number to call back).
    """
    first = rule.reminder_first_after_s
    every = rule.reminder_interval_s
    offers: list[float] = []
    if offer:
        if rule.callback_offer.with_first_reminder:
            offers.append(first)
        if limit_s is not None:
            offers.append(limit_s)
    horizon = max([first, *offers])
    # Reminders on their grid up to the first one at or after the last offer, so the
    # repetition that follows stays on the same grid.
    reminders = [first]
    while reminders[-1] < horizon:
        reminders.append(first + len(reminders) * every)
    entries = [HoldAnnouncement(0.0, rule.announce_prompt)]
    entries.extend(HoldAnnouncement(at, rule.reminder_prompt) for at in reminders)
    entries.extend(HoldAnnouncement(at, rule.callback_offer.prompt) for at in sorted(set(offers)))
    # Stable sort: at the same offset the reminder comes before the offer.
    entries.sort(key=lambda a: a.at_s)
    if entries[-1].at_s != reminders[-1]:
        msg = "the hold plan must end on the reminder grid"  # guaranteed by the loop above
        raise AssertionError(msg)
    return HoldPlan(tuple(entries), rule.reminder_prompt, every)


def resumed_program(program: cmd.StartHoldProgram, now: float) -> cmd.StartHoldProgram:
    """``program`` started again at ``now`` on its own timeline: announcements already due are
    left out, and when none is left the next repetition becomes the one fixed announcement,
    so the repetition keeps its grid."""
    elapsed = now - program.started_at
    left = tuple(a for a in program.announcements if a.at_s > elapsed)
    if not left and program.repeat is not None and program.repeat_every_s:
        last = program.announcements[-1].at_s if program.announcements else 0.0
        steps = math.floor((elapsed - last) / program.repeat_every_s) + 1
        left = (HoldAnnouncement(last + steps * program.repeat_every_s, program.repeat),)
    return replace(program, announcements=left)


def tier_limit(rule: HoldRule, tier: str | None) -> tuple[float, bool]:
    """The hold limit of ``tier`` and whether the tier was known; an unknown tier gets the
    strictest limit (the standard's limits are maxima)."""
    if tier is not None and tier in rule.tier_limits_s:
        return rule.tier_limits_s[tier], True
    return min(rule.tier_limits_s.values()), False


def _music_class(call: cm.Call, leg: LegId) -> str:
    """The held leg's music on hold class as the PBX last reported it ('' when not yet)."""
    found = call.legs.get(leg)
    return found.music_class if found is not None else ""


def callable_number(number: str) -> bool:
    """Whether a caller id can be called back at all (the callback service normalises it)."""
    return sum(ch.isdigit() for ch in number) >= 3


# ------------------------------------------------------------------------------ state


@dataclass(frozen=True, slots=True)
class ActiveHold:
    """One hold in progress, as this policy sees it."""

    held: LegId
    holder: LegId
    held_role: Role
    started_at: float
    agent: str | None
    agent_leg: LegId | None
    tier: str | None
    announced: bool  # a hold program runs for the held leg
    plan: HoldPlan | None = None
    limit_s: float | None = None
    offer_from: float | None = None  # epoch time from which the offer digit is taken
    over_limit: bool = False
    callback_offer_taken: bool = False
    # Seconds into the hold at which the planned program was replaced (the offer was taken).
    plan_replaced_s: float | None = None
    program: cmd.StartHoldProgram | None = None  # the program running now
    restarts: int = 0  # programs restarted after ending by themselves

    @property
    def limit_key(self) -> str:
        return f"limit:{self.held}"


@dataclass(frozen=True, slots=True)
class HoldPolicyState:
    holds: tuple[ActiveHold, ...] = ()
    # Thanks not said because the customer's own phone still held the call when the agent
    # resumed: said when the customer's phone lets go.
    owed: tuple[cmd.PlayPrompt, ...] = ()

    def find(self, held: LegId) -> ActiveHold | None:
        return next((h for h in self.holds if h.held == held), None)

    def without(self, held: LegId) -> HoldPolicyState:
        return replace(self, holds=tuple(h for h in self.holds if h.held != held))

    def put(self, hold: ActiveHold) -> HoldPolicyState:
        rest = self.without(hold.held)
        return replace(rest, holds=(*rest.holds, hold))


Step = tuple[HoldPolicyState, list[cmd.Command]]


# ------------------------------------------------------------------------------ the policy


class HoldPolicy:
    """R1: announcements, reminders, the tier limit and the callback offer for every hold."""

    name = "hold"
    rule = "R1"

    def start(self, call: cm.Call, now: float) -> HoldPolicyState:  # noqa: ARG002 - protocol
        return HoldPolicyState()

    def step(  # noqa: PLR0911 (one return per kind of event)
        self, state: HoldPolicyState, event: cm.CallEvent, call: cm.Call, now: float
    ) -> Step:
        match event:
            case cm.HoldStarted():
                return self._started(state, event, call)
            case cm.HoldEnded():
                return self._ended(state, event, call)
            case cm.TimerFired():
                return self._timer(state, event.key, call, now)
            case cm.DigitReceived():
                return self._digit(state, event, call, now)
            case cm.PromptDone(prompt=cmd.HOLD_PROGRAM_PROMPT, ok=False):
                return self._program_lost(state, event.leg, call, now)
            case cm.LinkLost():
                return self._link_lost(state)
        return state, []

    # -- the link to the PBX lost -----------------------------------------------------------

    def _link_lost(self, state: HoldPolicyState) -> Step:
        """Nothing of the call is heard until the resync, which ends its holds as of now
        (``link_lost``, see the model): the limits stop here. A limit passing during the
        outage is not known to have been passed, and the agent could not be alerted."""
        return state, [cmd.CancelTimer(h.limit_key) for h in state.holds if not h.over_limit]

    # -- a program that ended by itself -----------------------------------------------------

    def _program_lost(self, state: HoldPolicyState, leg: LegId, call: cm.Call, now: float) -> Step:
        hold = state.find(leg)
        if hold is None or not hold.announced or hold.program is None:
            return state, []
        fields = {"held_leg": leg, "restarts": hold.restarts}
        if hold.restarts >= MAX_PROGRAM_RESTARTS:
            note = cmd.Note(
                "hold_program_lost",
                f"the hold program ended by itself {hold.restarts + 1} times; the held party "
                "hears the switch's own hold handling until the hold ends",
                fields,
            )
            return state.put(replace(hold, program=None)), [note]
        program = resumed_program(hold.program, now)
        program = replace(program, music_class=_music_class(call, leg) or program.music_class)
        state = state.put(replace(hold, program=program, restarts=hold.restarts + 1))
        return state, [replace(program, reason="the hold program ended by itself: restart it")]

    # -- hold begins ------------------------------------------------------------------------

    def _started(self, state: HoldPolicyState, event: cm.HoldStarted, call: cm.Call) -> Step:
        existing = state.find(event.held)
        if existing is not None:
            # Two holders holding the same party: its one program already runs.
            note = cmd.Note(
                "hold_already_running",
                "the held party is already on hold from another leg",
                {"held_leg": event.held, "holder_leg": event.holder},
            )
            return state, [note]
        # A thanks still owed for an earlier hold of this party is void: this hold ends with
        # its own.
        state = replace(state, owed=tuple(t for t in state.owed if t.leg != event.held))
        hold = _new_hold(event.held, event.holder, event.started_at, call)
        held_role = hold.held_role
        rule = _hold_rule(call.standards)
        why_not = _why_not_announced(rule, held_role)
        if why_not is not None or rule is None:
            note = cmd.Note(
                "hold_not_announced",
                why_not or "",
                {"held_leg": event.held, "held_role": str(held_role), "holder_leg": event.holder},
            )
            return state.put(hold), [note]
        limit_s, tier_known = tier_limit(rule, hold.tier)
        offer = rule.callback_offer.enabled and callable_number(call.caller_number)
        plan = hold_plan(rule, limit_s=limit_s, offer=offer)
        offer_from = _offer_from(plan, rule, event.started_at) if offer else None
        hold = replace(hold, announced=True, plan=plan, limit_s=limit_s, offer_from=offer_from)
        tier_text = hold.tier if tier_known else f"{hold.tier or 'unknown'} (strictest limit)"
        program = cmd.StartHoldProgram(
            leg=event.held,
            started_at=event.started_at,
            announcements=plan.announcements,
            repeat=plan.repeat,
            repeat_every_s=plan.repeat_every_s,
            music_class=_music_class(call, event.held),
            reason=(
                f"the customer was put on hold: announce at once, remind after "
                f"{rule.reminder_first_after_s:g} s and every {rule.reminder_interval_s:g} s"
                f"; tier {tier_text} limit {limit_s:g} s"
            ),
        )
        hold = replace(hold, program=program)
        commands: list[cmd.Command] = [
            program,
            cmd.StartTimer(hold.limit_key, event.started_at + limit_s),
        ]
        return state.put(hold), commands

    # -- the tier limit ---------------------------------------------------------------------

    def _timer(self, state: HoldPolicyState, key: str, call: cm.Call, now: float) -> Step:
        hold = next((h for h in state.holds if h.limit_key == key), None)
        if hold is None or hold.limit_s is None or hold.over_limit:
            return state, []
        state = state.put(replace(hold, over_limit=True))
        fields = (
            ("held_leg", str(hold.held)),
            ("held_s", f"{now - hold.started_at:.0f}"),
            ("limit_s", f"{hold.limit_s:g}"),
            ("tier", hold.tier or ""),
        )
        agent_leg = hold.agent_leg if hold.agent_leg is not None else call.agent
        if agent_leg is None or not call.leg_alive(agent_leg):
            note = cmd.Note(
                "hold_limit_no_agent",
                f"the hold passed the {hold.limit_s:g} s limit but no agent leg is there to alert",
                dict(fields),
            )
            return state, [note]
        rule = _hold_rule(call.standards)
        prompt = rule.agent_limit_prompt if rule is not None else None
        alert = cmd.AlertAgent(
            leg=agent_leg,
            alert="hold_limit",
            prompt=prompt,
            fields=fields,
            reason=f"the customer has been on hold for the tier's {hold.limit_s:g} s limit",
        )
        return state, [alert]

    # -- the callback offer -----------------------------------------------------------------

    def _digit(
        self, state: HoldPolicyState, event: cm.DigitReceived, call: cm.Call, now: float
    ) -> Step:
        hold = state.find(event.leg)
        rule = _hold_rule(call.standards)
        if (
            hold is None
            or rule is None
            or not hold.announced
            or hold.callback_offer_taken
            or hold.offer_from is None
            or now < hold.offer_from
            or event.digit != rule.callback_offer.digit
        ):
            return state, []
        registered = cmd.StartHoldProgram(
            leg=event.leg,
            started_at=now,
            announcements=(HoldAnnouncement(0.0, rule.callback_offer.registered_prompt),),
            music_class=_music_class(call, event.leg),
            reason="confirm the registered callback, then music until the hold ends",
        )
        state = state.put(
            replace(
                hold,
                callback_offer_taken=True,
                plan_replaced_s=now - hold.started_at,
                program=registered,
            )
        )
        # The customer's own request: dialled as soon as a drop's callback is (not a promise,
        # which is dialled only in the last day before its deadline), with the same attempts
        # and window.
        commands: list[cmd.Command] = [
            cmd.RequestCallback(
                number=call.caller_number,
                reason="the customer on hold took the callback offer",
                trigger_call=call.id,
                cause="hold_callback_offer",
            ),
            cmd.StopHoldProgram(event.leg, reason="the customer took the callback offer"),
            registered,
        ]
        agent_leg = hold.agent_leg if hold.agent_leg is not None else call.agent
        if agent_leg is not None and call.leg_alive(agent_leg):
            commands.append(
                cmd.AlertAgent(
                    leg=agent_leg,
                    alert="callback_offer_taken",
                    fields=(("held_leg", str(hold.held)), ("number", call.caller_number)),
                    reason="the customer on hold asked to be called back instead of waiting",
                )
            )
        return state, commands

    # -- hold ends --------------------------------------------------------------------------

    def _ended(self, state: HoldPolicyState, event: cm.HoldEnded, call: cm.Call) -> Step:
        hold = state.find(event.held)
        still = call.hold_on(event.held)
        if still is not None and still.holder != event.holder:
            # One of two holders let go (a three-way bridge): the party is still on hold, so
            # its one hold goes on (program, limit, one record), now the remaining holder's.
            still_held: list[cmd.Command] = [
                cmd.Note(
                    "hold_still_held",
                    "one holder released the held party, another still holds it",
                    {
                        "held_leg": event.held,
                        "released_by": event.holder,
                        "holder_leg": still.holder,
                    },
                )
            ]
            if hold is not None and hold.holder == event.holder:
                new = _handed_over(hold, still.holder, call)
                if new.announced and new.limit_s is not None and new.limit_s != hold.limit_s:
                    # The new holder's own tier limit: alert and record are measured by it.
                    still_held.append(cmd.StartTimer(new.limit_key, new.started_at + new.limit_s))
                state = state.put(new)
            return state, still_held
        if hold is not None and hold.holder == event.holder and hold.started_at < event.started_at:
            # Handed over from the first holder: the hold began with the first.
            event = replace(event, started_at=hold.started_at)
        if hold is None or hold.holder != event.holder:
            # A hold that began before this policy saw the call (a daemon restart): record
            # what is known.
            hold = _untracked_hold(event, call)
        state = state.without(event.held)
        commands: list[cmd.Command] = []
        duration = event.ended_at - event.started_at
        if hold.announced:
            state, commands = self._announced_end(state, hold, event, call, duration)
        commands.append(cmd.RecordFact("hold", _fact(hold, event, call, duration)))
        owed = [t for t in state.owed if t.leg == event.holder]
        if owed and not _on_hold(call, event.holder):
            # The customer's phone let go: the conversation resumes (released) and the thanks
            # is said now; ended any other way (hung up, the link lost) it is void.
            state = replace(state, owed=tuple(t for t in state.owed if t.leg != event.holder))
            if event.how == "released":
                commands.append(owed[-1])
        return state, commands

    def _announced_end(
        self,
        state: HoldPolicyState,
        hold: ActiveHold,
        event: cm.HoldEnded,
        call: cm.Call,
        duration: float,
    ) -> Step:
        """The program stops, the limit timer goes, the thanks is said (or owed), and a
        callback the customer asked for is cancelled when the agent came back to them."""
        commands: list[cmd.Command] = [
            cmd.CancelTimer(hold.limit_key),
            cmd.StopHoldProgram(event.held, reason=f"the hold ended ({event.how})"),
        ]
        if hold.callback_offer_taken and event.how == "released" and call.caller_number:
            # The agent came back to a customer still on the line: served now, the
            # callback they asked for would ring them in the middle of it or after.
            commands.append(
                cmd.CancelCallbacks(
                    number=call.caller_number,
                    reason="the agent came back to the customer who had asked for a callback",
                    trigger_call=call.id,
                    requested_only=True,
                )
            )
        thanks = self._thanks(hold, event, call, duration)
        if thanks is not None and any(h.holder == hold.held for h in call.holds.values()):
            commands.append(
                cmd.Note(
                    "hold_resume_skipped",
                    "the customer's own phone still holds the call: the thanks would not "
                    "be heard; it is said when the customer's phone lets go",
                    {"held_leg": hold.held},
                )
            )
            state = replace(state, owed=(*state.owed, thanks))
        elif thanks is not None:
            commands.append(thanks)
        return state, commands

    def _thanks(
        self, hold: ActiveHold, event: cm.HoldEnded, call: cm.Call, duration: float
    ) -> cmd.PlayPrompt | None:
        rule = _hold_rule(call.standards)
        if rule is None or event.how != "released":
            return None
        long_wait = duration >= rule.long_wait_threshold_s
        prompt = rule.resume_long_prompt if long_wait else rule.resume_prompt
        reason = (
            f"the hold lasted {duration:.1f} s, "
            + ("at least" if long_wait else "less than")
            + f" the {rule.long_wait_threshold_s:g} s long-wait threshold"
        )
        return cmd.PlayPrompt(hold.held, prompt, Audience.BOTH, reason=reason)


def hold_policy_factory(_config: Config) -> HoldPolicy:
    """For ``pbx_agent.daemon.POLICY_FACTORIES``. Always on: whether a call's holds are
    announced is the call's standards' ``hold.enabled`` (a queue may differ), and every hold
    is recorded for the figures either way."""
    return HoldPolicy()


# ------------------------------------------------------------------------------ helpers


def _on_hold(call: cm.Call, leg: LegId) -> bool:
    """``leg`` holds someone or is held."""
    return any(leg in (h.holder, h.held) for h in call.holds.values())


def _hold_rule(standards: Standards | None) -> HoldRule | None:
    return standards.hold if standards is not None else None


def _why_not_announced(rule: HoldRule | None, held_role: Role) -> str | None:
    if rule is None:
        return "no standards are resolved for this call"
    if not rule.enabled:
        return "the hold rule is disabled for this call"
    if held_role is not Role.CALLER:
        return f"the held party is not the customer (role {held_role})"
    return None


def _agent_leg_of(call: cm.Call, holder: LegId) -> cm.Leg | None:
    """The agent whose hold this is: the holder when it is an agent, else the call's agent."""
    leg = call.legs.get(holder)
    if leg is not None and leg.role is Role.AGENT:
        return leg
    return call.agent_leg


def _offer_from(plan: HoldPlan, rule: HoldRule, started_at: float) -> float | None:
    offsets = [a.at_s for a in plan.announcements if a.prompt == rule.callback_offer.prompt]
    return started_at + min(offsets) if offsets else None


def _handed_over(hold: ActiveHold, holder: LegId, call: cm.Call) -> ActiveHold:
    """``hold`` now held by ``holder`` alone: its agent (alert, tier, record) is the new
    holder's when that is an agent; the limit stays the one announced."""
    agent_leg = _agent_leg_of(call, holder)
    if agent_leg is None or not agent_leg.alive:
        return replace(hold, holder=holder)
    handed = replace(
        hold, holder=holder, agent=agent_leg.agent, agent_leg=agent_leg.id, tier=agent_leg.tier
    )
    rule = _hold_rule(call.standards)
    if hold.limit_s is None or hold.over_limit or rule is None:
        return handed  # an alert already given stands
    return replace(handed, limit_s=tier_limit(rule, agent_leg.tier)[0])


def _untracked_hold(event: cm.HoldEnded, call: cm.Call) -> ActiveHold:
    return _new_hold(event.held, event.holder, event.started_at, call)


def _new_hold(held: LegId, holder: LegId, started_at: float, call: cm.Call) -> ActiveHold:
    """A hold as first seen, not announced. A customer's hold carries its agent's tier limit
    whether or not it is announced: the figures count holds over the limit either way."""
    held_leg = call.legs.get(held)
    held_role = held_leg.role if held_leg is not None else Role.OTHER
    agent_leg = _agent_leg_of(call, holder)
    tier = agent_leg.tier if agent_leg is not None else None
    rule = _hold_rule(call.standards)
    limit_s = tier_limit(rule, tier)[0] if rule is not None and held_role is Role.CALLER else None
    return ActiveHold(
        held=held,
        holder=holder,
        held_role=held_role,
        started_at=started_at,
        agent=agent_leg.agent if agent_leg is not None else None,
        agent_leg=agent_leg.id if agent_leg is not None else None,
        tier=tier,
        announced=False,
        limit_s=limit_s,
    )


def _fact(
    hold: ActiveHold, event: cm.HoldEnded, call: cm.Call, duration: float
) -> dict[str, object]:
    reminders = 0
    rule = _hold_rule(call.standards)
    if hold.plan is not None and rule is not None:
        # Offsets at which a reminder started before the hold ended: the program was
        # stopped at the end, so later ones never played.
        played_until = duration
        if hold.plan_replaced_s is not None:
            played_until = min(duration, hold.plan_replaced_s)
        reminders = len(hold.plan.offsets(rule.reminder_prompt, played_until))
    over_limit = hold.over_limit or (hold.limit_s is not None and duration >= hold.limit_s)
    return {
        "call_id": str(call.id),
        "agent": hold.agent,
        "tier": hold.tier,
        "held_leg": str(hold.held),
        "held_role": str(hold.held_role),
        "holder_leg": str(hold.holder),
        "started_at": event.started_at,
        "ended_at": event.ended_at,
        "duration_s": round(duration, 3),
        "ended_how": event.how,
        "announced": hold.announced,
        "reminders": reminders,
        "limit_s": hold.limit_s,
        "over_limit": over_limit,
        "callback_offer_taken": hold.callback_offer_taken,
    }


__all__ = [
    "MAX_PROGRAM_RESTARTS",
    "ActiveHold",
    "HoldPlan",
    "HoldPolicy",
    "HoldPolicyState",
    "callable_number",
    "hold_plan",
    "hold_policy_factory",
    "resumed_program",
    "tier_limit",
]

"""Scenarios for R7 (callbacks after an abnormal drop) and R6 (answering machines on them).

A conversation is cut off the way trace 08b shows it: the customer's phone dies and
``rtp_timeout`` clears the leg with cause 44. The callback policy asks for a callback, the
scheduler places it 30 s later through AMI Originate, and the fake runs the shipped
``pbxagent-callback`` context (``CALLBACK_CONTEXT``, the same steps as
``dialplan/asterisk/pbx-agent-callback.conf``): the answered leg streams its audio to the
daemon's AudioSocket server, the daemon puts its verdict in ``PBXAGENT_AMD``, and the
dialplan hangs up on a machine or connects the customer to the queue. On the fake
FreeSWITCH the attempt is a ``bgapi originate`` into ``pbxagent_callback``, where the callee is
bridged to a listener; the daemon judges the talk events with its detector's rules and
transfers or hangs up the leg itself (``pbx_agent.lab.freeswitch_driver``).

Two scenarios change the configuration to fit the lab's time-lapse, and say so: "no answer
three times" uses attempt offsets of 30, 120 and 210 s (the profile's are 30 s, 4 h and
24 h), and "quiet hours" uses quiet hours of 21:00-21:02 (the profile's end at 09:00).
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from pbx_agent.lab.drivers import AsteriskLabPbx
from pbx_agent.lab.freeswitch_driver import FreeswitchLabPbx
from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.policies.callbacks import AttemptOutcome, CallbackAttempt, CallbackJob, JobStatus

CALLER = "79161234567"
E164 = "+79161234567"
MIDDAY = "12:00"  # far from the profile's quiet hours (21:00-09:00 local)

# dialplan/asterisk/pbx-agent-callback.conf, for the fake switch (a test checks they agree).
CALLBACK_CONTEXT: list[tuple[str, str]] = [
    ("NoOp", "pbx-agent: callback attempt ${PBXAGENT_CALLBACK_ID}"),
    ("Set", "PBXAGENT_AMD=HUMAN"),
    ("Answer", ""),
    (
        "ExecIf",
        (
            '$["${PBXAGENT_AMD_ENGINE}" = "daemon"]?'
            "TryExec(AudioSocket(${PBXAGENT_CALLBACK_ID},${PBXAGENT_AUDIOSOCKET}))"
        ),
    ),
    ("ExecIf", '$["${PBXAGENT_AMD_ENGINE}" = "asterisk"]?AMD(${PBXAGENT_AMD_PARAMS})'),
    ("ExecIf", '$["${AMDSTATUS}" = "MACHINE"]?Set(PBXAGENT_AMD=MACHINE)'),
    ("ExecIf", '$["${AMDSTATUS}" = "NOTSURE"]?Set(PBXAGENT_AMD=${PBXAGENT_AMD_NOTSURE})'),
    ("ExecIf", '$["${PBXAGENT_AMD}" = "MACHINE"]?Hangup(16)'),
    (
        "ExecIf",
        '$["${PBXAGENT_CALLBACK_GREETING}" != ""]?Playback(${PBXAGENT_CALLBACK_GREETING})',
    ),
    ("ExecIf", '$["${PBXAGENT_CALLBACK_TARGET}" = ""]?Set(PBXAGENT_CALLBACK_TARGET=support)'),
    ("Queue", "${PBXAGENT_CALLBACK_TARGET},b(pbxagent-agent-features^s^1)"),
    ("Hangup", "16"),
]
CALLBACK_CONTEXT_NAME = "pbxagent-callback"
AGENT = "agent-1001"
QUEUE = "support"


def _install(ctx: LabContext) -> None:
    if isinstance(ctx.pbx, AsteriskLabPbx):
        ctx.pbx.fake.dialplan.add(CALLBACK_CONTEXT_NAME, "s", CALLBACK_CONTEXT)
        ctx.pbx.fake.add_queue_member(QUEUE, AGENT, "Alice")
        # The callee's audio at twice real time: the verdict depends on the audio alone,
        # and the detector's wall-clock deadline keeps its margin on a loaded machine,
        # where the time-lapse would otherwise shrink it with everything else.
        ctx.pbx.fake.audiosocket_pace = 0.5


async def _dropped_conversation(ctx: LabContext) -> None:
    """The customer talks to an agent, then the customer's phone dies (trace 08b)."""
    _install(ctx)
    caller = await ctx.pbx.inbound_call(CALLER, "Иван")
    await caller.answer()
    agent = await caller.connect_agent(AGENT, queue=QUEUE, member_name="Alice")
    await agent.talk(2.0)
    await caller.die()
    await ctx.until_decided("callbacks", "request_callback", timeout=60)
    await _until_job(ctx, "the callback job to be written", lambda _j, _a: True)


Attempts = list[CallbackAttempt]


async def _latest_job(ctx: LabContext) -> tuple[CallbackJob | None, Attempts]:
    """The customer's latest callback job and its attempts, from the daemon's store."""
    store = ctx.daemon.store
    assert store is not None
    jobs = await store.callbacks.list_jobs(number=E164, limit=1)
    if not jobs:
        return None, []
    order = await store.callbacks.work_order(jobs[0].id)
    return (None, []) if order is None else order


async def _until_job(
    ctx: LabContext,
    what: str,
    done: Callable[[CallbackJob, Attempts], bool],
    timeout: float = 300.0,
) -> tuple[CallbackJob, Attempts]:
    """Poll the store (virtual time) until ``done(job, attempts)`` holds."""
    deadline = ctx.daemon.engine.clock.now() + timeout
    while True:
        job, attempts = await _latest_job(ctx)
        if job is not None and done(job, attempts):
            return job, attempts
        if ctx.daemon.engine.clock.now() > deadline:
            outcomes = [str(a.outcome) for a in attempts]
            status = job.status if job else "no job"
            msg = f"timed out waiting for {what}; job {status}, attempts {outcomes}"
            raise AssertionError(msg)
        await ctx.sleep(1.0)


def _reached(job: CallbackJob, _attempts: Attempts) -> bool:
    """Done: a person answered and was connected (read in one snapshot with its attempts)."""
    return job.status == JobStatus.DONE


def _machine_attempt(_job: CallbackJob, attempts: Attempts) -> bool:
    return bool(attempts) and attempts[-1].outcome is AttemptOutcome.MACHINE


def _outcomes(attempts: Attempts) -> list[str]:
    return [str(a.outcome) for a in attempts]


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# ---------------------------------------------------------------------------- scenarios


async def drop_then_human(ctx: LabContext) -> None:
    """An abnormal drop; 30 s later the customer answers the callback: connected to the queue."""
    ctx.pbx.script_callee(CALLER, "answer", voice="human")
    await _dropped_conversation(ctx)
    job, attempts = await _until_job(ctx, "the customer to be reached", _reached)
    _expect(_outcomes(attempts) == ["connected"], f"attempts: {_outcomes(attempts)}")
    _expect(attempts[0].amd_result == "human", f"verdict {attempts[0].amd_result!r}")
    await ctx.until(lambda: _agent_bridged_to(ctx, attempts[0].request_id), what="the agent")
    delay = (attempts[0].dialled_at - job.anchor_at).total_seconds()
    ctx.note(f"dialled {delay:.0f} s after the drop; {attempts[0].amd_cause}; connected")


def _agent_bridged_to(ctx: LabContext, request_id: str) -> bool:
    if isinstance(ctx.pbx, FreeswitchLabPbx):
        return ctx.pbx.agent_bridged_to(AGENT, request_id)
    if not isinstance(ctx.pbx, AsteriskLabPbx):
        return True
    for leg in ctx.pbx.fake.legs:
        peer = leg.peer()
        if leg.endpoint == AGENT and peer is not None and peer.uniqueid == request_id:
            return True
    return False


async def no_answer_three_times(ctx: LabContext) -> None:
    """Nobody answers three attempts (ringing 40 s each): the job is exhausted."""
    ctx.pbx.script_callee(CALLER, "no_answer")
    await _dropped_conversation(ctx)
    job, attempts = await _until_job(
        ctx, "the job to be exhausted", lambda j, _a: j.status == JobStatus.EXHAUSTED, timeout=600
    )
    _expect(_outcomes(attempts) == ["no_answer"] * 3, f"attempts: {_outcomes(attempts)}")
    _expect(all(a.cause == 19 for a in attempts), f"causes {[a.cause for a in attempts]}")
    dialled = [n for n in ctx.pbx.originated_numbers() if CALLER in n]
    _expect(len(dialled) == 3, f"dialled {dialled}")
    ctx.note(f"{job.attempts_made} attempts, cause 19 each; {job.finish_reason}")


async def machine_answers(ctx: LabContext) -> None:
    """A voicemail greeting answers: the daemon says MACHINE, the dialplan hangs up (R6), and
    the attempt counts like no answer (attempt 2 is scheduled)."""
    ctx.pbx.script_callee(CALLER, "answer", voice="machine")
    await _dropped_conversation(ctx)
    job, attempts = await _until_job(ctx, "the machine attempt to end", _machine_attempt)
    _expect(job.status == JobStatus.SCHEDULED, f"job {job.status}")
    _expect(job.attempts_made == 1, f"{job.attempts_made} attempts counted")
    _expect(not _agent_bridged_to(ctx, attempts[0].request_id), "a machine reached the agent")
    await ctx.until(lambda: _leg_gone(ctx, attempts[0].request_id), what="the hang-up")
    ctx.note(f"machine ({attempts[0].amd_cause}); next attempt {job.next_attempt_at:%H:%M} UTC")


def _leg_gone(ctx: LabContext, request_id: str) -> bool:
    if isinstance(ctx.pbx, FreeswitchLabPbx):
        return ctx.pbx.leg_gone(request_id)
    if not isinstance(ctx.pbx, AsteriskLabPbx):
        return True
    return not any(leg.uniqueid == request_id for leg in ctx.pbx.fake.legs)


async def noisy_human(ctx: LabContext) -> None:
    """A person answers over steady line noise with people talking behind them: still a
    person, connected."""
    ctx.pbx.script_callee(CALLER, "answer", voice="noisy_human")
    await _dropped_conversation(ctx)
    _, attempts = await _until_job(ctx, "the customer to be reached", _reached)
    _expect(attempts[0].amd_result == "human", f"verdict {attempts[0].amd_result!r}")
    await ctx.until(lambda: _agent_bridged_to(ctx, attempts[0].request_id), what="the agent")
    ctx.note(f"noisy line: {attempts[0].amd_cause}; connected")


async def machine_by_amd_application(ctx: LabContext) -> None:
    """standards.amd.engine = "asterisk": AMD() runs in the dialplan, its VarSets carry the
    verdict (trace 06a), the machine is hung up and the attempt recorded as one."""
    ctx.pbx.script_callee(CALLER, "answer", voice="machine")
    await _dropped_conversation(ctx)
    _, attempts = await _until_job(ctx, "the machine attempt to end", _machine_attempt)
    # FreeSWITCH has no AMD(): the engine setting changes nothing there, the daemon's
    # detector judges the talk events as always.
    freeswitch = isinstance(ctx.pbx, FreeswitchLabPbx)
    cause = "long-greeting" if freeswitch else "LONGGREETING-1500-1500"
    _expect(attempts[0].amd_cause == cause, f"{attempts[0].amd_cause!r}")
    engine = "the detector on talk events" if freeswitch else "AMD()"
    ctx.note(f"{engine}: {attempts[0].amd_result} {attempts[0].amd_cause}")


async def customer_calls_in(ctx: LabContext) -> None:
    """The customer calls back before the callback is due and reaches an agent: it is
    cancelled, nobody dialled."""
    ctx.pbx.script_callee(CALLER, "answer", voice="human")
    await _dropped_conversation(ctx)
    again = await ctx.pbx.inbound_call(CALLER, "Иван")
    await again.answer()
    await again.connect_agent(AGENT, queue=QUEUE, member_name="Alice")
    await _until_job(ctx, "the cancellation", lambda j, _a: j.status == JobStatus.CANCELLED)
    await ctx.sleep(60)  # past the time the first attempt was due
    dialled = [n for n in ctx.pbx.originated_numbers() if CALLER in n]
    _expect(dialled == [], f"dialled {dialled}")
    await again.hangup()
    ctx.note("cancelled by the customer's own call; nothing dialled")


async def quiet_hours(ctx: LabContext) -> None:
    """The drop happens at 21:00, inside quiet hours (here 21:00-21:02): nothing is dialled
    until they end, then the customer is called."""
    ctx.pbx.script_callee(CALLER, "answer", voice="human")
    await _dropped_conversation(ctx)
    job, attempts = await _until_job(ctx, "the callback", _reached, timeout=900)
    zone = ZoneInfo(ctx.daemon.config.site.timezone)
    dialled = attempts[0].dialled_at.astimezone(zone)
    _expect(f"{dialled:%H:%M}" >= "21:02", f"dialled at {dialled:%H:%M:%S} local")
    drop = job.anchor_at.astimezone(zone)
    ctx.note(f"dropped {drop:%H:%M:%S}, dialled {dialled:%H:%M:%S} local, after the quiet hours")


_FAST_ATTEMPTS = {"standards": {"callbacks": {"attempt_offsets_s": [30, 120, 210]}}}
_QUIET = {"standards": {"callbacks": {"quiet_hours": {"start": "21:00", "end": "21:02"}}}}
_AMD_APP = {"standards": {"amd": {"engine": "asterisk"}}}

SCENARIOS = [
    Scenario(
        "callback_drop_human",
        "abnormal drop, the customer answers the callback: connected to the queue",
        "R7",
        drop_then_human,
        expect=(("callbacks", "request_callback"),),
        expect_events=("callback.scheduled", "callback.originated", "callback.verdict_applied"),
        at_local_time=MIDDAY,
    ),
    Scenario(
        "callback_no_answer_exhausted",
        "no answer three times (offsets 30/120/210 s in the lab): exhausted",
        "R7",
        no_answer_three_times,
        expect=(("callbacks", "request_callback"),),
        expect_events=("callback.exhausted",),
        config=_FAST_ATTEMPTS,
        at_local_time=MIDDAY,
        # Minutes of ringing and waiting between attempts, no audio: nothing here needs the
        # lab's usual pace.
        speed_factor=2.0,
    ),
    Scenario(
        "callback_machine",
        "a voicemail answers the callback: hung up from our side, counts as an attempt",
        "R6",
        machine_answers,
        expect=(("callbacks", "request_callback"),),
        expect_events=("callback.verdict_applied",),
        at_local_time=MIDDAY,
    ),
    Scenario(
        "callback_noisy_human",
        "a person answers the callback over line noise and voices behind: connected",
        "R6",
        noisy_human,
        expect=(("callbacks", "request_callback"),),
        at_local_time=MIDDAY,
    ),
    Scenario(
        "callback_machine_amd_app",
        "AMD() chosen by configuration: a machine is hung up, the attempt recorded",
        "R6",
        machine_by_amd_application,
        expect=(("callbacks", "request_callback"),),
        config=_AMD_APP,
        at_local_time=MIDDAY,
    ),
    Scenario(
        "callback_cancelled_by_inbound",
        "the customer calls in and reaches an agent before the callback: cancelled",
        "R7",
        customer_calls_in,
        expect=(("callbacks", "request_callback"), ("callbacks", "cancel_callbacks")),
        expect_events=("callback.cancelled",),
        at_local_time=MIDDAY,
    ),
    Scenario(
        "callback_quiet_hours",
        "a drop inside quiet hours (21:00-21:02 in the lab): dialled when they end",
        "R7",
        quiet_hours,
        expect=(("callbacks", "request_callback"),),
        config=_QUIET,
        at_local_time="21:00",
    ),
]

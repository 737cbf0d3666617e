"""Scenarios for R2, the silent caller: prompts at their instants from the real end of the
agent's greeting, a drop with the silences logged, cancellation by speech, noise ignored.

On the fake Asterisk the prompts run for real: the adapter originates the barge helper, the
fake runs the shipped ``pbxagent-whisper`` extension (ChanSpy) and plays the prompt for its
own length (1 s unless told otherwise); its end is what the daemon counts the next silence
from. Talk events come from the fake's TALK_DETECT, set by the daemon when the parties meet.
"""

from __future__ import annotations

from pbx_agent.lab.drivers import AsteriskLabPbx, LabLeg
from pbx_agent.lab.scenario import LabContext, Scenario

CALLER = "79161234567"
POLICY = "silent_caller"

# The extensions of dialplan/asterisk/pbx-agent-hold.conf (whisper, barge) and
# pbx-agent-scripts.conf (linger, requeue) that R2-R4 use, for the fake switch.
SCRIPT_CONTEXTS: dict[tuple[str, str], list[tuple[str, str]]] = {
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
    ("pbxagent-linger", "s"): [
        ("NoOp", "pbx-agent: lingering after the farewell"),
        ("Answer", ""),
        ("Playback", "&".join(["silence/10"] * 12)),
        ("Hangup", "16"),
    ],
    # Simplified: the shipped context picks the queue with ${IF(...)}, which the fake does not
    # evaluate; the lab's calls all come from "support".
    ("pbxagent-requeue", "s"): [
        ("NoOp", "pbx-agent: requeue with priority ${PBXAGENT_REQUEUE_PRIORITY}"),
        ("Queue", "support"),
        ("Hangup", "16"),
    ],
}
# The contexts above that are the shipped files' own, step for step (a test checks them).
SHIPPED_AS_IS = (
    ("pbx-agent-hold.conf", "pbxagent-whisper", "whisper"),
    ("pbx-agent-hold.conf", "pbxagent-whisper", "barge"),
    ("pbx-agent-scripts.conf", "pbxagent-linger", "s"),
)


def install_dialplan(ctx: LabContext) -> None:
    if isinstance(ctx.pbx, AsteriskLabPbx):
        for (context, exten), steps in SCRIPT_CONTEXTS.items():
            ctx.pbx.fake.dialplan.add(context, exten, steps)


async def connected_call(ctx: LabContext) -> tuple[LabLeg, LabLeg]:
    """A queued call answered by an agent, with talk detection on both legs."""
    install_dialplan(ctx)
    caller = await ctx.pbx.inbound_call(CALLER, "Иван")
    await caller.answer()
    agent = await caller.connect_agent("agent-1001", queue="support", member_name="Alice")
    model = ctx.daemon.engine.model
    await ctx.until(
        lambda: any(c.agent is not None and caller.id in c.legs for c in model.calls.values()),
        what="the caller and the agent to be connected",
    )
    await ctx.sleep(0.3)  # the daemon's TALK_DETECT Setvar reaches the switch
    return caller, agent


async def silent_caller_dropped(ctx: LabContext) -> None:
    """The agent greets; the caller says nothing: two phrases 2.5 s apart, then the drop."""
    caller, agent = await connected_call(ctx)
    await agent.talk(1.5)
    await ctx.until_decided(POLICY, "hangup_call", timeout=30)
    await ctx.until(lambda: not caller.alive, what="the caller's leg to be hung up")
    ctx.note("silent caller told twice and dropped; silences in silent_caller_drop")


async def caller_speaks_after_the_first_prompt(ctx: LabContext) -> None:
    """The caller answers "Говорите, пожалуйста": the procedure stops, the call goes on."""
    caller, agent = await connected_call(ctx)
    await agent.talk(1.5)
    await ctx.until_decided(POLICY, "play_prompt", timeout=15)
    await ctx.sleep(2.0)
    await caller.talk(1.2)
    await ctx.until_decided(POLICY, "silent_caller_cancelled", timeout=10)
    await ctx.sleep(8.0)
    if not caller.alive:
        msg = "the caller spoke but was hung up"
        raise AssertionError(msg)
    await caller.hangup()


async def noise_burst(ctx: LabContext) -> None:
    """A 100 ms click from the caller's line is noise: the procedure runs on to the drop."""
    caller, agent = await connected_call(ctx)
    await agent.talk(1.5)
    await ctx.sleep(0.5)
    await caller.talk(0.1)
    await ctx.until_decided(POLICY, "hangup_call", timeout=30)


async def click_on_freeswitch(ctx: LabContext) -> None:
    """FreeSWITCH reports talk in 0.8 s periods, so the same 100 ms click cannot be judged
    as noise there: it is taken as speech and the procedure stops. The documented, safe
    difference from Asterisk: a caller who made a sound is never dropped as silent."""
    caller, agent = await connected_call(ctx)
    await agent.talk(1.5)
    await ctx.sleep(0.5)
    await caller.talk(0.1)
    await ctx.until_decided(POLICY, "silent_caller_cancelled", timeout=30)
    await ctx.sleep(8)  # longer than the whole ru procedure: no prompt, no drop follows
    await caller.hangup()


SCENARIOS = [
    Scenario(
        name="silent_caller_dropped",
        title="R2: silent caller hears both phrases and is dropped",
        rule="R2",
        run=silent_caller_dropped,
        expect=(
            (POLICY, "silent_caller_step"),
            (POLICY, "play_prompt"),
            (POLICY, "silent_caller_step"),
            (POLICY, "play_prompt"),
            (POLICY, "silent_caller_drop"),
            (POLICY, "hangup_call"),
        ),
    ),
    Scenario(
        name="silent_caller_speaks_after_prompt",
        title="R2: the caller speaks after the first phrase, the call goes on",
        rule="R2",
        run=caller_speaks_after_the_first_prompt,
        expect=((POLICY, "play_prompt"), (POLICY, "silent_caller_cancelled")),
        forbid=((POLICY, "hangup_call"),),
    ),
    Scenario(
        name="silent_caller_noise_burst",
        title="R2: a noise burst is not speech",
        rule="R2",
        run=noise_burst,
        expect=((POLICY, "silent_caller_noise"), (POLICY, "hangup_call")),
        forbid=((POLICY, "silent_caller_cancelled"),),
        # FreeSWITCH's detector says NOTALK one 0.8 s period after the last TALK, so a
        # 100 ms click cannot be told from a short word there: it counts as speech, the safe
        # side (docs/freeswitch.md, "Talk detection").
        pbx=frozenset({"asterisk"}),
    ),
    Scenario(
        name="silent_caller_click_is_speech_on_freeswitch",
        title="R2 on FreeSWITCH: a short click counts as speech (VAD granularity), never a drop",
        rule="R2",
        run=click_on_freeswitch,
        expect=((POLICY, "silent_caller_cancelled"),),
        forbid=((POLICY, "hangup_call"),),
        pbx=frozenset({"freeswitch"}),
    ),
]

"""Scenarios for R3, lingering after the farewell: the agent presses the farewell code and is
freed at once; the caller alone is asked, closed and dropped, or goes back to the queue."""

from __future__ import annotations

from pbx_agent.lab.drivers import AsteriskLabPbx
from pbx_agent.lab.freeswitch_driver import FreeswitchLabPbx
from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.lab.scenarios.silent_caller import connected_call

POLICY = "lingering"
FAREWELL = "pbxagent_farewell"


async def linger_then_drop(ctx: LabContext) -> None:
    """The caller stays silent after the farewell: question, closing phrase, drop."""
    caller, agent = await connected_call(ctx)
    await agent.feature(FAREWELL)
    await ctx.until(lambda: not agent.alive, what="the agent to be freed")
    await ctx.until_decided(POLICY, "hangup_call", timeout=30)
    await ctx.until(lambda: not caller.alive, what="the caller's leg to be hung up")


async def linger_then_question(ctx: LabContext) -> None:
    """The caller answers the question: back to the queue, to the next agent."""
    if isinstance(ctx.pbx, AsteriskLabPbx):
        ctx.pbx.fake.add_queue_member("support", "agent-1002", "Boris")
    elif isinstance(ctx.pbx, FreeswitchLabPbx):
        ctx.pbx.add_queue_member("support", "agent-1002", "Boris")
    caller, agent = await connected_call(ctx)
    await agent.feature(FAREWELL)
    await ctx.until_decided(POLICY, "play_prompt", timeout=10)
    await ctx.sleep(1.5)
    await caller.talk(1.5)
    await ctx.until(
        lambda: any(
            d.policy == POLICY and d.action == "redirect" and d.fields.get("target") == "requeue"
            for d in ctx.decisions
        ),
        what="the caller to be sent back to the queue",
    )
    model = ctx.daemon.engine.model
    await ctx.until(
        lambda: any(
            caller.id in c.legs
            and c.agent_leg is not None
            and c.agent_leg.alive
            and c.agent_leg.endpoint.endswith("1002")
            for c in model.calls.values()
        ),
        what="the next agent to answer",
    )
    ctx.note("the caller continued the conversation with the next agent")
    await caller.hangup()


SCENARIOS = [
    Scenario(
        name="linger_drop",
        title="R3: silence after the farewell ends in the closing phrase and a drop",
        rule="R3",
        run=linger_then_drop,
        expect=(
            (POLICY, "redirect"),
            (POLICY, "hangup_leg"),
            (POLICY, "lingering_step"),
            (POLICY, "play_prompt"),
            (POLICY, "lingering_step"),
            (POLICY, "play_prompt"),
            (POLICY, "lingering_drop"),
            (POLICY, "hangup_call"),
        ),
    ),
    Scenario(
        name="linger_question_requeue",
        title="R3: the caller speaks after the farewell and goes back to the queue",
        rule="R3",
        run=linger_then_question,
        expect=((POLICY, "redirect"), (POLICY, "play_prompt"), (POLICY, "redirect")),
        forbid=((POLICY, "hangup_call"),),
    ),
]

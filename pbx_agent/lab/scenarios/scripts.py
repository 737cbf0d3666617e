"""Scenarios for R4, non-constructive dialogue: the abuse script pressed three times ends the
call, with the recording started at the first warning and the number flagged (R9)."""

from __future__ import annotations

from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.lab.scenarios.silent_caller import connected_call

POLICY = "scripts"
ABUSE = "pbxagent_abuse"


async def abuse_three_times(ctx: LabContext) -> None:
    """Warning, warning, farewell, each after the previous one was said; then the drop."""
    caller, agent = await connected_call(ctx)
    await caller.talk(2.0)

    def said() -> int:
        return sum(
            1 for d in ctx.decisions if (d.policy, d.action) == (POLICY, "script_step_played")
        )

    for step in range(1, 4):
        before = said()
        await agent.feature(ABUSE)

        def step_said(before: int = before) -> bool:
            return said() > before

        await ctx.until(step_said, what=f"step {step} to be said")
        if step < 3:
            await caller.talk(1.5)
    await ctx.until_decided(POLICY, "hangup_call", timeout=10)
    await ctx.until(lambda: not caller.alive, what="the call to be dropped")


SCENARIOS = [
    Scenario(
        name="abuse_three_presses",
        title="R4: abuse x3 - recorded, warned twice, farewell, dropped and flagged",
        rule="R4",
        run=abuse_three_times,
        expect=(
            (POLICY, "start_recording"),
            (POLICY, "play_prompt"),
            (POLICY, "script_step_played"),
            (POLICY, "play_prompt"),
            (POLICY, "script_step_played"),
            (POLICY, "play_prompt"),
            (POLICY, "script_step_played"),
            (POLICY, "script_drop"),
            (POLICY, "flag_number"),
            (POLICY, "hangup_call"),
        ),
    ),
]

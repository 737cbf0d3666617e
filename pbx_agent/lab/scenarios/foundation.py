"""Scenarios for the foundation: the daemon stays attached and keeps track of calls."""

from __future__ import annotations

from pbx_agent.lab.scenario import LabContext, Scenario
from pbx_agent.model.events import CallId


async def link_cut_mid_call(ctx: LabContext) -> None:
    """A call is connected; the AMI link drops and comes back; the call is still tracked once."""
    caller = await ctx.pbx.inbound_call("79161234567", "Иван")
    await caller.answer()
    agent = await caller.connect_agent("agent-1001", queue="support", member_name="Alice")
    model = ctx.daemon.engine.model
    await ctx.until(
        lambda: any(c.agent is not None for c in model.calls.values()),
        what="the call to be tracked",
    )

    def resyncs() -> int:
        return sum(1 for e in ctx.log_events if e.get("event") == "pbx_resynced")

    before = resyncs()
    await ctx.pbx.cut_connection()
    await ctx.until(lambda: resyncs() > before, what="the resync after the cut")
    calls = [c for c in model.calls.values() if c.caller_leg and c.caller_leg.id == caller.id]
    if len(calls) != 1 or len(calls[0].legs) != 2:
        msg = f"after the resync the call should be tracked once with 2 legs, got {calls}"
        raise AssertionError(msg)
    await agent.hangup()
    await ctx.until(lambda: CallId(calls[0].id) not in model.calls, what="the call to end")
    ctx.note("call tracked across the cut, ended normally")


async def malformed_frame(ctx: LabContext) -> None:
    """A broken frame on the AMI link is reported and the next call is handled normally."""
    ctx.pbx.send_malformed_frame()
    caller = await ctx.pbx.inbound_call("79161234567")
    await caller.answer()
    await caller.connect_agent("agent-1001")
    model = ctx.daemon.engine.model
    await ctx.until(
        lambda: any(c.agent is not None for c in model.calls.values()), what="the next call"
    )
    await caller.hangup()


SCENARIOS = [
    Scenario(
        name="link_cut_mid_call",
        title="AMI link cut during a call, resync keeps the call once",
        rule="foundation",
        run=link_cut_mid_call,
        expect_events=("ami_disconnected", "ami_connected", "pbx_resynced"),
    ),
    Scenario(
        name="malformed_frame",
        title="a malformed AMI frame is reported and ignored",
        rule="foundation",
        run=malformed_frame,
        expect_events=("ami_protocol_error",),
    ),
]

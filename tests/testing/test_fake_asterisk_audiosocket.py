"""AudioSocket() on the fake Asterisk: the client streams a callee's voice to a real
AudioSocketServer over loopback and returns as app_audiosocket.c does; TryExec and ExecIf
as the callback context uses them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from pbx_agent.amd.detector import Verdict
from pbx_agent.amd.params import DetectorParams, VerdictKind
from pbx_agent.pbx.audiosocket_server import AudioSocketServer
from pbx_agent.testing.asterisk_switch import OriginateRequest
from pbx_agent.testing.audiosocket_client import CalleeVoice, callee_audio, stream_call
from pbx_agent.testing.fake_asterisk import FakeAsterisk, Leg

STREAM = "5f0c1a9e-3b7d-4e2a-9c61-0d8b7e4f2a13"
# A short deadline for the stalled leg; the analysis limit must not exceed it.
SHORT = DetectorParams(deadline_ms=600, max_analysis_ms=600, no_speech_ms=500)


class Verdicts:
    def __init__(self) -> None:
        self.received: list[tuple[uuid.UUID, Verdict]] = []

    def __call__(self, stream: uuid.UUID, verdict: Verdict) -> None:
        self.received.append((stream, verdict))


@pytest.fixture
async def pbx() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.01) as fake:
        fake.audiosocket_pace = 0.0
        yield fake


@pytest.fixture
async def server() -> AsyncIterator[tuple[AudioSocketServer, Verdicts]]:
    verdicts = Verdicts()
    srv = AudioSocketServer(verdicts, port=0)
    await srv.start()
    yield srv, verdicts
    await srv.close()


async def run_context(pbx: FakeAsterisk, steps: list[tuple[str, str]]) -> Leg:
    pbx.dialplan.add("t", "100", steps)
    return await pbx.inbound_call("79161234567", exten="100", context="t")


async def until(pbx: FakeAsterisk, predicate: object) -> None:
    await pbx.switch.wait_until(predicate, 5.0)  # type: ignore[arg-type]


async def test_human_voice_is_heard_and_the_hangup_frame_ends_audiosocket_with_0(
    server: tuple[AudioSocketServer, Verdicts],
) -> None:
    """A person's "Алло?" reaches the server, which decides HUMAN and lets the call go."""
    srv, verdicts = server
    run = await stream_call(
        f"127.0.0.1:{srv.port}", STREAM, callee_audio(CalleeVoice.HUMAN), pace=0.0
    )
    assert run.ended_by == "hangup-frame"
    assert run.result == 0
    [(stream, verdict)] = verdicts.received
    assert str(stream) == STREAM
    assert verdict.kind is VerdictKind.HUMAN


async def test_a_stalled_leg_is_released_by_the_server_deadline() -> None:
    """A leg that sends no audio is held only until the deadline, then let go."""
    verdicts = Verdicts()
    async with AudioSocketServer(verdicts, params=SHORT, port=0) as srv:
        run = await stream_call(f"127.0.0.1:{srv.port}", STREAM, b"", stall=True, max_s=10.0)
    assert run.ended_by == "hangup-frame"
    assert verdicts.received[0][1].reason == "deadline"


async def test_nobody_listening_is_refused_with_minus_1() -> None:
    """A service that refuses the connection makes AudioSocket() return -1."""
    run = await stream_call("127.0.0.1:9", STREAM, b"")
    assert (run.ended_by, run.result, run.connected) == ("refused", -1, False)


async def test_audiosocket_step_streams_the_channel_and_the_dialplan_goes_on(
    pbx: FakeAsterisk, server: tuple[AudioSocketServer, Verdicts]
) -> None:
    """AudioSocket() in a dialplan connects with the UUID; after the hang-up frame the next
    step runs."""
    srv, verdicts = server
    pbx.default_callee_voice = CalleeVoice.HUMAN
    leg = await run_context(
        pbx,
        [("Answer", ""), ("AudioSocket", f"{STREAM},127.0.0.1:{srv.port}"), ("Set", "AFTER=yes")],
    )
    await until(pbx, lambda: leg.variable("AFTER") == "yes")
    assert [str(s) for s, _ in verdicts.received] == [STREAM]
    assert pbx.audiosocket_runs[0].ended_by == "hangup-frame"


async def test_audiosocket_that_cannot_connect_hangs_the_channel_up(pbx: FakeAsterisk) -> None:
    """AudioSocket() returning -1 ends the channel: the next step never runs."""
    leg = await run_context(
        pbx, [("Answer", ""), ("AudioSocket", f"{STREAM},127.0.0.1:9"), ("Set", "AFTER=yes")]
    )
    await until(pbx, lambda: not leg.alive)
    assert leg.variable("AFTER") is None


async def test_tryexec_keeps_a_failed_audiosocket_from_hanging_up(pbx: FakeAsterisk) -> None:
    """TryExec(AudioSocket(...)) that cannot connect sets TRYSTATUS=FAILED and goes on."""
    leg = await run_context(
        pbx,
        [
            ("Answer", ""),
            ("TryExec", f"AudioSocket({STREAM},127.0.0.1:9)"),
            ("Set", "AFTER=yes"),
            ("Wait", "100"),
        ],
    )
    await until(pbx, lambda: leg.variable("AFTER") == "yes")
    assert leg.variable("TRYSTATUS") == "FAILED"
    assert leg.alive


async def test_execif_runs_the_true_branch_with_a_colon_inside_its_arguments(
    pbx: FakeAsterisk, server: tuple[AudioSocketServer, Verdicts]
) -> None:
    """ExecIf splits its branches outside parentheses, so host:port stays one argument."""
    srv, verdicts = server
    leg = await run_context(
        pbx,
        [
            ("Answer", ""),
            ("Set", "ENGINE=daemon"),
            (
                "ExecIf",
                f'$["${{ENGINE}}" = "daemon"]?TryExec(AudioSocket({STREAM},127.0.0.1:{srv.port}))',
            ),
            ("Set", "AFTER=yes"),
            ("Wait", "100"),
        ],
    )
    await until(pbx, lambda: leg.variable("AFTER") == "yes")
    assert leg.variable("TRYSTATUS") == "SUCCESS"
    assert len(verdicts.received) == 1


@pytest.mark.parametrize(
    ("expression", "expected"),
    [('"a" = "a"', "T"), ('"a" = "b"', "F"), ('"a" != "b"', "T"), ('"" != ""', "F")],
)
async def test_execif_compares_quoted_strings(
    pbx: FakeAsterisk, expression: str, expected: str
) -> None:
    """ExecIf's condition: two quoted strings, = or !=, choosing the true or false branch."""
    leg = await run_context(
        pbx,
        [("ExecIf", f"$[{expression}]?Set(R=T):Set(R=F)"), ("Wait", "100")],
    )
    await until(pbx, lambda: leg.variable("R") is not None)
    assert leg.variable("R") == expected


async def test_callee_voice_is_chosen_by_the_number_dialled(
    pbx: FakeAsterisk, server: tuple[AudioSocketServer, Verdicts]
) -> None:
    """script_callee_voice picks who answers an originated call by the number dialled."""
    srv, verdicts = server
    pbx.script_callee_voice("79160000001", CalleeVoice.MACHINE)
    pbx.dialplan.add("cb", "s", [("Answer", ""), ("AudioSocket", f"{STREAM},127.0.0.1:{srv.port}")])
    pbx.switch.start_originate(
        OriginateRequest(
            dial_string="PJSIP/79160000001@trunk",
            action_id=None,
            context="cb",
            exten="s",
            priority=1,
            application=None,
            data="",
            timeout_ms=30000,
            caller_name="",
            caller_num="",
            variables=(),
            channel_id=STREAM,
            other_channel_id=None,
        )
    )
    await until(pbx, lambda: bool(pbx.audiosocket_runs))
    await asyncio.sleep(0)
    assert verdicts.received[0][1].kind is VerdictKind.MACHINE

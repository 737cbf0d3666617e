"""Callbacks on Asterisk: the callback service's ``Dialer``, and the way back for what became
of each attempt (R7), with answering-machine detection on the answered leg (R6).

Wiring (the composition root builds it)::

    CallbackService --place_callback--> AsteriskDialer --AMI Originate--> Asterisk
        ChannelId = the attempt's request id (so the leg's Uniqueid, even on failure, 07f),
        Timeout = the ring time, Context = [asterisk.contexts] callback, and the variables below.
    Asterisk --OriginateResponse / Hangup--> translator --OriginateOutcome--> engine
        --subscribe--> AsteriskDialer.on_event --> CallbackService.on_originate_outcome
    the daemon's detector: Asterisk AudioSocket() --audio--> AudioSocketServer --verdict-->
        AsteriskDialer.on_audiosocket_verdict: AMI Setvar PBXAGENT_AMD on the leg, then the
        server's hang-up frame; AudioSocket() returns and the dialplan acts on PBXAGENT_AMD
        --> CallbackService.on_machine_verdict
    Asterisk's AMD(): VarSet AMDSTATUS + AMDCAUSE --MachineDetected--> engine --subscribe-->
        AsteriskDialer.on_event --> CallbackService.on_machine_verdict

Channel variables of the Originate (read by ``dialplan/asterisk/pbx-agent-callback.conf``):
``PBXAGENT_CALLBACK_ID`` (set by the adapter: the request id, the AudioSocket UUID),
``PBXAGENT_CALLBACK_TARGET`` (the queue, when known), ``PBXAGENT_CALLBACK_GREETING`` (the
sound a person hears before the queue), ``PBXAGENT_AMD_ENGINE``
(``daemon``, ``asterisk`` or ``none``), ``PBXAGENT_AUDIOSOCKET`` (the daemon's AudioSocket
server, ``host:port``), ``PBXAGENT_AMD_PARAMS`` (``AMD()``'s nine arguments from
``standards.amd``) and ``PBXAGENT_AMD_NOTSURE`` (``HUMAN``/``MACHINE``: what ``AMD()``'s
NOTSURE counts as).

Why a machine is ended by ``Setvar PBXAGENT_AMD=MACHINE`` and the dialplan's own
``Hangup(16)``, rather than by an AMI ``Hangup`` of the leg:

- the AudioSocket server sends its hang-up frame only after ``on_audiosocket_verdict``
  returned, and that awaits the Setvar's response: when ``AudioSocket()`` returns the
  verdict is already on the channel, so there is no race between "connect to the queue"
  and "hang up";
- both detectors end in the same variable, so the dialplan is the one place that says what
  a machine gets (a hang-up here; a site may prefer to leave a message);
- every failure falls on the safe side: ``PBXAGENT_AMD`` starts as ``HUMAN``, so a Setvar
  that is lost or late (the server gives the callback ``callback_timeout_s``) connects the
  call, as R6's default does: never hang up on a person.

Reports to the service go through one queue, applied in arrival order by one owned task,
so an attempt's answer is recorded before its verdict and a slow store never holds a call.

Invariants: the dialer never blocks the engine (``on_event`` only enqueues); every network
await is bounded (the AMI client's action timeout, ``setvar_timeout_s``); a request id that
is not a UUID is not an attempt of ours and is ignored.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog

from pbx_agent.amd.detector import Verdict
from pbx_agent.amd.params import VerdictKind, classic_params, detector_params
from pbx_agent.errors import PbxAgentError
from pbx_agent.model import events as ev
from pbx_agent.pbx.callback_reports import OutcomeSink, ReportQueue, VerdictReport
from pbx_agent.services.callbacks import CallbackDial, CallbackNotPlacedError

if TYPE_CHECKING:
    from pbx_agent.config.standards import AmdRule
    from pbx_agent.pbx.asterisk import AsteriskAdapter

__all__ = [
    "AMD_VARIABLE",
    "AsteriskDialer",
    "MachineDetection",
    "audiosocket_address",
    "detector_params",
]

log = structlog.get_logger("pbx_agent.callbacks")

AMD_VARIABLE = "PBXAGENT_AMD"
DetectorEngine = Literal["daemon", "asterisk", "none"]


@dataclass(frozen=True, slots=True)
class MachineDetection:
    """How an answered callback leg is checked for a machine (``standards.amd``)."""

    engine: DetectorEngine = "daemon"
    notsure_as: VerdictKind = VerdictKind.HUMAN
    amd_args: str = "2500,1500,800,5000,100,50,2,256,5000"  # AMD()'s arguments, in order

    @classmethod
    def from_rule(cls, amd: AmdRule) -> MachineDetection:
        """``standards.amd``: the engine (``none`` when detection is off), the NOTSURE
        choice, and ``AMD()``'s arguments in ``app_amd.c``'s order."""
        args = classic_params(amd).model_dump().values()
        return cls(
            engine=amd.engine if amd.enabled else "none",
            notsure_as=VerdictKind(amd.notsure_action.upper()),
            amd_args=",".join(str(value) for value in args),
        )


class AsteriskDialer:
    """Places callback attempts on Asterisk and reports their outcomes to the service.

    ``report_to(service)``; ``attach(adapter, audiosocket=...)`` once the adapter (and the
    AudioSocket server) exist; subscribe ``on_event`` to the engine for ``OriginateOutcome``
    and ``MachineDetected``; give ``on_audiosocket_verdict`` to the ``AudioSocketServer``;
    ``start()`` / ``close()``.
    """

    def __init__(
        self,
        detection: MachineDetection,
        *,
        setvar_timeout_s: float = 0.8,
        close_timeout_s: float = 2.0,
        greeting: str | None = None,
    ) -> None:
        self.detection = detection
        # The sound an answered callback hears before the queue (callbacks.greeting_prompt).
        self.greeting = greeting
        self.audiosocket: str | None = None
        self._setvar_timeout_s = setvar_timeout_s
        self._adapter: AsteriskAdapter | None = None
        self._reports = ReportQueue(close_timeout_s=close_timeout_s)

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, adapter: AsteriskAdapter, *, audiosocket: str | None = None) -> None:
        """Place calls through ``adapter``; ``audiosocket``: the daemon's AudioSocket server
        as the dialplan reaches it (``host:port``), None when it does not run."""
        self._adapter = adapter
        self.audiosocket = audiosocket
        detection = self.detection
        if detection.engine == "daemon" and not audiosocket:
            log.warning(
                "callback.amd_unavailable",
                reason="standards.amd.engine is 'daemon' but no AudioSocket server runs: "
                "callbacks are connected without machine detection",
            )
            self.detection = MachineDetection("none", detection.notsure_as, detection.amd_args)

    def report_to(self, sink: OutcomeSink) -> None:
        self._reports.report_to(sink)

    async def start(self) -> None:
        await self._reports.start()

    async def close(self) -> None:
        """Deliver the reports already queued (bounded by ``close_timeout_s``), then stop."""
        await self._reports.close()

    # -- placing ---------------------------------------------------------------------------

    def variables_for(self, request: CallbackDial) -> list[tuple[str, str]]:
        """The channel variables the callback context reads (see the module docstring)."""
        detection = self.detection
        engine: DetectorEngine = detection.engine if request.detect_machine else "none"
        variables: list[tuple[str, str]] = [("PBXAGENT_AMD_ENGINE", engine)]
        if request.target:
            variables.append(("PBXAGENT_CALLBACK_TARGET", request.target))
        if self.greeting:
            variables.append(("PBXAGENT_CALLBACK_GREETING", self.greeting))
        if engine == "daemon" and self.audiosocket is not None:
            variables.append(("PBXAGENT_AUDIOSOCKET", self.audiosocket))
        if engine == "asterisk":
            variables.append(("PBXAGENT_AMD_PARAMS", detection.amd_args))
        variables.append(("PBXAGENT_AMD_NOTSURE", detection.notsure_as.value))
        return variables

    async def abandon(self, request_id: str) -> None:
        """Hang up the attempt's channel (its Uniqueid is the request id) if it is there."""
        adapter = self._adapter
        if adapter is not None:
            await adapter.hangup_unique_id(request_id, cause=16)

    async def place_callback(self, request: CallbackDial) -> None:
        """Originate one attempt. ``CallbackNotPlacedError`` when nothing can have reached
        the switch (no AMI connection); any other failure may have reached it and counts."""
        adapter = self._adapter
        if adapter is None or not adapter.client.connected:
            msg = f"callback {request.request_id} not placed: not connected to Asterisk's AMI"
            raise CallbackNotPlacedError(msg)
        variables = self.variables_for(request)
        await adapter.originate_callback(
            request_id=request.request_id,
            number=request.number,
            ring_time_s=request.ring_time_s,
            variables=variables,
        )
        log.info(
            "callback.originated",
            request_id=request.request_id,
            job_id=request.job_id,
            attempt_no=request.attempt_no,
            number=request.number,
            ring_time_s=request.ring_time_s,
            target=request.target,
            amd_engine=dict(variables)["PBXAGENT_AMD_ENGINE"],
            shadow=adapter.shadow,
        )

    # -- outcomes ------------------------------------------------------------------------

    def on_event(self, event: ev.PbxEvent, now: float) -> None:
        """Engine listener for ``OriginateOutcome`` and ``MachineDetected`` (never blocks)."""
        self._reports.on_event(event, now)

    async def on_audiosocket_verdict(self, stream: uuid.UUID, verdict: Verdict) -> None:
        """The AudioSocket server's verdict: recorded, and put on the leg for the dialplan
        before the server sends its hang-up frame (see the module docstring)."""
        request_id = str(stream)
        cause = f"{verdict.reason} at {verdict.decided_at_ms} ms"
        self._reports.put_verdict(VerdictReport(request_id, verdict.kind.value.lower(), cause))
        applied = verdict.kind
        if applied is VerdictKind.NOTSURE:
            applied = self.detection.notsure_as
        await self._set_amd_variable(request_id, applied, verdict)

    async def _set_amd_variable(
        self, request_id: str, applied: VerdictKind, verdict: Verdict
    ) -> None:
        adapter = self._adapter
        fields = {
            "request_id": request_id,
            "verdict": verdict.kind.value,
            "applied": applied.value,
            "reason": verdict.reason,
        }
        if adapter is None:
            log.warning("callback.verdict_not_applied", error="no Asterisk adapter", **fields)
            return
        try:
            async with asyncio.timeout(self._setvar_timeout_s):
                # AMI finds a channel by name or, failing that, by Uniqueid (channel.c,
                # ast_channel_get_by_name): the request id is the leg's Uniqueid.
                await adapter.set_variable(request_id, AMD_VARIABLE, applied.value)
        except (TimeoutError, PbxAgentError) as exc:
            # PBXAGENT_AMD stays HUMAN in the dialplan: the callee is connected.
            log.warning("callback.verdict_not_applied", error=str(exc) or repr(exc), **fields)
            return
        log.info("callback.verdict_applied", **fields)


def audiosocket_address(host: str, port: int) -> str:
    """``host:port`` as ``AudioSocket()`` reads its service argument (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

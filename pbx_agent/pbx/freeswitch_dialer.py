"""Callbacks on FreeSWITCH: the callback service's ``Dialer``, the way back for what became
of each attempt (R7), and machine detection on the answered leg (R6).

Wiring (the composition root builds it)::

    CallbackService --place_callback--> FreeswitchDialer --bgapi originate--> FreeSWITCH
        origination_uuid = Job-UUID = the attempt's request id, originate_timeout = the ring
        time (at least 31 s), into the extension pbxagent_callback (detection) or
        pbxagent_callback_connect (none), with pbx_agent_callback_target = the queue.
    FreeSWITCH --BACKGROUND_JOB / CHANNEL_HANGUP--> translator --OriginateOutcome--> engine
        --subscribe--> FreeswitchDialer.on_event --> CallbackService.on_originate_outcome
    pbxagent_callback: avmd_start, then a bridge to the listener (the callee's speech reaches
        the switch's talk detection); the translator runs the detector's rules over the debounced
        talk events and avmd::beep --MachineDetected--> engine --subscribe-->
        FreeswitchDialer.on_event --> CallbackService.on_machine_verdict, and the verdict is
        applied: a person (or NOTSURE counted as one) is transferred to
        pbxagent_callback_connect, a machine is hung up.

Core FreeSWITCH has no human/machine classifier (``mod_avmd`` only hears beeps, trace 06),
so the verdict is the daemon's, with ``AMD()``'s parameters (``standards.amd``) and its
causes. The dialplan's ``sched_transfer`` to ``pbxagent_callback_connect`` after the
verdict deadline is the safe side when the daemon is gone: a person is never left on the
listener, nor hung up on.

Reports to the service go through one queue, applied in arrival order by one owned task,
so an attempt's answer is recorded before its verdict and a slow store never holds a call.

Invariants: ``on_event`` never blocks; every network await is bounded (the ESL client's
command timeout); a request id that is not a UUID is not an attempt of ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from pbx_agent.amd.params import DetectorParams, VerdictKind, detector_params
from pbx_agent.errors import PbxAgentError
from pbx_agent.model import events as ev
from pbx_agent.pbx.callback_reports import OutcomeSink, ReportQueue, VerdictReport
from pbx_agent.services.callbacks import CallbackDial, CallbackNotPlacedError

if TYPE_CHECKING:
    from pbx_agent.config.standards import AmdRule
    from pbx_agent.pbx.freeswitch import FreeswitchAdapter

log = structlog.get_logger("pbx_agent.callbacks")

TARGET_VARIABLE = "pbx_agent_callback_target"
GREETING_VARIABLE = "pbx_agent_callback_greeting"


@dataclass(frozen=True, slots=True)
class FreeswitchDetection:
    """How an answered callback leg is checked for a machine (``standards.amd``)."""

    enabled: bool = True
    notsure_as: VerdictKind = VerdictKind.HUMAN
    params: DetectorParams = field(default_factory=DetectorParams)
    deadline_ms: int = 6000
    audio: bool = True  # on the leg's audio (unicast), else on the switch's talk events

    @classmethod
    def from_rule(cls, amd: AmdRule, *, audio: bool = True) -> FreeswitchDetection:
        """``standards.amd``: the detector's settings, the NOTSURE choice and the deadline.
        Both engines mean the daemon's detector on FreeSWITCH (there is no ``AMD()``), run
        on the leg's audio (``audio``, ``freeswitch.amd_audio = "unicast"``) or on the
        switch's talk events."""
        return cls(
            enabled=amd.enabled,
            notsure_as=VerdictKind(amd.notsure_action.upper()),
            params=detector_params(amd),
            deadline_ms=amd.deadline_ms,
            audio=audio,
        )


class FreeswitchDialer:
    """Places callback attempts on FreeSWITCH and reports their outcomes to the service.

    ``attach(adapter)`` once the adapter exists, ``report_to(service)``, subscribe
    ``on_event`` to the engine for ``OriginateOutcome`` and ``MachineDetected``;
    ``start()`` / ``close()``.
    """

    def __init__(
        self,
        detection: FreeswitchDetection,
        *,
        close_timeout_s: float = 2.0,
        greeting: str | None = None,
    ) -> None:
        # The file an answered callback hears before the queue (callbacks.greeting_prompt).
        self.greeting = greeting
        self.detection = detection
        self._adapter: FreeswitchAdapter | None = None
        self._reports = ReportQueue(close_timeout_s=close_timeout_s, on_verdict=self._apply)

    # -- wiring ---------------------------------------------------------------------------

    def attach(self, adapter: FreeswitchAdapter) -> None:
        self._adapter = adapter

    def report_to(self, sink: OutcomeSink) -> None:
        self._reports.report_to(sink)

    async def start(self) -> None:
        await self._reports.start()

    async def close(self) -> None:
        """Deliver the reports already queued (bounded by ``close_timeout_s``), then stop."""
        await self._reports.close()

    # -- placing ---------------------------------------------------------------------------

    async def abandon(self, request_id: str) -> None:
        """Kill the attempt's leg (its uuid is the request id) if it is there."""
        adapter = self._adapter
        if adapter is not None and adapter.client.connected:
            await adapter.kill_attempt(request_id)

    async def place_callback(self, request: CallbackDial) -> None:
        """Originate one attempt. ``CallbackNotPlacedError`` when nothing can have reached
        the switch (no ESL connection); any other failure may have reached it and counts."""
        adapter = self._adapter
        if adapter is None or not adapter.client.connected:
            msg = f"callback {request.request_id} not placed: not connected to FreeSWITCH's ESL"
            raise CallbackNotPlacedError(msg)
        detect = request.detect_machine and self.detection.enabled
        variables = [(TARGET_VARIABLE, request.target)] if request.target else []
        if self.greeting:
            variables.append((GREETING_VARIABLE, self.greeting))
        await adapter.originate_callback(
            request_id=request.request_id,
            number=request.number,
            ring_time_s=request.ring_time_s,
            variables=variables,
            machine=self.detection.params if detect else None,
            amd_deadline_ms=self.detection.deadline_ms,
            audio=self.detection.audio,
        )
        heard = "audio" if self.detection.audio and adapter.unicast is not None else "talk-events"
        log.info(
            "callback.originated",
            request_id=request.request_id,
            job_id=request.job_id,
            attempt_no=request.attempt_no,
            number=request.number,
            ring_time_s=request.ring_time_s,
            target=request.target,
            amd_engine="daemon" if detect else "none",
            amd_input=heard if detect else None,
            shadow=adapter.shadow,
        )

    # -- outcomes --------------------------------------------------------------------------

    def on_event(self, event: ev.PbxEvent, now: float) -> None:
        """Engine listener for ``OriginateOutcome`` and ``MachineDetected`` (never blocks);
        a verdict is applied to the leg (``_apply``) before it is recorded."""
        self._reports.on_event(event, now)

    async def _apply(self, verdict: VerdictReport) -> None:
        """A machine is hung up; a person (or NOTSURE counted as one) goes to the queue."""
        adapter = self._adapter
        kind = VerdictKind(verdict.verdict.upper())
        applied = self.detection.notsure_as if kind is VerdictKind.NOTSURE else kind
        leg = verdict.request_id
        fields = {
            "request_id": leg,
            "verdict": kind.value,
            "applied": applied.value,
            "reason": verdict.cause,
        }
        if adapter is None:
            log.warning("callback.verdict_not_applied", error="no FreeSWITCH adapter", **fields)
            return
        try:
            if applied is VerdictKind.MACHINE:
                await adapter.kill(leg, 16, call_id=leg)
            else:
                await adapter.transfer(leg, adapter.options.callback_connect, call_id=leg)
        except PbxAgentError as exc:
            # The dialplan's sched_transfer connects the callee at the deadline.
            log.warning("callback.verdict_not_applied", error=str(exc), **fields)
            return
        log.info("callback.verdict_applied", **fields)


__all__ = [
    "TARGET_VARIABLE",
    "FreeswitchDetection",
    "FreeswitchDialer",
]

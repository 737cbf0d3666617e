"""Prometheus metrics and the health endpoint: what the daemon decided, how its links are.

Theory of operation
-------------------
``Metrics`` owns one ``CollectorRegistry`` (never the process-global one, so two daemons in
one process, as in the tests, never collide). It is fed from three places, none of which
it changes:

- **decisions**: ``Metrics.on_decision`` is an engine decision listener. Every decision
  counts in ``pbx_agent_decisions_total{rule,action}``; the decisions the manager asks
  about count again in their own series (holds and their durations from the ``hold``
  fact, reminders played, holds over the tier limit, silent-caller / lingering / script
  drops, script steps, routes of the route hook, callbacks requested).
- **neutral events**: ``Metrics.on_event`` (``engine.subscribe``) counts callback attempts
  by outcome (``OriginateOutcome``: on Asterisk the adapter passes on only the outcomes of
  the calls the daemon places for callbacks, its own helper channels are filtered out),
  answering-machine verdicts (``MachineDetected``) and PBX disconnections.
- **probes read at scrape time**: the PBX link state (``watch_pbx``), the number of live
  calls, and the store, probed every ``store_probe_interval_s`` by a task of this module
  (a read of the schema revision and the callback jobs per status, each under a deadline).

Event lag: ``instrument_ami`` / ``instrument_esl`` wrap the PBX client's event callback (the
adapter, the call model and every policy run synchronously inside it). When the callback
returns, the event has been handled: ``pbx_agent_event_handling_seconds`` is the time spent
in it, and ``pbx_agent_event_lag_seconds`` the time from the switch's own stamp on the event
(Asterisk ``Timestamp`` with ``timestampevents = yes`` in ``manager.conf``, as the sample
has it; FreeSWITCH ``Event-Date-Timestamp``, always there) to the end of the handling:
network, the switch's own queue, the daemon's read loop and the handling.
The two hosts' clocks must agree (NTP); a negative difference counts as zero.

The HTTP endpoint (``MetricsServer``) is a small asyncio server: ``GET /metrics`` (the
Prometheus text format), ``GET /healthz`` (JSON; 200 when every PBX link and the store are
up, else 503 with what is down), nothing else. Every read has a deadline, requests are
bounded in size, and each connection is a task the server owns and ends on ``close``.

Invariants: the listeners never raise into the engine and never block; label values come
from bounded sets (rule ids, action names, outcomes, verdicts, tiers, script names), never
from callers (numbers, names) or call ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from pbx_agent import __version__
from pbx_agent.errors import StoreUnavailable
from pbx_agent.model import events as ev
from pbx_agent.policies.callbacks import JobStatus

if TYPE_CHECKING:
    from pbx_agent.engine import Decision, Engine
    from pbx_agent.pbx.ami_client import AmiClient
    from pbx_agent.pbx.esl_client import EslClient
    from pbx_agent.store import Store
    from pbx_agent.wire.ami import AmiMessage
    from pbx_agent.wire.esl import EslEvent

log = structlog.get_logger("pbx_agent.metrics")

_M = TypeVar("_M", "AmiMessage", "EslEvent")

NAMESPACE = "pbx_agent"

# Hold durations: the standards' marks are 10 s (dead air), 20 s (long wait), 60 s (the
# promised minute), 120 s and 180 s (the tier limits).
HOLD_BUCKETS = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 600.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HANDLING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

# Route hook decisions (rule, action) -> the route label.
_ROUTES = {"night_ivr": "ivr", "flagged_queue": "flagged", "route_agent": "agent"}
# Route reasons are machine-readable words (``night_repeat_caller``, ``store_unavailable``,
# ``number_anonymous``...); anything else is folded into "other" to keep the label bounded.
_REASON_WORD = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_OUTCOMES = frozenset({"answered", "busy", "rejected", "no_answer", "failed"})
_VERDICTS = frozenset({"human", "machine", "notsure"})
_MAX_LABEL = 40


def _label(value: object, *, default: str = "unknown") -> str:
    """A label value: short, printable, never empty."""
    text = str(value) if value not in (None, "") else default
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[:_MAX_LABEL]


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What ``/healthz`` says: each PBX link and the store, and whether all are up."""

    pbx: Mapping[str, bool]
    store: bool | None  # None: no store configured, or not probed yet
    store_error: str = ""
    store_checked_at: float | None = None

    @property
    def healthy(self) -> bool:
        return all(self.pbx.values()) and self.store is not False and bool(self.pbx)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "pbx": dict(self.pbx),
            "store": {
                "up": self.store,
                "error": self.store_error or None,
                "checked_at": self.store_checked_at,
            },
        }


EVENT_SAMPLE = 8  # event handling and lag are timed on one event in this many


class Metrics:
    """Every metric of one daemon, and the listeners that feed them (see the module doc)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.perf_counter,
        process_collectors: bool = True,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._wall = wall
        self._monotonic = monotonic
        self._pbx: dict[str, Callable[[], bool]] = {}
        self._store_up: bool | None = None
        self._store_error = ""
        self._store_checked_at: float | None = None
        r = self.registry
        ns = NAMESPACE
        if process_collectors:
            ProcessCollector(namespace=ns, registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        self.info = Gauge(
            "info", "The daemon's version, profile and PBX kind (always 1).",
            ["version", "profile", "pbx"], namespace=ns, registry=r,
        )  # fmt: skip
        self.decisions = Counter(
            "decisions", "Decisions taken, by rule and action (one per 'decision' log line).",
            ["rule", "action"], namespace=ns, registry=r,
        )  # fmt: skip
        # R1 hold
        self.holds = Counter(
            "holds", "Holds of the customer that ended, by the agent's tier.",
            ["tier"], namespace=ns, registry=r,
        )  # fmt: skip
        self.hold_duration = Histogram(
            "hold_duration_seconds", "How long the customer was on hold.",
            namespace=ns, registry=r, buckets=HOLD_BUCKETS,
        )  # fmt: skip
        self.hold_reminders = Counter(
            "hold_reminders",
            "Hold reminders due before customers' holds ended (the hold program's schedule; a "
            "playback that failed is logged as hold_prompt_failed).",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.silences = Counter(
            "silences", "Silences longer than quality.dead_air_s in a bridged call not on hold.",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.talk_overs = Counter(
            "talk_overs", "Both parties speaking at once longer than dead_air.talk_over_s.",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.holds_over_limit = Counter(
            "holds_over_limit", "Holds that reached the agent's tier limit, by tier.",
            ["tier"], namespace=ns, registry=r,
        )  # fmt: skip
        self.hold_callback_offers_taken = Counter(
            "hold_callback_offers_taken", "Customers on hold who took the callback offer.",
            namespace=ns, registry=r,
        )  # fmt: skip
        # R2, R3, R4
        self.silent_drops = Counter(
            "silent_caller_drops", "Silent callers dropped after the set phrases, by stage "
            "(call: with an agent; entry: before the queue).",
            ["stage"], namespace=ns, registry=r,
        )  # fmt: skip
        self.linger_drops = Counter(
            "linger_drops", "Callers dropped after lingering silently past the farewell.",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.script_steps = Counter(
            "script_steps", "Script steps said to both parties, by script.",
            ["script"], namespace=ns, registry=r,
        )  # fmt: skip
        self.script_drops = Counter(
            "script_drops", "Calls dropped at the last step of a script, by script.",
            ["script"], namespace=ns, registry=r,
        )  # fmt: skip
        # R5, R9
        self.routes = Counter(
            "routes", "Route hook decisions before the queue (ivr: night repeat caller; "
            "flagged: designated queue; agent: the normal queue), by reason.",
            ["route", "reason"], namespace=ns, registry=r,
        )  # fmt: skip
        # R6, R7
        self.callbacks_requested = Counter(
            "callbacks_requested", "Callbacks the rules asked for (abnormal drops, one-way "
            "audio, the hold callback offer).",
            namespace=ns, registry=r,
        )  # fmt: skip
        self.callback_attempts = Counter(
            "callback_attempts", "Callback attempts by what the PBX reported "
            "(answered, busy, rejected, no_answer, failed).",
            ["outcome"], namespace=ns, registry=r,
        )  # fmt: skip
        self.callback_jobs = Gauge(
            "callback_jobs", "Callback jobs in the store, by status (read by the store probe).",
            ["status"], namespace=ns, registry=r,
        )  # fmt: skip
        self.amd_results = Counter(
            "amd_results", "Answering-machine detection verdicts (human, machine, notsure).",
            ["result"], namespace=ns, registry=r,
        )  # fmt: skip
        # Links and health
        self.pbx_connected = Gauge(
            "pbx_connected", "1 while the daemon is logged in to the PBX.",
            ["pbx"], namespace=ns, registry=r,
        )  # fmt: skip
        self.pbx_disconnects = Counter(
            "pbx_disconnects", "Times the PBX link was lost.",
            ["pbx"], namespace=ns, registry=r,
        )  # fmt: skip
        self.store_up = Gauge(
            "store_up", "1 when the last store probe succeeded.", namespace=ns, registry=r,
        )  # fmt: skip
        self.live_calls = Gauge(
            "live_calls", "Calls the call model is tracking now.", namespace=ns, registry=r,
        )  # fmt: skip
        self.event_lag = Histogram(
            "event_lag_seconds", "From the PBX's event timestamp to the end of its handling.",
            ["pbx"], namespace=ns, registry=r, buckets=LAG_BUCKETS,
        )  # fmt: skip
        self.event_handling = Histogram(
            "event_handling_seconds", "Time the daemon spent handling one PBX event "
            "(adapter, call model, policies).",
            ["pbx"], namespace=ns, registry=r, buckets=HANDLING_BUCKETS,
        )  # fmt: skip

    # -- wiring -------------------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        """Listen to the engine's decisions and to the neutral events counted here."""
        engine.on_decision(self.on_decision)
        engine.subscribe(
            (ev.OriginateOutcome, ev.MachineDetected, ev.PbxConnectionChanged), self.on_event
        )
        self.live_calls.set_function(lambda: float(engine.live_calls))

    def describe_daemon(self, *, profile: str, pbx: str) -> None:
        self.info.labels(version=__version__, profile=profile, pbx=pbx).set(1)

    def watch_pbx(self, name: str, connected: Callable[[], bool]) -> None:
        """Report ``connected()`` for the PBX ``name`` (read at each scrape and health check)."""
        self._pbx[name] = connected
        self.pbx_connected.labels(pbx=name).set_function(lambda: float(connected()))

    def instrument_ami(self, client: AmiClient, pbx: str) -> None:
        """Measure the handling and the lag of every AMI event ``client`` delivers (the
        switch's ``Timestamp``, epoch seconds, with ``timestampevents = yes``)."""
        handler = client.on_event
        if handler is not None:
            client.on_event = self._timed(
                handler, pbx, lambda message: _timestamp(message.get("Timestamp"))
            )

    def instrument_esl(self, client: EslClient, pbx: str) -> None:
        """The same for the Event Socket: FreeSWITCH stamps every event
        (``Event-Date-Timestamp``, epoch microseconds)."""
        handler = client.on_event
        if handler is not None:
            client.on_event = self._timed(
                handler, pbx, lambda event: _timestamp(event.get("Event-Date-Timestamp"), 1e-6)
            )

    def _timed(
        self, handler: Callable[[_M], None], pbx: str, stamp_of: Callable[[_M], float | None]
    ) -> Callable[[_M], None]:
        handling = self.event_handling.labels(pbx=pbx)
        lag = self.event_lag.labels(pbx=pbx)
        # One event in EVENT_SAMPLE is timed: the histograms keep their shape, and the
        # 5,000-events-a-second path does not pay two observations per event (measured:
        # a tenth of the daemon's per-event cost, BENCHMARKS.md).
        count = 0

        def timed(message: _M) -> None:
            nonlocal count
            count += 1
            if (count - 1) % EVENT_SAMPLE:  # the 1st, the 9th, ...: a single event is timed
                handler(message)
                return
            started = self._monotonic()
            try:
                handler(message)
            finally:
                handling.observe(max(0.0, self._monotonic() - started))
                stamp = stamp_of(message)
                if stamp is not None:
                    lag.observe(max(0.0, self._wall() - stamp))

        return timed

    # -- listeners (never raise, never block) -------------------------------------------------

    def on_decision(self, decision: Decision) -> None:
        rule, action, fields = decision.rule, decision.action, decision.fields
        self.decisions.labels(rule=_label(rule), action=_label(action)).inc()
        match action:
            case "record_fact" if fields.get("kind") == "hold":
                self._hold_fact(_mapping(fields.get("fields")))
            case "record_fact" if fields.get("kind") == "dead_air":
                self.silences.inc()
            case "record_fact" if fields.get("kind") == "talk_over":
                self.talk_overs.inc()
            case "silent_caller_drop":
                self.silent_drops.labels(stage=_label(fields.get("stage"), default="call")).inc()
            case "lingering_drop":
                self.linger_drops.inc()
            case "script_step_played":
                self.script_steps.labels(script=_label(fields.get("script"))).inc()
            case "script_drop":
                self.script_drops.labels(script=_label(fields.get("script"))).inc()
            case "night_ivr" | "flagged_queue" | "route_agent":
                reason = decision.reason if _REASON_WORD.match(decision.reason) else "other"
                self.routes.labels(route=_ROUTES[action], reason=reason).inc()
            case "request_callback":
                self.callbacks_requested.inc()

    def _hold_fact(self, fact: Mapping[str, Any]) -> None:
        # Only the customer's holds are the standard's holds (the store keeps the same ones).
        if fact.get("held_role") not in (None, "caller"):
            return
        tier = _label(fact.get("tier"))
        self.holds.labels(tier=tier).inc()
        duration = fact.get("duration_s")
        if isinstance(duration, int | float) and duration >= 0:
            self.hold_duration.observe(float(duration))
        reminders = fact.get("reminders")
        if isinstance(reminders, int) and reminders > 0:
            self.hold_reminders.inc(reminders)
        if fact.get("over_limit"):
            self.holds_over_limit.labels(tier=tier).inc()
        if fact.get("callback_offer_taken"):
            self.hold_callback_offers_taken.inc()

    def on_event(self, event: ev.PbxEvent, _now: float) -> None:
        match event:
            case ev.OriginateOutcome(outcome=outcome):
                label = outcome if outcome in _OUTCOMES else "other"
                self.callback_attempts.labels(outcome=label).inc()
            case ev.MachineDetected(verdict=verdict):
                self.count_machine_verdict(verdict)
            case ev.PbxConnectionChanged(pbx=pbx, connected=False):
                self.pbx_disconnects.labels(pbx=_label(pbx)).inc()

    def count_machine_verdict(self, verdict: str) -> None:
        """One answering-machine verdict (``human``/``machine``/``notsure``). The switch's
        ``AMD()`` verdicts arrive as ``MachineDetected`` events; a detector that reports
        elsewhere (the daemon's own, over AudioSocket) calls this."""
        word = verdict.strip().lower()
        self.amd_results.labels(result=word if word in _VERDICTS else "other").inc()

    # -- the store probe ----------------------------------------------------------------------

    async def probe_store(self, store: Store, *, timeout_s: float) -> bool:
        """Read the schema revision and the callback jobs per status; record the result."""
        try:
            async with asyncio.timeout(timeout_s):
                await store.current_revision()
                counts = await store.callbacks.count_by_status()
        except (StoreUnavailable, TimeoutError) as exc:
            error = str(exc) or f"no answer within {timeout_s:g} s"
            if self._store_up is not False:
                log.warning("metrics_store_probe_failed", error=error)
            self._set_store(up=False, error=error)
            return False
        # Every status, zero included, so a status that emptied does not keep its last value.
        for status in JobStatus:
            self.callback_jobs.labels(status=str(status)).set(counts.get(status, 0))
        if self._store_up is False:
            log.info("metrics_store_probe_recovered")
        self._set_store(up=True, error="")
        return True

    def _set_store(self, *, up: bool, error: str) -> None:
        self._store_up = up
        self._store_error = error
        self._store_checked_at = self._wall()
        self.store_up.set(1.0 if up else 0.0)

    # -- output -------------------------------------------------------------------------------

    def health(self) -> HealthReport:
        pbx: dict[str, bool] = {}
        for name, connected in self._pbx.items():
            try:
                pbx[name] = bool(connected())
            except Exception:  # noqa: BLE001 - a broken probe reads as "down", never as a 500
                pbx[name] = False
        return HealthReport(
            pbx=pbx,
            store=self._store_up,
            store_error=self._store_error,
            store_checked_at=self._store_checked_at,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _timestamp(value: str | None, unit: float = 1.0) -> float | None:
    """An event's epoch timestamp in seconds (``unit``: seconds per unit of ``value``)."""
    if not value:
        return None
    try:
        stamp = float(value) * unit
    except ValueError:
        return None
    return stamp if stamp > 0 else None


# ------------------------------------------------------------------------------ HTTP server

_MAX_REQUEST_BYTES = 8192


@dataclass(frozen=True, slots=True)
class MetricsServerSettings:
    host: str = "127.0.0.1"
    port: int = 9464
    read_timeout_s: float = 5.0
    write_timeout_s: float = 5.0
    store_probe_interval_s: float = 10.0
    store_probe_timeout_s: float = 3.0


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP/1.0, plus the periodic store probe."""

    def __init__(
        self,
        metrics: Metrics,
        settings: MetricsServerSettings,
        *,
        store: Store | None = None,
    ) -> None:
        self.metrics = metrics
        self.settings = settings
        self.store = store
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probe: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self.settings.port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and serve. ``OSError`` (port taken, address not local) goes to the caller."""
        if self.store is not None:
            await self.metrics.probe_store(
                self.store, timeout_s=self.settings.store_probe_timeout_s
            )
            self._probe = asyncio.create_task(self._probe_loop(), name="metrics:store-probe")
        self._server = await asyncio.start_server(
            self._serve, self.settings.host, self.settings.port
        )
        log.info("metrics_listening", host=self.settings.host, port=self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in (self._probe, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        self._server = None
        self._probe = None

    async def _probe_loop(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.settings.store_probe_interval_s)
            await self.metrics.probe_store(
                self.store, timeout_s=self.settings.store_probe_timeout_s
            )

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), self.settings.write_timeout_s)
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.settings.read_timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, "text/plain", b"request header too large\n")
            return
        if len(head) > _MAX_REQUEST_BYTES:
            await self._send(writer, 431, "text/plain", b"request header too large\n")
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._send(writer, 400, "text/plain", b"bad request\n")
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await self._send(writer, 405, "text/plain", b"only GET and HEAD\n", head_only=False)
            return
        head_only = method == "HEAD"
        if target == "/metrics":
            await self._send(writer, 200, CONTENT_TYPE_LATEST, self.metrics.exposition(), head_only)
        elif target == "/healthz":
            report = self.metrics.health()
            body = json.dumps(report.as_json(), ensure_ascii=False).encode() + b"\n"
            status = 200 if report.healthy else 503
            await self._send(writer, status, "application/json", body, head_only)
        elif target == "/":
            body = b"pbx-agent: /metrics (Prometheus), /healthz (JSON)\n"
            await self._send(writer, 200, "text/plain; charset=utf-8", body, head_only)
        else:
            await self._send(writer, 404, "text/plain", b"not found\n", head_only)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        content_type: str,
        body: bytes,
        head_only: bool = False,
    ) -> None:
        reason = _REASONS.get(status, "")
        header = (
            f"HTTP/1.0 {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(header if head_only else header + body)
        async with asyncio.timeout(self.settings.write_timeout_s):
            await writer.drain()


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}

"""The engine: per-call state, timers, dispatch of events to policies, execution of commands.

Theory of operation
-------------------
``Engine.handle(event)`` is synchronous and fast: it stamps the event with the clock, lets the
call model turn it into call-level events, steps every policy of the affected call, and deals
with the commands they return:

- ``StartTimer`` / ``CancelTimer``: scheduled on the injected clock; a firing timer is stepped
  into the policy that asked for it, as a ``TimerFired`` call event.
- every other command is first logged as one ``decision`` event (call id, rule, policy, action,
  reason, the command's fields) and offered to the decision listeners (metrics, store), then:
  ``Note`` stops there; PBX commands go to the call's FIFO and are executed by the adapter in
  order (one call's commands never overtake each other; different calls run concurrently);
  service commands go to the service registered for their type.
- a command whose call or leg has ended by the time it is executed is dropped with a
  ``command_dropped`` log line and never sent.

Invariants: every task the engine starts is tracked and awaited by ``close()``, and one that
fails is logged with its traceback (``task_failed``); a policy that raises is logged
(``policy_failed``) and retired for that call only; a failing command is logged
(``command_failed``) and never stops the call's queue. Logging never raises into the engine
(``GuardedLogger``): a decision whose log line cannot be written is executed all the same.
Caller-controlled text in a decision's fields is escaped (``printable``) at any depth, for the
log and for the listeners alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from pbx_agent.clock import Clock, TimerHandle
from pbx_agent.errors import PbxAgentError
from pbx_agent.logging import GuardedLogger
from pbx_agent.model import calls as cm
from pbx_agent.model import commands as cmd
from pbx_agent.model.events import CallId, LegId, PbxEvent
from pbx_agent.pbx.base import CommandExecutor
from pbx_agent.policies.base import Policy
from pbx_agent.wire.escaping import printable, printable_nested

log = GuardedLogger(structlog.get_logger("pbx_agent.engine"))

StandardsResolver = Callable[[str | None, str | None], Any]
ServiceHandler = Callable[[Any, "cm.Call | None"], Awaitable[None]]
EventListener = Callable[[PbxEvent, float], None]


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision as the listeners (metrics, store) see it."""

    at: float
    call_id: str | None
    rule: str
    policy: str
    action: str
    reason: str
    fields: dict[str, Any]
    number: str = ""
    agent: str | None = None


DecisionListener = Callable[[Decision], None]


@dataclass(slots=True)
class _CallState:
    policies: dict[str, tuple[Policy, Any]] = field(default_factory=dict)
    timers: dict[tuple[str, str], TimerHandle] = field(default_factory=dict)
    # Created with the call's first PBX command: most events of most calls issue none, and
    # an empty deque is most of a call's footprint (BENCHMARKS.md, memory per call).
    queue: deque[tuple[cmd.PbxCommand, str, str]] | None = None
    worker: asyncio.Task[None] | None = None


def _command_fields(command: object) -> dict[str, Any]:
    if not dataclasses.is_dataclass(command) or isinstance(command, type):
        return {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(command):
        if f.name in ("reason", "action"):
            continue
        value = getattr(command, f.name)
        if isinstance(command, cmd.Note) and f.name == "fields":
            out.update(printable_nested(dict(value)))
            continue
        if isinstance(value, str):
            value = printable(value)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            value = printable_nested([dataclasses.asdict(v) for v in value])
        elif isinstance(value, dict | tuple) and f.name in ("fields", "params"):
            value = printable_nested(dict(value))
        out[f.name] = value
    return out


class Engine:
    def __init__(
        self,
        *,
        clock: Clock,
        policies: Sequence[Policy],
        executor: CommandExecutor | None = None,
        model: cm.CallModel | None = None,
        standards: StandardsResolver | None = None,
        shadow: bool = False,
    ) -> None:
        self.clock = clock
        self.policies = list(policies)
        self.executor = executor
        self.model = model or cm.CallModel()
        self._standards = standards
        self.shadow = shadow
        self._calls: dict[CallId, _CallState] = {}
        self._services: dict[type, ServiceHandler] = {}
        self._listeners: list[tuple[tuple[type, ...], EventListener]] = []
        self._decision_listeners: list[DecisionListener] = []
        self._call_listeners: list[Callable[[cm.CallEvent, cm.Call | None, float], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # Per call, the last of its service commands (store writes): the next one waits for
        # it, so they take effect in the order the rules issued them. A customer's callback
        # requested as their call drops must not be cancelled by the cancellation the same
        # call's connection issued earlier but whose task happened to run later.
        self._service_tails: dict[CallId, asyncio.Task[None]] = {}
        # The model forgets a call as it ends; policies still need to see it for CallEnded.
        self._last_view: dict[CallId, cm.Call] = {}
        self._closing = False

    # -- wiring -----------------------------------------------------------------------------

    def register_service(self, command_type: type, handler: ServiceHandler) -> None:
        self._services[command_type] = handler

    def set_standards(self, resolver: StandardsResolver) -> None:
        """Use a new resolver (after a config reload); calls re-resolve as they change."""
        self._standards = resolver
        for call in self.model.calls.values():
            call.tags.pop("standards_key", None)

    def standards_for(self, queue: str | None, dialed: str | None) -> Any:
        """The standards a call in ``queue`` to ``dialed`` gets now (None: no resolver)."""
        return self._standards(queue, dialed) if self._standards is not None else None

    def subscribe(self, types: Iterable[type], listener: EventListener) -> None:
        """Receive raw neutral events of these types (after the call model saw them)."""
        self._listeners.append((tuple(types), listener))

    def on_decision(self, listener: DecisionListener) -> None:
        self._decision_listeners.append(listener)

    def remove_decision_listener(self, listener: DecisionListener) -> None:
        with contextlib.suppress(ValueError):
            self._decision_listeners.remove(listener)

    def on_call_event(
        self, listener: Callable[[cm.CallEvent, cm.Call | None, float], None]
    ) -> None:
        self._call_listeners.append(listener)

    # -- input ------------------------------------------------------------------------------

    def handle(self, event: PbxEvent) -> None:
        now = self.clock.now()
        try:
            call_events = self.model.apply(event, now)
        except Exception:
            log.exception("model_failed", pbx_event=type(event).__name__)
            return
        for call_event in call_events:
            self._dispatch(call_event, now)
        for absorbed in self.model.take_forgotten():
            # Merged into another call (a transfer target placed as its own call): its
            # rules' state and timers go with it, or they would stay for ever.
            self._finish_call(absorbed)
        for types, listener in self._listeners:
            if isinstance(event, types):
                try:
                    listener(event, now)
                except Exception:
                    log.exception("listener_failed", pbx_event=type(event).__name__)

    def _dispatch(self, event: cm.CallEvent, now: float) -> None:
        call = self.model.calls.get(event.call)
        if isinstance(event, cm.CallStarted) and call is not None:
            self._start_call(call, now)
        elif call is not None and call.tags.get("standards_key") != (call.queue, call.dialed):
            self._refresh_standards(call)
        if call is None:
            call = self._last_view.get(event.call)
        for listener in self._call_listeners:
            try:
                listener(event, call, now)
            except Exception:
                log.exception("listener_failed", call_event=type(event).__name__)
        state = self._calls.get(event.call)
        if state is None:
            return
        if call is None:
            return
        for name, (policy, policy_state) in list(state.policies.items()):
            self._step(state, call, name, policy, policy_state, event, now)
        if isinstance(event, cm.CallEnded):
            self._finish_call(event.call)

    def _start_call(self, call: cm.Call, now: float) -> None:
        self._refresh_standards(call)
        state = _CallState()
        self._calls[call.id] = state
        self._last_view[call.id] = call
        for policy in self.policies:
            try:
                initial = policy.start(call, now)
            except Exception:
                log.exception("policy_failed", call_id=call.id, policy=policy.name, stage="start")
                continue
            if initial is not None:
                state.policies[policy.name] = (policy, initial)

    def _refresh_standards(self, call: cm.Call) -> None:
        call.tags["standards_key"] = (call.queue, call.dialed)
        if self._standards is None:
            return
        try:
            call.standards = self._standards(call.queue, call.dialed or None)
        except Exception:
            log.exception("standards_failed", call_id=call.id, queue=call.queue)

    def _step(
        self,
        state: _CallState,
        call: cm.Call,
        name: str,
        policy: Policy,
        policy_state: Any,
        event: cm.CallEvent,
        now: float,
    ) -> None:
        try:
            new_state, commands = policy.step(policy_state, event, call, now)
        except Exception:
            log.exception(
                "policy_failed", call_id=call.id, policy=name, call_event=type(event).__name__
            )
            state.policies.pop(name, None)
            return
        if name in state.policies:
            state.policies[name] = (policy, new_state)
        for command in commands:
            self._issue(state, call, policy, command, now)

    # -- commands ---------------------------------------------------------------------------

    def _issue(
        self, state: _CallState, call: cm.Call, policy: Policy, command: cmd.Command, now: float
    ) -> None:
        if isinstance(command, cmd.StartTimer):
            self._start_timer(state, call.id, policy.name, command)
            return
        if isinstance(command, cmd.CancelTimer):
            handle = state.timers.pop((policy.name, command.key), None)
            if handle is not None:
                handle.cancel()
            return
        self.record_decision(command, call=call, rule=policy.rule, policy=policy.name, now=now)
        if isinstance(command, cmd.Note):
            return
        if isinstance(command, cmd.PBX_COMMANDS):
            if state.queue is None:
                state.queue = deque()
            state.queue.append((command, policy.rule, policy.name))  # type: ignore[arg-type]
            if state.worker is None or state.worker.done():
                state.worker = self._spawn(self._run_queue(call.id, state), f"commands:{call.id}")
            return
        self._run_service(command, call, policy.rule)

    def record_decision(
        self,
        command: object,
        *,
        call: cm.Call | None,
        rule: str,
        policy: str,
        now: float | None = None,
    ) -> None:
        """Log one decision and tell the listeners. Also used by services for their own."""
        action = cmd.action_name(command)
        reason = getattr(command, "reason", "")
        fields = _command_fields(command)
        at = self.clock.now() if now is None else now
        log.info(
            "decision",
            call_id=call.id if call else None,
            rule=rule,
            policy=policy,
            action=action,
            reason=reason,
            shadow=self.shadow,
            **fields,
        )
        decision = Decision(
            at=at,
            call_id=call.id if call else None,
            rule=rule,
            policy=policy,
            action=action,
            reason=reason,
            fields=fields,
            number=call.caller_number if call else "",
            agent=call.agent_id if call else None,
        )
        for listener in self._decision_listeners:
            try:
                listener(decision)
            except Exception:
                log.exception("listener_failed", listener="decision")

    def _run_service(self, command: cmd.Command, call: cm.Call | None, rule: str) -> None:
        handler = self._services.get(type(command))
        if handler is None:
            log.warning(
                "command_unhandled",
                call_id=call.id if call else None,
                action=cmd.action_name(command),
                reason="no service is configured for this kind of command",
            )
            return

        previous = self._service_tails.get(call.id) if call is not None else None

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            try:
                await handler(command, call)
            except PbxAgentError as exc:
                log.error(
                    "command_failed",
                    call_id=call.id if call else None,
                    rule=rule,
                    action=cmd.action_name(command),
                    error=f"{type(exc).__name__}: {exc}",
                )
            except Exception as exc:
                # Not one of ours: a bug in the service, so its traceback goes with it.
                log.exception(
                    "command_failed",
                    call_id=call.id if call else None,
                    rule=rule,
                    action=cmd.action_name(command),
                    error=f"{type(exc).__name__}: {exc}",
                )

        task = self._spawn(run(), f"service:{cmd.action_name(command)}")
        if call is not None:
            call_id = call.id
            self._service_tails[call_id] = task

            def forget(done: asyncio.Task[Any]) -> None:
                if self._service_tails.get(call_id) is done:
                    del self._service_tails[call_id]

            task.add_done_callback(forget)

    async def _run_queue(self, call_id: CallId, state: _CallState) -> None:
        while state.queue:
            command, rule, policy = state.queue.popleft()
            await self.execute_now(command, call_id=call_id, rule=rule, policy=policy)

    def _target_alive(self, command: cmd.PbxCommand, call_id: CallId) -> str | None:
        """Why the command must not be sent, or None when its target is still there."""
        call = self.model.calls.get(call_id)
        if call is None or call.ended:
            return "the call has ended"
        leg: LegId | None = getattr(command, "leg", None)
        if leg is not None and not call.leg_alive(leg):
            return "the leg has hung up"
        return None

    async def execute_now(
        self, command: cmd.PbxCommand, *, call_id: CallId, rule: str, policy: str
    ) -> None:
        action = cmd.action_name(command)
        why_not = self._target_alive(command, call_id)
        if why_not is not None:
            log.info("command_dropped", call_id=call_id, rule=rule, action=action, reason=why_not)
            return
        if self.executor is None:
            log.warning(
                "command_dropped",
                call_id=call_id,
                rule=rule,
                action=action,
                reason="no PBX adapter is attached",
            )
            return
        call = self.model.calls[call_id]
        try:
            outcome = await self.executor.execute(command, call)
        except PbxAgentError as exc:
            log.warning("command_failed", call_id=call_id, rule=rule, action=action, error=str(exc))
            return
        except Exception as exc:
            log.exception(
                "command_failed",
                call_id=call_id,
                rule=rule,
                action=action,
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        log.info(
            "command_done",
            call_id=call_id,
            rule=rule,
            policy=policy,
            action=action,
            outcome=outcome,
            shadow=self.shadow,
        )

    # -- timers -----------------------------------------------------------------------------

    def _start_timer(
        self, state: _CallState, call_id: CallId, policy: str, command: cmd.StartTimer
    ) -> None:
        key = (policy, command.key)
        old = state.timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            current = self._calls.get(call_id)
            if current is None or current.timers.get(key) is not handle_ref[0]:
                return
            del current.timers[key]
            entry = current.policies.get(policy)
            call = self.model.calls.get(call_id)
            if entry is None or call is None:
                return
            self._step(
                current,
                call,
                policy,
                entry[0],
                entry[1],
                cm.TimerFired(call_id, command.key),
                self.clock.now(),
            )

        handle_ref: list[TimerHandle] = []
        handle = self.clock.call_at(command.at, fire)
        handle_ref.append(handle)
        state.timers[key] = handle

    # -- call end, tasks, shutdown ------------------------------------------------------------

    def _finish_call(self, call_id: CallId) -> None:
        state = self._calls.pop(call_id, None)
        self._last_view.pop(call_id, None)
        if state is None:
            return
        for handle in state.timers.values():
            handle.cancel()
        state.timers.clear()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "task_failed",
                task=task.get_name(),
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
            )

    async def drain(self) -> None:
        """Wait until every queued command and service call has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._closing = True
        for state in self._calls.values():
            for handle in state.timers.values():
                handle.cancel()
        await self.drain()

    # -- introspection (lab, metrics, tests) ------------------------------------------------

    @property
    def live_calls(self) -> int:
        return len(self.model.calls)

    def policy_state(self, call_id: CallId, policy: str) -> Any:
        state = self._calls.get(call_id)
        if state is None or policy not in state.policies:
            return None
        return state.policies[policy][1]

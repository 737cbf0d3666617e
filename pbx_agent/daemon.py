"""The composition root: the one place where the configuration becomes objects.

``Daemon(config)`` builds the engine with every enabled policy, the adapter for the
configured PBX (a built-in simulated Asterisk when none is configured), the dialplan hook
servers, the store and the services, and runs them until it is told to stop. Nothing else
in the package knows every part.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydantic import SecretStr

from pbx_agent.clock import Clock, LoopClock
from pbx_agent.config import Config, ConfigError, load_config
from pbx_agent.config.settings import AsteriskSettings, FreeswitchSettings
from pbx_agent.config.standards import Standards
from pbx_agent.config.types import split_host_port, split_port_range
from pbx_agent.engine import Engine
from pbx_agent.hooks.entry import entry_hook_factory
from pbx_agent.hooks.route import route_hook_factory
from pbx_agent.metrics import Metrics, MetricsServer, MetricsServerSettings
from pbx_agent.model.calls import CallModel, PartiesConnected, RoleRules
from pbx_agent.model.commands import CancelCallbacks, RequestCallback, action_name
from pbx_agent.model.events import MachineDetected, OriginateOutcome
from pbx_agent.model.hooks import HookRegistry, HookSpec
from pbx_agent.numbers import NormalizedNumber, normalize
from pbx_agent.pbx.ami_client import AmiSettings
from pbx_agent.pbx.asterisk import AsteriskAdapter, AsteriskOptions, DialplanTarget
from pbx_agent.pbx.asterisk_dialer import (
    AsteriskDialer,
    MachineDetection,
    audiosocket_address,
    detector_params,
)
from pbx_agent.pbx.asterisk_hold import hold_program_hook_factory
from pbx_agent.pbx.audiosocket_server import AudioSocketServer
from pbx_agent.pbx.esl_client import EslSettings
from pbx_agent.pbx.esl_outbound import EslOutboundServer
from pbx_agent.pbx.fastagi import FastAgiServer
from pbx_agent.pbx.freeswitch import (
    FreeswitchAdapter,
    FreeswitchOptions,
    FreeswitchTarget,
    prompt_lengths_for,
)
from pbx_agent.pbx.freeswitch_dialer import FreeswitchDetection, FreeswitchDialer
from pbx_agent.pbx.unicast_server import UnicastAudioServer
from pbx_agent.policies.base import Policy
from pbx_agent.policies.callbacks import CallbackRules, callbacks_policy_factory
from pbx_agent.policies.dead_air import dead_air_policy_factory
from pbx_agent.policies.hold import hold_policy_factory
from pbx_agent.policies.interactions import call_facts_policy, interactions_policy
from pbx_agent.policies.lingering import lingering_policy_factory
from pbx_agent.policies.scripts import scripts_policy_factory
from pbx_agent.policies.silent_caller import silent_caller_policy_factory
from pbx_agent.prompts import sound_name
from pbx_agent.services.callbacks import CallbackService, SchedulerSettings, promise_hook
from pbx_agent.services.facts import FactsService
from pbx_agent.store import Store

log = structlog.get_logger("pbx_agent.daemon")


def _simulator() -> Any:
    # Imported late: the simulator pulls in the fake switch and the lab scenarios.
    from pbx_agent.lab import simulator  # noqa: PLC0415

    return simulator


# Variables the adapter passes on to the call model and policies (beyond the role variables).
EXTRA_WATCHED_VARIABLES = frozenset({"PBXAGENT_QUEUE"})
# What the daemon subscribes to on FreeSWITCH's Event Socket (CUSTOM last: every word after
# it is a subclass).
FREESWITCH_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HOLD",
    "CHANNEL_UNHOLD",
    "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_APPLICATION",
    "CHANNEL_HANGUP",
    "CHANNEL_DESTROY",
    "TALK",
    "NOTALK",
    "DTMF",
    "CUSTOM",
    "avmd::beep",
    "callcenter::info",
)


def role_rules(config: Config) -> RoleRules:
    agents = config.agents
    return RoleRules(
        agent_endpoint_patterns=tuple(agents.endpoint_patterns),
        role_variable=agents.role_variable,
        tier_variable=agents.tier_variable,
        agent_variable=agents.agent_variable,
        topic_variable=agents.topic_variable,
        tiers=dict(agents.tiers),
        default_tier=agents.default_tier,
    )


def build_policies(config: Config) -> list[Policy]:
    """Every standard the daemon enforces, in the order they see each event."""
    policies: list[Policy] = []
    for factory in POLICY_FACTORIES:
        policy = factory(config)
        if policy is not None:
            policies.append(policy)
    return policies


# Every standard's policy, in the order they see each event: ``(config) -> Policy | None``.
POLICY_FACTORIES: list[Callable[[Config], Policy | None]] = [
    hold_policy_factory,
    dead_air_policy_factory,
    silent_caller_policy_factory,
    lingering_policy_factory,
    scripts_policy_factory,
    callbacks_policy_factory,
    interactions_policy,
    call_facts_policy,
]


def promise_hook_factory(daemon: Daemon) -> HookSpec | None:
    """The ``callback_promise`` hook (R7 promises), served by the daemon's callback service."""
    if daemon.callbacks is None:
        return None
    callbacks = daemon.config.standards_for().callbacks
    return promise_hook(daemon.callbacks, default_within_h=callbacks.promised_default_deadline_h)


# Every dialplan hook: ``(daemon) -> HookSpec | None``. Hooks are built before the adapter
# starts and reach the adapter, store and services through the daemon at call time.
HOOK_FACTORIES: list[Callable[[Daemon], HookSpec | None]] = [
    route_hook_factory,
    entry_hook_factory,
    hold_program_hook_factory,
    promise_hook_factory,
]


@dataclass
class Daemon:
    config: Config
    clock: Clock | None = None
    config_path: Path | None = None
    engine: Engine = field(init=False)
    adapter: AsteriskAdapter | FreeswitchAdapter | None = field(init=False, default=None)
    store: Store | None = field(init=False, default=None)
    fastagi: FastAgiServer | None = field(init=False, default=None)
    esl_outbound: EslOutboundServer | None = field(init=False, default=None)
    callbacks: CallbackService | None = field(init=False, default=None)
    dialer: AsteriskDialer | FreeswitchDialer | None = field(init=False, default=None)
    audiosocket: AudioSocketServer | None = field(init=False, default=None)
    hooks: HookRegistry = field(init=False, default_factory=HookRegistry)
    metrics: Metrics = field(init=False, default_factory=Metrics)
    metrics_server: MetricsServer | None = field(init=False, default=None)
    facts: FactsService | None = field(init=False, default=None)
    # What brings new work in (the callback scheduler, the simulator's traffic, the metrics
    # endpoint): closed first at stop. Then the engine drains, then the PBX links, the hook
    # and audio servers and the dialer close (``_link_closers``): queued commands (a
    # farewell's hang-up, a hold program's FastAGI session) still reach the switch.
    _closers: list[Callable[[], Any]] = field(init=False, default_factory=list)
    _link_closers: list[Callable[[], Any]] = field(init=False, default_factory=list)
    _stop: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    _unknown_queues: set[str] = field(init=False, default_factory=set)

    def hook_standards(self, queue: str | None, dialed: str | None) -> Standards:
        """The standards a hook's call gets, under the running configuration (a reload
        reaches the hooks through here). A ``?queue=`` the configuration does not know gets
        the site's standards, and the log says so once per name: a typo in the dialplan
        would otherwise give that queue's callers the wrong standards without a word."""
        config = self.config
        named = self._unknown_queues
        if (
            queue
            and queue not in config.queues
            and queue not in named
            and len(named) < _UNKNOWN_QUEUES_NAMED
        ):
            named.add(queue)
            log.warning(
                "hook_queue_unknown",
                queue=queue[:_UNKNOWN_QUEUE_SHOWN],
                known=sorted(config.queues),
                reason="no [queues.<name>] section of that name: the site's standards apply",
            )
        return config.standards_for(queue, dialed)

    async def start(self) -> None:
        config = self.config
        if self.clock is None:
            own = LoopClock()
            self._watch_wall_clock(own)  # the daemon's own real-time clock only
            self.clock = own
        clock = self.clock
        rules = role_rules(config)
        self.engine = Engine(
            clock=clock,
            policies=build_policies(config),
            model=CallModel(rules),
            standards=config.standards_for,
            shadow=config.shadow,
        )
        self.metrics.attach(self.engine)
        await self._start_store()
        self._build_callbacks()
        for hook_factory in HOOK_FACTORIES:
            spec = hook_factory(self)
            if spec is not None:
                self.hooks.register(spec)
        kind = config.pbx.kind
        if kind in ("asterisk", "simulated"):
            await self._start_asterisk(rules)
        elif kind == "freeswitch":
            await self._start_freeswitch(rules)
        else:
            msg = f"pbx.kind = {kind!r} is not available in this build"
            raise ConfigError(msg)
        self._run_callbacks()
        await self._start_metrics()
        log.info(
            "daemon_started",
            pbx=kind,
            profile=config.site.profile,
            shadow=config.shadow,
            policies=[p.name for p in self.engine.policies],
        )

    async def _start_asterisk(self, rules: RoleRules) -> None:
        config = self.config
        settings = config.asterisk
        simulator = None
        if config.pbx.kind == "simulated":
            simulator, settings = await self._start_simulator()
            # Stopped last of what follows (the closers run in reverse): after the AMI link
            # and the FastAGI server let go of it, as a real switch outlives the daemon.
            self._link_closers.append(simulator.stop_switch)
        assert settings is not None
        contexts = settings.contexts
        agi_host, agi_port = await self._start_fastagi(settings.fastagi_bind)
        options = AsteriskOptions(
            sounds=lambda key: sound_name(config, key, "asterisk"),
            whisper_context=contexts.whisper,
            hold_context=contexts.hold_program,
            callback_context=contexts.callback,
            callback_channel=settings.callback_channel,
            callback_caller_id=settings.callback_caller_id,
            agi_url=f"agi://{agi_host}:{agi_port}",
            targets={
                "linger": DialplanTarget(contexts.linger),
                "requeue": DialplanTarget(contexts.requeue),
                "ivr": DialplanTarget(contexts.ivr),
            },
            talk_detect=settings.talk_detect,
            talk_detect_silence_ms=settings.talk_detect_silence_ms,
            talk_detect_threshold=settings.talk_detect_energy_threshold,
            recording_dir=settings.recording_dir,
            watched_variables=rules.watched_variables() | EXTRA_WATCHED_VARIABLES,
        )
        ami = AmiSettings(
            host=settings.ami_host,
            port=settings.ami_port,
            username=settings.username,
            secret=settings.secret.get_secret_value(),
            connect_timeout_s=settings.connect_timeout_s,
            action_timeout_s=settings.action_timeout_s,
            ping_interval_s=settings.ping_interval_s,
            ping_timeout_s=settings.ping_timeout_s,
            reconnect_initial_s=settings.reconnect_initial_s,
            reconnect_max_s=settings.reconnect_max_s,
        )
        if self.dialer is not None:
            await self.dialer.start()
            self._link_closers.append(self.dialer.close)
        adapter = AsteriskAdapter(
            ami, options, handle_event=self.engine.handle, shadow=self.config.shadow
        )
        self.adapter = adapter
        self.engine.executor = adapter
        self.metrics.instrument_ami(adapter.client, adapter.name)
        self.metrics.watch_pbx(adapter.name, lambda: adapter.client.connected)

        def talk_detection(event: Any, call: Any, _now: float) -> None:
            if isinstance(event, PartiesConnected) and call is not None:
                adapter.enable_talk_detection(
                    [
                        call.legs[leg].channel
                        for leg in (event.caller, event.agent)
                        if leg in call.legs
                    ]
                )

        self.engine.on_call_event(talk_detection)
        # Closed even when its start is cut short (a SIGTERM while attaching): the link
        # keeps trying in the background from the first attempt on.
        self._link_closers.append(adapter.close)
        await adapter.start()
        if isinstance(self.dialer, AsteriskDialer):
            self.dialer.attach(adapter, audiosocket=await self._start_audiosocket(settings))
        if simulator is not None and self.fastagi is not None:
            simulator.start_traffic(self, self.fastagi.port)
            self._closers.append(simulator.stop_traffic)

    async def _start_freeswitch(self, rules: RoleRules) -> None:
        """FreeSWITCH: the inbound Event Socket (events in, ``uuid_*`` commands out) and the
        outbound-socket server, serving the same hooks as FastAGI does on Asterisk."""
        config = self.config
        settings = config.freeswitch
        assert settings is not None
        assert self.clock is not None
        host, port = split_host_port(settings.outbound_bind)
        outbound = EslOutboundServer(
            self.hooks,
            host=host,
            port=port,
            command_timeout_s=settings.action_timeout_s,
            default_deadline_s=config.hooks.default_deadline_ms / 1000.0,
            hook_variable=settings.hook_variable,
            max_sessions=config.hooks.max_sessions,
        )
        await outbound.start()
        self.esl_outbound = outbound
        self._link_closers.append(outbound.close)
        context = settings.dialplan_context
        options = FreeswitchOptions(
            sounds=lambda key: sound_name(config, key, "freeswitch"),
            prompt_seconds=prompt_lengths_for(config),
            sounds_dir=settings.sounds_dir,
            targets={
                "linger": FreeswitchTarget(settings.linger_extension, context),
                "requeue": FreeswitchTarget(settings.requeue_extension, context),
                "ivr": FreeswitchTarget(settings.ivr_extension, settings.ivr_context),
            },
            callback_dial_string=settings.callback_dial_string,
            callback_caller_id_number=settings.callback_caller_id_number,
            callback_caller_id_name=settings.callback_caller_id_name,
            callback_target=FreeswitchTarget(settings.callback_extension, context),
            callback_connect=FreeswitchTarget(settings.callback_connect_extension, context),
            callback_audio_target=FreeswitchTarget(settings.callback_audio_extension, context),
            unicast_address=settings.unicast_address,
            unicast_switch_ip=settings.unicast_switch_ip,
            recording_dir=settings.recording_dir,
            watched_variables=rules.watched_variables() | EXTRA_WATCHED_VARIABLES,
            talk_debounce_ms=settings.talk_debounce_ms,
            notalk_lag_ms=settings.notalk_lag_ms,
            bgapi_timeout_s=settings.action_timeout_s,
        )
        esl = EslSettings(
            host=settings.esl_host,
            port=settings.esl_port,
            password=settings.password.get_secret_value(),
            events=FREESWITCH_EVENTS,
            connect_timeout_s=settings.connect_timeout_s,
            command_timeout_s=settings.action_timeout_s,
            idle_probe_s=settings.heartbeat_timeout_s / 2,
            probe_timeout_s=settings.ping_timeout_s,
            reconnect_initial_s=settings.reconnect_initial_s,
            reconnect_max_s=settings.reconnect_max_s,
        )
        if config.standards_for().silent_caller.pre_queue:
            log.warning(
                "freeswitch_pre_queue_unheard",
                reason="FreeSWITCH's talk detection hears a party only through a bridge: the "
                "entry hook cannot hear a caller alone, so it must not decide silence there",
                advice="leave standards.silent_caller.pre_queue off on FreeSWITCH "
                "(docs/freeswitch.md)",
            )
        if self.dialer is not None:
            await self.dialer.start()
            self._link_closers.append(self.dialer.close)
        adapter = FreeswitchAdapter(
            esl, options, handle_event=self.engine.handle, clock=self.clock, shadow=config.shadow
        )
        self.adapter = adapter
        self.engine.executor = adapter
        self.metrics.watch_pbx(adapter.name, lambda: adapter.client.connected)
        self.metrics.instrument_esl(adapter.client, adapter.name)
        # Closed even when its start is cut short (a SIGTERM while attaching): the link
        # keeps trying in the background from the first attempt on.
        self._link_closers.append(adapter.close)
        await adapter.start()
        if isinstance(self.dialer, FreeswitchDialer):
            self.dialer.attach(adapter)
            await self._start_unicast(settings, adapter)

    def _build_callbacks(self) -> None:
        """R7 and R6: the callback service and its dialer (the adapter is attached when it
        exists). Shadow mode decides and logs callbacks but writes no job and dials nothing:
        a site switching shadow mode off is never called back for drops seen before."""
        assert self.store is not None
        assert self.clock is not None
        config = self.config
        site = config.standards_for()
        dialer: AsteriskDialer | FreeswitchDialer
        greeting = site.callbacks.greeting_prompt
        if config.pbx.kind == "freeswitch":
            audio = config.freeswitch is None or config.freeswitch.amd_audio == "unicast"
            dialer = FreeswitchDialer(
                FreeswitchDetection.from_rule(site.amd, audio=audio),
                greeting=sound_name(config, greeting, "freeswitch"),
            )
        else:
            dialer = AsteriskDialer(
                MachineDetection.from_rule(site.amd),
                greeting=sound_name(config, greeting, "asterisk"),
            )
        service = CallbackService(
            self.store,
            dialer,
            CallbackRules.from_standards(site, config.site.zone),
            clock=self.clock,
            default_region=config.site.default_region,
            settings=SchedulerSettings(
                poll_interval_s=config.scheduler.poll_interval_s, lease_s=config.scheduler.lease_s
            ),
            on_call=self._customer_on_call,
        )
        dialer.report_to(service)
        self.engine.subscribe((OriginateOutcome, MachineDetected), dialer.on_event)
        if config.shadow:
            self.engine.register_service(RequestCallback, _callback_in_shadow)
            self.engine.register_service(CancelCallbacks, _callback_in_shadow)
        else:
            self.engine.register_service(RequestCallback, service.on_request_callback)
            self.engine.register_service(CancelCallbacks, service.on_cancel_callbacks)
        self.callbacks, self.dialer = service, dialer

    async def _start_audiosocket(self, settings: AsteriskSettings) -> str | None:
        """The AudioSocket server callback legs stream to for the daemon's machine detection;
        returns the address the dialplan connects to. Not started when ``standards.amd``
        chooses ``AMD()`` or no detection. A port that cannot be bound is logged and
        callbacks go on without detection (the customer is connected, never hung up on)."""
        amd = self.config.standards_for().amd
        if not isinstance(self.dialer, AsteriskDialer) or not amd.enabled or amd.engine != "daemon":
            return None
        host, port = split_host_port(settings.audiosocket_bind)
        dialer = self.dialer

        async def on_verdict(stream: Any, verdict: Any) -> None:
            self.metrics.count_machine_verdict(verdict.kind.value)
            await dialer.on_audiosocket_verdict(stream, verdict)

        server = AudioSocketServer(on_verdict, params=detector_params(amd), host=host, port=port)
        try:
            await server.start()
        except ConfigError as exc:
            log.error("audiosocket_unavailable", bind=settings.audiosocket_bind, error=str(exc))
            await server.close()
            return None
        self.audiosocket = server
        self._link_closers.append(server.close)
        return audiosocket_address(host, server.port)

    async def _start_unicast(
        self, settings: FreeswitchSettings, adapter: FreeswitchAdapter
    ) -> None:
        """The receiver of FreeSWITCH's unicast streams, for machine detection on the leg's
        audio. Not started when ``standards.amd`` detects nothing or ``freeswitch.amd_audio``
        is ``talk_events``. A bind address that cannot be used is logged once, here, and
        callbacks are judged on talk events instead (a customer is never hung up on for it)."""
        amd = self.config.standards_for().amd
        if not amd.enabled or settings.amd_audio != "unicast":
            return
        low, high = split_port_range(settings.unicast_ports)
        try:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind((settings.unicast_bind, 0))
            finally:
                probe.close()
        except OSError as exc:
            log.error(
                "unicast_unavailable",
                bind=settings.unicast_bind,
                error=str(exc),
                fallback="talk events (freeswitch.amd_audio = talk_events)",
                advice="set freeswitch.unicast_bind to an address of this host",
            )
            return
        assert self.clock is not None
        # The adapter hands the verdict to the engine as MachineDetected, which the metrics
        # count (as they count the switch's own verdicts): not counted here as well.
        server = UnicastAudioServer(
            adapter.unicast_verdict,
            params=detector_params(amd),
            host=settings.unicast_bind,
            ports=(low, high),
            now=self.clock.now,
        )
        adapter.attach_unicast(server)
        self._link_closers.append(server.close)

    def _customer_on_call(self, e164: str) -> bool:
        """Whether a live call has ``e164`` (the customer) on its customer leg now."""
        region = self.config.site.default_region
        for call in self.engine.model.calls.values():
            leg = call.caller_leg
            if leg is None or not leg.alive or not leg.caller_number:
                continue
            number = normalize(leg.caller_number, region)
            if isinstance(number, NormalizedNumber) and number.e164 == e164:
                return True
        return False

    def _run_callbacks(self) -> None:
        """Run the callback scheduler (not in shadow mode); stopped first at shutdown."""
        service = self.callbacks
        if service is None:
            return
        if self.config.shadow:
            log.info("callback_scheduler_off", reason="shadow mode: callbacks are not dialled")
            return
        task = asyncio.create_task(service.run(), name="callback-scheduler")
        task.add_done_callback(_scheduler_ended)

        async def stop_scheduler() -> None:
            service.stop()
            done, _ = await asyncio.wait([task], timeout=_SCHEDULER_STOP_S)
            if not done:
                task.cancel()
                await asyncio.wait([task], timeout=_SCHEDULER_STOP_S)

        self._closers.append(stop_scheduler)

    async def _start_store(self) -> None:
        store = Store.open(self.config.store.url)
        revision = await store.upgrade()
        log.info("store_ready", dialect=store.dialect, revision=revision)
        self.store = store
        assert self.clock is not None
        facts = FactsService(
            store,
            clock=self.clock,
            default_region=self.config.site.default_region,
            default_flag_expiry_days=self.config.standards_for().flags.default_expiry_days,
        )
        facts.register(self.engine)
        await facts.start()
        self.facts = facts

    async def _start_metrics(self) -> None:
        """``/metrics`` and ``/healthz`` (``[metrics]``). A port that cannot be bound is logged
        and the daemon goes on: enforcing the standards matters more than being watched."""
        self.metrics.describe_daemon(profile=self.config.site.profile, pbx=self.config.pbx.kind)
        if not self.config.metrics.enabled:
            return
        host, port = split_host_port(self.config.metrics.bind)
        server = MetricsServer(
            self.metrics, MetricsServerSettings(host=host, port=port), store=self.store
        )
        try:
            await server.start()
        except OSError as exc:
            log.error("metrics_unavailable", bind=self.config.metrics.bind, error=str(exc))
            await server.close()
            return
        self.metrics_server = server
        self._closers.append(server.close)

    async def _start_fastagi(self, bind: str) -> tuple[str, int]:
        host, port = bind.rsplit(":", 1)
        server = FastAgiServer(
            self.hooks,
            host=host.strip("[]"),
            port=int(port),
            default_deadline_s=self.config.hooks.default_deadline_ms / 1000.0,
            max_sessions=self.config.hooks.max_sessions,
        )
        await server.start()
        self.fastagi = server
        self._link_closers.append(server.close)
        return host, server.port

    async def _start_simulator(self) -> tuple[Any, AsteriskSettings]:
        """No switch configured: a fake Asterisk in this process, with generated traffic."""
        sim = _simulator()
        simulator = sim.Simulator()
        host, port = await simulator.start()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            agi_port = sock.getsockname()[1]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            audiosocket_port = sock.getsockname()[1]
        settings = AsteriskSettings(
            ami_host=host,
            ami_port=port,
            username=sim.SIM_USERNAME,
            secret=SecretStr(sim.SIM_SECRET),
            fastagi_bind=f"127.0.0.1:{agi_port}",
            audiosocket_bind=f"127.0.0.1:{audiosocket_port}",
        )
        log.info(
            "simulated_pbx_started",
            ami=f"{host}:{port}",
            note="no [asterisk] or [freeswitch] section: attached to the built-in simulator",
        )
        return simulator, settings

    def _watch_wall_clock(self, clock: LoopClock) -> None:
        """Follow a step of the host's clock (``LoopClock.follow_wall``), logged once per
        step (``clock_stepped``): quiet hours and the night window are wall times."""

        async def watch() -> None:
            while True:
                await asyncio.sleep(_WALL_CHECK_S)
                step = clock.follow_wall()
                if step:
                    log.warning(
                        "clock_stepped",
                        step_s=round(step, 3),
                        note="the host's clock moved; the daemon's wall time follows it",
                    )

        task = asyncio.create_task(watch(), name="wall-clock-watch")

        async def stop_watch() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        self._closers.append(stop_watch)

    async def stop(self) -> None:
        """Stop taking calls, let queued commands and service writes finish, close the PBX
        links, the facts and the store: within ``_STOP_BUDGET_S`` in all, plus
        ``_STOP_STEP_MIN_S`` for each step left once it is spent (under the supervisors'
        kill timeouts: docker-compose 20 s, the systemd unit 30 s), each step cut short
        (``shutdown_step_timed_out``) when it would overrun it."""
        self._stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STOP_BUDGET_S
        steps: list[tuple[str, Callable[[], Any]]] = [
            (_step_name(c), c) for c in reversed(self._closers)
        ]
        if hasattr(self, "engine"):
            steps.append(("engine.drain", self.engine.close))
        steps += [(_step_name(c), c) for c in reversed(self._link_closers)]
        if hasattr(self, "engine"):
            # What the links' last events still asked for: no task is left behind.
            steps.append(("engine.drain", self.engine.drain))
        if self.facts is not None:
            steps.append(("facts.close", self.facts.close))  # after the engine's last facts
        if self.store is not None:
            steps.append(("store.close", self.store.close))
        self._closers.clear()
        self._link_closers.clear()
        for name, step in steps:
            budget = max(deadline - loop.time(), _STOP_STEP_MIN_S)
            try:
                async with asyncio.timeout(budget):
                    await step()
            except TimeoutError:
                log.error(
                    "shutdown_step_timed_out",
                    step=name,
                    waited_s=round(budget, 1),
                    note="cut short to stop within the supervisor's timeout",
                )
            except Exception:
                log.exception("shutdown_step_failed", step=name)
        log.info("daemon_stopped")

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT stop the daemon, SIGHUP re-reads and validates the configuration.

        Installed before ``start``: a supervisor may send SIGTERM as soon as it sees
        ``daemon_started`` (or while the daemon is still attaching), and a signal that arrives
        before the handlers would kill the process without closing the store.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def run_until_stopped(self) -> None:
        """Serve until SIGTERM/SIGINT (see ``handle_signals``)."""
        await self._stop.wait()

    def reload(self) -> None:
        """Re-read the config file; a bad file keeps the running configuration and says why."""
        if self.config_path is None:
            log.info("config_reload_skipped", reason="running on the embedded defaults")
            return
        if not hasattr(self, "engine"):
            log.warning("config_reload_skipped", reason="still starting: send SIGHUP again")
            return
        try:
            fresh = load_config(self.config_path)
        except ConfigError as exc:
            log.error(
                "config_reload_rejected",
                path=str(self.config_path),
                problems=[str(p) for p in getattr(exc, "problems", [])] or [str(exc)],
            )
            return
        except Exception as exc:
            # A check that fails instead of reporting (a bug): the reload is refused all
            # the same, in the log operators read, and the running configuration stays.
            log.exception(
                "config_reload_rejected",
                path=str(self.config_path),
                problems=[f"the configuration could not be checked: {type(exc).__name__}: {exc}"],
            )
            return
        running = self.config
        changed = changed_keys(running, fresh)
        phrasing = [key for key in changed if key in _PHRASING_KEYS]
        if phrasing:
            # The phrases would switch at once, the sound files the switch plays for them
            # only at a restart: half a change is worse than none.
            log.error(
                "config_reload_rejected",
                path=str(self.config_path),
                problems=[f"{key}: changes every phrase and its sound file" for key in phrasing],
                reason="restart the daemon to change the profile or the company name",
            )
            return
        applied = [key for key in changed if key.startswith(_LIVE_KEYS)]
        later = [key for key in changed if not key.startswith(_LIVE_KEYS)]
        # Read per call, and also once at start by the callback scheduler, the machine
        # detector, the flag store and the route hook's deadline: applied to calls now, to
        # those parts at a restart.
        later += [key for key in applied if key.startswith(_AT_START_TOO)]
        # The running mode stays: `run --shadow` is not in the file, and leaving shadow
        # mode means building the parts that act on calls, which only a start does.
        self.config = fresh.model_copy(update={"shadow": running.shadow})
        self.engine.set_standards(self.config.standards_for)
        log.info(
            "config_reloaded",
            path=str(self.config_path),
            profile=fresh.site.profile,
            applied=applied,
        )
        if later:
            log.warning(
                "config_reload_needs_restart",
                path=str(self.config_path),
                keys=later,
                reason="read at start only: the running daemon keeps the old values until "
                "it is restarted",
            )


# Unknown ?queue= names logged (each once), and how much of one is shown.
_UNKNOWN_QUEUES_NAMED = 100
_UNKNOWN_QUEUE_SHOWN = 64


# A reload applies these at once (every call's standards at its next event, and the
# hooks'); every other key is read at start: connections, binds, store, agents, prompts.
_LIVE_KEYS = ("standards.", "queues.", "dialed.")
_AT_START_TOO = (
    "standards.callbacks.",
    "standards.amd.",
    "standards.flags.",
    # The route hook's deadline is the FastAGI / outbound-socket servers' for that hook.
    "standards.night_routing.deadline_ms",
)
_PHRASING_KEYS = frozenset({"site.profile", "site.company_name"})


def changed_keys(old: Config, new: Config) -> list[str]:
    """The dotted keys whose value differs between ``old`` and ``new`` (a queue or dialled
    number layer added or removed: each of its keys)."""
    before = _leaves(old.model_dump(mode="json"))
    after = _leaves(new.model_dump(mode="json"))
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):  # an empty table has no leaves: it changes nothing
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


_SCHEDULER_STOP_S = 10.0
# How often the daemon compares its clock with the host's (``_watch_wall_clock``).
_WALL_CHECK_S = 10.0
# The whole stop, and the least any one step of it gets once the budget is spent.
_STOP_BUDGET_S = 12.0
_STOP_STEP_MIN_S = 0.5


def _step_name(closer: Callable[[], Any]) -> str:
    return str(getattr(closer, "__qualname__", "?"))


def tune_garbage_collector() -> None:
    """Keep the collector's pauses out of the calls' timing.

    Measured (BENCHMARKS.md): full collections of up to 200 ms stalled the event loop under
    load, enough to push a prompt far past its instant. Everything built at start-up (modules,
    configuration, the compiled profiles) lives as long as the process: ``freeze`` takes it
    out of every later collection. Young collections then run on larger batches, and full
    ones far less often; the per-call objects are short-lived and mostly freed by reference
    counting anyway. Called by ``pbx-agent run`` once the daemon has started (process-wide,
    so not by the daemon itself: tests start many daemons in one process).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)


async def _callback_in_shadow(command: Any, call: Any) -> None:
    """Shadow mode's handler for ``RequestCallback`` / ``CancelCallbacks``: say, write nothing."""
    log.info(
        "callback_shadow",
        action=action_name(command),
        call_id=getattr(call, "id", None),
        number=getattr(command, "number", ""),
        reason="shadow mode: no callback job is written or cancelled",
    )


def _scheduler_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("callback_scheduler_failed", error=repr(task.exception()))

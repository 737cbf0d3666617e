"""The Asterisk adapter: AMI events in, neutral events to the engine; neutral commands out,
AMI actions to the switch.

How each neutral command is carried out (and why), all measured on Asterisk 22 (traces 03–08):

- ``PlayPrompt`` — AMI has no "play a file to a channel" action. A ``Local`` channel is
  originated into the whisper context: its ``;2`` half runs ``ChanSpy(<target>,qwE)`` (only
  the target's party hears: ``LEG``) or ``ChanSpy(<target>,qBE)`` (barge: both parties hear:
  ``BOTH``), its ``;1`` half plays the prompt. When the playback ends the Local channel hangs
  up; that hang-up is reported as ``PromptFinished``. A prompt for a leg that is on hold is
  handed to the leg's hold program instead (a spy would stop the hold music, trace 04a).
- ``StartHoldProgram`` — one whisper channel per held leg carries the whole hold audio: its
  ``;1`` half runs the ``hold_program`` FastAGI hook, which plays announcements and music
  segments in turn (``MusicOnHold()`` inside a whisper is not heard, trace 04e).
  ``StopHoldProgram`` hangs that channel up, so nothing of it plays after Unhold.
- ``HangupLeg``/``HangupCall`` → ``Hangup`` with the Q.850 cause; ``Redirect`` → ``Setvar`` of
  the parameters, then ``Redirect`` to the configured context; ``SetVariable`` → ``Setvar``;
  ``AlertAgent`` → ``UserEvent: PbxAgentAlert`` (for the agent desktop) plus a whisper to the
  agent's leg; ``StartRecording`` → ``MixMonitor`` on the caller's channel.

Every value that can come from a caller goes through the AMI encoder (which refuses CR/LF/NUL)
and, where Asterisk splits arguments, through ``dialplan_arg``. In shadow mode every action is
built exactly as it would be sent and logged (``shadow_action``) instead of being sent; reads
(``CoreShowChannels``, ``Ping``) are still sent.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from pbx_agent.errors import PbxActionFailed, PbxAgentError, UnsafeValueError
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.calls import Call
from pbx_agent.model.events import LegId
from pbx_agent.pbx.ami_client import AmiClient, AmiSettings
from pbx_agent.pbx.ami_permissions import (
    is_originate_forbidden,
    is_permission_denied,
    missing_class_advice,
    originate_forbidden_advice,
)
from pbx_agent.pbx.asterisk_events import AsteriskTranslator, agents_from_queue_status
from pbx_agent.pbx.asterisk_version import WhisperSupport, whisper_verdict
from pbx_agent.pbx.resync import ResyncNotes, agents_unidentified
from pbx_agent.pbx.tasks import ActionTasks
from pbx_agent.wire.ami import AmiMessage
from pbx_agent.wire.escaping import dialplan_arg, printable

log = structlog.get_logger("pbx_agent.asterisk")

Fields = list[tuple[str, str]]
_E164 = re.compile(r"^\+?[0-9]{3,20}$")


@dataclass(frozen=True, slots=True)
class DialplanTarget:
    context: str
    exten: str = "s"
    priority: str = "1"


@dataclass(frozen=True, slots=True)
class AsteriskOptions:
    """What the adapter needs from the configuration (built by the composition root)."""

    sounds: Callable[[str], str]  # prompt key → the sound name Asterisk plays
    whisper_context: str = "pbxagent-whisper"
    hold_context: str = "pbxagent-hold"
    callback_context: str = "pbxagent-callback"
    agi_url: str = "agi://127.0.0.1:4573"
    targets: dict[str, DialplanTarget] = field(default_factory=dict)
    callback_channel: str = "PJSIP/{number}@trunk"
    callback_caller_id: str = '"Call centre" <0>'
    talk_detect: str = "ami"  # "ami": the daemon sets TALK_DETECT; "dialplan": the dialplan does
    talk_detect_silence_ms: int = 300
    talk_detect_threshold: int = 128
    recording_dir: str = "/var/spool/asterisk/monitor/pbx-agent"
    watched_variables: frozenset[str] = frozenset()
    helper_timeout_ms: int = 10_000


@dataclass(slots=True)
class HoldProgram:
    """A running hold program: what the ``hold_program`` FastAGI hook plays."""

    id: str
    leg: LegId
    channel: str
    command: cmd.StartHoldProgram
    helper_id: str
    channel_name: str = ""
    # The held channel's music on hold class: the command's, or what MusicOnHoldStart
    # reports for the held leg once the program runs (it follows Hold by < 1 ms, trace 04a).
    music_class: str = ""
    injected: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.music_class = self.music_class or self.command.music_class


@dataclass(slots=True)
class _Whisper:
    leg: LegId
    prompt: str
    # Playback's PLAYBACKSTATUS on the helper when it was not SUCCESS (a missing sound file):
    # the helper still ends normally, so its end alone does not say the prompt was heard.
    failed: str | None = None


class AsteriskAdapter:
    """One Asterisk switch. ``handle_event`` receives the engine's ``handle``."""

    def __init__(
        self,
        settings: AmiSettings,
        options: AsteriskOptions,
        *,
        handle_event: Callable[[ev.PbxEvent], None],
        shadow: bool = False,
        name: str = "asterisk",
    ) -> None:
        self.options = options
        self.name = name
        self.shadow = shadow
        self._handle = handle_event
        self.translator = AsteriskTranslator(
            # Set by the daemon or, in "dialplan" mode, by the site with the same value.
            talk_detect_silence_ms=options.talk_detect_silence_ms,
            watched_variables=options.watched_variables,
            pbx=name,
        )
        self.client = AmiClient(
            settings,
            on_event=self._on_ami_event,
            on_connected=self._resync,
            on_disconnected=self._on_disconnected,
            name=name,
        )
        self.hold_programs: dict[str, HoldProgram] = {}
        self._programs_by_leg: dict[LegId, HoldProgram] = {}
        self._whispers: dict[str, _Whisper] = {}
        # The events that arrive while the channel list is awaited (they may be newer).
        self._resync_notes = ResyncNotes()
        self._tasks = ActionTasks(self.name)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self._tasks.close()
        await self.client.close()

    # -- events in ------------------------------------------------------------------------------

    def _on_ami_event(self, message: AmiMessage) -> None:
        if message.name == "VarSet" and message.get("Variable") == "PLAYBACKSTATUS":
            self._playback_status(message)
        self._dispatch(self.translator.feed(message))

    def _dispatch(self, events: list[ev.PbxEvent]) -> None:
        for event in events:
            self._resync_notes.note(event)
            if isinstance(event, ev.LegHungUp):
                self._helper_gone(event.leg)
            if isinstance(event, ev.OriginateOutcome) and (
                event.request in self._whispers or event.request in self.hold_programs
            ):
                self._helper_originated(event)
                continue
            if isinstance(event, ev.LegCreated) and event.leg in self.hold_programs:
                self.hold_programs[event.leg].channel_name = event.channel
            if isinstance(event, ev.MusicOnHoldStarted) and event.music_class:
                held = self._programs_by_leg.get(event.leg)
                if held is not None:
                    held.music_class = event.music_class
            self._handle(event)

    def _playback_status(self, message: AmiMessage) -> None:
        whisper = self._whispers.get(LegId(message.get("Uniqueid") or ""))
        status = message.get("Value") or ""
        if whisper is not None and status != "SUCCESS":
            whisper.failed = status or "(empty)"

    def _helper_gone(self, leg: LegId) -> None:
        whisper = self._whispers.pop(leg, None)
        if whisper is not None:
            if whisper.failed is not None:
                log.warning(
                    "prompt_failed",
                    pbx=self.name,
                    leg=whisper.leg,
                    prompt=whisper.prompt,
                    reason=f"Playback ended with PLAYBACKSTATUS={whisper.failed} "
                    f"(is the sound file {self.options.sounds(whisper.prompt)} on the switch?)",
                )
            ok = whisper.failed is None
            self._handle(ev.PromptFinished(whisper.leg, whisper.prompt, ok=ok))
        program = self.hold_programs.get(leg)
        if program is not None:
            # Gone although nobody stopped it: tell the policy, the held party may hear silence.
            self._forget_program(program)
            self._handle(ev.PromptFinished(program.leg, cmd.HOLD_PROGRAM_PROMPT, ok=False))

    def _helper_originated(self, outcome: ev.OriginateOutcome) -> None:
        if outcome.outcome == "answered":
            return
        whisper = self._whispers.pop(outcome.request, None)
        if whisper is not None:
            log.warning(
                "prompt_failed",
                pbx=self.name,
                leg=whisper.leg,
                prompt=whisper.prompt,
                reason=outcome.cause_text or outcome.outcome,
            )
            self._handle(ev.PromptFinished(whisper.leg, whisper.prompt, ok=False))
        program = self.hold_programs.get(outcome.request)
        if program is not None:
            log.warning(
                "hold_program_failed",
                pbx=self.name,
                leg=program.leg,
                reason=outcome.cause_text or outcome.outcome,
            )
            self._forget_program(program)
            self._handle(ev.PromptFinished(program.leg, cmd.HOLD_PROGRAM_PROMPT, ok=False))

    async def _resync(self) -> None:
        """After (re)login: tell the engine exactly which legs are alive now.

        The list is a snapshot; the events that arrive while it is awaited are applied to
        the model at once and may be newer than it (a call that arrived, a bridge formed
        or a hang-up right behind the list): they win over the list. Then what the daemon
        tracks of its own channels is matched with the list: a prompt or hold program whose
        helper channel ended while the link was down is finished, a callback attempt the
        list shows Up was answered (its OriginateResponse was lost with the link), and the
        channels the switch no longer has are forgotten."""
        self._resync_notes.begin()
        before = self.translator.known_ids()
        helpers_before = {*self._whispers, *self.hold_programs}
        try:
            response, items = await self.client.send_list("CoreShowChannels")
            if response.name.lower() != "success":
                raise PbxActionFailed("CoreShowChannels", response.get("Message") or "")
            legs = self._resync_notes.correct(
                {
                    item.get("Uniqueid") or "": self.translator.live_leg(item)
                    for item in items
                    if item.name == "CoreShowChannel"
                }
            )
        finally:
            self._resync_notes.end()
        log.info("pbx_resynced", pbx=self.name, live_legs=len(legs))
        self._handle(ev.PbxResynced(self.name, legs))
        alive = {str(live.created.leg): live.answered for live in legs}
        for helper in sorted(str(h) for h in helpers_before if str(h) not in alive):
            self._helper_gone(LegId(helper))
        self._dispatch(self.translator.resynced(alive, before))
        await self._identify_agents(legs, before)
        self._handle(ev.PbxConnectionChanged(self.name, connected=True))
        await self._check_version()

    async def _identify_agents(self, legs: Sequence[ev.LiveLeg], before: set[str]) -> None:
        """The queue members behind the bridged legs this resync found (their AgentConnect
        was never seen): named and with their queue, as the live path names them. Never
        fatal: without the list they stay named by their endpoint (``agents_unidentified``)."""
        unseen = {str(live.created.leg) for live in legs if live.bridge} - before
        if not unseen:
            return
        try:
            response, items = await self.client.send_list("QueueStatus")
            if response.name.lower() != "success":
                raise PbxActionFailed("QueueStatus", response.get("Message") or "")
        except PbxAgentError as exc:
            agents_unidentified(self.name, len(unseen), f"QueueStatus: {exc}")
            return
        self._dispatch(list[ev.PbxEvent](agents_from_queue_status(legs, items, unseen)))

    async def _check_version(self) -> None:
        """Say which Asterisk this is and whether its whispers reach a silent channel
        (``asterisk_version``). Never fatal: the daemon serves calls whatever it learns."""
        try:
            response = await self.client.send_action("CoreSettings", [])
        except PbxAgentError as exc:
            log.warning("asterisk_version_unknown", pbx=self.name, reason=str(exc))
            return
        if response.name.lower() != "success":
            reason = printable(response.get("Message") or response.name)
            log.warning("asterisk_version_unknown", pbx=self.name, reason=reason)
            return
        verdict = whisper_verdict(response.get("AsteriskVersion") or "")
        report = log.warning if verdict.whisper is WhisperSupport.TOO_OLD else log.info
        report(
            "asterisk_version",
            pbx=self.name,
            version=printable(verdict.version),
            whisper=str(verdict.whisper),
            reason=verdict.reason,
        )

    def _on_disconnected(self, reason: str) -> None:
        self._handle(ev.PbxConnectionChanged(self.name, connected=False, reason=reason))

    # -- sending --------------------------------------------------------------------------------

    async def _act(
        self, action: str, fields: Fields, *, call_id: str | None = None, measures: bool = False
    ) -> AmiMessage | None:
        """Send an action that changes a call (or only log it in shadow mode). ``measures``:
        the action only lets the daemon observe (talk detection) and changes nothing anyone
        hears, so it is sent in shadow mode too: without it the shadow's decisions would be
        taken deaf, not as they would be."""
        if self.shadow and not measures:
            log.info(
                "shadow_action",
                pbx=self.name,
                call_id=call_id,
                ami_action=action,
                fields=[(k, printable(v)) for k, v in fields if k != "Secret"],
            )
            return None
        response = await self.client.send_action(action, fields)
        if response.name.lower() != "success":
            message = response.get("Message") or response.name
            username = self.client.settings.username
            if is_permission_denied(message):
                # Say which manager.conf class is missing, not only that Asterisk refused.
                message = missing_class_advice(action, username)
                log.error("ami_permission_denied", pbx=self.name, ami_action=action, error=message)
            elif action == "Originate" and is_originate_forbidden(message):
                application = next((v for k, v in fields if k == "Application"), "")
                message = originate_forbidden_advice(application, username, message)
                log.error("ami_permission_denied", pbx=self.name, ami_action=action, error=message)
            raise PbxActionFailed(action, message)
        return response

    # -- commands -------------------------------------------------------------------------------

    async def execute(self, command: cmd.PbxCommand, call: Call) -> str:  # noqa: C901, PLR0911
        match command:
            case cmd.PlayPrompt():
                return await self._play(command, call)
            case cmd.StartHoldProgram():
                return await self._start_hold_program(command, call)
            case cmd.StopHoldProgram():
                return await self._stop_hold_program(command.leg, call.id)
            case cmd.HangupLeg():
                channel = self._channel(call, command.leg)
                return await self._hangup(channel, command.cause, call.id)
            case cmd.HangupCall():
                channels = [leg.channel for leg in call.parties() if leg.alive]
                for channel in channels:
                    await self._hangup(channel, command.cause, call.id)
                return f"hung up {len(channels)} legs with cause {command.cause}"
            case cmd.Redirect():
                return await self._redirect(command, call)
            case cmd.SetVariable():
                channel = self._channel(call, command.leg)
                await self._act(
                    "Setvar",
                    [
                        ("Channel", channel),
                        ("Variable", command.name),
                        ("Value", _safe_value(command.value)),
                    ],
                    call_id=call.id,
                )
                return f"set {command.name} on {channel}"
            case cmd.AlertAgent():
                return await self._alert(command, call)
            case cmd.StartRecording():
                return await self._record(call)
        msg = f"the Asterisk adapter cannot execute {type(command).__name__}"
        raise PbxAgentError(msg)

    async def hangup_unique_id(self, unique_id: str, *, cause: int) -> bool:
        """Hang up the channel whose Uniqueid is ``unique_id`` (a callback attempt's
        ChannelId); False when the switch has no such channel (gone, never created)."""
        found = self.translator.channels.get(unique_id)
        if found is None:
            return False
        await self._hangup(found.channel, cause, found.linkedid)
        return True

    async def _hangup(self, channel: str, cause: int, call_id: str) -> str:
        """Hang a channel up. One already gone (a bridged peer Asterisk hung up a moment
        earlier, a caller who just left) is what was wanted: not a failure."""
        try:
            await self._act(
                "Hangup", [("Channel", channel), ("Cause", str(cause))], call_id=call_id
            )
        except PbxActionFailed as exc:
            if "no such channel" not in exc.message.lower():
                raise
            return f"{channel} already gone"
        return f"hung up {channel} with cause {cause}"

    def _channel(self, call: Call, leg: LegId) -> str:
        found = call.legs.get(leg)
        if found is None:
            msg = f"leg {leg} is not part of call {call.id}"
            raise PbxAgentError(msg)
        return found.channel

    def _new_helper_ids(self, kind: str) -> tuple[str, str]:
        token = secrets.token_hex(6)
        return f"pbxagent-{kind}-{token}", f"pbxagent-{kind}-{token}-2"

    async def _originate_helper(
        self,
        *,
        kind: str,
        exten: str,
        context: str,
        target_channel: str,
        application: str,
        data: str,
        call_id: str,
    ) -> str:
        first, second = self._new_helper_ids(kind)
        self.translator.expect_origination(first, first, "helper")
        self.translator.expect_helper(second)
        fields: Fields = [
            ("Channel", f"Local/{exten}@{context}/n"),
            ("Application", application),
            ("Data", data),
            ("Variable", f"PBXAGENT_SPY_TARGET={dialplan_arg(target_channel)}"),
            ("Async", "true"),
            ("CallerID", '"pbx-agent" <0>'),
            ("Timeout", str(self.options.helper_timeout_ms)),
            ("ChannelId", first),
            ("OtherChannelId", second),
        ]
        await self._act("Originate", fields, call_id=call_id)
        return first

    async def _play(self, command: cmd.PlayPrompt, call: Call) -> str:
        program = self._programs_by_leg.get(command.leg)
        if program is not None:
            program.injected.put_nowait(command.prompt)
            return f"handed {command.prompt} to hold program {program.id}"
        channel = self._channel(call, command.leg)
        sound = self.options.sounds(command.prompt)
        exten = "barge" if command.audience is cmd.Audience.BOTH else "whisper"
        helper = await self._originate_helper(
            kind="prompt",
            exten=exten,
            context=self.options.whisper_context,
            target_channel=channel,
            application="Playback",
            data=dialplan_arg(sound),
            call_id=call.id,
        )
        if not self.shadow:
            self._whispers[helper] = _Whisper(command.leg, command.prompt)
        return f"{exten} {sound} to {channel} via {helper}"

    async def _start_hold_program(self, command: cmd.StartHoldProgram, call: Call) -> str:
        if command.leg in self._programs_by_leg:
            return "a hold program already runs for this leg"
        channel = self._channel(call, command.leg)
        program_id = secrets.token_hex(8)
        first, second = self._new_helper_ids("hold")
        program = HoldProgram(program_id, command.leg, channel, command, first)
        self.hold_programs[first] = program
        self._programs_by_leg[command.leg] = program
        self.translator.expect_origination(first, first, "helper")
        self.translator.expect_helper(second)
        fields: Fields = [
            ("Channel", f"Local/hold@{self.options.hold_context}/n"),
            ("Application", "AGI"),
            ("Data", f"{self.options.agi_url}/hold_program?program={program_id}"),
            ("Variable", f"PBXAGENT_SPY_TARGET={dialplan_arg(channel)}"),
            ("Async", "true"),
            ("CallerID", '"pbx-agent" <0>'),
            ("Timeout", str(self.options.helper_timeout_ms)),
            ("ChannelId", first),
            ("OtherChannelId", second),
        ]
        try:
            await self._act("Originate", fields, call_id=call.id)
        except PbxAgentError:
            # Refused or unanswered: as good as a program that ended at once, so the policy
            # may start another (the held party still hears the switch's own music).
            self._forget_program(program)
            self._handle(ev.PromptFinished(program.leg, cmd.HOLD_PROGRAM_PROMPT, ok=False))
            raise
        except BaseException:
            self._forget_program(program)
            raise
        return f"hold program {program_id} for {channel} via {first}"

    def program(self, program_id: str) -> HoldProgram | None:
        """The hold program a ``hold_program`` FastAGI session was started for."""
        return next((p for p in self.hold_programs.values() if p.id == program_id), None)

    async def _stop_hold_program(self, leg: LegId, call_id: str) -> str:
        program = self._programs_by_leg.get(leg)
        if program is None:
            return "no hold program runs for this leg"
        self._forget_program(program)
        await self._act(
            "Hangup", [("Channel", program.channel_name or program.helper_id)], call_id=call_id
        )
        return f"hold program {program.id} stopped"

    def _forget_program(self, program: HoldProgram) -> None:
        program.stopped.set()
        self.hold_programs.pop(program.helper_id, None)
        if self._programs_by_leg.get(program.leg) is program:
            del self._programs_by_leg[program.leg]

    async def _redirect(self, command: cmd.Redirect, call: Call) -> str:
        target = self.options.targets.get(command.target)
        if target is None:
            msg = f"no dialplan target named {command.target!r} is configured (asterisk.targets)"
            raise PbxAgentError(msg)
        channel = self._channel(call, command.leg)
        for name, value in command.params:
            await self._act(
                "Setvar",
                [("Channel", channel), ("Variable", name), ("Value", _safe_value(value))],
                call_id=call.id,
            )
        await self._act(
            "Redirect",
            [
                ("Channel", channel),
                ("Context", target.context),
                ("Exten", target.exten),
                ("Priority", target.priority),
            ],
            call_id=call.id,
        )
        return f"redirected {channel} to {target.context},{target.exten},{target.priority}"

    async def _alert(self, command: cmd.AlertAgent, call: Call) -> str:
        channel = self._channel(call, command.leg)
        # Every value can come from outside (the agent's name from a queue MemberName or
        # PBXAGENT_AGENT, a caller's number in the fields): a CR/LF in one is made visible,
        # so the alert is still sent instead of the encoder refusing the whole action.
        fields: Fields = [
            ("UserEvent", "PbxAgentAlert"),
            ("Alert", _safe_value(command.alert)),
            ("Channel", _safe_value(channel)),
            ("CallId", _safe_value(call.id)),
            ("Agent", _safe_value(call.agent_id or "")),
        ]
        fields.extend((name, _safe_value(value)) for name, value in command.fields)
        await self._act("UserEvent", fields, call_id=call.id)
        if command.prompt is not None:
            await self._play(cmd.PlayPrompt(command.leg, command.prompt, cmd.Audience.LEG), call)
        return f"alerted agent on {channel}: {command.alert}"

    async def _record(self, call: Call) -> str:
        caller = call.caller_leg
        if caller is None:
            msg = "the call has no caller leg to record"
            raise PbxAgentError(msg)
        path = f"{self.options.recording_dir}/{_file_safe(call.id)}.wav"
        await self._act(
            "MixMonitor",
            [("Channel", caller.channel), ("File", path), ("Options", "b")],
            call_id=call.id,
        )
        return f"recording to {path}"

    # -- talk detection -----------------------------------------------------------------------

    def enable_talk_detection(self, channels: Sequence[str]) -> None:
        """Set ``TALK_DETECT`` on these channels (AMI ``Setvar``; trace 03b)."""
        if self.options.talk_detect != "ami":
            return
        value = f"{self.options.talk_detect_silence_ms},{self.options.talk_detect_threshold}"
        for channel in channels:
            self._spawn(
                self._act(
                    "Setvar",
                    [("Channel", channel), ("Variable", "TALK_DETECT(set)"), ("Value", value)],
                    measures=True,
                ),
                "talk-detect",
            )

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.spawn(coro, name)

    # -- callbacks (the Dialer of the callback service) -----------------------------------------

    async def originate_callback(
        self,
        *,
        request_id: str,
        number: str,
        ring_time_s: float,
        variables: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Place one callback attempt. ``request_id`` becomes the channel's Uniqueid."""
        if not _E164.match(number):
            msg = f"refusing to dial {printable(number)!r}: not a normalised number"
            raise UnsafeValueError(msg)
        dial = self.options.callback_channel.format(number=number.lstrip("+"), e164=number)
        self.translator.expect_origination(request_id, request_id, "callback", callee=number)
        fields: Fields = [
            ("Channel", dial),
            ("Context", self.options.callback_context),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Async", "true"),
            ("Timeout", str(int(ring_time_s * 1000))),
            ("CallerID", self.options.callback_caller_id),
            ("ChannelId", request_id),
            ("Variable", f"PBXAGENT_CALLBACK_ID={dialplan_arg(request_id)}"),
        ]
        fields.extend(("Variable", f"{name}={dialplan_arg(value)}") for name, value in variables)
        await self._act("Originate", fields, call_id=request_id)

    async def set_variable(self, channel: str, name: str, value: str) -> None:
        """AMI ``Setvar`` on ``channel`` (its name, or its Uniqueid: a callback attempt's
        request id), outside any call the engine tracks: the callback dialer's verdicts."""
        await self._act(
            "Setvar",
            [("Channel", channel), ("Variable", name), ("Value", _safe_value(value))],
            call_id=channel,
        )


def _safe_value(value: str) -> str:
    """A variable value with any CR/LF/NUL made visible instead of breaking the action."""
    if any(ch in value for ch in "\r\n\x00"):
        return printable(value)
    return value


def _file_safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)

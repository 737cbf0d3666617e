"""The FreeSWITCH adapter: ESL events in, neutral events to the engine; neutral commands out,
``uuid_*`` API calls to the switch.

How each neutral command is carried out (and why), from FreeSWITCH 1.10.12 (traces 02-07 in
``tests/traces/freeswitch``; the full argument is in ``docs/freeswitch.md``):

- Hold programs. FreeSWITCH plays the held party's music itself: when a phone holds, the
  *other* leg runs ``playback <hold_music>`` (~160 ms after ``CHANNEL_HOLD``) as a looping
  broadcast, and ``CHANNEL_UNHOLD`` stops it. The daemon leaves that music alone and puts
  the announcements *over* it with ``uuid_displace <held> start <file> 0``: a media bug on
  the held leg's write path that replaces what the leg hears for the file's length, after
  which the music (still running underneath) is heard again. It is not a broadcast, so the
  switch's bookkeeping of the hold music is untouched and unhold still stops it. A second
  ``uuid_broadcast`` to the leg that hears hold music is exactly what breaks that
  bookkeeping (trace 03b: the music never stops and both parties stay cut off), so the
  adapter never broadcasts to such a leg. Announcement times come from the daemon's clock;
  a prompt another rule sends to a held leg is displaced the same way, after the
  announcement in progress. ``StopHoldProgram`` cancels what is pending and stops a
  displacement still playing, so nothing of the program is heard after unhold.
- ``PlayPrompt`` to both parties: ``uuid_broadcast <leg> <file> both`` (both sessions play
  it; the end is the target leg's ``CHANNEL_EXECUTE_COMPLETE``). To one party alone:
  ``uuid_broadcast <leg> <file> aleg`` when the leg is not bridged to another party (a
  ``uuid_broadcast`` to one leg of a bridge leaves the other without any audio for the
  file's length, 03a); when it is, ``uuid_displace <leg> start <file> 0 mux``: the party
  hears the prompt over the conversation, like a whisper, and its end is the file's length.
- ``HangupLeg``/``HangupCall`` → ``uuid_kill`` with the cause name of the Q.850 number;
  ``Redirect`` → ``uuid_setvar`` of the parameters, then ``uuid_transfer`` to the configured
  extension; ``SetVariable`` → ``uuid_setvar``; ``AlertAgent`` → ``sendevent CUSTOM
  pbx_agent::alert`` (for the agent desktop) plus a whisper to the agent; ``StartRecording``
  → ``uuid_record <caller> start``.
- Callbacks: ``bgapi originate`` with ``origination_uuid`` = the attempt's request id and
  ``originate_timeout`` = the ring time (never under 30 s, R7); the outcome is the
  BACKGROUND_JOB (07a), the machine verdict the translator's (see ``freeswitch_events``).

Every caller-controlled value goes through the ESL encoders (which refuse CR/LF/NUL) and
``quote_api_arg``/``channel_variables``; a variable value with CR/LF/NUL is made visible
instead. In shadow mode every call-changing command is built exactly as it would be sent
and logged (``shadow_action``) instead of being sent; reads (``show channels``) are still
sent.

Invariants: at most one hold program per held leg; every task the adapter starts is owned
and cancelled by ``close()``; every timer runs on the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from pbx_agent.amd.detector import Verdict
from pbx_agent.errors import (
    ConfigError,
    PbxActionFailed,
    PbxAgentError,
    UnsafeValueError,
)
from pbx_agent.model import commands as cmd
from pbx_agent.model import events as ev
from pbx_agent.model.events import LegId
from pbx_agent.pbx.asterisk_hold import CueSchedule, read_wav_info
from pbx_agent.pbx.esl_client import EslClient, EslSettings
from pbx_agent.pbx.freeswitch_events import (
    DEFAULT_HOLD_MUSIC_PREFIXES,
    HELPER_VARIABLE,
    AwaitedPrompt,
    FreeswitchTranslator,
    agents_from_callcenter,
)
from pbx_agent.pbx.resync import ResyncNotes, agents_unidentified
from pbx_agent.pbx.tasks import ActionTasks
from pbx_agent.pbx.unicast_server import UnicastAudioServer, UnicastUnavailableError
from pbx_agent.policies.callbacks import FREESWITCH_CAUSES
from pbx_agent.wire.callcenter import parse_list
from pbx_agent.wire.escaping import printable
from pbx_agent.wire.esl import EslEvent, channel_variables, quote_api_arg
from pbx_agent.wire.unicast import UnicastProtocolError, parse_read_rate, unicast_headers

if TYPE_CHECKING:
    from pbx_agent.amd.params import DetectorParams
    from pbx_agent.clock import Clock, TimerHandle
    from pbx_agent.config import Config
    from pbx_agent.model.calls import Call

log = structlog.get_logger("pbx_agent.freeswitch")

_E164 = re.compile(r"^\+?[0-9]{3,20}$")
# R7: "each callback rings for more than 30 s".
MIN_RING_TIME_S = 31
# Assumed length of a prompt whose local copy cannot be read (the lab, a missing file).
DEFAULT_PROMPT_S = 3.0
# Q.850 number → FreeSWITCH cause name (the first name of each number).
CAUSE_NAMES: dict[int, str] = {}
for _name, _number in FREESWITCH_CAUSES.items():
    CAUSE_NAMES.setdefault(_number, _name)
# A repeated reminder this late is skipped when the next one is due too (as on Asterisk).
_CUE_SLACK_S = 0.05
# After a resync, a broadcast whose end was not seen is finished this long after its length
# has passed (its CHANNEL_EXECUTE_COMPLETE may have been lost with the link).
LOST_PROMPT_SLACK_S = 1.0


@dataclass(frozen=True, slots=True)
class FreeswitchTarget:
    """A dialplan extension the daemon transfers a leg to (``uuid_transfer``)."""

    extension: str
    context: str = "default"
    dialplan: str = "XML"


@dataclass(frozen=True, slots=True)
class FreeswitchOptions:
    """What the adapter needs from the configuration (built by the composition root)."""

    sounds: Callable[[str], str]  # prompt key → the file FreeSWITCH plays
    prompt_seconds: Callable[[str], float] = lambda _key: DEFAULT_PROMPT_S
    # FreeSWITCH's sounds directory ($${sounds_dir}): relative names are made absolute with
    # it, because ``uuid_displace ... stop`` finds a displacement by its absolute path.
    sounds_dir: str = "/usr/share/freeswitch/sounds"
    targets: Mapping[str, FreeswitchTarget] = field(default_factory=dict)
    callback_dial_string: str = "sofia/gateway/trunk/{number}"
    callback_caller_id_number: str = "0"
    callback_caller_id_name: str = "Call centre"
    callback_target: FreeswitchTarget = FreeswitchTarget("pbxagent_callback")
    callback_connect: FreeswitchTarget = FreeswitchTarget("pbxagent_callback_connect")
    # Machine detection on the leg's own audio (``unicast``): the extension that parks it,
    # the address the switch sends to and the switch's end (see ``attach_unicast``).
    callback_audio_target: FreeswitchTarget = FreeswitchTarget("pbxagent_callback_audio")
    unicast_address: str = "127.0.0.1"
    unicast_switch_ip: str = "127.0.0.1"
    recording_dir: str = "/var/lib/freeswitch/recordings/pbx-agent"
    # A callback leg whose far end sends no RTP for this long ends with MEDIA_TIMEOUT (07b).
    media_timeout_ms: int = 4000
    watched_variables: frozenset[str] = frozenset()
    talk_debounce_ms: int = 200
    notalk_lag_ms: int = 400
    hold_music_prefixes: tuple[str, ...] = DEFAULT_HOLD_MUSIC_PREFIXES
    bgapi_timeout_s: float = 5.0


@dataclass(slots=True)
class _Program:
    """A hold program on FreeSWITCH: announcements displaced over the switch's hold music."""

    id: str
    leg: LegId
    call_id: str
    command: cmd.StartHoldProgram
    schedule: CueSchedule
    index: int = 0
    injected: deque[str] = field(default_factory=deque)
    busy_until: float = 0.0
    playing: str | None = None  # the absolute path being displaced
    stopped: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class FreeswitchAdapter:
    """One FreeSWITCH switch. ``handle_event`` receives the engine's ``handle``."""

    def __init__(
        self,
        settings: EslSettings,
        options: FreeswitchOptions,
        *,
        handle_event: Callable[[ev.PbxEvent], None],
        clock: Clock,
        shadow: bool = False,
        name: str = "freeswitch",
    ) -> None:
        self.options = options
        self.name = name
        self.shadow = shadow
        self.clock = clock
        self._handle = handle_event
        self.translator = FreeswitchTranslator(
            watched_variables=options.watched_variables,
            pbx=name,
            talk_debounce_ms=options.talk_debounce_ms,
            notalk_lag_ms=options.notalk_lag_ms,
            hold_music_prefixes=options.hold_music_prefixes,
        )
        self.client = EslClient(
            settings,
            on_event=self._on_esl_event,
            on_connected=self._resync,
            on_disconnected=self._on_disconnected,
            name=name,
        )
        self.hold_programs: dict[LegId, _Program] = {}
        self._poll_at: float | None = None
        self._poll_timer: TimerHandle | None = None
        self._timers: set[TimerHandle] = set()
        self._tasks = ActionTasks(self.name)
        # What the events that arrive while ``show channels`` is awaited say: they may be
        # newer than its rows (the switch sends what it queued meanwhile right behind the
        # reply, and the rows come from its SQL table, which lags behind the events).
        self._resync_notes = ResyncNotes()
        # Callback legs judged on their audio: the receiver, and each leg's read rate once
        # it answered (None until then).
        self.unicast: UnicastAudioServer | None = None
        self._unicast_legs: dict[str, str | None] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        for program in list(self.hold_programs.values()):
            self._forget_program(program)
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        if self._poll_timer is not None:
            self._poll_timer.cancel()
        await self._tasks.close()
        await self.client.close()

    # -- events in ------------------------------------------------------------------------

    def _on_esl_event(self, event: EslEvent) -> None:
        if event.name == "CHANNEL_ANSWER":
            uid = event.unique_id or ""
            if uid in self._unicast_legs:
                self._unicast_legs[uid] = event.get("Channel-Read-Codec-Rate") or ""
            if self._resync_notes.active:
                # Noted here: the translator says nothing of a leg it does not know yet
                # (created while the link was down, found in the rows as still ringing).
                self._resync_notes.answered.add(uid)
        self._deliver(self.translator.feed(event, self.clock.now()))

    def _deliver(self, events: Sequence[ev.PbxEvent]) -> None:
        for event in events:
            self._resync_notes.note(event)
            if isinstance(event, ev.LegHungUp):
                program = self.hold_programs.get(event.leg)
                if program is not None:
                    self._forget_program(program)
                self._unicast_ended(event.leg)
            self._handle(event)
            if isinstance(event, ev.OriginateOutcome) and event.outcome != "answered":
                self._unicast_legs.pop(event.request, None)  # no leg may ever have existed
            if isinstance(event, ev.LegAnswered) and self._unicast_legs.get(event.leg) is not None:
                self._spawn(self._start_unicast(event.leg), f"unicast:{event.leg}")
        self._schedule_poll()

    def _schedule_poll(self) -> None:
        due = self.translator.next_deadline()
        if due is None or (self._poll_at is not None and self._poll_at <= due):
            return
        if self._poll_timer is not None:
            self._poll_timer.cancel()
        self._poll_at = due
        self._poll_timer = self.clock.call_at(due, self._poll)

    def _poll(self) -> None:
        self._poll_at = None
        self._poll_timer = None
        self._deliver(self.translator.poll(self.clock.now()))

    async def _resync(self) -> None:
        """After (re)connecting: tell the engine exactly which legs are alive now.

        The rows are a snapshot; the events that arrive while they are awaited are applied at
        once and may be newer (a call created, an answer, a bridge formed or ended, a hang-up
        right behind the reply): they win over the rows. Then what the daemon awaits of the
        switch is matched with them: a callback attempt listed answered was answered (its
        BACKGROUND_JOB was lost with the link), and a broadcast prompt whose end was not seen
        is finished once its length has passed (its CHANNEL_EXECUTE_COMPLETE may have been
        lost the same way)."""
        notes = self._resync_notes
        notes.begin()
        before = self.translator.known_originations()
        try:
            rows = await self.client.list_channels()
            rows = [r for r in rows if r.get("uuid") not in notes.gone]
            legs = self.translator.live_legs(
                rows, answered_since=notes.answered, bridges_since=notes.bridges
            )
            listed = {str(live.created.leg) for live in legs}
            for created in notes.created.values():
                live = self.translator.live_leg(created)
                if live is not None and str(created.leg) not in listed:
                    legs = (*legs, live)
            self.translator.forget_missing(str(live.created.leg) for live in legs)
        finally:
            notes.end()
            notes.created.clear()
        alive = {str(live.created.leg): live.answered for live in legs}
        for program in [p for p in self.hold_programs.values() if p.leg not in alive]:
            self._forget_program(program)
        log.info("pbx_resynced", pbx=self.name, live_legs=len(legs))
        self._handle(ev.PbxResynced(self.name, legs))
        self._deliver(self.translator.resynced_originations(alive, before))
        self._finish_lost_prompts()
        await self._identify_agents(legs)
        self._handle(ev.PbxConnectionChanged(self.name, connected=True))

    async def _identify_agents(self, legs: Sequence[ev.LiveLeg]) -> None:
        """The mod_callcenter agents behind the bridged legs this resync found (their
        bridge-agent-start was never seen): named and with their queue, as the live path
        names them. Never fatal: without the lists (no mod_callcenter, a refusal, an odd
        answer) they stay named by their device (``agents_unidentified``)."""
        unseen = {
            str(live.created.leg)
            for live in legs
            if live.bridge and str(live.created.leg) not in self.translator.named_agents
        }
        if not unseen:
            return
        try:
            agents = parse_list(
                await self.client.api("callcenter_config agent list"), loose="contact"
            )
            tiers = parse_list(await self.client.api("callcenter_config tier list"))
        except PbxAgentError as exc:
            agents_unidentified(self.name, len(unseen), f"callcenter_config: {exc}")
            return
        if agents.skipped or tiers.skipped:
            log.warning(
                "callcenter_rows_unreadable",
                pbx=self.name,
                agents=agents.skipped,
                tiers=tiers.skipped,
                note="rows with a line feed in a value are skipped",
            )
        # Legs that hung up while the lists were awaited are left out (their events came).
        alive = self.translator.legs
        found = [
            e
            for e in agents_from_callcenter(legs, agents.rows, tiers.rows, unseen)
            if all(
                (state := alive.get(str(leg))) is not None and not state.hung_up
                for leg in (e.agent_leg, e.caller_leg)
            )
        ]
        self.translator.named_agents.update(str(e.agent_leg) for e in found)
        self._deliver(found)

    def _finish_lost_prompts(self) -> None:
        """Each broadcast still awaited after a resync is finished once its length (and a
        slack) has passed, unless its CHANNEL_EXECUTE_COMPLETE comes first."""
        now = self.clock.now()
        for awaited in self.translator.awaited_prompts():
            ends_at = (awaited.ends_at if awaited.ends_at is not None else now) + (
                LOST_PROMPT_SLACK_S
            )
            self._later(max(now, ends_at), functools.partial(self._prompt_end_lost, awaited))

    def _prompt_end_lost(self, awaited: AwaitedPrompt) -> None:
        self._deliver(self.translator.prompt_end_lost(awaited))

    def _on_disconnected(self, reason: str) -> None:
        self._handle(ev.PbxConnectionChanged(self.name, connected=False, reason=reason))

    # -- sending --------------------------------------------------------------------------

    async def api(self, command: str, *, call_id: str | None = None) -> str:
        """An ``api`` command that changes a call (only logged in shadow mode)."""
        if self.shadow:
            log.info("shadow_action", pbx=self.name, call_id=call_id, esl=printable(command))
            return "+OK (shadow)"
        return await self.client.api(command)

    async def kill_attempt(self, request_id: str) -> str:
        """Hang up a callback attempt's leg (``origination_uuid`` = the request id); one
        already gone is not a failure. Only a plain UUID reaches the command line."""
        if not _LEG_UUID.match(request_id):
            return f"{printable(request_id)} is no attempt id"
        return await self._kill(request_id, 16, None)

    async def _kill(self, uuid: str, cause: int, call_id: str | None) -> str:
        name = CAUSE_NAMES.get(cause, "NORMAL_CLEARING")
        try:
            await self.api(f"uuid_kill {uuid} {name}", call_id=call_id)
        except PbxActionFailed as exc:
            if "no such channel" not in exc.message.lower():
                raise
            return f"{uuid} already gone"
        return f"hung up {uuid} with {name}"

    # -- commands -------------------------------------------------------------------------

    async def execute(self, command: cmd.PbxCommand, call: Call) -> str:  # noqa: C901, PLR0911
        match command:
            case cmd.PlayPrompt():
                return await self._play(command, call)
            case cmd.StartHoldProgram():
                return self._start_hold_program(command, call)
            case cmd.StopHoldProgram():
                return await self._stop_hold_program(command.leg, call.id)
            case cmd.HangupLeg():
                return await self._kill(self._uuid(call, command.leg), command.cause, call.id)
            case cmd.HangupCall():
                legs = [leg.id for leg in call.parties() if leg.alive]
                for leg in legs:
                    await self._kill(leg, command.cause, call.id)
                return f"hung up {len(legs)} legs with cause {command.cause}"
            case cmd.Redirect():
                return await self._redirect(command, call)
            case cmd.SetVariable():
                uuid = self._uuid(call, command.leg)
                await self.set_variable(uuid, command.name, command.value, call_id=call.id)
                return f"set {command.name} on {uuid}"
            case cmd.AlertAgent():
                return await self._alert(command, call)
            case cmd.StartRecording():
                return await self._record(call)
        msg = f"the FreeSWITCH adapter cannot execute {type(command).__name__}"
        raise PbxAgentError(msg)

    def _uuid(self, call: Call, leg: LegId) -> str:
        if leg not in call.legs:
            msg = f"leg {leg} is not part of call {call.id}"
            raise PbxAgentError(msg)
        return str(leg)

    def sound_path(self, prompt: str) -> str:
        """The file FreeSWITCH plays for ``prompt``, absolute (displacements are found by it)."""
        name = self.options.sounds(prompt)
        if name.startswith("/") or "://" in name:
            return name
        return f"{self.options.sounds_dir.rstrip('/')}/{name}"

    async def set_variable(
        self, uuid: str, name: str, value: str, *, call_id: str | None = None
    ) -> None:
        await self.api(
            f"uuid_setvar {uuid} {quote_api_arg(name)} {quote_api_arg(_safe_value(value))}",
            call_id=call_id,
        )

    async def transfer(
        self, uuid: str, target: FreeswitchTarget, *, call_id: str | None = None
    ) -> None:
        await self.api(
            f"uuid_transfer {uuid} {quote_api_arg(target.extension)} "
            f"{quote_api_arg(target.dialplan)} {quote_api_arg(target.context)}",
            call_id=call_id,
        )

    async def kill(self, uuid: str, cause: int = 16, *, call_id: str | None = None) -> str:
        return await self._kill(uuid, cause, call_id)

    # -- prompts ----------------------------------------------------------------------------

    async def _play(self, command: cmd.PlayPrompt, call: Call) -> str:
        uuid = self._uuid(call, command.leg)
        program = self.hold_programs.get(command.leg)
        if program is not None:
            program.injected.append(command.prompt)
            program.wake.set()
            return f"handed {command.prompt} to hold program {program.id}"
        path = self.sound_path(command.prompt)
        translator = self.translator
        if translator.hears_hold_music(uuid):
            # Never a broadcast to the leg hearing hold music (trace 03b).
            await self._displace(command.leg, command.prompt, path, mux=False, call_id=call.id)
            return f"displaced {path} over the hold music of {uuid}"
        peer = translator.peer_of(uuid)
        both = (
            command.audience is cmd.Audience.BOTH
            and translator.bridged_to_party(uuid)
            and not (peer is not None and translator.hears_hold_music(peer))
        )
        if peer is not None and (
            command.audience is cmd.Audience.LEG or (both and command.answerable)
        ):
            # A broadcast to a bridged leg stops what the bridge carries from it (03a): its
            # party's answer would reach neither the agent nor the talk detector (on the
            # agent's leg, or the listener's). Displaced over the conversation instead.
            await self._displace(command.leg, command.prompt, path, mux=True, call_id=call.id)
            return f"displaced {path} over the conversation to {uuid}"
        legs = "both" if both else "aleg"
        ends_at = self.clock.now() + max(0.1, self.options.prompt_seconds(command.prompt))
        translator.expect_prompt(uuid, path, command.prompt, ends_at=ends_at)
        try:
            await self.api(f"uuid_broadcast {uuid} {quote_api_arg(path)} {legs}", call_id=call.id)
        except BaseException:
            translator.forget_prompt(uuid, path, command.prompt)
            raise
        if self.shadow:
            translator.forget_prompt(uuid, path, command.prompt)
        return f"broadcast {path} to {uuid} ({legs})"

    async def _displace(
        self,
        leg: LegId,
        prompt: str,
        path: str,
        *,
        mux: bool,
        call_id: str | None,
        report: bool = True,
    ) -> float:
        """Displace ``path`` on ``leg`` now; with ``report``, ``PromptFinished`` when its
        length has passed (a hold program's own announcements are not reported, as on
        Asterisk). Returns when it will end."""
        seconds = max(0.1, self.options.prompt_seconds(prompt))
        flags = " mux" if mux else ""
        try:
            await self.api(
                f"uuid_displace {leg} start {quote_api_arg(path)} 0{flags}", call_id=call_id
            )
        except PbxActionFailed:
            if report:
                self._handle(ev.PromptFinished(leg, prompt, ok=False))
            raise
        end = self.clock.now() + seconds
        self.translator.switch_audio(str(leg), end)
        if report and not self.shadow:  # as on Asterisk: nothing played, nothing reported
            self._later(end, lambda: self._handle(ev.PromptFinished(leg, prompt, ok=True)))
        return end

    def _later(self, when: float, callback: Callable[[], None]) -> None:
        handle: list[TimerHandle] = []

        def fire() -> None:
            self._timers.discard(handle[0])
            callback()

        handle.append(self.clock.call_at(when, fire))
        self._timers.add(handle[0])

    # -- hold programs ------------------------------------------------------------------------

    def _start_hold_program(self, command: cmd.StartHoldProgram, call: Call) -> str:
        uuid = self._uuid(call, command.leg)
        if command.leg in self.hold_programs:
            return "a hold program already runs for this leg"
        program = _Program(
            id=secrets.token_hex(8),
            leg=command.leg,
            call_id=call.id,
            command=command,
            schedule=CueSchedule(command),
        )
        self.hold_programs[command.leg] = program
        program.task = self._spawn(self._run_program(program), f"hold-program:{uuid}")
        return f"hold program {program.id} for {uuid}: announcements over the switch's music"

    async def _stop_hold_program(self, leg: LegId, call_id: str) -> str:
        program = self.hold_programs.get(leg)
        if program is None:
            return "no hold program runs for this leg"
        playing = program.playing if program.busy_until > self.clock.now() else None
        self._forget_program(program)
        if playing is not None:
            # The announcement in progress must not be heard over the agent.
            with contextlib.suppress(PbxActionFailed):
                await self.api(
                    f"uuid_displace {leg} stop {quote_api_arg(playing)}", call_id=call_id
                )
        return f"hold program {program.id} stopped"

    def program_for(self, leg: LegId) -> _Program | None:
        """The hold program running for the held ``leg``, if any."""
        return self.hold_programs.get(leg)

    def program(self, program_id: str) -> None:
        """No ``hold_program`` dialplan hook runs on FreeSWITCH (the programs are displaced by
        the adapter itself): a session asking for one finds nothing."""
        del program_id

    def _forget_program(self, program: _Program) -> None:
        program.stopped = True
        program.wake.set()
        if self.hold_programs.get(program.leg) is program:
            del self.hold_programs[program.leg]

    async def _run_program(self, program: _Program) -> None:
        fields = {"program": program.id, "leg": program.leg, "call_id": program.call_id}
        log.info("hold_program_started", mechanism="uuid_displace", **fields)
        try:
            while not program.stopped:
                now = self.clock.now()
                if program.busy_until > now:
                    await self._sleep_until(program, program.busy_until)
                    continue
                program.playing = None
                if program.injected:
                    prompt = program.injected.popleft()
                    await self._program_play(program, prompt, injected=True)
                    continue
                cue = self._due_cue(program, now)
                if cue is not None:
                    late = now - cue.at
                    log.info("hold_cue", prompt=cue.prompt, late_ms=round(late * 1000), **fields)
                    program.index += 1
                    await self._program_play(program, cue.prompt, injected=False)
                    continue
                following = program.schedule.cue(program.index)
                await self._sleep_until(program, None if following is None else following.at)
        finally:
            log.info("hold_program_ended", **fields)

    def _due_cue(self, program: _Program, now: float) -> Any:
        """The announcement to play now, skipping a repeated one the next already overtook."""
        while True:
            cue = program.schedule.cue(program.index)
            if cue is None or cue.at - _CUE_SLACK_S > now:
                return None
            following = program.schedule.cue(program.index + 1)
            if cue.repeated and following is not None and following.at - _CUE_SLACK_S <= now:
                log.info(
                    "hold_cue_skipped",
                    prompt=cue.prompt,
                    late_s=round(now - cue.at, 3),
                    program=program.id,
                    leg=program.leg,
                )
                program.index += 1
                continue
            return cue

    async def _program_play(self, program: _Program, prompt: str, *, injected: bool) -> None:
        path = self.sound_path(prompt)
        try:
            end = await self._displace(
                program.leg, prompt, path, mux=False, call_id=program.call_id, report=injected
            )
        except PbxAgentError as exc:
            # The switch's own music goes on: the customer is not in silence.
            log.warning(
                "hold_prompt_failed",
                program=program.id,
                leg=program.leg,
                prompt=prompt,
                injected=injected,
                error=str(exc),
            )
            return
        if program.stopped:
            # The hold ended while the switch was starting this announcement: the stop saw
            # nothing playing, so this one is stopped here (never heard over the agent).
            with contextlib.suppress(PbxAgentError):
                await self.api(
                    f"uuid_displace {program.leg} stop {quote_api_arg(path)}",
                    call_id=program.call_id,
                )
            return
        program.busy_until = end
        program.playing = path

    async def _sleep_until(self, program: _Program, when: float | None) -> None:
        """Wait (on the daemon's clock) until ``when``, a prompt arrives or the program stops."""
        program.wake.clear()
        if program.stopped or (program.injected and program.busy_until <= self.clock.now()):
            return
        handle = self.clock.call_at(when, program.wake.set) if when is not None else None
        try:
            await program.wake.wait()
        finally:
            if handle is not None:
                handle.cancel()

    # -- the other commands -----------------------------------------------------------------

    async def _redirect(self, command: cmd.Redirect, call: Call) -> str:
        target = self.options.targets.get(command.target)
        if target is None:
            msg = f"no extension named {command.target!r} is configured (freeswitch targets)"
            raise PbxAgentError(msg)
        uuid = self._uuid(call, command.leg)
        for name, value in command.params:
            await self.set_variable(uuid, name, value, call_id=call.id)
        await self.transfer(uuid, target, call_id=call.id)
        return f"transferred {uuid} to {target.extension} {target.dialplan} {target.context}"

    async def _alert(self, command: cmd.AlertAgent, call: Call) -> str:
        uuid = self._uuid(call, command.leg)
        # Every value can come from outside (the agent's name from PBXAGENT_AGENT, a caller's
        # number in the fields): a CR/LF in one is made visible, and leading blanks, which
        # mod_event_socket drops after the colon anyway, are left out, so the alert is still
        # sent instead of the encoder refusing the whole command.
        values = [
            ("Alert", command.alert),
            ("Unique-ID", uuid),
            ("Call-ID", str(call.id)),
            ("Agent", call.agent_id or ""),
            *((f"Alert-{name}", value) for name, value in command.fields),
        ]
        headers = [("Event-Subclass", "pbx_agent::alert")]
        headers.extend((name, _safe_value(value).lstrip(" \t")) for name, value in values)
        if self.shadow:
            log.info(
                "shadow_action",
                pbx=self.name,
                call_id=call.id,
                esl="sendevent CUSTOM",
                headers=[(k, printable(v)) for k, v in headers],
            )
        else:
            reply = await self.client.command("sendevent CUSTOM", headers)
            if not reply.ok:
                raise PbxActionFailed("sendevent", reply.reply_text or "no reply text")
        if command.prompt is not None:
            await self._play(cmd.PlayPrompt(command.leg, command.prompt, cmd.Audience.LEG), call)
        return f"alerted agent on {uuid}: {command.alert}"

    async def _record(self, call: Call) -> str:
        caller = call.caller_leg
        if caller is None:
            msg = "the call has no caller leg to record"
            raise PbxAgentError(msg)
        path = f"{self.options.recording_dir.rstrip('/')}/{_file_safe(call.id)}.wav"
        await self.api(f"uuid_record {caller.id} start {quote_api_arg(path)}", call_id=call.id)
        return f"recording to {path}"

    # -- callbacks ------------------------------------------------------------------------------

    async def originate_callback(
        self,
        *,
        request_id: str,
        number: str,
        ring_time_s: float,
        variables: Sequence[tuple[str, str]] = (),
        machine: DetectorParams | None = None,
        amd_deadline_ms: int = 6000,
        audio: bool = False,
    ) -> None:
        """Place one callback attempt; ``request_id`` becomes the leg's uuid and Job-UUID.

        Returns once the switch accepted the ``bgapi``; the outcome comes as an
        ``OriginateOutcome`` (and, with ``machine``, a ``MachineDetected``) event. With
        ``audio`` (and a receiver attached) the machine is judged on the leg's own audio:
        the leg parks in ``callback_audio_target`` and streams to the receiver once it
        answers; without, on the switch's talk events (``callback_target``).
        """
        if not _E164.match(number):
            msg = f"refusing to dial {printable(number)!r}: not a normalised number"
            raise UnsafeValueError(msg)
        options = self.options
        ring = max(MIN_RING_TIME_S, round(ring_time_s))
        by_audio = machine is not None and audio and self.unicast is not None
        if machine is None:
            target = options.callback_connect
        else:
            target = options.callback_audio_target if by_audio else options.callback_target
        block = channel_variables(
            [
                ("origination_uuid", request_id),
                ("originate_timeout", str(ring)),
                ("origination_caller_id_number", options.callback_caller_id_number),
                ("origination_caller_id_name", options.callback_caller_id_name),
                ("pbx_agent_callback", request_id),
                ("ignore_early_media", "true"),
                # Talk events and the media timeout must be set before the media starts.
                ("fire_talk_events", "true"),
                ("fire_not_talk_events", "true"),
                ("media_timeout", str(options.media_timeout_ms)),
                *variables,
            ]
        )
        dial = options.callback_dial_string.format(number=number.lstrip("+"), e164=number)
        line = (
            f"originate {quote_api_arg(block + dial)} {quote_api_arg(target.extension)} "
            f"{quote_api_arg(target.dialplan)} {quote_api_arg(target.context)}"
        )
        self.translator.expect_origination(
            request_id, request_id, "callback", job=request_id, callee=number
        )
        if by_audio:
            if not self.shadow:  # nothing is dialled in shadow mode: no answer will come
                self._unicast_legs[request_id] = None
        elif machine is not None:
            self.translator.detect_machine(request_id, machine, deadline_ms=amd_deadline_ms)
        if self.shadow:
            log.info("shadow_action", pbx=self.name, call_id=request_id, esl=printable(line))
            return
        reply = await self.client.command(
            f"bgapi {line}", [("Job-UUID", request_id)], timeout=options.bgapi_timeout_s
        )
        if not reply.ok:
            self._unicast_legs.pop(request_id, None)
            raise PbxActionFailed("bgapi originate", reply.reply_text or "no reply text")

    # -- machine detection on the leg's audio ---------------------------------------------------

    def attach_unicast(self, server: UnicastAudioServer) -> None:
        """Judge callback legs on their audio with ``server`` (its verdicts must come back
        through ``unicast_verdict``)."""
        self.unicast = server

    def unicast_verdict(self, leg: str, verdict: Verdict) -> None:
        """The receiver's verdict for ``leg``: the same event as from talk events."""
        self._unicast_legs.pop(leg, None)
        self._handle(
            ev.MachineDetected(
                LegId(leg), verdict.kind.value.lower(), verdict.reason, verdict.decided_at_ms
            )
        )

    async def _start_unicast(self, leg: str) -> None:
        """The leg answered: open its socket, then ask the switch to stream to it. Any
        failure gives the deadline's verdict at once (``on_deadline``: the NOTSURE choice of
        ``standards.amd``), so a customer is never left waiting for audio that cannot come."""
        server = self.unicast
        rate_text = self._unicast_legs.get(leg)
        if server is None or rate_text is None:
            return
        answered_at = self.clock.now()
        if not _LEG_UUID.match(leg):  # the sendmsg line names it: nothing else gets in
            log.warning(
                "unicast_not_started", pbx=self.name, leg=printable(leg),
                error="leg id refused; accepted: a lower-case UUID",
            )  # fmt: skip
            self.unicast_verdict(leg, Verdict(server.params.on_deadline, "no-audio-stream", 0))
            return
        try:
            rate = parse_read_rate(rate_text)
            port = await server.open(
                leg,
                answered_at=answered_at,
                rate=rate,
                source_host=None
                if self.options.unicast_switch_ip == "0.0.0.0"  # noqa: S104 - "the switch picks"
                else self.options.unicast_switch_ip,
            )
        except (UnicastProtocolError, UnicastUnavailableError) as exc:
            log.warning("unicast_not_started", pbx=self.name, leg=leg, error=str(exc))
            self.unicast_verdict(leg, Verdict(server.params.on_deadline, "no-audio-stream", 0))
            return
        if leg not in self._unicast_legs:
            server.ended(leg)  # it hung up while the socket was being opened
            return
        headers = unicast_headers(
            local_ip=self.options.unicast_switch_ip,
            local_port=0,
            remote_ip=self.options.unicast_address,
            remote_port=port,
        )
        try:
            reply = await self.client.command(f"sendmsg {leg}", headers)
        except PbxAgentError as exc:
            server.cancel(leg, "unicast-not-sent")
            log.warning("unicast_not_started", pbx=self.name, leg=leg, error=str(exc))
            return
        if not reply.ok:
            server.cancel(leg, "unicast-refused")
            log.warning(
                "unicast_not_started", pbx=self.name, leg=leg, error=reply.reply_text or "-ERR"
            )

    def _unicast_ended(self, leg: str) -> None:
        if leg not in self._unicast_legs:
            return
        # Hung up before it answered: no stream, no verdict to wait for.
        answered = self._unicast_legs.pop(leg) is not None
        if answered and self.unicast is not None:
            self.unicast.ended(leg)

    # -- tasks ----------------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        return self._tasks.spawn(coro, name)


_LEG_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _safe_value(value: str) -> str:
    """A variable value with any CR/LF/NUL made visible instead of breaking the command."""
    if any(ch in value for ch in "\r\n\x00"):
        return printable(value)
    return value


def _file_safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


# ------------------------------------------------------------------------------ wiring


def prompt_lengths_for(config: Config) -> Callable[[str], float]:
    """How long each prompt plays, read once from the daemon's copy of the sound files
    (``prompts.sounds_dir``); ``DEFAULT_PROMPT_S`` when a copy cannot be read."""
    from pbx_agent.prompts import sound_path  # noqa: PLC0415 - the composition root's helper

    known: dict[str, float] = {}

    def length(key: str) -> float:
        found = known.get(key)
        if found is not None:
            return found
        path = sound_path(config, key)
        try:
            found = read_wav_info(path).duration_s
        except ConfigError as exc:
            log.warning(
                "prompt_length_unknown",
                prompt=key,
                path=str(path),
                error=str(exc),
                assumed_s=DEFAULT_PROMPT_S,
                advice="put the prompt's 8 kHz 16-bit mono .wav (the same file FreeSWITCH "
                "plays) at this path, or announcements over the hold music are serialised on "
                "a guessed length",
            )
            found = DEFAULT_PROMPT_S
        known[key] = found
        return found

    return length


__all__ = [
    "CAUSE_NAMES",
    "DEFAULT_PROMPT_S",
    "HELPER_VARIABLE",
    "MIN_RING_TIME_S",
    "FreeswitchAdapter",
    "FreeswitchOptions",
    "FreeswitchTarget",
    "prompt_lengths_for",
]

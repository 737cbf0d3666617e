"""The fake FreeSWITCH's channels and the events they produce, as FreeSWITCH 1.10.12 does.

Pure state and event building (no I/O): ``fake_freeswitch`` drives these objects from ESL
commands and scripted scenarios, and ships each ``EslEvent`` to the subscribed sockets.

What the events look like comes from the transcripts in ``tests/traces/freeswitch``, copied
here as data (the package never reads the traces):

- Every event starts with the 13 core headers (``Event-Name`` ... ``Event-Sequence``); a
  CUSTOM event puts ``Event-Subclass`` before them.
- A channel event continues with its prefix (``Original-Channel-Call-State`` for
  CHANNEL_CALLSTATE, ``Bridge-A-Unique-ID`` for CHANNEL_BRIDGE, ``Hangup-Cause`` for
  CHANNEL_HANGUP_COMPLETE ...), the channel's basic data (``Channel-State`` ...
  ``Answer-State``, ``Hangup-Cause`` once hung up, the codec headers once media is up),
  the caller profile (``Caller-*``; empty fields are left out, as FreeSWITCH does), the
  other leg's profile (``Other-Type``, ``Other-Leg-*``) when there is one, then
  ``variable_*`` for the events that carry variables, then its suffix (``Application``,
  ``Playback-File-Path`` ...).
- Variables accumulate over a channel's life in the order FreeSWITCH sets them; the
  noise a real SIP stack adds (``sip_*``, ``rtp_*``) is reduced to a representative few.

Invariants: ``Event-Sequence`` strictly increases, except that an avmd event and its full
copy share one (trace 06); a channel's ``Unique-ID`` never changes; ``Channel-Call-UUID``
of a B-leg is its A-leg's uuid.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pbx_agent.wire.esl import EslEvent

# Where FreeSWITCH fires each event (Event-Calling-File/-Function/-Line-Number).
CALLING: dict[str, tuple[str, str, str]] = {
    "API": ("switch_loadable_module.c", "switch_api_execute", "2954"),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1572"),
    "CALL_UPDATE": ("switch_channel.c", "switch_channel_flip_cid", "3277"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3846"),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1689"),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", "301"),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "626"),
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", "2021"),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", "1584"),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", "2944"),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", "2967"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3445"),
    "CHANNEL_HANGUP_COMPLETE": (
        "switch_core_state_machine.c",
        "switch_core_session_reporting_state",
        "943",
    ),
    "CHANNEL_HOLD": ("switch_channel.c", "switch_channel_mark_hold", "875"),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", "632"),
    "CHANNEL_OUTGOING": (
        "switch_core_session.c",
        "switch_core_session_outgoing_channel",
        "768",
    ),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", "1002"),
    "CHANNEL_PROGRESS": (
        "switch_channel.c",
        "switch_channel_perform_mark_ring_ready_value",
        "3505",
    ),
    "CHANNEL_PROGRESS_MEDIA": (
        "switch_channel.c",
        "switch_channel_perform_mark_pre_answered",
        "3560",
    ),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", "2408"),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1879"),
    "CHANNEL_UNHOLD": ("switch_channel.c", "switch_channel_mark_hold", "875"),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", "1213"),
    "CODEC": ("switch_core_codec.c", "switch_core_session_set_real_read_codec", "168"),
    "CUSTOM": ("mod_avmd.c", "avmd_fire_event", "700"),
    # Not in the transcripts: where switch_core_media fires DTMF in 1.10.
    "DTMF": ("switch_channel.c", "switch_channel_queue_dtmf", "519"),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", "95"),
    "NOTALK": ("switch_rtp.c", "rtp_common_write", "8419"),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", "1646"),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", "2020"),
    "RE_SCHEDULE": ("switch_scheduler.c", "switch_scheduler_execute", "73"),
    "TALK": ("switch_rtp.c", "rtp_common_write", "8396"),
}
_REINVITE_CALLING = ("sofia.c", "sofia_handle_sip_i_state", "8489")

STATE_NUMBERS = {
    "CS_NEW": 0,
    "CS_INIT": 1,
    "CS_ROUTING": 2,
    "CS_SOFT_EXECUTE": 3,
    "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5,
    "CS_PARK": 6,
    "CS_CONSUME_MEDIA": 7,
    "CS_HIBERNATE": 8,
    "CS_RESET": 9,
    "CS_HANGUP": 10,
    "CS_REPORTING": 11,
    "CS_DESTROY": 12,
    "CS_NONE": 13,
}
CALL_STATE_NUMBERS = {
    "DOWN": 0,
    "DIALING": 1,
    "RINGING": 2,
    "EARLY": 3,
    "ACTIVE": 4,
    "HELD": 5,
    "RING_WAIT": 6,
    "HANGUP": 7,
    "UNHELD": 8,
}
# hangup_cause_q850: FreeSWITCH's own causes above 127 report 16 (traces 07b, 07c).
Q850 = {
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "CALL_REJECTED": 21,
    "DESTINATION_OUT_OF_ORDER": 27,
    "NORMAL_TEMPORARY_FAILURE": 41,
}
# What a failed originate leaves in the leg's variables (trace 07a).
SIP_FAILURE = {
    "USER_BUSY": ("486", "Busy Here", "recv_refuse"),
    "CALL_REJECTED": ("603", "Decline", "recv_refuse"),
    "NORMAL_TEMPORARY_FAILURE": ("503", "Service Unavailable", "recv_refuse"),
    "NO_ANSWER": ("487", "Request Terminated", "send_cancel"),
    "ORIGINATOR_CANCEL": ("487", "Request Terminated", "send_cancel"),
    "ALLOTTED_TIMEOUT": ("487", "Request Terminated", "send_cancel"),
}
GOODBYE_VARIABLE_ORDER = ("hangup_cause", "hangup_cause_q850", "digits_dialed")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


@dataclass(frozen=True, slots=True)
class SwitchIdentity:
    """What every event says about the switch itself (trace values by default)."""

    core_uuid: str = "81e3e759-43f1-46e9-99a4-9680739ca032"
    hostname: str = "vm"
    switchname: str = "fs-lab"
    ipv4: str = "192.0.2.2"
    ipv6: str = "fd00::2"
    version: str = "1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit"


@dataclass(slots=True, eq=False)
class FakeChannel:
    """One FreeSWITCH channel (a call leg) as the fake tracks it."""

    uuid: str
    name: str  # sofia/internal/bob@127.0.0.1:5181
    direction: str  # inbound | outbound
    caller_number: str
    caller_name: str
    destination: str
    call_uuid: str = ""
    context: str = "default"
    source: str = "mod_sofia"
    username: str = ""
    dialplan: str = "XML"
    network_addr: str = "127.0.0.1"  # an outbound leg learns it when the far end answers
    callee_name: str = ""
    callee_number: str = ""
    orig_caller_name: str = ""
    orig_caller_number: str = ""
    state: str = "CS_NEW"
    state_number: int = 0
    call_state: str = "DOWN"
    answer_state: str = "ringing"
    hangup_cause: str | None = None
    hit_dialplan: bool = False
    media: bool = False
    created_us: int = 0
    answered_us: int = 0
    progress_us: int = 0
    progress_media_us: int = 0
    hangup_us: int = 0
    bridged_us: int = 0
    last_hold_us: int = 0
    hold_accum_us: int = 0
    variables: dict[str, str] = field(default_factory=dict)
    peer: FakeChannel | None = None  # bridged with
    other_type: str = ""  # originator / originatee, with other_profile
    other_profile: list[tuple[str, str]] = field(default_factory=list)  # Other-Leg-* snapshot
    originated: bool = False  # placed by an originate API (its caller id flips at answer)
    application: str = ""
    application_data: str = ""
    held: bool = False
    moh: bool = False  # this leg hears hold music because its peer holds
    # A uuid_broadcast reached this leg while it heard hold music (trace 03b): the switch
    # loses track of the music, and unhold no longer stops it.
    moh_broken: bool = False
    # Files displaced on this leg now (uuid_displace), by the path FreeSWITCH keys them on.
    displacing: dict[str, str] = field(default_factory=dict)  # path -> flags#token
    alive: bool = True
    destroyed: bool = False
    dead_media: bool = False  # the far end died (no RTP any more)
    parked_app_uuid: str | None = None  # park() runs until hangup, transfer or bridge

    @property
    def answered(self) -> bool:
        return self.answered_us > 0


Emit = Callable[[EslEvent], None]


class ChannelModel:
    """Builds the events of a switch's channels and hands them to ``emit``."""

    def __init__(
        self,
        emit: Emit,
        *,
        identity: SwitchIdentity | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.emit = emit
        self.identity = identity or SwitchIdentity()
        self.now = now
        self.sequence = 1100
        self.sessions = 0
        self.channels: dict[str, FakeChannel] = {}
        self.started = now()
        # Called right after CHANNEL_HANGUP and right after CHANNEL_HANGUP_COMPLETE, so the
        # switch can end running applications and sockets in FreeSWITCH's order.
        self.on_hangup: Callable[[FakeChannel], None] | None = None
        self.on_reported: Callable[[FakeChannel], None] | None = None

    # -- headers --------------------------------------------------------------------------

    def _micros(self) -> int:
        return int(self.now() * 1_000_000)

    def core(
        self, name: str, *, calling: tuple[str, str, str] | None = None, sequence: int | None = None
    ) -> list[tuple[str, str]]:
        ident = self.identity
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        micros = self._micros()
        moment = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
        file, function, line = calling or CALLING.get(name, ("switch_event.c", "fire", "1"))
        return [
            ("Event-Name", name),
            ("Core-UUID", ident.core_uuid),
            ("FreeSWITCH-Hostname", ident.hostname),
            ("FreeSWITCH-Switchname", ident.switchname),
            ("FreeSWITCH-IPv4", ident.ipv4),
            ("FreeSWITCH-IPv6", ident.ipv6),
            ("Event-Date-Local", moment.strftime("%Y-%m-%d %H:%M:%S")),
            ("Event-Date-GMT", moment.strftime("%a, %d %b %Y %H:%M:%S GMT")),
            ("Event-Date-Timestamp", str(micros)),
            ("Event-Calling-File", file),
            ("Event-Calling-Function", function),
            ("Event-Calling-Line-Number", line),
            ("Event-Sequence", str(sequence)),
        ]

    @staticmethod
    def basic(ch: FakeChannel) -> list[tuple[str, str]]:
        headers = [
            ("Channel-State", ch.state),
            ("Channel-Call-State", ch.call_state),
            ("Channel-State-Number", str(ch.state_number)),
            ("Channel-Name", ch.name),
            ("Unique-ID", ch.uuid),
            ("Call-Direction", ch.direction),
            ("Presence-Call-Direction", ch.direction),
            ("Channel-HIT-Dialplan", "true" if ch.hit_dialplan else "false"),
            ("Channel-Call-UUID", ch.call_uuid or ch.uuid),
            ("Answer-State", ch.answer_state),
        ]
        if ch.hangup_cause is not None:
            headers.append(("Hangup-Cause", ch.hangup_cause))
        if ch.media:
            headers += [
                ("Channel-Read-Codec-Name", "PCMU"),
                ("Channel-Read-Codec-Rate", "8000"),
                ("Channel-Read-Codec-Bit-Rate", "64000"),
                ("Channel-Write-Codec-Name", "PCMU"),
                ("Channel-Write-Codec-Rate", "8000"),
                ("Channel-Write-Codec-Bit-Rate", "64000"),
            ]
        return headers

    @staticmethod
    def profile(
        ch: FakeChannel, prefix: str, *, index: bool = True, zero_times: bool = False
    ) -> list[tuple[str, str]]:
        """The caller profile block; FreeSWITCH leaves out empty fields."""
        logical = (
            "inbound" if prefix == "Other-Leg" and ch.direction == "outbound" else ch.direction
        )
        fields = [
            ("Direction", ch.direction),
            ("Logical-Direction", logical),
            ("Username", ch.username),
            ("Dialplan", ch.dialplan if ch.direction == "inbound" else ""),
            ("Caller-ID-Name", ch.caller_name),
            ("Caller-ID-Number", ch.caller_number),
            ("Orig-Caller-ID-Name", ch.orig_caller_name),
            ("Orig-Caller-ID-Number", ch.orig_caller_number),
            ("Callee-ID-Name", ch.callee_name),
            ("Callee-ID-Number", ch.callee_number),
            ("Network-Addr", ch.network_addr),
            ("ANI", ch.orig_caller_number),
            ("Destination-Number", ch.destination),
            ("Unique-ID", ch.uuid),
            ("Source", ch.source),
            ("Context", ch.context),
            ("Channel-Name", ch.name),
        ]
        stamps = [
            ch.created_us,
            ch.created_us,
            ch.answered_us,
            ch.progress_us,
            ch.progress_media_us,
            ch.hangup_us,
            0,
            0,
            ch.bridged_us,
            ch.last_hold_us,
            ch.hold_accum_us,
        ]
        if zero_times:
            stamps = [0] * len(stamps)
        names = [
            "Profile-Created-Time",
            "Channel-Created-Time",
            "Channel-Answered-Time",
            "Channel-Progress-Time",
            "Channel-Progress-Media-Time",
            "Channel-Hangup-Time",
            "Channel-Transfer-Time",
            "Channel-Resurrect-Time",
            "Channel-Bridged-Time",
            "Channel-Last-Hold",
            "Channel-Hold-Accum",
        ]
        times = [("Profile-Index", "1" if index else "")]
        times += [(name, str(stamp)) for name, stamp in zip(names, stamps, strict=True)]
        times += [
            ("Screen-Bit", "true"),
            ("Privacy-Hide-Name", "false"),
            ("Privacy-Hide-Number", "false"),
        ]
        return [(f"{prefix}-{name}", value) for name, value in fields + times if value]

    def channel_event(
        self,
        name: str,
        ch: FakeChannel,
        *,
        prefix: list[tuple[str, str]] | None = None,
        suffix: list[tuple[str, str]] | None = None,
        variables: bool = True,
        calling: tuple[str, str, str] | None = None,
        core: list[tuple[str, str]] | None = None,
    ) -> EslEvent:
        headers = core if core is not None else self.core(name, calling=calling)
        headers += prefix or []
        headers += self.basic(ch)
        headers += self.profile(ch, "Caller")
        if ch.other_type:
            headers.append(("Other-Type", ch.other_type))
            headers += ch.other_profile
        if variables:
            headers += [(f"variable_{key}", value) for key, value in ch.variables.items()]
        headers += suffix or []
        return EslEvent(tuple(headers))

    def fire(
        self,
        name: str,
        ch: FakeChannel,
        *,
        prefix: list[tuple[str, str]] | None = None,
        suffix: list[tuple[str, str]] | None = None,
        variables: bool = True,
        calling: tuple[str, str, str] | None = None,
        core: list[tuple[str, str]] | None = None,
    ) -> EslEvent:
        event = self.channel_event(
            name,
            ch,
            prefix=prefix,
            suffix=suffix,
            variables=variables,
            calling=calling,
            core=core,
        )
        self.emit(event)
        return event

    def channel_data(self, ch: FakeChannel) -> EslEvent:
        """The CHANNEL_DATA block of an outbound socket's ``connect`` reply (trace 05a)."""
        headers = self.core("CHANNEL_DATA")
        headers += self.profile(ch, "Channel")
        headers += self.basic(ch)
        headers += self.profile(ch, "Caller")
        headers += [(f"variable_{key}", value) for key, value in ch.variables.items()]
        return EslEvent(tuple(headers))

    # -- state changes --------------------------------------------------------------------

    def set_state(self, ch: FakeChannel, state: str, number: int | None = None) -> None:
        ch.state = state
        ch.state_number = STATE_NUMBERS[state] if number is None else number
        self.fire("CHANNEL_STATE", ch, variables=False)

    def set_call_state(self, ch: FakeChannel, call_state: str) -> None:
        original = ch.call_state
        ch.call_state = call_state
        self.fire(
            "CHANNEL_CALLSTATE",
            ch,
            variables=False,
            prefix=[
                ("Original-Channel-Call-State", original),
                ("Channel-Call-State-Number", str(CALL_STATE_NUMBERS[call_state])),
            ],
        )

    def _new_channel(
        self,
        *,
        uuid: str | None,
        name: str,
        direction: str,
        caller_number: str,
        caller_name: str,
        destination: str,
    ) -> FakeChannel:
        self.sessions += 1
        ch = FakeChannel(
            uuid=uuid or new_uuid(),
            name=name,
            direction=direction,
            caller_number=caller_number,
            caller_name=caller_name,
            destination=destination,
            created_us=self._micros(),
        )
        ch.call_uuid = ch.uuid
        self.channels[ch.uuid] = ch
        return ch

    def inbound(
        self,
        caller_number: str,
        caller_name: str,
        destination: str,
        *,
        uuid: str | None = None,
        profile: str = "internal",
        variables: dict[str, str] | None = None,
    ) -> FakeChannel:
        """A call arriving from a SIP phone and entering the dialplan (CS_EXECUTE)."""
        name = f"sofia/{profile}/{caller_number}@127.0.0.1"
        ch = self._new_channel(
            uuid=uuid,
            name=name,
            direction="inbound",
            caller_number=caller_number,
            caller_name=caller_name,
            destination=destination,
        )
        ch.username = caller_number
        ch.orig_caller_name, ch.orig_caller_number = caller_name, caller_number
        ch.call_state = "RINGING"
        ch.state, ch.state_number = "CS_INIT", 2
        ch.variables.update(
            {
                "direction": "inbound",
                "uuid": ch.uuid,
                "session_id": str(self.sessions),
                "sip_from_user": caller_number,
                "sip_from_uri": f"{caller_number}@127.0.0.1",
                "sip_from_host": "127.0.0.1",
                "channel_name": name,
                "sip_from_display": caller_name,
                "sip_req_user": destination,
                "sip_to_user": destination,
                "sofia_profile_name": profile,
                "read_codec": "PCMU",
                "write_codec": "PCMU",
                "endpoint_disposition": "RECEIVED",
                "call_uuid": ch.uuid,
            }
        )
        if not caller_name:
            del ch.variables["sip_from_display"]
        ch.variables.update(variables or {})
        ch.media = True
        self.fire("CHANNEL_CREATE", ch)
        ch.hit_dialplan = True
        self.set_state(ch, "CS_ROUTING")
        self.set_state(ch, "CS_EXECUTE")
        return ch

    def outbound(
        self,
        endpoint: str,
        *,
        uuid: str | None,
        caller_number: str,
        caller_name: str,
        variables: dict[str, str],
        originator: FakeChannel | None = None,
    ) -> FakeChannel:
        """A leg FreeSWITCH places (originate, bridge): OUTGOING, CREATE, ORIGINATE."""
        user = endpoint.rsplit("/", maxsplit=1)[-1].split("@", maxsplit=1)[0]
        if originator is None:
            # An originate: the caller id is origination_caller_id_*; no network yet.
            name, number = caller_name, caller_number
            orig_name, orig_number = caller_name, caller_number
        else:
            # A bridge's B-leg shows the A-leg's current caller id (after its flip).
            name = originator.caller_name
            number = caller_number or originator.caller_number
            orig_name, orig_number = originator.orig_caller_name, originator.orig_caller_number
        ch = self._new_channel(
            uuid=uuid,
            name=endpoint,
            direction="outbound",
            caller_number=number,
            caller_name=name,
            destination=user,
        )
        ch.source = "src/switch_ivr_originate.c"
        ch.callee_name = "Outbound Call"
        ch.callee_number = user
        ch.orig_caller_name = orig_name
        ch.orig_caller_number = orig_number
        ch.state, ch.state_number = "CS_NONE", 1
        if originator is None:
            ch.originated = True
            ch.network_addr = ""
        else:
            ch.call_uuid = originator.call_uuid
            ch.other_type = "originator"
            ch.other_profile = self.profile(originator, "Other-Leg", index=False, zero_times=True)
        self.fire("CHANNEL_OUTGOING", ch, variables=False)
        ch.state = "CS_INIT"
        self.fire("CHANNEL_STATE", ch, variables=False)
        ch.state_number = 2
        ch.variables.update({"direction": "outbound", "is_outbound": "true", "uuid": ch.uuid})
        if originator is None:
            ch.variables["call_uuid"] = ch.uuid
        ch.variables.update(
            {
                "session_id": str(self.sessions),
                "sip_profile_name": "internal",
                "channel_name": endpoint,
                "sip_destination_url": f"sip:{endpoint.rsplit('/', maxsplit=1)[-1]}",
            }
        )
        if originator is not None:
            ch.variables.update(
                {
                    "originator": originator.uuid,
                    "signal_bond": originator.uuid,
                    "call_uuid": originator.call_uuid,
                }
            )
        ch.variables.update(variables)
        ch.variables.update({"originate_early_media": "false", "originate_endpoint": "sofia"})
        if originator is not None:
            ch.variables["originating_leg_uuid"] = originator.uuid
        ch.variables.update(
            {"sip_req_uri": endpoint.rsplit("/", maxsplit=1)[-1], "sofia_profile_name": "internal"}
        )
        self.fire("CHANNEL_CREATE", ch)
        self.fire("CHANNEL_ORIGINATE", ch)
        self.set_state(ch, "CS_ROUTING")
        self.set_state(ch, "CS_CONSUME_MEDIA")
        return ch

    def progress(self, ch: FakeChannel, *, early_media: bool = False) -> None:
        """180 Ringing (CHANNEL_PROGRESS) or 183 with media (CHANNEL_PROGRESS_MEDIA), 07a."""
        ch.network_addr = "127.0.0.1"
        if early_media:
            ch.progress_media_us = self._micros()
            ch.answer_state = "early"
            self.fire("CHANNEL_PROGRESS_MEDIA", ch)
            self.set_call_state(ch, "EARLY")
        else:
            ch.progress_us = self._micros()
            self.fire("CHANNEL_PROGRESS", ch)
            self.set_call_state(ch, "RINGING")

    def answer(self, ch: FakeChannel) -> None:
        ch.network_addr = "127.0.0.1"
        if not ch.media:
            ch.media = True
            read = [
                ("channel-read-codec-name", "PCMU"),
                ("channel-read-codec-rate", "8000"),
                ("channel-read-codec-bit-rate", "64000"),
            ]
            self.fire("CODEC", ch, variables=False, suffix=read)
            write = [
                ("Channel-Write-Codec-Name", "PCMU"),
                ("Channel-Write-Codec-Rate", "8000"),
                ("Channel-Write-codec-bit-rate", "64000"),
            ]
            calling = ("switch_core_codec.c", "switch_core_session_set_write_codec", "450")
            self.fire("CODEC", ch, variables=False, suffix=write, calling=calling)
        ch.answered_us = self._micros()
        ch.answer_state = "answered"
        ch.variables.update(
            {
                "sip_from_user": ch.orig_caller_number or ch.caller_number,
                "sip_to_user": ch.destination,
                "rtp_use_codec_name": "PCMU",
                "read_codec": "PCMU",
                "write_codec": "PCMU",
                "remote_media_ip": "127.0.0.1",
            }
        )
        self.fire("CHANNEL_ANSWER", ch)
        self.set_call_state(ch, "ACTIVE")
        ch.variables["endpoint_disposition"] = "ANSWER"
        if ch.originated:
            # The originated leg now shows whom it reached (trace 02c CALL_UPDATE).
            ch.variables.update(
                {
                    "pre_transfer_caller_id_name": ch.caller_name,
                    "pre_transfer_caller_id_number": ch.caller_number,
                    "channel_cid_flipped": "yes",
                }
            )
            if not ch.caller_name:
                del ch.variables["pre_transfer_caller_id_name"]
            ch.caller_name, ch.callee_name = ch.callee_name, ch.caller_name
            ch.caller_number, ch.callee_number = ch.callee_number, ch.caller_number
            self.fire("CALL_UPDATE", ch, prefix=[("Direction", "RECV")])

    def execute(self, ch: FakeChannel, app: str, data: str, app_uuid: str) -> None:
        if ch.state != "CS_EXECUTE" and ch.alive:
            self.set_state(ch, "CS_EXECUTE")
        ch.application, ch.application_data = app, data
        ch.variables["current_application"] = app
        if data:
            ch.variables["current_application_data"] = data
        else:
            ch.variables.pop("current_application_data", None)
        suffix = [("Application", app)]
        if data:
            suffix.append(("Application-Data", data))
        suffix.append(("Application-UUID", app_uuid))
        self.fire("CHANNEL_EXECUTE", ch, suffix=suffix)

    def execute_complete(
        self, ch: FakeChannel, app: str, data: str, response: str, app_uuid: str
    ) -> None:
        ch.variables["current_application_response"] = response
        ch.variables["last_app"] = app
        if data:
            ch.variables["last_arg"] = data
        suffix = [("Application", app)]
        if data:
            suffix.append(("Application-Data", data))
        suffix += [("Application-Response", response), ("Application-UUID", app_uuid)]
        self.fire("CHANNEL_EXECUTE_COMPLETE", ch, suffix=suffix)
        if ch.application == app:
            ch.application, ch.application_data = "", ""
        if ch.parked_app_uuid is not None and app != "park":
            ch.application = "park"

    def park(self, ch: FakeChannel, app_uuid: str | None = None) -> None:
        """CHANNEL_PARK; with ``app_uuid`` the park application was executed first."""
        if app_uuid is not None:
            self.execute(ch, "park", "", app_uuid)
            ch.parked_app_uuid = app_uuid
        self.fire("CHANNEL_PARK", ch)

    def unpark(self, ch: FakeChannel) -> None:
        """The park application ends (hangup, bridge, transfer)."""
        app_uuid, ch.parked_app_uuid = ch.parked_app_uuid, None
        if app_uuid is not None:
            self.execute_complete(ch, "park", "", "_none_", app_uuid)

    def playback_start(self, ch: FakeChannel, path: str) -> None:
        self.fire("PLAYBACK_START", ch, suffix=_playback_file(path))

    def playback_stop(
        self, ch: FakeChannel, path: str, *, samples: int, status: str = "done"
    ) -> None:
        ch.variables.update(
            {
                "playback_last_offset_pos": str(samples),
                "playback_seconds": str(samples // 8000),
                "playback_ms": str(samples // 8),
                "playback_samples": str(samples),
            }
        )
        self.fire("PLAYBACK_STOP", ch, suffix=[*_playback_file(path), ("Playback-Status", status)])

    def bridge(self, a: FakeChannel, b: FakeChannel) -> None:
        """A and B are answered; A's bridge application joins them (trace 02c)."""
        if a.call_state != "ACTIVE":
            self.set_call_state(a, "ACTIVE")
        now = self._micros()
        a.bridged_us = now
        a.peer, b.peer = b, a
        a.callee_name, a.callee_number = b.callee_name, b.callee_number
        a.other_type = "originatee"
        a.other_profile = self.profile(b, "Other-Leg", index=False)
        if not b.other_type:
            b.other_type = "originator"
            b.other_profile = self.profile(a, "Other-Leg", index=False, zero_times=True)
        a.variables.update(
            {
                "originated_legs": f"{b.uuid};Outbound Call",
                "originate_disposition": "SUCCESS",
                "DIALSTATUS": "SUCCESS",
                "originate_causes": f"{b.uuid};NONE",
                "signal_bond": b.uuid,
            }
        )
        self.fire(
            "CHANNEL_BRIDGE",
            a,
            prefix=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)],
        )
        self.set_state(b, "CS_EXCHANGE_MEDIA")
        for leg, other in ((b, a), (a, b)):
            leg.variables.update(
                {
                    "bridge_to": other.uuid,
                    "last_bridge_to": other.uuid,
                    "bridge_channel": other.name,
                    "bridge_uuid": other.uuid,
                    "last_sent_callee_id_name": "Outbound Call",
                    "last_sent_callee_id_number": other.caller_number,
                }
            )
            self.fire(
                "CALL_UPDATE",
                leg,
                prefix=[
                    ("Direction", "SEND"),
                    ("Sent-Callee-ID-Name", "Outbound Call"),
                    ("Sent-Callee-ID-Number", other.caller_number),
                    ("Bridged-To", other.uuid),
                ],
                calling=("mod_sofia.c", "sofia_receive_message", "2100"),
            )

    def unbridge(self, a: FakeChannel, b: FakeChannel, *, b_cause: str) -> None:
        a.variables.update(
            {
                "last_bridge_hangup_cause": b_cause,
                "bridge_hangup_cause": b_cause,
            }
        )
        self.fire(
            "CHANNEL_UNBRIDGE",
            a,
            prefix=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)],
        )
        a.peer = b.peer = None

    def hold(self, ch: FakeChannel) -> None:
        """ch's phone put the call on hold (re-INVITE sendonly), trace 03a."""
        ch.held = True
        ch.last_hold_us = self._micros()
        self.set_call_state(ch, "HELD")
        self.fire("CHANNEL_HOLD", ch)
        peer = ch.peer
        if peer is not None and peer.alive:
            peer.moh = True
            moh_uuid = new_uuid()
            peer.variables["hold_music_uuid"] = moh_uuid
            self.execute(peer, "playback", "local_stream://moh", moh_uuid)
            self.playback_start(peer, "local_stream://moh")
        self.reinvite(ch)

    def unhold(self, ch: FakeChannel) -> None:
        peer = ch.peer
        if peer is not None and peer.moh and not peer.moh_broken:
            peer.moh = False
            moh_uuid = peer.variables.pop("hold_music_uuid", new_uuid())
            self.playback_stop(peer, "local_stream://moh", samples=0)
            self.execute_complete(peer, "playback", "local_stream://moh", "FILE PLAYED", moh_uuid)
        ch.held = False
        ch.hold_accum_us += self._micros() - ch.last_hold_us
        self.set_call_state(ch, "UNHELD")
        self.fire("CHANNEL_UNHOLD", ch)
        self.reinvite(ch)
        self.set_call_state(ch, "ACTIVE")

    def reinvite(self, ch: FakeChannel) -> None:
        headers = [("Event-Subclass", "sofia::reinvite")]
        headers += self.core("CUSTOM", calling=_REINVITE_CALLING)
        headers.append(("Unique-ID", ch.uuid))
        self.emit(EslEvent(tuple(headers)))

    def talk(self, ch: FakeChannel, *, talking: bool) -> None:
        self.fire("TALK" if talking else "NOTALK", ch, variables=False)

    def dtmf(self, ch: FakeChannel, digit: str, duration_ms: int = 100) -> None:
        self.fire(
            "DTMF",
            ch,
            prefix=[
                ("DTMF-Digit", digit),
                ("DTMF-Duration", str(duration_ms * 8)),
                ("DTMF-Source", "RTP"),
            ],
        )

    def avmd(self, ch: FakeChannel, subclass: str, fields: list[tuple[str, str]]) -> None:
        """An avmd event, twice with one Event-Sequence: bare, then with channel data."""
        core = self.core("CUSTOM")
        sequence = int(core[-1][1])
        custom = [("Unique-ID", ch.uuid), ("Call-command", "avmd"), *fields]
        self.emit(EslEvent((("Event-Subclass", subclass), *core, *custom)))
        full_core = [("Event-Subclass", subclass), *self.core("CUSTOM", sequence=sequence)]
        self.fire("CUSTOM", ch, core=full_core + custom)

    # -- the end of a leg -----------------------------------------------------------------

    def hangup(
        self,
        ch: FakeChannel,
        cause: str,
        *,
        disposition: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        """CHANNEL_HANGUP for ch (the state machine then runs ``reporting``)."""
        if not ch.alive:
            return
        ch.alive = False
        ch.hangup_us = self._micros()
        ch.hangup_cause = cause
        ch.answer_state = "hangup"
        ch.state_number = STATE_NUMBERS["CS_HANGUP"]
        ch.variables.update(extra or {})
        if disposition:
            ch.variables["sip_hangup_disposition"] = disposition
        self.fire("CHANNEL_HANGUP", ch)
        if self.on_hangup is not None:
            self.on_hangup(ch)

    def reporting(self, ch: FakeChannel) -> None:
        """CS_HANGUP -> CS_REPORTING: call state HANGUP and CHANNEL_HANGUP_COMPLETE."""
        self.set_state(ch, "CS_HANGUP")
        self.set_call_state(ch, "HANGUP")
        self.set_state(ch, "CS_REPORTING")
        ch.variables.setdefault("sip_hangup_disposition", "send_bye")
        cause = ch.hangup_cause or "NORMAL_CLEARING"
        start = ch.created_us // 1_000_000
        end = ch.hangup_us // 1_000_000
        answer = ch.answered_us // 1_000_000
        billsec = max(0, end - answer) if ch.answered else 0
        final = {
            "hangup_cause": cause,
            "hangup_cause_q850": str(Q850.get(cause, 16)),
            "digits_dialed": "none",
            "start_epoch": str(start),
            "start_uepoch": str(ch.created_us),
            "answer_epoch": str(answer),
            "answer_uepoch": str(ch.answered_us),
            "bridge_epoch": str(ch.bridged_us // 1_000_000),
            "bridge_uepoch": str(ch.bridged_us),
            "end_epoch": str(end),
            "end_uepoch": str(ch.hangup_us),
            "caller_id": f'"{ch.caller_name}" <{ch.caller_number}>'
            if ch.caller_name
            else ch.caller_number,
            "duration": str(max(0, end - start)),
            "billsec": str(billsec),
        }
        disposition = ch.variables.pop("sip_hangup_disposition")
        ch.variables.update(final)
        ch.variables["sip_hangup_disposition"] = disposition
        self.fire("CHANNEL_HANGUP_COMPLETE", ch, prefix=[("Hangup-Cause", cause)])
        if self.on_reported is not None:
            self.on_reported(ch)

    def destroy(self, ch: FakeChannel) -> None:
        if ch.destroyed:
            return
        ch.destroyed = True
        ch.state_number = STATE_NUMBERS["CS_DESTROY"]
        self.fire("CHANNEL_DESTROY", ch)
        self.set_state(ch, "CS_DESTROY")
        self.channels.pop(ch.uuid, None)

    def end_alone(self, ch: FakeChannel, cause: str, *, disposition: str = "send_bye") -> None:
        """A leg with no bridge ends: hangup, reporting, destroy (trace 02a)."""
        self.hangup(ch, cause, disposition=disposition)
        self.reporting(ch)
        self.destroy(ch)

    def end_bridged(
        self,
        gone: FakeChannel,
        cause: str,
        *,
        disposition: str,
        survivor_app: tuple[str, str, str] | None,
    ) -> None:
        """``gone`` leaves a bridge; the survivor is unbridged and hung up (02c, 07b)."""
        survivor = gone.peer
        self.hangup(gone, cause, disposition=disposition)
        if gone.other_type == "originator":
            gone.variables["last_bridge_role"] = "originatee"
        self.reporting(gone)
        if survivor is None or not survivor.alive:
            self.destroy(gone)
            return
        self.unbridge(survivor, gone, b_cause=cause)
        if survivor_app is not None:
            app, data, app_uuid = survivor_app
            self.execute_complete(survivor, app, data, "_none_", app_uuid)
        self.hangup(survivor, "NORMAL_CLEARING", disposition="send_bye")
        self.destroy(gone)
        self.reporting(survivor)
        self.destroy(survivor)


def _playback_file(path: str) -> list[tuple[str, str]]:
    """Playback-File-Type (for streams such as local_stream://) and Playback-File-Path."""
    if "://" in path:
        return [("Playback-File-Type", path.split("://", 1)[0]), ("Playback-File-Path", path)]
    if not path.startswith("/"):
        path = f"/usr/share/freeswitch/sounds/{path}"
    return [("Playback-File-Path", path)]

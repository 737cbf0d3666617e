"""The AMI messages of Asterisk 22, as data: which fields each event and response carries,
in which order, with which ``Privilege``.

Every layout here was read off the captured transcripts in ``tests/traces/asterisk-22``
(the ``.recv.txt`` files), except where a comment names another source (the queue events
and ``QueueStatus`` are not in the transcripts). The fake Asterisk renders every message it
sends through ``render`` so a field can be neither forgotten nor reordered; the tests compare
these layouts with the transcripts. Nothing here reads the transcripts at run time: this
module ships in the package.

A layout is a tuple of items:

- ``"Name"``: a field taken from the values given to ``render`` (required);
- ``"Name?"``: the same, left out when no value is given (``HangupRequest`` has a ``Cause``
  only when the channel has one);
- ``"{Chan}"``, ``"{Dest}"``, ``"{Spyer}"``, ``"{Spyee}"``, ``"{LocalOne}"``,
  ``"{LocalTwo}"``: the 14-field channel snapshot, with that prefix (``{Chan}`` has none);
  ``"{Chan?}"`` is left out when no such channel is given (``DialBegin`` of an Originate has
  only the ``Dest`` side, trace 07a);
- ``"{Bridge}"``: the 7-field bridge snapshot;
- ``"*"``: free-form fields appended in the order given (``UserEvent`` bodies).

Pure data and pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Field = tuple[str, str]

# The channel snapshot every channel event carries (ast_manager_build_channel_state_string).
CHANNEL_FIELDS: tuple[str, ...] = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)

BRIDGE_FIELDS: tuple[str, ...] = (
    "BridgeUniqueid",
    "BridgeType",
    "BridgeTechnology",
    "BridgeCreator",
    "BridgeName",
    "BridgeNumChannels",
    "BridgeVideoSourceMode",
)

CHANNEL_PLACEHOLDERS: dict[str, str] = {
    "{Chan}": "",
    "{Dest}": "Dest",
    "{Spyer}": "Spyer",
    "{Spyee}": "Spyee",
    "{LocalOne}": "LocalOne",
    "{LocalTwo}": "LocalTwo",
}

# ChannelState codes and their descriptions (as in Newchannel / Newstate).
STATE_DOWN = 0
STATE_RING = 4
STATE_RINGING = 5
STATE_UP = 6
STATE_DESC: dict[int, str] = {
    STATE_DOWN: "Down",
    1: "Rsrvd",
    2: "OffHook",
    3: "Dialing",
    STATE_RING: "Ring",
    STATE_RINGING: "Ringing",
    STATE_UP: "Up",
    7: "Busy",
}

# Q.850 cause texts (ast_cause2str). 0, 16, 17, 19, 21, 44 and 127 appear in the
# transcripts; the others are the same table's entries for causes a PBX commonly reports.
CAUSE_TEXT: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    27: "Destination out of order",
    28: "Invalid number format",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    44: "Requested channel not available",
    127: "Interworking, unspecified",
}


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


# SoftHangupRequest.Cause is Asterisk's AST_SOFTHANGUP_* bitmask, not a Q.850 cause.
SOFTHANGUP_DEV = 1  # the channel driver gave up (RTP timeout, trace 08b)
SOFTHANGUP_APPUNLOAD = 16  # what every dialplan-side hang-up in the transcripts shows
SOFTHANGUP_EXPLICIT = 32

# Privilege per event (the value of the "Privilege" header, as captured).
PRIVILEGE: dict[str, str] = {
    "FullyBooted": "system,all",
    "SuccessfulAuth": "security,all",
    "RequestBadFormat": "security,all",
    "Newchannel": "call,all",
    "Newstate": "call,all",
    "NewCallerid": "call,all",
    "NewConnectedLine": "call,all",
    "VarSet": "dialplan,all",
    "Newexten": "dialplan,all",
    "DialBegin": "call,all",
    "DialState": "call,all",
    "DialEnd": "call,all",
    "BridgeCreate": "call,all",
    "BridgeEnter": "call,all",
    "BridgeLeave": "call,all",
    "BridgeDestroy": "call,all",
    "Hold": "call,all",
    "Unhold": "call,all",
    "MusicOnHoldStart": "call,all",
    "MusicOnHoldStop": "call,all",
    "ChannelTalkingStart": "call,all",
    "ChannelTalkingStop": "call,all",
    "DTMFBegin": "dtmf,all",
    "DTMFEnd": "dtmf,all",
    "HangupRequest": "call,all",
    "SoftHangupRequest": "call,all",
    "Hangup": "call,all",
    "OriginateResponse": "call,all",
    "ChanSpyStart": "call,all",
    "ChanSpyStop": "call,all",
    "LocalBridge": "call,all",
    "DeviceStateChange": "call,all",
    "AGIExecStart": "agi,all",
    "AGIExecEnd": "agi,all",
    "RTCPReceived": "reporting,all",
    "Status": "Call",  # capitalised, as captured in 01c
    "UserEvent": "user,all",
    "AgentCalled": "agent,all",
    "AgentConnect": "agent,all",
    "AgentComplete": "agent,all",
    "MixMonitorStart": "call,all",
    "MixMonitorStop": "call,all",
}

_REPORT_BLOCK = (
    "Report0SourceSSRC",
    "Report0FractionLost",
    "Report0CumulativeLost",
    "Report0HighestSequence",
    "Report0SequenceNumberCycles",
    "Report0IAJitter",
    "Report0LSR",
    "Report0DLSR",
)

# Event layouts (after the "Event:" header). Each was compared with the transcripts by
# tests/testing/test_fake_asterisk_templates.py; the queue and MixMonitor ones are marked.
EVENT_LAYOUTS: dict[str, tuple[str, ...]] = {
    "FullyBooted": ("Privilege", "Uptime", "LastReload", "Status"),
    "SuccessfulAuth": (
        "Privilege",
        "EventTV",
        "Severity",
        "Service",
        "EventVersion",
        "AccountID",
        "SessionID",
        "LocalAddress",
        "RemoteAddress",
        "UsingPassword",
        "SessionTV",
    ),
    "RequestBadFormat": (
        "Privilege",
        "EventTV",
        "Severity",
        "Service",
        "EventVersion",
        "SessionID",
        "LocalAddress",
        "RemoteAddress",
        "RequestType",
        "SessionTV",
        "AccountID",
    ),
    "Newchannel": ("Privilege", "{Chan}"),
    "Newstate": ("Privilege", "{Chan}"),
    "NewCallerid": ("Privilege", "{Chan}", "CID-CallingPres"),
    "NewConnectedLine": ("Privilege", "{Chan}"),
    "VarSet": ("Privilege", "{Chan}", "Variable", "Value"),
    # Setvar without a channel sets a global: "Channel: none" / "Uniqueid: none" (01c).
    "VarSet/global": ("Privilege", "Channel", "Uniqueid", "Variable", "Value"),
    "Newexten": ("Privilege", "{Chan}", "Extension", "Application", "AppData"),
    "DialBegin": ("Privilege", "{Chan?}", "{Dest}", "DialString"),
    "DialState": ("Privilege", "{Chan?}", "{Dest}", "DialStatus"),
    "DialEnd": ("Privilege", "{Chan?}", "{Dest}", "DialStatus"),
    "BridgeCreate": ("Privilege", "{Bridge}"),
    "BridgeEnter": ("Privilege", "{Bridge}", "{Chan}"),
    "BridgeLeave": ("Privilege", "{Bridge}", "{Chan}"),
    "BridgeDestroy": ("Privilege", "{Bridge}"),
    "Hold": ("Privilege", "{Chan}", "MusicClass"),
    "Unhold": ("Privilege", "{Chan}"),
    "MusicOnHoldStart": ("Privilege", "{Chan}", "Class"),
    "MusicOnHoldStop": ("Privilege", "{Chan}"),
    "ChannelTalkingStart": ("Privilege", "{Chan}"),
    "ChannelTalkingStop": ("Privilege", "{Chan}", "Duration"),
    "DTMFBegin": ("Privilege", "{Chan}", "Digit", "Direction"),
    "DTMFEnd": ("Privilege", "{Chan}", "Digit", "DurationMs", "Direction"),
    "HangupRequest": ("Privilege", "{Chan}", "Cause?", "TechCause?"),
    "SoftHangupRequest": ("Privilege", "{Chan}", "Cause", "TechCause?"),
    "Hangup": ("Privilege", "{Chan}", "Cause", "Cause-txt", "TechCause?"),
    "OriginateResponse/exten": (
        "Privilege",
        "ActionID?",
        "Response",
        "Channel",
        "Context",
        "Exten",
        "Reason",
        "Uniqueid",
        "CallerIDNum",
        "CallerIDName",
    ),
    "OriginateResponse/app": (
        "Privilege",
        "ActionID?",
        "Response",
        "Channel",
        "Application",
        "Data",
        "Reason",
        "Uniqueid",
        "CallerIDNum",
        "CallerIDName",
    ),
    "ChanSpyStart": ("Privilege", "{Spyer}", "{Spyee}"),
    "ChanSpyStop": ("Privilege", "{Spyer}", "{Spyee}"),
    "LocalBridge": (
        "Privilege",
        "{LocalOne}",
        "{LocalTwo}",
        "Context",
        "Exten",
        "LocalOptimization",
    ),
    "DeviceStateChange": ("Privilege", "Device", "State"),
    "AGIExecStart": ("Privilege", "{Chan}", "CommandId", "Command"),
    "AGIExecEnd": ("Privilege", "{Chan}", "CommandId", "Command", "ResultCode", "Result"),
    # Periodic RTP reports (noise, ~every 5 s per channel). "RR" as Asterisk receives from a
    # phone that only receives, "sr" with the sender fields (both captured, e.g. 02b).
    "RTCPReceived": (
        "Privilege",
        "{Chan}",
        "To",
        "From",
        "RTT",
        "MES",
        "SSRC",
        "PT",
        "ReportCount",
        *_REPORT_BLOCK,
    ),
    "RTCPReceived/sr": (
        "Privilege",
        "{Chan}",
        "To",
        "From",
        "RTT",
        "MES",
        "SSRC",
        "PT",
        "ReportCount",
        "SentNTP",
        "SentRTP",
        "SentPackets",
        "SentOctets",
        *_REPORT_BLOCK,
    ),
    # List items. CoreShowChannel has no Privilege; in Status the ActionID comes last (01c).
    "CoreShowChannel": (
        "ActionID?",
        "{Chan}",
        "Application",
        "ApplicationData",
        "Duration",
        "BridgeId",
    ),
    "CoreShowChannelsComplete": ("ActionID?", "EventList", "ListItems"),
    "Status": (
        "Privilege",
        "{Chan}",
        "Type",
        "DNID",
        "EffectiveConnectedLineNum",
        "EffectiveConnectedLineName",
        "TimeToHangup",
        "BridgeID",
        "Application",
        "Data",
        "Nativeformats",
        "Readformat",
        "Readtrans",
        "Writeformat",
        "Writetrans",
        "Callgroup",
        "Pickupgroup",
        "Seconds",
        "ActionID?",
    ),
    "StatusComplete": ("ActionID?", "EventList", "ListItems", "Items"),
    # The UserEvent action (manager.c action_userevent) sends "UserEvent: <name>" and then
    # every header of the action except Action and UserEvent, in the order received. The
    # UserEvent() dialplan application (multi_user_event_to_ami, main/stasis.c) puts the
    # channel snapshot first. Neither is in the transcripts.
    "UserEvent": ("Privilege", "UserEvent", "*"),
    "UserEvent/channel": ("Privilege", "{Chan}", "UserEvent", "*"),
    # Queue events are not in the transcripts. Fields: the AgentCalled/AgentConnect/
    # AgentComplete documentation in apps/app_queue.c (caller snapshot, member snapshot with
    # prefix "Dest", then the JSON blob); order: the blob's insertion order in
    # app_queue.c (ast_json_pack "Queue", "Interface", "MemberName", ...), which the AMI
    # rendering keeps. The docs list the same fields in another order.
    "AgentCalled": ("Privilege", "{Chan}", "{Dest}", "Queue", "Interface", "MemberName"),
    "AgentConnect": (
        "Privilege",
        "{Chan}",
        "{Dest}",
        "Queue",
        "Interface",
        "MemberName",
        "HoldTime",
        "RingTime",
    ),
    "AgentComplete": (
        "Privilege",
        "{Chan}",
        "{Dest}",
        "Queue",
        "Interface",
        "MemberName",
        "HoldTime",
        "TalkTime",
        "Reason",
    ),
    # MixMonitorStart/Stop (apps/app_mixmonitor.c, Asterisk 12+): the channel snapshot only.
    # Not in the transcripts.
    "MixMonitorStart": ("Privilege", "{Chan}"),
    "MixMonitorStop": ("Privilege", "{Chan}"),
    # QueueStatus list items (app_queue.c manager_queues_status, documented fields of the
    # QueueParams / QueueMember / QueueEntry events). Not in the transcripts.
    "QueueParams": (
        "Queue",
        "Max",
        "Strategy",
        "Calls",
        "Holdtime",
        "TalkTime",
        "Completed",
        "Abandoned",
        "ServiceLevel",
        "ServicelevelPerf",
        "ServicelevelPerf2",
        "Weight",
        "ActionID?",
    ),
    "QueueMember": (
        "Queue",
        "Name",
        "Location",
        "StateInterface",
        "Membership",
        "Penalty",
        "CallsTaken",
        "LastCall",
        "LastPause",
        "LoginTime",
        "InCall",
        "Status",
        "Paused",
        "PausedReason",
        "Wrapuptime",
        "ActionID?",
    ),
    "QueueEntry": (
        "Queue",
        "Position",
        "Channel",
        "Uniqueid",
        "CallerIDNum",
        "CallerIDName",
        "ConnectedLineNum",
        "ConnectedLineName",
        "Wait",
        "Priority",
        "ActionID?",
    ),
    "QueueStatusComplete": ("ActionID?", "EventList", "ListItems"),
}


@dataclass(frozen=True, slots=True)
class ChannelSnapshot:
    """The 14 values of a channel snapshot, in ``CHANNEL_FIELDS`` order."""

    channel: str
    state: int
    caller_num: str
    caller_name: str
    connected_num: str
    connected_name: str
    language: str
    account_code: str
    context: str
    exten: str
    priority: int
    uniqueid: str
    linkedid: str

    def fields(self, prefix: str = "") -> list[Field]:
        values = (
            self.channel,
            str(self.state),
            STATE_DESC.get(self.state, "Unknown"),
            self.caller_num or "<unknown>",
            self.caller_name or "<unknown>",
            self.connected_num or "<unknown>",
            self.connected_name or "<unknown>",
            self.language,
            self.account_code,
            self.context,
            self.exten,
            str(self.priority),
            self.uniqueid,
            self.linkedid,
        )
        return [(prefix + name, value) for name, value in zip(CHANNEL_FIELDS, values, strict=True)]


@dataclass(frozen=True, slots=True)
class BridgeSnapshot:
    uniqueid: str
    technology: str
    num_channels: int
    bridge_type: str = "basic"
    creator: str = "<unknown>"
    name: str = "<unknown>"
    video_source_mode: str = "none"

    def fields(self) -> list[Field]:
        values = (
            self.uniqueid,
            self.bridge_type,
            self.technology,
            self.creator,
            self.name,
            str(self.num_channels),
            self.video_source_mode,
        )
        return list(zip(BRIDGE_FIELDS, values, strict=True))


class TemplateError(KeyError):
    """A message was rendered without a field its layout requires (a bug in the fake)."""


def render(
    layout_name: str,
    *,
    event: str | None = None,
    channels: Mapping[str, ChannelSnapshot] | None = None,
    bridge: BridgeSnapshot | None = None,
    values: Mapping[str, str] | None = None,
    extra: Sequence[Field] = (),
) -> list[Field]:
    """The fields of one event, ``Event`` header first, in the layout's order.

    ``layout_name`` is a key of ``EVENT_LAYOUTS`` (``"VarSet"``, ``"VarSet/global"``...);
    ``event`` is the ``Event:`` name when it differs from the part before ``/``.
    ``channels`` maps a placeholder (``"{Chan}"``, ``"{Dest}"``...) to a snapshot.
    """
    name = event or layout_name.split("/", 1)[0]
    layout = EVENT_LAYOUTS[layout_name]
    given = dict(values or {})
    if "Privilege" in layout and "Privilege" not in given:
        given["Privilege"] = PRIVILEGE[name]
    out: list[Field] = [("Event", name)]
    for item in layout:
        out.extend(_render_item(layout_name, item, channels or {}, bridge, given, extra))
    return out


def _render_item(
    layout_name: str,
    item: str,
    channels: Mapping[str, ChannelSnapshot],
    bridge: BridgeSnapshot | None,
    given: Mapping[str, str],
    extra: Sequence[Field],
) -> list[Field]:
    optional = item.endswith(("?", "?}"))
    key = item.replace("?", "")
    if key in CHANNEL_PLACEHOLDERS:
        snapshot = channels.get(key)
        if snapshot is not None:
            return snapshot.fields(CHANNEL_PLACEHOLDERS[key])
        missing = f"no channel given for {key}"
    elif key == "{Bridge}":
        if bridge is not None:
            return bridge.fields()
        missing = "no bridge given"
    elif key == "*":
        return list(extra)
    elif key in given:
        return [(key, given[key])]
    else:
        missing = f"no value given for {key}"
    if optional:
        return []
    raise TemplateError(f"{layout_name}: {missing}")


def layout_field_names(layout_name: str, present: Sequence[str] = ()) -> list[str]:
    """The field names a rendered event has (channel blocks expanded), for comparisons.

    ``present`` names the optional items to include (``"Cause"``, ``"{Chan}"``...).
    """
    names = ["Event"]
    for item in EVENT_LAYOUTS[layout_name]:
        optional = item.endswith(("?", "?}"))
        key = item.replace("?", "")
        if optional and key not in present:
            continue
        if key in CHANNEL_PLACEHOLDERS:
            names.extend(CHANNEL_PLACEHOLDERS[key] + field for field in CHANNEL_FIELDS)
        elif key == "{Bridge}":
            names.extend(BRIDGE_FIELDS)
        elif key != "*":
            names.append(key)
    return names


# ---------------------------------------------------------------------------- responses
# Response layouts are short and built inline by the server: "Response", "ActionID" (only
# when the action had one), then the fields below, as captured in 01a/01b/01c/03b/04a.

MSG_AUTH_ACCEPTED = "Authentication accepted"
MSG_AUTH_FAILED = "Authentication failed"
MSG_GOODBYE = "Thanks for all the fish."
MSG_VARIABLE_SET = "Variable Set"
MSG_CHANNEL_HUNGUP = "Channel Hungup"
MSG_NO_SUCH_CHANNEL = "No such channel"
MSG_CHANNEL_NOT_SPECIFIED = "Channel not specified"
MSG_ORIGINATE_QUEUED = "Originate successfully queued"
MSG_CHANNELS_FOLLOW = "Channels will follow"
MSG_STATUS_FOLLOWS = "Channel status will follow"
MSG_COMMAND_OUTPUT = "Command output follows"
# Not in the transcripts (manager.c / app_queue.c):
MSG_PERMISSION_DENIED = "Permission denied"
# action_originate, a user without "system" (not in the transcripts: their user has all).
MSG_ORIGINATE_FORBIDDEN_APP = "Originate Access Forbidden: Application"
MSG_ORIGINATE_FORBIDDEN_DATA = "Originate Access Forbidden: Data"
MSG_NO_CHANNEL_SPECIFIED = "No channel specified"
MSG_NO_VARIABLE_SPECIFIED = "No variable specified"
MSG_REDIRECT_OK = "Redirect successful"
MSG_ORIGINATE_FAILED = "Originate failed"
MSG_DTMF_QUEUED = "DTMF successfully queued"
MSG_NO_DIGIT = "No digit specified"
MSG_EVENT_SENT = "Event Sent"
MSG_QUEUE_STATUS_FOLLOWS = "Queue status will follow"


def unknown_action_message(action: str) -> str:
    return (
        f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."
    )


def unknown_cli_output(command: str) -> str:
    """``Command`` with an unknown CLI command (01c): the help hint names its first words."""
    hint = " ".join(command.split()[:2])
    return f"No such command '{command}' (type 'core show help {hint}' for other possible commands)"


# Noise Asterisk sets on a PJSIP channel as it hangs up (trace 02b): the values are those
# captured; the fake does not model RTP statistics.
RTP_QOS_VARIABLES: tuple[Field, ...] = (
    (
        "RTPAUDIOQOS",
        (
            "ssrc=716116167;themssrc=1216756631;lp=0;rxjitter=0.000125;rxcount=229;"
            "txjitter=0.000125;txcount=230;rlp=0;rtt=0.000000;rxmes=88.087887;txmes=0.000000"
        ),
    ),
    (
        "RTPAUDIOQOSJITTER",
        (
            "minrxjitter=000.000000;maxrxjitter=000.000125;avgrxjitter=000.000116;"
            "stdevrxjitter=000.000032;mintxjitter=000.000000;maxtxjitter=000.000125;"
            "avgtxjitter=000.000050;stdevtxjitter=000.000061;"
        ),
    ),
    (
        "RTPAUDIOQOSLOSS",
        (
            "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  "
            "stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  "
            "avgtxlost=000.000000;  stdevtxlost=000.000000;"
        ),
    ),
    (
        "RTPAUDIOQOSRTT",
        (
            "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     "
            "stdevrtt=000.000000;"
        ),
    ),
    (
        "RTPAUDIOQOSMES",
        (
            "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;   "
            "stdevrxmes=000.000000;   mintxmes=088.087887;   maxtxmes=088.087887;   "
            "avgtxmes=088.087887;   stdevtxmes=000.000000;"
        ),
    ),
)

# Variables Dial() clears on the caller before dialling (02b), in that order.
DIAL_RESET_VARIABLES: tuple[str, ...] = (
    "DIALSTATUS",
    "DIALEDPEERNUMBER",
    "DIALEDPEERNAME",
    "ANSWEREDTIME",
    "ANSWEREDTIME_MS",
    "DIALEDTIME",
    "DIALEDTIME_MS",
    "RINGTIME",
    "RINGTIME_MS",
    "PROGRESSTIME",
    "PROGRESSTIME_MS",
)

# An RTCP receiver report as captured in 01c (values of a lab run; the fake does not model
# RTP): To/From are filled with the channel's media addresses.
RTCP_RR_VALUES: tuple[Field, ...] = (
    ("RTT", "0.0000"),
    ("MES", "88.1"),
    ("SSRC", "0x00000000"),
    ("PT", "201(RR)"),
    ("ReportCount", "1"),
    ("Report0SourceSSRC", "0x00000000"),
    ("Report0FractionLost", "0"),
    ("Report0CumulativeLost", "0"),
    ("Report0HighestSequence", "0"),
    ("Report0SequenceNumberCycles", "0"),
    ("Report0IAJitter", "0"),
    ("Report0LSR", "0"),
    ("Report0DLSR", "0.0000"),
)

CALLING_PRES_ALLOWED = "0 (Presentation Allowed, Not Screened)"
ASTERISK_VERSION = "GIT-22-22.0.0-pre1-541-g69535d4837"
AMI_VERSION = "11.0.0"  # the banner's, 01a-01c
VERSION_BANNER_LINE = (
    f"Asterisk {ASTERISK_VERSION} built by root @ vm on a x86_64 running Linux on "
    "2026-11-22 09:06:18 UTC"
)

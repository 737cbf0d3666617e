"""The fake Asterisk's state: channels, bridges, scripted dial outcomes, a small dialplan.

Pure state and pure helpers (no I/O, no clock): ``asterisk_switch`` mutates these objects
and turns each change into the AMI events the real switch sends.

Invariants:
- A channel is identified by its ``uniqueid`` (epoch-style ``1795339557.35``, or the
  ``ChannelId`` an Originate asked for) and named like Asterisk names it:
  ``PJSIP/<endpoint>-<8 hex digits>`` from one switch-wide counter, ``Local/<exten>@<context>-
  <8 hex digits>;1`` / ``;2`` from another.
- Variable names are case-insensitive, as in Asterisk (``pbx_builtin_getvar_helper``); a
  channel look-up falls back to the globals.
- Dialplan functions are not variables: ``TALK_DETECT(set)``, ``CHANNEL(musicclass)`` and
  friends change channel state and never appear in a ``VarSet`` event (trace 03b).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from pbx_agent.testing.ami_templates import STATE_DESC, STATE_UP, ChannelSnapshot

# Speech detector defaults of TALK_DETECT (func_talkdetect.c): dsp_silence_threshold,
# dsp_talking_threshold, in ms. Trace 03a/03b: ChannelTalkingStop 2.5 s after speech ends.
DEFAULT_TALK_SILENCE_MS = 2500
DEFAULT_TALK_TALKING_MS = 160
# ChannelTalkingStart arrives about 20 ms after speech onset (03a: 1.038 s for 1.02 s).
TALK_ONSET_MS = 20


class Tech(StrEnum):
    PJSIP = "PJSIP"
    LOCAL = "Local"


class DialOutcome(StrEnum):
    """What a dialled endpoint does with an Originate (traces 07a-07e)."""

    ANSWER = "answer"  # 200 OK
    BUSY = "busy"  # 486: Reason 0, Hangup cause 17
    DECLINE = "decline"  # 603: Reason 0, Hangup cause 21
    NO_ANSWER = "no_answer"  # 180 and nothing more: Reason 3 at the Timeout, cause 19
    NO_SUCH_ENDPOINT = "no_such_endpoint"  # Reason 0, no channel at all


@dataclass(frozen=True, slots=True)
class AmdVerdict:
    """What ``AMD()`` concludes, and how long after it starts (traces 06a-06c, 05a)."""

    status: str
    cause: str
    after_s: float

    @classmethod
    def machine_long_greeting(cls, after_s: float = 1.88) -> AmdVerdict:
        return cls("MACHINE", "LONGGREETING-1500-1500", after_s)

    @classmethod
    def human(cls, after_s: float = 1.56) -> AmdVerdict:
        return cls("HUMAN", "HUMAN-800-800", after_s)

    @classmethod
    def initial_silence(cls, after_s: float = 2.5) -> AmdVerdict:
        return cls("MACHINE", "INITIALSILENCE-2500-2500", after_s)


@dataclass(frozen=True, slots=True)
class DialScript:
    """How an endpoint answers when the switch dials it (Originate or Dial)."""

    outcome: DialOutcome = DialOutcome.ANSWER
    # Ringing (DialState RINGING) before the outcome; 0 means no 180 at all (07a, 07b).
    # NO_ANSWER rings until the Originate's Timeout whatever this says.
    ring_s: float = 0.0
    # The AMD() verdict for this endpoint (an answered call whose dialplan runs AMD()).
    amd: AmdVerdict | None = None


@dataclass(frozen=True, slots=True)
class DialplanStep:
    application: str
    data: str = ""


@dataclass(frozen=True, slots=True)
class QueueMember:
    """A member of a queue for the ``Queue()`` dialplan application and ``QueueStatus``."""

    endpoint: str  # PJSIP endpoint name, e.g. "agent-1001"
    member_name: str = ""

    @property
    def interface(self) -> str:
        return f"PJSIP/{self.endpoint}"


class Dialplan:
    """Extensions as lists of steps, keyed by (context, exten). ``${VAR}`` in a step's data
    is replaced from the channel when the step runs."""

    def __init__(self) -> None:
        self._extensions: dict[tuple[str, str], tuple[DialplanStep, ...]] = {}

    def add(self, context: str, exten: str, steps: list[tuple[str, str]]) -> None:
        self._extensions[(context, exten)] = tuple(DialplanStep(app, data) for app, data in steps)

    def get(self, context: str, exten: str) -> tuple[DialplanStep, ...] | None:
        return self._extensions.get((context, exten))

    def __contains__(self, key: object) -> bool:
        return key in self._extensions


def lab_dialplan() -> Dialplan:
    """The self-contained contexts of the lab's extensions.conf (traces' ``config/``)."""
    plan = Dialplan()
    plan.add(
        "from-ua",
        "600",
        [
            ("NoOp", "simple call from ${CALLERID(num)}"),
            ("Answer", ""),
            ("Playback", "hello-world"),
            ("Hangup", ""),
        ],
    )
    plan.add("from-ua", "601", [("Answer", ""), ("Set", "TALK_DETECT(set)="), ("Wait", "25")])
    plan.add("from-ua", "602", [("Answer", ""), ("Wait", "30"), ("Hangup", "")])
    plan.add(
        "amd-test",
        "s",
        [
            ("NoOp", "AMD test on ${CHANNEL}"),
            ("AMD", ""),
            ("NoOp", "AMDSTATUS=${AMDSTATUS} AMDCAUSE=${AMDCAUSE}"),
            ("Hangup", ""),
        ],
    )
    plan.add("originate-test", "s", [("Answer", ""), ("Playback", "hello-world"), ("Hangup", "")])
    plan.add(
        "lab-spy",
        "whisper",
        [
            ("NoOp", "spy+whisper on ${SPYTARGET}"),
            ("ChanSpy", "${SPYTARGET},qwE"),
            ("Hangup", ""),
        ],
    )
    plan.add(
        "lab-spy",
        "listen",
        [
            ("NoOp", "listen-only spy on ${SPYTARGET}"),
            ("ChanSpy", "${SPYTARGET},qE"),
            ("Hangup", ""),
        ],
    )
    return plan


@dataclass(frozen=True, slots=True)
class TalkDetect:
    silence_ms: int = DEFAULT_TALK_SILENCE_MS
    talking_ms: int = DEFAULT_TALK_TALKING_MS


@dataclass(eq=False, slots=True)
class Bridge:
    uniqueid: str
    technology: str = "simple_bridge"
    members: list[Channel] = field(default_factory=list)
    # Once a spy attaches to a member, Asterisk no longer uses native RTP bridging (04a).
    native_allowed: bool = True


@dataclass(eq=False, slots=True)
class Channel:
    """One channel's state, as the AMI snapshot and the actions see it."""

    name: str
    tech: Tech
    endpoint: str
    uniqueid: str
    linkedid: str
    created_at: float
    state: int
    context: str
    exten: str
    priority: int = 1
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    language: str = "en"
    account_code: str = ""
    dnid: str = ""
    application: str = ""
    app_data: str = ""
    dialplan_steps: int = 0
    dialplan_generation: int = 0  # bumped by a Redirect: the old extension stops running
    # variable name (lower case) -> (name as set, value)
    variables: dict[str, tuple[str, str]] = field(default_factory=dict)
    music_class: str = "default"
    moh_suggest: str = "default"  # the endpoint's moh_suggest: the Hold event's MusicClass
    moh_class_playing: str | None = None
    holding: Channel | None = None  # the party this channel put on hold
    talk_detect: TalkDetect | None = None
    bridge: Bridge | None = None
    # The Dial pair: the channel running Dial()/Queue() owns it, the dialled one is its peer.
    dial_owner: bool = False
    dial_peer: Channel | None = None
    dial_started_at: float = 0.0
    answered_at: float | None = None
    queue: str | None = None
    queue_member: QueueMember | None = None
    queue_joined_at: float = 0.0
    local_partner: Channel | None = None
    spying_on: Channel | None = None
    spied_by: list[Channel] = field(default_factory=list)
    alive: bool = True
    hangup_requested: bool = False  # the channel is going away, the AGI may still run
    media_dead: bool = False  # the far end vanished without a BYE (trace 08c)
    amd: AmdVerdict | None = None
    bridge_call_id: str = ""  # BRIDGEPVTCALLID: the SIP Call-ID
    qos_reported: bool = False  # the RTPAUDIOQOS* VarSets were sent (once per channel)

    @property
    def is_up(self) -> bool:
        return self.state == STATE_UP

    @property
    def device(self) -> str:
        """The device name of DeviceStateChange (``PJSIP/alice``, ``Local/whisper@lab-spy``)."""
        return f"{self.tech.value}/{self.endpoint}"

    def snapshot(self) -> ChannelSnapshot:
        return ChannelSnapshot(
            channel=self.name,
            state=self.state,
            caller_num=self.caller_num,
            caller_name=self.caller_name,
            connected_num=self.connected_num,
            connected_name=self.connected_name,
            language=self.language,
            account_code=self.account_code,
            context=self.context,
            exten=self.exten,
            priority=self.priority,
            uniqueid=self.uniqueid,
            linkedid=self.linkedid,
        )

    def get_var(self, name: str) -> str | None:
        entry = self.variables.get(name.lower())
        return None if entry is None else entry[1]

    def put_var(self, name: str, value: str) -> None:
        self.variables[name.lower()] = (name, value)

    def peer(self) -> Channel | None:
        """The other party of this channel's two-party bridge."""
        if self.bridge is None:
            return None
        others = [member for member in self.bridge.members if member is not self]
        return others[0] if len(others) == 1 else None


_FUNCTION = re.compile(r"^([A-Z_][A-Z0-9_]*)\((.*)\)$", re.IGNORECASE)


def split_function(name: str) -> tuple[str, str] | None:
    """``CHANNEL(name)`` -> ("CHANNEL", "name"); a plain variable -> None."""
    match = _FUNCTION.match(name.strip())
    if match is None:
        return None
    return match.group(1).upper(), match.group(2)


def read_function(ch: Channel, function: str, argument: str) -> str | None:
    """The value of a dialplan function on ``ch``, or None when the fake does not know it."""
    tables: dict[str, dict[str, str]] = {
        "CHANNEL": {
            "name": ch.name,
            "uniqueid": ch.uniqueid,
            "linkedid": ch.linkedid,
            "state": STATE_DESC.get(ch.state, "Unknown"),
            "musicclass": ch.music_class,
            "language": ch.language,
            "accountcode": ch.account_code,
            "context": ch.context,
            "exten": ch.exten,
            "channeltype": ch.tech.value,
        },
        "CALLERID": {
            "num": ch.caller_num,
            "name": ch.caller_name,
            "all": f'"{ch.caller_name}" <{ch.caller_num}>',
            "dnid": ch.dnid,
        },
        "CONNECTEDLINE": {"num": ch.connected_num, "name": ch.connected_name},
    }
    return tables.get(function, {}).get(argument.strip().lower())


def builtin_variable(ch: Channel, name: str) -> str | None:
    """Variables Asterisk computes rather than stores (``${CHANNEL}``, ``${UNIQUEID}``...)."""
    values = {
        "CHANNEL": ch.name,
        "UNIQUEID": ch.uniqueid,
        "EXTEN": ch.exten,
        "CONTEXT": ch.context,
        "PRIORITY": str(ch.priority),
        "LANGUAGE": ch.language,
    }
    return values.get(name.upper())


def parse_talk_detect(value: str) -> TalkDetect:
    """``TALK_DETECT(set)=<silence ms>[,<talking ms>]``; empty means the defaults."""
    parts = [part.strip() for part in value.split(",")] if value.strip() else []
    silence = int(parts[0]) if parts and parts[0] else DEFAULT_TALK_SILENCE_MS
    talking = int(parts[1]) if len(parts) > 1 and parts[1] else DEFAULT_TALK_TALKING_MS
    return TalkDetect(silence_ms=silence, talking_ms=talking)


def separate_args(text: str, delim: str = ",") -> list[str]:
    """Asterisk's argument splitter (``__ast_app_separate_args`` in main/app.c, with
    ``remove_chars``): quotes group and are removed, a backslash makes the next character
    literal, parentheses and brackets nest. The fake splits what the daemon sends exactly
    as the real switch would, so an unescaped comma in a caller's name shows up in tests.
    """
    if not text:
        return []
    args: list[str] = []
    current: list[str] = []
    paren = bracket = 0
    quote = False
    i = 0
    while i < len(text):
        ch = text[i]
        i += 1
        if ch == '"' and delim != '"':
            quote = not quote
            continue
        if ch == "\\":
            if i < len(text):
                current.append(text[i])
                i += 1
            continue
        if ch == delim and not paren and not quote and not bracket:
            args.append("".join(current))
            current = []
            continue
        paren, bracket = _nest(ch, paren, bracket)
        current.append(ch)
    # The last argument, empty when the text ended with a delimiter (as in Asterisk).
    args.append("".join(current))
    return args


def _nest(ch: str, paren: int, bracket: int) -> tuple[int, int]:
    """Parentheses and brackets nest in Asterisk's splitter; a closer never goes below 0."""
    if ch == "(":
        return paren + 1, bracket
    if ch == ")":
        return max(0, paren - 1), bracket
    if ch == "[":
        return paren, bracket + 1
    if ch == "]":
        return paren, max(0, bracket - 1)
    return paren, bracket


def parse_caller_id(value: str) -> tuple[str, str]:
    """``"Dialer" <7000>`` -> ("Dialer", "7000"); ``7000`` -> ("", "7000")."""
    value = value.strip()
    match = re.match(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^<]*?))\s*<([^>]*)>\s*$', value)
    if match is None:
        return "", value
    name = match.group(1) if match.group(1) is not None else (match.group(2) or "")
    return name.replace('\\"', '"').strip(), match.group(3).strip()


_VAR_REF = re.compile(r"\$\{([^{}]*)\}")


def substitute(text: str, lookup: dict[str, str] | None, ch: Channel | None) -> str:
    """Replace ``${NAME}`` / ``${FUNC(arg)}`` (one level, no nesting) from a channel."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        if lookup is not None and expr in lookup:
            return lookup[expr]
        if ch is None:
            return ""
        func = split_function(expr)
        if func is not None:
            return read_function(ch, *func) or ""
        builtin = builtin_variable(ch, expr)
        if builtin is not None:
            return builtin
        return ch.get_var(expr) or ""

    return _VAR_REF.sub(one, text)

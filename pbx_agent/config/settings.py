"""``Config``: the whole validated configuration of one daemon, as a frozen model.

Sections mirror the TOML file (see ``config/pbx-agent.toml`` for every key with its meaning).
The service standards are kept as the site's *partial* overrides (``standards``, ``queues``,
``dialed``); ``Config.standards_for`` returns the resolved ``Standards`` for a call.

Invariants of a ``Config`` instance:
- every override layer resolves to valid ``Standards`` (profile <- site <- dialled number
  <- queue), checked at construction with problems keyed by the layer they come from
  (``standards.hold...``, ``queues.support.hold...``), so no call ever meets an invalid rule;
- all resolutions are computed once, at construction: ``standards_for`` is a dict lookup;
- ``pbx.kind`` names a PBX whose section exists (filled with defaults if the kind is chosen
  without one) and whose secret is set.
"""

from __future__ import annotations

import copy
import ipaddress
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pbx_agent.config.profiles import PROFILE_SITE_DEFAULTS, PROFILES
from pbx_agent.config.standards import Standards, fill_company, reference_problems
from pbx_agent.config.types import (
    Host,
    HostPort,
    Ipv4,
    Name,
    PortRange,
    PromptKey,
    Secret,
    SubProblem,
    custom_error,
    key_part,
    problems_error,
)
from pbx_agent.config.validation import join_paths, sub_problems

ProfileName = Literal["ru", "zh"]
PbxKind = Literal["simulated", "asterisk", "freeswitch"]
Port = Annotated[int, Field(ge=1, le=65535)]
Timeout = Annotated[float, Field(gt=0, le=600)]
DialplanName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]+$")]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteSettings(_Section):
    """Who the site is: its standards profile, time zone, phone-number region, company name."""

    profile: ProfileName = "ru"
    # Defaults depend on the profile (ru: Europe/Moscow, RU; zh: Asia/Shanghai, CN).
    timezone: str = "Europe/Moscow"
    default_region: str = "RU"
    # Fills "{company}" in the phrases; empty drops it ("компания оставляет ...").
    company_name: Annotated[str, StringConstraints(max_length=100)] = ""

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            defaults = PROFILE_SITE_DEFAULTS.get(str(data.get("profile", "ru")), {})
            return {**defaults, **data}
        return data

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        # A region alone ("Europe") is a folder of the zone database (IsADirectoryError);
        # an overlong name is ENAMETOOLONG: both OSError, both a typo to report.
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise custom_error(
                "timezone", "unknown time zone", "an IANA time zone such as 'Europe/Moscow'"
            ) from exc
        return value

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise custom_error(
                "region", "unknown phone-number region", "a two-letter region such as 'RU' or 'CN'"
            )
        return value.upper()

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


_AMBIGUOUS_KIND = "(not set)"


class PbxSettings(_Section):
    """Which PBX the daemon drives. Defaults to the section that is configured, else simulated."""

    kind: PbxKind = "simulated"

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_needed(cls, value: Any) -> Any:
        if value == _AMBIGUOUS_KIND:
            raise custom_error(
                "pbx_kind",
                "both [asterisk] and [freeswitch] are configured: say which one is used",
                "'asterisk' or 'freeswitch'",
            )
        return value


class _Connection(_Section):
    connect_timeout_s: Timeout = 5
    action_timeout_s: Timeout = 5
    ping_interval_s: Timeout = 20
    ping_timeout_s: Timeout = 5
    reconnect_initial_s: Timeout = 0.5
    reconnect_max_s: Timeout = 30

    @model_validator(mode="after")
    def _consistent_timers(self) -> Self:
        problems: list[SubProblem] = []
        if self.ping_timeout_s >= self.ping_interval_s:
            problems.append(
                SubProblem(
                    "ping_timeout_s",
                    f"{self.ping_timeout_s:g}",
                    f"< ping_interval_s ({self.ping_interval_s:g})",
                    "a ping would still be pending when the next one is due",
                )
            )
        if self.reconnect_initial_s > self.reconnect_max_s:
            problems.append(
                SubProblem(
                    "reconnect_initial_s",
                    f"{self.reconnect_initial_s:g}",
                    f"<= reconnect_max_s ({self.reconnect_max_s:g})",
                    "the first reconnect delay exceeds the cap",
                )
            )
        if problems:
            raise problems_error(problems)
        return self


class AsteriskContexts(_Section):
    """Dialplan contexts the daemon sends channels to (shipped in the sample dialplan)."""

    hold_program: DialplanName = "pbxagent-hold"
    whisper: DialplanName = "pbxagent-whisper"
    callback: DialplanName = "pbxagent-callback"
    linger: DialplanName = "pbxagent-linger"
    requeue: DialplanName = "pbxagent-requeue"
    ivr: DialplanName = "pbxagent-ivr"


class AsteriskSettings(_Connection):
    """AMI and FastAGI access to an Asterisk."""

    ami_host: Host = "127.0.0.1"
    ami_port: Port = 5038
    username: Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\s]+$")] = "pbx-agent"
    secret: Secret = SecretStr("")
    fastagi_bind: HostPort = "127.0.0.1:4573"
    # The daemon's AudioSocket server: callback legs stream their audio here for machine
    # detection (standards.amd.engine = "daemon"). Asterisk connects to this address.
    audiosocket_bind: HostPort = "127.0.0.1:9092"
    # How a callback is dialled: {number} is the number without '+', {e164} with it.
    callback_channel: Annotated[str, StringConstraints(pattern=r"^[^\s{}]+\{(number|e164)\}")] = (
        "PJSIP/{number}@trunk"
    )
    # The caller id callbacks present to the customer.
    callback_caller_id: Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f]{1,80}$")] = (
        '"Call centre" <0>'
    )
    contexts: AsteriskContexts = AsteriskContexts()
    # Who sets TALK_DETECT on the parties: "ami" (the daemon, by Setvar, when they connect) or
    # "dialplan" (the site, with [pbxagent-talk-detect] and the same two values below).
    talk_detect: Literal["ami", "dialplan"] = "ami"
    # TALK_DETECT(set)=<silence ms>,<energy threshold>: how fast "stopped talking" is seen.
    talk_detect_silence_ms: Annotated[int, Field(ge=50, le=10000)] = 300
    talk_detect_energy_threshold: Annotated[int, Field(ge=1, le=32767)] = 256
    # Where MixMonitor writes the recordings of R4 scripts (a directory on the Asterisk host).
    recording_dir: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = (
        "/var/spool/asterisk/monitor/pbx-agent"
    )


# standards.callbacks keys the scheduler and dialers take from the site only (the rest:
# enabled = false, the drop causes and cancel_on_inbound, are read per call). one_way_audio:
# the scheduler decides with the site's whether a one-way-audio drop is dialled.
SITE_WIDE_CALLBACK_KEYS = (
    "one_way_audio",
    "max_attempts",
    "window_h",
    "attempt_offsets_s",
    "ring_time_s",
    "quiet_hours",
    "max_concurrent",
    "promised_default_deadline_h",
    "target",
    "greeting_prompt",
)


class FreeswitchSettings(_Connection):
    """Inbound ESL and the outbound-socket server for a FreeSWITCH."""

    esl_host: Host = "127.0.0.1"
    esl_port: Port = 8021
    password: Secret = SecretStr("")
    outbound_bind: HostPort = "127.0.0.1:8084"
    # FreeSWITCH sends HEARTBEAT every 20 s; nothing for this long means the link is dead.
    heartbeat_timeout_s: Timeout = 60
    # Channel variable naming the hook an outbound-socket session runs.
    hook_variable: DialplanName = "pbx_agent_hook"
    ivr_extension: DialplanName = "pbxagent_ivr"
    ivr_context: DialplanName = "default"
    # FreeSWITCH's own sounds directory ($${sounds_dir}): prompts are played from
    # <sounds_dir>/<prompts.pbx_prefix.freeswitch><profile>/<key, '.' as '-'>.wav, by absolute
    # path
    # (uuid_displace finds a displacement to stop by its absolute path).
    sounds_dir: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = (
        "/usr/share/freeswitch/sounds"
    )
    # The extensions of dialplan/freeswitch/pbx-agent-standards.xml the daemon transfers legs
    # to (uuid_transfer <uuid> <extension> XML <dialplan_context>).
    dialplan_context: DialplanName = "default"
    linger_extension: DialplanName = "pbxagent_linger"
    requeue_extension: DialplanName = "pbxagent_requeue"
    callback_extension: DialplanName = "pbxagent_callback"
    callback_connect_extension: DialplanName = "pbxagent_callback_connect"
    # How machine detection hears an answered callback (docs/amd.md, docs/freeswitch.md):
    # "unicast": the leg parks in callback_audio_extension and core FreeSWITCH streams its
    # audio to the daemon, which runs the same detector as on Asterisk; "talk_events": the
    # leg is bridged to a listener in callback_extension and the detector's rules run on
    # the switch's TALK/NOTALK events (no audio: it calls far more people machines).
    amd_audio: Literal["unicast", "talk_events"] = "unicast"
    callback_audio_extension: DialplanName = "pbxagent_callback_audio"
    # The daemon's end of the streams: the address it binds, one port of this range per leg
    # being judged (a port is held for the few seconds of detection) ...
    unicast_bind: Host = "127.0.0.1"
    unicast_ports: PortRange = "9100-9299"
    # ... the address FreeSWITCH sends to (the daemon as the switch reaches it) ...
    unicast_address: Ipv4 = "127.0.0.1"
    # ... and the switch's own end (local-ip of the unicast command): datagrams must come
    # from it. 0.0.0.0 lets the switch pick, and then any source is taken for the first.
    unicast_switch_ip: Ipv4 = "127.0.0.1"
    # How a callback is dialled: {number} is the number without '+', {e164} with it.
    callback_dial_string: Annotated[
        str, StringConstraints(pattern=r"^[^\s{}]*\{(number|e164)\}")
    ] = "sofia/gateway/trunk/{number}"
    callback_caller_id_number: Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{1,20}$")] = "0"
    callback_caller_id_name: Annotated[str, StringConstraints(max_length=64)] = "Call centre"
    # Talk detection (TALK/NOTALK, trace 04): a NOTALK followed by TALK within this long is
    # one of the VAD's 0.8 s blips, not the end of speech ...
    talk_debounce_ms: Annotated[int, Field(ge=0, le=1000)] = 200
    # ... and the final NOTALK comes this long after the speech really ended (0-800 ms).
    notalk_lag_ms: Annotated[int, Field(ge=0, le=800)] = 400
    recording_dir: Annotated[str, StringConstraints(pattern=r"^/[^\s]*$")] = (
        "/var/lib/freeswitch/recordings/pbx-agent"
    )

    @model_validator(mode="after")
    def _reachable_stream(self) -> Self:
        # A socket bound to loopback cannot send to another host: the stream would never
        # come, and every callback would wait for the no-audio default.
        switch_loopback = ipaddress.IPv4Address(self.unicast_switch_ip).is_loopback
        if switch_loopback and not ipaddress.IPv4Address(self.unicast_address).is_loopback:
            raise problems_error(
                [
                    SubProblem(
                        "unicast_switch_ip",
                        self.unicast_switch_ip,
                        "the switch's own address (or 0.0.0.0) when unicast_address is "
                        f"another host ({self.unicast_address})",
                        "FreeSWITCH would send from loopback to another host: nothing arrives",
                    )
                ]
            )
        return self


class AgentsSettings(_Section):
    """How the daemon recognises agent legs and their tiers."""

    endpoint_patterns: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=lambda: ["PJSIP/agent-*"]
    )
    role_variable: DialplanName = "PBXAGENT_ROLE"
    tier_variable: DialplanName = "PBXAGENT_TIER"
    agent_variable: DialplanName = "PBXAGENT_AGENT"
    topic_variable: DialplanName = "PBXAGENT_TOPIC"
    default_tier: Name = "specialist"
    # agent id -> tier name (a key of standards.hold.tier_limits_s).
    tiers: dict[str, Name] = Field(default_factory=dict)


_STORE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class StoreSettings(_Section):
    """Where call history, callbacks and flags live."""

    url: str = "sqlite+aiosqlite:///./var/pbx-agent.sqlite3"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in _STORE_SCHEMES or not rest:
            raise custom_error(
                "store_url",
                "unsupported database URL",
                "a URL starting with " + " or ".join(f"{s}://" for s in _STORE_SCHEMES),
            )
        return value


class SchedulerSettings(_Section):
    """How the callback scheduler runs (the callback rules are standards.callbacks)."""

    # How often due callbacks are looked for (sooner when one is scheduled).
    poll_interval_s: Annotated[float, Field(ge=0.05, le=60)] = 1.0
    # An attempt in flight is leased to its daemon for this long, renewed every third of it;
    # a daemon that dies leaves its attempt to be settled by another one after the lease.
    lease_s: Annotated[float, Field(ge=1, le=3600)] = 60.0


class LoggingSettings(_Section):
    # "auto": console on a terminal, JSON otherwise.
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class MetricsSettings(_Section):
    enabled: bool = True
    bind: HostPort = "127.0.0.1:9464"


class HooksSettings(_Section):
    # A dialplan hook (FastAGI, outbound socket) not answered in time takes its safe default.
    default_deadline_ms: Annotated[int, Field(ge=1, le=30000)] = 500
    # Hook connections served at once (each server: FastAGI, outbound socket); one more is
    # refused, and the dialplan goes on as without the daemon (AGISTATUS=FAILURE / no socket).
    max_sessions: Annotated[int, Field(ge=1, le=100000)] = 2000


class PbxPrefixes(_Section):
    """How each PBX names the prompt files (prefix + profile + '/' + key)."""

    asterisk: str = "pbx-agent/"
    freeswitch: str = "pbx-agent/"
    simulated: str = ""


class PromptsSettings(_Section):
    sounds_dir: Path = Path("./var/sounds")
    pbx_prefix: PbxPrefixes = PbxPrefixes()
    # prompt key -> file name, for sites with their own recordings.
    files: dict[PromptKey, Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class PhraseConflict:
    """A layer that words a phrase key differently from the site."""

    key: str
    layer: str  # "queues.after_sales" / "dialed.8800..."
    text: str


StandardsOverride = dict[str, Any]
_LayerKey = tuple[str | None, str | None]


def merge_layers(profile: str, company: str, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's data with the override layers merged in (later wins), company filled in."""
    merged: dict[str, Any] = copy.deepcopy(PROFILES[profile])
    for layer in layers:
        merged = deep_merge(merged, layer)
    phrases = merged.get("phrases")
    if isinstance(phrases, dict):
        merged["phrases"] = {
            key: fill_company(text, company) if isinstance(text, str) else text
            for key, text in phrases.items()
        }
    return merged


def resolve_standards(profile: str, company: str, *layers: Mapping[str, Any]) -> Standards:
    """Merge the profile with the override layers (later wins) and validate the result.

    Raises pydantic's ``ValidationError``; keys in it are relative to ``Standards``.
    """
    return Standards.model_validate(merge_layers(profile, company, *layers))


def standards_problems(profile: str, company: str, *layers: Mapping[str, Any]) -> list[SubProblem]:
    """Every problem of the standards these layers resolve to (keys relative to Standards)."""
    merged = merge_layers(profile, company, *layers)
    try:
        Standards.model_validate(merged)
    except ValidationError as exc:
        found = sub_problems(exc, Standards)
        seen = {(p.path, p.message) for p in found}
        return found + [p for p in reference_problems(merged) if (p.path, p.message) not in seen]
    return []


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) replaces the base's."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Config(_Section):
    """The validated configuration; see the module docstring for its invariants."""

    site: SiteSettings = SiteSettings()
    pbx: PbxSettings = PbxSettings()
    asterisk: AsteriskSettings | None = None
    freeswitch: FreeswitchSettings | None = None
    agents: AgentsSettings = AgentsSettings()
    store: StoreSettings = StoreSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    logging: LoggingSettings = LoggingSettings()
    metrics: MetricsSettings = MetricsSettings()
    hooks: HooksSettings = HooksSettings()
    prompts: PromptsSettings = PromptsSettings()
    # Shadow mode: decide and log everything, command nothing.
    shadow: bool = False
    # The standards layers come last so their validators can see the site.
    standards: StandardsOverride = Field(default_factory=dict)
    dialed: dict[str, StandardsOverride] = Field(default_factory=dict)
    queues: dict[str, StandardsOverride] = Field(default_factory=dict)

    _resolved: dict[_LayerKey, Standards] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_pbx_kind(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        if isinstance(info.context, dict):
            # Lets the standards layers be checked even when [site] has an unrelated problem.
            info.context[_RAW_SITE] = data.get("site")
        pbx = data.get("pbx")
        if pbx is not None and (not isinstance(pbx, Mapping) or "kind" in pbx):
            kind = pbx.get("kind") if isinstance(pbx, Mapping) else None
            if kind in ("asterisk", "freeswitch") and data.get(kind) is None:
                return {**data, kind: {}}
            return data
        configured = [name for name in ("asterisk", "freeswitch") if data.get(name) is not None]
        if len(configured) > 1:
            kind = _AMBIGUOUS_KIND  # reported by PbxSettings, alongside every other problem
        else:
            kind = configured[0] if configured else "simulated"
        return {**data, "pbx": {**(pbx or {}), "kind": kind}}

    @field_validator("standards")
    @classmethod
    def _site_layer_valid(cls, value: StandardsOverride, info: ValidationInfo) -> StandardsOverride:
        site = _layer_site(info)
        problems = standards_problems(*site, value) if site is not None else []
        if problems:
            raise problems_error(problems)
        return value

    @field_validator("dialed", "queues")
    @classmethod
    def _layers_valid(
        cls, value: dict[str, StandardsOverride], info: ValidationInfo
    ) -> dict[str, StandardsOverride]:
        site = _layer_site(info)
        if site is None:
            return value
        base = info.data.get("standards", {})
        problems: list[SubProblem] = []
        valid: list[str] = []
        for name, layer in value.items():
            found = standards_problems(*site, base, layer)
            problems.extend(_prefixed(found, name))
            if not found:
                valid.append(name)
        # A dialled number's and a queue's overrides meet on a call to that number in that queue.
        dialed = info.data.get("dialed", {}) if info.field_name == "queues" else {}
        for number, dialed_layer in dialed.items():
            for name in valid:
                problems.extend(
                    SubProblem(p.path, p.value, p.accepted, f"{p.message} (with dialed.{number})")
                    for p in _prefixed(
                        standards_problems(*site, base, dialed_layer, value[name]), name
                    )
                )
        if problems:
            raise problems_error(problems)
        return value

    @model_validator(mode="after")
    def _resolve_and_cross_check(self) -> Self:
        site = self.site
        resolved: dict[_LayerKey, Standards] = {
            (None, None): resolve_standards(site.profile, site.company_name, self.standards)
        }
        for number, layer in self.dialed.items():
            resolved[None, number] = resolve_standards(
                site.profile, site.company_name, self.standards, layer
            )
        for name, layer in self.queues.items():
            resolved[name, None] = resolve_standards(
                site.profile, site.company_name, self.standards, layer
            )
            for number, dialed_layer in self.dialed.items():
                resolved[name, number] = resolve_standards(
                    site.profile, site.company_name, self.standards, dialed_layer, layer
                )
        self._resolved = resolved
        problems = self._cross_section_problems()
        if problems:
            raise problems_error(problems)
        return self

    def _cross_section_problems(self) -> list[SubProblem]:
        return _unique(
            [
                *self._missing_secret_problems(),
                *self._tier_problems(),
                *self._prompt_file_problems(),
                *self._phrase_conflict_problems(),
                *self._site_wide_amd_problems(),
                *self._site_wide_callback_problems(),
                *self._site_wide_route_deadline_problems(),
                *self._legacy_talk_over_problems(),
            ]
        )

    def _layers(self) -> list[tuple[str, Standards]]:
        """(key prefix, resolved standards) of every queue and dialled-number layer."""
        layers = [(f"queues.{key_part(q)}", self._resolved[q, None]) for q in sorted(self.queues)]
        layers += [(f"dialed.{key_part(d)}", self._resolved[None, d]) for d in sorted(self.dialed)]
        return layers

    def _site_wide_amd_problems(self) -> list[SubProblem]:
        """standards.amd is the site's alone: the dialer and the AudioSocket detector are
        built once from it at start-up, so a queue's or number's own would never be used."""
        site = self._resolved[None, None].amd
        layers = self._layers()
        return [
            SubProblem(
                f"{layer}.amd",
                "an override",
                "standards.amd only (it applies to every call the daemon places)",
                "answering-machine detection is site-wide, so this override would never be used",
            )
            for layer, standards in layers
            if standards.amd != site
        ]

    def _site_wide_callback_problems(self) -> list[SubProblem]:
        """The callback scheduler and dialer are built once from the site's
        ``standards.callbacks``: a queue or number may turn callbacks off and choose which
        drops call for one (read per call), not how they are dialled."""
        site = self._resolved[None, None].callbacks
        layers = self._layers()
        problems: list[SubProblem] = []
        for layer, standards in layers:
            own = standards.callbacks
            keys = [k for k in SITE_WIDE_CALLBACK_KEYS if getattr(own, k) != getattr(site, k)]
            if own.enabled and not site.enabled:
                keys.insert(0, "enabled")
            problems.extend(
                SubProblem(
                    f"{layer}.callbacks.{key}",
                    "an override",
                    f"standards.callbacks.{key} only (the scheduler dials every callback "
                    "with the site's settings)",
                    "callbacks are scheduled and dialled site-wide, so this override would "
                    "never be used",
                )
                for key in keys
            )
        return problems

    def _legacy_talk_over_problems(self) -> list[SubProblem]:
        """standards.quality.talk_over_s, from configurations written before it was found
        unread, may only repeat the site's dead_air.talk_over_s (the threshold used)."""
        site = self._resolved[None, None]
        talk_over = site.quality.talk_over_s
        if talk_over is None or talk_over == site.dead_air.talk_over_s:
            return []
        return [
            SubProblem(
                "standards.quality.talk_over_s",
                f"{talk_over:g}",
                f"standards.dead_air.talk_over_s ({site.dead_air.talk_over_s:g}), the threshold "
                "the daemon uses: set that one and remove this key",
                "this key was never read and differs from the talk-over threshold",
            )
        ]

    def _site_wide_route_deadline_problems(self) -> list[SubProblem]:
        """The route hook answers within one deadline, the site's (the hook servers enforce
        it for every call): a queue's or number's own would never be used."""
        site = self._resolved[None, None].night_routing.deadline_ms
        layers = self._layers()
        return [
            SubProblem(
                f"{layer}.night_routing.deadline_ms",
                f"{standards.night_routing.deadline_ms}",
                "standards.night_routing.deadline_ms only (the route hook has one deadline)",
                "the route hook's deadline is site-wide, so this override would never be used",
            )
            for layer, standards in layers
            if standards.night_routing.deadline_ms != site
        ]

    def phrase_texts(self) -> tuple[dict[str, str], list[PhraseConflict]]:
        """Every phrase of the site's standards and of each queue / dialled-number layer,
        by key, with the keys whose text differs between layers (one file cannot say both)."""
        texts: dict[str, str] = dict(self._resolved[None, None].phrases)
        conflicts: list[PhraseConflict] = []
        layers = self._layers()
        for layer, standards in layers:
            for key, text in standards.phrases.items():
                if key not in texts:
                    texts[key] = text
                elif texts[key] != text:
                    conflicts.append(PhraseConflict(key, layer, text))
        return dict(sorted(texts.items())), conflicts

    def _phrase_conflict_problems(self) -> list[SubProblem]:
        return [
            SubProblem(
                f"{c.layer}.phrases.{key_part(c.key)}",
                c.text,
                "the site's text, or a key of its own referenced by the layer's rule",
                "the switch plays one file per key, so this layer's text would never be heard",
            )
            for c in self.phrase_texts()[1]
        ]

    def _missing_secret_problems(self) -> list[SubProblem]:
        asterisk_secret = self.asterisk.secret if self.asterisk is not None else SecretStr("")
        freeswitch_password = (
            self.freeswitch.password if self.freeswitch is not None else SecretStr("")
        )
        required = {
            "asterisk": ("asterisk.secret", asterisk_secret, "the AMI user's secret"),
            "freeswitch": ("freeswitch.password", freeswitch_password, "the ESL password"),
        }
        if self.pbx.kind not in required:
            return []
        key, secret, what = required[self.pbx.kind]
        if secret.get_secret_value():
            return []
        env_name = "PBX_AGENT_" + key.upper().replace(".", "__")
        return [
            SubProblem(
                key,
                "(empty)",
                f"{what} (or {env_name})",
                f"required when pbx.kind is '{self.pbx.kind}'",
            )
        ]

    def _tier_problems(self) -> list[SubProblem]:
        """Agents' tiers must have a hold limit in every layer a call can resolve to. A
        layer with the site's very tiers is the site's problem, said once."""
        problems: list[SubProblem] = []
        site_tiers = set(self._resolved[None, None].hold.tier_limits_s)
        for (queue, number), standards in self._resolved.items():
            if number is not None and queue is not None:
                continue
            tiers = standards.hold.tier_limits_s
            if (queue, number) != (None, None) and set(tiers) == site_tiers:
                continue
            where = f"queues.{queue}" if queue else f"dialed.{number}" if number else "standards"
            accepted = f"a tier of {where}.hold.tier_limits_s: " + ", ".join(sorted(tiers))
            assigned = [("agents.default_tier", self.agents.default_tier)]
            assigned += [
                (f"agents.tiers.{key_part(a)}", t) for a, t in sorted(self.agents.tiers.items())
            ]
            problems.extend(
                SubProblem(key, tier, accepted, "unknown tier")
                for key, tier in assigned
                if tier not in tiers
            )
        return problems

    def _prompt_file_problems(self) -> list[SubProblem]:
        phrases = self._resolved[None, None].phrases
        return [
            SubProblem(
                f"prompts.files.{key_part(key)}",
                key,
                "a key of standards.phrases",
                f"no phrase '{key}' to record a file for",
            )
            for key in sorted(self.prompts.files)
            if key not in phrases
        ]

    def standards_for(self, queue: str | None = None, dialed: str | None = None) -> Standards:
        """The resolved standards for a call in ``queue`` to ``dialed`` (either may be None).

        Resolution order: profile <- site ``standards`` <- ``dialed[number]`` <- ``queues[name]``.
        A queue or number without overrides gets the site's standards.
        """
        key = (queue if queue in self.queues else None, dialed if dialed in self.dialed else None)
        return self._resolved[key]


_RAW_SITE = "raw_site"


def _layer_site(info: ValidationInfo) -> tuple[str, str] | None:
    """(profile, company name) to resolve standards layers with, if they can be known."""
    site = info.data.get("site")
    if isinstance(site, SiteSettings):
        return site.profile, site.company_name
    raw = info.context.get(_RAW_SITE) if isinstance(info.context, dict) else None
    if raw is None:
        raw = {}
    if isinstance(raw, Mapping):
        profile = raw.get("profile", "ru")
        company = raw.get("company_name", "")
        if isinstance(profile, str) and profile in PROFILES and isinstance(company, str):
            return profile, company
    return None


def _prefixed(problems: list[SubProblem], name: str) -> list[SubProblem]:
    return [
        SubProblem(join_paths(key_part(name), p.path), p.value, p.accepted, p.message)
        for p in problems
    ]


def _unique(problems: list[SubProblem]) -> list[SubProblem]:
    return list(dict.fromkeys(problems))

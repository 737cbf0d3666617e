"""Check a configuration against the dialplan it will meet (``check-config --dialplan DIR``).

The daemon and the switch's dialplan name each other in a few places; a mismatch there does
not stop the daemon from starting, it silently breaks a rule on live calls. This module reads
the dialplan files (it never talks to a switch) and reports, as configuration problems:

Asterisk (``*.conf``):
- a context the configuration sends channels to (``[asterisk.contexts]``) that no file defines;
- an ``AGI(agi://host:port/<hook>)`` naming a hook the daemon does not serve, or a port other
  than ``asterisk.fastagi_bind``'s;
- a feature name of ``standards.feature_codes`` (any queue or dialled number) with no
  ``[applicationmap]`` entry, or missing from the ``pbxagent`` feature group that
  ``DYNAMIC_FEATURES`` names, so the agents could not press it.

FreeSWITCH (``*.xml``):
- a ``pbx_agent_hook`` naming a hook the daemon does not serve, a ``socket`` to a port other
  than ``freeswitch.outbound_bind``'s;
- no extension ``freeswitch.ivr_extension`` in the context ``freeswitch.ivr_context``, or
  none of the extensions the daemon transfers legs to (``linger_extension``,
  ``requeue_extension``, ``callback_extension``, ``callback_audio_extension`` unless
  ``freeswitch.amd_audio = "talk_events"``, and ``callback_connect_extension``) in
  ``freeswitch.dialplan_context``.

``DIR`` is either one switch's folder or the project's ``dialplan/`` with ``asterisk/`` and
``freeswitch/`` inside; the configuration's ``pbx.kind`` says which switch is checked (the
built-in simulator is an Asterisk).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from pbx_agent.config import Config, ConfigProblem
from pbx_agent.config.settings import AsteriskSettings, FreeswitchSettings
from pbx_agent.config.types import split_host_port

FEATURE_GROUP = "pbxagent"
_SECTION = re.compile(r"^\s*\[([^\]]+)\]")
_EXTEN = re.compile(r"^\s*(exten|same)\s*=>", re.IGNORECASE)
_AGI = re.compile(r"AGI\(\s*agi://([^/,)\s]+)/([A-Za-z0-9_]+)", re.IGNORECASE)
_MAPPING = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=>\s*(\S*)")


def served_hooks() -> frozenset[str]:
    """The dialplan hooks the daemon answers (FastAGI and the outbound socket alike)."""
    # Imported here: the hook modules pull in the adapters and services.
    from pbx_agent.hooks.entry import HOOK_NAME as ENTRY  # noqa: PLC0415
    from pbx_agent.hooks.route import HOOK_NAME as ROUTE  # noqa: PLC0415
    from pbx_agent.pbx.asterisk_hold import HOOK_NAME as HOLD  # noqa: PLC0415
    from pbx_agent.services.callbacks import PROMISE_HOOK  # noqa: PLC0415

    return frozenset({ENTRY, ROUTE, HOLD, PROMISE_HOOK})


@dataclass(frozen=True, slots=True)
class _Line:
    path: Path
    number: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.number}"


def check_dialplan(config: Config, directory: Path) -> list[ConfigProblem]:
    """Every mismatch between ``config`` and the dialplan files under ``directory``."""
    if not directory.is_dir():
        return [
            ConfigProblem(
                "--dialplan", str(directory), "a folder of dialplan files", "no such folder"
            )
        ]
    if config.pbx.kind == "freeswitch":
        folder = directory / "freeswitch" if (directory / "freeswitch").is_dir() else directory
        return _check_freeswitch(config.freeswitch or FreeswitchSettings(), folder, config)
    folder = directory / "asterisk" if (directory / "asterisk").is_dir() else directory
    return _check_asterisk(config.asterisk or AsteriskSettings(), folder, config)


# ---------------------------------------------------------------------- Asterisk


def _conf_lines(folder: Path) -> list[list[_Line]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and ".conf" in p.name)
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        out.append(
            [_Line(path, n, line.split(";", 1)[0]) for n, line in enumerate(text.splitlines(), 1)]
        )
    return out


@dataclass(slots=True)
class _AsteriskFiles:
    contexts: set[str]
    agi_calls: list[tuple[_Line, str, str]]
    features: set[str]  # [applicationmap] entries
    groups: dict[str, set[str]]  # feature groups and their members


def _scan_asterisk(files: Iterable[list[_Line]]) -> _AsteriskFiles:
    found = _AsteriskFiles(set(), [], set(), {})
    for lines in files:
        is_extensions = any(_EXTEN.match(line.text) for line in lines)
        section = ""
        for line in lines:
            if match := _SECTION.match(line.text):
                section = match.group(1).strip()
                if is_extensions:
                    found.contexts.add(section)
                continue
            found.agi_calls.extend((line, hp, hook) for hp, hook in _AGI.findall(line.text))
            mapping = None if is_extensions else _MAPPING.match(line.text)
            if mapping is None:
                continue
            name, value = mapping.groups()
            if section == "applicationmap":
                found.features.add(name)
            elif section not in ("general", "featuremap") and not value:
                found.groups.setdefault(section, set()).add(name)
    return found


def _check_asterisk(
    settings: AsteriskSettings, folder: Path, config: Config
) -> list[ConfigProblem]:
    files = _conf_lines(folder)
    if not files:
        return [
            ConfigProblem(
                "--dialplan", str(folder), "a folder with Asterisk *.conf files", "no .conf files"
            )
        ]
    found = _scan_asterisk(files)
    problems: list[ConfigProblem] = []
    defined = ", ".join(sorted(found.contexts)) or "none"
    for key, context in settings.contexts.model_dump().items():
        if context not in found.contexts:
            problems.append(
                ConfigProblem(
                    f"asterisk.contexts.{key}",
                    context,
                    f"a context defined in {folder}: {defined}",
                    "the daemon sends channels to this context, but no dialplan file defines it",
                )
            )
    problems += _agi_problems(found.agi_calls, settings.fastagi_bind)
    problems += _feature_problems(config, found.features, found.groups.get(FEATURE_GROUP), folder)
    return problems


def _agi_problems(
    calls: Iterable[tuple[_Line, str, str]], fastagi_bind: str
) -> list[ConfigProblem]:
    hooks = served_hooks()
    bind_host, bind_port = split_host_port(fastagi_bind)
    problems = []
    for line, host_port, hook in calls:
        if hook not in hooks:
            problems.append(
                ConfigProblem(
                    line.where,
                    hook,
                    "a hook the daemon serves: " + ", ".join(sorted(hooks)),
                    "the dialplan calls a FastAGI hook the daemon does not serve",
                )
            )
        host, _, port = host_port.rpartition(":")
        port_number = int(port) if port.isdigit() else 4573  # FastAGI's default port
        if port_number != bind_port or (
            bind_host not in ("0.0.0.0", "::", "") and host.strip("[]") != bind_host  # noqa: S104
        ):
            problems.append(
                ConfigProblem(
                    line.where,
                    host_port,
                    f"the address of asterisk.fastagi_bind ({fastagi_bind})",
                    "the dialplan's AGI address is not where the daemon listens",
                )
            )
    return problems


def _feature_problems(
    config: Config, mapped: set[str], group: set[str] | None, folder: Path
) -> list[ConfigProblem]:
    wanted: dict[str, str] = {}
    layers = [("standards", config.standards_for())]
    layers += [(f"queues.{q}", config.standards_for(q, None)) for q in sorted(config.queues)]
    layers += [(f"dialed.{d}", config.standards_for(None, d)) for d in sorted(config.dialed)]
    for layer, standards in layers:
        for feature in standards.feature_codes:
            wanted.setdefault(feature, layer)
    problems = []
    for feature, layer in sorted(wanted.items()):
        if feature not in mapped:
            problems.append(
                ConfigProblem(
                    f"{layer}.feature_codes.{feature}",
                    feature,
                    f"a feature of [applicationmap] in {folder}",
                    "agents cannot press this feature: no application-map entry raises it",
                )
            )
        elif group is not None and feature not in group:
            problems.append(
                ConfigProblem(
                    f"{layer}.feature_codes.{feature}",
                    feature,
                    f"a member of the [{FEATURE_GROUP}] feature group",
                    f"DYNAMIC_FEATURES={FEATURE_GROUP} does not give agents this feature",
                )
            )
    return problems


# ---------------------------------------------------------------------- FreeSWITCH


@dataclass(slots=True)
class _FreeswitchFiles:
    extensions: dict[str, set[str]]  # context ("" for bare extension files) -> names
    hooks: list[tuple[str, str]]  # (file, hook)
    sockets: list[tuple[str, str]]  # (file, host:port)
    problems: list[ConfigProblem]


def _scan_freeswitch(files: Iterable[Path], hook_variable: str) -> _FreeswitchFiles:
    found = _FreeswitchFiles({}, [], [], [])
    for path in files:
        try:
            root = ET.parse(path).getroot()  # noqa: S314 - the site's own dialplan file
        except ET.ParseError as exc:
            found.problems.append(
                ConfigProblem(str(path), "(not XML)", "a FreeSWITCH XML file", f"{exc}")
            )
            continue
        in_context: set[str] = set()
        for context in root.iter("context"):
            names = found.extensions.setdefault(context.get("name", ""), set())
            for extension in context.iter("extension"):
                names.add(extension.get("name", ""))
                in_context.add(extension.get("name", ""))
        # A file of bare extensions (conf/dialplan/default/*.xml) joins the context that
        # includes it, which the file does not name: it counts for any context.
        for extension in root.iter("extension"):
            if extension.get("name", "") not in in_context:
                found.extensions.setdefault("", set()).add(extension.get("name", ""))
        _scan_actions(path, root, hook_variable, found)
    return found


def _scan_actions(
    path: Path, root: ET.Element, hook_variable: str, found: _FreeswitchFiles
) -> None:
    """The hooks and sockets the file's actions name, each with its line."""
    actions = list(root.iter("action"))
    lines = _element_lines(path, "action")
    if len(lines) != len(actions):  # cannot happen for a file ElementTree parsed
        lines = [0] * len(actions)
    for action, line in zip(actions, lines, strict=True):
        where = f"{path}:{line}" if line else str(path)
        app, data = action.get("application", ""), action.get("data", "")
        if app == "set" and data.startswith(f"{hook_variable}="):
            found.hooks.append((where, data.split("=", 1)[1]))
        elif app == "socket":
            found.sockets.append((where, data.split()[0] if data.split() else ""))


def _element_lines(path: Path, tag: str) -> list[int]:
    """The line of each ``tag`` element of the file, in document order (ElementTree's
    ``iter`` order), so a problem names the line as the Asterisk checks do."""
    lines: list[int] = []
    parser = expat.ParserCreate()

    def start(name: str, _attrs: object) -> None:
        if name == tag:
            lines.append(parser.CurrentLineNumber)

    parser.StartElementHandler = start
    try:
        parser.Parse(path.read_bytes(), True)  # noqa: FBT003 (isfinal is positional-only)
    except (expat.ExpatError, OSError):
        return []
    return lines


def _check_freeswitch(
    settings: FreeswitchSettings, folder: Path, config: Config
) -> list[ConfigProblem]:
    del config
    files = sorted(p for p in folder.glob("*.xml") if p.is_file())
    if not files:
        return [
            ConfigProblem(
                "--dialplan", str(folder), "a folder with FreeSWITCH *.xml files", "no .xml files"
            )
        ]
    found = _scan_freeswitch(files, settings.hook_variable)
    problems = list(found.problems)
    hooks = served_hooks()
    problems += [
        ConfigProblem(
            where,
            hook,
            "a hook the daemon serves: " + ", ".join(sorted(hooks)),
            f"the dialplan sets {settings.hook_variable} to a hook the daemon does not serve",
        )
        for where, hook in found.hooks
        if hook not in hooks
    ]
    _, bind_port = split_host_port(settings.outbound_bind)
    problems += [
        ConfigProblem(
            where,
            address,
            f"the address of freeswitch.outbound_bind ({settings.outbound_bind})",
            "the dialplan's socket is not where the daemon listens",
        )
        for where, address in found.sockets
        if address.rpartition(":")[2] != str(bind_port)
    ]
    bare = found.extensions.get("", set())
    targets = [
        ("ivr_extension", settings.ivr_extension, settings.ivr_context, "night repeat callers"),
        ("linger_extension", settings.linger_extension, settings.dialplan_context,
         "lingering callers"),
        ("requeue_extension", settings.requeue_extension, settings.dialplan_context,
         "callers going back to the queue"),
        # Talk events are also the fallback when the unicast receiver cannot bind.
        ("callback_extension", settings.callback_extension, settings.dialplan_context,
         "answered callbacks heard through talk events"),
        *([("callback_audio_extension", settings.callback_audio_extension,
            settings.dialplan_context, "answered callbacks heard through unicast")]
          if settings.amd_audio == "unicast" else []),
        ("callback_connect_extension", settings.callback_connect_extension,
         settings.dialplan_context, "callback customers found to be people"),
    ]  # fmt: skip
    for key, extension, context, who in targets:
        if extension not in found.extensions.get(context, set()) | bare:
            problems.append(
                ConfigProblem(
                    f"freeswitch.{key}",
                    extension,
                    f"an extension of the context '{context}' in {folder}",
                    f"{who} are transferred there, but no such extension exists",
                )
            )
    return problems

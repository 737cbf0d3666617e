"""``load_config``: TOML file + environment overrides -> ``Config``, or every problem at once.

Environment overrides follow pydantic-settings' convention: ``PBX_AGENT_<SECTION>__<KEY>``
with ``__`` between nesting levels (``PBX_AGENT_ASTERISK__SECRET``,
``PBX_AGENT_QUEUES__SUPPORT__HOLD__REMINDER_INTERVAL_S``), names case-insensitive (so queue
names reached this way are lower case), lists and tables as JSON. They win over the file.
A problem in a value that came from the environment is keyed by the variable's name.
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import EnvSettingsSource, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from pbx_agent.config.problems import ConfigProblem
from pbx_agent.config.settings import Config, deep_merge
from pbx_agent.config.types import SubProblem
from pbx_agent.config.validation import is_secret_name, render_value, split_path, sub_problems
from pbx_agent.errors import ConfigError

ENV_PREFIX = "PBX_AGENT_"
ENV_NESTING = "__"


def load_config(path: str | Path | None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the configuration.

    ``path`` None means the embedded defaults only (SQLite under ``./var/``, simulated PBX).
    ``env`` defaults to ``os.environ``. Raises ``ConfigError`` whose ``problems`` lists every
    problem found.
    """
    problems: list[ConfigProblem] = []
    data: dict[str, Any] = {}
    if path is not None:
        file_data = _read_toml(Path(path), problems)
        if file_data is None:
            raise _error(problems)
        data = file_data
    env_data, env_names = _read_env(os.environ if env is None else env, problems)
    merged = deep_merge(data, env_data)
    try:
        config = Config.model_validate(merged, context={})
    except ValidationError as exc:
        problems.extend(
            _attribute_to_env(ConfigProblem(p.path, p.value, p.accepted, p.message), env_names)
            for p in _every_problem(merged, sub_problems(exc, Config))
        )
        raise _error(problems) from None
    if problems:
        raise _error(problems)
    return config


_MORE_PASSES = 3


def _every_problem(data: dict[str, Any], first: list[SubProblem]) -> list[SubProblem]:
    """``first`` plus the problems it hid.

    Checks across sections (a secret required by ``pbx.kind``, agents' tiers, phrase
    files, ...) only run on an otherwise valid file, so a typo in one key used to hide
    them until it was fixed: an admin fixed one problem per run. Here each bad key is taken
    out (its default applies) and the file is validated again, a few times, to list what
    the first pass could not see. A problem under a key taken out is not reported again
    (a removed secret is not also "missing")."""
    found = list(first)
    removed: list[tuple[str, ...]] = []
    latest = first
    for _ in range(_MORE_PASSES):
        cut = [path for p in latest if (path := split_path(p.path))]
        if not cut:
            break
        data = _without(data, cut)
        removed += cut
        try:
            Config.model_validate(data, context={})
        except ValidationError as exc:
            latest = [
                p
                for p in sub_problems(exc, Config)
                if p not in found and not _under(split_path(p.path), removed)
            ]
        else:
            break
        if not latest:
            break
        found += latest
    return found


def _without(data: Mapping[str, Any], paths: list[tuple[str, ...]]) -> dict[str, Any]:
    """A copy of ``data`` without the values at ``paths`` (list items: the whole list)."""
    out = copy.deepcopy(dict(data))
    for path in paths:
        node: Any = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return out


def _under(path: tuple[str, ...], removed: list[tuple[str, ...]]) -> bool:
    return any(path[: len(cut)] == cut for cut in removed)


def _error(problems: list[ConfigProblem]) -> ConfigError:
    lines = "\n".join(f"  {p}" for p in problems)
    return ConfigError(f"{len(problems)} configuration problem(s):\n{lines}", problems)


def _read_toml(path: Path, problems: list[ConfigProblem]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        problems.append(
            ConfigProblem(str(path), "(no such file)", "a readable TOML file", "file not found")
        )
    except OSError as exc:
        problems.append(
            ConfigProblem(
                str(path), "(unreadable)", "a readable TOML file", f"cannot read: {exc.strerror}"
            )
        )
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        problems.append(
            ConfigProblem(str(path), "(not TOML)", "valid TOML", f"TOML syntax error: {exc}")
        )
    except UnicodeDecodeError as exc:
        problems.append(
            ConfigProblem(str(path), "(not UTF-8)", "a UTF-8 TOML file", f"not UTF-8: {exc}")
        )
    return None


def _read_env(
    env: Mapping[str, str], problems: list[ConfigProblem]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The overrides found in ``env`` as nested data, and a map from dotted key to variable name."""
    ours = {name: value for name, value in env.items() if name.upper().startswith(ENV_PREFIX)}
    names = {_dotted(name): name for name in ours}
    sections = sorted(Config.model_fields)
    for dotted, name in names.items():
        section = dotted.split(".", 1)[0]
        if not dotted or ".." in dotted or dotted.endswith("."):
            problems.append(
                ConfigProblem(
                    name,
                    render_value(ours[name], secret=True),
                    f"{ENV_PREFIX}<SECTION>{ENV_NESTING}<KEY>",
                    "malformed override variable name",
                )
            )
        elif "." in dotted and section not in sections:
            # Only nested names are checked: other tools share the prefix for flat names
            # (the test suite's PBX_AGENT_TEST_AMI, for one), and those are not ours to judge.
            close = difflib.get_close_matches(section, sections, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(
                ConfigProblem(
                    name,
                    render_value(ours[name], secret=is_secret_name(name)),
                    "a section: " + ", ".join(sections),
                    f"unknown section '{section}'{hint}",
                )
            )
    try:
        return _parse_env(ours), names
    except SettingsError:
        pass
    # Some value is not valid JSON where a list or table is expected: find which, keep the rest.
    good: dict[str, str] = {}
    for name, value in ours.items():
        try:
            _parse_env({name: value})
        except SettingsError:
            problems.append(
                ConfigProblem(
                    name,
                    render_value(value, secret=is_secret_name(name)),
                    "JSON for a list or a table, e.g. '[\"PJSIP/agent-*\"]'",
                    "cannot parse the environment value",
                )
            )
        else:
            good[name] = value
    return _parse_env(good), names


def _parse_env(env: Mapping[str, str]) -> dict[str, Any]:
    source = EnvSettingsSource(
        Config,  # type: ignore[arg-type]  # reads only model fields; Config is not a BaseSettings
        case_sensitive=False,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
    )
    source.env_vars = parse_env_vars(
        env, case_sensitive=False, ignore_empty=False, parse_none_str=None
    )
    return source()


def _dotted(name: str) -> str:
    return name[len(ENV_PREFIX) :].lower().replace(ENV_NESTING, ".")


def _attribute_to_env(problem: ConfigProblem, env_names: Mapping[str, str]) -> ConfigProblem:
    """Key a problem by the environment variable whose value it is about, if any."""
    key = problem.key.lower().replace('"', "")
    for dotted, name in env_names.items():
        if key == dotted or key.startswith((dotted + ".", dotted + "[")):
            return ConfigProblem(
                name,
                problem.value,
                problem.accepted,
                f"{problem.message} (config key {problem.key})",
            )
    return problem

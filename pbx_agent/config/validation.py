"""Turn pydantic's validation errors into problems an operator can act on.

Each pydantic error becomes a ``SubProblem`` keyed by the dotted path of the value (list
items as ``[i]``), with the value as text (secrets masked), what is accepted, and a short
message. An unknown key gets a "did you mean" from the keys the model at that place knows.
Errors raised by the models' own validators (``types.problems_error``) already carry their
sub-problems; they are expanded under the key where they were raised.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from pbx_agent.config.types import (
    NAME_PATTERN,
    PROBLEMS_ERROR_TYPE,
    PROMPT_KEY_PATTERN,
    SubProblem,
    key_part,
)

_SECRET_WORDS = ("secret", "secr", "pass", "pwd", "token", "api_key", "apikey")
_SECRET_KEYS = ("secret", "password")
_VALUE_LIMIT = 80

_TYPE_TEXT = {
    "int": ("not an integer", "an integer"),
    "float": ("not a number", "a number"),
    "bool": ("not true or false", "true or false"),
    "string": ("not a string", "a string"),
    "list": ("not a list", "a list"),
    "tuple": ("not a list", "a list"),
    "dict": ("not a table", "a table"),
    "model": ("not a table", "a table"),
    "time": ("not a time of day", "a time of day as 'HH:MM'"),
}

_PATTERN_TEXT = {
    PROMPT_KEY_PATTERN: "a lowercase prompt key 'area.name' (a-z, 0-9, _)",
    NAME_PATTERN: "a lowercase name (a-z, 0-9, _) starting with a letter",
}


def join_path(loc: Sequence[int | str]) -> str:
    """('queues', 'support', 'steps', 1, 'after_s') -> 'queues.support.steps[1].after_s'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{key_part(part)}" if text else key_part(part)
    return text


def split_path(path: str) -> tuple[str, ...]:
    """The table keys of a dotted path, list indices dropped:
    'queues."a.b".steps[1].after_s' -> ('queues', 'a.b', 'steps'); () for a path that is
    not a key of the file (a file name)."""
    parts: list[str] = []
    i, n = 0, len(path)
    while i < n:
        if path[i] == '"':
            end = path.find('"', i + 1)
            if end < 0:
                return ()
            parts.append(path[i + 1 : end])
            i = end + 1
        else:
            end = i
            while end < n and path[end] not in ".[":
                end += 1
            parts.append(path[i:end])
            i = end
        if i < n and path[i] == "[":
            return tuple(parts)  # a list item: the list is the key
        if i < n and path[i] == ".":
            i += 1
        elif i < n:
            return ()
    return tuple(p for p in parts if p) if all(parts) else ()


def join_paths(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def sub_problems(exc: ValidationError, root: type[BaseModel]) -> list[SubProblem]:
    """Every problem in ``exc``, keyed relative to ``root`` (the model that was validated)."""
    problems: list[SubProblem] = []
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if part != "[key]"]
        path = join_path(loc)
        ctx = error.get("ctx") or {}
        if error["type"] == PROBLEMS_ERROR_TYPE:
            problems.extend(
                SubProblem(join_paths(path, p.path), p.value, p.accepted, p.message)
                for p in ctx["problems"]
            )
            continue
        problems.append(_problem(error["type"], loc, path, error["msg"], error["input"], ctx, root))
    return list(dict.fromkeys(problems))


def _problem(
    kind: str,
    loc: list[int | str],
    path: str,
    msg: str,
    value: Any,
    ctx: Mapping[str, Any],
    root: type[BaseModel],
) -> SubProblem:
    shown = render_value(value, secret=_is_secret(loc))
    if kind == "extra_forbidden":
        return _unknown_key(loc, path, shown, root)
    if kind == "missing":
        return SubProblem(path, "(missing)", "a value", "required key is missing")
    accepted, message = _accepted(kind, msg, ctx)
    return SubProblem(path, shown, accepted, message)


def _unknown_key(loc: list[int | str], path: str, shown: str, root: type[BaseModel]) -> SubProblem:
    name = str(loc[-1])
    known = sorted(_known_keys(root, loc[:-1]))
    message = f"unknown key '{name}'"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean '{close[0]}'?"
    accepted = "one of: " + ", ".join(known) if known else "no such key"
    return SubProblem(path, shown, accepted, message)


_BOUNDS = {
    "greater_than": ("gt", ">", "too small"),
    "greater_than_equal": ("ge", ">=", "too small"),
    "less_than": ("lt", "<", "too large"),
    "less_than_equal": ("le", "<=", "too large"),
}
_PATTERN_ERROR = "string_pattern_mismatch"
_LENGTHS = {
    "too_short": ("min_length", "at least", "too short"),
    "string_too_short": ("min_length", "at least", "too short"),
    "too_long": ("max_length", "at most", "too long"),
    "string_too_long": ("max_length", "at most", "too long"),
}


def _accepted(kind: str, msg: str, ctx: Mapping[str, Any]) -> tuple[str, str]:
    """(what is accepted, what is wrong) for one of pydantic's own error types."""
    if "accepted" in ctx:
        return str(ctx["accepted"]), msg
    if kind == _PATTERN_ERROR:
        pattern = str(ctx["pattern"])
        return _PATTERN_TEXT.get(pattern, f"text matching {pattern}"), "badly formed"
    if kind in _BOUNDS:
        key, sign, message = _BOUNDS[kind]
        return f"{sign} {_number(ctx[key])}", f"{message}: out of range"
    if kind in _LENGTHS:
        key, word, message = _LENGTHS[kind]
        unit = "character(s)" if kind.startswith("string") else "item(s)"
        return f"{word} {ctx[key]} {unit}", message
    if kind == "literal_error":
        return f"one of {ctx['expected']}", "not an accepted value"
    message, accepted = _TYPE_TEXT.get(kind.split("_", 1)[0], (msg, "see the sample configuration"))
    return accepted, message


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _is_secret(loc: Sequence[int | str]) -> bool:
    return bool(loc) and is_secret_name(str(loc[-1]))


def is_secret_name(name: str) -> bool:
    """Values under keys that name a secret (even misspelt ones) are never shown."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS) or bool(
        difflib.get_close_matches(lowered.rsplit("__", 1)[-1], _SECRET_KEYS, n=1, cutoff=0.7)
    )


# libpq also takes the password as a query parameter (`?password=`).
_QUERY_PASSWORD = re.compile(r"([?&](?:password|sslpassword)=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """Hide the password of a database URL, also of one whose scheme is mistyped.

    user:password runs from after the scheme's slashes to the last "@": a user name or a
    password may hold "@", and a password "/", "?" or "#" (unencoded); an "@" further on (a
    query) only hides more, never a password.
    """
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    head, at, tail = url.rpartition("@")
    slash = head.find("/")
    if not at or slash < 0:
        return url
    start = slash + len(head[slash:]) - len(head[slash:].lstrip("/"))
    user, colon, _ = head[start:].partition(":")
    return f"{head[:start]}{user}:***@{tail}" if colon else url


def render_value(value: Any, *, secret: bool = False) -> str:
    """The offending value as the operator wrote it, short, never a secret."""
    if secret:
        return "***"
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table" if not value else "a table with keys " + ", ".join(map(str, value))
    if isinstance(value, str):
        text = mask_url(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= _VALUE_LIMIT else text[: _VALUE_LIMIT - 1] + "…"


def _known_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys the model found at ``loc`` under ``root`` accepts (empty if not a model)."""
    annotation: Any = root
    for part in loc:
        model = _as_model(annotation)
        if model is not None:
            if not isinstance(part, str) or part not in model.model_fields:
                return []
            annotation = model.model_fields[part].annotation
            continue
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is dict and len(args) == 2:
            annotation = args[1]
        elif origin in (list, tuple) and args:
            annotation = args[0]
        else:
            return []
    model = _as_model(annotation)
    return list(model.model_fields) if model is not None else []


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _as_model(annotation: Any) -> type[BaseModel] | None:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model = _as_model(arg)
            if model is not None:
                return model
    return None

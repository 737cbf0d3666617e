"""Value types shared by the configuration models, and the way models report problems.

Simple checks are pydantic types and constraints. Checks that relate several values (a
step against its accepted range, a prompt key against the phrase table) run in model
validators and report through ``problems_error``: one pydantic error carrying every
problem found, each with its own key relative to the model, so an operator sees all of
them at once with exact keys (``steps[1].after_s``) instead of the first one at the
model's key.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

# The error type whose context carries a list of ``SubProblem``s.
PROBLEMS_ERROR_TYPE = "config_problems"


@dataclass(frozen=True, slots=True)
class SubProblem:
    """A problem found by a model validator; ``path`` is relative to that model."""

    path: str
    value: str
    accepted: str
    message: str


def key_part(name: str) -> str:
    """A table key as it appears in a dotted path: quoted when it contains a dot or a space."""
    return f'"{name}"' if any(c in name for c in ". \t") else name


def problems_error(problems: list[SubProblem]) -> PydanticCustomError:
    summary = "; ".join(f"{p.path}: {p.message}" for p in problems)
    return PydanticCustomError(
        PROBLEMS_ERROR_TYPE, "{summary}", {"summary": summary, "problems": problems}
    )


def custom_error(kind: str, message: str, accepted: str) -> PydanticCustomError:
    """A single-value error whose context tells what is accepted."""
    return PydanticCustomError(kind, message, {"accepted": accepted})


# --- time of day -------------------------------------------------------------------------

_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
TIME_OF_DAY_ACCEPTED = "a time of day as 'HH:MM', 00:00 to 23:59"


def _parse_time_of_day(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if isinstance(value, str) and (match := _TIME_OF_DAY.match(value.strip())):
        return time(int(match.group(1)), int(match.group(2)))
    raise custom_error("time_of_day", "not a time of day", TIME_OF_DAY_ACCEPTED)


TimeOfDay = Annotated[
    time,
    BeforeValidator(_parse_time_of_day),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
]


def minutes_of_day(t: time) -> int:
    return t.hour * 60 + t.minute


def span_minutes(start: time, end: time) -> int:
    """Length of the daily window [start, end), which crosses midnight when end <= start."""
    return (minutes_of_day(end) - minutes_of_day(start)) % (24 * 60)


# --- host:port ---------------------------------------------------------------------------

HOST_PORT_ACCEPTED = "'host:port' with a port 1-65535 (IPv6 as '[::1]:port')"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")


def _check_host(value: Any) -> Any:
    if not isinstance(value, str) or not (_HOSTNAME.match(value) or _IPV6.match(value)):
        raise custom_error("host", "not a host name or address", "a host name or IP address")
    return value


def _check_host_port(value: Any) -> Any:
    if not isinstance(value, str):
        raise custom_error("host_port", "not a 'host:port' string", HOST_PORT_ACCEPTED)
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host_ok = bool(_IPV6.match(host[1:-1]))
    else:
        host_ok = bool(_HOSTNAME.match(host))
    if not sep or not host_ok or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise custom_error("host_port", "not a valid 'host:port'", HOST_PORT_ACCEPTED)
    return value


Host = Annotated[str, BeforeValidator(_check_host)]
HostPort = Annotated[str, BeforeValidator(_check_host_port)]


def _check_ipv4(value: Any) -> Any:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ValueError, TypeError):
        raise custom_error(
            "ipv4", "not an IPv4 address", "an IPv4 address such as 10.0.0.5"
        ) from None


def _check_port_range(value: Any) -> Any:
    low, sep, high = str(value).partition("-") if isinstance(value, str) else ("", "", "")
    if (
        not sep
        or not low.isdigit()
        or not high.isdigit()
        or not 1 <= int(low) <= int(high) <= 65535
    ):
        raise custom_error(
            "port_range", "not a port range", "'low-high' with 1 <= low <= high <= 65535"
        )
    return value


# FreeSWITCH's unicast socket is IPv4 only (switch_ivr_activate_unicast).
Ipv4 = Annotated[str, BeforeValidator(_check_ipv4)]
PortRange = Annotated[str, BeforeValidator(_check_port_range)]


def split_port_range(value: str) -> tuple[int, int]:
    """A validated ``PortRange`` as (low, high)."""
    low, _, high = value.partition("-")
    return int(low), int(high)


def split_host_port(value: str) -> tuple[str, int]:
    """Split a validated ``HostPort`` into the host (brackets removed) and the port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


# --- prompt keys and names ---------------------------------------------------------------

PROMPT_KEY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"
PromptKey = Annotated[str, StringConstraints(pattern=PROMPT_KEY_PATTERN)]
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


# --- ranges ------------------------------------------------------------------------------


def _check_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if low > high:
        raise custom_error(
            "range_order",
            "the lower bound is above the upper bound",
            "[low, high] with low <= high",
        )
    return value


_RangeBound = Annotated[float, Field(gt=0, le=60)]
SecondsRange = Annotated[tuple[_RangeBound, _RangeBound], AfterValidator(_check_range)]


def format_range(bounds: tuple[float, float], unit: str = "s") -> str:
    low, high = (f"{b:g}" for b in bounds)
    return f"{low}-{high} {unit}"


# --- secrets -----------------------------------------------------------------------------


def _one_line_secret(value: SecretStr) -> SecretStr:
    if any(c in value.get_secret_value() for c in "\r\n\0"):
        raise custom_error(
            "secret_line_break",
            "contains a line break or NUL (a secret file read with its trailing newline?); "
            "the value is not shown",
            "the secret on one line, without CR, LF or NUL",
        )
    return value


# A password or secret sent on a protocol line: one line, never printed.
Secret = Annotated[SecretStr, AfterValidator(_one_line_secret)]

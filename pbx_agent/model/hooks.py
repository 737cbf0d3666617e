"""Dialplan hooks: places where the PBX's dialplan stops and asks the daemon what to do.

A hook is PBX-neutral. The Asterisk adapter serves hooks over FastAGI
(``AGI(agi://host:4573/<hook>?k=v)``, ``pbx_agent.pbx.fastagi``); a FreeSWITCH adapter
serves the same hooks over its own transport. A hook sees a ``HookSession`` and nothing
of AGI or ESL.

Invariants:
- A hook never delays or drops a call because the daemon is slow or broken. Each
  ``HookSpec`` has a deadline; if the handler raises, overruns it, or the PBX asks for an
  unknown hook, the spec's ``on_timeout`` (the safe default, usually setting variables
  so the dialplan goes on as if the daemon were absent) runs under its own short deadline,
  and then the session ends so the dialplan continues.
- Commands that need a live channel raise ``pbx_agent.errors.ChannelHungUp`` once the
  caller has hung up; ``get_variable`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pbx_agent.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from pbx_agent.model.events import CallId, LegId


@dataclass(frozen=True, slots=True)
class PlayResult:
    """How a ``play`` ended."""

    digit: str | None  # the escape digit the caller pressed, if any
    offset_samples: int  # where playback stopped; pass it back as offset_samples to resume
    failed: bool = False  # the file could not be played (missing) or the channel went away

    @property
    def interrupted(self) -> bool:
        return self.digit is not None


class HookSession(Protocol):
    """One call's visit to a hook: what the PBX told the daemon, and what it can do."""

    hook: str
    params: Mapping[str, str]  # the hook's query parameters (agi://.../hook?k=v)
    leg: LegId
    call: CallId
    channel: str
    caller_number: str
    caller_name: str
    dialed: str
    variables: Mapping[str, str]  # whatever the PBX handed over up front

    @property
    def hung_up(self) -> bool: ...

    async def get_variable(self, name: str) -> str | None: ...

    async def set_variable(self, name: str, value: str) -> None: ...

    async def answer(self) -> None: ...

    async def play(
        self, sound: str, *, escape_digits: str = "", offset_samples: int = 0
    ) -> PlayResult: ...

    async def wait_for_digit(self, timeout_s: float) -> str | None: ...

    async def hangup(self) -> None: ...


@dataclass(frozen=True, slots=True)
class HookSpec:
    """A named hook: its handler, its deadline and its safe default."""

    name: str
    handler: Callable[[HookSession], Awaitable[None]]
    deadline_s: float
    # The safe default: usually sets variables so the dialplan goes on as if the daemon
    # were absent. ``None``: nothing to do, the dialplan simply continues.
    on_timeout: Callable[[HookSession], Awaitable[None]] | None = None
    # A deadline that follows the running configuration (read at each request, a reload
    # changes it); ``deadline_s`` is the one at start.
    live_deadline_s: Callable[[], float] | None = None

    def deadline(self) -> float:
        """The deadline for a request arriving now."""
        if self.live_deadline_s is None:
            return self.deadline_s
        try:
            live = self.live_deadline_s()
        except Exception:  # noqa: BLE001 - a broken reading must not cost the call its hook
            return self.deadline_s
        return live if live > 0 else self.deadline_s

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "?" in self.name:
            msg = f"hook name {self.name!r} is not allowed; accepted: a word such as 'route'"
            raise ConfigError(msg)
        if not self.deadline_s > 0:
            msg = f"hook {self.name!r} deadline_s={self.deadline_s} must be positive"
            raise ConfigError(msg)


class HookRegistry:
    """The hooks the daemon serves, by name."""

    __slots__ = ("_specs",)

    def __init__(self, specs: Mapping[str, HookSpec] | None = None) -> None:
        self._specs: dict[str, HookSpec] = {}
        for spec in (specs or {}).values():
            self.register(spec)

    def register(self, spec: HookSpec) -> None:
        if spec.name in self._specs:
            msg = f"hook {spec.name!r} is registered twice; each hook name must be unique"
            raise ConfigError(msg)
        self._specs[spec.name] = spec

    def get(self, name: str) -> HookSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

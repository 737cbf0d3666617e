"""The project's own exceptions. Foreign exceptions are translated into these at the
adapter boundary, so callers handle one family."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pbx_agent.config.problems import ConfigProblem


class PbxAgentError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(PbxAgentError):
    """The configuration is invalid; the message names the key, the value and what is accepted.

    ``problems`` lists every problem found (``pbx_agent.config.ConfigProblem``), so a caller
    can report them all at once rather than one per run.
    """

    def __init__(self, message: str, problems: Sequence[ConfigProblem] = ()) -> None:
        super().__init__(message)
        self.problems: list[ConfigProblem] = list(problems)


class ProtocolError(PbxAgentError):
    """A peer sent bytes that do not follow its wire protocol. The message names the frame."""


class UnsafeValueError(ProtocolError):
    """A value would change the meaning of an outgoing command (CR, LF, NUL, ...)."""


class PbxConnectionLost(PbxAgentError):
    """The connection to the PBX went away (closed, reset, or silent past the watchdog)."""


class PbxAuthenticationFailed(PbxAgentError):
    """The PBX refused the daemon's credentials. Fatal at start-up: retrying will not help."""


class PbxActionTimeout(PbxAgentError):
    """The PBX did not answer an action within its deadline."""


class PbxActionFailed(PbxAgentError):
    """The PBX answered an action with an error."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action} refused by the PBX: {message}")
        self.action = action
        self.message = message


class ChannelHungUp(PbxActionFailed):
    """The channel is gone: a command that needs a live channel cannot run on it."""


class StoreUnavailable(PbxAgentError):
    """The database could not be reached or answered with an error."""

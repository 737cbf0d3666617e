"""What the engine needs from a PBX adapter, whichever PBX it is."""

from __future__ import annotations

from typing import Protocol

from pbx_agent.model.calls import Call
from pbx_agent.model.commands import PbxCommand


class CommandExecutor(Protocol):
    """Carries out neutral commands on one PBX.

    ``execute`` returns a short description of what was done (logged as the outcome), or
    raises a ``PbxAgentError`` subclass. In shadow mode the adapter builds exactly the
    actions it would send, logs them, and sends nothing that changes a call.
    """

    async def execute(self, command: PbxCommand, call: Call) -> str: ...

"""The adapters' fire-and-forget actions: each runs as its own task, its failure logged.

An adapter answers the engine at once and sends the switch its commands in the background
(a hold announcement, ``TALK_DETECT``, a unicast start). A command the switch refuses or
does not answer is a ``PbxAgentError``: logged as ``action_failed``, the call goes on. Any
other exception is a bug: logged as ``task_failed`` with its traceback, never lost in a
task nobody awaits. ``close()`` cancels what is still running and waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import structlog

from pbx_agent.errors import PbxAgentError

__all__ = ["ActionTasks", "cancel_and_wait"]

log = structlog.get_logger()


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, without swallowing a cancellation of
    the caller: ``suppress(CancelledError): await task`` cannot tell the task's own
    cancellation from one aimed at the caller (a hook's deadline) arriving meanwhile."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: a failure while stopping is the task's to log


class ActionTasks:
    def __init__(self, pbx: str) -> None:
        self._pbx = pbx
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Awaitable[object], name: str) -> asyncio.Task[None]:
        pbx = self._pbx

        async def guarded() -> None:
            try:
                await coro
            except PbxAgentError as exc:
                log.warning("action_failed", pbx=pbx, task=name, error=str(exc))
            except Exception as exc:
                # CancelledError is not an Exception and goes through.
                log.exception(
                    "task_failed", pbx=pbx, task=name, error=f"{type(exc).__name__}: {exc}"
                )

        task = asyncio.create_task(guarded(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self) -> None:
        """Until every action running now has finished."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

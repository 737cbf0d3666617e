"""Handing a machine-detection verdict to its consumer, the same for every audio source
(Asterisk's AudioSocket stream, FreeSWITCH's unicast stream): logged once as
``amd_verdict``, bounded by a timeout, and a failing consumer logged and contained."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from pbx_agent.amd.detector import Verdict

__all__ = ["deliver_verdict"]

log = structlog.get_logger()

K = TypeVar("K")


async def deliver_verdict(
    on_verdict: Callable[[K, Verdict], Awaitable[None] | None],
    key: K,
    verdict: Verdict,
    *,
    timeout_s: float,
    **fields: object,
) -> None:
    """Call ``on_verdict(key, verdict)`` (sync or async) within ``timeout_s``; never raises
    for the consumer's failure. ``fields`` name the call in the log (``stream``, ``leg``)."""
    context = {
        **fields,
        "verdict": verdict.kind.value,
        "reason": verdict.reason,
        "decided_at_ms": verdict.decided_at_ms,
    }
    log.info("amd_verdict", **context)
    try:
        async with asyncio.timeout(timeout_s):
            result = on_verdict(key, verdict)
            if inspect.isawaitable(result):
                await result
    except Exception as exc:  # noqa: BLE001 - the consumer's failure is logged, contained
        log.error("amd_verdict_callback_failed", error=repr(exc), **context)

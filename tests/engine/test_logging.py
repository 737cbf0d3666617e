"""Structured logging: caller text escaped at any depth, and a log call that never raises."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import structlog

from pbx_agent.logging import configure_logging

RAW_BYTE = b"\xff".decode("utf-8", "surrogateescape")
CALLER_NAME = f'Иван\r\n{{"event": "forged"}}\u202e{RAW_BYTE}'
CALLER_NAME_SHOWN = 'Иван\\r\\n{"event": "forged"}\\u202e\\xff'


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def strict_utf8() -> tuple[io.BytesIO, io.TextIOWrapper]:
    raw = io.BytesIO()
    return raw, io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)


def test_a_nested_caller_name_is_logged_escaped_in_json() -> None:
    """A caller name inside a dict, a list and a tuple is escaped like a top-level one."""
    out = io.StringIO()
    configure_logging("json", stream=out)
    fields = {"caller_name": CALLER_NAME, "legs": [("c.1", CALLER_NAME)]}
    structlog.get_logger("test").info("decision", fields=fields, name=CALLER_NAME)
    [line] = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["name"] == CALLER_NAME_SHOWN
    assert entry["fields"] == {
        "caller_name": CALLER_NAME_SHOWN,
        "legs": [["c.1", CALLER_NAME_SHOWN]],
    }
    assert fields["caller_name"] == CALLER_NAME  # the caller's own value is left alone


def test_a_traceback_the_stream_cannot_encode_is_written_with_escapes() -> None:
    """A raw caller byte in an exception's message does not make a strict stream raise."""
    raw, stream = strict_utf8()
    configure_logging("json", stream=stream)
    try:
        msg = f"bad caller name {CALLER_NAME}"
        raise ValueError(msg)  # noqa: TRY301 - the traceback is what is logged
    except ValueError:
        structlog.get_logger("test").exception("policy_failed", policy="hold")
    [line] = raw.getvalue().decode("utf-8").splitlines()
    entry = json.loads(line)
    assert entry["event"] == "policy_failed"
    # The stream got "\\udcff" (JSON's escape for that lone surrogate): the JSON reads back
    # as exactly what was raised.
    assert f"ValueError: bad caller name {CALLER_NAME}" in entry["exception"]


def test_a_failing_processor_loses_one_line_and_says_so_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A log call whose processing fails returns normally; `log_failed` names the lost event."""

    def broken_tap(_event: Mapping[str, Any]) -> None:
        msg = "tap is broken"
        raise RuntimeError(msg)

    out = io.StringIO()
    configure_logging("json", stream=out, tap=broken_tap)
    structlog.get_logger("test").info("decision", name=CALLER_NAME)
    assert out.getvalue() == ""
    [lost] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (lost["event"], lost["lost_event"], lost["error"]) == (
        "log_failed",
        "decision",
        "RuntimeError: tap is broken",
    )


def test_a_capture_level_feeds_the_processors_but_prints_only_the_level() -> None:
    """``run`` with the built-in simulator at logging.level = warning: its scenarios still
    see the info events (a processor before the gate, as the simulator's feed is placed),
    while only warnings are written."""
    out = io.StringIO()
    seen: list[str] = []
    configure_logging("json", "warning", stream=out, tap=lambda e: seen.append(e["event"]))
    logger = structlog.get_logger("test")
    logger.info("hold_cue")
    logger.warning("simulated_call_failed")
    assert seen == ["simulated_call_failed"]
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "simulated_call_failed"
    ]
    out, seen = io.StringIO(), []
    configure_logging(
        "json", "warning", stream=out, tap=lambda e: seen.append(e["event"]), capture_level="info"
    )
    logger.debug("not_captured")
    logger.info("hold_cue")
    logger.warning("simulated_call_failed")
    logger.error("command_failed")
    assert seen == ["hold_cue", "simulated_call_failed", "command_failed"]
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "simulated_call_failed",
        "command_failed",
    ]

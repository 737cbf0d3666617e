"""Structured logging: a literal backslash escape and the control it spells never log alike."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from pbx_agent.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def logged_names(fmt: str, *names: str) -> list[str]:
    out = io.StringIO()
    configure_logging(fmt, stream=out)
    for name in names:
        structlog.get_logger("test").info("call_started", caller_name=name)
    lines = out.getvalue().splitlines()
    if fmt == "json":
        return [json.loads(line)["caller_name"] for line in lines]
    return [line[line.index("caller_name=") :] for line in lines]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_real_escape_and_its_literal_text_log_differently(fmt: str) -> None:
    """``Bob<ESC>[31m`` and the typed text ``Bob\\x1b[31m`` give two different log lines."""
    real, literal = logged_names(fmt, "Bob\x1b[31m", "Bob\\x1b[31m")
    assert real != literal


def test_ordinary_text_is_logged_unchanged() -> None:
    """A printable name without a backslash (Cyrillic, CJK, quotes) is logged as it is."""
    assert logged_names("json", 'Иван "王"') == ['Иван "王"']

"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """A test that configures logging (``configure_logging`` from the CLI or the lab, at
    warning level say) must not leave it so: a later test's ``capture_logs`` replaces only
    the processors, so a filtering wrapper left behind silently drops its info events."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)

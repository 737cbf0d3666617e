"""The real-PBX lane fixtures (tests/real) for the checks that the samples are loaded."""

from __future__ import annotations

from tests.real.conftest import real_asterisk, real_freeswitch

__all__ = ["real_asterisk", "real_freeswitch"]

"""The lab's scenarios, one module per standard. Each module exposes ``SCENARIOS``.

To add a standard's scenarios: write ``pbx_agent/lab/scenarios/<standard>.py`` with
``SCENARIOS: list[Scenario]`` and add its module name to ``MODULES``.
"""

from __future__ import annotations

import importlib

from pbx_agent.lab.scenario import Scenario

MODULES: tuple[str, ...] = (
    "foundation",
    "hold",
    "silent_caller",
    "lingering",
    "scripts",
    "night_routing",
    "callbacks",
)


def all_scenarios() -> list[Scenario]:
    found: list[Scenario] = []
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        found.extend(module.SCENARIOS)
    return found

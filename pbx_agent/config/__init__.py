"""Configuration: one TOML file, environment overrides, and the service standards as data.

``load_config(path, env=...)`` returns a frozen ``Config`` or raises ``ConfigError`` listing
every problem (``ConfigProblem``: key, value, accepted, message). ``Config.standards_for(queue,
dialed)`` gives the resolved ``Standards`` for a call: the site's profile (``ru`` or ``zh``,
``profiles.py``), then the site's overrides, then the dialled number's, then the queue's.
"""

from __future__ import annotations

from pbx_agent.config.loader import load_config
from pbx_agent.config.problems import ConfigProblem
from pbx_agent.config.settings import Config
from pbx_agent.config.standards import Standards
from pbx_agent.errors import ConfigError

__all__ = ["Config", "ConfigError", "ConfigProblem", "Standards", "load_config"]

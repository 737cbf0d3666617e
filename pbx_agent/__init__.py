"""pbx-agent: makes a PBX enforce a call centre's telephone service standards by itself."""

from __future__ import annotations

__version__ = "0.1.0"

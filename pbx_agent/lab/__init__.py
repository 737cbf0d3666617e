"""The lab: the daemon, unchanged, attached over loopback to a fake PBX playing scripted
calls (``pbx-agent lab``). See ``scenario.py`` for how a scenario is written and
``scenarios/__init__.py`` for how a standard adds its own."""

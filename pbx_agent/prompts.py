"""Where each prompt's sound file is, and how each PBX names it.

Prompt keys (``hold.announce``) are stable; so are their file names: the key with ``.``
replaced by ``-`` (``hold-announce``), in a folder per profile. Asterisk plays
``<prefix><profile>/<stem>`` (no extension; it picks the best format present), FreeSWITCH
``<prefix><profile>/<stem>.wav``. A site can point any key at its own recording
(``[prompts.files]``); the renderer (``pbx-agent prompts render``) writes the same names.
"""

from __future__ import annotations

from pathlib import Path

from pbx_agent.config import Config


def file_stem(key: str) -> str:
    """``hold.announce`` → ``hold-announce``."""
    return key.replace(".", "-")


def sound_name(config: Config, key: str, pbx: str) -> str:
    """The name ``pbx`` (``asterisk``, ``freeswitch``, ``simulated``) plays for ``key``."""
    override = config.prompts.files.get(key)
    if override is not None:
        return override
    prefix = getattr(config.prompts.pbx_prefix, pbx, "")
    name = f"{prefix}{config.site.profile}/{file_stem(key)}"
    return f"{name}.wav" if pbx == "freeswitch" else name


def sound_path(config: Config, key: str, suffix: str = ".wav") -> Path:
    """The file the renderer writes for ``key`` under ``prompts.sounds_dir``."""
    return config.prompts.sounds_dir / config.site.profile / f"{file_stem(key)}{suffix}"

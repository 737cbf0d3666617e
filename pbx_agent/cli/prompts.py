"""``pbx-agent prompts render|list``: the sound files of the profile's phrases.

``render --profile ru|zh --out DIR`` writes every phrase as ``DIR/<profile>/<key>.wav`` (8 kHz
mono 16-bit PCM) and the other formats asked for (``--formats wav,ulaw,alaw`` by default),
with espeak-ng and SoX from the OS packages (``pbx_agent.sounds``); ``--with-music`` adds a
synthesised ``DIR/hold-music.wav``. Files an administrator replaced with recordings are kept
unless ``--force``. ``list`` prints each key, its file name and its text. Exit status: 0 done,
1 a tool failed or is missing (the message names the package), 2 configuration problems.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pbx_agent.cli.common import add_config_option, load_or_report
from pbx_agent.config import Config, ConfigError, load_config
from pbx_agent.prompts import file_stem
from pbx_agent.sounds import (
    DEFAULT_FORMATS,
    FORMATS,
    SoundRenderError,
    SoundToolMissingError,
    find_tools,
    phrases_to_render,
    render_music,
    render_prompts,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "prompts",
        help="render the profile's phrases as sound files (espeak-ng, SoX), or list them",
        description="The sound files the switch plays for each phrase of the profile.",
    )
    sub = parser.add_subparsers(dest="prompts_command", metavar="ACTION")
    sub.required = True

    render = sub.add_parser(
        "render",
        help="write every phrase as DIR/<profile>/<key>.wav (and .ulaw, .alaw, ...)",
        description=(
            "Render every phrase of the profile (and of the configuration's queue and "
            "dialled-number overrides) with espeak-ng, as 8 kHz mono 16-bit WAV plus the "
            "formats asked for. Files replaced by recordings are kept unless --force."
        ),
    )
    add_config_option(render)
    render.add_argument(
        "--profile", choices=("ru", "zh"), help="the profile (default: the configuration's)"
    )
    render.add_argument(
        "--out", metavar="DIR", help="where to write (default: the configuration's sounds_dir)"
    )
    render.add_argument(
        "--formats",
        default=",".join(DEFAULT_FORMATS),
        type=_formats,
        help=f"comma-separated, of {', '.join(FORMATS)} (default: {','.join(DEFAULT_FORMATS)})",
    )
    render.add_argument(
        "--force", action="store_true", help="overwrite files replaced by recordings too"
    )
    render.add_argument(
        "--with-music",
        action="store_true",
        help="also write a synthesised DIR/hold-music.wav if there is none",
    )
    render.set_defaults(handler=handle_render)

    listing = sub.add_parser("list", help="each phrase's key, file name and text")
    add_config_option(listing)
    listing.add_argument("--profile", choices=("ru", "zh"))
    listing.set_defaults(handler=handle_list)


def _formats(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        msg = f"{text!r}: accepted formats are {', '.join(FORMATS)} (comma-separated)"
        raise argparse.ArgumentTypeError(msg)
    return names


def _config(args: argparse.Namespace) -> Config | None:
    """The configuration, with ``--profile`` applied the way any key is set over the file
    (an environment override), so the result is validated as a whole."""
    if not args.profile:
        return load_or_report(args.config)
    env = {**os.environ, "PBX_AGENT_SITE__PROFILE": args.profile}
    try:
        return load_config(Path(args.config) if args.config else None, env=env)
    except ConfigError as exc:
        sys.stderr.write(f"pbx-agent: {len(exc.problems) or 1} configuration problem(s)\n")
        for line in [str(p) for p in exc.problems] or [str(exc)]:
            sys.stderr.write(f"  {line}\n")
        return None


def handle_render(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    out = Path(args.out) if args.out else config.prompts.sounds_dir
    try:
        tools = find_tools()
        result = render_prompts(config, out, formats=args.formats, force=args.force, tools=tools)
        music = None
        if args.with_music and not (out / "hold-music.wav").exists():
            music = render_music(out, tools=tools)
    except (SoundToolMissingError, SoundRenderError) as exc:
        sys.stderr.write(f"pbx-agent: {exc}\n")
        return 1
    except OSError as exc:  # the folder cannot be made or written
        where = exc.filename or out
        sys.stderr.write(f"pbx-agent: cannot write the sounds to {where}: {exc.strerror or exc}\n")
        return 1
    write = sys.stdout.write
    write(
        f"{result.directory}: {len(result.written)} file(s) written, "
        f"{len(result.unchanged)} unchanged ({', '.join(args.formats)})\n"
    )
    for path in result.kept:
        write(f"  kept {path.name}: replaced by a recording (--force to overwrite)\n")
    for path in result.removed:
        write(
            f"  removed {path.name}: the synthesised voice would be played instead of "
            "the recording\n"
        )
    for key in result.skipped:
        write(f"  skipped {key}: prompts.files points it at {config.prompts.files[key]}\n")
    for conflict in result.conflicts:
        write(
            f"  warning: {conflict.layer} says {conflict.key!r} differently, but the switch "
            f"plays one file per key ({file_stem(conflict.key)}): give that layer its own key\n"
        )
    if music is not None:
        write(f"{music}: synthesised hold music written\n")
    return 0


def handle_list(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    texts, _ = phrases_to_render(config)
    for key, text in texts.items():
        name = config.prompts.files.get(key) or f"{config.site.profile}/{file_stem(key)}"
        sys.stdout.write(f"{key}\t{name}\t{text}\n")
    return 0

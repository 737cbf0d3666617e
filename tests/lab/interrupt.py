"""Ctrl-C for the lab's subprocess tests: wait for a line, send SIGINT, collect the rest."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable


def interrupt_when(
    proc: subprocess.Popen[str], ready: Callable[[str], bool], timeout_s: float
) -> tuple[list[str], str, str | None]:
    """Read ``proc``'s stdout lines up to the first one ``ready`` accepts, send SIGINT as
    Ctrl-C does, then collect what is left: (the lines read, the rest of stdout, stderr if
    piped). A process still running afterwards (the test failed) is killed."""
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if ready(line):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return lines, out, err

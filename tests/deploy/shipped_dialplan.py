"""Read an extension of the shipped Asterisk samples (``dialplan/asterisk``) as the
(application, data) steps the fake Asterisk runs, so a test can hold the fake's copy of a
context to the file an administrator installs."""

from __future__ import annotations

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "dialplan" / "asterisk"


def shipped_steps(file: str, context: str, exten: str = "s") -> list[tuple[str, str]]:
    """The steps of ``exten`` in ``[context]`` of ``dialplan/asterisk/<file>``."""
    steps: list[tuple[str, str]] = []
    current = None
    in_exten = False
    for raw in (SAMPLES / file).read_text(encoding="utf-8").splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            current = line.strip("[]")
            in_exten = False
            continue
        if current != context:
            continue
        if line.startswith("exten =>"):
            # exten => <exten>,1,App(data)
            name, _, rest = line.split("=>", 1)[1].strip().partition(",")
            in_exten = name == exten
            step = rest.split(",", 1)[1] if in_exten else ""
        elif line.startswith("same =>") and in_exten:
            step = line.split("=>", 1)[1].strip().split(",", 1)[1]
        else:
            continue
        if in_exten:
            application, _, data = step.partition("(")
            steps.append((application, data.removesuffix(")")))
    return steps

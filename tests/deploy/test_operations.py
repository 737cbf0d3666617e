"""Operating a real daemon process: start, /healthz and /metrics over HTTP, reload with
SIGHUP (a bad file keeps the running configuration), stop with SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.metrics.http import sample

WAIT_S = 20.0
ENTRY = "import sys; from pbx_agent.cli import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Running:
    """A `pbx-agent run` process and the JSON log lines it printed."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PBX_AGENT_")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", ENTRY, "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=config.parent,
        )
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            text = line.decode("utf-8", "replace").strip()
            self.raw.append(text)
            try:
                self.events.append(json.loads(text))
            except ValueError:
                continue

    def wait_for(
        self, what: str, predicate: Callable[[dict[str, Any]], bool], since: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for event in list(self.events)[since:]:
                if predicate(event):
                    return event
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = "\n".join(self.raw[-20:])
        raise AssertionError(f"no {what} in the daemon's log:\n{tail}")

    def event(self, name: str, since: int = 0) -> dict[str, Any]:
        return self.wait_for(name, lambda e: e.get("event") == name, since)


def http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def write_config(path: Path, port: int, *, reminder_s: int = 30, extra: str = "") -> None:
    path.write_text(
        f"""
[logging]
format = "json"
[store]
url = "sqlite+aiosqlite:///{path.parent / "daemon.sqlite3"}"
[metrics]
enabled = true
bind = "127.0.0.1:{port}"
[standards.hold]
reminder_interval_s = {reminder_s}
{extra}
""",
        encoding="utf-8",
    )


def start(folder: Path) -> tuple[Running, Path, int]:
    port = free_port()
    config = folder / "pbx-agent.toml"
    write_config(config, port)
    running = Running(config)
    running.event("daemon_started")
    return running, config, port


def finish(running: Running) -> None:
    if running.process.poll() is None:
        running.process.kill()
    running.process.wait(10)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path, int]]:
    """One daemon for the tests that leave it running (each looks at its own log lines)."""
    running = start(tmp_path_factory.mktemp("daemon"))
    try:
        yield running
    finally:
        finish(running[0])


def test_a_running_daemon_answers_health_and_metrics(daemon: tuple[Running, Path, int]) -> None:
    """/healthz 200 once attached to its PBX; /metrics has the link and the daemon's info."""
    _running, _config, port = daemon
    deadline = time.monotonic() + WAIT_S
    status, body = http(port, "/healthz")
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        status, body = http(port, "/healthz")
    assert status == 200, body
    assert json.loads(body)["pbx"] == {"asterisk": True}
    status, text = http(port, "/metrics")
    assert status == 200
    assert sample(text, "pbx_agent_pbx_connected", pbx="asterisk") == 1.0
    assert sample(text, "pbx_agent_info", profile="ru", pbx="simulated") == 1.0


def test_sighup_with_a_bad_file_keeps_the_running_configuration(
    daemon: tuple[Running, Path, int],
) -> None:
    """A broken file: config_reload_rejected with the problem; the daemon goes on serving."""
    running, config, port = daemon
    since = len(running.events)
    write_config(config, port, reminder_s=-5)
    running.process.send_signal(signal.SIGHUP)
    rejected = running.event("config_reload_rejected", since)
    assert any("reminder_interval_s" in p for p in rejected["problems"])
    assert running.process.poll() is None
    status, _ = http(port, "/metrics")
    assert status == 200


def test_sighup_with_a_good_file_applies_it(daemon: tuple[Running, Path, int]) -> None:
    """A valid file: config_reloaded naming the key it applied, and the daemon keeps
    running."""
    running, config, port = daemon
    since = len(running.events)
    write_config(config, port, reminder_s=45)
    running.process.send_signal(signal.SIGHUP)
    reloaded = running.event("config_reloaded", since)
    assert reloaded["path"] == str(config)
    assert reloaded["applied"] == ["standards.hold.reminder_interval_s"]
    assert running.process.poll() is None


def test_sigterm_stops_the_daemon_cleanly(tmp_path: Path) -> None:
    """SIGTERM: daemon_stopped logged and exit status 0."""
    running, _config, _port = start(tmp_path)
    try:
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(WAIT_S) == 0
        running.event("daemon_stopped")
    finally:
        finish(running)


def test_sigterm_while_still_attaching_stops_at_once(tmp_path: Path) -> None:
    """An Asterisk that accepts the AMI connection and never sends its banner holds the
    first attempt for connect_timeout_s (120 s here): SIGTERM meanwhile stops the daemon
    without waiting for it, and it never reports itself started."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(silent.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    config = tmp_path / "pbx-agent.toml"
    write_config(
        config,
        free_port(),
        extra=f"""
[asterisk]
ami_host = "127.0.0.1"
ami_port = {silent.getsockname()[1]}
username = "pbx-agent"
secret = "not-a-real-secret"
connect_timeout_s = 120
fastagi_bind = "127.0.0.1:{free_port()}"
audiosocket_bind = "127.0.0.1:{free_port()}"
""",
    )
    running = Running(config)
    try:
        running.event("fastagi_listening")
        deadline = time.monotonic() + WAIT_S
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert accepted, "the daemon never connected to the AMI port"
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(WAIT_S) == 0
        running.event("daemon_stopped")
        assert not [e for e in running.events if e.get("event") == "daemon_started"]
    finally:
        finish(running)
        silent.close()
        for sock in accepted:
            sock.close()


@pytest.mark.parametrize(("argv", "status"), [(["prompts", "list"], 141), (["--help"], 0)])
def test_output_into_a_closed_pipe_stops_quietly(argv: list[str], status: int) -> None:
    """`pbx-agent prompts list | head` once head has gone: no traceback, no "Exception
    ignored", the exit status 128 + SIGPIPE as for any Unix tool (argparse's own help
    output ignores a closed pipe and exits 0)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-c", ENTRY, *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=WAIT_S,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert done.returncode == status

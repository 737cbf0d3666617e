"""The listener under FastAGI, the FreeSWITCH outbound socket and AudioSocket: a port it
cannot bind is a ConfigError naming the setting, a crashing session is contained, sessions
past the limit are refused, close() ends the sessions it started."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pbx_agent import cli
from pbx_agent.errors import ConfigError
from pbx_agent.model.hooks import HookRegistry
from pbx_agent.pbx.audiosocket_server import AudioSocketServer
from pbx_agent.pbx.esl_outbound import EslOutboundServer
from pbx_agent.pbx.fastagi import FastAgiServer
from pbx_agent.pbx.listener import SessionListener, is_loopback


async def _no_verdict(_stream: object, _verdict: object) -> None:
    return None


SERVERS: dict[str, tuple[Callable[[str, int], SessionListener], str]] = {
    "fastagi": (
        lambda host, port: FastAgiServer(HookRegistry(), host=host, port=port),
        "asterisk.fastagi_bind",
    ),
    "esl_outbound": (
        lambda host, port: EslOutboundServer(HookRegistry(), host=host, port=port),
        "freeswitch.outbound_bind",
    ),
    "audiosocket": (
        lambda host, port: AudioSocketServer(_no_verdict, host=host, port=port),
        "asterisk.audiosocket_bind",
    ),
}


@pytest.fixture
async def taken_port() -> AsyncIterator[int]:
    holder = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    try:
        yield int(holder.sockets[0].getsockname()[1])
    finally:
        holder.close()
        await holder.wait_closed()


@pytest.mark.parametrize("kind", sorted(SERVERS))
async def test_a_taken_port_is_a_config_error_naming_address_and_setting(
    kind: str, taken_port: int
) -> None:
    make, setting = SERVERS[kind]
    server = make("127.0.0.1", taken_port)
    with pytest.raises(ConfigError) as caught:
        await server.start()
    assert f"127.0.0.1:{taken_port}" in str(caught.value)
    assert setting in str(caught.value)
    await server.close()  # nothing was started; closing is still safe


@pytest.mark.parametrize("kind", sorted(SERVERS))
async def test_every_server_warns_when_it_listens_beyond_loopback(kind: str) -> None:
    make, _setting = SERVERS[kind]
    server = make("0.0.0.0", 0)
    with capture_logs() as logs:
        async with server:
            pass
    assert [e["event"] for e in logs][:2] == [f"{kind}_not_loopback", f"{kind}_listening"]


class _Scripted(SessionListener):
    """Each connection runs what its first line names: echo, crash or hang."""

    def __init__(self, *, max_sessions: int | None = None) -> None:
        super().__init__(
            host="127.0.0.1",
            port=0,
            event="scripted",
            serves="scripted connections",
            setting="test.bind",
            exposure="do anything",
            max_sessions=max_sessions,
        )
        self.hanging = asyncio.Event()
        self.cancelled = 0

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        line = await reader.readline()
        if line == b"crash\n":
            msg = "the session broke"
            raise RuntimeError(msg)
        if line == b"hang\n":
            self.hanging.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        writer.write(b"echo " + line)
        await writer.drain()


async def _ask(port: int, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_a_crashing_session_is_logged_and_the_next_one_is_served() -> None:
    with capture_logs() as logs:
        async with _Scripted() as server:
            assert await _ask(server.port, b"crash\n") == b""  # closed, not left open
            assert await _ask(server.port, b"hello\n") == b"echo hello\n"
            assert server.active_sessions == 0
    crashed = [e for e in logs if e["event"] == "scripted_session_crashed"]
    assert len(crashed) == 1
    assert "the session broke" in crashed[0]["error"]
    assert crashed[0]["peer"].startswith("('127.0.0.1'")


async def test_connections_past_max_sessions_are_closed_at_once() -> None:
    with capture_logs() as logs:
        async with _Scripted(max_sessions=1) as server:
            _r, hung = await asyncio.open_connection("127.0.0.1", server.port)
            hung.write(b"hang\n")
            await asyncio.wait_for(server.hanging.wait(), 5)
            refused_r, refused_w = await asyncio.open_connection("127.0.0.1", server.port)
            assert await asyncio.wait_for(refused_r.read(), 5) == b""  # closed unserved
            refused_w.close()
            assert server.active_sessions == 1
            hung.close()
    refused = [e for e in logs if e["event"] == "scripted_too_many_sessions"]
    assert [e["limit"] for e in refused] == [1]


async def test_close_cancels_running_sessions_without_calling_it_a_crash() -> None:
    server = _Scripted()
    with capture_logs() as logs:
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"hang\n")
        await asyncio.wait_for(server.hanging.wait(), 5)
        await server.close()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the daemon closed it
        writer.close()
    assert server.cancelled == 1
    assert server.active_sessions == 0
    assert not [e for e in logs if e["event"] == "scripted_session_crashed"]


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("::", False),
        ("pbx.example", False),
    ],
)
def test_is_loopback(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_run_with_a_taken_fastagi_port_says_which_setting_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pbx-agent run` ends with one line naming the address and the setting, and exit
    status 1 (systemd restarts it: the port may come free), not a traceback; the store it
    opened is closed (daemon_stopped is logged)."""
    for name in [n for n in os.environ if n.upper().startswith("PBX_AGENT_")]:
        monkeypatch.delenv(name)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    config = tmp_path / "busy.toml"
    config.write_text(
        "[asterisk]\n"
        'ami_host = "127.0.0.1"\nami_port = 1\nusername = "u"\nsecret = "s"\n'
        f'fastagi_bind = "127.0.0.1:{taken}"\n'
        f'[store]\nurl = "sqlite+aiosqlite:///{tmp_path / "store.db"}"\n'
        "[metrics]\nenabled = false\n",
        encoding="utf-8",
    )
    try:
        status = cli.main(["run", "--config", str(config)])
    finally:
        holder.close()
    assert status == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert f"cannot start: cannot listen for FastAGI connections on 127.0.0.1:{taken}" in out.err
    assert "asterisk.fastagi_bind" in out.err
    assert '"event": "daemon_stopped"' in out.out + out.err

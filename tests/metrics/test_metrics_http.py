"""The /metrics and /healthz endpoint over loopback TCP, with a real store probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pbx_agent.metrics import Metrics, MetricsServer, MetricsServerSettings
from pbx_agent.store import Store
from tests.metrics.http import get, request, sample


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}")
    await s.upgrade()
    yield s
    await s.close()


async def serve(metrics: Metrics, store: Store | None = None) -> MetricsServer:
    settings = MetricsServerSettings(
        host="127.0.0.1", port=0, read_timeout_s=0.5, store_probe_timeout_s=2.0
    )
    server = MetricsServer(metrics, settings, store=store)
    await server.start()
    return server


def fresh() -> Metrics:
    return Metrics(CollectorRegistry(), process_collectors=False)


async def test_metrics_are_served_in_the_prometheus_text_format(store: Store) -> None:
    """GET /metrics: 200, Prometheus content type, the daemon's series in it."""
    m = fresh()
    m.watch_pbx("asterisk", lambda: True)
    server = await serve(m, store)
    try:
        response = await get(server.port, "/metrics")
    finally:
        await server.close()
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert sample(response.text, "pbx_agent_pbx_connected", pbx="asterisk") == 1.0
    assert sample(response.text, "pbx_agent_store_up") == 1.0


async def test_healthz_is_200_when_the_pbx_and_the_store_are_up(store: Store) -> None:
    """Both links up: 200 and status ok."""
    m = fresh()
    m.watch_pbx("asterisk", lambda: True)
    server = await serve(m, store)
    try:
        response = await get(server.port, "/healthz")
    finally:
        await server.close()
    assert response.status == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["pbx"] == {"asterisk": True}
    assert body["store"]["up"] is True


async def test_healthz_is_503_naming_the_pbx_link_that_is_down(store: Store) -> None:
    """A PBX link down: 503, and the body says which."""
    m = fresh()
    m.watch_pbx("asterisk", lambda: False)
    server = await serve(m, store)
    try:
        response = await get(server.port, "/healthz")
    finally:
        await server.close()
    assert response.status == 503
    assert response.json()["pbx"] == {"asterisk": False}


async def test_healthz_is_503_when_the_store_cannot_be_read() -> None:
    """A store that fails its probe (nothing listens on its port): 503 with the store's
    error, store_up 0."""
    broken = Store.open("postgresql+asyncpg://pbx@127.0.0.1:1/none", connect_timeout_s=1.0)
    m = fresh()
    m.watch_pbx("asterisk", lambda: True)
    server = await serve(m, broken)
    try:
        health = await get(server.port, "/healthz")
        scraped = await get(server.port, "/metrics")
    finally:
        await server.close()
        await broken.close()
    assert health.status == 503
    assert health.json()["store"]["up"] is False
    assert health.json()["store"]["error"]
    assert sample(scraped.text, "pbx_agent_store_up") == 0.0


async def test_the_store_probe_refreshes_the_callback_jobs_gauge(store: Store) -> None:
    """Jobs per status are read from the store, every status present (zero included)."""
    m = fresh()
    server = await serve(m, store)
    try:
        response = await get(server.port, "/metrics")
    finally:
        await server.close()
    assert sample(response.text, "pbx_agent_callback_jobs", status="scheduled") == 0.0
    assert sample(response.text, "pbx_agent_callback_jobs", status="exhausted") == 0.0


async def test_unknown_paths_are_404_and_other_methods_405() -> None:
    """Only GET/HEAD of the two paths (and /) are served."""
    server = await serve(fresh())
    try:
        missing = await get(server.port, "/admin")
        posted = await get(server.port, "/metrics", method="POST")
        head = await get(server.port, "/metrics", method="HEAD")
    finally:
        await server.close()
    assert missing.status == 404
    assert posted.status == 405
    assert head.status == 200
    assert head.body == b""
    assert int(head.headers["content-length"]) > 0


async def test_a_malformed_request_is_400() -> None:
    """A request line that is not HTTP gets 400."""
    server = await serve(fresh())
    try:
        bad = await request(server.port, b"HELLO\r\n\r\n")
    finally:
        await server.close()
    assert bad.status == 400


async def test_a_client_that_never_finishes_its_request_is_cut_off() -> None:
    """Half a request: the server closes the connection at its read deadline (0.5 s here)."""
    server = await serve(fresh())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
    finally:
        await server.close()
    assert data == b""

"""Shared fixtures: ``im serve`` as a real process on a free port, and SDK clients."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest
from harness import ServeProcess, log_tails
from servers import mariadb_server, mysql_server, redis_server, rocketmq_server  # noqa: F401  (session fixtures: real servers)

from edgeim.sdk import Client

CODECS = ["cython", "python"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """A failed test's report carries the tails of the node logs it kept in its tmp_path
    (a cluster's nodes write there): CI keeps the report, not the tmp dir."""
    outcome = yield
    report = outcome.get_result()
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp, Path):
        for title, text in log_tails(tmp):
            report.sections.append((title, text))


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def serve_factory(tmp_path: Path) -> AsyncIterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def make(codec: str = "cython", **settings: object) -> ServeProcess:
        server = ServeProcess(tmp_path / f"data{len(started)}", codec, **settings)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        if server.alive:
            server.stop()


@pytest.fixture
def server(serve_factory: Callable[..., ServeProcess]) -> ServeProcess:
    return serve_factory()


@pytest.fixture
async def clients(server: ServeProcess) -> AsyncIterator[Callable[..., asyncio.Future[Client]]]:
    """``await clients()`` gives a connected Client; all are closed at the end."""
    made: list[Client] = []

    async def make(**kwargs: object) -> Client:
        client = Client(server.url, **kwargs)  # type: ignore[arg-type]
        await client.connect()
        made.append(client)
        return client

    yield make  # type: ignore[misc]
    for client in made:
        await client.close()

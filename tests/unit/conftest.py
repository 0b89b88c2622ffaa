"""A real gRPC server over fake engines, for tests of the RPC surface."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from broker.daemon.server import serve
from broker.model.options import EngineName
from broker.runtime.settings import Settings
from broker.runtime.wiring import Broker
from browserbroker import AsyncBrokerClient
from tests.fakes import FakeEngine


@dataclass
class Running:
    broker: Broker
    engine: FakeEngine
    port: int
    clients: list[AsyncBrokerClient]

    def client(self, **kwargs: Any) -> AsyncBrokerClient:
        client = AsyncBrokerClient(f"127.0.0.1:{self.port}", **kwargs)
        self.clients.append(client)
        return client


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None], Running]] = []

    async def run(**overrides: Any) -> Running:
        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "warm_pool_size": 0,
            "log_level": "WARNING",
            "capacity": 4,
            "engines": [EngineName.CHROMIUM, EngineName.FIREFOX],
            "shutdown_grace_s": 0,
            "drain_timeout_s": 0,
            **overrides,
        }
        settings = Settings.model_validate(values)
        engine = FakeEngine()
        broker = Broker(
            settings,
            engines={
                EngineName.CHROMIUM: engine,
                EngineName.FIREFOX: FakeEngine(EngineName.FIREFOX),
            },
        )
        stop = asyncio.Event()
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(settings, stop=stop, on_ready=ready.set_result, broker=broker)
        )
        waiting: set[asyncio.Future[Any]] = {task, ready}
        done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        running = Running(broker, engine, ready.result(), [])
        stops.append((stop, task, running))
        return running

    yield run
    failures: list[str] = []
    for stop, task, running in stops:
        try:
            for client in running.clients:
                await client.close()
            await running.broker.leases.wait_all_closed()
            if running.broker.leases.active_count:
                failures.append(f"leases left: {running.broker.leases.active_count}")
        finally:  # the server always stops, or its loop dies with gRPC still in it
            stop.set()
            await asyncio.wait_for(task, 30)
        if running.engine.open_sessions:
            failures.append(f"sessions left open: {len(running.engine.open_sessions)}")
    assert not failures, failures

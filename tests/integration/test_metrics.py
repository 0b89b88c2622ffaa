"""Metrics reach a Prometheus scrape endpoint with the lease table's and the engines' figures."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest

from browserbroker import AsyncBrokerClient, steps
from tests.support import BrokerProcess

pytestmark = pytest.mark.browser


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def metric(text: str, name: str) -> float:
    """The sum of a metric's samples; `name` may end in a label prefix (`...{engine="x",`)."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name)
        and not line.startswith("#")
        and (name.endswith(",") or line[len(name)] in " {")
    ]
    assert values, f"{name} not exported"
    return sum(values)


def test_prometheus_endpoint_exports_lease_metrics() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    broker = BrokerProcess(args=["--prometheus-port", str(port), "--warm-pool-size", "1"]).start()
    try:

        async def scenario() -> str:
            async with AsyncBrokerClient(broker.address) as client:
                async with client.lease() as lease:
                    await lease.run(steps.evaluate("1"), timeout=10)
                    during = scrape(port)
                    assert metric(during, "broker_leases_active") == 1
                    assert metric(during, "broker_browsers") >= 1
                return scrape(port)

        after = asyncio.run(scenario())
        assert metric(after, "broker_leases_active") == 0
        assert metric(after, "broker_lease_releases_total") >= 1
        assert metric(after, "broker_step_duration_seconds_count") >= 1
        assert metric(after, "broker_acquire_duration_seconds_count") >= 1
        # The default pair's pool, by engine and isolation: the lease was a hit or a miss.
        pool = '{engine="chromium",isolation="context",'
        assert metric(after, "broker_pool_target" + pool) == 1
        assert metric(after, "broker_pool_ready" + pool) <= 1
        assert metric(after, "broker_pool_opening" + pool) <= 1
        hits = metric(after, "broker_pool_hits_total" + pool)
        assert hits + metric(after, "broker_pool_misses_total" + pool) == 1
    finally:
        broker.stop()

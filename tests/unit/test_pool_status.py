"""What the pools show: GetStatus (each pool to admins, none to other tenants), the metrics'
per-pool observations, and the lease span's `lease.warm` and `lease.pool`."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from opentelemetry.metrics import CallbackOptions
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker.leases.lease import Lease, LeaseSpec
from broker.model.options import EngineName, Isolation
from broker.observe.lease_telemetry import LeaseTelemetry
from broker.warm.pool import PoolStatus
from browserbroker import Engine
from browserbroker import Isolation as PbIsolation
from browserbroker.v1 import broker_pb2 as pb

TOKENS = {"alpha": "alpha-token", "ops": "ops-token"}
TENANTS = [
    {"name": name, "token_sha256": [hashlib.sha256(token.encode()).hexdigest()], "admin": admin}
    for (name, token), admin in zip(TOKENS.items(), (False, True), strict=True)
]
POOLS = [
    {"engine": "chromium", "isolation": "browser", "size": 1},
    {"engine": "firefox", "isolation": "browser", "size": 1, "max_size": 3},
]


async def test_status_shows_each_pool_to_admins_only(start: Any) -> None:
    running = await start(tenants=TENANTS, warm_pools=POOLS)
    for pool in running.broker.pools:
        await asyncio.wait_for(pool.filled.wait(), 5)
    ops = running.client(token=TOKENS["ops"])
    alpha = running.client(token=TOKENS["alpha"])
    warm = await alpha.acquire(engine=Engine.FIREFOX, isolation=PbIsolation.BROWSER)
    cold = await alpha.acquire(  # options a pooled session lacks
        engine=Engine.FIREFOX,
        isolation=PbIsolation.BROWSER,
        context=pb.ContextOptions(user_agent="probe/1"),
    )
    assert warm.grant.warm and not cold.grant.warm
    status = await ops.status()
    pools = {(p.engine, p.isolation): p for p in status.pools}
    assert set(pools) == {
        (pb.ENGINE_CHROMIUM, pb.ISOLATION_BROWSER),
        (pb.ENGINE_FIREFOX, pb.ISOLATION_BROWSER),
    }
    firefox = pools[(pb.ENGINE_FIREFOX, pb.ISOLATION_BROWSER)]
    assert (firefox.hits, firefox.misses, firefox.min_size, firefox.max_size) == (1, 1, 1, 3)
    assert firefox.target == 1  # the lease with options is no demand the pool could serve
    chromium = pools[(pb.ENGINE_CHROMIUM, pb.ISOLATION_BROWSER)]
    assert (chromium.target, chromium.hits, chromium.misses) == (1, 0, 0)
    assert status.warm_pool_size == sum(p.ready for p in status.pools)
    assert not (await alpha.status()).pools  # another tenant's demand is not a tenant's business
    for lease in (warm, cold):
        await lease.release()


def test_metrics_observe_each_pool() -> None:
    statuses = [
        PoolStatus(EngineName.FIREFOX, Isolation.BROWSER, 4, 2, 8, 3, 1, 10, 5),
        PoolStatus(EngineName.CHROMIUM, Isolation.CONTEXT, 2, 2, 2, 2, 0, 7, 0),
    ]
    telemetry = LeaseTelemetry(pools=lambda: statuses)
    expected = {"target": [4, 2], "ready": [3, 2], "opening": [1, 0], "hits": [10, 7]}
    for field, values in expected.items():
        observed = list(telemetry._observe_pools(field)(CallbackOptions()))
        assert [o.value for o in observed] == values
        assert [dict(o.attributes or {}) for o in observed] == [
            {"engine": "firefox", "isolation": "browser"},
            {"engine": "chromium", "isolation": "context"},
        ]


def test_the_lease_span_says_whether_it_was_warm_and_from_which_pool() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = LeaseTelemetry()
    telemetry.tracer = provider.get_tracer("test")
    warm = Lease(LeaseSpec(EngineName.FIREFOX, Isolation.BROWSER, 60, 60), 0.0, warm=True)
    cold = Lease(LeaseSpec(EngineName.FIREFOX, Isolation.BROWSER, 60, 60), 0.0)
    for lease in (warm, cold):
        telemetry.lease_granted(lease)
        telemetry._spans.pop(lease.id).end()
    spans = {}
    for span in exporter.get_finished_spans():
        attributes = dict(span.attributes or {})
        spans[attributes["lease.id"]] = attributes
    assert spans[warm.id]["lease.warm"] is True
    assert spans[warm.id]["lease.pool"] == "firefox/browser"
    assert spans[cold.id]["lease.warm"] is False and "lease.pool" not in spans[cold.id]

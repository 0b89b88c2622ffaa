"""A cluster as it is deployed on a network: mutual TLS between everyone, tenants with tokens,
and the cluster's secret vouching for forwarded calls (docs/cluster.md, docs/security.md)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from browserbroker import steps
from browserbroker.aio import AsyncBrokerClient
from browserbroker.v1 import broker_pb2 as pb
from tests.certs import CertificateAuthority
from tests.cluster_support import Cluster
from tests.redis_server import RedisServer

pytestmark = pytest.mark.browser

TOKENS = {
    "ops": "ops-token-0123456789",
    "scraper": "scraper-token-0123456789",
    "other": "other-token-0123456789",
}


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[tuple[Cluster, dict[str, Path]]]:
    ca = CertificateAuthority()
    files = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(ca.pem)
    files["server"], files["server_key"] = ca.issue("broker-node", server=True).write(
        tmp_path, "server"
    )
    files["node"], files["node_key"] = ca.issue("cluster-node", server=False).write(
        tmp_path, "node"
    )
    files["client"], files["client_key"] = ca.issue("a-client", server=False).write(
        tmp_path, "client"
    )
    tenants = [
        {"name": "ops", "admin": True, "token_sha256": [_digest("ops")]},
        {"name": "scraper", "token_sha256": [_digest("scraper")], "max_leases": 1},
        {"name": "other", "token_sha256": [_digest("other")]},
    ]
    redis = RedisServer().start()
    cluster = Cluster(
        redis,
        env={
            "BROKER_TLS_CERT_FILE": str(files["server"]),
            "BROKER_TLS_KEY_FILE": str(files["server_key"]),
            "BROKER_TLS_CLIENT_CA_FILE": str(files["ca"]),
            "BROKER_TENANTS": json.dumps(tenants),
            "BROKER_CLUSTER_SECRET": "the-cluster-secret-0123456789",
            "BROKER_CLUSTER_CA_FILE": str(files["ca"]),
            "BROKER_CLUSTER_CLIENT_CERT_FILE": str(files["node"]),
            "BROKER_CLUSTER_CLIENT_KEY_FILE": str(files["node_key"]),
        },
        connect=lambda address: _client(address, files, "ops"),
    )
    try:
        for name in ("a", "b"):
            cluster.start_node(name)
        await cluster.wait_formed()
        yield cluster, files
    finally:
        await cluster.stop()
        redis.stop()


def _digest(tenant: str) -> str:
    return hashlib.sha256(TOKENS[tenant].encode()).hexdigest()


def _client(address: str, files: dict[str, Path], tenant: str | None) -> AsyncBrokerClient:
    return AsyncBrokerClient(
        address,
        token=TOKENS[tenant] if tenant else None,
        root_certificates=files["ca"],
        client_certificate=files["client"],
        client_key=files["client_key"],
    )


async def test_tenants_work_through_any_node_over_mutual_tls(
    secure: tuple[Cluster, dict[str, Path]],
) -> None:
    cluster, files = secure
    a, b = (cluster.nodes[name].process.address for name in ("a", "b"))
    scraper_a, scraper_b = _client(a, files, "scraper"), _client(b, files, "scraper")
    other_b = _client(b, files, "other")
    try:
        lease = await scraper_a.stub.Acquire(
            pb.AcquireRequest(), timeout=60, metadata=_auth("scraper")
        )
        run = scraper_b.stub.Run(
            pb.RunRequest(
                lease_id=lease.lease_id, token=lease.token, steps=[steps.evaluate("2+2")]
            ),
            metadata=_auth("scraper"),
        )
        (answer,) = [response async for response in run]
        assert answer.step.ok and answer.step.json == "4"  # forwarded B -> A over mutual TLS

        # Its quota (one lease) holds across the cluster: B holds none of its leases itself.
        with pytest.raises(grpc.aio.AioRpcError) as over:
            await scraper_b.stub.Acquire(pb.AcquireRequest(), timeout=60, metadata=_auth("scraper"))
        assert over.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "across the cluster" in (over.value.details() or "")

        # Another tenant learns nothing of it, on any node.
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await other_b.stub.Release(
                pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token),
                metadata=_auth("other"),
            )
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND

        # A caller cannot pass itself off as a forwarding node, with or without a guessed secret.
        for forged in ((), (("x-broker-cluster-secret", "a-guess"),)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await other_b.stub.Release(
                    pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token),
                    metadata=(("x-broker-forwarded-tenant", "scraper"), *forged),
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

        released = await scraper_b.stub.Release(
            pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token), metadata=_auth("scraper")
        )
        assert released.released_now and released.reason == pb.RELEASE_REASON_CLIENT_RELEASE
        again = await scraper_b.stub.Acquire(
            pb.AcquireRequest(), timeout=60, metadata=_auth("scraper")
        )
        await scraper_a.stub.Release(
            pb.ReleaseRequest(lease_id=again.lease_id, token=again.token), metadata=_auth("scraper")
        )
    finally:
        for client in (scraper_a, scraper_b, other_b):
            await client.close()


def _auth(tenant: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[tenant]}"),)

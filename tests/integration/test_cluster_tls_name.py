"""TLS between nodes that are dialled at addresses no certificate names (pods' IPs): every node
presents one certificate for a shared name (`cluster_tls_server_name`, in Kubernetes the
headless Service's), and forwarded calls verify that name (docs/cluster.md#security,
docs/kubernetes.md#tls-in-cluster-mode). Two real nodes on a real Redis, dialled at 127.0.0.1,
with certificates that name only a DNS name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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

SERVER_NAME = "bb-browser-broker.browsers.svc"


def _client(ca: Path, name: str) -> Callable[[str], AsyncBrokerClient]:
    """The test's own client: it dials 127.0.0.1 too, so it checks the certificate's name."""

    def connect(address: str) -> AsyncBrokerClient:
        channel = grpc.aio.secure_channel(
            address,
            grpc.ssl_channel_credentials(ca.read_bytes()),
            options=[("grpc.ssl_target_name_override", name)],
        )
        return AsyncBrokerClient(address, channel=channel)

    return connect


async def _two_nodes(
    tmp_path: Path, certificate_names: str, server_name: str | None
) -> AsyncIterator[Cluster]:
    ca = CertificateAuthority()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    # One certificate for every node, naming one DNS name and no address.
    cert, key = ca.issue("browser-broker", server=True, dns_names=[certificate_names]).write(
        tmp_path, "node"
    )
    env = {
        "BROKER_TLS_CERT_FILE": str(cert),
        "BROKER_TLS_KEY_FILE": str(key),
        "BROKER_CLUSTER_CA_FILE": str(ca_file),
        "BROKER_WARM_POOL_SIZE": "0",
    }
    if server_name is not None:
        env["BROKER_CLUSTER_TLS_SERVER_NAME"] = server_name
    redis = RedisServer().start()
    cluster = Cluster(redis, capacity=2, env=env, connect=_client(ca_file, certificate_names))
    try:
        for name in ("a", "b"):
            cluster.start_node(name)
        await cluster.wait_formed()
        yield cluster
    finally:
        await cluster.stop()
        redis.stop()


async def _run_through_b(cluster: Cluster) -> tuple[pb.AcquireResponse, list[pb.RunResponse]]:
    """A lease granted by node A, and a Run on it sent to node B (which forwards it to A)."""
    lease = await cluster.nodes["a"].client.stub.Acquire(pb.AcquireRequest(), timeout=60)
    run = cluster.nodes["b"].client.stub.Run(
        pb.RunRequest(lease_id=lease.lease_id, token=lease.token, steps=[steps.evaluate("6*7")]),
        timeout=30,
    )
    try:
        return lease, [answer async for answer in run]
    except BaseException:
        await cluster.nodes["a"].client.stub.Release(
            pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token)
        )
        raise


@pytest.fixture
async def named(tmp_path: Path) -> AsyncIterator[Cluster]:
    async for cluster in _two_nodes(tmp_path, SERVER_NAME, SERVER_NAME):
        yield cluster


async def test_a_forwarded_call_verifies_the_shared_name(named: Cluster) -> None:
    lease, (answer,) = await _run_through_b(named)
    assert answer.step.ok and answer.step.json == "42"  # B -> A over TLS, A's name verified
    released = await named.nodes["b"].client.stub.Release(
        pb.ReleaseRequest(lease_id=lease.lease_id, token=lease.token)
    )
    assert released.released_now and released.reason == pb.RELEASE_REASON_CLIENT_RELEASE


@pytest.mark.parametrize(
    ("certificate_names", "server_name"),
    [("someone-else.browsers.svc", SERVER_NAME), (SERVER_NAME, None)],
    ids=["certificate-for-another-name", "no-server-name"],
)
async def test_a_node_whose_certificate_does_not_carry_the_name_is_not_trusted(
    tmp_path: Path, certificate_names: str, server_name: str | None
) -> None:
    """A certificate for another name fails the check; and without the setting, a node dialled
    at 127.0.0.1 is checked for that address, which the certificate does not name."""
    async for cluster in _two_nodes(tmp_path, certificate_names, server_name):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _run_through_b(cluster)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "cannot be reached" in (refused.value.details() or "")

"""Who a forwarded call is: only a cluster node, with the cluster's secret, may name a tenant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from broker.api.auth import Authenticator, Credentials
from broker.api.cluster_metadata import CLUSTER_SECRET, FORWARDED_TENANT
from broker.errors import Unauthenticated
from broker.leases.tenants import OPERATOR, Tenant

SCRAPER = Tenant("scraper")
SECRET = "s3cret-of-the-cluster"


@dataclass
class CallContext:
    metadata: tuple[tuple[str, str], ...] = ()
    auth: dict[str, list[bytes]] = field(default_factory=dict)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


def forwarded(tenant: str, secret: str | None) -> Any:
    metadata = [(FORWARDED_TENANT, tenant)]
    if secret is not None:
        metadata.append((CLUSTER_SECRET, secret))
    return CallContext(tuple(metadata))


TENANTS = [Credentials(SCRAPER, (b"\0" * 32,))]


def test_a_node_with_the_secret_vouches_for_a_tenant() -> None:
    auth = Authenticator(TENANTS, cluster=True, cluster_secret=SECRET)
    assert auth.tenant_for(forwarded("scraper", SECRET)) == SCRAPER


@pytest.mark.parametrize(
    ("auth", "context", "message"),
    [
        (Authenticator(TENANTS), forwarded("scraper", SECRET), "only by cluster nodes"),
        (
            Authenticator(TENANTS, cluster=True, cluster_secret=SECRET),
            forwarded("scraper", "guess"),
            "secret of the forwarded call is not valid",
        ),
        (
            Authenticator(TENANTS, cluster=True, cluster_secret=SECRET),
            forwarded("scraper", None),
            "secret of the forwarded call is not valid",
        ),
        (
            Authenticator(TENANTS, cluster=True, cluster_secret=SECRET),
            forwarded("nobody", SECRET),
            "unknown tenant 'nobody'",
        ),
        (Authenticator(TENANTS, cluster=True), forwarded("scraper", None), "need cluster_secret"),
    ],
    ids=["not-a-cluster", "wrong-secret", "no-secret", "unknown-tenant", "no-secret-configured"],
)
def test_forwarded_calls_are_refused_without_proof(
    auth: Authenticator, context: Any, message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message):
        auth.tenant_for(context)


def test_with_authentication_off_a_forwarded_call_is_the_operator() -> None:
    assert Authenticator([], cluster=True).tenant_for(forwarded("scraper", None)) == OPERATOR
    with pytest.raises(Unauthenticated):  # a cluster secret, when set, is still checked
        Authenticator([], cluster=True, cluster_secret=SECRET).tenant_for(
            forwarded("operator", "guess")
        )

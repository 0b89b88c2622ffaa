"""Who a forwarded call is: only a cluster node, signing the call with the cluster's secret, may
name a tenant; a signature is good for one call, once, within the clocks' skew, under the
current secret or a previous one (rotation)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from broker.api.auth import Authenticator, Credentials
from broker.api.cluster_metadata import CLUSTER_SECRET, FORWARDED_TENANT, ForwardedCall
from broker.cluster.signing import MAX_SKEW_S, CallSigner
from broker.errors import Unauthenticated, Unavailable
from broker.leases.tenants import OPERATOR, Tenant

SCRAPER = Tenant("scraper")
SECRET = "s3cret-of-the-cluster"
NEXT = "the-next-secret-of-the-cluster"


@dataclass
class CallContext:
    metadata: tuple[tuple[str, str], ...] = ()
    auth: dict[str, list[bytes]] = field(default_factory=dict)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


NODE = "node-b"
CALL = ForwardedCall("scraper", "KeepAlive", "lease-1", "ab" * 32, to_node=NODE)


def forwarded(secret: str | None, call: ForwardedCall = CALL, **signer: Any) -> Any:
    return CallContext(
        tuple(call.metadata(CallSigner(secret, **signer) if secret is not None else None))
    )


TENANTS = [Credentials(SCRAPER, (b"\0" * 32,))]


def cluster_auth(*previous: str, node: str = NODE) -> Authenticator:
    return Authenticator(
        TENANTS,
        cluster=True,
        cluster_secret=SECRET,
        previous_secrets=previous,
        node_id=lambda: node,
    )


def node(**settings: Any) -> Authenticator:
    return Authenticator(TENANTS, cluster=True, node_id=lambda: NODE, **settings)


def test_a_node_with_the_secret_vouches_for_a_tenant() -> None:
    assert cluster_auth().tenant_for(forwarded(SECRET), "KeepAlive") == SCRAPER


def test_a_signature_is_good_once() -> None:
    auth, context = cluster_auth(), forwarded(SECRET)
    assert auth.tenant_for(context, "KeepAlive") == SCRAPER
    with pytest.raises(Unauthenticated, match="replayed"):
        auth.tenant_for(context, "KeepAlive")


def test_rotation_accepts_the_previous_secret_and_the_next() -> None:
    # Step 1 of a rotation: nodes still signing with SECRET accept NEXT already.
    assert cluster_auth(NEXT).tenant_for(forwarded(NEXT), "KeepAlive") == SCRAPER
    # Step 2: nodes signing with NEXT still accept SECRET.
    rotated = node(cluster_secret=NEXT, previous_secrets=[SECRET])
    assert rotated.tenant_for(forwarded(SECRET), "KeepAlive") == SCRAPER
    # Step 3: SECRET dropped.
    with pytest.raises(Unauthenticated, match="signature"):
        node(cluster_secret=NEXT).tenant_for(forwarded(SECRET), "KeepAlive")


@pytest.mark.parametrize("offset_s", [-MAX_SKEW_S - 5, MAX_SKEW_S + 5])
def test_a_signature_outside_the_clock_skew_is_refused(offset_s: float) -> None:
    context = forwarded(SECRET, clock=lambda: time.time() + offset_s)
    with pytest.raises(Unauthenticated, match="signed"):
        cluster_auth().tenant_for(context, "KeepAlive")


def tampered(key: str, value: str) -> Any:
    metadata = forwarded(SECRET).metadata
    return CallContext(tuple((k, value if k == key else v) for k, v in metadata))


# Each case is made when its test runs, not when the module is collected: a signature made at
# collection would be older than the clocks' skew by the time a long suite reaches it.
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: (Authenticator(TENANTS), forwarded(SECRET)), "only by cluster nodes"),
        (
            lambda: (cluster_auth(), forwarded("a-guessed-secret")),
            "signature of the forwarded call",
        ),
        (lambda: (cluster_auth(), forwarded(None)), "not signed"),
        (
            lambda: (cluster_auth(), forwarded(SECRET, replace(CALL, tenant="nobody"))),
            "unknown tenant 'nobody'",
        ),
        (lambda: (cluster_auth(), tampered(FORWARDED_TENANT, "ops")), "signature"),
        (lambda: (cluster_auth(), tampered("x-broker-method", "Release")), "signature"),
        (lambda: (cluster_auth(), tampered("x-broker-signed-at", "12")), "signature"),
        (
            lambda: (cluster_auth(), forwarded(SECRET, replace(CALL, hop=2))),
            "never forwarded again",
        ),
        (
            lambda: (
                cluster_auth(),
                CallContext(((FORWARDED_TENANT, "scraper"), (CLUSTER_SECRET, SECRET))),
            ),
            "never travels",
        ),
        (lambda: (cluster_auth(), CallContext((("x-broker-placed", "1"),))), "lacks"),
        (lambda: (node(), forwarded(None)), "need cluster_secret"),
    ],
    ids=[
        "not-a-cluster",
        "wrong-secret",
        "unsigned",
        "unknown-tenant",
        "other-tenant",
        "other-method",
        "other-time",
        "second-hop",
        "secret-in-clear",
        "placement-header-alone",
        "no-secret-configured",
    ],
)
def test_forwarded_calls_are_refused_without_proof(
    make: Callable[[], tuple[Authenticator, Any]], message: str
) -> None:
    auth, context = make()
    with pytest.raises(Unauthenticated, match=message):
        auth.tenant_for(context, "KeepAlive")


def test_with_authentication_off_a_forwarded_call_is_the_operator() -> None:
    open_node = Authenticator([], cluster=True, node_id=lambda: NODE)
    assert open_node.tenant_for(forwarded(None), "KeepAlive") == OPERATOR
    with pytest.raises(Unauthenticated):  # a cluster secret, when set, is still checked
        Authenticator([], cluster=True, cluster_secret=SECRET, node_id=lambda: NODE).tenant_for(
            forwarded("a-guessed-secret"), "KeepAlive"
        )


def test_a_signature_for_one_node_is_refused_at_another() -> None:
    # Captured on its way to node B (no TLS between nodes), replayed to node C: C has its own
    # nonces, so only the destination in the signature stops it.
    context = forwarded(SECRET)
    with pytest.raises(Unauthenticated, match="signed for node 'node-b', not this node"):
        cluster_auth(node="node-c").tenant_for(context, "KeepAlive")
    assert cluster_auth().tenant_for(context, "KeepAlive") == SCRAPER
    with pytest.raises(Unauthenticated, match="signature"):  # and the destination is signed
        cluster_auth(node="node-c").tenant_for(tampered("x-broker-to-node", "node-c"), "KeepAlive")


def test_a_signature_for_one_method_is_refused_by_another_handler() -> None:
    # GetStatus routes nothing, so only the authenticator binds the method there.
    context = forwarded(SECRET, replace(CALL, method="Run"))
    with pytest.raises(Unauthenticated, match="signed for 'Run', not 'GetStatus'"):
        cluster_auth().tenant_for(context, "GetStatus")
    assert cluster_auth().tenant_for(context, "Run") == SCRAPER


def test_a_nonce_is_forgotten_when_its_time_refuses_it_whatever_arrived_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The signers' clocks differ by up to MAX_SKEW_S: a nonce signed late must not wait for one
    # signed early that arrived before it, or the cap is reached by nonces already refused.
    monkeypatch.setattr("broker.cluster.signing.MAX_NONCES", 2)
    now = [1_000_000.0]
    receiver = CallSigner(SECRET, clock=lambda: now[0])

    def arrives(signer_offset_s: float) -> None:
        signer = CallSigner(SECRET, clock=lambda: now[0] + signer_offset_s)
        receiver.check(CALL.fields, *signer.sign(CALL.fields))

    arrives(MAX_SKEW_S - 1)  # early: its time refuses it only 2 * MAX_SKEW_S - 1 s from now
    arrives(-MAX_SKEW_S + 1)  # late: refused by its time alone 1 s from now
    now[0] += 2
    arrives(0)  # the late one is forgotten: room again
    with pytest.raises(Unavailable, match="too many forwarded calls"):
        arrives(0)

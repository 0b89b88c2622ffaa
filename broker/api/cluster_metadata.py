"""The metadata of calls between cluster nodes, all in one place.

A call one node forwards to another says what it is (method, lease, a digest of the request
bytes), the node it is for (so it is good at no other node), the tenant the first node authenticated, that it was forwarded (its hop, so it is never
forwarded again) and, for an Acquire placed on another node, that it was placed; all of it is
signed with the cluster's secret (`broker.cluster.signing`, checked by `broker.api.auth`, bound
to the call itself by `broker.api.forwarding`). A full node answers a placed Acquire with a
trailer. The secret itself never travels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.cluster.signing import CallSigner
from broker.errors import Unauthenticated

FORWARDED_TENANT = "x-broker-forwarded-tenant"
HOP = "x-broker-hop"  # a forwarded call: answered where it arrives, never forwarded again
PLACED = "x-broker-placed"  # an Acquire another node placed here: serve it here or say no room
METHOD = "x-broker-method"
TO_NODE = "x-broker-to-node"  # the node the call is signed for: refused at any other
LEASE = "x-broker-lease"
REQUEST_SHA256 = "x-broker-request-sha256"
SIGNED_AT = "x-broker-signed-at"  # ms since the epoch, by the signing node's clock
NONCE = "x-broker-nonce"
SIGNATURE = "x-broker-signature"
CLUSTER_SECRET = "x-broker-cluster-secret"  # sent by older nodes; refused: a secret never travels
NO_ROOM = "x-broker-no-room"  # the answer of a full node to a placed Acquire

# Any of these makes a call one that claims to come from a node.
CLUSTER_HEADERS = frozenset(
    {FORWARDED_TENANT, HOP, PLACED, METHOD, LEASE, REQUEST_SHA256, SIGNED_AT, NONCE, SIGNATURE}
    | {TO_NODE, CLUSTER_SECRET}
)


@dataclass(frozen=True)
class ForwardedCall:
    """What a forwarding node says of a call, as its metadata carries it."""

    tenant: str
    method: str
    lease_id: str
    request_sha256: str
    to_node: str
    placed: bool = False
    hop: int = 1
    signed_at_ms: int = 0
    nonce: str = ""
    signature: str = ""

    @property
    def fields(self) -> tuple[str, ...]:
        """What the signature covers, besides its time and nonce."""
        return (
            self.to_node,
            self.method,
            self.lease_id,
            self.tenant,
            str(self.hop),
            "1" if self.placed else "0",
            self.request_sha256,
        )

    def metadata(self, signer: CallSigner | None) -> list[tuple[str, str]]:
        """The call's metadata, signed when the cluster has a secret."""
        sent = [
            (FORWARDED_TENANT, self.tenant),
            (HOP, str(self.hop)),
            (METHOD, self.method),
            (TO_NODE, self.to_node),
            (LEASE, self.lease_id),
            (REQUEST_SHA256, self.request_sha256),
        ]
        if self.placed:
            sent.append((PLACED, "1"))
        if signer is not None:
            signed_at, nonce, signature = signer.sign(self.fields)
            sent += [(SIGNED_AT, str(signed_at)), (NONCE, nonce), (SIGNATURE, signature)]
        return sent


def forwarded_call(metadata: Iterable[tuple[str, Any]]) -> ForwardedCall | None:
    """The call as the forwarding node described it; None for a call from a client.
    Unauthenticated when cluster metadata is there but incomplete or malformed."""
    found: dict[str, str] = {}
    for key, value in metadata:
        if key in CLUSTER_HEADERS:
            if not isinstance(value, str) or key in found:
                raise Unauthenticated(f"cluster metadata {key!r} is malformed or repeated")
            found[key] = value
    if not found:
        return None
    if CLUSTER_SECRET in found:
        raise Unauthenticated(
            f"{CLUSTER_SECRET} is refused: the cluster secret never travels, forwarded calls "
            "are signed with it"
        )
    missing = [
        key
        for key in (FORWARDED_TENANT, HOP, METHOD, TO_NODE, LEASE, REQUEST_SHA256)
        if key not in found
    ]
    if missing:
        raise Unauthenticated(f"the forwarded call lacks {', '.join(missing)}")
    try:
        hop = int(found[HOP])
        signed_at = int(found.get(SIGNED_AT, "0"))
    except ValueError:
        raise Unauthenticated(f"{HOP} and {SIGNED_AT} must be integers") from None
    if found.get(PLACED, "1") != "1":
        raise Unauthenticated(f"{PLACED} must be '1'")
    return ForwardedCall(
        tenant=found[FORWARDED_TENANT],
        method=found[METHOD],
        lease_id=found[LEASE],
        request_sha256=found[REQUEST_SHA256],
        to_node=found[TO_NODE],
        placed=PLACED in found,
        hop=hop,
        signed_at_ms=signed_at,
        nonce=found.get(NONCE, ""),
        signature=found.get(SIGNATURE, ""),
    )

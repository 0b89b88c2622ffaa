"""Who is calling: a tenant, from a bearer token or a client certificate.

Tokens are stored as SHA-256 digests and compared in constant time against every tenant's
digests (no early exit), so timing says nothing about which tenant or digest came close. A
token is never logged and never echoed. With no tenants configured, authentication is off and
every caller is the operator (the server then listens on loopback only, unless told otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpc import aio

from broker.api.cluster_metadata import ForwardedCall, forwarded_call
from broker.cluster.signing import CallSigner
from broker.errors import Unauthenticated
from broker.leases.tenants import OPERATOR, Tenant

BEARER = "bearer "


@dataclass(frozen=True)
class Credentials:
    tenant: Tenant
    token_sha256: tuple[bytes, ...] = ()
    client_cert_names: tuple[str, ...] = ()


class Authenticator:
    def __init__(
        self,
        credentials: Sequence[Credentials],
        cluster: bool = False,
        cluster_secret: str | None = None,
        previous_secrets: Sequence[str] = (),
        node_id: Callable[[], str] = lambda: "",
    ) -> None:
        """`cluster_secret` signs and checks forwarded calls; `previous_secrets` are still
        accepted from nodes that sign with them (a rotation window). `node_id` says this node's id
        (it changes when a node rejoins): a forwarded call signed for another node is refused."""
        self._credentials = list(credentials)
        self._cluster = cluster
        self._node_id = node_id
        self._signer = (
            CallSigner(cluster_secret, previous_secrets) if cluster_secret is not None else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._credentials)

    def tenant_for(self, context: aio.ServicerContext[Any, Any], method: str) -> Tenant:
        """The calling tenant of a call to `method` (the handler's own name); Unauthenticated
        when authentication is on and nothing matches."""
        metadata = tuple(context.invocation_metadata() or ())
        forwarded = forwarded_call(metadata)
        if forwarded is not None:
            return self._forwarded(forwarded, method)
        if not self._credentials:
            return OPERATOR
        token = _bearer_token(metadata)
        if token is not None:
            tenant = self._by_token(token)
            if tenant is None:
                raise Unauthenticated("the bearer token is not valid")
            return tenant
        tenant = self._by_certificate(context.auth_context())
        if tenant is None:
            raise Unauthenticated(
                "no credential: send 'authorization: Bearer <token>' metadata, "
                "or a client certificate registered for a tenant"
            )
        return tenant

    def _forwarded(self, call: ForwardedCall, method: str) -> Tenant:
        """The tenant a node vouches for: only with the cluster's signature over this very call
        to this very node (the edge binds the request bytes to it, `broker.api.forwarding`),
        once."""
        if not self._cluster:
            raise Unauthenticated("forwarded calls are accepted only by cluster nodes")
        if self._signer is not None:
            if not call.signature:
                raise Unauthenticated("the forwarded call is not signed with the cluster secret")
            self._signer.check(call.fields, call.signed_at_ms, call.nonce, call.signature)
        elif self._credentials:  # (the settings require a secret with tenants)
            raise Unauthenticated("forwarded calls need cluster_secret")
        if call.to_node != self._node_id():  # (nonces are per node: no replay elsewhere)
            raise Unauthenticated(
                f"the forwarded call is signed for node {call.to_node!r}, not this node"
            )
        if call.method != method:
            raise Unauthenticated(
                f"the forwarded call is signed for {call.method!r}, not {method!r}"
            )
        if call.hop != 1:
            raise Unauthenticated("a forwarded call is never forwarded again (hop must be 1)")
        if not self._credentials:
            return OPERATOR
        for credentials in self._credentials:
            if credentials.tenant.name == call.tenant:
                return credentials.tenant
        raise Unauthenticated(f"the forwarded call names an unknown tenant {call.tenant!r}")

    def _by_token(self, token: str) -> Tenant | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: Tenant | None = None
        for credentials in self._credentials:  # no early exit: timing reveals nothing
            for candidate in credentials.token_sha256:
                if hmac.compare_digest(digest, candidate) and found is None:
                    found = credentials.tenant
        return found

    def _by_certificate(self, auth_context: Mapping[str, Iterable[bytes]]) -> Tenant | None:
        names = {
            value.decode(errors="replace")
            for key in ("x509_common_name", "x509_subject_alternative_name")
            for value in auth_context.get(key, ())
        }
        if not names:
            return None
        for credentials in self._credentials:
            if names.intersection(credentials.client_cert_names):
                return credentials.tenant
        return None


def _bearer_token(metadata: Iterable[tuple[str, Any]]) -> str | None:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str):
            if value[: len(BEARER)].lower() != BEARER:
                raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
            return value[len(BEARER) :].strip()
    return None

"""Who is calling: a tenant, from a bearer token or a client certificate.

Tokens are stored as SHA-256 digests and compared in constant time against every tenant's
digests (no early exit), so timing says nothing about which tenant or digest came close. A
token is never logged and never echoed. With no tenants configured, authentication is off and
every caller is the operator (the server then listens on loopback only, unless told otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpc import aio

from broker.errors import Unauthenticated
from broker.tenants import OPERATOR, Tenant

BEARER = "bearer "


@dataclass(frozen=True)
class Credentials:
    tenant: Tenant
    token_sha256: tuple[bytes, ...] = ()
    client_cert_names: tuple[str, ...] = ()


class Authenticator:
    def __init__(self, credentials: Sequence[Credentials]) -> None:
        self._credentials = list(credentials)

    @property
    def enabled(self) -> bool:
        return bool(self._credentials)

    def tenant_for(self, context: aio.ServicerContext[Any, Any]) -> Tenant:
        """The calling tenant; Unauthenticated when authentication is on and nothing matches."""
        if not self._credentials:
            return OPERATOR
        token = _bearer_token(context.invocation_metadata() or ())
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

"""How a client reaches the broker: plain or TLS (with a client certificate for mutual TLS),
and the tenant's bearer token sent with every call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio

from browserbroker._tracing import trace_metadata

PemSource = bytes | str | Path


def _pem(source: PemSource | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


@dataclass(frozen=True)
class Connection:
    """Transport security and credentials for a broker channel.

    TLS is on when `tls` is true or any certificate is given. `root_certificates` is the CA
    that signed the broker's certificate (the system's roots when omitted); `client_certificate`
    and `client_key` are this client's certificate chain and key for mutual TLS. `token` is the
    tenant's bearer token, sent as `authorization: Bearer <token>` metadata on every call.
    """

    tls: bool = False
    root_certificates: PemSource | None = None
    client_certificate: PemSource | None = None
    client_key: PemSource | None = None
    token: str | None = None

    @property
    def secure(self) -> bool:
        return self.tls or any(
            source is not None
            for source in (self.root_certificates, self.client_certificate, self.client_key)
        )

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together")
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.root_certificates),
            private_key=_pem(self.client_key),
            certificate_chain=_pem(self.client_certificate),
        )

    def aio_channel(self, target: str) -> aio.Channel:
        if self.secure:
            return aio.secure_channel(target, self.credentials())
        return aio.insecure_channel(target)

    def channel(self, target: str) -> grpc.Channel:
        if self.secure:
            return grpc.secure_channel(target, self.credentials())
        return grpc.insecure_channel(target)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """What every call carries: the trace context, and the token when there is one."""
        extra = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        return trace_metadata() + extra

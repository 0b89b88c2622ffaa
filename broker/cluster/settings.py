"""Cluster mode's settings: off unless `cluster_url` names a Redis (docs/cluster.md)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# A host name as a certificate's DNS SAN names it (a leading "*." for a wildcard is not a name a
# node is dialled by, so it is refused).
_DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


class ClusterSettings(BaseModel):
    """The node's part of a cluster whose lease table lives in one Redis."""

    model_config = ConfigDict(extra="forbid")

    cluster_url: str | None = Field(
        None, description="redis:// or rediss:// URL of the cluster's store; unset: one machine"
    )
    cluster_advertise: str | None = Field(
        None, description="host:port the other nodes reach this node at (default: listen)"
    )
    cluster_secret: SecretStr | None = Field(
        None,
        description="shared by the nodes; signs the calls one node forwards to another "
        "(required when tenants are configured)",
    )
    cluster_previous_secrets: list[SecretStr] = Field(
        default_factory=list,
        max_length=8,
        description="secrets still accepted on forwarded calls, never used to sign: the "
        "window in which the nodes move from one cluster_secret to the next",
    )
    cluster_name: str = Field(
        "browser-broker", min_length=1, max_length=64, description="prefix of its Redis keys"
    )
    cluster_heartbeat_s: float = Field(1.0, gt=0, le=60, description="how often a node beats")
    cluster_dead_after_s: float = Field(
        5.0, gt=0, le=600, description="a node silent this long is dead and its leases end"
    )

    cluster_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle of the other nodes' certificates (forwarded calls use TLS "
        "when tls_cert_file is set); unset: the system's roots",
    )
    cluster_client_cert_file: Path | None = Field(
        None,
        description="PEM certificate this node presents to nodes that require client "
        "certificates (mutual TLS); unset: none",
    )
    cluster_client_key_file: Path | None = Field(
        None, description="PEM private key of cluster_client_cert_file"
    )
    cluster_tls_server_name: str | None = Field(
        None,
        max_length=253,
        description="the name every node's certificate carries (e.g. a Service's DNS name), "
        "checked on forwarded calls instead of the address a node is dialled at; unset: the "
        "address",
    )

    @field_validator("cluster_tls_server_name")
    @classmethod
    def _server_name(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a DNS name (letters, digits, '-' and '.', e.g. "
                "browser-broker.browsers.svc)"
            )
        return value

    @field_validator("cluster_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"{value!r} is not a redis://, rediss:// or unix:// URL")
        return value

    def check_cluster(self, listen: str, tenants: bool, tls: bool = False) -> None:
        """Raises ValueError naming what a cluster node is missing."""
        if self.cluster_url is None:
            if self.cluster_tls_server_name is not None:
                raise ValueError("cluster_tls_server_name is for cluster mode (cluster_url)")
            return
        if self.cluster_tls_server_name is not None and not tls:
            raise ValueError(
                "cluster_tls_server_name names the nodes' certificate, but the nodes serve no "
                "TLS (tls_cert_file), so forwarded calls would not check it"
            )
        if self.cluster_dead_after_s < 2 * self.cluster_heartbeat_s:
            raise ValueError("cluster_dead_after_s must be at least twice cluster_heartbeat_s")
        address = self.advertised(listen)
        host = address.rpartition(":")[0]
        if host in ("0.0.0.0", "[::]", "::", ""):
            raise ValueError(
                f"cluster_advertise: {address!r} is not an address other nodes can dial; "
                "set cluster_advertise to this node's host:port"
            )
        if (self.cluster_client_cert_file is None) != (self.cluster_client_key_file is None):
            raise ValueError("cluster_client_cert_file and cluster_client_key_file go together")
        if tenants and self.cluster_secret is None:
            raise ValueError("cluster_secret is required in cluster mode when tenants are set")
        if self.cluster_previous_secrets and self.cluster_secret is None:
            raise ValueError("cluster_previous_secrets needs cluster_secret (the one that signs)")
        for secret in (self.cluster_secret, *self.cluster_previous_secrets):
            if secret is not None and len(secret.get_secret_value()) < 16:
                raise ValueError(
                    "cluster_secret and cluster_previous_secrets must be at least 16 characters"
                )

    def advertised(self, listen: str) -> str:
        return self.cluster_advertise or listen

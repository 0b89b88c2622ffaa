"""`cluster_tls_server_name`: the name the nodes' shared certificate carries, which forwarded
calls verify instead of the address a node is dialled at (docs/cluster.md#security)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from pydantic import ValidationError

from broker.api.forwarding import Forwarder
from broker.runtime.settings import load_settings

CLUSTER = {"cluster_url": "redis://r", "cluster_advertise": "10.0.0.7:50051"}
TLS = {"tls_cert_file": "/tls/tls.crt", "tls_key_file": "/tls/tls.key"}


def test_a_cluster_over_tls_takes_a_server_name() -> None:
    settings = load_settings(
        None, **CLUSTER, **TLS, cluster_tls_server_name="bb-browser-broker.browsers.svc"
    )
    assert settings.cluster_tls_server_name == "bb-browser-broker.browsers.svc"
    assert load_settings(None, **CLUSTER, **TLS).cluster_tls_server_name is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {**CLUSTER, "cluster_tls_server_name": "bb.browsers.svc"},
            "the nodes serve no TLS (tls_cert_file)",
        ),
        (
            {**TLS, "cluster_tls_server_name": "bb.browsers.svc"},
            "cluster_tls_server_name is for cluster mode",
        ),
        ({**CLUSTER, **TLS, "cluster_tls_server_name": "bb svc"}, "is not a DNS name"),
        ({**CLUSTER, **TLS, "cluster_tls_server_name": "*.browsers.svc"}, "is not a DNS name"),
        ({**CLUSTER, **TLS, "cluster_tls_server_name": "-bb.svc"}, "is not a DNS name"),
        ({**CLUSTER, **TLS, "cluster_tls_server_name": ""}, "is not a DNS name"),
        ({**CLUSTER, **TLS, "cluster_tls_server_name": "a\nb"}, "is not a DNS name"),
        ({**CLUSTER, **TLS, "cluster_tls_server_name": "a" * 64}, "is not a DNS name"),
    ],
    ids=["without-tls", "without-cluster", "space", "wildcard", "hyphen", "empty", "newline", "64"],
)
def test_a_server_name_that_would_check_nothing_is_refused(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        load_settings(None, **overrides)
    assert message in str(refused.value)


def test_the_name_overrides_the_target_only_over_tls() -> None:
    credentials = grpc.ssl_channel_credentials()
    over_tls = Forwarder(None, None, 1024, credentials, "bb.browsers.svc")  # type: ignore[arg-type]
    assert ("grpc.ssl_target_name_override", "bb.browsers.svc") in over_tls._options
    plaintext = Forwarder(None, None, 1024, None, "bb.browsers.svc")  # type: ignore[arg-type]
    assert all(key != "grpc.ssl_target_name_override" for key, _ in plaintext._options)

"""Transport and tenants, over a real gRPC server (fake engines): TLS and mutual TLS handshakes,
bearer tokens, tenant isolation on every RPC, quotas, and what GetStatus shows to whom."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from broker.leases.lease import Lease, LeaseSpec
from broker.model.options import ContextOptions, EngineName, ProxySettings
from broker.model.options import Isolation as BrokerIsolation
from broker.runtime.settings import Settings
from browserbroker import (
    Engine,
    Isolation,
    LeaseNotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    steps,
)
from tests.certs import CertificateAuthority

TOKENS = {"alpha": "alpha-secret-token", "beta": "beta-secret-token", "ops": "ops-secret-token"}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TENANTS = [
    {"name": "alpha", "token_sha256": [_digest(TOKENS["alpha"])], "max_leases": 2,
     "client_cert_names": ["alpha-client"]},
    {"name": "beta", "token_sha256": [_digest(TOKENS["beta"])], "engines": ["chromium"],
     "isolations": ["context"], "max_queued": 0},
    {"name": "ops", "token_sha256": [_digest(TOKENS["ops"])], "admin": True},
]  # fmt: skip


# ------------------------------------------------------------------------ TLS


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = CertificateAuthority()
    server_cert, server_key = ca.issue("localhost", server=True).write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    return {
        "ca": ca,
        "ca_file": tmp_path / "ca.crt",
        "server_cert": server_cert,
        "server_key": server_key,
        "dir": tmp_path,
    }


async def test_tls_handshake_and_plaintext_refused(start: Any, pki: dict[str, Any]) -> None:
    running = await start(tls_cert_file=pki["server_cert"], tls_key_file=pki["server_key"])
    secure = running.client(root_certificates=pki["ca_file"])
    assert (await secure.status()).tenant == "operator"
    plain = running.client()
    with pytest.raises(UnavailableError):
        await plain.status(timeout=5)
    stranger = running.client(root_certificates=CertificateAuthority("another CA").pem)
    with pytest.raises(UnavailableError):  # the server's certificate is not signed by it
        await stranger.status(timeout=5)


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    start: Any, pki: dict[str, Any]
) -> None:
    running = await start(
        tls_cert_file=pki["server_cert"],
        tls_key_file=pki["server_key"],
        tls_client_ca_file=pki["ca_file"],
        tenants=TENANTS,
    )
    anonymous = running.client(root_certificates=pki["ca_file"])
    with pytest.raises(UnavailableError):  # the handshake itself fails
        await anonymous.status(timeout=5)
    alpha_cert = pki["ca"].issue("alpha-client", server=False)
    alpha = running.client(
        root_certificates=pki["ca_file"],
        client_certificate=alpha_cert.cert_pem,
        client_key=alpha_cert.key_pem,
    )
    assert (await alpha.status()).tenant == "alpha"  # the certificate names the tenant
    unknown_cert = pki["ca"].issue("nobody-registered", server=False)
    unknown = running.client(
        root_certificates=pki["ca_file"],
        client_certificate=unknown_cert.cert_pem,
        client_key=unknown_cert.key_pem,
    )
    with pytest.raises(UnauthenticatedError):  # a valid certificate, but no tenant has it
        await unknown.status()
    # A certificate-authenticated client may still present a token; the token decides.
    beta_token = running.client(
        root_certificates=pki["ca_file"],
        client_certificate=alpha_cert.cert_pem,
        client_key=alpha_cert.key_pem,
        token=TOKENS["beta"],
    )
    assert (await beta_token.status()).tenant == "beta"


async def test_certificates_are_reloaded_without_a_restart(start: Any, pki: dict[str, Any]) -> None:
    running = await start(tls_cert_file=pki["server_cert"], tls_key_file=pki["server_key"])
    first = running.client(root_certificates=pki["ca_file"])
    assert (await first.status()).tenant == "operator"
    new_ca = CertificateAuthority("rotated CA")
    issued = new_ca.issue("localhost", server=True)
    pki["server_cert"].write_bytes(issued.cert_pem)
    pki["server_key"].write_bytes(issued.key_pem)
    later = os.stat(pki["server_cert"]).st_mtime_ns + 10_000_000
    os.utime(pki["server_cert"], ns=(later, later))
    rotated = running.client(root_certificates=new_ca.pem)
    assert (await rotated.status()).tenant == "operator"  # a new connection, the new certificate
    old_trust = running.client(root_certificates=pki["ca_file"])
    with pytest.raises(UnavailableError):
        await old_trust.status(timeout=5)


# -------------------------------------------------------------------- tenants


async def test_a_missing_or_wrong_token_is_unauthenticated(start: Any) -> None:
    running = await start(tenants=TENANTS)
    for client in (running.client(), running.client(token="not-a-token")):
        with pytest.raises(UnauthenticatedError):
            await client.acquire()
        with pytest.raises(UnauthenticatedError):
            await client.status()
    assert running.engine.all_sessions == []


async def test_another_tenants_lease_does_not_exist_for_it(start: Any) -> None:
    running = await start(tenants=TENANTS)
    alpha = running.client(token=TOKENS["alpha"])
    beta = running.client(token=TOKENS["beta"])
    lease = await alpha.acquire(ttl=60)
    # Beta holds alpha's id and token, and still learns nothing: the answer for an unknown lease.
    stolen = type(lease)(beta, lease.grant)
    with pytest.raises(LeaseNotFoundError) as run_error:
        await stolen.run(steps.evaluate("1"))
    with pytest.raises(LeaseNotFoundError) as keep_error:
        await stolen.keep_alive(60)
    with pytest.raises(LeaseNotFoundError) as release_error:
        await stolen.release()
    for error in (run_error, keep_error, release_error):
        assert lease.id in str(error.value) and "tenant" not in str(error.value)
    assert (await lease.run(steps.evaluate("1"))).ok  # untouched for its owner
    assert (await lease.release()).released_now
    with pytest.raises(LeaseNotFoundError):  # its record too belongs to alpha alone
        await stolen.release()
    again = await lease.release()
    assert not again.released_now and again.reason == "client_release"


async def test_quotas_engines_and_isolations_per_tenant(start: Any) -> None:
    running = await start(tenants=TENANTS, capacity=1)
    alpha = running.client(token=TOKENS["alpha"])
    beta = running.client(token=TOKENS["beta"])
    with pytest.raises(PermissionDeniedError):
        await beta.acquire(engine=Engine.FIREFOX)
    with pytest.raises(PermissionDeniedError):
        await beta.acquire(isolation=Isolation.BROWSER)
    held = await alpha.acquire(ttl=60)
    # The broker is full: beta may not queue at all (max_queued = 0).
    with pytest.raises(ResourceExhaustedError) as queued:
        await beta.acquire(timeout=5)
    assert queued.value.limit == "tenant_max_queued"
    await held.release()
    running.broker.leases.limits = type(running.broker.leases.limits)(
        **{**running.broker.leases.limits.__dict__, "capacity": 4}
    )
    first, second = await alpha.acquire(), await alpha.acquire()
    with pytest.raises(ResourceExhaustedError) as quota:
        await alpha.acquire()
    assert quota.value.limit == "tenant_max_leases"
    for lease in (first, second):
        await lease.release()


async def test_status_shows_a_tenant_its_own_numbers_and_an_admin_everything(
    start: Any,
) -> None:
    running = await start(tenants=TENANTS)
    alpha = running.client(token=TOKENS["alpha"])
    beta = running.client(token=TOKENS["beta"])
    ops = running.client(token=TOKENS["ops"])
    held = [await alpha.acquire(), await beta.acquire()]
    mine = await alpha.status()
    assert (mine.tenant, mine.active_leases, mine.capacity) == ("alpha", 1, 2)
    assert not mine.tenants and mine.drift_repairs == 0
    assert all(e.detail == "" and e.browsers == 0 for e in mine.engines)
    everything = await ops.status()
    assert everything.active_leases == 2 and everything.capacity == 4
    assert {t.name: t.active_leases for t in everything.tenants} == {
        "alpha": 1,
        "beta": 1,
        "ops": 0,
    }
    assert any(e.detail for e in everything.engines)
    for lease in held:
        await lease.release()


async def test_status_is_rate_limited_per_tenant(start: Any) -> None:
    running = await start(tenants=TENANTS, status_requests_per_s=2)
    alpha = running.client(token=TOKENS["alpha"])
    beta = running.client(token=TOKENS["beta"])
    with pytest.raises(ResourceExhaustedError) as limited:
        for _ in range(5):
            await alpha.status()
    assert limited.value.limit == "status_rate" and limited.value.retry_after_s
    assert (await beta.status()).tenant == "beta"  # another tenant's budget is its own


def test_auth_off_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="allow_insecure_remote"):
        Settings.model_validate({"listen": "0.0.0.0:50051"})
    with pytest.raises(ValueError, match="TLS"):
        Settings.model_validate({"listen": "0.0.0.0:50051", "tenants": TENANTS})
    assert Settings.model_validate(
        {"listen": "0.0.0.0:50051", "allow_insecure_remote": True}
    ).allow_insecure_remote


def test_secrets_never_show_in_reprs() -> None:
    proxy = ProxySettings("http://proxy.test:3128", "user", "hunter2-password")
    spec = LeaseSpec(
        EngineName.CHROMIUM,
        BrokerIsolation.CONTEXT,
        60,
        60,
        ContextOptions(proxy=proxy, extra_http_headers=(("Authorization", "Bearer abc-secret"),)),
    )
    lease = Lease(spec=spec, granted_at=0.0)
    for text in (repr(lease), repr(spec), str(lease)):
        assert "hunter2" not in text and "abc-secret" not in text and lease.token not in text

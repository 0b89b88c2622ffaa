"""The trace store: who may fetch a lease's trace, and when it is deleted (fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.errors import LeaseNotFound, PermissionDenied
from broker.leases.lease import Lease, LeaseSpec, ReleaseOutcome, ReleaseReason
from broker.leases.tenants import Tenant
from broker.model.options import ContextOptions, EngineName, Isolation
from broker.observe.trace_files import TraceStore


class TracedSession:
    def __init__(self) -> None:
        self.kept: tuple[str, int] | None = None

    def keep_trace(self, path: str, max_bytes: int) -> None:
        self.kept = (path, max_bytes)


def traced_lease(tenant: Tenant, trace: bool = True) -> tuple[Lease, TracedSession]:
    spec = LeaseSpec(
        EngineName.CHROMIUM, Isolation.CONTEXT, 60, 60, ContextOptions(trace=trace), tenant=tenant
    )
    lease = Lease(spec, granted_at=0.0)
    session = TracedSession()
    lease.session = session  # type: ignore[assignment]
    return lease, session


def test_owner_only_and_deleted_after_retention(tmp_path: Path) -> None:
    now = [100.0]
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "lease-from-an-earlier-run.zip").write_bytes(b"old")
    store = TraceStore(tmp_path / "traces", retention_s=60, max_bytes=1000, clock=lambda: now[0])
    alpha, beta = Tenant("alpha"), Tenant("beta")
    lease, session = traced_lease(alpha)
    store.lease_granted(lease)
    assert session.kept == (str(tmp_path / "traces" / f"{lease.id}.zip"), 1000)
    assert not (tmp_path / "traces" / "lease-from-an-earlier-run.zip").exists()
    with pytest.raises(LeaseNotFound):  # not ended yet
        store.find(lease.id, lease.token, alpha)
    store.lease_released(
        lease, ReleaseOutcome(ReleaseReason.CLIENT_RELEASE, datetime.now(UTC), True)
    )
    Path(session.kept[0]).write_bytes(b"PK")  # what the engine writes as the session closes
    assert store.find(lease.id, lease.token, alpha).read_bytes() == b"PK"
    with pytest.raises(LeaseNotFound):
        store.find(lease.id, lease.token, beta)
    with pytest.raises(PermissionDenied):
        store.find(lease.id, "wrong", alpha)
    now[0] += 61
    with pytest.raises(LeaseNotFound):
        store.find(lease.id, lease.token, alpha)
    assert list((tmp_path / "traces").iterdir()) == []


def test_leases_without_trace_are_not_tracked(tmp_path: Path) -> None:
    store = TraceStore(tmp_path / "traces", retention_s=60, max_bytes=1000)
    lease, session = traced_lease(Tenant("alpha"), trace=False)
    store.lease_granted(lease)
    assert session.kept is None and not (tmp_path / "traces").exists()

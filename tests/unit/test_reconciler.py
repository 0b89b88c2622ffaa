"""The reconciler finds drift between the lease table and the engine, repairs it, and counts it."""

from __future__ import annotations

from broker.leases.events import ObserverList
from broker.leases.lease import LeaseSpec, ReleaseReason
from broker.leases.limits import Limits
from broker.leases.reconciler import Reconciler
from broker.leases.table import LeaseTable
from broker.model.options import ContextOptions, EngineName, Isolation
from tests.fakes import FakeClock, FakeEngine, FakeSession, ReleaseRecorder

SPEC = LeaseSpec(EngineName.CHROMIUM, Isolation.CONTEXT, ttl_s=60, idle_timeout_s=60)


def make() -> tuple[LeaseTable, FakeEngine, Reconciler, ReleaseRecorder]:
    engine = FakeEngine()
    recorder = ReleaseRecorder()
    leases = LeaseTable({EngineName.CHROMIUM: engine}, FakeClock(), Limits(), recorder)
    return leases, engine, Reconciler(leases, [engine], list, ObserverList()), recorder


async def test_no_drift_finds_nothing() -> None:
    leases, _, reconciler, _ = make()
    lease = await leases.acquire(SPEC, None)
    assert reconciler.check().total == 0 and reconciler.repairs == 0
    leases.release(lease, ReleaseReason.CLIENT_RELEASE)
    await leases.wait_all_closed()
    assert reconciler.check().total == 0


async def test_session_gone_without_notice_ends_its_lease_once() -> None:
    leases, _, reconciler, recorder = make()
    lease = await leases.acquire(SPEC, None)
    session = lease.session
    assert isinstance(session, FakeSession)
    session.lost = True  # died, and nobody was told (the bug the reconciler guards against)
    report = reconciler.check()
    assert report.dead_leases == 1 and reconciler.repairs == 1
    assert lease.released is not None and lease.released.reason is ReleaseReason.DRIFT_REPAIRED
    assert reconciler.check().total == 0  # repaired once, not again
    await leases.wait_all_closed()
    assert recorder.count(lease.id) == 1 and leases.active_count == 0


async def test_orphan_session_is_closed() -> None:
    leases, engine, reconciler, _ = make()
    orphan = await engine.open_session(Isolation.CONTEXT, ContextOptions())  # owned by no lease
    report = reconciler.check()
    assert report.orphan_sessions == 1
    await leases.wait_all_closed()
    assert orphan.closed == 1 and not engine.open_sessions

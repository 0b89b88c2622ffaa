"""Compares the lease table with what the engines really have open, and repairs any drift.

With one release path this should never find anything; it exists to prove that under chaos, and
to stop a leak early if a bug ever slips in. Every repair is counted, logged and reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from broker.engines.base import Engine, Session
from broker.leases.events import LeaseObserver
from broker.leases.lease import ReleaseReason
from broker.leases.table import LeaseTable

log = logging.getLogger("broker.reconciler")


@dataclass
class DriftReport:
    dead_leases: int = 0  # leases whose session is gone from the engine
    orphan_sessions: int = 0  # sessions open in an engine that nobody owns

    @property
    def total(self) -> int:
        return self.dead_leases + self.orphan_sessions


class Reconciler:
    def __init__(
        self,
        leases: LeaseTable,
        engines: list[Engine],
        pooled_sessions: Callable[[], Iterable[Session]],
        observers: LeaseObserver,
    ) -> None:
        self.leases = leases
        self.engines = engines
        # Warm sessions are owned by their pools, not leases: the reconciler is handed a view
        # of them (it sits below the warm pools and does not know them).
        self.pooled_sessions = pooled_sessions
        self.observers = observers
        self.repairs = 0

    def check(self) -> DriftReport:
        report = DriftReport()
        for lease in self.leases.active_leases():
            session = lease.session
            if session is not None and not session.alive:
                report.dead_leases += 1
                self._repaired(
                    "dead_lease",
                    f"lease {lease.id} on a {session.engine.value} session that is gone",
                )
                self.leases.release(lease, ReleaseReason.DRIFT_REPAIRED)
        owned: set[Session] = self.leases.owned_sessions()
        owned.update(self.pooled_sessions())
        for engine in self.engines:
            for session in engine.live_sessions():
                if session not in owned:
                    report.orphan_sessions += 1
                    self._repaired(
                        "orphan_session", f"{engine.name.value} session owned by no lease"
                    )
                    self.leases.close_orphan(session)
        return report

    def _repaired(self, what: str, detail: str) -> None:
        self.repairs += 1
        log.error("drift repaired", extra={"drift": what, "detail": detail})
        self.observers.drift_repaired(what, detail)

    async def reclose(self) -> int:
        """Contexts of released leases that would not close get another try; logged while any
        stays open (they are counted in each engine's census as `unclosed`)."""
        still_open = 0
        for engine in self.engines:
            still_open += await engine.reclose()
        if still_open:
            log.warning(
                "released sessions whose context is still open", extra={"count": still_open}
            )
        return still_open

    async def run_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.check()
                await self.reclose()
            except Exception:
                log.exception("reconciliation failed")

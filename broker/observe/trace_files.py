"""Lease traces on disk: recorded by the engine for leases that ask, kept for their owner for a
while after the lease ends, then deleted.

The store knows owners only in memory: what an earlier run of the broker left on disk (kept
traces, a zip half-written when it was killed) has no known owner, so the folder is emptied when
the store is made, as the broker starts. A kept trace is deleted when its retention passes, by a
timer, even if nobody asks for traces again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.errors import LeaseNotFound, PermissionDenied
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, ReleaseOutcome, token_digest
from broker.leases.tenants import Tenant

log = logging.getLogger("broker.traces")


@dataclass
class TraceRecord:
    tenant: str
    token_digest: bytes
    path: Path
    expires_at: float | None = None  # (monotonic) set when the lease ends


class TraceStore(LeaseObserver):
    def __init__(
        self,
        folder: Path,
        retention_s: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.retention_s = retention_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._records: dict[str, TraceRecord] = {}
        self._ready = False
        shutil.rmtree(self.folder, ignore_errors=True)  # an earlier run's leftovers

    def _prepare(self) -> None:
        """The folder, private to the broker's user, emptied of an earlier run's traces."""
        if self._ready:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._ready = True

    def lease_granted(self, lease: Lease) -> None:
        if not lease.spec.context.trace or lease.session is None:
            return
        try:
            self._prepare()
        except OSError as exc:  # the lease works on; its trace is not kept
            log.error("no trace folder %s: %s", self.folder, exc)
            return
        path = self.folder / f"{lease.id}.zip"
        lease.session.keep_trace(str(path), self.max_bytes)
        self._records[lease.id] = TraceRecord(
            lease.spec.tenant.name, token_digest(lease.token), path
        )

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        record = self._records.get(lease.id)
        if record is not None:
            record.expires_at = self._clock() + self.retention_s
            with contextlib.suppress(RuntimeError):  # no loop: the next sweep deletes it
                asyncio.get_running_loop().call_later(self.retention_s + 0.1, self.sweep)
        self.sweep()

    def sweep(self) -> None:
        """Delete the traces whose retention has passed."""
        now = self._clock()
        for lease_id, record in list(self._records.items()):
            if record.expires_at is not None and record.expires_at <= now:
                del self._records[lease_id]
                _unlink(record.path)
        if not self._ready:
            return
        # A trace written after its record expired (a retention shorter than the close) has no
        # owner left: it goes too.
        kept = {record.path for record in self._records.values()}
        for path in self.folder.glob("*.zip"):
            if path not in kept:
                _unlink(path)

    def find(self, lease_id: str, token: str, tenant: Tenant) -> Path:
        """The trace of an ended lease, for its owner only. Another tenant's answers as an
        unknown one: it learns nothing."""
        self.sweep()
        record = self._records.get(lease_id)
        if record is None or record.tenant != tenant.name or record.expires_at is None:
            raise LeaseNotFound(lease_id)
        if token_digest(token) != record.token_digest:
            raise PermissionDenied(lease_id)
        if not record.path.is_file():  # not written, or dropped as too large
            raise LeaseNotFound(lease_id)
        return record.path


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not delete trace %s: %s", path, exc)

"""Between the lease table and the attach edge: which lease a connect URL reaches, what a
client's messages and its leaving do to the lease, and the socket's close when the lease ends.

The desk is a lease observer: the one release path tells it a lease has ended, and it closes
that lease's sockets with the reason (code 4000 + the reason's number in the API, text
"lease ended: <reason>"). It ends a lease itself only through that path: `client_disconnected`
when the last client of an ON_DISCONNECT_END lease leaves.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable, Mapping

from broker.attach.hubs import AttachHub
from broker.attach.server import AttachGrant, ConnectionInfo, ConnectionStats
from broker.engines.base import Engine
from broker.engines.firefox import FirefoxEngine
from broker.engines.playwright.attachable import AttachableEngine
from broker.engines.playwright.serving import ServingEngine
from broker.leases.events import LeaseObserver
from broker.leases.lease import Lease, ReleaseOutcome, ReleaseReason
from broker.leases.table import LeaseTable
from broker.model.attach import OnDisconnect
from broker.model.options import EngineName

CLOSE_CODE_BASE = 4000

# Opened for each connection; returns what to call when it closes (telemetry hooks in here).
ConnectionWatcher = Callable[[ConnectionInfo], Callable[[ConnectionStats], None]]


def close_code(reason: ReleaseReason) -> int:
    """4000 + the reason's number in the API's ReleaseReason (their orders match)."""
    return CLOSE_CODE_BASE + list(ReleaseReason).index(reason) + 1


class AttachDesk(LeaseObserver):
    def __init__(self, leases: LeaseTable, engines: Mapping[EngineName, Engine]) -> None:
        self._leases = leases
        self._engines = engines
        self._attachable: dict[str, tuple[Lease, asyncio.Future[tuple[int, str]]]] = {}
        self.base_url = ""  # ws(s)://host:port of the attach server, once it serves
        self.watch: ConnectionWatcher | None = None

    def connect_url(self, lease: Lease) -> str:
        if lease.spec.attach is None or not self.base_url:
            return ""
        path = lease.spec.attach.protocol.value  # the edge's path names the protocol
        return f"{self.base_url}/{path}/{lease.id}?token={lease.attach_token}"

    # ------------------------------------------------------------------ lease events

    def lease_granted(self, lease: Lease) -> None:
        if lease.spec.attach is not None:
            ended = asyncio.get_running_loop().create_future()
            self._attachable[lease.id] = (lease, ended)

    def lease_released(self, lease: Lease, outcome: ReleaseOutcome) -> None:
        found = self._attachable.pop(lease.id, None)
        if found is not None and not found[1].done():
            reason = outcome.reason
            found[1].set_result((close_code(reason), f"lease ended: {reason.value}"))

    # ------------------------------------------------------------------ the edge

    def resolve(self, lease_id: str, token: str) -> AttachGrant | http.HTTPStatus:
        found = self._attachable.get(lease_id)
        if found is None:
            return http.HTTPStatus.NOT_FOUND  # never attachable, ended, or never issued
        lease, ended = found
        if not lease.attach_token_matches(token):
            return http.HTTPStatus.UNAUTHORIZED
        hub = self._hub(lease)
        if hub is None:
            return http.HTTPStatus.NOT_FOUND
        return AttachGrant(
            hub,
            ended,
            lambda: self._leases.touch(lease),
            lambda info: self._opened(lease, info),
        )

    def _hub(self, lease: Lease) -> AttachHub | None:
        engine = self._engines.get(lease.spec.engine)
        if lease.session is None:
            return None
        if isinstance(engine, ServingEngine) and (served := engine.served_hub(lease.session)):
            return served
        if isinstance(engine, AttachableEngine):
            return engine.attach_hub(lease.session)
        if isinstance(engine, FirefoxEngine):
            return engine.attach_hub(lease.session)
        return None

    def _opened(self, lease: Lease, info: ConnectionInfo) -> Callable[[ConnectionStats], None]:
        self._leases.touch(lease)
        watched = self.watch(info) if self.watch is not None else None

        def closed(stats: ConnectionStats) -> None:
            if watched is not None:
                watched(stats)
            attach = lease.spec.attach
            if lease.released is not None or attach is None:
                return
            self._leases.touch(lease)
            hub = self._hub(lease)
            left = hub.attached(trusted=False) if hub is not None else 0
            if attach.on_disconnect is OnDisconnect.END and left == 0:
                self._leases.release(lease, ReleaseReason.CLIENT_DISCONNECTED)

        return closed

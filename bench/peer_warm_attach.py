"""The broker's warm attach cycle in bench.peers: the attach cycle of `bench.peer_attach` on a
broker of its own that keeps an attachable warm pool, sized to the level's client count.

The cycle is the cold one's (Acquire(attach=...), connect, a new context and page, goto, read the
h1, disconnect, Release), as Browserless's connect-per-session row does it. What differs is the
broker: `--warm-pool chromium/browser+<protocol>=N` at N clients (no plain pool), restarted for
each level (as Browserless is, with its limits) and stopped after it, so its idle browsers and
refills never run beside another system's sessions.

Fairness: the pool refills between sessions, as it would between requests. Before each session,
untimed, a client waits until the pool holds a ready browser that no other client has claimed
(at most SESSION_TIMEOUT_S; past that the session runs and counts as cold), and before the level
until the pool holds all N. So at N clients the N cycles of a round run at once on N warm
browsers, the same concurrency Browserless and run-server launch N browsers for. The timed part
is the cycle alone; the waits for refills are in the level's wall time, so this row's sessions/s
is bounded by the broker's refill launches (one at a time per engine, 1 s after a take): read its
p50. Each level records how many of its leases were warm.

A row per protocol in WARM_PROTOCOLS (CDP with connect_over_cdp, Playwright's protocol with
browser_type.connect): a protocol whose browsers the broker pools is one more entry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from playwright.async_api import Browser, Playwright

from bench.peer_attach import BrokerAttachCdp, BrokerAttachPlaywright
from bench.peer_systems import SESSION_TIMEOUT_S
from browserbroker import AsyncBrokerClient, AsyncLease
from browserbroker.v1 import broker_pb2 as pb
from tests.support import BrokerProcess

# The warm attach rows bench.peers runs (key: warm-attach-<protocol>).
WARM_PROTOCOLS = ("cdp", "playwright")
COLD_NAMES = {"cdp": BrokerAttachCdp.name, "playwright": BrokerAttachPlaywright.name}
POLL_S = 0.05  # GetStatus, shared by every waiting client


def warm_name(protocol: str) -> str:
    """The row's name: the cold row's, with "warm"."""
    return COLD_NAMES[protocol].replace("attach cycle", "warm attach cycle", 1)


@runtime_checkable
class Pooled(Protocol):
    """A system whose pool is sized per level: filled before its level, stopped after it."""

    warm_leases: int  # leases granted from the pool so far

    async def settle(self) -> None: ...
    async def park(self) -> None: ...


class ReadyGate:
    """Lets a session begin once the pool holds a ready browser no other session has claimed.

    `read_ready` answers the pool's ready count. A claim lasts until the claimant's Acquire
    returns (`taken`); a reading that overlapped a take is read again, and a take the broker has
    made but whose answer has not come back still counts as claimed, so the count of free ready
    browsers is never over-estimated. One GetStatus at a time serves every waiter, at most one per
    `poll_s`.
    """

    def __init__(self, read_ready: Callable[[], Awaitable[int]], poll_s: float = POLL_S) -> None:
        self.read_ready = read_ready
        self.poll_s = poll_s
        self.claimed = 0
        self.takes = 0
        self._lock = asyncio.Lock()
        self._value: int | None = None
        self._read_at = -1.0
        self._read_takes = -1

    async def _reading(self) -> int | None:
        async with self._lock:
            stale = time.monotonic() - self._read_at >= self.poll_s
            if stale or self._read_takes != self.takes:
                takes = self.takes
                value = await self.read_ready()
                self._read_at, self._read_takes = time.monotonic(), takes
                self._value = value if self.takes == takes else None
            return self._value

    async def claim(self, timeout_s: float = SESSION_TIMEOUT_S) -> bool:
        """Waits for a free ready browser and claims it; False (nothing claimed) past timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = await self._reading()
            if ready is not None and ready - self.claimed >= 1:
                self.claimed += 1
                return True
            await asyncio.sleep(self.poll_s)
        return False

    def taken(self, claimed: bool) -> None:
        """The claimant's Acquire has returned (or failed)."""
        if claimed:
            self.claimed -= 1
        self.takes += 1


class BrokerWarmAttach(BrokerAttachCdp):
    """The attach cycle on a broker whose attachable pool holds the level's client count."""

    def __init__(
        self, playwright: Playwright, url: str, protocol: str = "cdp", capacity: int = 64
    ) -> None:
        super().__init__(BrokerProcess(), playwright, url)
        self.protocol = protocol
        self.name = warm_name(protocol)
        self.capacity = capacity
        self.attach_number = pb.AttachProtocol.Value(f"ATTACH_PROTOCOL_{protocol.upper()}")
        self.clients = 0  # the pool's size; 0: no broker running
        self.warm_leases = 0
        self.gate = ReadyGate(self.ready)
        self.claims: dict[asyncio.Task[object] | None, bool] = {}  # by each client's task

    def pool_flag(self, size: int) -> str:
        return f"chromium/browser+{self.protocol}={size}"

    async def pool(self) -> pb.PoolStatus:
        assert self.client is not None
        for pool in (await self.client.status()).pools:
            if (int(pool.engine), int(pool.isolation), int(pool.attach)) == (
                pb.ENGINE_CHROMIUM,
                pb.ISOLATION_BROWSER,
                self.attach_number,
            ):
                return pool
        raise RuntimeError(
            f"{self.name}: the broker keeps no {self.pool_flag(self.clients)} pool; its log "
            f"ends:\n{self.broker.log()[-1500:]}"
        )

    async def ready(self) -> int:
        return int((await self.pool()).ready)

    async def start(self) -> None:
        await self.resize(1)

    async def resize(self, clients: int) -> bool:
        """A broker with a pool of `clients`; True if it was (re)started (warm it up)."""
        if clients == self.clients:
            return False
        await self.park()
        args = ["--warm-pool-size", "0", "--warm-pool", self.pool_flag(clients)]
        self.broker = BrokerProcess(args=[*args, "--capacity", str(max(self.capacity, clients))])
        await asyncio.to_thread(self.broker.start)
        self.client = AsyncBrokerClient(self.broker.address)
        self.gate = ReadyGate(self.ready)
        self.clients = clients
        await self.pool()  # fails the run at once if the broker left the pool out
        return True

    async def settle(self) -> None:
        """Waits (untimed, at most SESSION_TIMEOUT_S) until the pool holds all its browsers."""
        deadline = time.monotonic() + SESSION_TIMEOUT_S
        while time.monotonic() < deadline:
            pool = await self.pool()
            if pool.ready >= pool.target:
                return
            await asyncio.sleep(POLL_S)
        print(f"  {self.name}: the pool did not fill in {SESSION_TIMEOUT_S:.0f} s", flush=True)

    async def park(self) -> None:
        """Stops the broker and its browsers (they would idle and refill beside other systems)."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        await asyncio.to_thread(self.broker.stop)
        self.clients = 0
        self.claims.clear()

    async def prepare(self) -> None:
        self.claims[asyncio.current_task()] = await self.gate.claim()

    async def acquire(self) -> AsyncLease:
        claimed = self.claims.pop(asyncio.current_task(), False)
        try:
            lease = await super().acquire()
        finally:
            self.gate.taken(claimed)
        if lease.grant.warm:
            self.warm_leases += 1
        return lease

    async def connect(self, url: str) -> Browser:
        if self.protocol == "playwright":
            return await self.playwright.chromium.connect(url, timeout=SESSION_TIMEOUT_S * 1000)
        return await super().connect(url)

    async def stop(self) -> None:
        await self.park()

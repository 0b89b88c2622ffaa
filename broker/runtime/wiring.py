"""Wiring: engines, lease table, warm pool and reconciler, started and stopped as one unit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import TracebackType

from broker.cluster.node import ClusterNode
from broker.cluster.records import NodeRecord
from broker.cluster.store import ClusterStore
from broker.common.clock import Clock, LoopClock
from broker.egress.policy import EgressPolicy, local_addresses
from broker.egress.proxy import EgressGateway
from broker.engines.base import Engine, EngineCensus, ResultLimits
from broker.engines.firefox import FirefoxEngine
from broker.engines.playwright.attachable import AttachableEngine
from broker.engines.playwright.serving import ServingEngine
from broker.leases.events import LeaseObserver, ObserverList
from broker.leases.reconciler import Reconciler
from broker.leases.table import LeaseTable
from broker.model.attach import AttachProtocol
from broker.model.options import EngineName, Isolation
from broker.observe.trace_files import TraceStore
from broker.runtime.attach_desk import AttachDesk
from broker.runtime.settings import Settings
from broker.warm.pool import PoolStatus, WarmPool
from broker.warm.pools import Pools

log = logging.getLogger("broker.app")


def build_engines(settings: Settings) -> dict[EngineName, Engine]:
    """One adapter per enabled engine; each adapter module is imported only when enabled."""
    from broker.engines import sandbox

    plan = sandbox.plan(
        settings.browser_sandbox,
        settings.browser_user,
        settings.browser_jail,
        settings.allow_file_urls,
    )
    engines: dict[EngineName, Engine] = {}
    for name in settings.engines:
        if name is EngineName.CHROMIUM:
            from broker.engines import chromium

            engines[name] = chromium.create(
                settings.chromium_path, settings.chromium_args, settings.headless, plan
            )
        elif name is EngineName.FIREFOX:
            from broker.engines import firefox

            engines[name] = firefox.create(settings.firefox_path, settings.headless, plan)
        elif name is EngineName.CAMOUFOX:
            from broker.engines import camoufox

            engines[name] = camoufox.create(settings.headless, plan)
    return engines


def serves_attached(engine: Engine, protocol: AttachProtocol) -> bool:
    """Does `engine` serve attached clients of `protocol` (an attachable pool's browsers)?"""
    if protocol is AttachProtocol.CDP:
        return isinstance(engine, AttachableEngine) and engine.attached is not None
    if protocol is AttachProtocol.PLAYWRIGHT:
        return isinstance(engine, ServingEngine) and engine.served is not None
    return isinstance(engine, FirefoxEngine) and engine.bidi is not None


class Broker:
    """`async with Broker(settings) as broker:` runs everything; exiting drains and closes it all."""

    def __init__(
        self,
        settings: Settings,
        engines: Mapping[EngineName, Engine] | None = None,
        clock: Clock | None = None,
        observers: list[LeaseObserver] | None = None,
    ) -> None:
        self.settings = settings
        self.engines = dict(engines) if engines is not None else build_engines(settings)
        self.egress: EgressGateway | None = None
        if settings.egress_enabled:
            self.egress = EgressGateway(
                EgressPolicy(settings.egress_rules(), own_addresses=local_addresses())
            )
        for engine in self.engines.values():
            engine.recycling = settings.recycle_policy()
            engine.result_limits = ResultLimits(
                settings.max_result_bytes,
                settings.max_screenshot_pixels,
                settings.max_pdf_pages,
                settings.max_pages_per_lease,
                settings.max_download_bytes,
            )
            engine.use_egress(self.egress)
            if isinstance(engine, AttachableEngine) and engine.attached is not None:
                engine.attached.limits = settings.attach_limits(settings.max_download_bytes)
            if isinstance(engine, FirefoxEngine) and engine.bidi is not None:
                engine.bidi.limits = settings.attach_limits(settings.max_download_bytes)
            if isinstance(engine, ServingEngine) and engine.served is not None:
                engine.served.limits = settings.attach_limits(settings.max_download_bytes)
        self.observers = ObserverList(observers)
        self.traces = TraceStore(
            settings.data_dir / "traces", settings.trace_retention_s, settings.max_trace_bytes
        )
        self.observers.add(self.traces)
        self.leases = LeaseTable(
            self.engines,
            clock or LoopClock(),
            settings.limits(),
            self.observers,
            egress=self.egress,
        )
        self.warm = Pools(
            self.leases.active_leases,
            self.leases.owned_sessions,
            settings.session_memory,
            settings.memory_budget_mb,
            settings.warm_demand_window_s,
        )
        for pool in settings.pool_configs():
            pooled = self.engines.get(pool.engine)
            if pooled is None or not pooled.availability().available:
                # Acquires of the engine fail the same way; the pool would only retry for ever.
                log.warning("warm pool %s left out: its engine is unavailable", pool.pair)
            elif pool.isolation is Isolation.CONTEXT and settings.auth_enabled:
                # A warm context lives in one tenant's browser; tenants never share one.
                log.info("warm pool %s left out: context pools serve no tenants", pool.pair)
            elif pool.attach is not None and not settings.attach_listen:
                log.warning("warm pool %s left out: attached clients are off", pool.pair)
            elif pool.attach is not None and not serves_attached(pooled, pool.attach):
                # E.g. bidi with a Playwright-built Firefox, which speaks Juggler.
                log.warning(
                    "warm pool %s left out: its engine serves no %s clients here",
                    pool.pair,
                    pool.attach.value,
                )
            else:
                self.warm.add(
                    pooled,
                    pool.isolation,
                    pool.size,
                    pool.ceiling,
                    pool.max_age_s,
                    settings.warm_launches_per_engine,
                    settings.session_open_timeout_s,
                    pool.attach,
                )
        self.leases.set_warm_source(self.warm.take)
        # Attachable leases: what their connect URLs reach (served by the daemon's attach edge).
        self.attach = AttachDesk(self.leases, self.engines)
        self.observers.add(self.attach)
        self.reconciler = Reconciler(
            self.leases, list(self.engines.values()), self.warm.sessions, self.observers
        )
        self.cluster: ClusterNode | None = None
        if settings.cluster_url is not None:
            self.cluster = ClusterNode(
                ClusterStore(settings.cluster_url, settings.cluster_name),
                self.leases,
                settings.cluster_advertise or settings.listen,
                list(self.engines),
                settings.cluster_heartbeat_s,
                settings.cluster_dead_after_s,
                settings.tombstone_ttl_s,
            )
            self.observers.add(self.cluster)
        self._background: list[asyncio.Task[None]] = []
        self._stopped = False

    @property
    def pools(self) -> list[WarmPool]:
        return self.warm.pools

    @property
    def warm_pool_size(self) -> int:
        """Warm sessions ready, all pools together."""
        return len(self.warm)

    def cluster_nodes(self) -> tuple[NodeRecord, ...]:
        return self.cluster.nodes if self.cluster is not None else ()

    def pool_statuses(self) -> list[PoolStatus]:
        return self.warm.statuses()

    async def engine_status(self) -> dict[EngineName, EngineCensus]:
        """Each engine's census; process walks run off the event loop, at most twice a second."""
        return {name: await engine.census_async() for name, engine in self.engines.items()}

    def gauges(self) -> dict[str, float]:
        """Current levels for the metrics' gauges: the lease table, and the last engine census
        (gauges are read from the exporter's thread, which must not walk processes)."""
        censuses = [engine.cached_census() for engine in self.engines.values()]
        return {
            "broker.leases.active": self.leases.active_count,
            "broker.queue.depth": self.leases.queued_count,
            "broker.pool.size": self.warm_pool_size,
            "broker.browsers": sum(c.browsers for c in censuses),
            "broker.browsers.retiring": sum(c.retiring for c in censuses),
            "broker.sessions.unclosed": sum(c.unclosed for c in censuses),
            "broker.contexts": sum(c.contexts for c in censuses),
            "broker.pages": sum(c.pages for c in censuses),
            **(self.cluster.gauges() if self.cluster is not None else {}),
        }

    async def __aenter__(self) -> Broker:
        await self.warm.__aenter__()
        self._background.append(
            asyncio.get_running_loop().create_task(
                self.reconciler.run_forever(self.settings.reconcile_interval_s)
            )
        )
        self._background.append(asyncio.get_running_loop().create_task(self._census_forever()))
        if self.settings.recycle_above_mb:
            self._background.append(
                asyncio.get_running_loop().create_task(
                    self._check_memory_forever(self.settings.recycle_check_interval_s)
                )
            )
        return self

    async def join_cluster(self, bound_port: int) -> None:
        """Cluster mode: announce this node (at the port it is serving on) and keep beating.
        A store that cannot be reached yet is retried by the heartbeat."""
        if self.cluster is None:
            return
        if self.settings.cluster_advertise is None:
            host = self.settings.listen.rpartition(":")[0]
            self.cluster.address = f"{host}:{bound_port}"
        await self.cluster.tick()
        self._background.append(asyncio.get_running_loop().create_task(self.cluster.run_forever()))

    async def _census_forever(self, interval_s: float = 5.0) -> None:
        """Keeps the census behind the metrics' gauges fresh, and deletes traces whose retention
        has passed (even when no lease ends and nobody asks for one)."""
        while True:
            try:
                await self.engine_status()
            except Exception:
                log.exception("engine census failed")
            try:
                self.traces.sweep()
            except OSError:
                log.exception("deleting expired traces failed")
            await asyncio.sleep(interval_s)

    async def _check_memory_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            for engine in self.engines.values():
                try:
                    await engine.check_memory()
                except Exception:
                    log.exception("memory check of %s failed", engine.name.value)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown(grace_s=0.0)

    async def shutdown(self, grace_s: float, drain_s: float = 0.0) -> None:
        """Drain: take no new leases (a cluster node's heartbeat says so at once, and its
        Acquires go to other nodes) and let the leases go on for up to `drain_s`, with `grace_s`
        more for Runs still running; then end the leases left through the one release path,
        and close pools and browsers. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.leases.begin_drain()
            if self.cluster is not None:
                self.cluster.beat_now()
            if drain_s > 0:
                await self.warm.close()  # no new lease can take a warm session: free them now
            await self.leases.drain(grace_s, drain_s)
        finally:
            if self.cluster is not None:
                self.cluster.stop()
            for task in self._background:
                task.cancel()
            for task in self._background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.cluster is not None:
                await self.cluster.leave()  # the drained leases' outcomes, then off the list
            await self.warm.close()
            for engine in self.engines.values():
                try:
                    await engine.close()
                except Exception:
                    log.exception("closing engine %s failed", engine.name.value)
